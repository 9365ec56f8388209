"""Ablations and baselines under one budget, over several seeds, gathered into Table-4-style tables (paper Table 4,
Sec. 3; book/design_decisions.md#dd-ablation).

Each variant (``plan_lite.config.VARIANTS``: ``plan``, ``no_anchor``, ``no_fes``, ``no_consistency``,
``pixel_only`` (nnU-Net-like), ``mask2former``) is trained for every seed with the same data, preset and step /
time budget, predicts the validation and test splits (``cases.csv``) and is evaluated on the test split (the
patient threshold is chosen on the validation split, Sec. 3) with ``plan_lite.metrics.evaluate_folders``;
baselines without a patient branch are scored from predicted lesion volumes (``score_source="volume"``, as the
paper does for nnU-Net).

One (variant, seed) pair is a **run**: ``OUT/{variant}/seed{s}/run`` (training), ``.../pred``, ``.../metrics.json``
and ``.../result.json`` (its table row, its mechanism measurements, wall and CPU seconds). A run whose
``result.json`` exists with the same settings is not redone, so an interrupted experiment resumes and more seeds
can be added later; a run folder with other settings is an error (use another ``OUT``). ``jobs`` runs execute in
parallel worker processes with ``threads`` torch threads each (default: the CPU count // jobs); with ``jobs=1``
they run in the calling process with its thread count unless ``threads`` is given.

The gathered report (``OUT/ablation.json``, ``OUT/ablation.md``) holds, over seeds: mean and standard deviation
per variant; the **paired difference** against ``plan`` (variant minus plan on the same seed); whether that
difference has the sign the paper reports (every ablation and both baselines below PLAN) and exceeds its spread;
and three mechanism measurements (lesson 7): FES - recall of lesions with radius < 5 and 5-10 mm; anchor queries -
matched-mask Dice and class accuracy over the stage-2 steps (``PlanCriterion.match_quality``, logged in
``log.jsonl``); consistency - the gap between the lesion-derived and the patient-branch readouts on the test
split (``metrics.readout_gap``) and the patient AUCs.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from plan_lite.config import VARIANTS
from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_write_json, atomic_write_text

DEFAULT_VARIANTS = tuple(VARIANTS)  # every variant of Table 4, in the config's order
VOLUME_SCORED = ("pixel_only", "mask2former")
# The figures aggregated over seeds (higher is better, except readout_gap; ``chance`` = the fraction of the liver
# marked as lesion, the recall a random marking of as many voxels would reach - context, not a score).
METRICS = ("chance", "f1", "precision", "recall", "recall_[3,5)", "recall_[5,10)", "recall_[10,20)",
           "recall_[20,inf)", "type_accuracy", "dice", "sensitivity", "specificity_normal", "specificity_hard", "auc_any_tumor",
           "auc_malignant", "auc_benign", "auc_types_mean", "readout_gap")
LOWER_IS_BETTER = ("readout_gap",)
TABLE_COLUMNS = ("chance", "f1", "precision", "recall", "recall_[3,5)", "recall_[5,10)", "type_accuracy", "dice",
                 "sensitivity", "specificity_normal", "specificity_hard", "auc_malignant", "auc_benign",
                 "auc_types_mean")
# What the paper reports for each variant against full PLAN (Table 4: removing anchor queries, the FES loss or the
# consistency loss lowers the results; Tables 2-3: PLAN is ahead of nnU-Net and Mask2Former): the sign of
# (variant - plan) for a higher-is-better figure.
PAPER_SIGN = {"no_anchor": -1, "no_fes": -1, "no_consistency": -1, "pixel_only": -1, "mask2former": -1}
VERDICT = {"agrees": "✔", "sign only": "~", "tie": "=", "opposite within spread": "·", "opposite": "✘"}


# --------------------------------------------------------------------------------------------------- one run
def summary_row(metrics: dict) -> dict[str, Any]:
    """The Table-4 columns of one ``evaluate_folders`` result (lesion F1 from its tp / fp / fn)."""
    les, pix, pat = metrics.get("lesion", {}), metrics.get("pixel", {}), metrics.get("patient", {})
    row = {"precision": les.get("precision"), "recall": les.get("recall"), "tp": les.get("tp"),
           "fp": les.get("fp"), "fn": les.get("fn"), "type_accuracy": les.get("type_accuracy"),
           "dice": pix.get("dice")}
    tp, fp, fn = (les.get(k) or 0 for k in ("tp", "fp", "fn"))
    row["f1"] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else None
    for name, b in (les.get("recall_by_radius") or {}).items():
        row[f"recall_{name}"] = b.get("recall") if isinstance(b, dict) else b
    for k in ("auc_any_tumor", "auc_malignant", "auc_benign", "auc_types_mean", "sensitivity",
              "specificity_normal", "specificity_hard"):
        row[k] = pat.get(k)
    return row


def stage2_curves(log_path, n_bins: int = 20) -> dict[str, list]:
    """Mean ``match_dice`` / ``match_class_acc`` / ``readout_gap`` of the stage-2 rows of a ``log.jsonl`` in
    ``n_bins`` equal bins of steps (``step`` = each bin's last step); empty lists without stage-2 rows."""
    rows = []
    path = Path(log_path)
    if path.is_file():
        rows = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("stage") == 2]
    keys = ("match_dice", "match_class_acc", "readout_gap")
    out: dict[str, list] = {"step": [], **{k: [] for k in keys}}
    if not rows:
        return out
    per = max(1, math.ceil(len(rows) / n_bins))
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        out["step"].append(chunk[-1]["step"])
        for k in keys:
            vals = [r[k] for r in chunk if isinstance(r.get(k), (int, float))]
            out[k].append(sum(vals) / len(vals) if vals else None)
    return out


