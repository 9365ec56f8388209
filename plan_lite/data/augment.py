"""Training augmentation: nnU-Net's default list for anisotropic data, with MONAI (book/design_decisions.md#dd-augmentation).

Dicts ``{"image": (C, D, H, W) float32, "label": (1, D, H, W)}`` (numpy or torch). Order and probabilities follow
nnU-Net v2 ``get_training_transforms`` (PLAN's v1 "moreDA" is equivalent)::

    | transform | p | parameters | here |
    |---|---|---|---|
    | rotation | 0.2 | +-180 deg in-plane when dummy-2D (max(patch) / patch[0] > 3), else +-30 deg per axis | ``RandRotateScaled`` |
    | scaling | 0.2 | (0.7, 1.4), one factor (in-plane only when dummy-2D) | ``RandRotateScaled`` |
    | elastic | 0.2 if ``cfg.train.elastic`` | sigma (9, 13), magnitude (0, 200) voxels (3D field) | ``Rand3DElasticd`` |
    | Gaussian noise | 0.1 | std sampled in (0, 0.1) | ``RandGaussianNoised`` |
    | Gaussian blur | 0.2 | sigma (0.5, 1) per axis, per channel p 0.5 | ``PerChannel(RandGaussianSmooth)`` |
    | brightness | 0.15 | x (0.75, 1.25) per channel | ``RandScaleIntensityd`` |
    | contrast | 0.15 | (0.75, 1.25) around the channel mean, range preserved | ``RandScaleIntensityFixedMeand`` |
    | low resolution | 0.25 | zoom (0.5, 1), per channel p 0.5, per slice (z kept) when dummy-2D | ``PerChannel(RandSimulateLowResolution)`` |
    | inverted gamma | 0.1 | (0.7, 1.5), stats retained, per channel | ``PerChannel(RandAdjustContrast)`` |
    | gamma | 0.3 | (0.7, 1.5), stats retained, per channel | ``PerChannel(RandAdjustContrast)`` |
    | mirror | 0.5 per axis | z, y, x independently | ``RandFlipd`` |

Spatial transforms act on all channels and the label together (label with nearest), so phases stay aligned;
out-of-patch voxels are 0. Output shapes equal input shapes. Output: ``image`` float32 tensor, ``label`` int64
tensor. Seed with ``Compose.set_random_state(seed)`` (done with ``cfg.train.seed`` on construction).
"""

from __future__ import annotations

import math

import torch
from monai.transforms import (
    Affine,
    Compose,
    EnsureTyped,
    MapTransform,
    Rand3DElasticd,
    RandAdjustContrast,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmooth,
    RandomizableTransform,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolution,
)
from monai.utils import MAX_SEED

ANISO_THRESHOLD = 3.0  # nnU-Net: dummy-2D augmentation when max(patch) / patch[0] > 3


def is_dummy_2d(patch_size) -> bool:
    """nnU-Net's ``do_dummy_2d_data_aug`` for a (D, H, W) patch (book/design_decisions.md#dd-augmentation)."""
    return max(patch_size) / patch_size[0] > ANISO_THRESHOLD


class RandRotateScaled(RandomizableTransform, MapTransform):
    """nnU-Net spatial transform: rotation (p ``p_rot``) and one scale factor (p ``p_scale``), one resampling.

    Dummy-2D: rotation about the z axis only (in-plane, +-``max_angle_2d``) and scaling of y, x only; otherwise
    rotation about each axis in +-``max_angle_3d`` and the same factor on all axes. Images bilinear, labels
    nearest; the same draw for every key and channel.
    """

    def __init__(self, keys=("image", "label"), p_rot=0.2, p_scale=0.2, scale_range=(0.7, 1.4), dummy_2d=True,
                 max_angle_2d=math.pi, max_angle_3d=math.pi / 6, label_keys=("label",), allow_missing_keys=True):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.p_rot, self.p_scale, self.scale_range = p_rot, p_scale, scale_range
        self.dummy_2d, self.max_2d, self.max_3d = dummy_2d, max_angle_2d, max_angle_3d
        self.label_keys = set(label_keys)
        self.angles, self.scale = (0.0, 0.0, 0.0), 1.0

    def randomize(self, data=None) -> None:
        do_rot, do_scale = self.R.rand() < self.p_rot, self.R.rand() < self.p_scale
        if do_rot:
            if self.dummy_2d:
                self.angles = (self.R.uniform(-self.max_2d, self.max_2d), 0.0, 0.0)
            else:
                self.angles = tuple(self.R.uniform(-self.max_3d, self.max_3d) for _ in range(3))
        else:
            self.angles = (0.0, 0.0, 0.0)
        self.scale = self.R.uniform(*self.scale_range) if do_scale else 1.0
        self._do_transform = do_rot or do_scale

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        s = self.scale
        scale = (1.0, s, s) if self.dummy_2d else (s, s, s)
        for key in self.key_iterator(d):
            mode = "nearest" if key in self.label_keys else "bilinear"
            # MONAI's first rotation angle turns the plane of spatial axes 1 and 2, i.e. (y, x) about z.
            aff = Affine(rotate_params=self.angles, scale_params=scale, padding_mode="zeros", mode=mode,
                         image_only=True)
            d[key] = aff(torch.as_tensor(d[key], dtype=torch.float32))
        return d


