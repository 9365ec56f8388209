"""The lesion browser widget (ipywidgets + ipyniivue); build it with :func:`plan_lite.viz.browser.lesion_browser`.

Kept apart from :mod:`plan_lite.viz.browser` so that the grid, colour-table and lesion-table helpers import without
the notebook packages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LABEL_NAMES, LESION_LABELS
from plan_lite.viz.browser import TABLE_HEADER, BrowserGrid, LesionRow, label_lut, nifti_gz
from plan_lite.viz.montage import LABEL_COLORS, WINDOWS, resolve_window

try:
    import ipyniivue
except ImportError:  # pragma: no cover - the notebooks extra installs it
    raise PlanLiteError("viz: the lesion browser needs ipyniivue (pip install 'plan-lite[notebooks]')") from None

TABLE_CLASS = "plan-lite-lesion-table"
ORGAN_OPACITY = 0.35  # organ overlays relative to the lesion overlays
_STYLE = (f"<style>.{TABLE_CLASS} select, .{TABLE_CLASS} .plan-lite-head{{font-family:monospace;font-size:12px}}"
          f".{TABLE_CLASS} .plan-lite-head{{white-space:pre;padding-left:4px}}</style>")


def legend_html(labels: Sequence[int]) -> str:
    """Colour chips of the labels present, in ``LABEL_COLORS``."""
    chips = "".join(f'<span style="display:inline-block;margin-right:8px"><span style="display:inline-block;'
                    f'width:10px;height:10px;background:{LABEL_COLORS[k]};border:1px solid #444"></span> '
                    f"{k} {LABEL_NAMES[k]}</span>" for k in sorted(set(labels) - {0}) if k in LABEL_COLORS)
    return f'<div style="font-size:12px;line-height:1.6">{chips}</div>'


class LesionBrowser(widgets.VBox):
    """Controls, the NiiVue viewer and the lesion table below it; see :func:`plan_lite.viz.browser.lesion_browser`.

    Attributes: ``viewer`` (``ipyniivue.NiiVue``: volume 0 is the CT, then the ground-truth and prediction
    overlays, organs and lesions apart), ``overlays`` (``"ground truth"`` / ``"prediction"`` -> their
    ``ipyniivue.Volume`` list), ``table`` (the lesion ``Select``), ``rows``
    (:class:`~plan_lite.viz.browser.LesionRow`), ``grid`` (:class:`~plan_lite.viz.browser.BrowserGrid`), ``phase``,
    ``window``, ``show_gt``, ``show_pred`` (controls), ``info`` (the chosen lesion).
    """

    def __init__(self, image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None, rows: list[LesionRow],
                 grid: BrowserGrid, phase: int, phases: list[str], window: str | tuple[float, float],
                 height: int = 520, opacity: float = 0.5, title: str | None = None) -> None:
        self.volume, self.grid, self.rows = image, grid, rows
        self.phases, self.opacity = list(phases), float(opacity)
        self._ct: dict[int, Any] = {}
        self._custom = resolve_window(window)
        self.viewer = ipyniivue.NiiVue(
            height=height, slice_type=ipyniivue.SliceType.MULTIPLANAR,
            multiplanar_show_render=ipyniivue.ShowRender.ALWAYS, multiplanar_layout=ipyniivue.MultiplanarType.GRID,
            show_3d_crosshair=True, back_color=(0.0, 0.0, 0.0, 1.0), crosshair_color=(1.0, 1.0, 0.0, 0.9),
            is_colorbar=False, show_legend=False, drag_and_drop_enabled=False, is_nearest_interpolation=True)
        self.overlays: dict[str, list[Any]] = {}
        self._opacity: dict[int, float] = {}
        volumes = [self._ct_volume(phase, *self._custom)]
        present: set[int] = set()
        for name, arr in (("ground truth", gt), ("prediction", pred)):
            if arr is None:
                continue
            lab = grid.label(arr)
            labels = {int(k) for k in np.unique(lab)} - {0}
            present |= labels
            self.overlays[name] = []
            # organs faint, lesions strong: two volumes, since NiiVue applies one opacity per volume
            for part, keep, alpha in (("organs", labels - set(LESION_LABELS), self.opacity * ORGAN_OPACITY),
                                      ("lesions", labels & set(LESION_LABELS), self.opacity)):
                if not keep:
                    continue
                sub = np.where(np.isin(lab, sorted(keep)), lab, 0).astype(np.uint8)
                vol = ipyniivue.Volume(data=nifti_gz(sub, grid.affine()),
                                       name=f"{name.replace(' ', '_')}_{part}.nii.gz", opacity=alpha,
                                       colorbar_visible=False)
                vol.set_colormap_label(label_lut(sorted(keep)))
                self._opacity[id(vol)] = alpha
                self.overlays[name].append(vol)
                volumes.append(vol)
        self.viewer.load_volumes(volumes)

        self.phase = widgets.ToggleButtons(options=[(n.upper(), i) for i, n in enumerate(self.phases)],
                                           value=phase, description="phase", style={"button_width": "56px"})
        presets = [(f"{k} (W{w:g}/L{lv:g})", k) for k, (lv, w) in WINDOWS.items()]
        if not isinstance(window, str):
            presets.append((f"custom ({self._custom[0]:g}..{self._custom[1]:g} HU)", "custom"))
        self.window = widgets.Dropdown(options=presets, value=window if isinstance(window, str) else "custom",
                                       description="window")
        self.show_gt = widgets.Checkbox(value=gt is not None, disabled=gt is None, indent=False,
                                        description="ground truth", layout=widgets.Layout(width="130px"))
        self.show_pred = widgets.Checkbox(value=pred is not None, disabled=pred is None, indent=False,
                                          description="prediction", layout=widgets.Layout(width="110px"))
        head = (f"<b>Lesions</b> ({len(rows)}; choose one to move the crosshair to it)" if rows
                else "<b>Lesions</b>: none")
        self.table = widgets.Select(options=[(r.text(), i) for i, r in enumerate(rows)],
                                    value=0 if rows else None, rows=min(10, max(2, len(rows))),
                                    layout=widgets.Layout(width="100%"))
        self.info = widgets.HTML()
        self.phase.observe(self._on_phase, names="value")
        self.window.observe(self._on_window, names="value")
        self.show_gt.observe(self._on_overlay, names="value")
        self.show_pred.observe(self._on_overlay, names="value")
        self.table.observe(self._on_row, names="value")
        table_box = widgets.VBox([widgets.HTML(f'{_STYLE}{head}<div class="plan-lite-head">{TABLE_HEADER}</div>'), self.table, self.info],
                                 layout=widgets.Layout(width="100%"))
        table_box.add_class(TABLE_CLASS)
        items = [widgets.HTML(f"<b>{title}</b>")] if title else []
        items += [widgets.HBox([self.phase, self.window], layout=widgets.Layout(flex_flow="row wrap")),
                  widgets.HBox([self.show_gt, self.show_pred, widgets.HTML(legend_html(sorted(present)))],
                               layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
                  self.viewer, table_box]
        self.viewer.layout = widgets.Layout(width="100%")
        super().__init__(items, layout=widgets.Layout(width="100%", max_width="1100px"))
        if rows:
            self._goto(0)

    # ---------------------------------------------------------------------------------------------- volumes
    def _ct_volume(self, phase: int, vmin: float, vmax: float) -> Any:
        if phase not in self._ct:
            data = nifti_gz(self.grid.image(self.volume[phase]), self.grid.affine())
            self._ct[phase] = ipyniivue.Volume(data=data, name=f"ct_{self.phases[phase]}.nii.gz", colormap="gray",
                                               cal_min=vmin, cal_max=vmax, colorbar_visible=False)
        vol = self._ct[phase]
        vol.cal_min, vol.cal_max = vmin, vmax
        return vol

    def window_range(self) -> tuple[float, float]:
        """(vmin, vmax) HU of the chosen window."""
        return self._custom if self.window.value == "custom" else resolve_window(self.window.value)

    def _on_phase(self, change: dict[str, Any]) -> None:
        ct = self._ct_volume(int(change["new"]), *self.window_range())
        self.viewer.volumes = [ct, *self.viewer.volumes[1:]]

    def _on_window(self, change: dict[str, Any]) -> None:
        ct = self.viewer.volumes[0]
        ct.cal_min, ct.cal_max = self.window_range()

    def _on_overlay(self, change: dict[str, Any]) -> None:
        for name, box in (("ground truth", self.show_gt), ("prediction", self.show_pred)):
            for vol in self.overlays.get(name, []):
                vol.opacity = self._opacity[id(vol)] if box.value else 0.0

    # ---------------------------------------------------------------------------------------------- lesions
    def _on_row(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self._goto(int(change["new"]))

    def _goto(self, i: int) -> None:
        row = self.rows[i]
        self.viewer.scene.crosshair_pos = self.grid.frac(row.centroid)
        what = "predicted lesion" if row.source == "pred" else "lesion"
        dice = "" if row.dice is None else f", Dice {row.dice:.2f}"
        score = "" if row.score is None else f", score {row.score:.2f}"
        self.info.value = (f"{what} #{row.id}: {row.type}, {row.status or 'listed'}{dice}{score}; "
                           f"slice z = {int(round(row.centroid[0]))}")

    @property
    def crosshair(self) -> list[float]:
        """NiiVue's crosshair position (fractions x, y, z)."""
        return list(self.viewer.scene.crosshair_pos)

    def select(self, index: int) -> None:
        """Choose row ``index`` of the lesion table, as a click does: the crosshair moves to that lesion."""
        if not 0 <= index < len(self.rows):
            raise IndexError(f"lesion row {index} outside 0..{len(self.rows) - 1}")
        if self.table.value == index:
            self._goto(index)
        else:
            self.table.value = index


__all__ = ["LesionBrowser", "legend_html"]
