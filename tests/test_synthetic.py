"""Synthetic liver CT generator (plan_lite.data.synthetic; data_cards/synthetic_liver_ct.md, facts §1-§5)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from plan_lite.data.io import read_image
from plan_lite.data.synth_anatomy import T
from plan_lite.data.synth_lesions import LESION_VARIANTS
from plan_lite.data.synth_stats import MIN_INTERIOR_VOXELS
from plan_lite.data.synthetic import (
    LABEL_TISSUE,
    TISSUE_HU,
    dataset_statistics,
    expected_label_hu,
    generate_case,
    generate_dataset,
    match_lesions,
)
from plan_lite.labels import LESION_LABELS, patient_output_names

SMALL = dict(spacing=(5.0, 4.0, 4.0), shape=(32, 100, 100))


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory):
    """12 cases at a coarse grid: enough subjects for per-label means."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, n_cases=12, seed=7, progress=False, **SMALL)
    return out


def test_same_seed_identical_different_seed_differs():
    a, b = generate_case(11, **SMALL), generate_case(11, **SMALL)
    c = generate_case(12, **SMALL)
    assert a.group == b.group and a.lesions == b.lesions
    for p in ("nc", "la", "pv"):
        assert a.images[p].dtype == np.int16 and a.images[p].shape == SMALL["shape"]
        np.testing.assert_array_equal(a.images[p], b.images[p])
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.images["pv"], c.images["pv"])


def test_case_independent_of_dataset_size(tmp_path):
    generate_dataset(tmp_path / "a", 1, seed=3, progress=False, **SMALL)
    generate_dataset(tmp_path / "b", 2, seed=3, progress=False, **SMALL)
    for name in ("imagesTr/case_0000_0001.nii.gz", "labelsTr/case_0000.nii.gz"):
        np.testing.assert_array_equal(read_image(tmp_path / "a" / name)[0], read_image(tmp_path / "b" / name)[0])


