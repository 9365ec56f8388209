"""Engine: schedule, sampler, safe checkpoints, exact resume, DDP replicas (paper Sec. 3)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plan_lite.config import VARIANTS, get_preset
from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint, state_dict_digest
from plan_lite.engine.sampler import PatchSampler, TrainCase, ignore_small_lesions, make_train_case
from plan_lite.engine.train import Schedule, train
from plan_lite.errors import CheckpointError
from plan_lite.labels import IGNORE_LABEL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import make_dataset  # noqa: E402

PATCH = (8, 48, 48)  # multiple of the tiny preset's total stride (4, 16, 16)


def tiny_cfg(**kw):
    base = {"patch_size": PATCH, "batch_size": 1, "augment": True, "val_every": 1000}
    return get_preset("tiny", **{**base, **kw})


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("eng") / "ds", n_cases=3, shape=(8, 40, 40))


# ----------------------------------------------------------------------------------------------- schedule
def test_schedule_split_and_poly_lr():
    cfg = get_preset("tiny")  # 4 + 8 epochs of 25 steps, patient from epoch 2 of stage 2
    s = Schedule.from_config(cfg)
    assert (s.stage1, s.stage2, s.patient_start) == (100, 200, 150)
    s = Schedule.from_config(cfg, max_steps=30)
    assert (s.stage1, s.stage2, s.total) == (10, 20, 30)
    assert s.patient_start == 10 + 5
    assert [s.stage(i) for i in (0, 9, 10, 29)] == [1, 1, 2, 2]
    assert s.lr_at(0) == pytest.approx(cfg.train.lr) and s.lr_at(10) == pytest.approx(cfg.train.lr)
    assert s.lr_at(5) == pytest.approx(cfg.train.lr * 0.5 ** 0.9)
    po = Schedule.from_config(get_preset("tiny", **VARIANTS["pixel_only"]), max_steps=30)
    assert (po.stage1, po.stage2) == (30, 0) and po.stage(29) == 1
    w = Schedule.from_config(get_preset("tiny", stage2_warmup=0.25), max_steps=30)  # 5 warm-up steps of 20
    assert w.warmup2 == 5 and w.lr_at(9) == pytest.approx(s.lr_at(9))
    assert w.lr_at(10) == pytest.approx(cfg.train.lr / 5) and w.lr_at(14) == pytest.approx(s.lr_at(14))


@pytest.mark.parametrize("mode", ["fresh", "continue"])
def test_stage_two_starts_a_fresh_optimizer(small_ds, tmp_path, mode):
    """The official stage 2 is a new run on the stage-1 weights: its RAdam moments start at zero (``fresh``);
    ``continue`` keeps the stage-1 state. The backbone group runs at ``stage2_backbone_lr_scale`` x the LR, the
    heads at ``heads_lr_scale`` x the LR."""
    cfg = tiny_cfg(stage1_epochs=8, stage2_epochs=4, patient_start_epoch=0, stage2_optimizer=mode,
                   stage2_backbone_lr_scale=0.1, heads_lr_scale=0.5)
    train(small_ds, cfg, tmp_path, max_steps=6, progress=False, validate=False)  # stage 1 = 4 steps, stage 2 = 2
    opt = load_checkpoint(tmp_path / "last.pt")["optimizer"]
    steps = {float(st["step"]) for st in opt["state"].values()}
    assert steps == ({2.0} if mode == "fresh" else {2.0, 6.0})  # heads only train in stage 2 (2 steps)
    groups = {g["name"]: g["lr"] for g in opt["param_groups"]}
    assert groups["backbone"] == pytest.approx(0.2 * groups["heads"])


def test_patient_targets_soft_labels():
    """Soft labels min(1, volume / 245 mm^3): the same lesion volume gives the same label at every spacing."""
    from plan_lite.losses import patient_targets

    cfg = get_preset("tiny", spacing=(5.0, 0.7, 0.7))  # 2.45 mm^3 voxels: the threshold is the code's 100 voxels
    lab = np.zeros((2, 4, 8, 8), np.int64)
    lab[0, 0, :5, :10 // 2] = 9  # 25 voxels of metastasis
    lab[1, :, :, :] = IGNORE_LABEL
    t = patient_targets(torch.from_numpy(lab), cfg).numpy()
    assert t.shape == (2, 11)
    assert t[0, 0] == pytest.approx(0.25) and t[0, 2] == pytest.approx(0.25) and t[0, 1] == 0  # any, malignant
    assert not t[1].any()
    coarse = patient_targets(torch.from_numpy(lab), get_preset("tiny", spacing=(5.0, 1.4, 1.4)))  # 4x the voxel volume
    assert coarse[0, 0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- sampler
def test_ignore_small_lesions_and_padding():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:5, 2:12, 2:12] = 1
    lab[2, 3:5, 3:5] = 9  # 4 voxels -> ignore
    lab[2:4, 8:11, 8:11] = 11  # 18 voxels -> kept
    out = ignore_small_lesions(lab, 10)
    assert (out == IGNORE_LABEL).sum() == 4 and (out == 11).sum() == 18
    case = make_train_case("c", np.ones((2, *lab.shape), np.float32), lab, (8, 32, 16), 10)
    assert case.image.shape == (2, 8, 32, 20) and case.label.shape == (8, 32, 20)
    assert case.image[:, 0].sum() == 0 and len(case.lesion_coords) == 18


def test_sampler_foreground_rank_streams_and_state():
    lab = np.zeros((8, 64, 64), np.uint8)
    lab[:, 10:50, 10:50] = 1
    lab[3:5, 40:44, 40:44] = 9
    case = make_train_case("c", np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32), lab,
                           (8, 16, 16), 10)
    s = PatchSampler([case], (8, 16, 16), batch_size=4, fg_oversample=1.0, seed=3)
    for _ in range(5):
        img, y = s.sample()
        assert img.shape == (4, 1, 8, 16, 16) and y.shape == (4, 8, 16, 16)
        assert all((yy == 9).any() for yy in y)  # fg_oversample 1: every patch holds lesion voxels
    state = s.state_dict()
    a = s.sample()
    s.load_state_dict(state)
    b = s.sample()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    r0 = PatchSampler([case], (8, 16, 16), 4, 0.0, seed=3, rank=0).sample()[0]
    r1 = PatchSampler([case], (8, 16, 16), 4, 0.0, seed=3, rank=1).sample()[0]
    assert not np.array_equal(r0, r1)  # DDP ranks draw different patches


def test_sampler_rejects_empty():
    from plan_lite.errors import DatasetError

    with pytest.raises(DatasetError):
        PatchSampler([], PATCH, 1, 0.3)
    assert isinstance(TrainCase("x", np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1))), TrainCase)


# ----------------------------------------------------------------------------------------------- checkpoints
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_weights_only_roundtrip(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "config": get_preset("tiny").to_dict(),
                                               "rng": {"np": np.arange(3, dtype=np.uint32)}, "step": np.int64(4)})
    raw = torch.load(path, weights_only=True)
    assert raw["rng"]["np"] == [0, 1, 2] and raw["step"] == 4
    assert load_checkpoint(path)["model"]["w"].sum() == 2
    assert not list(tmp_path.glob(".c.pt.tmp-*"))  # atomic: no temp file left


def test_refuses_pickled_code(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "plan-lite-checkpoint", "model": {}, "config": {}, "x": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="evil.pt: refusing to load: contains pickled code"):
        load_checkpoint(bad)
    from plan_lite.cli import main

    img = tmp_path / "img.nii.gz"
    assert main(["predict", str(bad), str(img), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0] and "evil.pt" in err[0]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


# ----------------------------------------------------------------------------------------------- training
def test_resume_is_bit_identical(small_ds, tmp_path):
    # 6 steps: stage 1 = 4, stage 2 = 2 (stage switch and patient terms inside the resumed window).
    cfg = tiny_cfg(stage1_epochs=8, stage2_epochs=4, patient_start_epoch=0)
    a, b = tmp_path / "a", tmp_path / "b"
    train(small_ds, cfg, a, max_steps=6, progress=False, validate=False)
    train(small_ds, cfg, b, max_steps=6, progress=False, validate=False, stop_after=3)
    assert load_checkpoint(b / "last.pt")["step"] == 3
    train(small_ds, cfg, b, progress=False, validate=False, resume=True)
    sa, sb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert sa["step"] == sb["step"] == 6 and sa["stage"] == 2
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    la = (a / "log.jsonl").read_text().splitlines()
    lb = (b / "log.jsonl").read_text().splitlines()
    assert len(la) == len(lb) == 6
    import json

    recs = [json.loads(x) for x in la]
    assert [r["stage"] for r in recs] == [1, 1, 1, 1, 2, 2] and "loss_patient" in recs[-1]
    assert [json.loads(x)["total"] for x in lb] == [r["total"] for r in recs]
    assert (a / "config.json").is_file() and (a / "best.pt").is_file()


def test_refuses_to_overwrite_a_run(small_ds, tmp_path):
    from plan_lite.errors import PlanLiteError

    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(PlanLiteError, match="already holds a run"):
        train(small_ds, tiny_cfg(), tmp_path, max_steps=1, progress=False)


def _ddp_worker(rank, world, port, ds, out):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    train(ds, tiny_cfg(augment=False), out, max_steps=3, progress=False, validate=False, device="cpu")


def test_ddp_two_cpu_ranks_hold_identical_weights(small_ds, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(small_ds), str(tmp_path)), nprocs=2, join=True)
    d0 = (tmp_path / "weights_rank0.sha256").read_text()
    d1 = (tmp_path / "weights_rank1.sha256").read_text()
    assert d0 == d1
    assert d0.strip() == state_dict_digest(load_checkpoint(tmp_path / "last.pt")["model"])


def test_experiment_table(small_ds, tmp_path):
    from plan_lite.engine.experiment import run_experiment

    over = {"patch_size": PATCH, "batch_size": 1, "augment": False}
    rep = run_experiment(small_ds, tmp_path, variants=("plan", "pixel_only"), max_steps=2, overrides=over,
                         progress=False)
    runs = {r["variant"]: r for r in rep["runs"]}
    assert set(runs) == {"plan", "pixel_only"}
    assert runs["pixel_only"]["score_source"] == "volume"
    md = (tmp_path / "ablation.md").read_text()
    assert "| plan | 1 |" in md and "| pixel_only | 1 |" in md and "recall" in md
    assert (tmp_path / "ablation.json").is_file()
    assert (tmp_path / "plan" / "seed0" / "pred" / "case_0002.nii.gz").is_file()


def test_experiment_chooses_the_patient_threshold_on_val(tmp_path):
    """run_experiment predicts val and test, so the operating point comes from val (not the 0.5 fallback)."""
    from plan_lite.engine.experiment import run_experiment

    groups = ["tumor", "tumor", "tumor", "tumor", "normal", "normal"]  # val: case 1 tumour, case 4 normal
    ds = make_dataset(tmp_path / "ds", n_cases=6, shape=(8, 40, 40), groups=groups)
    over = {"patch_size": PATCH, "batch_size": 1, "augment": False}
    rep = run_experiment(ds, tmp_path / "exp", variants=("plan", "pixel_only"), max_steps=2, overrides=over,
                         progress=False, validate=False)
    for r in rep["runs"]:
        assert r["threshold_source"].startswith("Youden's J on val (n=2)"), r
        assert (tmp_path / "exp" / r["variant"] / "seed0" / "pred" / "case_0001.nii.gz").is_file()  # a val case


def test_best_checkpoint_comes_from_the_final_stage(small_ds, tmp_path, monkeypatch):
    """A stage-1 validation score (untrained lesion branch) never makes best.pt, even when it is the highest."""
    import json

    import plan_lite.engine.train as train_mod

    calls = []

    def fake_validate(model, cfg, stats, dataset_dir, val_ids, out, step, stage):
        calls.append((step, stage))
        return 1.0 if stage == 1 else 0.1 * step  # stage 1 looks best; stage 2 improves

    monkeypatch.setattr(train_mod, "_validate", fake_validate)
    cfg = tiny_cfg(val_every=1, stage1_epochs=4, stage2_epochs=1, augment=False)
    run = train(small_ds, cfg, tmp_path / "run", max_steps=5, progress=False)
    assert [st for _, st in calls] == [1, 1, 1, 1, 2]
    best = load_checkpoint(run / "best.pt")
    rec = json.loads((run / "best.json").read_text())
    assert best["stage"] == 2 and best["step"] == 5 and rec["stage"] == 2 and rec["score"] == pytest.approx(0.5)


def test_best_checkpoint_ties_go_to_the_later_step(small_ds, tmp_path, monkeypatch):
    """Equal validation scores (a short run scoring 0 at every validation) keep the longer-trained checkpoint, so
    best.pt is last.pt and one calibration serves both; a strictly lower later score does not replace the best."""
    import json

    import plan_lite.engine.train as train_mod

    scores = {3: 0.2, 4: 0.0, 5: 0.0, 6: 0.0}
    monkeypatch.setattr(train_mod, "_validate", lambda *a: scores.get(a[6], 0.0) if a[7] == 2 else 1.0)
    cfg = tiny_cfg(val_every=1, stage1_epochs=1, stage2_epochs=2, augment=False)  # stage 2 = steps 3-6
    run = train(small_ds, cfg, tmp_path / "run", max_steps=6, progress=False, calibrate=False)
    rec = json.loads((run / "best.json").read_text())
    assert rec["step"] == 3 and rec["score"] == pytest.approx(0.2)  # 0.2 beats the later zeros
    scores[3] = 0.0
    run = train(small_ds, cfg, tmp_path / "run0", max_steps=6, progress=False, calibrate=False)
    assert json.loads((run / "best.json").read_text())["step"] == 6  # all zero: the last one


def test_best_is_last_without_a_final_stage_validation(small_ds, tmp_path):
    import json

    run = train(small_ds, tiny_cfg(val_every=1000, stage1_epochs=4, stage2_epochs=1), tmp_path / "run",
                max_steps=5, progress=False, validate=False)
    rec = json.loads((run / "best.json").read_text())
    assert rec["step"] == 5 and rec["stage"] == 2 and rec["score"] is None and "last" in rec["selection"]


def test_predict_several_splits(small_ds, tmp_path):
    from plan_lite.engine.training_data import split_ids

    ids = ["case_0000", "case_0001", "case_0002"]
    assert split_ids(small_ds, ("val", "test"), ids) == ["case_0001", "case_0002"]
    assert split_ids(small_ds, "test", ids) == ["case_0002"]


_KILL_CHILD = """
import json, sys, torch
from plan_lite.config import PlanConfig
from plan_lite.engine.train import train
torch.set_num_threads(1)
cfg = PlanConfig.from_dict(json.loads(sys.argv[3]))
train(sys.argv[1], cfg, sys.argv[2], max_steps=6, progress=False, validate=False, checkpoint_every=1)
"""


def test_resume_after_sigkill_is_bit_identical(small_ds, tmp_path):
    """A training process killed (SIGKILL, no clean-up) after a few steps, resumed from its last checkpoint,
    ends with the same weights and log as an uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    cfg = tiny_cfg(stage1_epochs=8, stage2_epochs=4, patient_start_epoch=0)
    a, b = tmp_path / "a", tmp_path / "b"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the child's thread count: identical float reductions
    try:
        train(small_ds, cfg, a, max_steps=6, progress=False, validate=False)
        proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(small_ds), str(b),
                                 json.dumps(cfg.to_dict())])
        deadline = time.time() + 300
        log = b / "log.jsonl"
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the child finished (or failed) before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = load_checkpoint(b / "last.pt")["step"]
        assert 1 <= killed_at < 6
        train(small_ds, cfg, b, progress=False, validate=False, resume=True)
    finally:
        torch.set_num_threads(threads)
    sa, sb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert sa["step"] == sb["step"] == 6
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    la = [json.loads(x)["total"] for x in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["total"] for x in (b / "log.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 6


def test_foreground_rate_holds_with_lesion_free_cases():
    """fg_oversample is the probability of a lesion-centred patch even when most cases have no lesion."""
    lab = np.zeros((8, 64, 64), np.uint8)
    lab[:, 10:50, 10:50] = 1
    with_lesion = lab.copy()
    with_lesion[3:5, 40:44, 40:44] = 9
    img = np.zeros((1, 8, 64, 64), np.float32)
    cases = [make_train_case(f"n{i}", img, lab, (8, 16, 16), 10) for i in range(3)]
    cases.append(make_train_case("t", img, with_lesion, (8, 16, 16), 10))
    s = PatchSampler(cases, (8, 16, 16), batch_size=50, fg_oversample=0.5, seed=0)
    _, y = s.sample()
    rate = float(np.mean([(yy == 9).any() for yy in y]))
    assert 0.3 <= rate <= 0.75, rate  # 0.5 expected; picking a case first would give ~0.5 * 1/4 (+ chance hits)
    s1 = PatchSampler(cases, (8, 16, 16), batch_size=20, fg_oversample=1.0, seed=0)
    assert all((yy == 9).any() for yy in s1.sample()[1])


def test_best_setting_prefers_f1_then_fewer_false_positives():
    from plan_lite.engine.calibrate import best_setting

    rows = [{"threshold": 0.0, "pixel_agreement": 0.0, "f1": 0.2}, {"threshold": 0.1, "pixel_agreement": 0.0, "f1": 0.5},
            {"threshold": 0.3, "pixel_agreement": 0.0, "f1": 0.5}, {"threshold": 0.3, "pixel_agreement": 0.2, "f1": 0.5},
            {"threshold": 0.5, "pixel_agreement": 0.0, "f1": None}]
    assert (best_setting(rows)["threshold"], best_setting(rows)["pixel_agreement"]) == (0.3, 0.2)
    rows[1]["f1"] = 0.6
    assert best_setting(rows)["threshold"] == 0.1


def test_one_standard_error_rule_keeps_the_agreement_off_unless_it_clearly_helps():
    from plan_lite.engine.calibrate import _row, select_setting

    def table(gate_tp, gate_fp, n_cases=20):
        """Two settings on n_cases cases with 3 lesions each: agreement off (2 tp, 2 fp per case) and on."""
        per_case = np.array([[[2, 2, 1], [gate_tp, gate_fp, 3 - gate_tp]]] * n_cases)
        # some spread between cases, so that the bootstrap has something to resample
        per_case[::2, :, 1] += 1
        tot = per_case.sum(0)
        rows = [_row("lesion", 0.5, 0.0, *tot[0]), _row("lesion", 0.5, 0.6, *tot[1])]
        return rows, per_case

    rows, per_case = table(2, 1)  # the gate removes one false positive per case: F1 0.53 -> 0.62
    chosen, info = select_setting(rows, per_case, "lesion")
    assert info["best"]["pixel_agreement"] == 0.6 and chosen["pixel_agreement"] == 0.6
    assert info["f1_standard_error"] > 0
    rows, per_case = table(2, 2)  # same counts on every other case: tie within noise -> the simpler setting
    rows[1]["f1"] += 0.005  # a sliver better on val
    chosen, info = select_setting(rows, per_case, "lesion")
    assert info["best"]["pixel_agreement"] == 0.6 and chosen["pixel_agreement"] == 0.0


def test_training_calibrates_the_lesion_threshold_on_val(small_ds, tmp_path):
    """A finished run chooses the instance score threshold on the val split and stores it in last.pt / best.pt;
    ``predict`` then uses it with no flag (prediction.json says so)."""
    import json

    from plan_lite.engine.calibrate import AGREEMENTS, THRESHOLDS
    from plan_lite.engine.predict import predict

    cfg = tiny_cfg(stage1_epochs=1, stage2_epochs=1, patient_start_epoch=0)
    train(small_ds, cfg, tmp_path / "run", max_steps=4, progress=False, validate=False)
    rec = json.loads((tmp_path / "run" / "calibration_last.json").read_text())
    assert rec["split"] == "val" and rec["cases"] and len(rec["table"]) > 5
    thr, agree = rec["score_threshold"], rec["pixel_agreement"]
    assert {(r["threshold"], r["pixel_agreement"]) for r in rec["table"]} == {
        (t, a) for t in THRESHOLDS for a in AGREEMENTS}
    chosen = next(r["f1"] or 0.0 for r in rec["table"] if r["threshold"] == thr and r["pixel_agreement"] == agree)
    assert rec["best_f1"] == max((r["f1"] or 0.0) for r in rec["table"])
    assert chosen >= rec["best_f1"] - rec["f1_standard_error"]  # the one-standard-error rule
    for name in ("last.pt", "best.pt"):
        infer = load_checkpoint(tmp_path / "run" / name)["config"]["infer"]
        assert (infer["score_threshold"], infer["pixel_agreement"]) == (thr, agree)
    out = predict(tmp_path / "run" / "last.pt", [small_ds], tmp_path / "pred", split="test", progress=False)
    used = json.loads((out / "prediction.json").read_text())
    assert (used["score_threshold"], used["pixel_agreement"]) == (thr, agree)
    # the table's shortcut (drop lesions below the agreement from one prediction) counts what predict would
    from plan_lite.data.io import MSDDataset
    from plan_lite.engine.calibrate import threshold_table
    from plan_lite.engine.predict import Predictor
    from plan_lite.metrics.lesion import lesion_metrics_case

    pred = Predictor(tmp_path / "run" / "last.pt", score_threshold=0.0, pixel_agreement=0.0)
    ds = MSDDataset(small_ds)
    probs = [les["pixel_probability"] for cid in rec["cases"]
             for les in pred.finish_case(ds.load(cid), *pred.stitch_case(ds.load(cid))).lesions]
    assert probs, "the 4-step model at score threshold 0 should paint lesions on val"
    cuts = (0.0, float(np.median(probs)) + 1e-6)  # the second drops at least one lesion
    table = threshold_table(pred, small_ds, rec["cases"], thresholds=(0.0,), agreements=cuts)
    for row in table:
        tp = fp = fn = 0
        for cid in rec["cases"]:
            case = ds.load(cid)
            gt = case.label
            p = pred.finish_case(case, *pred.stitch_case(case), pixel_agreement=row["pixel_agreement"])
            m = lesion_metrics_case(gt, p.label, case.spacing, details=False)
            tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn), row
    assert table[0]["tp"] + table[0]["fp"] > table[1]["tp"] + table[1]["fp"]


def test_preprocessed_folder_is_reused(tmp_path, monkeypatch, capsys):
    """Data flows once: the first run writes DATASET/preprocessed/<fingerprint>, the next reads it (no
    preprocessing, identical arrays); new data settings or a changed file give a new fingerprint."""
    from plan_lite.cli import main
    from plan_lite.data.preprocess import Preprocessor
    from plan_lite.engine.training_data import load_train_cases

    ds = make_dataset(tmp_path / "ds", n_cases=3, shape=(8, 40, 40))
    cfg = tiny_cfg()
    first, stats, _ = load_train_cases(ds, cfg)
    folders = list((ds / "preprocessed").iterdir())
    assert len(folders) == 1 and len(list(folders[0].glob("*.npz"))) == len(first)
    calls = []
    monkeypatch.setattr(Preprocessor, "__call__", lambda self, case: calls.append(case) or 1 / 0)
    monkeypatch.setattr(Preprocessor, "fit", lambda self, cases: 1 / 0)
    again, stats2, _ = load_train_cases(ds, cfg)
    assert not calls and stats2 == stats
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) for a, b in zip(first, again))
    monkeypatch.undo()
    load_train_cases(ds, tiny_cfg(spacing=(5.0, 4.0, 4.0)))
    assert len(list((ds / "preprocessed").iterdir())) == 2
    img = ds / "imagesTr" / "case_0000_0000.nii.gz"  # the train case (splits cycle train / val / test)
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    assert main(["preprocess", str(ds), "--no-progress", "--set", "patch_size=8,48,48"]) == 0
    assert "written" in capsys.readouterr().out and len(list((ds / "preprocessed").iterdir())) == 3


