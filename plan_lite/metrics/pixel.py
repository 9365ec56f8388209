"""Pixel-level tumour segmentation Dice (paper Table 2, "Dice" column).

Binary tumour mask = all lesion labels 7..14 merged. Per-case Dice ``2|G n P| / (|G| + |P|)``; an empty GT with an
empty prediction scores 1 (an empty GT with any predicted tumour scores 0). The reported ``dice`` is the mean over
cases with a non-empty GT (the paper's convention); ``dice_incl_empty`` is the mean over all cases.
"""

from __future__ import annotations

import numpy as np

from plan_lite.metrics.lesion import tumor_mask


def dice_from_counts(inter: int, n_gt: int, n_pred: int) -> float:
    """Dice from voxel counts; 1.0 when both are empty."""
    denom = n_gt + n_pred
    return 1.0 if denom == 0 else 2.0 * inter / denom


def mask_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two binary masks of one shape (1.0 when both are empty)."""
    g, p = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: {g.shape} vs {p.shape}")
    return dice_from_counts(int(np.count_nonzero(g & p)), int(np.count_nonzero(g)), int(np.count_nonzero(p)))


def pixel_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Binary tumour Dice of two (D, H, W) label maps (1.0 when both have no tumour)."""
    return mask_dice(tumor_mask(np.asarray(gt)), tumor_mask(np.asarray(pred)))


def summarize_pixel(per_case: list[dict]) -> dict:
    """``{"dice", "dice_incl_empty", "n_nonempty"}`` from per-case ``{"dice", "gt_empty"}`` (None when undefined)."""
    ne = [c["dice"] for c in per_case if not c["gt_empty"]]
    al = [c["dice"] for c in per_case]
    return {"dice": float(np.mean(ne)) if ne else None,
            "dice_incl_empty": float(np.mean(al)) if al else None,
            "n_nonempty": len(ne)}