def test_layout_and_metadata(small_ds):
    meta = json.loads((small_ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "nc", "1": "la", "2": "pv"}
    assert meta["labels"]["liver"] == 1 and meta["labels"]["other"] == 14
    assert meta["numTraining"] == 12 and meta["file_ending"] == ".nii.gz"
    assert meta["tumor_labels"] == list(LESION_LABELS)
    header = (small_ds / "cases.csv").read_text().splitlines()[0].split(",")
    assert header == ["case", "split", "group", "num_lesions", *patient_output_names("paper")]
    img, spacing, affine = read_image(small_ds / "imagesTr" / "case_0000_0000.nii.gz")
    assert img.shape == SMALL["shape"] and np.allclose(spacing, SMALL["spacing"])
    lab = read_image(small_ds / "labelsTr" / "case_0000.nii.gz")[0]
    assert lab.dtype == np.uint8 and lab.max() <= 14


def test_listed_lesions_exist_with_volume(small_ds):
    lesions = json.loads((small_ds / "lesions.json").read_text())
    assert sum(len(v) for v in lesions.values()) > 5
    for cid, les in lesions.items():
        lab, spacing, affine = read_image(small_ds / "labelsTr" / f"{cid}.nii.gz")
        for rec, entry in zip(match_lesions(lab, spacing, affine, les), les):
            assert rec["found"], (cid, entry)
            assert rec["rel_err"] <= 0.15, (cid, entry, rec["volume_mm3"])
            assert entry["label"] in LESION_LABELS and entry["volume_mm3"] > 0
            assert entry["radius_mm"] == pytest.approx((3 * entry["volume_mm3"] / (4 * np.pi)) ** (1 / 3), rel=1e-3)
        # no lesion voxels that are not listed
        n_listed = sum(r["voxels"] for r in match_lesions(lab, spacing, affine, les))
        assert n_listed == int(np.isin(lab, LESION_LABELS).sum())


def test_groups_semantics(small_ds):
    rows = [r.split(",") for r in (small_ds / "cases.csv").read_text().splitlines()[1:]]
    assert {r[2] for r in rows} == {"tumor", "normal", "hard"}
    for r in rows:
        lab = read_image(small_ds / "labelsTr" / f"{r[0]}.nii.gz")[0]
        n_tumour = int(np.isin(lab, LESION_LABELS).sum())
        if r[2] == "tumor":
            assert n_tumour > 0 and r[4] == "1" and int(r[3]) >= 1
        else:
            assert n_tumour == 0 and r[4] == "0" and r[3] == "0"
        assert (lab == 1).sum() > 0


def test_measured_hu_matches_declared_table(small_ds):
    """Means measured on the written images (eroded label masks) match the card's declared table (±10 HU)."""
    stats = dataset_statistics(small_ds)
    expected = expected_label_hu()
    for k, tissue in LABEL_TISSUE.items():
        name = {1: "liver", 2: "gallbladder", 4: "spleen", 6: "pancreas"}[k]
        for p in ("nc", "la", "pv"):
            got = stats["label_hu"][name][p]
            assert got["n"] >= 5
            assert abs(got["mean"] - expected[name][p]) <= 10, (name, p, got)
            assert expected[name][p] == TISSUE_HU[tissue][0]["nc la pv".split().index(p)]
    # fat is background in the label map: measure it from the tissue map of an in-memory case
    case = generate_case(5, group="normal", **SMALL)
    for p in ("nc", "pv"):
        fat = case.images[p][case.tissue == T["fat"]]
        assert abs(fat.mean() - TISSUE_HU["fat"][0][0]) <= 25  # per-subject SD 10 + skin/organ partial volume


def test_lesion_hu_per_type_matches_table():
    """Every lesion type, forced in a few cases, renders its declared per-phase mean HU (±10)."""
    from scipy import ndimage

    expected = expected_label_hu()
    per_variant: dict[str, list[list[float]]] = {}
    for s in range(4):
        case = generate_case(100 + s, lesion_types=LESION_LABELS, spacing=(5.0, 2.5, 2.5), shape=(32, 128, 128))
        assert len({entry["label"] for entry in case.lesions}) >= 7
        recs = match_lesions(case.label, case.spacing, case.affine, case.lesions)
        for entry, rec in zip(case.lesions, recs):
            m = ndimage.binary_erosion(rec["component"], np.ones((1, 3, 3), bool))
            if m.sum() < MIN_INTERIOR_VOXELS:
                continue
            per_variant.setdefault(entry["variant"], []).append([float(case.images[p][m].mean()) for p in
                                                                 ("nc", "la", "pv")])
    assert {LESION_VARIANTS[v].label for v in per_variant} == set(LESION_LABELS)
    for v, vals in per_variant.items():
        got = np.mean(vals, axis=0)
        for i, p in enumerate(("nc", "la", "pv")):
            assert abs(got[i] - expected[v][p]) <= 10, (v, p, got[i], expected[v][p])


def test_teaching_knobs_scale_contrast_and_noise():
    """lesion_contrast=2 doubles each lesion's interior mean HU difference to the liver (same subject, same lesions);
    noise_scale=0.5 lowers the liver's voxel SD; bad values are refused."""
    from scipy import ndimage

    from plan_lite.errors import PlanLiteError

    kw = dict(lesion_types=(7, 11, 13), spacing=(5.0, 2.5, 2.5), shape=(32, 128, 128))
    real = generate_case(100, **kw)
    easy = generate_case(100, lesion_contrast=2.0, noise_scale=0.5, **kw)
    assert np.array_equal(real.label, easy.label) and real.lesions == easy.lesions
    liver = ndimage.binary_erosion(real.label == 1, np.ones((1, 5, 5), bool))
    ratios = []
    for rec in match_lesions(real.label, real.spacing, real.affine, real.lesions):
        m = ndimage.binary_erosion(rec["component"], np.ones((1, 3, 3), bool))
        if m.sum() < MIN_INTERIOR_VOXELS:
            continue
        for p in ("nc", "la", "pv"):
            d_real = real.images[p][m].mean() - real.images[p][liver].mean()
            d_easy = easy.images[p][m].mean() - easy.images[p][liver].mean()
            if abs(d_real) > 15:
                ratios.append(d_easy / d_real)
    assert len(ratios) >= 3 and 1.7 < np.median(ratios) < 2.3, ratios
    for p in ("nc", "la", "pv"):
        assert easy.images[p][liver].std() < real.images[p][liver].std()
    with pytest.raises(PlanLiteError, match="lesion_contrast"):
        generate_case(1, lesion_contrast=0.0, **SMALL)


def test_nc_only_one_channel(tmp_path):
    case = generate_case(4, phases=("nc",), **SMALL)
    assert list(case.images) == ["nc"]
    generate_dataset(tmp_path / "nc", 2, seed=1, phases=("nc",), progress=False, **SMALL)
    meta = json.loads((tmp_path / "nc" / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "nc"}
    assert sorted(p.name for p in (tmp_path / "nc" / "imagesTr").iterdir()) == [
        "case_0000_0000.nii.gz", "case_0001_0000.nii.gz"]


def test_two_spacings_same_subject():
    """The subject is defined in mm: liver volume agrees at two grids (±10 %)."""
    a = generate_case(21, spacing=(5.0, 2.5, 2.5), shape=(32, 160, 160), group="normal")
    b = generate_case(21, spacing=(2.5, 1.6, 1.6), shape=(64, 250, 250), group="normal")
    va = (a.label == 1).sum() * np.prod(a.spacing)
    vb = (b.label == 1).sum() * np.prod(b.spacing)
    assert abs(va - vb) / vb < 0.10
    assert 700e3 < vb < 2600e3  # ~1.5 L (facts §4 / §1)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "plan_lite.cli", "synth", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_creates_layout_and_refuses_non_empty(tmp_path):
    out = tmp_path / "cli"
    r = _cli(str(out), "--cases", "2", "--seed", "1", "--shape", "16", "64", "64", "--spacing", "8", "5", "5",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    for name in ("dataset.json", "cases.csv", "lesions.json", "imagesTr/case_0001_0002.nii.gz",
                 "labelsTr/case_0001.nii.gz"):
        assert (out / name).exists()
    before = (out / "cases.csv").read_text()
    r = _cli(str(out), "--cases", "1", "--no-progress")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "overwrite" in r.stderr
    assert (out / "cases.csv").read_text() == before
    r = _cli(str(out), "--cases", "1", "--overwrite", "--phases", "nc", "--shape", "16", "64", "64", "--no-progress")
    assert r.returncode == 0 and len((out / "cases.csv").read_text().splitlines()) == 2


def test_noise_scales_with_voxel_volume():
    """The noise SD is specified at 0.7 x 0.7 x 5 mm and falls as 1 / sqrt(voxel volume): the SD in air of the
    same subject at 5 x 4 x 4 mm is about 0.175 x its SD at 5 x 0.7 x 0.7 mm (white noise averaged)."""
    from plan_lite.data.synthetic import noise_sd_factor

    assert noise_sd_factor((5.0, 0.7, 0.7)) == pytest.approx(1.0)
    assert noise_sd_factor((5.0, 4.0, 4.0)) == pytest.approx((0.49 / 16) ** 0.5)
    fine = generate_case(3, spacing=(5.0, 0.7, 0.7), shape=(4, 640, 640), phases=("nc",), group="normal")
    coarse = generate_case(3, spacing=(5.0, 4.0, 4.0), shape=(4, 112, 112), phases=("nc",), group="normal")

    def air_sd(case):  # robust SD (1.4826 x MAD) of air: partial-volume voxels at the skin are outliers
        im = case.images["nc"].astype(float)
        air = im[(case.label == 0) & (im < -900)]
        return 1.4826 * np.median(np.abs(air - np.median(air)))

    ratio = air_sd(coarse) / air_sd(fine)
    assert 0.1 < ratio < 0.3, ratio
