"""Lesion browser: CT with ground truth and prediction in NiiVue (multiplanar slices + 3D render) and a lesion table.

:func:`lesion_browser` returns an ipywidgets box: the NiiVue viewer (``ipyniivue``, an anywidget whose wheel bundles
all its JavaScript, so it works offline) next to controls for the phase, the CT window, the two label overlays and
a table of lesions (type, radius, detected / missed / false positive, Dice). Choosing a row moves the crosshair,
i.e. the three slices and the 3D crosshair, to that lesion.

The widget also renders in the static book without a kernel: the executed notebook stores its state (the NiiVue
bundle, about 5 MB, and the volumes) and the book loads the widget manager from ``_static`` (``make widgets``).
The controls need a live kernel. To keep a page small, the volumes are cropped to the labelled region (liver and
lesions) plus a margin and strided in plane until at most ``max_voxels`` voxels remain; CT is stored as int16,
labels as uint8, both gzipped NIfTI.

Everything below :class:`LesionBrowser` is pure Python and testable without a browser: :func:`browser_grid`
(crop / stride and the NiiVue fractional coordinates), :func:`label_lut` (the label colour table in
``LABEL_COLORS``), :func:`lesion_rows` (the table from a lesion list, a ``lesion_metrics_case`` result or the label
maps) and :func:`nifti_gz`.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LABEL_NAMES, LESION_LABELS, LIVER_LABEL
from plan_lite.viz.montage import LABEL_COLORS, as_channels, phase_names

DEFAULT_MAX_VOXELS = 1_500_000  # per volume: about 1.5 MB of gzipped int16 CT in the widget state
DEFAULT_MARGIN_MM = 20.0


# ---------------------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class BrowserGrid:
    """The voxel grid shown in the browser: a crop ``[start, stop)`` of the input (z, y, x) grid, strided by
    ``factors``. ``signs`` are the directions of the file axes (x, y, z) in RAS (from the case's affine, +1 when
    unknown), so the viewer shows the anatomy the right way round."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    factors: tuple[int, int, int]
    signs: tuple[int, int, int] = (1, 1, 1)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(D, H, W) of the browser's volumes."""
        return tuple((b - a) // f for a, b, f in zip(self.start, self.stop, self.factors))  # type: ignore[return-value]

    @property
    def out_spacing(self) -> tuple[float, float, float]:
        """(z, y, x) mm of the browser's volumes."""
        return tuple(float(s) * f for s, f in zip(self.spacing, self.factors))  # type: ignore[return-value]

    def _crop(self, arr: np.ndarray) -> np.ndarray:
        d, h, w = self.out_shape
        (z0, y0, x0), (fz, fy, fx) = self.start, self.factors
        return np.asarray(arr)[z0:z0 + d * fz, y0:y0 + h * fy, x0:x0 + w * fx]

    def image(self, arr: np.ndarray) -> np.ndarray:
        """(D, H, W) HU volume -> block means on the browser grid, int16."""
        d, h, w = self.out_shape
        fz, fy, fx = self.factors
        sub = self._crop(arr).astype(np.float32)
        if (fz, fy, fx) != (1, 1, 1):
            sub = sub.reshape(d, fz, h, fy, w, fx).mean(axis=(1, 3, 5))
        return np.clip(np.rint(sub), -32768, 32767).astype(np.int16)

    def label(self, arr: np.ndarray) -> np.ndarray:
        """(D, H, W) label map -> the browser grid, uint8; in every block lesions win over liver, liver over the
        rest (then the larger label), so small lesions survive the striding."""
        d, h, w = self.out_shape
        fz, fy, fx = self.factors
        sub = self._crop(arr)
        if (fz, fy, fx) == (1, 1, 1):
            return sub.astype(np.uint8)
        rank = np.zeros(256, dtype=np.int32)
        rank[LIVER_LABEL] = 1
        rank[list(LESION_LABELS)] = 2
        blocks = sub.astype(np.intp).reshape(d, fz, h, fy, w, fx).transpose(0, 2, 4, 1, 3, 5).reshape(d, h, w, -1)
        pick = np.argmax(rank[blocks] * 256 + blocks, axis=-1)
        return np.take_along_axis(blocks, pick[..., None], axis=-1)[..., 0].astype(np.uint8)

    def to_grid(self, zyx: Sequence[float]) -> tuple[float, float, float]:
        """Input voxel (z, y, x) -> voxel of the browser grid (fractional)."""
        return tuple((float(c) - a - (f - 1) / 2.0) / f
                     for c, a, f in zip(zyx, self.start, self.factors))  # type: ignore[return-value]

    def frac(self, zyx: Sequence[float]) -> list[float]:
        """Input voxel (z, y, x) -> NiiVue's fractional crosshair position (x, y, z in RAS order, 0..1)."""
        gz, gy, gx = self.to_grid(zyx)
        out = []
        for g, n, s in zip((gx, gy, gz), self.out_shape[::-1], self.signs):
            f = (float(np.clip(g, 0, n - 1)) + 0.5) / n
            out.append(f if s > 0 else 1.0 - f)
        return out

    def affine(self) -> np.ndarray:
        """NIfTI affine (file axes x, y, z) of the browser volumes: axis aligned, ``signs`` times the spacing, with
        the crop's first voxel at its position in the input grid (in mm from the input's first voxel)."""
        sz, sy, sx = self.out_spacing
        aff = np.diag([sx * self.signs[0], sy * self.signs[1], sz * self.signs[2], 1.0])
        z0, y0, x0 = self.start
        fz, fy, fx = self.factors
        first = [(x0 + (fx - 1) / 2) * self.spacing[2], (y0 + (fy - 1) / 2) * self.spacing[1],
                 (z0 + (fz - 1) / 2) * self.spacing[0]]
        aff[:3, 3] = [f * s for f, s in zip(first, self.signs)]
        return aff


def _axis_signs(affine: np.ndarray | None) -> tuple[int, int, int]:
    """RAS direction (+1 / -1) of the file axes x, y, z of an axis-aligned affine; (1, 1, 1) otherwise."""
    if affine is None:
        return (1, 1, 1)
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    if np.abs(m - np.diag(np.diag(m))).max() > 1e-3 * np.abs(m).max():
        return (1, 1, 1)  # oblique or permuted: shown as stored
    return tuple(1 if v >= 0 else -1 for v in np.diag(m))  # type: ignore[return-value]


def browser_grid(shape: Sequence[int], spacing: Sequence[float], region: np.ndarray | None = None,
                 margin_mm: float = DEFAULT_MARGIN_MM, max_voxels: int = DEFAULT_MAX_VOXELS,
                 affine: np.ndarray | None = None) -> BrowserGrid:
    """The browser grid of a (D, H, W) volume.

    ``region``: label map whose non-zero voxels other than the body are kept (the liver and lesions, labels 1 and
    7-14, when present; else every non-zero label) plus ``margin_mm`` on each side; ``None`` keeps the whole
    volume. The crop is then strided, in plane first (while the in-plane step stays at most the slice
    thickness), until at most ``max_voxels`` voxels remain.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise PlanLiteError(f"viz: browser volumes must be (D, H, W), got shape {shape}")
    sz, sy, sx = (float(s) for s in spacing)
    start, stop = [0, 0, 0], list(shape)
    if region is not None:
        reg = np.asarray(region)
        keep = np.isin(reg, (LIVER_LABEL, *LESION_LABELS))
        if not keep.any():
            keep = reg > 0
        if keep.any():
            for ax, s in enumerate((sz, sy, sx)):
                idx = np.flatnonzero(keep.any(axis=tuple(a for a in range(3) if a != ax)))
                m = int(np.ceil(margin_mm / s))
                start[ax], stop[ax] = max(0, int(idx[0]) - m), min(shape[ax], int(idx[-1]) + 1 + m)
    ext = [b - a for a, b in zip(start, stop)]
    fz = fyx = 1
    while (ext[0] // fz) * (ext[1] // fyx) * (ext[2] // fyx) > max_voxels:
        if (fyx + 1) * min(sy, sx) <= max(sz * fz, min(sy, sx) * 2) or ext[0] // fz <= 8:
            fyx += 1
        else:
            fz += 1
    return BrowserGrid(shape, (sz, sy, sx), tuple(start), tuple(stop), (fz, fyx, fyx),  # type: ignore[arg-type]
                       _axis_signs(affine))


def nifti_gz(arr_zyx: np.ndarray, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 bytes of a (z, y, x) array (stored as x, y, z like every NIfTI; dtype kept)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(arr_zyx, (2, 1, 0))), np.asarray(affine, np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


# ---------------------------------------------------------------------------------------------------- colours
def label_lut(labels: Sequence[int] | None = None, organ_alpha: int = 96, lesion_alpha: int = 255
              ) -> dict[str, list]:
    """NiiVue's discrete colour table (``Volume.set_colormap_label``) for the label map, colours from
    ``LABEL_COLORS``.

    ``labels``: the labels drawn (default: all but background); the others, and 0, are transparent. Organs get
    ``organ_alpha`` and lesions ``lesion_alpha`` (0-255), so the CT stays visible under the liver and the lesions
    stand out. Keys ``R``, ``G``, ``B``, ``A`` (0-255), ``I`` (label values 0..14) and ``labels`` (names).
    """
    shown = set(LABEL_NAMES) - {0} if labels is None else {int(k) for k in labels} - {0}
    out: dict[str, list] = {"R": [], "G": [], "B": [], "A": [], "I": [], "labels": []}
    for k in sorted(LABEL_NAMES):
        h = LABEL_COLORS[k].lstrip("#")
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        out["R"].append(r)
        out["G"].append(g)
        out["B"].append(b)
        out["A"].append(0 if k not in shown else (lesion_alpha if k in LESION_LABELS else organ_alpha))
        out["I"].append(k)
        out["labels"].append(LABEL_NAMES[k])
    return out


# ---------------------------------------------------------------------------------------------------- lesion table
@dataclass(frozen=True)
class LesionRow:
    """One row of the lesion table. ``source``: ``"gt"`` (a ground-truth lesion), ``"pred"`` (a predicted lesion
    that matches none: false positive) or ``"listed"`` (a lesion list without a prediction). ``status``:
    ``detected`` / ``missed`` / ``false positive`` / ``ignored`` (below the size limit) / ``""``. ``centroid``:
    voxel (z, y, x) of the input grid; ``z_range``: first and last slice."""

    source: str
    id: int
    type: str
    radius_mm: float | None
    status: str
    dice: float | None
    centroid: tuple[float, float, float]
    z_range: tuple[int, int] | None = None
    label: int | None = None
    score: float | None = None

    def text(self) -> str:
        """The row as the table shows it (fixed width)."""
        src = {"gt": "GT", "pred": "pred", "listed": "GT"}.get(self.source, self.source)
        r = "-" if self.radius_mm is None else f"{self.radius_mm:.1f}"
        dice = "-" if self.dice is None else f"{self.dice:.2f}"
        return (f"{src:<4} #{self.id:<3} {self.type[:14]:<14} r {r:>5} mm  {self.status or '-':<14} "
                f"Dice {dice:>4}  z {int(round(self.centroid[0])):>3}")


TABLE_HEADER = (f"{'src':<4} {'id':<4} {'type':<14} {'radius':<10}  {'status':<14} {'Dice':<9}  "
                f"{'slice':<5}")  # the columns of LesionRow.text()


def _type_name(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, (int, np.integer)):
        return LABEL_NAMES.get(int(value), str(value))
    return str(value)


def world_to_voxel(center_mm: Sequence[float], affine: np.ndarray) -> tuple[float, float, float]:
    """World (z, y, x) mm (``lesions.json``'s ``center_mm``) -> voxel (z, y, x) for a NIfTI affine."""
    z, y, x = (float(c) for c in center_mm)
    ijk = np.linalg.inv(np.asarray(affine, np.float64)) @ np.array([x, y, z, 1.0])
    return float(ijk[2]), float(ijk[1]), float(ijk[0])


def lesion_regions(label: np.ndarray, other: np.ndarray | None = None, connectivity: int = 26
                   ) -> dict[int, dict[str, Any]]:
    """The lesions of a label map as :func:`plan_lite.metrics.lesion.lesion_metrics_case` numbers them.

    Components (``cc3d``, ``connectivity``) of the tumour mask (labels 7-14 merged) inside the bounding box of the
    tumour masks of ``label`` and ``other`` (the metric's other label map), so the ids equal the metric's ``id`` /
    ``gt`` / ``pred``. Returns ``{id: {"voxels", "centroid" (z, y, x), "z_range", "label" (majority)}}``.
    """
    import cc3d
    from scipy import ndimage

    from plan_lite.metrics.lesion import tumor_mask

    label = np.asarray(label)
    mask = tumor_mask(label)
    both = mask if other is None else mask | tumor_mask(np.asarray(other))
    if not both.any():
        return {}
    lo = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(3) if a != ax)))[0]) for ax in range(3)]
    hi = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(3) if a != ax)))[-1]) + 1 for ax in range(3)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    cc, n = cc3d.connected_components(np.ascontiguousarray(mask[box]), connectivity=connectivity, return_N=True)
    sub = label[box]
    out: dict[int, dict[str, Any]] = {}
    for i, sl in enumerate(ndimage.find_objects(cc), start=1):
        if sl is None:
            continue
        comp = cc[sl] == i
        idx = np.argwhere(comp)
        labels = sub[sl][comp].astype(np.int64)
        counts = np.bincount(labels, minlength=max(LESION_LABELS) + 1)
        out[i] = {"voxels": int(comp.sum()),
                  "centroid": tuple(float(c + s.start + o) for c, s, o in zip(idx.mean(0), sl, lo)),
                  "z_range": (int(sl[0].start + lo[0]), int(sl[0].stop - 1 + lo[0])),
                  "label": int(np.argmax(counts))}
    assert len(out) == n
    return out


