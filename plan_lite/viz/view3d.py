"""3D view of the liver and its lesions (k3d voxels; itkwidgets on request), with static fallbacks.

Rules (notebook_stack.md Sec. 4-5): the optional viewer package is imported lazily inside the function, itkwidgets
never at import time and never in CI (it hangs headless kernels and needs the network); with ``CI`` set,
``PLAN_LITE_STATIC_VIEWS=1`` or no live frontend the function returns a :func:`plan_lite.viz.montage` figure. A
k3d snapshot (``plot.get_snapshot()``: one self-contained HTML file, no CDN) is still written when
``snapshot_path`` is given, because the book embeds it in an ``<iframe>``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LESION_LABELS, LIVER_LABEL
from plan_lite.utils import atomic_write_text
from plan_lite.viz.montage import LABEL_COLORS, as_channels, montage


def static_views_requested() -> bool:
    """True when interactive views must not be attempted: ``CI`` set, ``PLAN_LITE_STATIC_VIEWS=1``, or no live
    IPython kernel (plain Python, pytest)."""
    if os.environ.get("CI") or os.environ.get("PLAN_LITE_STATIC_VIEWS", "") not in ("", "0"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or getattr(shell, "kernel", None) is None


def downsample_label(label: np.ndarray, spacing: Sequence[float], max_voxels: int = 96 ** 3
                     ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Nearest-neighbour in-plane (then z) striding until the grid has at most ``max_voxels`` voxels.

    Returns the strided (z, y, x) label and its (z, y, x) spacing. Lesion voxels win over liver voxels in every
    block (max of the lesion-ranked labels), so small lesions do not vanish.
    """
    lab = np.asarray(label)
    sz, sy, sx = (float(s) for s in spacing)
    fz = fyx = 1
    while lab.shape[0] // fz * (lab.shape[1] // fyx) * (lab.shape[2] // fyx) > max_voxels:
        if fyx * sy <= fz * sz or lab.shape[0] // fz <= 8:
            fyx += 1
        else:
            fz += 1
    if fz == fyx == 1:
        return lab, (sz, sy, sx)
    d, h, w = (lab.shape[0] // fz) * fz, (lab.shape[1] // fyx) * fyx, (lab.shape[2] // fyx) * fyx
    rank = np.zeros(256, dtype=np.int16)  # lesions (rank 2) > liver (1) > everything else (0)
    rank[LIVER_LABEL] = 1
    rank[list(LESION_LABELS)] = 2
    blocks = lab[:d, :h, :w].reshape(d // fz, fz, h // fyx, fyx, w // fyx, fyx).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(d // fz, h // fyx, w // fyx, -1)
    pick = np.argmax(rank[blocks.astype(np.intp)] * 256 + blocks, axis=-1)
    out = np.take_along_axis(blocks, pick[..., None], axis=-1)[..., 0]
    return out.astype(np.uint8), (sz * fz, sy * fyx, sx * fyx)


def _hex(color: str) -> int:
    return int(color.lstrip("#"), 16)


def k3d_plot(label: np.ndarray, spacing: Sequence[float], max_voxels: int = 96 ** 3, liver_opacity: float = 0.15,
             height: int = 480) -> Any:
    """A k3d plot: the liver as translucent voxels and every lesion label in its colour (``LABEL_COLORS``).

    Voxel grids are (z, y, x) as in k3d; ``bounds`` give physical mm so anisotropic spacing is displayed true to
    scale.
    """
    import k3d

    lab, (sz, sy, sx) = downsample_label(label, spacing, max_voxels)
    d, h, w = lab.shape
    bounds = [0.0, w * sx, 0.0, h * sy, 0.0, d * sz]
    plot = k3d.plot(height=height, grid_visible=False, menu_visibility=True, camera_auto_fit=True)
    liver = (lab == LIVER_LABEL).astype(np.uint8)
    if liver.any():
        plot += k3d.voxels(liver, color_map=[_hex(LABEL_COLORS[LIVER_LABEL])], opacity=liver_opacity,
                           outlines=False, bounds=bounds, name="liver")
    lesions = np.where(np.isin(lab, LESION_LABELS), lab - LESION_LABELS[0] + 1, 0).astype(np.uint8)
    if lesions.any():
        plot += k3d.voxels(lesions, color_map=[_hex(LABEL_COLORS[k]) for k in LESION_LABELS], opacity=1.0,
                           outlines=False, bounds=bounds, name="lesions")
    return plot


def write_snapshot(plot: Any, path: str | os.PathLike) -> Path:
    """Save ``plot.get_snapshot()`` (self-contained HTML, works offline) atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, plot.get_snapshot())
    path.chmod(0o644)  # a static web file (the temporary file was created private)
    return path


def view3d(image: np.ndarray, label: np.ndarray, spacing: Sequence[float], backend: str = "k3d",
           snapshot_path: str | os.PathLike | None = None, max_voxels: int = 96 ** 3, **montage_kwargs: Any) -> Any:
    """3D liver + lesions.

    Args:
        image: (C, D, H, W) or (D, H, W) HU volume (used by the itkwidgets backend and the static fallback).
        label: (D, H, W) label map.
        spacing: (z, y, x) mm.
        backend: ``"k3d"`` (default, offline) or ``"itkwidgets"`` (needs internet + JupyterLab 4; never in CI).
        snapshot_path: write a self-contained k3d HTML snapshot here (also in static mode); embed it in the book
            with ``<iframe src="../_static/3d/<case>.html">``.

    Returns:
        The k3d plot (or itkwidgets viewer) in a live kernel; a montage ``Figure`` when static views are requested
        (``CI``, ``PLAN_LITE_STATIC_VIEWS=1``, no frontend) or when the backend is not installed.
    """
    if backend not in ("k3d", "itkwidgets"):
        raise PlanLiteError(f"viz: unknown 3D backend {backend!r} (k3d or itkwidgets)")
    label = np.asarray(label)
    if label.shape != as_channels(image).shape[1:]:
        raise PlanLiteError(f"viz: label shape {label.shape} does not match image {as_channels(image).shape[1:]}")
    static = static_views_requested()
    plot = None
    if snapshot_path is not None or (not static and backend == "k3d"):
        try:
            plot = k3d_plot(label, spacing, max_voxels)
        except ImportError:
            if snapshot_path is not None:
                raise PlanLiteError("viz: k3d is not installed; cannot write the 3D snapshot "
                                    "(pip install 'plan-lite[notebooks]')") from None
            warnings.warn("k3d is not installed; showing a montage instead", stacklevel=2)
        if plot is not None and snapshot_path is not None:
            write_snapshot(plot, snapshot_path)
    if static:
        return montage(image, label, spacing=spacing, **montage_kwargs)
    if backend == "itkwidgets":
        try:
            import itkwidgets  # optional, lazily: installs a cell watcher that hangs headless kernels
        except ImportError:
            warnings.warn("itkwidgets is not installed (pip install 'plan-lite[itk]'); showing a montage",
                          stacklevel=2)
            return montage(image, label, spacing=spacing, **montage_kwargs)
        return itkwidgets.view(as_channels(image)[0].astype(np.float32), label_image=label.astype(np.uint8))
    if plot is None:
        return montage(image, label, spacing=spacing, **montage_kwargs)
    return plot


__all__ = ["view3d", "k3d_plot", "write_snapshot", "downsample_label", "static_views_requested"]