def _settings(spec: dict) -> dict:
    return {k: spec[k] for k in ("dataset", "preset", "variant", "seed", "max_steps", "max_minutes", "overrides",
                                 "overlap", "validate", "semantic", "lesion_decision")}


def run_one(spec: dict) -> dict:
    """Train, predict (val + test) and evaluate one (variant, seed) run; writes and returns its ``result.json``."""
    import torch

    from plan_lite.config import get_preset
    from plan_lite.engine.predict import predict
    from plan_lite.engine.train import Schedule, train
    from plan_lite.metrics import evaluate_folders, marked_liver_fraction, readout_gap

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    t0, c0 = time.time(), time.process_time()
    dataset, unit = Path(spec["dataset"]), Path(spec["unit_dir"])
    v = spec["variant"]
    cfg = get_preset(spec["preset"], **{**VARIANTS[v], **(spec["overrides"] or {}), "seed": spec["seed"]})
    run_dir, pred_dir = unit / "run", unit / "pred"
    quiet = not spec["progress"]
    train(dataset, cfg, run_dir, max_steps=spec["max_steps"], max_minutes=spec["max_minutes"],
          resume=(run_dir / "last.pt").exists(), device=spec["device"], progress=not quiet,
          validate=spec["validate"])
    predict(run_dir / "last.pt", [dataset], pred_dir, progress=not quiet, split=("val", "test"),
            device=spec["device"], overlap=spec["overlap"], semantic=spec["semantic"],
            lesion_decision=spec["lesion_decision"])
    source = "volume" if v in VOLUME_SCORED else "patient"
    m = evaluate_folders(dataset, pred_dir, cases_csv=dataset / "cases.csv", splits=("test",), score_source=source,
                         progress=False)
    atomic_write_json(unit / "metrics.json", m)
    row = summary_row(m)
    row["chance"] = marked_liver_fraction(dataset, pred_dir, cases=list(m["per_case"]))
    both = cfg.model.patient_branch and cfg.model.lesion_branch  # two readouts to compare
    row["readout_gap"] = readout_gap(pred_dir, list(m["per_case"]))["mean_abs_gap"] if both else None
    result = {"settings": _settings(spec), "variant": v, "seed": spec["seed"], "score_source": source,
              "steps": Schedule.from_config(cfg, spec["max_steps"]).total,
              "threshold": m["patient"].get("threshold"), "threshold_source": m["patient"].get("threshold_source"),
              "summary": row, "curves": stage2_curves(run_dir / "log.jsonl"),
              "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
              "threads": torch.get_num_threads()}
    atomic_write_json(unit / "result.json", result)
    return result


