"""3D view of the liver and its lesions: the NiiVue lesion browser (itkwidgets on request), with static fallbacks.

``view3d`` is a thin wrapper kept for the lessons that call it: in a live kernel it returns
:func:`plan_lite.viz.browser.lesion_browser` (NiiVue's multiplanar + 3D render, offline); the k3d voxel view and its
HTML snapshots were retired (one tested 3D path). Rules: the optional viewer packages are imported lazily inside the
function, itkwidgets never at import time and never in CI (it loads its viewer from the internet and hangs headless
kernels); with ``CI`` set, ``PLAN_LITE_STATIC_VIEWS=1`` or no live frontend the function returns a
:func:`plan_lite.viz.montage` figure.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LESION_LABELS, LIVER_LABEL
from plan_lite.viz.montage import as_channels, montage


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


def view3d(image: np.ndarray, label: np.ndarray, spacing: Sequence[float], backend: str = "niivue",
           snapshot_path: str | os.PathLike | None = None, max_voxels: int | None = None,
           pred: np.ndarray | None = None, lesions: Any = None, **montage_kwargs: Any) -> Any:
    """3D liver + lesions.

    Args:
        image: (C, D, H, W) or (D, H, W) HU volume.
        label: (D, H, W) label map (the ground truth).
        spacing: (z, y, x) mm.
        backend: ``"niivue"`` (default, offline: :func:`~plan_lite.viz.browser.lesion_browser`) or
            ``"itkwidgets"`` (the ``itk`` extra; needs internet + JupyterLab 4; never in CI). ``"k3d"`` is read as
            ``"niivue"`` (the k3d view was retired).
        snapshot_path: ignored with a warning (k3d HTML snapshots were retired; the browser is stored in the
            notebook's widget state and drawn by the book).
        max_voxels: voxel budget of the browser's volumes (default ``DEFAULT_MAX_VOXELS`` of the browser, 1.5 M).
        pred, lesions: passed to the browser (prediction overlay, lesion table).

    Returns:
        The lesion browser (or itkwidgets viewer) in a live kernel; a montage ``Figure`` when static views are
        requested (``CI``, ``PLAN_LITE_STATIC_VIEWS=1``, no frontend) or when the backend is not installed.
    """
    if backend == "k3d":
        backend = "niivue"
    if backend not in ("niivue", "itkwidgets"):
        raise PlanLiteError(f"viz: unknown 3D backend {backend!r} (niivue or itkwidgets)")
    label = np.asarray(label)
    if label.shape != as_channels(image).shape[1:]:
        raise PlanLiteError(f"viz: label shape {label.shape} does not match image {as_channels(image).shape[1:]}")
    if snapshot_path is not None:
        warnings.warn("view3d: snapshot_path is ignored (k3d snapshots were retired; the NiiVue browser is saved "
                      "in the notebook's widget state and the book draws it)", stacklevel=2)
    if static_views_requested():
        return montage(image, label, spacing=spacing, **montage_kwargs)
    if backend == "itkwidgets":
        try:
            import itkwidgets  # optional, lazily: installs a cell watcher that hangs headless kernels
        except ImportError:
            warnings.warn("itkwidgets is not installed (pip install 'plan-lite[itk]'); showing a montage",
                          stacklevel=2)
            return montage(image, label, spacing=spacing, **montage_kwargs)
        return itkwidgets.view(as_channels(image)[0].astype(np.float32), label_image=label.astype(np.uint8))
    try:
        from plan_lite.viz.browser import DEFAULT_MAX_VOXELS, lesion_browser

        return lesion_browser(image, spacing, gt=label, pred=pred, lesions=lesions,
                              max_voxels=max_voxels or DEFAULT_MAX_VOXELS)
    except PlanLiteError as exc:  # ipyniivue missing
        warnings.warn(f"{exc}; showing a montage", stacklevel=2)
        return montage(image, label, spacing=spacing, **montage_kwargs)


__all__ = ["view3d", "downsample_label", "static_views_requested"]
