"""Lesion-level detection metrics (paper Table 2; book/design_decisions.md#dd-evaluation, book page "Evaluation").

Protocol (each choice is a keyword of :func:`lesion_metrics_case`, defaults in brackets):

- **Lesions** are the ``connectivity``-connected components [26] of the binary tumour mask, all lesion labels
  7..14 merged (``plan_lite.labels.LESION_LABELS``), labelled with ``cc3d``.
- **Radius** of a lesion = equivalent-sphere radius ``(3 V / 4 pi)^(1/3)`` with V in mm^3 (voxel count times
  the product of the (z, y, x) spacing; only the volume matters, not the axis order).
- **Small lesions** (radius < ``min_radius_mm`` [3 mm]) are ignored on both sides: such GT lesions are not counted
  for recall (no FN), such predicted lesions are dropped (no FP). A kept prediction left unmatched by the main
  matching that matches (same rule, one-to-one) an ignored GT lesion is neither TP nor FP.
- **Matching** is one-to-one among pairs with lesion Dice > ``dice_threshold`` [0.2] (strictly greater).
  ``matching="optimal"`` [default] maximises the number of matched pairs, ties broken by the larger total Dice
  (``scipy.optimize.linear_sum_assignment`` on the weight ``BIG * 1 + dice`` with ``BIG = n + 1``, so one more
  pair always outweighs any Dice sum). ``matching="greedy"`` (highest Dice first) is there for comparison; it is
  not maximal in general (tests/test_metrics.py shows a case).
- Lesion Dice comes from overlap counts (``bincount``/``unique`` on the joint labelling), never per-pair masks.
- **Recall by size**: GT lesions binned by radius with edges ``radius_bins`` [(3, 5, 10, 20)] -> ``[3,5)``,
  ``[5,10)``, ``[10,20)``, ``[20,inf)``.
- **Lesion type** = majority label inside the lesion (ties -> smaller label), compared between each matched GT
  lesion and its predicted lesion.
"""

from __future__ import annotations

import math

import numpy as np

from plan_lite.labels import LESION_LABELS

_LO, _HI = min(LESION_LABELS), max(LESION_LABELS)
_NT = _HI - _LO + 1
assert tuple(range(_LO, _HI + 1)) == tuple(LESION_LABELS)  # contiguous: a range test is exact

DEFAULT_RADIUS_BINS: tuple[float, ...] = (3.0, 5.0, 10.0, 20.0)


