"""What PLAN learns in a few CPU minutes: the training issue's goals as a table (not a timed test).

For each cohort (an MSD dataset folder with train / val / test splits), variant (``plan``, ``pixel_only``, ...) and
CPU budget in minutes, train the ``tiny`` preset with ``CPU_RECIPE`` on one torch thread, predict the val and test
splits with the checkpoint's own inference settings (the lesion branch's instance output for PLAN), and evaluate
the test split with the paper's protocol (``evaluate_folders``; patient threshold chosen on val). Steps per budget
come from a short calibration run of the same variant (seconds per stage-1 and stage-2 step on this machine).

Training CPU time is the process CPU time of the training steps (``log.jsonl``'s ``cpu``; one thread, data
preprocessing not counted), so other jobs on the machine change the wall time, not the budget. The lesion score threshold and the pixel agreement of PLAN's
instance output are chosen on val after training (``plan_lite.engine.calibrate``), as ``train`` does by default; the
table's ``pixel agr.`` column says which agreement each run got (runs calibrated before the agreement existed: 0).

Each figure is printed with its 95 % bootstrap interval over test cases and next to its chance level: the fraction
of the liver the model marks as lesion (a detector that marked that fraction at random would reach about that
recall). Finished runs are not redone (``OUT/<cohort>/<variant>_<minutes>min/metrics.json``)::

    python benchmarks/bench_budget.py --data default=data/bench_default easy=data/bench_easy \\
        --variants plan pixel_only --minutes 2.5 5 10 --out runs/bench_budget --jobs 2 \\
        --table benchmarks/results/bench_budget_cpu.md

``--make-data DIR`` writes the two benchmark cohorts first (240 cases each at 5 x 4 x 4 mm, 24 x 96 x 96; splits
50 / 15 / 35 % so that the test split holds > 150 lesions of radius >= 3 mm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

COHORTS = {"default": {"lesion_contrast": 1.0, "noise_scale": 1.0}, "easy": {"lesion_contrast": 2.0,
                                                                           "noise_scale": 0.5}}
KEYS = ("recall_[3,5)", "recall_[5,10)", "recall_[10,20)", "recall_[20,inf)", "recall_>=10", "recall", "precision", "f1", "dice", "type_accuracy",
        "auc_any_tumor", "auc_malignant", "auc_benign", "specificity_normal", "specificity_hard", "sensitivity")


def make_data(root: Path, n_cases: int = 240) -> dict[str, Path]:
    from plan_lite.data.synthetic import generate_dataset

    out = {}
    for name, knobs in COHORTS.items():
        path = root / f"bench_{name}"
        if not (path / "dataset.json").exists():
            generate_dataset(path, n_cases=n_cases, seed=0, spacing=(5.0, 4.0, 4.0), shape=(24, 96, 96),
                             split_fractions=(0.5, 0.15, 0.35), workers=2, progress=False, **knobs)
        out[name] = path
    return out


def config_for(variant: str, seed: int, overrides: dict):
    from plan_lite.config import CPU_RECIPE, VARIANTS, get_preset

    return get_preset("tiny", **{**CPU_RECIPE, **VARIANTS[variant], **overrides, "seed": seed})


def calibrate(data: Path, variant: str, seed: int, overrides: dict) -> float:
    """CPU seconds per training step (this process, one thread) over steps 10-80 of an 80-step run with the
    recipe's stage split (the log's ``cpu`` column: preprocessing and start-up are not counted).

    CPU time, not wall time: other jobs on the machine slow the wall clock but not the work a step needs.
    """
    from plan_lite.engine.train import train

    cfg = config_for(variant, seed, overrides)
    with tempfile.TemporaryDirectory(prefix="plan-cal-") as tmp:
        train(data, cfg, Path(tmp) / "run", max_steps=80, progress=False, validate=False, calibrate=False)
        log = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    return (log[-1]["cpu"] - log[9]["cpu"]) / (len(log) - 10)


def run_one(job: dict) -> dict:
    """Train, predict val + test, evaluate test; write and return ``metrics.json`` + provenance."""
    import torch

    torch.set_num_threads(1)
    from plan_lite.engine.train import train

    out = Path(job["out"])
    done = out / "metrics.json"
    if done.exists() and not job.get("recalibrate"):
        return json.loads(done.read_text())
    if done.exists():  # keep the training, redo the inference choice and the evaluation (after an inference change)
        res = json.loads(done.read_text())
        changed = recipe_inference(out / "run" / "last.pt")
        # the lesion operating point depends on the weights and the lesion settings only: when the recipe changed
        # the patient scores alone, the calibration already in the checkpoint stays; otherwise it is redone
        keep = bool(changed) and set(changed) <= PATIENT_ONLY and (out / "run" / "calibration_last.json").exists()
        res.update(evaluate_run(out, Path(job["data"]), res["variant"], calibrate=not keep,
                                calibration_s=res.get("calibration_s")), tag=job.get("tag", ""))
        from plan_lite.utils import atomic_write_json

        atomic_write_json(done, res)
        return res
    data, variant, seed, overrides = Path(job["data"]), job["variant"], job["seed"], job["overrides"]
    per_step = None
    if job.get("steps"):
        steps = int(job["steps"])
    else:
        per_step = calibrate(data, variant, seed, overrides)
        steps = max(50, int(job["minutes"] * 60 / per_step))
    cfg = config_for(variant, seed, overrides)
    t0 = time.time()
    train(data, cfg, out / "run", max_steps=steps, progress=False, validate=False,
          resume=(out / "run" / "last.pt").exists(), calibrate=False)
    train_s = time.time() - t0
    train_cpu_s = json.loads((out / "run" / "log.jsonl").read_text().splitlines()[-1])["cpu"]  # steps only
    res = {"cohort": job["cohort"], "variant": variant, "minutes": job["minutes"], "seed": seed, "steps": steps,
           "cpu_s_per_step": per_step, "train_s": train_s, "train_cpu_s": train_cpu_s, "overrides": overrides,
           "tag": job.get("tag", ""), **evaluate_run(out, data, variant)}
    from plan_lite.utils import atomic_write_json

    atomic_write_json(done, res)
    return res


def recipe_inference(checkpoint: Path) -> dict:
    """``--recalibrate``: write the inference settings of today's ``CPU_RECIPE`` (its ``InferConfig`` keys, e.g.
    ``patient_no_lesion``) into a checkpoint trained before they existed; returns what changed."""
    from dataclasses import fields

    from plan_lite.config import CPU_RECIPE, InferConfig
    from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint

    keys = {f.name for f in fields(InferConfig)}
    state = load_checkpoint(checkpoint)
    infer = state["config"].setdefault("infer", {})
    changed = {k: v for k, v in CPU_RECIPE.items() if k in keys and infer.get(k) != v}
    if changed:
        infer.update(changed)
        save_checkpoint(checkpoint, state)
    return changed


#: ``InferConfig`` keys that change the patient scores only (``--recalibrate`` keeps the lesion calibration)
PATIENT_ONLY = {"patient_no_lesion", "patient_readout"}


def evaluate_run(out: Path, data: Path, variant: str, calibrate: bool = True, calibration_s: float | None = None
                 ) -> dict:
    """Choose the inference settings on val (``calibrate_checkpoint``), predict val + test, evaluate test.
    ``calibrate=False``: keep the checkpoint's calibration (``calibration_last.json``; its time ``calibration_s``)."""
    from plan_lite.engine.calibrate import calibrate_checkpoint
    from plan_lite.engine.predict import predict
    from plan_lite.metrics import bootstrap_intervals, evaluate_folders, marked_liver_fraction

    t0 = time.time()
    if calibrate:
        calib = calibrate_checkpoint(out / "run" / "last.pt", data)  # the lesion score threshold, chosen on val
        calib_s = time.time() - t0
    else:
        path = out / "run" / "calibration_last.json"
        calib = json.loads(path.read_text()) if path.exists() else {}
        calib_s = calibration_s
    t0 = time.time()
    predict(out / "run" / "last.pt", [data], out / "pred", progress=False, split=("val", "test"))
    predict_s = time.time() - t0
    source = "volume" if variant in ("pixel_only", "mask2former") else "patient"
    m = evaluate_folders(data, out / "pred", cases_csv=data / "cases.csv", splits=("test",), score_source=source,
                         progress=False)
    chance = marked_liver_fraction(data, out / "pred", cases=list(m["per_case"]))
    return {"predict_s": predict_s, "calibration_s": calib_s, "score_threshold": calib.get("score_threshold"),
            "chance_recall": chance, "ci95": bootstrap_intervals(m),
            "inference": json.loads((out / "pred" / "prediction.json").read_text()),
            "lesion": {k: v for k, v in m["lesion"].items() if k != "pairs"}, "pixel": m["pixel"],
            "patient": m["patient"], "n_test_cases": m["n_cases"]}