# --------------------------------------------------------------------------------------------------- statistics
def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _mean_sd(values: list[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0}
    mean = sum(values) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n}


def verdict(diff: dict, variant: str, metric: str) -> str | None:
    """Does the paired difference (variant - plan) have the paper's sign, and does it exceed its spread?

    ``agrees``: the paper's sign and an absolute mean above the sd of the paired differences; ``sign only``: the
    paper's sign within the spread; ``tie`` for no difference at all; ``opposite within spread`` / ``opposite``.
    None without a paper sign or without two paired seeds.
    """
    sign = PAPER_SIGN.get(variant)
    if sign is None or metric == "chance" or diff.get("mean") is None or diff.get("sd") is None or diff["n"] < 2:
        return None
    if metric in LOWER_IS_BETTER:
        sign = -sign
    if diff["mean"] == 0:
        return "tie"
    same = diff["mean"] * sign > 0
    beyond = abs(diff["mean"]) > diff["sd"]
    return ("agrees" if beyond else "sign only") if same else ("opposite" if beyond else "opposite within spread")


def aggregate(results: list[dict], metrics=METRICS, reference: str = "plan") -> dict:
    """Mean +- sd over seeds per variant, and paired differences against ``reference`` on the seeds both ran.

    ``results``: ``result.json`` dicts (``variant``, ``seed``, ``summary``). Returns ``{"table": {variant:
    {metric: {mean, sd, n}}}, "paired": {variant: {metric: {mean, sd, n, verdict}}}}``.
    """
    by: dict[str, dict[int, dict]] = {}
    for r in results:
        by.setdefault(r["variant"], {})[int(r["seed"])] = r["summary"]
    table = {v: {k: _mean_sd([x for x in (_num(s.get(k)) for s in runs.values()) if x is not None])
                 for k in metrics} for v, runs in by.items()}
    paired: dict[str, dict] = {}
    ref = by.get(reference, {})
    for v, runs in by.items():
        if v == reference:
            continue
        paired[v] = {}
        for k in metrics:
            diffs = [_num(runs[s].get(k)) - _num(ref[s].get(k)) for s in sorted(set(runs) & set(ref))
                     if _num(runs[s].get(k)) is not None and _num(ref[s].get(k)) is not None]
            d = _mean_sd(diffs)
            paired[v][k] = {**d, "verdict": verdict(d, v, k)}
    return {"table": table, "paired": paired}


