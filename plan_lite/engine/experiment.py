"""Ablations and baselines under one budget, gathered into a Table-4-style table (paper Table 4, Sec. 3).

Each variant (``plan_lite.config.VARIANTS``: ``plan``, ``no_anchor``, ``no_fes``, ``no_consistency``,
``pixel_only`` (nnU-Net-like), ``mask2former``) is trained with the same data, seed, preset and step / time
budget, predicts the validation and test splits (``cases.csv``), and is evaluated on the test split (the patient
threshold is chosen on the validation split, Sec. 3) with ``plan_lite.metrics.evaluate_folders``;
baselines without a patient branch are scored from predicted lesion volumes (``score_source="volume"``, as the
paper does for nnU-Net). Outputs: ``OUT/{variant}/run`` (training run), ``OUT/{variant}/pred``,
``OUT/{variant}/metrics.json``, and ``OUT/ablation.json`` + ``OUT/ablation.md``.

A variant whose run folder already holds ``last.pt`` is resumed (a finished one is not retrained).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from plan_lite.config import VARIANTS
from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_write_json, atomic_write_text

DEFAULT_VARIANTS = tuple(VARIANTS)  # every variant of Table 4, in the config's order
VOLUME_SCORED = ("pixel_only", "mask2former")


def summary_row(metrics: dict) -> dict[str, Any]:
    """The Table-4 columns of one ``evaluate_folders`` result."""
    les, pix, pat = metrics.get("lesion", {}), metrics.get("pixel", {}), metrics.get("patient", {})
    row = {"precision": les.get("precision"), "recall": les.get("recall"), "tp": les.get("tp"),
           "fp": les.get("fp"), "fn": les.get("fn"), "type_accuracy": les.get("type_accuracy"),
           "dice": pix.get("dice")}
    for name, b in (les.get("recall_by_radius") or {}).items():
        row[f"recall_{name}"] = b.get("recall") if isinstance(b, dict) else b
    for k in ("auc_any_tumor", "auc_malignant", "auc_benign", "auc_types_mean", "sensitivity",
              "specificity_normal", "specificity_hard"):
        row[k] = pat.get(k)
    return row


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.1f}"
    return str(v)


def ablation_markdown(rows: dict[str, dict], meta: dict) -> str:
    """Markdown table: rows = variants; lesion P/R, recall by radius bin, type accuracy, Dice, patient AUCs (%)."""
    keys: list[str] = []
    for r in rows.values():
        keys += [k for k in r if k not in keys and k not in ("tp", "fp", "fn")]
    head = ["variant", *keys]
    lines = [f"Ablation on `{meta['dataset']}` (preset `{meta['preset']}`, {meta['max_steps']} steps, "
             f"seed {meta['seed']}; test split, values in %)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, r in rows.items():
        lines.append("| " + " | ".join([v, *(_fmt(r.get(k)) for k in keys)]) + " |")
    return "\n".join(lines) + "\n"


def run_experiment(dataset_dir, out_dir, preset: str = "tiny", variants=DEFAULT_VARIANTS,
                   max_steps: int | None = None, max_minutes: float | None = None, seed: int = 0,
                   overrides: dict | None = None, device: str | None = None, progress: bool = True,
                   overlap: float | None = None, validate: bool = True, semantic: str | None = None,
                   lesion_decision: str | None = None) -> dict:
    """Train, predict and evaluate every variant; write ``ablation.json`` / ``ablation.md``; return the json.

    ``validate=False`` skips the periodic validation inside training (the test split is evaluated anyway); with
    short CPU budgets validation of an untrained model costs more than the training itself. ``semantic`` and
    ``lesion_decision`` are passed to ``predict`` for every variant (None: each checkpoint's ``cfg.infer``).
    """
    from plan_lite.config import VARIANTS, get_preset
    from plan_lite.engine.predict import predict
    from plan_lite.engine.train import Schedule, train
    from plan_lite.metrics import evaluate_folders

    dataset_dir, out = Path(dataset_dir), Path(out_dir)
    cases_csv = dataset_dir / "cases.csv"
    if not cases_csv.is_file():
        raise PlanLiteError(f"{cases_csv}: experiment needs cases.csv with train/val/test splits")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise PlanLiteError(f"experiment: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    rows, results = {}, {}
    for v in variants:
        cfg = get_preset(preset, **{**VARIANTS[v], **(overrides or {}), "seed": seed})
        run_dir, pred_dir = out / v / "run", out / v / "pred"
        train(dataset_dir, cfg, run_dir, max_steps=max_steps, max_minutes=max_minutes,
              resume=(run_dir / "last.pt").exists(), device=device, progress=progress, validate=validate)
        predict(run_dir / "last.pt", [dataset_dir], pred_dir, progress=progress, split=("val", "test"),
                device=device, overlap=overlap, semantic=semantic, lesion_decision=lesion_decision)
        source = "volume" if v in VOLUME_SCORED else "patient"
        m = evaluate_folders(dataset_dir, pred_dir, cases_csv=cases_csv, splits=("test",), score_source=source,
                             progress=False)
        atomic_write_json(out / v / "metrics.json", m)
        rows[v] = summary_row(m)
        results[v] = {"score_source": source, "steps": Schedule.from_config(cfg, max_steps).total,
                      "threshold": m["patient"].get("threshold"),
                      "threshold_source": m["patient"].get("threshold_source"), "summary": rows[v]}
    meta = {"dataset": str(dataset_dir), "preset": preset, "max_steps": max_steps, "max_minutes": max_minutes,
            "seed": seed, "overrides": overrides or {}, "variants": list(variants), "semantic": semantic,
            "lesion_decision": lesion_decision}
    report = {**meta, "results": results}
    atomic_write_json(out / "ablation.json", report)
    atomic_write_text(out / "ablation.md", ablation_markdown(rows, meta))
    return report


__all__ = ["run_experiment", "summary_row", "ablation_markdown", "DEFAULT_VARIANTS"]
