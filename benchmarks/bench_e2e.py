"""End-to-end accuracy over seeds: synthetic data -> train (tiny, CPU recipe) -> predict -> evaluate.

The recipe of ``tests/test_e2e.py`` (``config.CPU_RECIPE`` on ``config.CPU_SYNTH`` data, 40 tumour cases, full PLAN,
prediction from the pixel branch with the ``"merged"`` lesion decision, 1 torch thread; the lesion branch's instance
output with its val-calibrated threshold is recorded too), run once per seed: the seed
sets both the generated cohort and the training run. The test asserts only what holds with a wide margin on every
CPU; the accuracy of one training trajectory depends on the CPU's floating-point path, so it is measured here.

Usage: ``python benchmarks/bench_e2e.py [--seeds 0 1 2] [--steps 600] [--out build/bench_e2e]``. Prints a Markdown
table per seed: pixel-loss ratio (last 10 / first 10 steps), lesion recall, precision, TP / FN, chance level
(predicted lesion voxels / liver voxels: the recall of a predictor marking as many voxels at random in the liver),
recall / chance, pixel Dice, train CPU seconds; then mean and spread. ``--json`` writes the rows too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def run_seed(seed: int, steps: int, root: Path) -> dict:
    from plan_lite.config import CPU_RECIPE, CPU_SYNTH, get_preset
    from plan_lite.data.synthetic import generate_dataset
    from plan_lite.engine.predict import predict
    from plan_lite.engine.train import train
    from plan_lite.metrics import evaluate_folders, marked_liver_fraction

    root.mkdir(parents=True, exist_ok=True)
    ds = root / "ds"
    if not (ds / "dataset.json").exists():
        generate_dataset(ds, 40, seed=seed, progress=False, group_fractions=(1.0, 0.0, 0.0), overwrite=True,
                         **CPU_SYNTH)
    cfg = get_preset("tiny", **CPU_RECIPE, val_every=steps, seed=seed)
    cpu = time.process_time()
    run = train(ds, cfg, root / "run", max_steps=steps, progress=False, validate=False)
    cpu = time.process_time() - cpu
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    pix = np.array([r["loss_pixel_ce"] + r["loss_pixel_dice"] for r in recs])
    pred = predict(run / "last.pt", [ds], root / "pred", split="test", progress=False, semantic="pixel",
                   lesion_output="semantic", lesion_decision="merged")
    m = evaluate_folders(ds, pred, cases_csv=ds / "cases.csv", splits=("test",), progress=False)
    chance = marked_liver_fraction(ds, pred)
    les = m["lesion"]
    inst = predict(run / "last.pt", [ds], root / "pred_instance", split="test", progress=False)
    mi = evaluate_folders(ds, inst, cases_csv=ds / "cases.csv", splits=("test",), progress=False)
    return {"instance_recall": mi["lesion"]["recall"], "instance_precision": mi["lesion"]["precision"],
            "instance_chance": marked_liver_fraction(ds, inst),"seed": seed, "steps": steps, "loss_ratio": float(pix[-10:].mean() / pix[:10].mean()),
            "recall": les["recall"], "precision": les["precision"], "tp": les["tp"], "fn": les["fn"],
            "fp": les["fp"], "chance": chance, "recall_over_chance": (les["recall"] or 0) / max(chance, 1e-9),
            "dice": m["pixel"]["dice"], "train_cpu_s": round(cpu, 1)}


def fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("build/bench_e2e"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    for seed in a.seeds:
        t0 = time.time()
        rows.append(run_seed(seed, a.steps, a.out / f"seed{seed}"))
        print(f"seed {seed}: {time.time() - t0:.0f} s wall {json.dumps(rows[-1])}", flush=True)
    keys = ["seed", "loss_ratio", "recall", "precision", "tp", "fn", "chance", "recall_over_chance", "dice",
            "train_cpu_s"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(fmt(r[k]) for k in keys) + " |")
    for k in ("loss_ratio", "recall", "chance", "recall_over_chance"):
        vals = [r[k] for r in rows if r[k] is not None]
        if vals:
            print(f"{k}: min {min(vals):.3f} mean {statistics.mean(vals):.3f} max {max(vals):.3f}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
