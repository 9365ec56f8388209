"""plan_lite.data.preprocess: nnU-Net CT normalisation, RAS orientation, liver crop, resampling and ``invert``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from datasets import make_dataset

from plan_lite.data.io import Case, MSDDataset, affine_from_spacing, read_image, write_label
from plan_lite.data.preprocess import Preprocessor, invert
from plan_lite.errors import PlanLiteError


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _case(shape=(30, 64, 60), spacing=(2.0, 0.9, 1.1), affine=None, seed=0) -> Case:
    """Body with a liver block (1) and a tumour block (9); 2 phases; spacing (z, y, x).

    Blocks are several 5 mm slices thick: nearest resampling to 5 mm moves a boundary by up to 2.5 mm.
    """
    rng = np.random.default_rng(seed)
    d, h, w = shape
    label = np.zeros(shape, np.uint8)
    label[3:27, 16:40, 12:40] = 1
    label[9:21, 20:32, 18:30] = 9
    img = np.full((2, *shape), -1000.0, np.float32)
    img[:, :, 3:h - 3, 3:w - 3] = 10.0
    img[:, label == 1] = 60.0
    img[:, label == 9] = 20.0
    img[1] += 30.0 * (label > 0)
    img += rng.normal(0, 5, img.shape).astype(np.float32)
    aff = affine_from_spacing(spacing, origin=(-30.0, 12.0, 101.0)) if affine is None else affine
    return Case(img, label, tuple(spacing), aff, "c0")


@pytest.fixture(scope="module")
def pp():
    return Preprocessor(spacing=(5.0, 0.7, 0.7), crop_margin_mm=10.0).fit([_case(seed=s) for s in range(2)])


def test_fit_stats_plain_and_serialisable(pp):
    s = pp.stats
    json.dumps(pp.to_dict())
    assert all(type(x) is float for k in ("mean", "std", "lower", "upper") for x in s[k])
    assert s["mean"][0] == pytest.approx(np.mean([60] * 3 + [20]), abs=15)  # foreground = liver + tumour
    assert s["lower"][0] < s["mean"][0] < s["upper"][0]
    again = Preprocessor.from_dict(pp.to_dict())
    assert again.stats == pp.stats and again.spacing == pp.spacing


def test_normalisation_clip_and_zscore(pp):
    case = _case()
    x = pp.normalize(case.image)
    fg = case.label > 0
    for c in range(2):
        assert abs(x[c][fg].mean()) < 0.2 and 0.8 < x[c][fg].std() < 1.2
        hi = (pp.stats["upper"][c] - pp.stats["mean"][c]) / pp.stats["std"][c]
        assert x[c].max() <= hi + 1e-4
    with pytest.raises(PlanLiteError, match="no intensity statistics"):
        Preprocessor()(case)
    with pytest.raises(PlanLiteError, match="channels"):
        pp.normalize(case.image[:1])


def test_resample_crop_and_invert_anisotropic(pp):
    case = _case()
    out = pp(case)
    assert out.image.dtype == np.float32 and out.label.dtype == np.uint8
    assert out.image.shape[1:] == out.label.shape and out.image.shape[0] == 2
    assert out.spacing == (5.0, 0.7, 0.7) and out.meta["cropped"]
    a = np.asarray(out.meta["affine"])
    assert np.allclose(np.sqrt((a[:3, :3] ** 2).sum(0)), (0.7, 0.7, 5.0), atol=1e-5)
    # crop = liver extent + 10 mm margin (clipped to the image), in mm
    ext_y = (40 - 16) * 0.9 + 2 * 10.0
    assert abs(out.label.shape[1] * 0.7 - ext_y) < 2.5
    back = invert(out.label, out.meta)
    assert back.shape == case.label.shape and back.dtype == np.uint8
    assert _dice(back == 1, case.label == 1) > 0.9 and _dice(back == 9, case.label == 9) > 0.9
    full = pp(case, crop=False)
    assert not full.meta["cropped"] and full.label.shape[1] > out.label.shape[1]
    assert _dice(invert(full.label, full.meta) > 0, case.label > 0) > 0.9


def test_identity_spacing_roundtrip_exact_and_overlays(pp, tmp_path):
    case = _case(spacing=(2.0, 0.7, 0.7))
    same = Preprocessor(spacing=case.spacing, stats=pp.stats, crop_margin_mm=3.0)
    for crop in (True, False):
        out = same(case, crop=crop)
        assert np.array_equal(invert(out.label, out.meta), case.label)
    # written with the original affine, the inverted label overlays the input image file grid
    write_label(tmp_path / "pred.nii.gz", invert(out.label, out.meta), case.affine)
    lab, spacing, aff = read_image(tmp_path / "pred.nii.gz")
    assert np.array_equal(lab, case.label) and np.allclose(aff, case.affine)


def test_non_ras_orientation_roundtrip(pp):
    """A flipped/permuted file orientation (LPS-like with swapped x/y) is canonicalised to RAS and inverted."""
    base = _case(spacing=(2.0, 0.8, 0.8))
    aff = np.array([[0.0, -0.8, 0.0, 10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, 0.0, 2.0, -5.0], [0, 0, 0, 1]])
    case = Case(base.image, base.label, base.spacing, aff, "lps")
    out = Preprocessor(spacing=(2.0, 0.8, 0.8), stats=pp.stats)(case, crop=False)
    a = np.asarray(out.meta["affine"])
    assert np.all(np.diag(a)[:3] > 0) and np.allclose(a[:3, :3], np.diag(np.diag(a)[:3]))  # RAS
    assert np.array_equal(invert(out.label, out.meta), case.label)
    out = pp(case)  # with resampling and crop
    assert _dice(invert(out.label, out.meta) > 0, case.label > 0) > 0.9


def test_given_liver_mask_and_unlabelled_case(pp):
    case = _case()
    mask = np.zeros_like(case.label, bool)
    mask[9:21, 20:32, 18:30] = True
    unlabelled = Case(case.image, None, case.spacing, case.affine, "u")
    small = pp(unlabelled, liver_mask=mask)
    assert small.label is None and small.meta["cropped"]
    assert small.image.shape[2] < pp(case).image.shape[2]
    assert not pp(unlabelled).meta["cropped"]  # no label, no mask: whole image
    pred = np.ones(small.image.shape[1:], np.uint8)
    back = invert(pred, small.meta)
    assert back.shape == case.label.shape and back[mask].all() and not back[0, 0, 0]
    with pytest.raises(PlanLiteError, match="prediction shape"):
        invert(pred[:-1], small.meta)


def test_dataset_fit_and_call(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=2)
    ds = MSDDataset(root)
    p = Preprocessor(spacing=(5.0, 1.0, 1.0), crop_margin_mm=4.0).fit(ds)
    out = p(ds[0])
    assert out.image.shape[0] == 3 and out.meta["case_id"] == "case_0000"
    assert _dice(invert(out.label, out.meta) == 1, ds[0].label == 1) > 0.9


TS_TO_PLAN = {5: 1, 4: 2, 1: 4, 6: 5, 7: 6}  # TotalSegmentator v2 liver, gallbladder, spleen, stomach, pancreas


def test_real_ct_fixture(realdata_dir, tmp_path):
    """Real NC CT (3 mm) in a 1-channel MSD layout: validates, preprocesses to 0.7 x 0.7 x 5 mm with a liver crop."""
    from plan_lite.data.validate import validate_dataset

    root = tmp_path / "real"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(realdata_dir / "example_ct_sm.nii.gz", root / "imagesTr" / "real_0000_0000.nii.gz")
    seg, _, aff = read_image(realdata_dir / "example_seg.nii.gz")
    lut = np.zeros(256, np.uint8)
    for k, v in TS_TO_PLAN.items():
        lut[k] = v
    write_label(root / "labelsTr" / "real_0000.nii.gz", lut[seg.astype(np.uint8)], aff)
    names = {"background": 0, "liver": 1, "gallbladder": 2, "spleen": 4, "stomach": 5, "pancreas": 6}
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": names,
                                                   "numTraining": 1, "file_ending": ".nii.gz"}))
    assert validate_dataset(root) == []
    ds = MSDDataset(root, phases=("nc",))
    case = ds[0]
    p = Preprocessor(spacing=(5.0, 0.7, 0.7)).fit(ds)
    assert -200 < p.stats["mean"][0] < 200
    out = p(case)
    liver = case.label == 1
    assert out.meta["cropped"] and out.image.shape[1:] == out.label.shape and (out.label == 1).any()
    assert np.isfinite(out.image).all() and abs(float(out.image[0][out.label == 1].mean())) < 2
    back = invert(out.label, out.meta)
    assert back.shape == case.label.shape and _dice(back == 1, liver) > 0.85


def test_synthetic_generator_roundtrip(tmp_path):
    synth = pytest.importorskip("plan_lite.data.synthetic")
    root = synth.generate_dataset(tmp_path / "s", n_cases=2, seed=2, shape=(16, 64, 64), progress=False)
    ds = MSDDataset(root)
    p = Preprocessor(spacing=(5.0, 2.0, 2.0)).fit(ds)
    case = ds[0]
    out = p(case)
    back = invert(out.label, out.meta)
    assert back.shape == case.label.shape and _dice(back == 1, case.label == 1) > 0.9
