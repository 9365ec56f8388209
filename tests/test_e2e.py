"""End to end: synthetic data -> train (tiny) -> predict -> evaluate (the paper's evaluation protocol, Sec. 3).

Recipe: ``config.CPU_RECIPE`` on ``config.CPU_SYNTH`` data (the realistic generator at 5 x 4 x 4 mm), 40 tumour cases
(24 train, 8 test), 600 steps of the full PLAN (300 in stage 1), 1 thread; prediction from the pixel branch
(``semantic="pixel"``, ``lesion_output="semantic"``) with the ``"merged"`` lesion decision.

What one 600-step trajectory reaches depends on the CPU's floating-point path, so this test asserts only what holds
with a wide margin everywhere: the pipeline runs and writes what it should, the pixel loss falls to well under
0.7 of its start, and the prediction overlaps at least one ground-truth lesion. Accuracy against chance is measured
by ``benchmarks/bench_e2e.py`` (same recipe, several seeds; ``benchmarks/results/bench_e2e_cpu.md``). Measured
there on a 2-core machine, seeds 0 / 1 / 2: pixel-loss ratio (last 10 / first 10 steps) 0.33 / 0.36 / 0.35;
4 / 1 / 4 true positives; recall 0.10 / 0.05 / 0.14 at chance 0.022 / 0.004 / 0.003. Seed 1 sits at the
"at least one true positive" margin, which is why this test trains seed 0 and asserts no more than that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

STEPS = 600


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import time

    from plan_lite.config import CPU_RECIPE, CPU_SYNTH, get_preset
    from plan_lite.data.synthetic import generate_dataset
    from plan_lite.engine.train import train

    root = tmp_path_factory.mktemp("e2e")
    ds = generate_dataset(root / "ds", 40, seed=0, progress=False, group_fractions=(1.0, 0.0, 0.0), **CPU_SYNTH)
    cfg = get_preset("tiny", **CPU_RECIPE, val_every=STEPS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on 2 shared cores: 6 s/step when another job runs, 0.4 s with 1
    cpu, wall = time.process_time(), time.time()
    try:
        run = train(ds, cfg, root / "run", max_steps=STEPS, progress=False)
    finally:
        torch.set_num_threads(threads)
    print(f"train {STEPS} steps: cpu {time.process_time() - cpu:.0f} s, wall {time.time() - wall:.0f} s")
    return ds, run


def test_loss_falls_and_logs(trained):
    _, run = trained
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(recs) == STEPS and recs[-1]["step"] == STEPS
    pix = np.array([r["loss_pixel_ce"] + r["loss_pixel_dice"] for r in recs])
    print(f"pixel loss first 10 {pix[:10].mean():.3f} last 10 {pix[-10:].mean():.3f}")
    assert pix[-10:].mean() < 0.7 * pix[:10].mean()
    assert {"loss_class", "loss_mask", "loss_dice", "loss_patient"} <= set(recs[-1])
    val = [json.loads(x) for x in (run / "val.jsonl").read_text().splitlines()]
    assert val and val[-1]["step"] == STEPS
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file() and (run / "config.json").is_file()


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    from plan_lite.data.io import read_image
    from plan_lite.engine.predict import predict
    from plan_lite.metrics import evaluate_folders, marked_liver_fraction

    ds, run = trained
    pred = predict(run / "last.pt", [ds], tmp_path_factory.mktemp("pred"), split="test", progress=False,
                   semantic="pixel", lesion_output="semantic", lesion_decision="merged")
    m = evaluate_folders(ds, pred, cases_csv=ds / "cases.csv", splits=("test",), progress=False)
    for f in sorted(pred.glob("*.nii.gz")):
        gt, _, gt_aff = read_image(ds / "labelsTr" / f.name)
        p, _, p_aff = read_image(f)
        assert p.shape == gt.shape and np.allclose(p_aff, gt_aff), f"{f.name}: prediction not on the input grid"
    chance = marked_liver_fraction(ds, pred)
    les = m["lesion"]
    print(f"lesion recall {les['recall']} precision {les['precision']} tp {les['tp']} fp {les['fp']} "
          f"fn {les['fn']} chance {chance:.4f} dice {m['pixel']['dice']}")
    return m, chance


def test_predict_and_evaluate_pipeline(evaluated):
    """Every test case is predicted on its input grid and evaluated with the stable keys, values in range."""
    m, _ = evaluated
    les = m["lesion"]
    assert les["tp"] + les["fn"] > 0, "the test split has lesions to find"
    assert 0.0 <= les["recall"] <= 1.0
    for key in ("dice", "dice_incl_empty"):
        assert m["pixel"][key] is None or 0.0 <= m["pixel"][key] <= 1.0
    assert set(les["recall_by_radius"]) == {"[3,5)", "[5,10)", "[10,20)", "[20,inf)"}


def test_prediction_overlaps_lesions(evaluated):
    """Some ground-truth lesion is detected (measured: 9-12 of 21-40 over three seeds) and precision is defined."""
    m, chance = evaluated
    les = m["lesion"]
    assert les["tp"] >= 1 and les["recall"] > 0
    assert les["precision"] is not None and les["precision"] > 0
    assert 0.0 < chance < 1.0, "the model marks some, not all, of the liver as lesion"
