"""Static slice montages of multi-phase CT with label and prediction overlays (matplotlib, Agg-safe).

Arrays are (z, y, x) = (D, H, W), images channel-first (C, D, H, W) in HU. Colours are keyed to
``plan_lite.labels.LABEL_NAMES`` (book/design_decisions.md#dd-d3), so every figure of the package uses the same colour
for the same class. Ground truth is drawn as solid contours, predictions as translucent fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LABEL_NAMES, LESION_LABELS, LIVER_LABEL, PHASES

# One colour per label of the fixed label map (0 = background is never drawn).
LABEL_COLORS: dict[int, str] = {
    0: "#000000",
    1: "#4daf4a",  # liver
    2: "#a6d854",  # gallbladder
    3: "#1f78b4",  # hepatic vessels
    4: "#984ea3",  # spleen
    5: "#ffd92f",  # stomach
    6: "#a65628",  # pancreas
    7: "#e41a1c",  # hcc
    8: "#ff7f00",  # icc
    9: "#f781bf",  # metastasis
    10: "#b2182b",  # hepatoblastoma
    11: "#00ced1",  # hemangioma
    12: "#7fffd4",  # fnh
    13: "#ffffff",  # cyst
    14: "#bdbdbd",  # other
}
assert set(LABEL_COLORS) == set(LABEL_NAMES)

# CT display windows as (level, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "liver": (60.0, 150.0),
    "abdomen": (40.0, 400.0),
    "bone": (300.0, 1500.0),
}


def resolve_window(window: str | tuple[float, float]) -> tuple[float, float]:
    """``"liver"`` / ``"abdomen"`` / ``"bone"`` or ``(level, width)`` -> ``(vmin, vmax)`` in HU."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise PlanLiteError(f"viz: unknown window {window!r}; choose from {', '.join(WINDOWS)} or (level, width)")
        level, width = WINDOWS[window]
    else:
        level, width = (float(v) for v in window)
    return level - width / 2.0, level + width / 2.0


def as_channels(image: np.ndarray) -> np.ndarray:
    """(D, H, W) or (C, D, H, W) -> (C, D, H, W)."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        return arr[None]
    if arr.ndim != 4:
        raise PlanLiteError(f"viz: image must be (D,H,W) or (C,D,H,W), got shape {arr.shape}")
    return arr


def phase_names(n_channels: int, phases: Sequence[str] | None = None) -> list[str]:
    """Row titles: given names, the standard NC/LA/PV names for 3 (or 1) channels, else ``ch0``..."""
    if phases is not None:
        if len(phases) != n_channels:
            raise PlanLiteError(f"viz: {len(phases)} phase names for {n_channels} channels")
        return list(phases)
    if n_channels <= len(PHASES):
        return list(PHASES[:n_channels])
    return [f"ch{i}" for i in range(n_channels)]


def lesion_components(label: np.ndarray, spacing: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Lesions of a label map: 26-connected components of every lesion label (7-14), largest first.

    Each dict has ``id`` (1-based), ``label``, ``type``, ``centroid`` (voxel z, y, x), ``z_range`` (first, last
    slice), ``voxels`` and ``radius_mm`` (radius of the sphere of equal volume; voxels if ``spacing`` is None).
    """
    from scipy import ndimage

    label = np.asarray(label)
    vox_mm3 = float(np.prod(spacing)) if spacing is not None else 1.0
    out: list[dict[str, Any]] = []
    for k in LESION_LABELS:
        mask = label == k
        if not mask.any():
            continue
        comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        for i, sl in enumerate(ndimage.find_objects(comps), start=1):
            sub = comps[sl] == i
            idx = np.argwhere(sub) + np.array([s.start for s in sl])
            voxels = int(sub.sum())
            out.append({
                "label": int(k), "type": LABEL_NAMES[k], "centroid": tuple(float(c) for c in idx.mean(0)),
                "z_range": (int(sl[0].start), int(sl[0].stop - 1)), "voxels": voxels,
                "radius_mm": float((3.0 * voxels * vox_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)),
            })
    out.sort(key=lambda d: -d["voxels"])
    for i, d in enumerate(out, start=1):
        d["id"] = i
    return out


