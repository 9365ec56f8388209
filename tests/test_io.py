"""plan_lite.data.io: NIfTI axis order, MSD / nnU-Net v2 dataset reading, label maps, tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import make_dataset, make_task03

from plan_lite.data.io import (
    LABEL_MAPS,
    Case,
    MSDDataset,
    affine_from_spacing,
    load_images,
    read_cases_csv,
    read_image,
    read_lesions_json,
    write_image,
    write_label,
)
from plan_lite.errors import DatasetError, PlanLiteError
from plan_lite.labels import patient_output_names


def test_read_write_axis_order_and_spacing(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (z, y, x)
    aff = affine_from_spacing((5.0, 0.8, 0.7))
    write_image(tmp_path / "a.nii.gz", arr, aff)
    back, spacing, affine = read_image(tmp_path / "a.nii.gz")
    assert back.shape == (2, 3, 4) and np.array_equal(back, arr)
    assert spacing == pytest.approx((5.0, 0.8, 0.7)) and np.allclose(affine, aff)


def test_msd_dataset_loads_cases(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=3)
    ds = MSDDataset(root)
    assert ds.case_ids == ["case_0000", "case_0001", "case_0002"] and len(ds) == 3
    case = ds.load("case_0000")
    assert isinstance(case, Case) and case.case_id == "case_0000"
    assert case.image.shape == (3, 8, 24, 24) and case.image.dtype == np.float32
    assert case.label.shape == (8, 24, 24) and case.label.dtype == np.uint8 and 9 in case.label
    assert case.spacing == pytest.approx((5.0, 2.0, 2.0)) and case.affine.shape == (4, 4)
    assert set(case.paths) == {"nc", "la", "pv", "label"} and case.channel_names == ("nc", "la", "pv")
    assert ds[1].case_id == "case_0001"


def test_phase_selection_and_order(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=1)
    full = MSDDataset(root)[0]
    sel = MSDDataset(root, phases=("pv", "nc"))[0]
    assert sel.image.shape[0] == 2 and sel.channel_names == ("pv", "nc")
    assert np.array_equal(sel.image[0], full.image[2]) and np.array_equal(sel.image[1], full.image[0])
    with pytest.raises(PlanLiteError, match="phase 'xx' not among the channels"):
        MSDDataset(root, phases=("xx",))


def test_two_phase_dataset_missing_phase_is_clear(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=1, channels=("nc", "pv"))
    assert MSDDataset(root).load("case_0000").image.shape[0] == 2
    with pytest.raises(PlanLiteError, match="phase 'la'"):
        MSDDataset(root, phases=("nc", "la", "pv"))


def test_task03_single_ct_channel_and_label_remap(tmp_path):
    root = make_task03(tmp_path / "t3", n_cases=2)
    raw = MSDDataset(root, phases=("pv",), label_map=None)[0]  # labels as stored
    assert raw.image.shape == (1, 8, 24, 24) and set(np.unique(raw.label)) == {0, 1, 2}
    assert set(np.unique(MSDDataset(root)[0].label)) == {0, 1, 14}  # the default: "auto"
    for lm in ("msd_task03", "lits", "auto", LABEL_MAPS["msd_task03"]):
        case = MSDDataset(root, phases=("nc",), label_map=lm)[0]
        assert set(np.unique(case.label)) == {0, 1, 14}
        assert np.array_equal(case.label == 14, raw.label == 2)
    with pytest.raises(DatasetError, match=r"label values \[2\] not in the label map"):
        MSDDataset(root, label_map={0: 0, 1: 1})[0]
    with pytest.raises(PlanLiteError, match="unknown label_map"):
        MSDDataset(root, label_map="nope")


def test_original_msd_naming(tmp_path):
    """Original Decathlon layout: {case}.nii.gz images, 'modality', labels {"id": name}."""
    root = make_task03(tmp_path / "t3", n_cases=1)
    for p in (root / "imagesTr").iterdir():
        p.rename(p.with_name(p.name.replace("_0000.nii.gz", ".nii.gz")))
    meta = json.loads((root / "dataset.json").read_text())
    meta.pop("channel_names")
    meta.pop("file_ending")
    meta.update(modality={"0": "CT"}, labels={"0": "background", "1": "liver", "2": "cancer"})
    (root / "dataset.json").write_text(json.dumps(meta))
    case = MSDDataset(root, label_map="auto")[0]
    assert case.image.shape == (1, 8, 24, 24) and set(np.unique(case.label)) == {0, 1, 14}


def test_nii_uncompressed_and_imagests(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=2, ending=".nii")
    (root / "imagesTs").mkdir()
    img = MSDDataset(root)[0].image
    for c in range(3):
        write_image(root / "imagesTs" / f"test_0000_{c:04d}.nii", img[c], affine_from_spacing((5.0, 2.0, 2.0)))
    assert MSDDataset(root).case_ids == ["case_0000", "case_0001"]
    ts = MSDDataset(root, subset="test")
    assert ts.case_ids == ["test_0000"] and ts[0].label is None
    assert len(MSDDataset(root, subset="all")) == 3


def test_missing_phase_file_and_duplicates(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=2)
    (root / "imagesTr" / "case_0001_0001.nii.gz").unlink()
    ds = MSDDataset(root)
    with pytest.raises(DatasetError, match=r"case_0001_0001.nii.gz: missing phase file \(la\)"):
        ds.load("case_0001")
    ds.load("case_0000")
    write_label(root / "labelsTr" / "x.nii", np.zeros((2, 2, 2)), np.eye(4))
    (root / "imagesTr" / "case_0000_0000.nii").write_bytes(b"")
    with pytest.raises(DatasetError, match="duplicate case files"):
        MSDDataset(root)


def test_missing_folder_and_json(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        MSDDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="missing dataset.json"):
        MSDDataset(tmp_path / "empty")


def test_load_images(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=1)
    paths = sorted((root / "imagesTr").glob("*.nii.gz"))
    case = load_images(paths, phases=("nc", "la", "pv"))
    assert case.image.shape == (3, 8, 24, 24) and case.label is None and case.case_id == "case_0000"
    assert np.array_equal(case.image, MSDDataset(root)[0].image)
    write_image(tmp_path / "other.nii.gz", np.zeros((8, 24, 20)), affine_from_spacing((5.0, 2.0, 2.0)))
    with pytest.raises(PlanLiteError, match="other.nii.gz: shape"):
        load_images([paths[0], tmp_path / "other.nii.gz"])
    write_image(tmp_path / "shift.nii.gz", np.zeros((8, 24, 24)), affine_from_spacing((5.0, 2.0, 2.0), (9, 9, 9)))
    with pytest.raises(PlanLiteError, match="shift.nii.gz: affine"):
        load_images([paths[0], tmp_path / "shift.nii.gz"])
    with pytest.raises(PlanLiteError, match="no such file"):
        load_images([tmp_path / "missing.nii.gz"])


def test_cases_csv_and_lesions_json(tmp_path):
    root = make_dataset(tmp_path / "ds", n_cases=3)
    rows = read_cases_csv(root / "cases.csv")
    assert [r["case"] for r in rows] == ["case_0000", "case_0001", "case_0002"]
    assert rows[0]["group"] == "tumor" and rows[0]["split"] == "train" and rows[0]["num_lesions"] == 1
    assert all(isinstance(rows[0][n], float) for n in patient_output_names())
    les = read_lesions_json(root / "lesions.json")
    assert les["case_0000"][0]["label"] == 9 and les["case_0001"] == []
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="bad.json"):
        read_lesions_json(tmp_path / "bad.json")


def test_cases_csv_one_reader_checks_columns_and_numbers(tmp_path):
    """``read_cases_csv`` is the one reader of cases.csv; patient metrics ask it for their columns as numbers."""
    from plan_lite.metrics.patient import PATIENT_NAMES, read_cases_table

    path = tmp_path / "cases.csv"
    head = "case,split,group," + ",".join(PATIENT_NAMES)
    path.write_text(head + "\nc1,test,tumor," + ",".join(["1"] * len(PATIENT_NAMES)) + "\n")
    rows = read_cases_table(path)
    assert rows[0]["case"] == "c1" and all(isinstance(rows[0][n], float) for n in PATIENT_NAMES)
    path.write_text(head + "\nc1,test,tumor,yes" + ",0" * (len(PATIENT_NAMES) - 1) + "\n")
    with pytest.raises(DatasetError, match=rf"cases.csv:2: column {PATIENT_NAMES[0]} is not a number: 'yes'"):
        read_cases_table(path)
    path.write_text("case,split\nc1,test\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_cases_table(path)
    assert read_cases_csv(path) == [{"case": "c1", "split": "test"}]