def _check_ids(regions: dict[int, dict[str, Any]], listed: Sequence[Mapping[str, Any]], what: str) -> None:
    for les in listed:
        r = regions.get(int(les["id"]))
        if r is None or ("voxels" in les and int(les["voxels"]) != r["voxels"]):
            raise PlanLiteError(
                f"viz: {what} lesion {les['id']} ({les.get('voxels')} voxels) is not component {les['id']} of the "
                "label map: pass the label maps the metrics were computed on (and the default connectivity 26)")


def _rows_from_metrics(metrics: Mapping[str, Any], gt: np.ndarray | None, pred: np.ndarray | None,
                       connectivity: int) -> list[LesionRow]:
    if "gt_lesions" not in metrics:
        raise PlanLiteError("viz: lesion metrics without 'gt_lesions': compute them with details=True")
    if gt is None:
        raise PlanLiteError("viz: lesion metrics need the ground-truth label map (gt=) to locate the lesions")
    greg = lesion_regions(gt, pred, connectivity)
    _check_ids(greg, metrics["gt_lesions"], "ground-truth")
    dice = {int(p["gt"]): float(p["dice"]) for p in metrics.get("pairs", [])}
    rows = []
    for les in metrics["gt_lesions"]:
        g = int(les["id"])
        status = "ignored" if les.get("ignored") else ("detected" if les.get("matched_pred") is not None
                                                      else "missed")
        rows.append(LesionRow("gt", g, _type_name(les.get("type")), float(les["radius_mm"]), status, dice.get(g),
                              greg[g]["centroid"], greg[g]["z_range"], greg[g]["label"]))
    fps = [les for les in metrics.get("pred_lesions", []) if les.get("status") == "fp"]
    if fps:
        if pred is None:
            raise PlanLiteError("viz: false positives in the metrics need the predicted label map (pred=)")
        preg = lesion_regions(pred, gt, connectivity)
        _check_ids(preg, fps, "predicted")
        for les in fps:
            p = int(les["id"])
            rows.append(LesionRow("pred", p, _type_name(les.get("type")), float(les["radius_mm"]),
                                  "false positive", None, preg[p]["centroid"], preg[p]["z_range"],
                                  preg[p]["label"]))
    return rows


