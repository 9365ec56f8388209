"""Figures and viewers for plan-lite (matplotlib, Agg-safe; ipywidgets / ipyniivue only when asked for).

* :func:`montage` - static grid of slices (phases x slices) with GT contours, prediction fills and lesion ids.
  Always works: CI, papermill, the static book.
* :func:`lesion_browser` - NiiVue (ipyniivue) multiplanar + 3D view of CT with GT / prediction overlays and a
  lesion table; offline, also drawn in the static book (from the notebook's widget state).
* :func:`slice_viewer` - ipywidgets slice browser for a live kernel (matplotlib frames).
* :func:`view3d` - the 3D view: the lesion browser in a live kernel, a montage when static.
* :mod:`plan_lite.viz.plots` - ROC, recall by lesion size, loss curves, sampled points, HU curves.

Arrays are (z, y, x); images (C, D, H, W) in HU; colours per label in :data:`LABEL_COLORS`.
"""

from __future__ import annotations

from typing import Any

from plan_lite.viz.montage import LABEL_COLORS, WINDOWS, choose_slices, lesion_components, montage
from plan_lite.viz.plots import (
    plot_budgets,
    plot_hu_curves,
    plot_inference_modes,
    plot_loss_curves,
    plot_mechanisms,
    plot_paired_differences,
    plot_points,
    plot_recall_by_size,
    plot_roc,
    plot_type_sources,
)
from plan_lite.viz.view3d import view3d


def lesion_browser(*args: Any, **kwargs: Any) -> Any:
    """NiiVue lesion browser (imports ipywidgets / ipyniivue lazily); see :func:`plan_lite.viz.browser.lesion_browser`."""
    from plan_lite.viz.browser import lesion_browser as _lesion_browser

    return _lesion_browser(*args, **kwargs)


def slice_viewer(*args: Any, **kwargs: Any) -> Any:
    """Interactive slice viewer (imports ipywidgets lazily); see :func:`plan_lite.viz.viewer.slice_viewer`."""
    from plan_lite.viz.viewer import slice_viewer as _slice_viewer

    return _slice_viewer(*args, **kwargs)


__all__ = ["LABEL_COLORS", "WINDOWS", "montage", "lesion_browser", "slice_viewer", "view3d", "plot_roc", "plot_recall_by_size", "plot_paired_differences", "plot_mechanisms", "plot_budgets", "plot_type_sources", "plot_inference_modes",
           "plot_loss_curves", "plot_points", "plot_hu_curves", "choose_slices", "lesion_components"]