def row_values(res: dict) -> dict:
    """The table's figures of one run: ``experiment.summary_row`` (the Table-4 columns, F1 from tp / fp / fn)
    plus the recall of lesions of radius >= 10 mm pooled over its bins."""
    from plan_lite.engine.experiment import summary_row
    from plan_lite.metrics import recall_from_bins

    vals = summary_row(res)
    vals["recall_>=10"] = recall_from_bins(res["lesion"].get("recall_by_radius") or {})
    return vals


def _pct(v, ci=None) -> str:
    if v is None or v != v:
        return "-"
    s = f"{100 * v:.0f}"
    if ci and ci[0] is not None:
        s += f" ({100 * ci[0]:.0f}-{100 * ci[1]:.0f})"
    return s


def table(results: list[dict]) -> str:
    head = ["cohort", "variant", "seed", "CPU min", "steps", "pixel agr.", "chance", *KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in sorted(results, key=lambda r: (r["cohort"], r["steps"], r["variant"])):
        vals, ci = row_values(res), res.get("ci95", {})
        inf = res.get("inference", {})
        agree = f"{inf.get('pixel_agreement', 0.0):g}" if inf.get("lesion_output") == "instance" else "-"
        cells = [res["cohort"], res["variant"] + res.get("tag", ""), str(res.get("seed", 0)),
                 f"{res['train_cpu_s'] / 60:.1f}", str(res["steps"]), agree, _pct(res["chance_recall"])]
        cells += [_pct(vals.get(k), ci.get(k)) for k in KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the columns of ``seed_table``
SEED_KEYS = ("recall_>=10", "recall", "precision", "f1", "auc_any_tumor", "specificity_normal", "sensitivity")


def seed_table(results: list[dict]) -> str:
    """Mean +- standard deviation over seeds of the runs that share cohort, variant (with tag) and budget, for the
    settings run with more than one seed ('' when there is none): how much of a difference between two rows of
    ``table`` is the seed."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for res in results:
        budget = res.get("minutes") or res["steps"]
        groups.setdefault((res["cohort"], res["variant"] + res.get("tag", ""), budget), []).append(res)
    head = ["cohort", "variant", "budget", "seeds", "steps", *SEED_KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (cohort, variant, budget), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if len({r.get("seed", 0) for r in runs}) < 2:
            continue
        vals = [row_values(r) for r in runs]
        cells = [cohort, variant, f"{budget:g} min" if runs[0].get("minutes") else f"{budget} steps",
                 ", ".join(str(r.get("seed", 0)) for r in runs),
                 f"{np.mean([r['steps'] for r in runs]):.0f}"]
        for k in SEED_KEYS:
            xs = [v.get(k) for v in vals]
            xs = [100 * x for x in xs if x is not None and x == x]
            cells.append(f"{np.mean(xs):.0f} ± {np.std(xs, ddof=1):.0f}" if len(xs) > 1 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", metavar="NAME=DIR", help="cohorts (default: --make-data's two)")
    ap.add_argument("--make-data", metavar="DIR", help="write the benchmark cohorts under DIR first")
    ap.add_argument("--variants", nargs="+", default=["plan", "pixel_only"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[2.5, 5.0, 10.0])
    ap.add_argument("--steps", nargs="+", type=int, help="fixed step counts instead of CPU minutes")
    ap.add_argument("--tag", default="", help="suffix of the run folders (e.g. a setting under study)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (one torch thread each)")
    ap.add_argument("--table", help="also write the Markdown table (with provenance) here")
    ap.add_argument("--recalibrate", action="store_true",
                    help="finished runs: keep the training, take today's CPU_RECIPE inference settings, redo "
                         "calibration, prediction and evaluation")
    ap.add_argument("--note", default="", help="a paragraph for the table file (what the rows are)")
    ap.add_argument("--keep", metavar="JSON", help="a previous table's .json: its runs stay in the table beside the "
                                                    "new ones (e.g. runs made before an inference change)")
    args = ap.parse_args(argv)
    from plan_lite.config import parse_overrides

    cohorts: dict[str, Path] = {}
    if args.make_data:
        cohorts.update(make_data(Path(args.make_data)))
    for item in args.data or []:
        name, _, path = item.partition("=")
        cohorts[name] = Path(path)
    if not cohorts:
        ap.error("give --data NAME=DIR or --make-data DIR")
    overrides = parse_overrides(args.overrides)
    budgets = [("steps", n) for n in args.steps] if args.steps else [("minutes", m) for m in args.minutes]
    jobs = [{"cohort": c, "data": str(p), "variant": v, "minutes": b if kind == "minutes" else None,
             "steps": b if kind == "steps" else None, "seed": args.seed, "overrides": overrides,
             "recalibrate": args.recalibrate, "tag": args.tag,
             "out": str(Path(args.out) / c / f"{v}_{b:g}{'min' if kind == 'minutes' else 'steps'}_s{args.seed}"
                        f"{args.tag}")}
            for c, p in cohorts.items() for kind, b in budgets for v in args.variants]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    if args.jobs > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(run_one, jobs))
    else:
        results = [run_one(j) for j in jobs]
    results = [{**r, "tag": j["tag"], "cohort": j["cohort"]} for r, j in zip(results, jobs)]  # this call's names
    if args.keep:
        results = json.loads(Path(args.keep).read_text()) + results
    text = table(results)
    seeds = seed_table(results)
    if seeds:
        text += "\n\nOver seeds (mean ± SD in %; the runs of the table above that differ only by the seed):\n\n" + seeds
    print(text)
    if args.table:
        from plan_lite.utils import provenance

        meta = provenance("benchmarks/bench_budget.py", argv)
        prov = (f"Command: `{meta['command']}`  \n"
                f"Commit {meta['commit']}; {meta['machine']}, one torch thread per run, {args.jobs} run(s) in parallel; wall time {(time.time() - t0) / 60:.0f} min.  \n"
                "Values in % on the test split with 95 % bootstrap intervals over cases; `chance` = fraction of the "
                "liver marked as lesion (the recall of random marking); patient figures at the threshold chosen "
                "on val; pixel_only is scored from predicted lesion volumes.\n\n"
                + (args.note.strip() + "\n\n" if args.note.strip() else ""))
        from plan_lite.utils import atomic_write_text

        atomic_write_text(Path(args.table), "# Training budget on CPU (tiny preset, CPU_RECIPE)\n\n" + prov + text
                          + "\n")
        atomic_write_text(Path(args.table).with_suffix(".json"), json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