def normalize_lesions(lesions: Sequence[dict[str, Any]] | None, label: np.ndarray | None,
                      spacing: Sequence[float] | None) -> list[dict[str, Any]]:
    """Lesion dicts with voxel ``centroid`` and ``z_range``.

    Accepts ``lesions.json`` entries (``center_mm`` + ``radius_mm``, needs ``spacing``), dicts that already carry a
    voxel ``centroid``, or ``None`` (then the components of ``label`` are used).
    """
    if lesions is None:
        return lesion_components(label, spacing) if label is not None else []
    out = []
    for i, les in enumerate(lesions, start=1):
        d = dict(les)
        d.setdefault("id", i)
        if "centroid" not in d:
            if "center_mm" not in d or spacing is None:
                raise PlanLiteError("viz: lesions need a voxel 'centroid', or 'center_mm' together with spacing")
            d["centroid"] = tuple(float(c) / float(s) for c, s in zip(d["center_mm"], spacing))
        if "z_range" not in d:
            rz = float(d.get("radius_mm", 0.0)) / float(spacing[0]) if spacing is not None else 0.0
            d["z_range"] = (int(np.floor(d["centroid"][0] - rz)), int(np.ceil(d["centroid"][0] + rz)))
        if "type" not in d and "label" in d:
            d["type"] = LABEL_NAMES.get(int(d["label"]), str(d["label"]))
        out.append(d)
    return out


def choose_slices(depth: int, n: int, lesions: Sequence[dict[str, Any]] = (), label: np.ndarray | None = None
                  ) -> list[int]:
    """``n`` slice indices: one through each lesion centroid first (largest lesions first), then evenly spaced
    slices over the liver's z extent (or the whole volume) fill the rest. Sorted, unique."""
    n = max(1, min(int(n), depth))
    picked: list[int] = []
    for les in lesions:
        z = int(round(float(les["centroid"][0])))
        if 0 <= z < depth and z not in picked:
            picked.append(z)
        if len(picked) >= n:
            break
    lo, hi = 0, depth - 1
    if label is not None and (np.asarray(label) == LIVER_LABEL).any():
        zs = np.where((np.asarray(label) == LIVER_LABEL).any(axis=(1, 2)))[0]
        lo, hi = int(zs[0]), int(zs[-1])
    for z in np.linspace(lo, hi, n + 2)[1:-1].round().astype(int):
        if len(picked) >= n:
            break
        if int(z) not in picked:
            picked.append(int(z))
    z = 0
    while len(picked) < n and z < depth:  # tiny volumes: take whatever is left
        if z not in picked:
            picked.append(z)
        z += 1
    return sorted(picked)


def label_rgba(label2d: np.ndarray, alpha: float = 0.45, labels: Sequence[int] | None = None) -> np.ndarray:
    """(H, W) label slice -> (H, W, 4) RGBA overlay in the label colours (background transparent)."""
    rgba = np.zeros(label2d.shape + (4,), dtype=np.float32)
    for k in np.unique(label2d):
        k = int(k)
        if k == 0 or k not in LABEL_COLORS or (labels is not None and k not in labels):
            continue
        r, g, b, _ = to_rgba(LABEL_COLORS[k])
        rgba[label2d == k] = (r, g, b, alpha)
    return rgba


