"""plan_lite.data.augment: nnU-Net augmentation for anisotropic patches (book/design_decisions.md#dd-augmentation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd

from plan_lite.config import get_preset
from plan_lite.data.augment import RandRotateScaled, is_dummy_2d, training_transforms

PATCH = (8, 48, 48)


def _sample(seed=0, channels=3):
    rng = np.random.default_rng(seed)
    label = np.zeros((1, *PATCH), np.uint8)
    label[0, 1:7, 10:38, 8:36] = 1
    label[0, 3:6, 18:28, 20:30] = 9
    img = rng.normal(size=(channels, *PATCH)).astype(np.float32) + 2.0 * (label > 0)
    return {"image": img, "label": label}


def _cfg(**kw):
    return get_preset("tiny", patch_size=(16, 96, 96), **kw)


def test_dummy_2d_rule():
    assert is_dummy_2d((24, 256, 256)) and is_dummy_2d((16, 96, 96)) and not is_dummy_2d((64, 128, 128))


def test_shapes_types_and_label_values():
    tr = training_transforms(_cfg())
    for i in range(6):
        out = tr(_sample(i))
        assert out["image"].shape == (3, *PATCH) and out["image"].dtype == torch.float32
        assert out["label"].shape == (1, *PATCH) and out["label"].dtype == torch.int64
        assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 9}  # nearest: no blended label values
        assert torch.isfinite(out["image"]).all()


def test_deterministic_under_seed():
    a, b = training_transforms(_cfg()), training_transforms(_cfg())
    c = training_transforms(_cfg(seed=5))
    outs_a = [a(_sample(i)) for i in range(5)]
    outs_b = [b(_sample(i)) for i in range(5)]
    outs_c = [c(_sample(i)) for i in range(5)]
    for x, y in zip(outs_a, outs_b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(outs_a, outs_c))
    a.set_random_state(seed=0)
    assert torch.equal(a(_sample(0))["image"], training_transforms(_cfg())(_sample(0))["image"])


@pytest.mark.parametrize("dummy_2d", [True, False])
def test_spatial_keeps_channels_and_label_aligned(dummy_2d):
    s = _sample()
    same = np.repeat(s["label"].astype(np.float32), 3, axis=0)  # every channel = the label indicator
    spatial = Compose([RandRotateScaled(p_rot=1.0, p_scale=1.0, dummy_2d=dummy_2d),
                       *(RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=a) for a in range(3))])
    spatial.set_random_state(seed=3)
    for _ in range(3):
        out = spatial({"image": (same > 0).astype(np.float32), "label": s["label"]})
        img, lab = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
        assert img.shape == (3, *PATCH) and lab.shape == (1, *PATCH)
        assert torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])
        inter = ((img[0] > 0.5) & (lab[0] > 0)).sum().item()
        union = ((img[0] > 0.5) | (lab[0] > 0)).sum().item()
        assert inter / union > 0.85


def test_dummy_2d_rotation_is_in_plane():
    """With dummy-2D the spatial transform never mixes z slices: every slice gets the same in-plane warp."""
    vol = np.broadcast_to(np.arange(1, PATCH[0] + 1, dtype=np.float32)[None, :, None, None], (2, *PATCH)).copy()
    t = RandRotateScaled(keys=["image"], p_rot=1.0, p_scale=1.0, dummy_2d=True)
    t.set_random_state(seed=1)
    for _ in range(3):
        out = torch.as_tensor(t({"image": vol})["image"])
        assert out.max() > 0
        for z in range(PATCH[0]):  # slice z holds z + 1 times the (shared) in-plane weights of slice 0
            assert torch.allclose(out[0, z] / (z + 1), out[0, 0], atol=1e-5)


def test_elastic_option_keeps_shape():
    tr = training_transforms(_cfg(elastic=True))
    names = [type(t).__name__ for t in tr.transforms]
    assert "Rand3DElasticd" in names
    assert tr(_sample())["image"].shape == (3, *PATCH)


def test_single_channel_and_torch_input():
    s = _sample(channels=1)
    out = training_transforms(_cfg())({"image": torch.from_numpy(s["image"]), "label": torch.from_numpy(s["label"])})
    assert out["image"].shape == (1, *PATCH)
