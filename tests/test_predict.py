"""Prediction: geometry round trip, outputs, missing phases, real CT (book/design_decisions.md#dd-inference)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plan_lite.config import VARIANTS, get_preset
from plan_lite.data.io import Case, read_image, write_image
from plan_lite.engine.checkpoint import save_checkpoint
from plan_lite.engine.predict import Predictor, predict
from plan_lite.engine.training_data import make_preprocessor
from plan_lite.errors import PlanLiteError
from plan_lite.labels import patient_output_names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import make_case, make_dataset  # noqa: E402

# Anisotropic, axis-permuted and flipped affine (file axes x, y, z -> world -y, z, -x), spacing (z, y, x) = (3, 2.3, 1.7)
ODD_AFFINE = np.array([[0.0, 0.0, -3.0, 40.0], [-1.7, 0.0, 0.0, 12.5], [0.0, 2.3, 0.0, -80.0], [0, 0, 0, 1.0]])


def make_checkpoint(path: Path, preset: str = "tiny", cases=None, **overrides) -> Path:
    """An untrained tiny model with preprocessing statistics fitted on ``cases`` (enough for geometry tests)."""
    cfg = get_preset(preset, patch_size=(8, 48, 48), spacing=(5.0, 4.0, 4.0), **overrides)
    torch.manual_seed(0)
    from plan_lite.model import PLAN

    model = PLAN(cfg)
    pre = make_preprocessor(cfg).fit(cases)
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "preprocess": pre.stats,
                           "step": 0, "stage": 2})
    return path


@pytest.fixture(scope="module")
def odd_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("pred")
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    paths = []
    for c, ph in enumerate(("nc", "la", "pv")):
        p = d / f"odd_{ph}.nii.gz"
        write_image(p, img[c], ODD_AFFINE)
        paths.append(p)
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    ckpt = make_checkpoint(d / "model.pt", cases=[case])
    return d, paths, ckpt


def test_predict_geometry_round_trip(odd_case, tmp_path):
    d, paths, ckpt = odd_case
    out = predict(ckpt, paths, tmp_path / "out", progress=False)
    label, spacing, affine = read_image(out / "odd_nc.nii.gz")  # case id from the first phase file
    src, _, src_aff = read_image(paths[0])
    assert label.shape == src.shape
    assert np.allclose(affine, src_aff, atol=1e-4)
    assert spacing == pytest.approx((3.0, 2.3, 1.7), abs=1e-4)
    case_id = "odd_nc"
    patient = json.loads((out / f"{case_id}_patient.json").read_text())
    assert list(patient) == patient_output_names("paper")
    assert all(0.0 <= v <= 1.0 for v in patient.values())
    lesions = json.loads((out / f"{case_id}_lesions.json").read_text())["lesions"]
    for les in lesions:
        assert {"id", "type", "type_probabilities", "volume_mm3", "equivalent_radius_mm", "center_world_mm",
                "bbox_zyx"} <= set(les)
        assert les["volume_mm3"] >= 25.0 - 1e-6 or les["volume_mm3"] > 0
    rows = list(csv.DictReader(open(out / "patients.csv")))
    assert len(rows) == 1 and rows[0]["case"] == case_id and len(rows[0]) == 12


def test_world_centre_uses_affine():
    from plan_lite.engine.predict import _lesion_geometry

    inst = np.zeros((4, 5, 6), np.int32)
    inst[1:3, 2, 3] = 1
    recs = [{"id": 1, "label": 9, "probability": 0.9, "type_probs": {}}]
    lesions, lut = _lesion_geometry(recs, inst, (3.0, 2.3, 1.7), ODD_AFFINE)
    les = lesions[0]
    assert lut[1] == 1
    ijk = np.array([3, 2, 1.5, 1.0])  # file (x, y, z) of the centre voxel (z, y, x) = (1.5, 2, 3)
    assert les["center_world_mm"] == pytest.approx((ODD_AFFINE @ ijk)[:3].tolist())
    assert les["volume_mm3"] == pytest.approx(2 * 3.0 * 2.3 * 1.7)
    assert les["bbox_zyx"] == {"start": [1, 2, 3], "stop": [3, 3, 4]}


def test_missing_phase_is_an_error(odd_case, tmp_path):
    d, paths, ckpt = odd_case
    with pytest.raises(PlanLiteError, match="needs 3 phase"):
        predict(ckpt, paths[:2], tmp_path / "o", progress=False)
    ds = make_dataset(tmp_path / "ds", n_cases=2)
    next((ds / "imagesTr").glob("case_0001_0002.nii.gz")).unlink()
    with pytest.raises(PlanLiteError, match="missing phase"):
        predict(ckpt, [ds], tmp_path / "o2", progress=False)


def test_predict_msd_split_and_pixel_only_scores(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_cases=3, shape=(8, 32, 32))
    from plan_lite.data.io import MSDDataset

    cases = list(MSDDataset(ds))
    ckpt = make_checkpoint(tmp_path / "po.pt", cases=cases, **VARIANTS["pixel_only"])
    p = Predictor(ckpt)
    assert not p.has_patient
    out = predict(ckpt, [ds], tmp_path / "out", split="test", progress=False, predictor=p)
    assert sorted(f.name for f in out.glob("*.nii.gz")) == ["case_0002.nii.gz"]
    scores = json.loads((out / "case_0002_patient.json").read_text())
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    lab, _, _ = read_image(out / "case_0002.nii.gz")
    assert lab.shape == (8, 32, 32)


def test_predict_real_ct(realdata_dir, tmp_path):
    """The real non-contrast CT fixture (skipped when absent): a tiny_nc model keeps the input geometry."""
    ct = realdata_dir / "example_ct_sm.nii.gz"
    img, spacing, affine = read_image(ct)
    case = Case(img[None].astype(np.float32), (img > -100).astype(np.uint8), spacing, affine, "ct")
    ckpt = make_checkpoint(tmp_path / "nc.pt", preset="tiny_nc", cases=[case])
    out = predict(ckpt, [ct], tmp_path / "out", progress=False, overlap=0.25)
    lab, _, aff = read_image(out / "example_ct_sm.nii.gz")
    assert lab.shape == img.shape and np.allclose(aff, affine, atol=1e-4)


def test_predict_uses_the_checkpoints_inference_settings(odd_case, tmp_path):
    """Inference settings live in the checkpoint's config (``cfg.infer``): ``predict`` without flags uses them and
    records them in prediction.json; an explicit argument overrides one; instance and semantic outputs differ
    in how the lesion voxels are chosen, not in the geometry."""
    d, paths, _ = odd_case
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    sem = make_checkpoint(tmp_path / "sem.pt", cases=[case], lesion_output="semantic", lesion_decision="merged",
                          overlap=0.25)
    out = predict(sem, paths, tmp_path / "a", progress=False)
    used = json.loads((out / "prediction.json").read_text())
    assert used["lesion_output"] == "semantic" and used["lesion_decision"] == "merged" and used["overlap"] == 0.25
    inst = make_checkpoint(tmp_path / "inst.pt", cases=[case], score_threshold=0.0)
    out = predict(inst, paths, tmp_path / "b", progress=False)
    used = json.loads((out / "prediction.json").read_text())
    assert used["lesion_output"] == "instance" and used["score_threshold"] == 0.0 and used["overlap"] == 0.5
    out = predict(inst, paths, tmp_path / "c", progress=False, lesion_output="semantic", score_threshold=0.7)
    used = json.loads((out / "prediction.json").read_text())
    assert used["lesion_output"] == "semantic" and used["score_threshold"] == 0.7
    src_shape = read_image(paths[0])[0].shape
    for sub in ("a", "b", "c"):
        assert read_image(tmp_path / sub / "odd_nc.nii.gz")[0].shape == src_shape
    with pytest.raises(PlanLiteError, match="lesion_output"):
        Predictor(inst, lesion_output="panoptic")


def test_pixel_agreement_drops_lesions_the_pixel_branch_does_not_see(odd_case, tmp_path):
    """Every instance-output lesion records its maximum pixel-branch lesion probability; ``pixel_agreement`` (config
    or argument) drops exactly the lesions below it, and their voxels are no longer lesions."""
    d, paths, _ = odd_case
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    ckpt = make_checkpoint(tmp_path / "m.pt", cases=[case], score_threshold=0.0)
    runs = {}
    for agree in (0.0, None, 1.0):
        o = predict(ckpt, paths, tmp_path / str(agree), progress=False, pixel_agreement=agree)
        assert json.loads((o / "prediction.json").read_text())["pixel_agreement"] == (agree or 0.0)
        runs[agree] = (read_image(o / "odd_nc.nii.gz")[0],
                       json.loads((o / "odd_nc_lesions.json").read_text())["lesions"])
    label0, lesions0 = runs[0.0]
    assert lesions0 and all(0.0 <= les["pixel_probability"] <= 1.0 for les in lesions0)
    assert runs[None][1] == lesions0  # the config's default is 0 (off)
    cut = sorted(les["pixel_probability"] for les in lesions0)[len(lesions0) // 2]
    o = predict(ckpt, paths, tmp_path / "cut", progress=False, pixel_agreement=cut)
    kept = json.loads((o / "odd_nc_lesions.json").read_text())["lesions"]
    assert sorted(les["volume_mm3"] for les in kept) == pytest.approx(
        sorted(les["volume_mm3"] for les in lesions0 if les["pixel_probability"] >= cut))
    label1, lesions1 = runs[1.0]
    if all(les["pixel_probability"] < 1.0 for les in lesions0):
        assert lesions1 == [] and not (label1 >= 7).any()
    assert ((label1 >= 7) <= (label0 >= 7)).all()


def test_patient_scores_of_a_case_without_lesions(odd_case, tmp_path):
    """``patient_no_lesion``: with no lesion kept the official rule scores every patient output 0; ``"pixel"``
    gives small positive scores (at most 1 %) from the pixel branch; a case with lesions is scored the same
    either way (the patient branch over its lesion voxels)."""
    d, paths, _ = odd_case
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    none = make_checkpoint(tmp_path / "none.pt", cases=[case], score_threshold=1.0)  # no query scores above 1
    some = make_checkpoint(tmp_path / "some.pt", cases=[case], score_threshold=0.0)
    got = {}
    for name, ckpt in (("none", none), ("some", some)):
        for rule in ("zero", "pixel"):
            o = predict(ckpt, paths, tmp_path / f"{name}_{rule}", progress=False, patient_no_lesion=rule)
            assert json.loads((o / "prediction.json").read_text())["patient_no_lesion"] == rule
            got[name, rule] = (json.loads((o / "odd_nc_lesions.json").read_text())["lesions"],
                               json.loads((o / "odd_nc_patient.json").read_text()))
    assert got["none", "zero"][0] == [] and set(got["none", "zero"][1].values()) == {0.0}
    pixel = got["none", "pixel"][1]
    assert 0.0 < pixel["any_tumor"] <= 0.01 and all(0.0 <= v <= pixel["any_tumor"] for v in pixel.values())
    assert got["some", "zero"][0] and got["some", "zero"] == got["some", "pixel"]
    assert Predictor(some).patient_no_lesion == "zero"  # the official rule unless the config says otherwise
    with pytest.raises(PlanLiteError, match="patient_no_lesion"):
        Predictor(some, patient_no_lesion="mean")


def test_patient_readout_mixes_the_patient_branch_and_the_kept_lesions(odd_case, tmp_path):
    """``patient_readout``: ``"lesion"`` scores "any tumour" by the best kept lesion's probability, ``"fused"`` is the
    mean of that and the official patient-branch readout, for every output; the lesions themselves do not change,
    and a case without kept lesions follows ``patient_no_lesion`` whatever the readout."""
    d, paths, _ = odd_case
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    some = make_checkpoint(tmp_path / "some.pt", cases=[case], score_threshold=0.0)
    none = make_checkpoint(tmp_path / "none.pt", cases=[case], score_threshold=1.0)
    got = {}
    for name, ckpt in (("some", some), ("none", none)):
        for readout in ("patient", "lesion", "fused"):
            o = predict(ckpt, paths, tmp_path / f"{name}_{readout}", progress=False, patient_readout=readout,
                        patient_no_lesion="pixel")
            assert json.loads((o / "prediction.json").read_text())["patient_readout"] == readout
            got[name, readout] = (json.loads((o / "odd_nc_lesions.json").read_text())["lesions"],
                                  json.loads((o / "odd_nc_patient.json").read_text()))
    lesions = got["some", "patient"][0]
    assert lesions and got["some", "lesion"][0] == lesions == got["some", "fused"][0]
    official, from_lesions, fused = (got["some", r][1] for r in ("patient", "lesion", "fused"))
    assert from_lesions["any_tumor"] == pytest.approx(max(les["probability"] for les in lesions), abs=1e-6)
    assert from_lesions != official
    for k in official:
        assert fused[k] == pytest.approx(0.5 * (official[k] + from_lesions[k]), abs=1e-6)
    assert got["none", "patient"][1] == got["none", "lesion"][1] == got["none", "fused"][1]
    assert 0.0 < got["none", "patient"][1]["any_tumor"] <= 0.01
    assert Predictor(some).patient_readout == "patient"  # the paper's readout unless the config says otherwise
    with pytest.raises(PlanLiteError, match="patient_readout"):
        Predictor(some, patient_readout="max")


def test_lesion_type_source_changes_types_not_detections(odd_case, tmp_path):
    """``lesion_type`` (``cfg.infer`` or argument) retypes each predicted lesion as a whole from the pixel branch
    (or both branches); which voxels are lesions, the records and the patient scores stay the same."""
    d, paths, _ = odd_case
    img, lab = make_case(0, shape=(10, 30, 26), n_channels=3, group="tumor")
    case = Case(img.astype(np.float32), lab, (3.0, 2.3, 1.7), ODD_AFFINE, "odd")
    ckpt = make_checkpoint(tmp_path / "m.pt", cases=[case], score_threshold=0.0, lesion_type="pixel")
    out = {}
    for source in ("query", "pixel", "fused"):
        o = predict(ckpt, paths, tmp_path / source, progress=False, lesion_type=None if source == "pixel" else source)
        assert json.loads((o / "prediction.json").read_text())["lesion_type"] == source
        lesions = json.loads((o / "odd_nc_lesions.json").read_text())["lesions"]
        out[source] = read_image(o / "odd_nc.nii.gz")[0], lesions, json.loads((o / "odd_nc_patient.json").read_text())
    q_label, q_lesions, q_patient = out["query"]
    assert q_lesions, "the untrained model at score threshold 0 should paint lesions"
    for source in ("pixel", "fused"):
        label, lesions, patient = out[source]
        assert ((label >= 7) == (q_label >= 7)).all()
        assert [les["volume_mm3"] for les in lesions] == [les["volume_mm3"] for les in q_lesions]
        assert patient == q_patient
        for les in lesions:  # one type per lesion, the argmax of its (summing-to-1) type probabilities
            probs = les["type_probabilities"]
            assert sum(probs.values()) == pytest.approx(1.0)
            assert les["type"] == max(probs, key=probs.get)