class PerChannel(RandomizableTransform, MapTransform):
    """Apply a MONAI array transform (built with prob 1) with probability ``prob``, then to each channel
    independently with ``p_per_channel`` (nnU-Net's per-channel intensity transforms). ``slices_2d`` treats the
    z slices of a channel as a 2D stack, so the transform leaves z alone (dummy-2D low-resolution simulation).
    """

    def __init__(self, keys, transform, prob: float, p_per_channel: float = 1.0, slices_2d: bool = False,
                 allow_missing_keys: bool = True):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=prob)
        self.transform, self.p_per_channel, self.slices_2d = transform, p_per_channel, slices_2d

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed=seed, state=state)
        self.transform.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key], dtype=torch.float32)
            out = img.clone()
            for c in range(img.shape[0]):
                if self.R.rand() >= self.p_per_channel:
                    continue
                x = img[c] if self.slices_2d else img[c: c + 1]  # (D, H, W) as D 2D slices, or (1, D, H, W)
                y = torch.as_tensor(self.transform(x))
                out[c] = y if self.slices_2d else y[0]
            d[key] = out
        return d


def training_transforms(cfg) -> Compose:
    """The augmentation pipeline for ``cfg.train.patch_size`` (book/design_decisions.md#dd-augmentation), seeded with
    ``cfg.train.seed``; call ``.set_random_state(seed)`` again per worker / run for other streams."""
    patch = tuple(cfg.train.patch_size)
    d2 = is_dummy_2d(patch)
    keys, img = ["image", "label"], ["image"]
    ts = [
        EnsureTyped(keys=keys, data_type="tensor", dtype=torch.float32, track_meta=False, allow_missing_keys=True),
        RandRotateScaled(keys=keys, p_rot=0.2, p_scale=0.2, dummy_2d=d2),
    ]
    if getattr(cfg.train, "elastic", False):
        ts.append(Rand3DElasticd(keys=keys, sigma_range=(9, 13), magnitude_range=(0, 200), prob=0.2,
                                 mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True))
    ts += [
        RandGaussianNoised(keys=img, prob=0.1, mean=0.0, std=0.1, sample_std=True),
        PerChannel(img, RandGaussianSmooth(sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=1.0),
                   prob=0.2, p_per_channel=0.5),
        RandScaleIntensityd(keys=img, factors=0.25, prob=0.15, channel_wise=True),
        RandScaleIntensityFixedMeand(keys=img, factors=0.25, fixed_mean=True, preserve_range=True, prob=0.15,
                                     channel_wise=True),
        PerChannel(img, RandSimulateLowResolution(prob=1.0, zoom_range=(0.5, 1.0), downsample_mode="nearest",
                                                  upsample_mode="bilinear" if d2 else "trilinear"),
                   prob=0.25, p_per_channel=0.5, slices_2d=d2),
        PerChannel(img, RandAdjustContrast(prob=1.0, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
                   prob=0.1),
        PerChannel(img, RandAdjustContrast(prob=1.0, gamma=(0.7, 1.5), invert_image=False, retain_stats=True),
                   prob=0.3),
        *(RandFlipd(keys=keys, prob=0.5, spatial_axis=a, allow_missing_keys=True) for a in range(3)),
        EnsureTyped(keys=img, data_type="tensor", dtype=torch.float32, track_meta=False),
        EnsureTyped(keys=["label"], data_type="tensor", dtype=torch.int64, track_meta=False,
                    allow_missing_keys=True),
    ]
    comp = Compose(ts)
    comp.set_random_state(seed=int(getattr(cfg.train, "seed", 0)))
    return comp


__all__ = ["training_transforms", "is_dummy_2d", "RandRotateScaled", "PerChannel", "ANISO_THRESHOLD"]