def _status(les: Mapping[str, Any]) -> str:
    if les.get("ignored"):
        return "ignored"
    for key in ("detected", "matched"):
        if key in les and les[key] is not None:
            return "detected" if les[key] else "missed"
    if "matched_pred" in les:
        return "detected" if les["matched_pred"] is not None else "missed"
    st = les.get("status")
    return {"tp": "detected", "fp": "false positive", "fn": "missed"}.get(st, st or "") if st else ""


def _snap(label_map: np.ndarray, label: int, centre: Sequence[float], spacing: Sequence[float],
          cache: dict[int, tuple[np.ndarray, np.ndarray]]
          ) -> tuple[tuple[float, float, float], tuple[int, int]] | None:
    """Centroid and z range of the 26-connected component of ``label`` nearest (in mm) to ``centre``."""
    from scipy import ndimage

    if label not in cache:
        cc, _ = ndimage.label(np.asarray(label_map) == label, structure=np.ones((3, 3, 3), dtype=bool))
        cache[label] = (cc, np.argwhere(cc > 0))
    cc, idx = cache[label]
    if not len(idx):
        return None
    d2 = (((idx - np.asarray(centre, np.float64)) * np.asarray(spacing, np.float64)) ** 2).sum(1)
    comp = np.argwhere(cc == cc[tuple(idx[int(np.argmin(d2))])])
    return tuple(float(c) for c in comp.mean(0)), (int(comp[:, 0].min()), int(comp[:, 0].max()))  # type: ignore


