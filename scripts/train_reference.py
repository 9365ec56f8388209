"""Train, evaluate and export the reference teaching model (``plan_lite.reference``).

The same recipe as lesson 5 and ``benchmarks/bench_budget.py`` (``tiny`` preset + ``CPU_RECIPE``, one torch
thread), with a bigger budget, on a default-knob cohort of 240 cases at 5 x 4 x 4 mm from seed 1 (the lessons'
and the benchmark's cohorts use seed 0, and case i of a seed is the same subject in every cohort of that seed,
so seed 1 keeps the lessons' test cases unseen). Resumable:
run it again with the same arguments and it continues from ``RUN/last.pt``. At the end it

1. evaluates the test split of the training cohort (paper protocol, bootstrap intervals, chance level);
2. evaluates a **check cohort** generated from its own seed (cases the model never saw, all test) and records
   those figures, which ``tests/test_reference.py`` regenerates and re-checks by inference only;
3. writes ``plan_lite/reference/<preset>_cpu.pt`` (half-precision weights, config with the calibrated inference
   settings, preprocessing statistics) and ``<preset>_cpu.json`` (command, commit, data, budget, metrics).

``--recalibrate`` trains nothing: it re-chooses the exported model's inference settings on the val split of its
training cohort (``calibrate_checkpoint``: score threshold and pixel agreement, after an inference change), then
re-measures the test split and the check cohort and rewrites both files (the training fields of the provenance
stay; ``recalibrated`` records the command and commit)::

    OMP_NUM_THREADS=1 python scripts/train_reference.py --recalibrate
    OMP_NUM_THREADS=1 python scripts/train_reference.py --preset tiny_nc --recalibrate

``--preset tiny_nc`` trains the non-contrast model (NC phase only) that lesson 8 runs on a real NC scan::

    OMP_NUM_THREADS=1 nohup python scripts/train_reference.py --steps 12000 > build/reference.log 2>&1 &
    OMP_NUM_THREADS=1 nohup python scripts/train_reference.py --preset tiny_nc --steps 8000 > build/ref_nc.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COHORT = {"n_cases": 240, "seed": 1, "spacing": (5.0, 4.0, 4.0), "shape": (24, 96, 96),
          "split_fractions": (0.5, 0.15, 0.35)}
CHECK_COHORT = {"n_cases": 24, "seed": 20261202, "spacing": (5.0, 4.0, 4.0), "shape": (24, 96, 96),
                "split_fractions": (0.0, 0.0, 1.0)}
CHECK_KEYS = ("lesion.recall", "lesion.precision", "pixel.dice", "patient.auc_any_tumor")


def make_cohort(path: Path, spec: dict) -> Path:
    from plan_lite.data.synthetic import generate_dataset

    if not (path / "dataset.json").exists():
        generate_dataset(path, workers=2, progress=False, **spec)
    return path


def evaluate_checkpoint(checkpoint: Path, data: Path, pred_dir: Path, splits=("val", "test")) -> dict:
    """Predict ``splits`` and evaluate the last of them; the patient threshold comes from val when predicted."""
    import warnings

    from plan_lite.engine.predict import predict
    from plan_lite.metrics import bootstrap_intervals, evaluate_folders, marked_liver_fraction

    predict(checkpoint, [data], pred_dir, progress=False, split=splits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the check cohort has no val split: patient AUCs only
        m = evaluate_folders(data, pred_dir, cases_csv=data / "cases.csv", splits=(splits[-1],), progress=False)
    m["chance_recall"] = marked_liver_fraction(data, pred_dir, cases=list(m["per_case"]))
    m["ci95"] = bootstrap_intervals(m)
    return m


def logged_seconds(log_path: Path, key: str) -> float:
    """Training seconds over every (re)start of a run: ``log.jsonl``'s ``time`` / ``cpu`` restart from 0 at each
    resume, so the total is the sum of each segment's last value."""
    total, last = 0.0, 0.0
    for line in log_path.read_text().splitlines():
        v = float(json.loads(line).get(key, 0.0))
        if v < last:  # a resume: the previous segment ended at ``last``
            total += last
        last = v
    return round(total + last, 1)


def pick(m: dict, dotted: str):
    cur = m
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def export(run_ckpt: Path, out: Path, provenance: dict) -> None:
    import torch

    from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint
    from plan_lite.utils import atomic_write_json

    state = load_checkpoint(run_ckpt)
    half = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in state["model"].items()}
    save_checkpoint(out.with_suffix(".pt"), {"model": half, "config": state["config"], "preprocess": state["preprocess"],
                                             "step": state["step"], "stage": state["stage"]})
    atomic_write_json(out.with_suffix(".json"), provenance)


def summary(m: dict) -> dict:
    from plan_lite.metrics import recall_from_bins

    les, pat = m["lesion"], m["patient"]
    return {"lesion": {k: les.get(k) for k in ("tp", "fp", "fn", "precision", "recall", "type_accuracy")}
            | {"recall_by_radius": les.get("recall_by_radius"),
               "recall_>=10": recall_from_bins(les.get("recall_by_radius") or {})},
            "pixel": {"dice": m["pixel"].get("dice")},
            "patient": {k: pat.get(k) for k in ("auc_any_tumor", "auc_malignant", "auc_benign", "sensitivity",
                                                "specificity_normal", "specificity_hard", "threshold",
                                                "threshold_source")},
            "chance_recall": m["chance_recall"], "ci95": m["ci95"], "n_cases": m["n_cases"]}


