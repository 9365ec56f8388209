"""Measured distributions of a generated dataset (from the files on disk), for the data card and the tests.

Means are taken as in the (meas) convention of ``data_cards/synthetic_liver_ct.md``: masks eroded in-plane (organs
by two voxels, away from the blurred organ/fat edge; lesions by one voxel), mean over voxels; organ HU over tumour +
normal subjects (hard subjects carry steatosis etc., §3); lesion HU as the mean of per-lesion means over lesions
with >= ``MIN_INTERIOR_VOXELS`` interior voxels. Size bins follow §4 (equivalent radius, mm).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from plan_lite.labels import LABEL_NAMES, LESION_LABELS

RADIUS_BINS: tuple[float, ...] = (0.0, 3.0, 5.0, 10.0, 20.0, 40.0, float("inf"))
MIN_INTERIOR_VOXELS = 20  # lesions with fewer interior voxels are too noisy for a mean (noise SD ~10 HU)
_S26 = np.ones((3, 3, 3), bool)
_CROSS = np.zeros((1, 3, 3), bool)
_CROSS[0, 1, :] = _CROSS[0, :, 1] = True


def radius_bin_names() -> list[str]:
    out = []
    for a, b in zip(RADIUS_BINS[:-1], RADIUS_BINS[1:]):
        out.append(f"[{a:g},{b:g})" if np.isfinite(b) else f">={a:g}")
    return out


def world_to_index(center_mm, affine) -> np.ndarray:
    """World (z, y, x) mm -> fractional array index (z, y, x) for a NIfTI affine of the (x, y, z) file."""
    z, y, x = center_mm
    ijk = np.linalg.inv(np.asarray(affine)) @ np.array([x, y, z, 1.0])
    return ijk[:3][::-1]


def match_lesions(label: np.ndarray, spacing, affine, lesions: list[dict]) -> list[dict]:
    """Find each listed lesion in the label map: the 26-connected component of its label nearest to its centre.

    Returns one dict per lesion: ``id``, ``label``, ``found``, ``voxels``, ``volume_mm3`` (rasterised),
    ``listed_mm3``, ``rel_err``, ``component`` (bool mask or None).
    """
    vox = float(np.prod(spacing))
    sp = np.asarray(spacing, float)
    out, cache = [], {}
    for les in lesions:
        lab = int(les["label"])
        if lab not in cache:
            cc, _ = ndimage.label(label == lab, _S26)
            cache[lab] = (cc, np.argwhere(cc > 0))
        cc, idx = cache[lab]
        rec = {"id": les["id"], "label": lab, "found": False, "voxels": 0, "volume_mm3": 0.0,
               "listed_mm3": float(les["volume_mm3"]), "rel_err": 1.0, "component": None}
        if len(idx):
            c = world_to_index(les["center_mm"], affine)
            j = int(np.argmin((((idx - c) * sp) ** 2).sum(1)))
            comp = cc == cc[tuple(idx[j])]
            n = int(comp.sum())
            rec.update(found=True, voxels=n, volume_mm3=n * vox, component=comp,
                       rel_err=abs(n * vox - rec["listed_mm3"]) / max(rec["listed_mm3"], 1e-9))
        out.append(rec)
    return out


def _summ(values) -> dict:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std()), "n": int(v.size)}


def dataset_statistics(root) -> dict:
    """Distributions measured on the written dataset at ``root`` (images, labels, cases.csv, lesions.json)."""
    from plan_lite.data.io import read_image

    root = Path(root)
    meta = json.loads((root / "dataset.json").read_text())
    phases = [meta["channel_names"][str(i)] for i in range(len(meta["channel_names"]))]
    with open(root / "cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lesions = json.loads((root / "lesions.json").read_text())
    groups: dict[str, int] = {}
    splits: dict[str, int] = {}
    liver_ml, noise = [], {p: [] for p in phases}
    organ = {k: {p: [] for p in phases} for k in range(1, 7)}
    les_hu: dict[str, dict[str, list]] = {}
    radii, by_type, by_variant, per_patient, rel_errs, unmatched = [], {}, {}, [], [], 0
    mult: dict[str, list[int]] = {}
    rad_by_type: dict[str, list[float]] = {}
    for row in rows:
        cid, grp = row["case"], row["group"]
        groups[grp] = groups.get(grp, 0) + 1
        splits[row["split"]] = splits.get(row["split"], 0) + 1
        label, spacing, affine = read_image(root / "labelsTr" / f"{cid}.nii.gz")
        imgs = [read_image(root / "imagesTr" / f"{cid}_{c:04d}.nii.gz")[0].astype(np.float32)
                for c in range(len(phases))]
        vox = float(np.prod(spacing))
        liver_ml.append(float(np.isin(label, (1, 3, *LESION_LABELS)).sum() * vox / 1000.0))
        air = ndimage.binary_erosion((label == 0) & (imgs[0] < -900), np.ones((1, 5, 5), bool))
        for p, im in zip(phases, imgs):
            if air.sum() > 100:
                noise[p].append(float(im[air].std()))
        if grp != "hard":
            for k in organ:
                m = ndimage.binary_erosion(label == k, _CROSS, iterations=2)
                if m.sum() >= 20:
                    for p, im in zip(phases, imgs):
                        organ[k][p].append(float(im[m].mean()))
        case_les = lesions.get(cid, [])
        if grp == "tumor":
            per_patient.append(len(case_les))
            counts: dict[str, int] = {}
            for les in case_les:
                counts[les["type"]] = counts.get(les["type"], 0) + 1
            for t, n in counts.items():
                mult.setdefault(t, []).append(n)
        for les, rec in zip(case_les, match_lesions(label, spacing, affine, case_les)):
            radii.append(float(les["radius_mm"]))
            rad_by_type.setdefault(les["type"], []).append(float(les["radius_mm"]))
            by_type[les["type"]] = by_type.get(les["type"], 0) + 1
            v = les.get("variant", les["type"])
            by_variant[v] = by_variant.get(v, 0) + 1
            if not rec["found"]:
                unmatched += 1
                continue
            rel_errs.append(rec["rel_err"])
            m = ndimage.binary_erosion(rec["component"], _CROSS)
            if m.sum() >= MIN_INTERIOR_VOXELS:
                for p, im in zip(phases, imgs):
                    les_hu.setdefault(v, {q: [] for q in phases})[p].append(float(im[m].mean()))
    bins = radius_bin_names()
    hist = np.histogram(radii, bins=RADIUS_BINS)[0] if radii else np.zeros(len(bins), int)
    hist_type = {t: dict(zip(bins, map(int, np.histogram(r, bins=RADIUS_BINS)[0]))) for t, r in rad_by_type.items()}
    return {
        "root": str(root), "n_cases": len(rows), "phases": phases, "spacing": meta.get("spacing"),
        "shape": meta.get("shape"), "seed": meta.get("seed"), "generator_version": meta.get("generator_version"),
        "groups": groups, "splits": splits,
        "liver_volume_ml": {**_summ(liver_ml), "min": float(np.min(liver_ml)), "max": float(np.max(liver_ml))},
        "noise_sd_air": {p: _summ(v) for p, v in noise.items()},
        "label_hu": {LABEL_NAMES[k]: {p: _summ(v) for p, v in organ[k].items()} for k in organ},
        "lesion_hu": {v: {p: _summ(x) for p, x in d.items()} for v, d in sorted(les_hu.items())},
        "lesions": {
            "total": len(radii), "per_tumor_patient": _summ(per_patient),
            "tumor_patients_without_lesion": int(sum(n == 0 for n in per_patient)),
            "by_type": dict(sorted(by_type.items())), "by_variant": dict(sorted(by_variant.items())),
            "multiplicity_by_type": {t: _summ(v) for t, v in sorted(mult.items())},
            "radius_hist": dict(zip(bins, map(int, hist))), "radius_hist_by_type": hist_type,
            "radius_min": float(min(radii)) if radii else float("nan"),
            "radius_max": float(max(radii)) if radii else float("nan"),
            "volume_max_rel_err": float(max(rel_errs)) if rel_errs else 0.0, "unmatched": unmatched,
        },
    }
