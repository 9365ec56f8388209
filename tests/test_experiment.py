"""Table-4 experiment over seeds: statistics, verdicts, mechanism diagnostics, resumable parallel runs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plan_lite.config import get_preset
from plan_lite.engine.experiment import (
    ablation_markdown,
    aggregate,
    budget_markdown,
    mechanisms,
    run_experiment,
    stage2_curves,
)
from plan_lite.errors import PlanLiteError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import make_dataset  # noqa: E402

PATCH = (8, 48, 48)


def _res(variant, seed, **summary):
    return {"variant": variant, "seed": seed, "summary": summary}


def test_aggregate_gives_mean_sd_and_paired_differences_with_the_papers_sign():
    plan = [0.5, 0.6, 0.7]
    worse = [0.4, 0.45, 0.6]  # paired diffs -0.1, -0.15, -0.1: below plan beyond the spread
    better = [0.9, 0.2, 0.8]  # diffs +0.4, -0.4, +0.1: mean +0.033 within a spread of 0.4
    rs = [_res("plan", s, f1=p, readout_gap=0.3) for s, p in enumerate(plan)]
    rs += [_res("no_fes", s, f1=p, readout_gap=0.5) for s, p in enumerate(worse)]
    rs += [_res("no_anchor", s, f1=p, readout_gap=0.1) for s, p in enumerate(better)]
    rs += [_res("no_consistency", 0, f1=0.1)]  # one seed only: no spread, no verdict
    rs += [_res("mask2former", s, f1=p) for s, p in enumerate(plan)]  # identical to plan: a tie
    agg = aggregate(rs, metrics=("f1", "readout_gap"))
    t = agg["table"]["no_fes"]["f1"]
    assert t["n"] == 3 and t["mean"] == pytest.approx(np.mean(worse)) and t["sd"] == pytest.approx(np.std(worse, ddof=1))
    d = agg["paired"]["no_fes"]["f1"]
    diffs = np.subtract(worse, plan)
    assert d["mean"] == pytest.approx(diffs.mean()) and d["sd"] == pytest.approx(diffs.std(ddof=1))
    assert d["verdict"] == "agrees"
    assert agg["paired"]["no_anchor"]["f1"]["verdict"] == "opposite within spread"
    # readout_gap is lower-is-better: a larger gap without the component is the paper's direction
    assert agg["paired"]["no_fes"]["readout_gap"]["verdict"] == "agrees"  # +0.2 on every seed
    assert agg["paired"]["no_anchor"]["readout_gap"]["verdict"] == "opposite"  # -0.2 on every seed
    assert agg["paired"]["mask2former"]["f1"]["verdict"] == "tie"
    assert agg["paired"]["no_consistency"]["f1"]["verdict"] is None and agg["paired"]["no_consistency"]["f1"]["n"] == 1
    md = ablation_markdown({"meta": {"dataset": "/x/ds", "preset": "tiny", "max_steps": 10, "seeds": [0, 1, 2]},
                            **agg}, columns=("f1",))
    assert "| no_fes | 3 | 48.3 ± 10.4 |" in md and "-11.7 ± 2.9 ✔" in md


def test_verdict_beyond_the_spread_needs_a_mean_larger_than_the_sd():
    rs = [_res("plan", s, readout_gap=0.3) for s in range(2)] + [_res("no_consistency", 0, readout_gap=0.5),
                                                                 _res("no_consistency", 1, readout_gap=0.6)]
    d = aggregate(rs, metrics=("readout_gap",))["paired"]["no_consistency"]["readout_gap"]
    assert d["mean"] == pytest.approx(0.25) and d["verdict"] == "agrees"  # gap grows without the term


def test_match_quality_measures_matched_lesion_masks_and_classes():
    from plan_lite.losses.criterion import PlanCriterion

    crit = PlanCriterion(get_preset("tiny"))
    tm = torch.zeros(3, 4, 8, 8, dtype=torch.bool)
    tm[0] = True  # a stuff target (liver): not counted
    tm[1, :, :4] = True  # lesion 1
    tm[2, :, 4:, 4:] = True  # lesion 2
    crit.last_targets = [{"masks": tm, "labels": torch.tensor([1, 9, 12]), "is_thing": torch.tensor([False, True, True])}]
    crit.last_indices = [[(torch.tensor([5, 0, 2]), torch.tensor([0, 1, 2]))]]
    masks = torch.full((1, 6, 4, 8, 8), -5.0)
    masks[0, 0][tm[1]] = 5.0  # query 0 = lesion 1 exactly
    masks[0, 2, :, 4:, :] = 5.0  # query 2 covers twice lesion 2: Dice 2*16*4/(32*4+16*4) = 2/3
    logits = torch.zeros(1, 6, 17)
    logits[0, 0, 9] = 5.0  # right class
    logits[0, 2, 11] = 5.0  # wrong class (target 12)
    q = crit.match_quality({"pred_logits": logits, "pred_masks": masks})
    assert q["match_n"] == 2
    assert q["match_dice"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert q["match_class_acc"] == pytest.approx(0.5)


def test_readout_gap_compares_lesion_types_with_the_patient_branch(tmp_path):
    # the files are written by predict's own writer, so the reader and the writer cannot disagree on a key
    from plan_lite.engine.predict import CasePrediction, write_prediction
    from plan_lite.labels import LESION_TYPE_NAMES, patient_output_names
    from plan_lite.metrics import readout_gap

    t0, t1 = LESION_TYPE_NAMES[0], LESION_TYPE_NAMES[1]
    names = patient_output_names()

    def case(cid, type_probs, patient):
        lesions = [{"id": i + 1, "type_probabilities": tp} for i, tp in enumerate(type_probs)]
        write_prediction(CasePrediction(cid, np.zeros((2, 2, 2), np.uint8), np.eye(4), (1.0, 1.0, 1.0), lesions,
                                        patient), tmp_path)

    case("a", [{t0: 0.8, t1: 0.1}, {t0: 0.2, t1: 0.6}], {n: 0.0 for n in names} | {f"type_{t0}": 0.5})
    case("b", [], {n: 0.25 for n in names})  # no lesions: readout 0
    g = readout_gap(tmp_path, ["a", "b", "missing"])
    n = len(LESION_TYPE_NAMES)
    assert g["n_cases"] == 2
    assert g["mean_abs_gap"] == pytest.approx((0.3 + 0.6 + 0.25 * n) / (2 * n))


def test_stage2_curves_bin_the_stage2_rows(tmp_path):
    rows = [{"step": i, "stage": 1} for i in range(1, 5)]
    rows += [{"step": i, "stage": 2, "match_dice": i / 10, "match_class_acc": 0.5, "readout_gap": 0.1}
             for i in range(5, 9)]
    rows[-1].pop("match_dice")  # a step without a lesion target
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    c = stage2_curves(tmp_path / "log.jsonl", n_bins=2)
    assert c["step"] == [6, 8]
    assert c["match_dice"] == pytest.approx([0.55, 0.7])
    assert stage2_curves(tmp_path / "none.jsonl")["step"] == []


def test_experiment_runs_seeds_in_parallel_resumes_and_refuses_other_settings(tmp_path):
    groups = ["tumor", "tumor", "tumor", "tumor", "normal", "normal"]
    ds = make_dataset(tmp_path / "ds", n_cases=6, shape=(8, 40, 40), groups=groups)
    over = {"patch_size": PATCH, "batch_size": 1, "augment": False}
    kw = dict(variants=("plan", "no_anchor"), max_steps=3, overrides=over, progress=False, validate=False)
    rep = run_experiment(ds, tmp_path / "exp", seeds=(0, 1), jobs=2, threads=1, **kw)
    assert [(r["variant"], r["seed"]) for r in rep["runs"]] == [("plan", 0), ("plan", 1), ("no_anchor", 0),
                                                                 ("no_anchor", 1)]
    assert rep["table"]["plan"]["dice"]["n"] == 2 and rep["paired"]["no_anchor"]["dice"]["n"] == 2
    assert rep["table"]["plan"]["chance"]["n"] == 2 and rep["paired"]["no_anchor"]["chance"]["verdict"] is None
    assert rep["cpu_seconds"] > 0 and math.isfinite(rep["cpu_seconds"])
    assert set(rep["mechanisms"]["anchors"]) == {"plan", "no_anchor"}
    log = [json.loads(x) for x in (tmp_path / "exp/plan/seed0/run/log.jsonl").read_text().splitlines()]
    assert any("readout_gap" in r for r in log if r["stage"] == 2)  # the diagnostics are logged in stage 2
    ckpt = tmp_path / "exp/plan/seed0/run/last.pt"
    mtime = ckpt.stat().st_mtime_ns
    rep2 = run_experiment(ds, tmp_path / "exp", seeds=(0, 1, 2), jobs=1, **kw)  # only the two seed-2 runs are new
    assert ckpt.stat().st_mtime_ns == mtime
    assert rep2["table"]["plan"]["dice"]["n"] == 3 and (tmp_path / "exp/no_anchor/seed2/result.json").is_file()
    md = (tmp_path / "exp" / "ablation.md").read_text()
    assert "| plan | 3 |" in md and "| no_anchor |" in md
    with pytest.raises(PlanLiteError, match="other settings"):
        run_experiment(ds, tmp_path / "exp", seeds=(0,), **{**kw, "max_steps": 4})
    assert mechanisms([])["fes"] == {}


def test_an_interrupted_sweep_has_finished_whole_seeds_first(tmp_path, monkeypatch):
    import plan_lite.engine.experiment as experiment

    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(8, 32, 32), groups=["tumor", "tumor", "normal", "normal"])
    started = []

    def fake_run_one(spec):
        started.append((spec["variant"], spec["seed"]))
        if len(started) == 3:
            raise KeyboardInterrupt
        return {"variant": spec["variant"], "seed": spec["seed"], "summary": {}, "cpu_seconds": 1.0}

    monkeypatch.setattr(experiment, "run_one", fake_run_one)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(ds, tmp_path / "exp", variants=("plan", "no_anchor"), seeds=(0, 1), jobs=1, progress=False)
    assert started == [("plan", 0), ("no_anchor", 0), ("plan", 1)]  # seed 0 is complete for every variant


def test_budget_markdown_puts_each_budget_side_by_side_per_variant():
    short = {"meta": {"max_steps": 1500}, "table": aggregate([_res("plan", 0, f1=0.1), _res("plan", 1, f1=0.2),
                                                               _res("no_fes", 0, f1=0.3)])["table"]}
    long = {"meta": {"max_steps": 4000}, "table": aggregate([_res("plan", 0, f1=0.3), _res("plan", 1, f1=0.4)])["table"]}
    md = budget_markdown([short, long], metrics=("f1",))
    lines = md.splitlines()
    assert lines[0] == "| variant | f1 at 1500 steps | f1 at 4000 steps |"
    assert lines[2] == "| plan | 15.0 ± 7.1 | 35.0 ± 7.1 |"
    assert lines[3] == "| no_fes | 30.0 | - |"  # one seed: no sd; absent at 4000 steps
    with pytest.raises(PlanLiteError):
        budget_markdown([])