def lesion_rows(spacing: Sequence[float], gt: np.ndarray | None = None, pred: np.ndarray | None = None,
                lesions: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
                pairs: Sequence[Mapping[str, Any]] | None = None, affine: np.ndarray | None = None,
                connectivity: int = 26, **metric_kwargs: Any) -> list[LesionRow]:
    """The rows of the lesion table.

    ``lesions`` may be

    * a :func:`~plan_lite.metrics.lesion.lesion_metrics_case` result (computed with ``details=True``): one row per
      GT lesion (detected / missed / ignored, Dice of its match) and one per false-positive prediction, located in
      ``gt`` / ``pred`` (the label maps the metrics were computed on);
    * a list of lesion dicts: ``lesions.json`` entries (``center_mm``, world mm: needs ``affine``), dicts with a
      voxel ``centroid`` or ``center_voxel_zyx`` (``<case>_lesions.json`` of ``plan-lite predict``), or the
      metrics' ``gt_lesions`` (located in ``gt`` by id; ``pairs`` give their Dice). Optional keys: ``type`` /
      ``label``, ``radius_mm``, ``detected`` / ``matched`` / ``matched_pred`` / ``status``, ``dice``, ``score``;
    * ``None``: with ``gt`` and ``pred``, the metrics are computed here (``lesion_metrics_case(gt, pred, spacing,
      **metric_kwargs)``); with one label map only, its lesions (metric numbering, no status).
    """
    from plan_lite.metrics.lesion import equivalent_radius, lesion_metrics_case

    vox_mm3 = float(np.prod([float(s) for s in spacing]))
    if isinstance(lesions, Mapping):
        return _rows_from_metrics(lesions, gt, pred, connectivity)
    if lesions is None:
        if gt is not None and pred is not None:
            m = lesion_metrics_case(gt, pred, spacing, connectivity=connectivity, details=True, **metric_kwargs)
            return _rows_from_metrics(m, gt, pred, connectivity)
        label = gt if gt is not None else pred
        if label is None:
            return []
        regs = lesion_regions(label, None, connectivity)
        return [LesionRow("gt" if gt is not None else "pred", i, _type_name(r["label"]),
                          float(equivalent_radius(r["voxels"] * vox_mm3)), "", None, r["centroid"], r["z_range"],
                          r["label"]) for i, r in regs.items()]
    dice = {int(p["gt"]): float(p["dice"]) for p in (pairs or [])}
    regions: dict[int, dict[str, Any]] | None = None
    snap_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for i, les in enumerate(lesions, start=1):
        lid = int(les.get("id", i))
        z_range = None
        label = les.get("label")
        if "centroid" in les or "center_voxel_zyx" in les:
            c = les.get("centroid", les.get("center_voxel_zyx"))
            centroid = tuple(float(v) for v in c)
        elif "center_mm" in les:
            if affine is None:
                raise PlanLiteError("viz: lesions with 'center_mm' (world mm, lesions.json) need the case's affine "
                                    "(affine=case.affine)")
            centroid = world_to_voxel(les["center_mm"], affine)
        elif gt is not None:  # the metrics' gt_lesions: find them by id
            if regions is None:
                regions = lesion_regions(gt, pred, connectivity)
                _check_ids(regions, [d for d in lesions if "id" in d], "listed")
            centroid, z_range = regions[lid]["centroid"], regions[lid]["z_range"]
            label = label if label is not None else regions[lid]["label"]
        else:
            raise PlanLiteError(f"viz: lesion {lid} has no position: give 'centroid' (voxel z, y, x), 'center_mm' "
                                "with affine=, or the label map gt= to find metric lesions by id")
        if z_range is None and gt is not None and label is not None:  # the rasterised lesion nearest the centre
            snapped = _snap(gt, int(label), centroid, spacing, snap_cache)
            if snapped is not None:
                centroid, z_range = snapped
        if z_range is None and les.get("radius_mm") is not None:
            rz = float(les["radius_mm"]) / float(spacing[0])
            z_range = (int(np.floor(centroid[0] - rz)), int(np.ceil(centroid[0] + rz)))
        typ = les.get("type", label)
        status = _status(les)
        source = "pred" if status == "false positive" else ("gt" if status else "listed")
        d = les.get("dice", dice.get(lid))
        score = les.get("score", les.get("probability"))
        rows.append(LesionRow(source, lid, _type_name(typ),
                              None if les.get("radius_mm") is None else float(les["radius_mm"]), status,
                              None if d is None else float(d), centroid, z_range,  # type: ignore[arg-type]
                              None if label is None else int(label), None if score is None else float(score)))
    return rows


