"""MSD Task03 and LiTS as a user with the download runs them: validate, train, predict, evaluate (unchanged files).

Task03_Liver ships ``imagesTr/liver_N.nii.gz`` (no channel suffix), a ``dataset.json`` with ``modality`` /
``labels`` {"0": background, "1": liver, "2": cancer} / ``training`` / ``test``, and macOS ``._*`` files from its
tarball; LiTS ships ``volume-N.nii`` / ``segmentation-N.nii`` in "Training Batch" folders (``plan-lite convert
lits`` links them into the MSD layout). Both label maps turn the tumour label 2 into plan-lite's 14 ``other``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from plan_lite.cli import main
from plan_lite.config import get_preset
from plan_lite.data.io import affine_from_spacing, write_image, write_label

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import make_case  # noqa: E402

SHAPE, SPACING = (8, 48, 48), (5.0, 2.5, 2.5)  # the tiny preset's grid: a lesion block of 10 x 10 x 10 mm
TRAIN = ["--preset", "tiny_nc", "--max-steps", "4", "--no-progress", "--set", "batch_size=1",
         "--set", "patch_size=8,48,48", "--set", "val_every=1000"]
REMAP = "2 cancer -> 14 other"


def task03_case(i: int) -> tuple[np.ndarray, np.ndarray]:
    img, lab = make_case(i, SHAPE, n_channels=1, group="tumor")
    return img[0], np.where(lab >= 7, 2, lab).astype(np.uint8)


def write_task03(root: Path, n_train: int = 3, n_test: int = 1) -> Path:
    """The Decathlon's own layout and dataset.json keys (Task03_Liver), with its ``._`` AppleDouble files."""
    affine = affine_from_spacing(SPACING, origin=(-30.0, 20.0, -200.0))
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    training = []
    for i in range(n_train + n_test):
        img, lab = task03_case(i)
        if i < n_train:
            write_image(root / "imagesTr" / f"liver_{i}.nii.gz", img, affine)
            write_label(root / "labelsTr" / f"liver_{i}.nii.gz", lab, affine)
            (root / "imagesTr" / f"._liver_{i}.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
            training.append({"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"})
        else:
            write_image(root / "imagesTs" / f"liver_{i}.nii.gz", img, affine)
    meta = {"name": "Liver", "description": "Liver and tumor segmentation", "reference": "IRCAD / LiTS",
            "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018", "tensorImageSize": "3D",
            "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "cancer"},
            "numTraining": n_train, "numTest": n_test, "training": training,
            "test": [f"./imagesTs/liver_{i}.nii.gz" for i in range(n_train, n_train + n_test)]}
    (root / "dataset.json").write_text(json.dumps(meta, indent=4))
    return root


def write_lits(root: Path) -> list[Path]:
    """Two "Training Batch" folders of ``volume-N.nii`` / ``segmentation-N.nii`` and one unlabelled scan."""
    affine = affine_from_spacing(SPACING, origin=(0.0, -100.0, 100.0))
    batches = [root / "Training Batch 1", root / "Training Batch 2"]
    for b in batches:
        b.mkdir(parents=True)
    for i in range(3):
        img, lab = task03_case(10 + i)
        folder = batches[0] if i < 2 else batches[1]
        write_image(folder / f"volume-{i}.nii", img, affine)
        write_label(folder / f"segmentation-{i}.nii", lab, affine)
    write_image(batches[1] / "volume-3.nii", task03_case(13)[0], affine)  # a test scan: no segmentation
    return batches


def run_pipeline(ds: Path, tmp: Path, capsys) -> tuple[dict, str]:
    """validate -> train -> predict -> evaluate through the CLI; returns (metrics.json, everything printed)."""
    printed = []
    assert main(["validate", str(ds)]) == 0
    printed.append(capsys.readouterr().out)
    assert main(["train", str(ds), "--out", str(tmp / "run"), *TRAIN]) == 0
    printed.append(capsys.readouterr().out)
    assert main(["predict", str(tmp / "run" / "last.pt"), str(ds), "--out", str(tmp / "pred"), "--no-progress"]) == 0
    printed.append(capsys.readouterr().out)
    assert main(["evaluate", "--gt", str(ds), "--pred", str(tmp / "pred"), "--no-progress"]) == 0
    printed.append(capsys.readouterr().out)
    return json.loads((tmp / "pred" / "metrics.json").read_text()), "\n".join(printed)


def test_msd_task03_end_to_end(tmp_path, capsys):
    ds = write_task03(tmp_path / "Task03_Liver")
    m, printed = run_pipeline(ds, tmp_path, capsys)
    assert "Label map: labels remapped:" in printed and REMAP in printed  # validate says it
    assert printed.count(REMAP) >= 3  # ... and train and evaluate say it too
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.nii.gz")) == [f"liver_{i}.nii.gz" for i in range(4)]
    les = m["lesion"]
    assert les["tp"] + les["fn"] == 3  # every stored cancer is a ground-truth lesion (label 2 remapped)
    assert m["label_map"].endswith(REMAP) and m["n_cases"] == 3 and m["unlabelled"] == ["liver_3"]


def test_msd_task03_training_sees_lesions(tmp_path):
    """The stored cancer label (2) reaches the sampler as plan-lite's lesion label 14, never as organ 2."""
    from plan_lite.engine.training_data import load_train_cases

    ds = write_task03(tmp_path / "Task03_Liver", n_train=2, n_test=0)
    cases, _, _ = load_train_cases(ds, get_preset("tiny_nc"))
    values = set().union(*(np.unique(c.label).tolist() for c in cases))
    assert 14 in values and 2 not in values


def test_lits_convert_then_end_to_end(tmp_path, capsys):
    batches = write_lits(tmp_path / "LiTS")
    out = tmp_path / "lits_msd"
    assert main(["convert", "lits", *map(str, batches), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "3 training and 1 test scans linked (.nii)" in said
    img = out / "imagesTr" / "lits_0_0000.nii"
    assert img.is_symlink() and img.resolve() == (batches[0] / "volume-0.nii").resolve()
    assert (out / "imagesTs" / "lits_3_0000.nii").is_symlink() and len(list((out / "labelsTr").iterdir())) == 3
    m, printed = run_pipeline(out, tmp_path, capsys)
    assert "2 tumor -> 14 other" in printed
    assert m["lesion"]["tp"] + m["lesion"]["fn"] == 3  # GT read from .nii labels, tumour remapped


def test_lits_convert_errors_leave_nothing_behind(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["convert", "lits", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no LiTS files" in err[0] and str(empty) in err[0]
    assert not (tmp_path / "o").exists()
    batches = write_lits(tmp_path / "LiTS")
    (batches[1] / "segmentation-7.nii").write_bytes(b"")  # a segmentation without its volume
    assert main(["convert", "lits", *map(str, batches), "--out", str(tmp_path / "o")]) == 2
    assert "segmentation without volume-7" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("x")
    (batches[1] / "segmentation-7.nii").unlink()
    assert main(["convert", "lits", *map(str, batches), "--out", str(keep)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err and (keep / "mine.txt").read_text() == "x"


@pytest.mark.parametrize("labels", [{"0": "background", "1": "liver", "2": "cancer"}])
def test_validate_names_the_label_map(tmp_path, capsys, labels):
    ds = write_task03(tmp_path / "T", n_train=1, n_test=0)
    assert main(["validate", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "Label map: labels remapped: 0 background -> 0 background, 1 liver -> 1 liver, 2 cancer -> 14 other" in out
