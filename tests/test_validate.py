"""Dataset validation (plan_lite.data.validate) and ``plan-lite validate``: every fault, with the right file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from datasets import make_dataset, snapshot

from plan_lite.cli import main
from plan_lite.data.io import affine_from_spacing, read_image, write_image, write_label, write_nifti
from plan_lite.data.validate import Problem, summarize_dataset, validate_dataset

AFF = affine_from_spacing((5.0, 2.0, 2.0), origin=(-20.0, -30.0, 40.0))  # make_dataset's affine


@pytest.fixture
def good(tmp_path):
    return make_dataset(tmp_path / "ds", n_cases=3)  # groups: case_0000 tumor, case_0001 normal, case_0002 hard


def _img(root, case="case_0000", ch=0):
    return root / "imagesTr" / f"{case}_{ch:04d}.nii.gz"


def _lab(root, case="case_0000"):
    return root / "labelsTr" / f"{case}.nii.gz"


def _edit_json(root, **changes):
    p = root / "dataset.json"
    d = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    p.write_text(json.dumps(d))


def _rewrite_label(root, case, fn):
    lab, _, aff = read_image(_lab(root, case))
    write_label(_lab(root, case), fn(lab.copy()), aff)


def _rewrite_csv(root, fn):
    p = root / "cases.csv"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(fn(lines)) + "\n")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# name -> (mutation, expected file suffix, expected message fragment)
FAULTS = {
    "missing_json": (lambda r: (r / "dataset.json").unlink(), "dataset.json", "missing dataset.json"),
    "key_channel_names": (lambda r: _edit_json(r, channel_names=None), "dataset.json", "'channel_names'"),
    "key_labels": (lambda r: _edit_json(r, labels=None), "dataset.json", "'labels'"),
    "key_file_ending": (lambda r: _edit_json(r, file_ending=None), "dataset.json", "'file_ending'"),
    "key_numTraining": (lambda r: _edit_json(r, numTraining=None), "dataset.json", "'numTraining'"),
    "numTraining": (lambda r: _edit_json(r, numTraining=5), "dataset.json", "numTraining is 5"),
    "missing_phase": (lambda r: _img(r, "case_0001", 2).unlink(), "imagesTr/case_0001_0002.nii.gz",
                      "missing phase file (pv): case case_0001 has 2 of 3"),
    "extra_phase": (lambda r: write_image(_img(r, "case_0001", 3), np.zeros((8, 24, 24)) + 40, AFF),
                    "imagesTr/case_0001_0003.nii.gz", "has 4 phase files, channel_names lists 3"),
    "unknown_file_images": (lambda r: (r / "imagesTr" / "notes.txt").write_text("x"), "imagesTr/notes.txt",
                            "unexpected file in imagesTr"),
    "unknown_file_labels": (lambda r: (r / "labelsTr" / "seg.npy").write_text("x"), "labelsTr/seg.npy",
                            "unexpected file in labelsTr"),
    "missing_label": (lambda r: _lab(r, "case_0001").unlink(), "labelsTr/case_0001.nii.gz", "missing label file"),
    "label_without_image": (lambda r: write_label(_lab(r, "case_0042"), np.zeros((8, 24, 24)), AFF),
                            "labelsTr/case_0042.nii.gz", "label file without image"),
    "label_shape": (lambda r: write_label(_lab(r, "case_0001"), np.zeros((8, 24, 20)), AFF),
                    "labelsTr/case_0001.nii.gz", "label shape"),
    "phase_shape": (lambda r: write_image(_img(r, "case_0001", 1), np.zeros((9, 24, 24)) + 40, AFF),
                    "imagesTr/case_0001_0001.nii.gz", "phase shape (D, H, W) (9, 24, 24) differs"),
    "phase_spacing": (lambda r: write_image(_img(r, "case_0001", 2), read_image(_img(r, "case_0001", 2))[0],
                                            affine_from_spacing((5.0, 2.0, 2.1), (-20.0, -30.0, 40.0))),
                      "imagesTr/case_0001_0002.nii.gz", "spacing (z, y, x) (5.00, 2.00, 2.10) differs"),
    "phase_origin": (lambda r: write_image(_img(r, "case_0001", 2), read_image(_img(r, "case_0001", 2))[0],
                                           affine_from_spacing((5.0, 2.0, 2.0), (-25.0, -30.0, 40.0))),
                     "imagesTr/case_0001_0002.nii.gz", "affine (origin/direction) differs"),
    "label_spacing": (lambda r: write_label(_lab(r, "case_0001"), read_image(_lab(r, "case_0001"))[0],
                                            affine_from_spacing((4.0, 2.0, 2.0), (-20.0, -30.0, 40.0))),
                      "labelsTr/case_0001.nii.gz", "label spacing"),
    "image_2d": (lambda r: nib.save(nib.Nifti1Image(np.zeros((24, 24), np.int16) + 40, AFF), str(_img(r, "case_0001"))),
                 "imagesTr/case_0001_0000.nii.gz", "expected a 3D array, got 2D"),
    "image_4d": (lambda r: nib.save(nib.Nifti1Image(np.zeros((24, 24, 8, 2), np.int16) + 40, AFF),
                                    str(_img(r, "case_0001"))),
                 "imagesTr/case_0001_0000.nii.gz", "got 4D"),
    "nan": (lambda r: write_nifti(_img(r, "case_0001", 1), np.where(np.arange(8)[:, None, None] == 3, np.nan,
                                                                    np.full((8, 24, 24), 40.0)), AFF,
                                  dtype=np.float32), "imagesTr/case_0001_0001.nii.gz", "576 NaN/inf values"),
    "constant": (lambda r: write_image(_img(r, "case_0001", 1), np.zeros((8, 24, 24)), AFF),
                 "imagesTr/case_0001_0001.nii.gz", "constant image"),
    "hu_range": (lambda r: write_image(_img(r, "case_0001", 0), read_image(_img(r, "case_0001"))[0] * 10.0, AFF),
                 "imagesTr/case_0001_0000.nii.gz", "outside [-2000, 5000]"),
    "label_values": (lambda r: _rewrite_label(r, "case_0001", lambda a: np.where(a == 1, 50, a)),
                     "labelsTr/case_0001.nii.gz", "label values [50] not in dataset.json labels"),
    "label_fractional": (lambda r: write_nifti(_lab(r, "case_0001"), read_image(_lab(r, "case_0001"))[0] * 0.5,
                                               AFF, dtype=np.float32),
                         "labelsTr/case_0001.nii.gz", "non-integer label values"),
    "truncated": (lambda r: _truncate(_img(r, "case_0002", 1)), "imagesTr/case_0002_0001.nii.gz", "unreadable"),
    "not_gzip": (lambda r: _img(r, "case_0002", 1).write_bytes(b"not a nifti at all"),
                 "imagesTr/case_0002_0001.nii.gz", "unreadable"),
    "duplicate": (lambda r: write_image(r / "imagesTr" / "case_0002_0000.nii", np.zeros((8, 24, 24)) + 40, AFF),
                  "imagesTr/case_0002_0000.nii", "duplicate case id"),
    "csv_row_without_images": (lambda r: _rewrite_csv(r, lambda ls: ls + ["case_0099" + ls[1][9:]]), "cases.csv",
                               "row for case case_0099 has no image files"),
    "images_without_csv_row": (lambda r: _rewrite_csv(r, lambda ls: ls[:3]), "cases.csv",
                               "case case_0002 has images but no row"),
    "tumor_without_tumor": (lambda r: _rewrite_label(r, "case_0000", lambda a: np.where(a >= 7, 1, a)),
                            "labelsTr/case_0000.nii.gz", "group 'tumor' (cases.csv) but has no tumour voxels"),
    "normal_with_tumor": (lambda r: _rewrite_label(r, "case_0001", lambda a: np.where(a == 1, 13, a)),
                          "labelsTr/case_0001.nii.gz", "group 'normal' (cases.csv) but has"),
    "hard_with_tumor": (lambda r: _rewrite_label(r, "case_0002", lambda a: np.where(a == 1, 7, a)),
                        "labelsTr/case_0002.nii.gz", "group 'hard' (cases.csv) but has"),
    "lesions_json_unknown_case": (lambda r: (r / "lesions.json").write_text(json.dumps({"case_0077": []})),
                                  "lesions.json", "case_0077"),
    "file_ending": (lambda r: _edit_json(r, file_ending=".nii"), "imagesTr/case_0000_0000.nii.gz",
                    "file ending differs"),
}


def test_good_dataset_has_no_problems(good):
    assert validate_dataset(good) == []
    text = summarize_dataset(good)
    assert "3 training cases" in text and "0 nc, 1 la, 2 pv" in text and "metastasis" in text
    assert "hard 1, normal 1, tumor 1" in text


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_reported_with_file(good, name):
    mutate, where, fragment = FAULTS[name]
    mutate(good)
    probs = validate_dataset(good)
    hits = [p for p in probs if p.path.endswith(where) and fragment in p.message]
    assert hits, f"{name}: expected '{where}: ...{fragment}...' in {[str(p) for p in probs]}"
    for p in probs:
        assert isinstance(p, Problem) and "\n" not in str(p) and str(p).startswith(p.path)
    if name != "file_ending":  # every file has the wrong ending there
        assert len(probs) <= 2, [str(p) for p in probs]


def test_reports_all_problems_not_only_first(good):
    _img(good, "case_0001", 2).unlink()
    _truncate(_img(good, "case_0002", 0))
    _edit_json(good, numTraining=7)
    (good / "imagesTr" / "junk.txt").write_text("x")
    probs = [str(p) for p in validate_dataset(good)]
    assert len(probs) == 4, probs
    for frag in ("case_0001_0002.nii.gz", "case_0002_0000.nii.gz", "numTraining", "junk.txt"):
        assert any(frag in p for p in probs)


def test_padding_value_below_range_accepted(good):
    img = read_image(_img(good, "case_0001"))[0]
    img[0] = -3024  # scanner out-of-field padding value
    write_image(_img(good, "case_0001"), img, AFF)
    assert validate_dataset(good) == []


def test_cli_ok(good, capsys):
    assert main(["validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert "3 training cases" in out and "OK" in out


def test_cli_errors_one_line_each_and_no_writes(good, capsys):
    FAULTS["truncated"][0](good)
    FAULTS["missing_phase"][0](good)
    FAULTS["label_values"][0](good)
    before = snapshot(good)
    assert main(["validate", str(good)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 4  # three problems + the count line
    assert all(ln.startswith("plan-lite: ") for ln in lines)
    assert snapshot(good) == before


def test_cli_subprocess_missing_folder_and_bad_dataset(good, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(p) for p in sys.path if p])}
    r = subprocess.run([sys.executable, "-m", "plan_lite.cli", "validate", str(tmp_path / "nope")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "dataset folder not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    FAULTS["nan"][0](good)
    r = subprocess.run([sys.executable, "-m", "plan_lite.cli", "validate", str(good)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "NaN/inf" in r.stderr


def test_validate_reads_gzip_once(good, monkeypatch):
    """Each NIfTI file is decoded once (performance contract)."""
    import plan_lite.data.validate as v

    calls = []
    real = v.read_nifti
    monkeypatch.setattr(v, "read_nifti", lambda p: calls.append(str(p)) or real(p))
    assert validate_dataset(good) == []
    assert len(calls) == len(set(calls)) == 3 * 3 + 3


def test_synthetic_generator_output_validates(tmp_path):
    synth = pytest.importorskip("plan_lite.data.synthetic")
    root = synth.generate_dataset(tmp_path / "s", n_cases=3, seed=1, shape=(16, 64, 64), progress=False)
    assert validate_dataset(root) == []
    assert "3 training cases" in summarize_dataset(root)
