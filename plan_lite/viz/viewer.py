"""Interactive slice browser for a live Jupyter kernel (ipywidgets + matplotlib rendered to PNG).

Widgets stay blank in the static book (book/design_decisions.md#dd-stack), so callers always show a
:func:`plan_lite.viz.montage` next to it. The frame is drawn with matplotlib's Agg canvas into an
``ipywidgets.Image``; no ipympl and no pyplot state are needed, and every callback also works without a frontend
(tests drive the widgets directly).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from plan_lite.viz.montage import (
    WINDOWS,
    as_channels,
    draw_slice,
    legend_handles,
    normalize_lesions,
    phase_names,
)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def lesion_row(les: dict[str, Any]) -> str:
    """One line of the lesion table: id, type, probability, radius, matched/missed, slice."""
    status = les.get("matched", les.get("detected"))
    state = "-" if status is None else ("matched" if status else "missed")
    prob = les.get("probability", les.get("score"))
    z = int(round(float(les["centroid"][0])))
    return (f"#{les['id']:<3} {str(les.get('type', '?')):<14} p={_fmt(prob, '.2f'):>5}  "
            f"r={_fmt(les.get('radius_mm'), '.1f'):>5} mm  {state:<7}  z={z}")


class SliceViewer(widgets.VBox):
    """Slice slider, phase selector, window presets, overlay toggles and a clickable lesion table.

    Attributes ``slider``, ``phase``, ``window``, ``show_gt``, ``show_pred``, ``show_anchors``, ``lesion_table`` are
    the widgets; ``displayed`` holds ``(phase index, slice index, window)`` of the frame in ``image``.
    """

    def __init__(self, image: np.ndarray, label: np.ndarray | None = None, pred: np.ndarray | None = None,
                 anchors: np.ndarray | None = None, lesions: Sequence[dict[str, Any]] | None = None,
                 spacing: Sequence[float] | None = None, phases: Sequence[str] | None = None,
                 size: float = 5.0) -> None:
        self.volume = as_channels(image)
        c, d, _, _ = self.volume.shape
        self.label = None if label is None else np.asarray(label)
        self.pred = None if pred is None else np.asarray(pred)
        self.anchors = None if anchors is None else np.asarray(anchors)
        self.spacing = spacing
        self.lesions = normalize_lesions(lesions, self.label if self.label is not None else self.pred, spacing)
        self.aspect = float(spacing[1]) / float(spacing[2]) if spacing is not None else 1.0
        self.displayed: tuple[int, int, str] | None = None
        self._fig = Figure(figsize=(size, size))
        start = int(round(self.lesions[0]["centroid"][0])) if self.lesions else d // 2

        self.slider = widgets.IntSlider(value=start, min=0, max=d - 1, description="slice", continuous_update=False)
        names = phase_names(c, phases)
        self.phase = widgets.ToggleButtons(options=[(n, i) for i, n in enumerate(names)], value=0,
                                           description="phase")
        self.window = widgets.Dropdown(options=[(f"{k} (W{w:g}/L{lv:g})", k) for k, (lv, w) in WINDOWS.items()],
                                       value="liver", description="window")
        self.show_gt = widgets.Checkbox(value=self.label is not None, description="GT",
                                        disabled=self.label is None, indent=False)
        self.show_pred = widgets.Checkbox(value=self.pred is not None, description="prediction",
                                          disabled=self.pred is None, indent=False)
        self.show_anchors = widgets.Checkbox(value=False, description="anchors", disabled=self.anchors is None,
                                             indent=False)
        self.lesion_table = widgets.Select(options=[(lesion_row(les), i) for i, les in enumerate(self.lesions)],
                                           value=None, rows=min(8, max(2, len(self.lesions))),
                                           description="lesions", layout=widgets.Layout(width="95%"))
        self.lesion_table.style.description_width = "initial"
        self.canvas = widgets.Image(format="png")
        for w in (self.slider, self.phase, self.window, self.show_gt, self.show_pred, self.show_anchors):
            w.observe(self._on_change, names="value")
        self.lesion_table.observe(self._on_lesion, names="value")
        toggles = widgets.HBox([self.show_gt, self.show_pred, self.show_anchors])
        super().__init__([self.phase, widgets.HBox([self.slider, self.window]), toggles, self.canvas,
                          self.lesion_table])
        self.render()

    @property
    def slice_index(self) -> int:
        """Slice index of the frame currently displayed."""
        return -1 if self.displayed is None else self.displayed[1]

    def _on_change(self, change: dict[str, Any]) -> None:
        self.render()

    def _on_lesion(self, change: dict[str, Any]) -> None:
        """Selecting a lesion row jumps to its centroid slice (which re-renders through the slider)."""
        if change["new"] is None:
            return
        les = self.lesions[int(change["new"])]
        self.slider.value = int(np.clip(round(float(les["centroid"][0])), 0, self.slider.max))

    def select_lesion(self, lesion_id: int) -> None:
        """Programmatic click on the lesion with ``id`` ``lesion_id``."""
        for i, les in enumerate(self.lesions):
            if les["id"] == lesion_id:
                self.lesion_table.value = i
                return
        raise KeyError(f"no lesion with id {lesion_id}")

    def render(self) -> None:
        """Draw the current phase / slice / window / overlays into the image widget."""
        p, z, win = int(self.phase.value), int(self.slider.value), str(self.window.value)
        fig = self._fig
        fig.clear()
        ax = fig.add_axes((0.0, 0.08, 1.0, 0.86))
        lab = self.label[z] if self.label is not None and self.show_gt.value else None
        prd = self.pred[z] if self.pred is not None and self.show_pred.value else None
        anc = None
        if self.anchors is not None and self.show_anchors.value:
            anc = self.anchors[:, z] if self.anchors.ndim == 4 else self.anchors[z]
        draw_slice(ax, self.volume[p, z], win, lab, prd, anc, self.lesions, z, aspect=self.aspect)
        ax.set_title(f"{self.phase.label}  z = {z}/{self.volume.shape[1] - 1}  [{win}]", fontsize=9)
        present: set[int] = set()
        for arr in (lab, prd):
            if arr is not None:
                present |= {int(k) for k in np.unique(arr)}
        handles = legend_handles(sorted(present - {0}), lab is not None, prd is not None)
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=6, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        self.canvas.value = buf.getvalue()
        self.displayed = (p, z, win)


def slice_viewer(image: np.ndarray, label: np.ndarray | None = None, pred: np.ndarray | None = None,
                 anchors: np.ndarray | None = None, lesions: Sequence[dict[str, Any]] | None = None,
                 spacing: Sequence[float] | None = None, phases: Sequence[str] | None = None) -> SliceViewer:
    """Interactive viewer widget (live kernel only; pair it with :func:`montage` for the static book).

    ``anchors``: (D, H, W) or (A, D, H, W) boolean anchor masks (``outputs["anchor_masks"][b]``).
    ``lesions``: like :func:`montage`; extra keys ``probability``/``score`` and ``matched``/``detected`` fill the
    table columns. Clicking a row moves the slider to the lesion's centroid slice.
    """
    return SliceViewer(image, label, pred, anchors, lesions, spacing, phases)


__all__ = ["SliceViewer", "slice_viewer", "lesion_row"]