def tumor_mask(label: np.ndarray) -> np.ndarray:
    """Binary tumour mask: any lesion label 7..14 (ignore label 100 and organs are background)."""
    label = np.asarray(label)
    if label.dtype.kind == "u":  # one subtraction with wrap-around, then one comparison
        return (label - label.dtype.type(_LO)) <= (_HI - _LO)
    return (label >= _LO) & (label <= _HI)


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a 3D mask (empty slices for an empty mask)."""
    z = np.flatnonzero(mask.any(axis=(1, 2)))
    if len(z) == 0:
        return (slice(0, 0),) * 3
    slab = mask[z[0]:z[-1] + 1]
    y = np.flatnonzero(slab.any(axis=(0, 2)))
    x = np.flatnonzero(slab.any(axis=(0, 1)))
    return slice(z[0], z[-1] + 1), slice(y[0], y[-1] + 1), slice(x[0], x[-1] + 1)


def equivalent_radius(volume_mm3) -> np.ndarray:
    """Equivalent-sphere radius ``(3 V / 4 pi)^(1/3)`` in mm."""
    return np.cbrt(3.0 * np.asarray(volume_mm3, dtype=np.float64) / (4.0 * math.pi))


def bin_names(radius_bins=DEFAULT_RADIUS_BINS) -> list[str]:
    """``["[3,5)", "[5,10)", "[10,20)", "[20,inf)"]`` for the default edges."""
    edges = [float(e) for e in radius_bins]
    return [f"[{a:g},{b:g})" for a, b in zip(edges[:-1], edges[1:])] + [f"[{edges[-1]:g},inf)"]


def radius_bin_index(radius, radius_bins=DEFAULT_RADIUS_BINS) -> np.ndarray:
    """Bin index per radius (-1 below the first edge)."""
    return np.searchsorted(np.asarray(radius_bins, dtype=np.float64), np.asarray(radius), side="right") - 1


def match_lesions(dice_pairs: list[tuple[int, int, float]], dice_threshold: float = 0.2,
                  matching: str = "optimal") -> list[tuple[int, int, float]]:
    """One-to-one matching of ``(gt_id, pred_id, dice)`` candidate pairs; only ``dice > dice_threshold`` is eligible.

    ``optimal``: maximum number of pairs, then maximum total Dice. ``greedy``: highest Dice first.
    Returns the matched ``(gt_id, pred_id, dice)`` sorted by gt id.
    """
    elig = [(g, p, d) for g, p, d in dice_pairs if d > dice_threshold]
    if not elig:
        return []
    if matching == "greedy":
        used_g, used_p, out = set(), set(), []
        for g, p, d in sorted(elig, key=lambda t: (-t[2], t[0], t[1])):
            if g not in used_g and p not in used_p:
                used_g.add(g)
                used_p.add(p)
                out.append((g, p, d))
        return sorted(out)
    if matching != "optimal":
        raise ValueError(f"matching must be 'optimal' or 'greedy', got {matching!r}")
    from scipy.optimize import linear_sum_assignment

    gids = sorted({g for g, _, _ in elig})
    pids = sorted({p for _, p, _ in elig})
    gi = {g: i for i, g in enumerate(gids)}
    pi = {p: i for i, p in enumerate(pids)}
    big = float(min(len(gids), len(pids)) + 1)  # > any Dice sum, so cardinality comes first
    w = np.zeros((len(gids), len(pids)))
    for g, p, d in elig:
        w[gi[g], pi[p]] = big + d
    rows, cols = linear_sum_assignment(w, maximize=True)
    return sorted((gids[r], pids[c], float(w[r, c] - big)) for r, c in zip(rows, cols) if w[r, c] > 0)


def _components(mask: np.ndarray, connectivity: int):
    import cc3d

    cc, n = cc3d.connected_components(mask, connectivity=connectivity, return_N=True)
    return cc, int(n)


def lesion_metrics_case(gt: np.ndarray, pred: np.ndarray, spacing, *, min_radius_mm: float = 3.0,
                        dice_threshold: float = 0.2, matching: str = "optimal", connectivity: int = 26,
                        radius_bins=DEFAULT_RADIUS_BINS, details: bool = True) -> dict:
    """Lesion detection counts of one case. ``gt``/``pred``: (D, H, W) label maps, ``spacing``: (z, y, x) mm.

    Returns ``tp``, ``fp``, ``fn``, ``n_gt``/``n_pred`` (kept lesions), ``n_gt_ignored``, ``n_pred_dropped``,
    ``n_pred_ignored``, ``pairs`` (matched: gt/pred ids, dice, radii, types), ``by_radius``
    ({bin: {"gt", "detected"}}), ``type_pairs`` ([gt_type, pred_type] per match), ``pred_label_voxels`` and
    ``gt_label_voxels`` ({label: voxels}); with ``details`` also ``gt_lesions`` / ``pred_lesions`` (one dict each).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"gt and pred must be 3D arrays of one shape, got {gt.shape} and {pred.shape}")
    voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    gmask, pmask = tumor_mask(gt), tumor_mask(pred)
    box = _bbox(gmask | pmask)  # all work below happens inside the tumour bounding box
    gmask, pmask = np.ascontiguousarray(gmask[box]), np.ascontiguousarray(pmask[box])
    gt, pred = np.ascontiguousarray(gt[box]), np.ascontiguousarray(pred[box])
    gcc, ng = _components(gmask, connectivity)
    pcc, npr = _components(pmask, connectivity)
    gidx, pidx = np.flatnonzero(gmask), np.flatnonzero(pmask)
    gl = gcc.ravel()[gidx].astype(np.int64)
    pl = pcc.ravel()[pidx].astype(np.int64)
    gvals = gt.ravel()[gidx].astype(np.int64) - _LO
    pvals = pred.ravel()[pidx].astype(np.int64) - _LO
    # per-lesion label histograms -> voxel counts and majority type (argmax: first = smaller label on ties)
    ghist = np.bincount(gl * _NT + gvals, minlength=(ng + 1) * _NT).reshape(ng + 1, _NT)
    phist = np.bincount(pl * _NT + pvals, minlength=(npr + 1) * _NT).reshape(npr + 1, _NT)
    gvox, pvox = ghist.sum(1), phist.sum(1)
    gtype, ptype = ghist.argmax(1) + _LO, phist.argmax(1) + _LO
    grad, prad = equivalent_radius(gvox * voxel_mm3), equivalent_radius(pvox * voxel_mm3)
    gkeep = grad >= min_radius_mm
    pkeep = prad >= min_radius_mm
    # overlaps from the joint labelling of voxels in both masks
    both = gcc.ravel()[pidx].astype(np.int64)  # GT component under each predicted voxel
    sel = both > 0
    keys = both[sel] * (npr + 1) + pl[sel]
    if (ng + 1) * (npr + 1) <= 4_000_000:
        cnt = np.bincount(keys, minlength=(ng + 1) * (npr + 1))
        ukeys = np.flatnonzero(cnt)
        ucnt = cnt[ukeys]
    else:
        ukeys, ucnt = np.unique(keys, return_counts=True)
    og, op = ukeys // (npr + 1), ukeys % (npr + 1)
    odice = 2.0 * ucnt / (gvox[og] + pvox[op])
    main, side = [], []
    for g, p, d in zip(og.tolist(), op.tolist(), odice.tolist()):
        if not pkeep[p]:
            continue
        (main if gkeep[g] else side).append((g, p, d))
    matched = match_lesions(main, dice_threshold, matching)
    matched_p = {p for _, p, _ in matched}
    ignored_p = {p for _, p, _ in match_lesions([t for t in side if t[1] not in matched_p], dice_threshold, matching)}

    kept_g = np.flatnonzero(gkeep[1:]) + 1
    kept_p = np.flatnonzero(pkeep[1:]) + 1
    tp = len(matched)
    fp = int(len(kept_p) - tp - len(ignored_p))
    fn = int(len(kept_g) - tp)
    names = bin_names(radius_bins)
    gbin = radius_bin_index(grad, radius_bins)
    by_radius = {nm: {"gt": 0, "detected": 0} for nm in names}
    for g in kept_g.tolist():
        if gbin[g] >= 0:
            by_radius[names[gbin[g]]]["gt"] += 1
    pairs = []
    for g, p, d in matched:
        if gbin[g] >= 0:
            by_radius[names[gbin[g]]]["detected"] += 1
        pairs.append({"gt": g, "pred": p, "dice": d, "gt_radius_mm": float(grad[g]),
                      "pred_radius_mm": float(prad[p]), "gt_type": int(gtype[g]), "pred_type": int(ptype[p])})
    out = {
        "tp": tp, "fp": fp, "fn": fn, "n_gt": int(len(kept_g)), "n_pred": int(len(kept_p)),
        "n_gt_ignored": int(ng - len(kept_g)), "n_pred_dropped": int(npr - len(kept_p)),
        "n_pred_ignored": len(ignored_p), "pairs": pairs, "by_radius": by_radius,
        "type_pairs": [[q["gt_type"], q["pred_type"]] for q in pairs],
        "gt_label_voxels": {int(k + _LO): int(v) for k, v in enumerate(ghist[1:].sum(0)) if v},
        "pred_label_voxels": {int(k + _LO): int(v) for k, v in enumerate(phist[1:].sum(0)) if v},
    }
    if details:
        gm = {g: p for g, p, _ in matched}
        out["gt_lesions"] = [
            {"id": g, "voxels": int(gvox[g]), "volume_mm3": float(gvox[g] * voxel_mm3), "radius_mm": float(grad[g]),
             "type": int(gtype[g]), "ignored": not bool(gkeep[g]), "matched_pred": gm.get(g)}
            for g in range(1, ng + 1)]
        out["pred_lesions"] = [
            {"id": p, "voxels": int(pvox[p]), "volume_mm3": float(pvox[p] * voxel_mm3), "radius_mm": float(prad[p]),
             "type": int(ptype[p]),
             "status": ("dropped" if not pkeep[p] else "tp" if p in matched_p else
                        "ignored" if p in ignored_p else "fp")}
            for p in range(1, npr + 1)]
    return out


