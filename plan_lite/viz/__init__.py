"""Figures and viewers for plan-lite (matplotlib, Agg-safe; ipywidgets / k3d only when asked for).

* :func:`montage` - static grid of slices (phases x slices) with GT contours, prediction fills and lesion ids.
  Always works: CI, papermill, the static book.
* :func:`slice_viewer` - ipywidgets browser for a live kernel (pair it with a montage in the book).
* :func:`view3d` - k3d 3D view with an offline HTML snapshot; falls back to a montage when static.
* :mod:`plan_lite.viz.plots` - ROC, recall by lesion size, loss curves, sampled points, HU curves.

Arrays are (z, y, x); images (C, D, H, W) in HU; colours per label in :data:`LABEL_COLORS`.
"""

from __future__ import annotations

from typing import Any

from plan_lite.viz.montage import LABEL_COLORS, WINDOWS, choose_slices, lesion_components, montage
from plan_lite.viz.plots import plot_hu_curves, plot_loss_curves, plot_points, plot_recall_by_size, plot_roc
from plan_lite.viz.view3d import view3d


def slice_viewer(*args: Any, **kwargs: Any) -> Any:
    """Interactive slice viewer (imports ipywidgets lazily); see :func:`plan_lite.viz.viewer.slice_viewer`."""
    from plan_lite.viz.viewer import slice_viewer as _slice_viewer

    return _slice_viewer(*args, **kwargs)


__all__ = ["LABEL_COLORS", "WINDOWS", "montage", "slice_viewer", "view3d", "plot_roc", "plot_recall_by_size",
           "plot_loss_curves", "plot_points", "plot_hu_curves", "choose_slices", "lesion_components"]
