"""Training data: preprocessed case cache and the foreground-oversampling patch sampler.

Follows book/design_decisions.md#dd-sampler (PLAN ``dataset_loading_v2.py``): every sample of a batch is,
independently with probability ``cfg.train.fg_oversample`` (0.33), centred on a random lesion voxel of a random case
**with lesions** (so the probability holds in cohorts with normal and hard-negative subjects; nnU-Net picks the case
first and falls back to a random voxel when it has no foreground, which lowers the rate); otherwise centred on a
random liver voxel (half of the time) or on a uniformly random voxel (the other half: the whole-volume sliding
window at inference also sees non-liver context). Lesion components smaller than ``cfg.data.min_lesion_volume_mm3``
become the ignore label 100 (official code). Volumes smaller than the patch are padded as in nnU-Net (image 0 in
normalised units, label 0).

All randomness comes from numpy ``Generator`` objects owned by the sampler (one for patch positions, one for
augmentation seeds); their states go into every checkpoint, so a resumed run draws the same patches
(``plan_lite.engine.checkpoint``). Under DDP each rank gets a different stream (``SeedSequence([seed, rank])``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plan_lite.labels import IGNORE_LABEL, LESION_LABELS, LIVER_LABEL

_MAX_COORDS = 20000  # candidate centre voxels kept per case and kind (memory bound for big volumes)


@dataclass
class TrainCase:
    """One preprocessed training case held in memory."""

    case_id: str
    image: np.ndarray  # (C, D, H, W) float32, normalised, padded to >= patch size
    label: np.ndarray  # (D, H, W) uint8 (0-14, 100 = ignore)
    lesion_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    liver_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))


def ignore_small_lesions(label: np.ndarray, min_voxels: float) -> np.ndarray:
    """Set lesion components (26-connected, any lesion class) smaller than ``min_voxels`` to IGNORE_LABEL."""
    if min_voxels <= 1:
        return label
    import cc3d

    lesion = np.isin(label, LESION_LABELS)
    if not lesion.any():
        return label
    comps = cc3d.connected_components(lesion.astype(np.uint8), connectivity=26)
    sizes = np.bincount(comps.ravel())
    small = np.flatnonzero(sizes < min_voxels)
    small = small[small > 0]
    if small.size == 0:
        return label
    out = label.copy()
    out[np.isin(comps, small)] = IGNORE_LABEL
    return out


def pad_to_patch(image: np.ndarray, label: np.ndarray, patch: tuple[int, int, int]):
    """Pad (symmetrically) so every spatial dim is >= the patch (image 0, label 0 as nnU-Net)."""
    shape = label.shape
    pads = [(max(0, p - s) // 2, max(0, p - s) - max(0, p - s) // 2) for s, p in zip(shape, patch)]
    if not any(a or b for a, b in pads):
        return image, label
    return (np.pad(image, [(0, 0), *pads], constant_values=0).astype(np.float32, copy=False),
            np.pad(label, pads, constant_values=0))


def make_train_case(case_id: str, image: np.ndarray, label: np.ndarray, patch, min_lesion_voxels: float,
                    seed: int = 0) -> TrainCase:
    """Relabel small lesions as ignore, pad and index the candidate centre voxels."""
    label = ignore_small_lesions(np.asarray(label, dtype=np.uint8), min_lesion_voxels)
    image, label = pad_to_patch(np.asarray(image, dtype=np.float32), label, patch)
    rng = np.random.default_rng(seed)  # deterministic subsampling of candidate coordinates

    def coords(mask):
        c = np.argwhere(mask)
        if len(c) > _MAX_COORDS:
            c = c[np.sort(rng.choice(len(c), _MAX_COORDS, replace=False))]
        return c.astype(np.int64)

    return TrainCase(case_id, np.ascontiguousarray(image), np.ascontiguousarray(label),
                     coords(np.isin(label, LESION_LABELS)), coords(label == LIVER_LABEL))


def rank_generators(seed: int, rank: int = 0) -> tuple[np.random.Generator, np.random.Generator]:
    """(patch generator, augmentation generator) for a rank: independent streams from ``SeedSequence``."""
    a, b = np.random.SeedSequence([int(seed), int(rank), 0x504C414E]).spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


class PatchSampler:
    """Draw batches of (image, label) patches; ``state_dict``/``load_state_dict`` carry the generator states."""

    def __init__(self, cases: list[TrainCase], patch_size, batch_size: int, fg_oversample: float,
                 seed: int = 0, rank: int = 0, transforms=None):
        if not cases:
            from plan_lite.errors import DatasetError

            raise DatasetError("train: no training cases")
        self.cases = cases
        self.patch = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.fg = float(fg_oversample)
        self.rng, self.aug_rng = rank_generators(seed, rank)
        self.transforms = transforms
        # a foreground patch is drawn from a case with lesions, so that ``fg_oversample`` is the probability of a
        # lesion-centred patch even when some cases (normal, hard negatives) have none
        self.lesion_cases = [c for c in cases if len(c.lesion_coords)]

    # ---------------------------------------------------------------------------------------------- sampling
    def _centre(self, case: TrainCase, force_fg: bool) -> np.ndarray:
        rng = self.rng
        if force_fg and len(case.lesion_coords):
            return case.lesion_coords[rng.integers(len(case.lesion_coords))]
        if rng.random() < 0.5 and len(case.liver_coords):
            return case.liver_coords[rng.integers(len(case.liver_coords))]
        return np.array([rng.integers(s) for s in case.label.shape], dtype=np.int64)

    def _crop(self, case: TrainCase, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = []
        for c, p, s in zip(centre, self.patch, case.label.shape):
            jitter = int(self.rng.integers(-(p // 4), p // 4 + 1)) if p >= 4 else 0
            starts.append(int(np.clip(c - p // 2 + jitter, 0, s - p)))
        sl = tuple(slice(a, a + p) for a, p in zip(starts, self.patch))
        return case.image[(slice(None), *sl)], case.label[sl]

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """A batch: images ``(B, C, *patch)`` float32 and labels ``(B, *patch)`` int64 (augmented when transforms given)."""
        imgs, labs = [], []
        for _ in range(self.batch_size):
            force_fg = bool(self.rng.random() < self.fg)
            pool = self.lesion_cases if force_fg and self.lesion_cases else self.cases
            case = pool[int(self.rng.integers(len(pool)))]
            img, lab = self._crop(case, self._centre(case, force_fg))
            if self.transforms is not None:
                img, lab = self._augment(img, lab)
            imgs.append(np.asarray(img, dtype=np.float32))
            labs.append(np.asarray(lab).astype(np.int64))
        return np.stack(imgs), np.stack(labs)

    def _augment(self, img: np.ndarray, lab: np.ndarray):
        """MONAI transforms re-seeded from the checkpointed augmentation generator for every sample."""
        seed = int(self.aug_rng.integers(2**31 - 1))
        if hasattr(self.transforms, "set_random_state"):
            self.transforms.set_random_state(seed=seed)
        out = self.transforms({"image": img.copy(), "label": lab[None].astype(np.float32)})
        image, label = out["image"], out["label"]
        image = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
        label = label.numpy() if hasattr(label, "numpy") else np.asarray(label)
        return image.astype(np.float32), np.rint(label[0]).astype(np.int64)

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        from plan_lite.engine.checkpoint import generator_state

        return {"sampler": generator_state(self.rng), "augment": generator_state(self.aug_rng)}

    def load_state_dict(self, state: dict) -> None:
        from plan_lite.engine.checkpoint import set_generator_state

        set_generator_state(self.rng, state["sampler"])
        set_generator_state(self.aug_rng, state["augment"])


__all__ = ["TrainCase", "PatchSampler", "make_train_case", "ignore_small_lesions", "pad_to_patch",
           "rank_generators"]