# ---------------------------------------------------------------------------------------------------- widget
def _phase_index(names: list[str], phase: str | int | None) -> int:
    if phase is None:
        return names.index("pv") if "pv" in names else 0
    if isinstance(phase, (int, np.integer)):
        if not 0 <= int(phase) < len(names):
            raise PlanLiteError(f"viz: phase {phase} outside 0..{len(names) - 1}")
        return int(phase)
    if phase not in names:
        raise PlanLiteError(f"viz: unknown phase {phase!r}; the image has {', '.join(names)}")
    return names.index(phase)


def lesion_browser(image: np.ndarray, spacing: Sequence[float], gt: np.ndarray | None = None,
                   pred: np.ndarray | None = None,
                   lesions: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None, *,
                   pairs: Sequence[Mapping[str, Any]] | None = None, affine: np.ndarray | None = None,
                   phase: str | int | None = None, phases: Sequence[str] | None = None,
                   window: str | tuple[float, float] = "liver", crop: bool = True,
                   margin_mm: float = DEFAULT_MARGIN_MM, max_voxels: int = DEFAULT_MAX_VOXELS,
                   height: int = 520, opacity: float = 0.7, title: str | None = None) -> Any:
    """An interactive lesion browser (NiiVue multiplanar + 3D view, label overlays, lesion table).

    Args:
        image: (C, D, H, W) or (D, H, W) CT in HU.
        spacing: (z, y, x) mm.
        gt: (D, H, W) ground-truth label map, shown as an overlay in ``LABEL_COLORS``.
        pred: (D, H, W) predicted label map, a second overlay.
        lesions: the lesion table: a ``lesion_metrics_case(..., details=True)`` result, a list of lesion dicts
            (``lesions.json`` entries, ``plan-lite predict`` lesions, the metrics' ``gt_lesions``), or ``None``
            (computed from ``gt`` and ``pred``); see :func:`lesion_rows`.
        pairs: the metrics' ``pairs`` (Dice per GT lesion) when ``lesions`` is a ``gt_lesions`` list.
        affine: the case's NIfTI affine: converts ``center_mm`` and orients the display (anterior up).
        phase: initial phase (name or channel index; default PV when there is one).
        phases: channel names (default NC / LA / PV).
        window: ``"liver"``, ``"abdomen"``, ``"bone"`` or (level, width) in HU.
        crop: crop to the liver and lesions (of ``gt``, else ``pred``) plus ``margin_mm``.
        max_voxels: the volumes are strided until they have at most this many voxels (widget state size).
        height: viewer height in pixels.
        opacity: overlay opacity.
        title: a line above the controls.

    Returns:
        The browser widget (an ``ipywidgets.HBox``; ``.viewer`` is the ``ipyniivue.NiiVue``, ``.select(i)``
        chooses lesion row ``i``). In the static book it renders from the notebook's widget state; the controls
        need a live kernel.
    """
    from plan_lite.viz.browser_widget import LesionBrowser

    img = as_channels(image)
    c, d, h, w = img.shape
    for name, arr in (("gt", gt), ("pred", pred)):
        if arr is not None and np.asarray(arr).shape != (d, h, w):
            raise PlanLiteError(f"viz: {name} shape {np.asarray(arr).shape} does not match image {(d, h, w)}")
    gt = None if gt is None else np.asarray(gt)
    pred = None if pred is None else np.asarray(pred)
    names = phase_names(c, phases)
    p = _phase_index(names, phase)
    rows = lesion_rows(spacing, gt, pred, lesions, pairs=pairs, affine=affine)
    region = (gt if gt is not None else pred) if crop else None
    grid = browser_grid((d, h, w), spacing, region, margin_mm, max_voxels, affine)
    return LesionBrowser(img, gt, pred, rows, grid, p, names, window, height, opacity, title)


__all__ = ["lesion_browser", "lesion_rows", "lesion_regions", "label_lut", "browser_grid", "BrowserGrid",
           "LesionRow", "nifti_gz", "world_to_voxel", "TABLE_HEADER", "DEFAULT_MAX_VOXELS"]