def summarize_lesions(cases: list[dict], radius_bins=DEFAULT_RADIUS_BINS, ignore_other_type: bool = False) -> dict:
    """Sum per-case results of :func:`lesion_metrics_case` into the ``lesion`` block of metrics.json.

    Precision/recall from counts summed over all cases (None when undefined). ``type_accuracy`` over matched GT
    lesions; ``ignore_other_type`` leaves out GT type 14 "other" (LiTS/MSD, where the type is unknown).
    """
    tp = sum(c["tp"] for c in cases)
    fp = sum(c["fp"] for c in cases)
    fn = sum(c["fn"] for c in cases)
    by = {nm: {"gt": 0, "detected": 0} for nm in bin_names(radius_bins)}
    for c in cases:
        for nm, v in c["by_radius"].items():
            by[nm]["gt"] += v["gt"]
            by[nm]["detected"] += v["detected"]
    for v in by.values():
        v["recall"] = v["detected"] / v["gt"] if v["gt"] else None
    tps = [tuple(t) for c in cases for t in c["type_pairs"]]
    if ignore_other_type:
        tps = [t for t in tps if t[0] != _HI]
    return {
        "tp": tp, "fp": fp, "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "recall_by_radius": by,
        "type_accuracy": (sum(g == p for g, p in tps) / len(tps)) if tps else None,
        "type_n": len(tps),
        "n_gt_ignored": sum(c["n_gt_ignored"] for c in cases),
        "n_pred_dropped": sum(c["n_pred_dropped"] for c in cases),
        "n_pred_ignored": sum(c["n_pred_ignored"] for c in cases),
        "mean_matched_dice": (float(np.mean([q["dice"] for c in cases for q in c["pairs"]]))
                              if tp else None),
    }