def mechanisms(results: list[dict]) -> dict:
    """The three mechanism measurements of lesson 7, per variant, over seeds (see the module docstring)."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)

    def stat(v, key):
        return _mean_sd([x for x in (_num(r["summary"].get(key)) for r in by.get(v, [])) if x is not None])

    def mean_curve(v):
        runs = [r.get("curves", {}) for r in by.get(v, []) if r.get("curves", {}).get("step")]
        if not runs:
            return {}
        n = min(len(c["step"]) for c in runs)
        out = {"step": runs[0]["step"][:n]}
        for k in ("match_dice", "match_class_acc", "readout_gap"):
            cols = [[c[k][i] for c in runs if c[k][i] is not None] for i in range(n)]
            out[k] = [_mean_sd(col)["mean"] for col in cols]
            out[k + "_sd"] = [_mean_sd(col)["sd"] for col in cols]
        return out

    return {
        "fes": {v: {k: stat(v, k) for k in ("recall_[3,5)", "recall_[5,10)")} for v in ("plan", "no_fes") if v in by},
        "anchors": {v: mean_curve(v) for v in ("plan", "no_anchor") if v in by},
        "consistency": {v: {k: stat(v, k) for k in ("readout_gap", "auc_any_tumor", "auc_malignant", "auc_benign",
                                                   "auc_types_mean")}
                        | {"curve": mean_curve(v)} for v in ("plan", "no_consistency") if v in by},
    }


# --------------------------------------------------------------------------------------------------- markdown
def _pct(v, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _cell(s: dict, signed: bool = False) -> str:
    if s.get("mean") is None:
        return "-"
    return _pct(s["mean"], signed) + (f" ± {100 * s['sd']:.1f}" if s.get("sd") is not None else "")


def ablation_markdown(report: dict, columns=TABLE_COLUMNS) -> str:
    """Markdown of a report: mean +- sd per variant, paired differences against plan with the paper's sign."""
    meta = report["meta"]
    budget = f"{meta['max_steps']} steps" if meta.get("max_steps") else f"{meta.get('max_minutes')} min"
    seeds = " ".join(str(s) for s in meta["seeds"])
    lines = [f"Ablation on `{Path(meta['dataset']).name}` (preset `{meta['preset']}`, {budget} per run, seeds "
             f"{seeds}; test split; values in %, mean ± sd over seeds)", "",
             "| variant | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for v, stats in report["table"].items():
        n = max((s["n"] for s in stats.values()), default=0)
        lines.append(f"| {v} | {n} | " + " | ".join(_cell(stats[k]) for k in columns) + " |")
    lines += ["", "Paired difference against `plan` (variant − plan on the same seed, percentage points, mean ± sd); "
              "mark = the paper's sign (every ablation and both baselines below PLAN): "
              "✔ the paper's sign beyond the spread (|mean| > sd), ~ the paper's sign within the spread, "
              "= no difference, · the opposite sign within the spread, ✘ the opposite sign beyond the spread.", "",
              "| variant − plan | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for v, stats in report["paired"].items():
        cells = [_cell(stats[k], signed=True) + (f" {VERDICT[stats[k]['verdict']]}" if stats[k].get("verdict")
                                                  else "") for k in columns]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"



def budget_markdown(reports: list[dict], metrics=("f1", "precision", "recall", "recall_[10,20)", "auc_any_tumor"),
                    ) -> str:
    """Markdown comparing experiments at different budgets: one row per variant, for each metric one column per
    report (mean ± sd over its seeds, in %), in the order given; variants missing from a report show "-"."""
    if not reports:
        raise PlanLiteError("budget_markdown: needs at least one report")

    def budget(r):
        m = r["meta"]
        return f"{m['max_steps']} steps" if m.get("max_steps") else f"{m.get('max_minutes')} min"

    variants = list(dict.fromkeys(v for r in reports for v in r["table"]))
    head = [f"{k} at {budget(r)}" for k in metrics for r in reports]
    lines = ["| variant | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for v in variants:
        cells = [_cell(r["table"][v][k]) if v in r["table"] and k in r["table"][v] else "-"
                 for k in metrics for r in reports]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

# --------------------------------------------------------------------------------------------------- driver
def run_experiment(dataset_dir, out_dir, preset: str = "tiny", variants=DEFAULT_VARIANTS, seeds=(0,),
                   max_steps: int | None = None, max_minutes: float | None = None, overrides: dict | None = None,
                   device: str | None = None, progress: bool = True, overlap: float | None = None,
                   validate: bool = True, semantic: str | None = None, lesion_decision: str | None = None,
                   jobs: int = 1, threads: int | None = None) -> dict:
    """Run every (variant, seed) not yet done, ``jobs`` at a time; write ``ablation.json`` / ``ablation.md``.

    ``validate=False`` skips the periodic validation inside training (the test split is evaluated anyway); with
    short CPU budgets validation of an untrained model costs more than the training itself. ``semantic`` and
    ``lesion_decision`` are passed to ``predict`` for every variant (None: each checkpoint's ``cfg.infer``).
    Returns the report (``meta``, ``runs``, ``table``, ``paired``, ``mechanisms``, ``cpu_seconds``).
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    dataset_dir, out = Path(dataset_dir), Path(out_dir)
    cases_csv = dataset_dir / "cases.csv"
    if not cases_csv.is_file():
        raise PlanLiteError(f"{cases_csv}: experiment needs cases.csv with train/val/test splits")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise PlanLiteError(f"experiment: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in seeds]
    if not seeds or jobs < 1:
        raise PlanLiteError("experiment: needs at least one seed and jobs >= 1")
    if threads is None and jobs > 1:  # in-process runs (jobs == 1) keep the caller's thread count
        threads = max(1, (os.cpu_count() or 1) // jobs)
    specs, done = [], []
    for s in seeds:  # seed-major: a sweep stopped part-way leaves whole seeds (every variant), ready for pairing
        for v in variants:
            spec = {"dataset": str(dataset_dir), "unit_dir": str(out / v / f"seed{s}"), "preset": preset,
                    "variant": v, "seed": s, "max_steps": max_steps, "max_minutes": max_minutes,
                    "overrides": overrides or {}, "overlap": overlap, "validate": validate, "semantic": semantic,
                    "lesion_decision": lesion_decision, "device": device, "threads": threads,
                    "progress": progress and jobs == 1}
            rec = Path(spec["unit_dir"]) / "result.json"
            if rec.is_file():
                old = json.loads(rec.read_text())
                if old.get("settings") != json.loads(json.dumps(_settings(spec))):
                    raise PlanLiteError(f"{rec}: this run was made with other settings; use another --out or remove "
                                        "the folder")
                done.append(old)
            else:
                specs.append(spec)
    bar = tqdm(total=len(specs) + len(done), initial=len(done), desc="experiment runs", unit="run",
               disable=not progress)

    def finished(r):
        done.append(r)
        f1 = r["summary"].get("f1")
        bar.set_postfix_str(f"{r['variant']} seed {r['seed']}: F1 {_pct(f1)} %, {r['cpu_seconds']:.0f} CPU s")
        bar.update(1)

    try:
        if jobs == 1:
            for spec in specs:
                finished(run_one(spec))
        elif specs:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(run_one, spec) for spec in specs]
                for fut in as_completed(futures):
                    finished(fut.result())
    finally:
        bar.close()
    order = {(v, s): i for i, (v, s) in enumerate((v, s) for v in variants for s in seeds)}
    done.sort(key=lambda r: order[(r["variant"], r["seed"])])
    meta = {"dataset": str(dataset_dir), "preset": preset, "variants": list(variants), "seeds": seeds,
            "max_steps": max_steps, "max_minutes": max_minutes, "overrides": overrides or {}, "semantic": semantic,
            "lesion_decision": lesion_decision, "jobs": jobs, "threads": threads}
    report = {"meta": meta, **aggregate(done), "mechanisms": mechanisms(done),
              "cpu_seconds": round(sum(r["cpu_seconds"] for r in done), 1),
              "runs": [{k: r[k] for k in ("variant", "seed", "steps", "score_source", "threshold",
                                          "threshold_source", "summary", "wall_seconds", "cpu_seconds")}
                       for r in done]}
    atomic_write_json(out / "ablation.json", report)
    atomic_write_text(out / "ablation.md", ablation_markdown(report))
    return report


__all__ = ["run_experiment", "run_one", "summary_row", "aggregate", "mechanisms", "verdict", "stage2_curves",
           "ablation_markdown", "budget_markdown", "DEFAULT_VARIANTS", "METRICS", "PAPER_SIGN"]
