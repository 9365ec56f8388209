"""Preprocessing as in the paper (Sec. 3: nnU-Net pipeline, 0.7 x 0.7 x 5 mm) with MONAI transforms.

Steps (``Preprocessor.__call__``):

1. orientation to RAS (``Orientationd``);
2. nnU-Net CT normalisation per channel: clip to the foreground 0.5 / 99.5 percentiles, z-score with the
   foreground mean / std (``fit`` computes them inside label > 0 over the training cases, 10,000 sampled voxels
   per case, as nnU-Net's fingerprint does);
3. liver crop (``CropForegroundd``) around the liver (label 1 or a tumour label, or a given mask) with a margin
   in mm; skipped when ``crop=False`` or when there is no mask;
4. resampling to the target spacing (``Spacingd``: bilinear for images, nearest for labels).

Axis order: MONAI works on channel-first arrays in NIfTI file order (C, x, y, z) with a MetaTensor affine;
plan-lite arrays are (C, z, y, x). We transpose at the boundary only (``_to_monai`` / ``_from_monai``).

``meta`` (plain JSON types) holds the original shape and affine and the affine of the preprocessed grid;
``invert(label_zyx, meta)`` resamples a prediction from the preprocessed grid straight back to the original grid
with nearest neighbour through ``inv(A_pre) @ A_orig`` (undoing crop -> zero padding, resampling and orientation
in one exact step), so writing the result with the original affine overlays the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from plan_lite.data.io import Case
from plan_lite.errors import PlanLiteError
from plan_lite.labels import LESION_LABELS, LIVER_LABEL

LIVER_CROP_LABELS = (LIVER_LABEL, *LESION_LABELS)
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # NIfTI world axes (silences a MONAI FutureWarning)


@dataclass
class PreparedCase:
    """A preprocessed case: ``image`` (C, D, H, W) float32 normalised, ``label`` (D, H, W) uint8 or None."""

    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return self.meta.get("case_id", "")


def _to_monai(arr_czyx: np.ndarray, affine: np.ndarray):
    """(C, z, y, x) numpy -> MONAI MetaTensor (C, x, y, z) carrying the NIfTI affine."""
    from monai.data import MetaTensor

    t = torch.from_numpy(np.ascontiguousarray(np.transpose(arr_czyx, (0, 3, 2, 1))))
    return MetaTensor(t, affine=torch.as_tensor(np.asarray(affine, dtype=np.float64)))


def _from_monai(t) -> tuple[np.ndarray, np.ndarray]:
    """MetaTensor (C, x, y, z) -> ((C, z, y, x) numpy, affine 4x4 float64)."""
    arr = np.ascontiguousarray(np.transpose(t.detach().cpu().numpy(), (0, 3, 2, 1)))
    return arr, np.asarray(t.affine.cpu().numpy(), dtype=np.float64)


class Preprocessor:
    """nnU-Net-style CT preprocessing (paper Sec. 3); see the module docstring for the steps and ``meta``."""

    def __init__(self, spacing=(5.0, 0.7, 0.7), clip_percentiles=(0.5, 99.5), crop_margin_mm: float = 20.0,
                 stats: dict | None = None, crop: bool = True, samples_per_case: int = 10000, seed: int = 0):
        self.spacing = tuple(float(s) for s in spacing)
        self.clip_percentiles = tuple(float(p) for p in clip_percentiles)
        self.crop_margin_mm = float(crop_margin_mm)
        self.crop = bool(crop)
        self.samples_per_case = int(samples_per_case)
        self.seed = int(seed)
        self.stats = _plain_stats(stats) if stats is not None else None

    # ----------------------------------------------------------------------------------------- stats
    def fit(self, cases: Iterable[Case]) -> Preprocessor:
        """Per-channel foreground HU statistics (inside label > 0) of ``cases`` (an ``MSDDataset`` or Cases)."""
        rng = np.random.default_rng(self.seed)
        samples: list[np.ndarray] = []
        for case in cases:
            if case.label is None:
                continue
            idx = np.flatnonzero(case.label.ravel() > 0)
            if idx.size == 0:
                continue
            if idx.size > self.samples_per_case:
                idx = rng.choice(idx, self.samples_per_case, replace=False)
            samples.append(case.image.reshape(case.image.shape[0], -1)[:, idx].astype(np.float64))
        if not samples:
            raise PlanLiteError("preprocess: no labelled foreground voxels to fit intensity statistics on")
        if len({s.shape[0] for s in samples}) > 1:
            raise PlanLiteError("preprocess: cases have different channel counts")
        v = np.concatenate(samples, axis=1)
        lo, hi = self.clip_percentiles
        self.stats = {
            "mean": [float(x) for x in v.mean(1)], "std": [float(x) for x in v.std(1)],
            "lower": [float(x) for x in np.percentile(v, lo, axis=1)],
            "upper": [float(x) for x in np.percentile(v, hi, axis=1)],
            "clip_percentiles": [lo, hi], "num_voxels": int(v.shape[1]),
        }
        return self

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this preprocessor (plain floats/lists: goes into checkpoints)."""
        return {"spacing": list(self.spacing), "clip_percentiles": list(self.clip_percentiles),
                "crop_margin_mm": self.crop_margin_mm, "crop": self.crop, "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        return cls(spacing=d["spacing"], clip_percentiles=d.get("clip_percentiles", (0.5, 99.5)),
                   crop_margin_mm=d.get("crop_margin_mm", 20.0), stats=d.get("stats"), crop=d.get("crop", True))

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """nnU-Net CTNormalization per channel: clip to [lower, upper], subtract mean, divide by std."""
        if self.stats is None:
            raise PlanLiteError("preprocess: no intensity statistics (call fit() or pass stats=)")
        n = len(self.stats["mean"])
        if image.shape[0] != n:
            raise PlanLiteError(f"preprocess: image has {image.shape[0]} channels, statistics are for {n}")
        out = np.empty(image.shape, np.float32)
        for c in range(n):
            lo, hi = self.stats["lower"][c], self.stats["upper"][c]
            out[c] = (np.clip(image[c], lo, hi) - self.stats["mean"][c]) / max(self.stats["std"][c], 1e-8)
        return out

    # -------------------------------------------------------------------------------------- forward
    def __call__(self, case: Case, liver_mask: np.ndarray | None = None, crop: bool | None = None) -> PreparedCase:
        """Orient, normalise, crop to the liver (+ margin) and resample ``case`` (see module docstring)."""
        from monai.transforms import CropForegroundd, Orientationd, Spacingd

        crop = self.crop if crop is None else crop
        shape = tuple(int(s) for s in case.image.shape[1:])
        data = {"image": _to_monai(self.normalize(case.image), case.affine)}
        keys = ["image"]
        if case.label is not None:
            if tuple(case.label.shape) != shape:
                raise PlanLiteError(f"{case.case_id}: label shape {case.label.shape} differs from image {shape}")
            data["label"] = _to_monai(case.label[None].astype(np.float32), case.affine)
            keys.append("label")
        mask = liver_mask
        if mask is None and case.label is not None:
            mask = np.isin(case.label, LIVER_CROP_LABELS)
        if mask is not None and tuple(mask.shape) != shape:
            raise PlanLiteError(f"{case.case_id}: liver mask shape {mask.shape} differs from image {shape}")
        do_crop = bool(crop and mask is not None and mask.any())
        if do_crop:
            data["mask"] = _to_monai(np.asarray(mask, dtype=np.float32)[None], case.affine)
        all_keys = keys + (["mask"] if do_crop else [])
        data = Orientationd(keys=all_keys, axcodes="RAS", labels=_RAS_LABELS)(data)
        if do_crop:
            sp_xyz = np.sqrt((data["image"].affine.numpy()[:3, :3] ** 2).sum(0))
            margin = [int(math.ceil(self.crop_margin_mm / s)) for s in sp_xyz]
            data = CropForegroundd(keys=keys, source_key="mask", margin=margin, allow_smaller=True)(data)
        modes = ["bilinear", "nearest"][: len(keys)]
        data = Spacingd(keys=keys, pixdim=self.spacing[::-1], mode=modes, padding_mode="border")(data)
        image, affine_pre = _from_monai(data["image"])
        label = None
        if "label" in data:
            label = np.rint(_from_monai(data["label"])[0][0]).astype(np.uint8)
        meta = {
            "case_id": case.case_id, "orig_shape": list(shape), "orig_affine": np.asarray(case.affine).tolist(),
            "orig_spacing": [float(s) for s in case.spacing], "affine": affine_pre.tolist(),
            "shape": list(image.shape[1:]), "spacing": list(self.spacing), "cropped": do_crop,
        }
        return PreparedCase(image.astype(np.float32, copy=False), label, self.spacing, meta)