def test_calibration_markdown_is_a_threshold_by_agreement_grid_with_the_choice_in_bold():
    from plan_lite.engine.calibrate import _row, calibration_markdown

    table = [_row("lesion", t, a, tp, fp, 2) for t, a, tp, fp in
             ((0.5, 0.0, 4, 6), (0.5, 0.3, 4, 1), (0.8, 0.0, 3, 3), (0.8, 0.3, 2, 0))]
    record = {"table": table, "instance_paint": "lesion", "score_threshold": 0.5, "pixel_agreement": 0.3,
              "cases": ["a", "b"], "split": "val", "val": {"tp": 4, "fp": 1, "fn": 2},
              "best_f1": table[1]["f1"], "f1_standard_error": 0.05}
    md = calibration_markdown(record).splitlines()
    assert md[0].endswith("| 0 | 0.3 |") and md[2] == f"| 0.5 | {table[0]['f1']:.2f} | **{table[1]['f1']:.2f}** |"
    assert md[3] == f"| 0.8 | {table[2]['f1']:.2f} | {table[3]['f1']:.2f} |"
    assert "pixel agreement 0.3" in md[-1] and "SE 0.05" in md[-1]
    assert calibration_markdown({"skipped": "stage 1"}) == "calibration skipped: stage 1"