def draw_slice(ax: Any, image2d: np.ndarray, window: str | tuple[float, float] = "liver",
               label2d: np.ndarray | None = None, pred2d: np.ndarray | None = None,
               anchors2d: np.ndarray | None = None, lesions: Sequence[dict[str, Any]] = (),
               z: int | None = None, aspect: float = 1.0) -> None:
    """Draw one CT slice on ``ax``: grey image, GT contours (gid ``gt``), prediction fill (gid ``pred``),
    anchor contours (gid ``anchors``, white dashed) and lesion ids for lesions whose z range covers ``z``."""
    vmin, vmax = resolve_window(window)
    ax.imshow(image2d, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", aspect=aspect)
    if pred2d is not None and np.any(pred2d):
        im = ax.imshow(label_rgba(pred2d), interpolation="nearest", aspect=aspect)
        im.set_gid("pred")
    if label2d is not None:
        for k in np.unique(label2d):
            k = int(k)
            if k == 0 or k not in LABEL_COLORS:
                continue
            cs = ax.contour((label2d == k).astype(np.float32), levels=[0.5], colors=[LABEL_COLORS[k]],
                            linewidths=1.2 if k in LESION_LABELS else 0.8)
            cs.set_gid("gt")
    if anchors2d is not None:
        masks = anchors2d if anchors2d.ndim == 3 else anchors2d[None]
        for m in masks:
            if np.any(m):
                cs = ax.contour(np.asarray(m, dtype=np.float32), levels=[0.5], colors=["white"],
                                linewidths=0.9, linestyles="dashed")
                cs.set_gid("anchors")
    if z is not None:
        for les in lesions:
            z0, z1 = les["z_range"]
            if z0 <= z <= z1:
                _, cy, cx = les["centroid"]
                ax.annotate(f"#{les['id']}", (cx, cy), xytext=(6, -6), textcoords="offset points",
                            color="yellow", fontsize=7, fontweight="bold", gid="lesion_id",
                            path_effects=[withStroke(linewidth=2, foreground="black")])
    ax.set_xticks([])
    ax.set_yticks([])


def legend_handles(labels_present: Sequence[int], gt: bool, pred: bool) -> list[Any]:
    """Legend entries: one colour patch per label present, plus the GT/prediction style key."""
    handles: list[Any] = [Patch(facecolor=LABEL_COLORS[k], edgecolor="k", label=f"{k} {LABEL_NAMES[k]}")
                          for k in sorted(labels_present) if k != 0]
    if gt:
        handles.append(Line2D([], [], color="k", lw=1.2, label="ground truth (contour)"))
    if pred:
        handles.append(Patch(facecolor="0.5", alpha=0.45, label="prediction (fill)"))
    return handles


def montage(image: np.ndarray, label: np.ndarray | None = None, pred: np.ndarray | None = None,
            slices: Sequence[int] | None = None, n: int = 6, phases: Sequence[str] | None = None,
            window: str | tuple[float, float] = "liver", lesions: Sequence[dict[str, Any]] | None = None,
            spacing: Sequence[float] | None = None, title: str | None = None, panel_size: float = 2.2,
            figure: Figure | None = None) -> Figure:
    """A grid of CT slices: rows are phases, columns are slices (through the lesions by default).

    Args:
        image: (C, D, H, W) or (D, H, W) in HU.
        label: (D, H, W) ground-truth label map (drawn as contours in the label colours), or None.
        pred: (D, H, W) predicted label map (translucent fill), or None.
        slices: explicit z indices; default: ``n`` slices chosen by :func:`choose_slices`.
        phases: row names (default NC / LA / PV).
        window: ``"liver"`` (W150/L60), ``"abdomen"`` (W400/L40), ``"bone"`` (W1500/L300) or (level, width).
        lesions: ``lesions.json`` entries (with ``spacing``) or dicts with voxel ``centroid``; default: the
            26-connected lesion components of ``label`` (or of ``pred``). Their ids are annotated.
        spacing: (z, y, x) mm; sets the in-plane aspect ratio and converts ``center_mm``.
        figure: draw into this figure (cleared) instead of a new one.

    Returns:
        The matplotlib ``Figure`` (no pyplot state is used, so it works with the Agg backend and in the book).
    """
    img = as_channels(image)
    c, d, h, w = img.shape
    for name, arr in (("label", label), ("pred", pred)):
        if arr is not None and np.asarray(arr).shape != (d, h, w):
            raise PlanLiteError(f"viz: {name} shape {np.asarray(arr).shape} does not match image {(d, h, w)}")
    rows = phase_names(c, phases)
    les = normalize_lesions(lesions, label if label is not None else pred, spacing)
    zs = list(slices) if slices is not None else choose_slices(d, n, les, label)
    if any(not 0 <= int(z) < d for z in zs):
        raise PlanLiteError(f"viz: slice indices {zs} outside 0..{d - 1}")
    aspect = float(spacing[1]) / float(spacing[2]) if spacing is not None else 1.0
    top_in, bottom_in, left_in = (0.55 if title else 0.3), 0.45, 0.3
    fig_w, fig_h = panel_size * len(zs) + left_in + 0.1, panel_size * c + top_in + bottom_in
    fig = figure if figure is not None else Figure(figsize=(fig_w, fig_h))
    fig_w, fig_h = fig.get_size_inches()
    fig.clear()
    axes = fig.subplots(c, len(zs), squeeze=False)
    for r in range(c):
        for j, z in enumerate(zs):
            ax = axes[r, j]
            draw_slice(ax, img[r, z], window, None if label is None else np.asarray(label)[z],
                       None if pred is None else np.asarray(pred)[z], lesions=les, z=int(z), aspect=aspect)
            if r == 0:
                ax.set_title(f"z = {z}", fontsize=8)
            if j == 0:
                ax.set_ylabel(rows[r], fontsize=9)
    present: set[int] = set()
    for arr in (label, pred):
        if arr is not None:
            present |= {int(k) for k in np.unique(np.asarray(arr)[zs]) if int(k) in LABEL_COLORS}
    handles = legend_handles(sorted(present - {0}), label is not None, pred is not None)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=left_in / fig_w, right=1 - 0.1 / fig_w, top=1 - top_in / fig_h,
                        bottom=(bottom_in if handles else 0.1) / fig_h, wspace=0.04, hspace=0.04)
    return fig


__all__ = ["LABEL_COLORS", "WINDOWS", "montage", "draw_slice", "choose_slices", "lesion_components",
           "normalize_lesions", "resolve_window", "label_rgba", "legend_handles"]