def recalibrate(out: Path, data: Path, check: Path, work: Path, argv) -> int:
    """Re-choose the exported checkpoint's inference settings on val, re-measure, rewrite the export."""
    import shutil

    from plan_lite.engine.calibrate import calibrate_checkpoint
    from plan_lite.utils import atomic_write_json, provenance

    prov = json.loads(out.with_suffix(".json").read_text())
    run = work / "recalibrate"
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(out.with_suffix(".pt"), run / "last.pt")  # the shipped (half-precision) weights
    rec = calibrate_checkpoint(run / "last.pt", data, progress=True)
    if "infer" not in rec:
        print(f"{out}: not recalibrated ({rec.get('skipped')})")
        return 1
    test = evaluate_checkpoint(run / "last.pt", data, run / "pred_test")
    shutil.copy(run / "last.pt", out.with_suffix(".pt"))
    chk = evaluate_checkpoint(out.with_suffix(".pt"), check, run / "pred_check", splits=("test",))
    meta = provenance("scripts/train_reference.py", argv, full_commit=True)
    prov.update(test_split=summary(test), calibration=rec,
                check={k: pick(chk, k) for k in CHECK_KEYS} | {"chance_recall": chk["chance_recall"]},
                recalibrated={k: meta[k] for k in ("command", "commit", "date")} | {"infer": rec["infer"]})
    atomic_write_json(out.with_suffix(".json"), prov)
    print(json.dumps({"infer": rec["infer"], "test_split": prov["test_split"]["lesion"], "check": prov["check"]},
                     indent=1, default=str))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--preset", default="tiny", choices=("tiny", "tiny_nc"),
                    help="tiny (three phases) or tiny_nc (non-contrast only, for real NC scans)")
    ap.add_argument("--work", help="data, run and predictions (default build/reference[_nc])")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", help="export path without suffix (default plan_lite/reference/<preset>_cpu)")
    ap.add_argument("--recalibrate", action="store_true",
                    help="no training: re-choose the exported model's inference settings on val and re-measure")
    args = ap.parse_args(argv)
    suffix = "" if args.preset == "tiny" else "_nc"
    args.work = args.work or str(ROOT / "build" / f"reference{suffix}")
    args.out = args.out or str(ROOT / "plan_lite" / "reference" / f"{args.preset}_cpu")
    import torch

    torch.set_num_threads(1)
    from plan_lite.config import CPU_RECIPE, get_preset, parse_overrides
    from plan_lite.data.synthetic import GENERATOR_VERSION
    from plan_lite.engine.train import train

    work = Path(args.work)
    data = make_cohort(work / "data", COHORT)
    check = make_cohort(work / "check", CHECK_COHORT)
    if args.recalibrate:
        return recalibrate(Path(args.out), data, check, work, argv)
    overrides = parse_overrides(args.overrides)
    cfg = get_preset(args.preset, **{**CPU_RECIPE, **overrides})
    run = work / "run"
    t0 = time.time()
    train(data, cfg, run, max_steps=args.steps, progress=True, validate=False, resume=(run / "last.pt").exists())
    train_s = logged_seconds(run / "log.jsonl", "time")
    train_cpu = logged_seconds(run / "log.jsonl", "cpu")
    test = evaluate_checkpoint(run / "last.pt", data, work / "pred_test")
    from plan_lite.utils import provenance

    meta = provenance("scripts/train_reference.py", argv, full_commit=True)
    prov = {
        "command": meta["command"], "commit": meta["commit"], "machine": f"{meta['machine']}, 1 torch thread",
        "preset": args.preset,
        "recipe": {**CPU_RECIPE, **overrides}, "steps": args.steps, "train_seconds_logged": train_s,
        "train_cpu_seconds_logged": train_cpu,
        "wall_seconds_this_call": time.time() - t0, "generator_version": GENERATOR_VERSION,
        "training_cohort": {**COHORT, "lesion_contrast": 1.0, "noise_scale": 1.0},
        "check_cohort": {**CHECK_COHORT, "lesion_contrast": 1.0, "noise_scale": 1.0},
        "test_split": summary(test),
        "check_tolerance": 0.05,
        "calibration": json.loads((run / "calibration_last.json").read_text()) if (run / "calibration_last.json")
        .exists() else None,
    }
    export(run / "last.pt", Path(args.out), prov)
    # the check figures of the exported half-precision weights: what tests/test_reference.py re-measures
    chk = evaluate_checkpoint(Path(args.out).with_suffix(".pt"), check, work / "pred_check", splits=("test",))
    prov["check"] = {k: pick(chk, k) for k in CHECK_KEYS} | {"chance_recall": chk["chance_recall"]}
    export(run / "last.pt", Path(args.out), prov)
    print(json.dumps({"test_split": prov["test_split"]["lesion"], "check": prov["check"]}, indent=1, default=str))
    return 0 if all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in prov["check"].values()) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