def invert(label_zyx: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Map a (D, H, W) label map on the preprocessed grid back to the original (D, H, W) grid.

    Nearest-neighbour resampling through the two affines: original voxel j samples the preprocessed voxel
    ``inv(A_pre) @ A_orig @ j``; voxels outside the crop get 0. Undoes crop, resampling and orientation at once.
    """
    label_zyx = np.asarray(label_zyx)
    if list(label_zyx.shape) != list(meta["shape"]):
        raise PlanLiteError(f"invert: prediction shape {label_zyx.shape} differs from the preprocessed grid "
                            f"{tuple(meta['shape'])}")
    a_pre = np.asarray(meta["affine"], dtype=np.float64)
    a_orig = np.asarray(meta["orig_affine"], dtype=np.float64)
    xform = np.linalg.solve(a_pre, a_orig)  # original voxel (x, y, z) -> preprocessed voxel (x, y, z)
    src = np.ascontiguousarray(np.transpose(label_zyx, (2, 1, 0)))
    out_xyz = tuple(int(s) for s in meta["orig_shape"][::-1])
    out = ndimage.affine_transform(src, xform[:3, :3], offset=xform[:3, 3], output_shape=out_xyz, order=0,
                                   mode="constant", cval=0, prefilter=False)
    return np.ascontiguousarray(np.transpose(out, (2, 1, 0))).astype(label_zyx.dtype, copy=False)


def _plain_stats(stats: dict) -> dict:
    """Stats as plain floats/lists (checkpoint-safe)."""
    out = {}
    for k, v in stats.items():
        if isinstance(v, (list, tuple, np.ndarray)):
            out[k] = [float(x) for x in np.asarray(v).ravel()]
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out[k] = int(v)
        else:
            out[k] = float(v)
    for key in ("mean", "std", "lower", "upper"):
        if key not in out:
            raise PlanLiteError(f"preprocess: stats lack {key!r}")
    return out


__all__ = ["Preprocessor", "PreparedCase", "invert", "LIVER_CROP_LABELS"]
