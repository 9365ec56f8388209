"""The lesion operating point, chosen on the validation split (as the patient threshold is, Sec. 3).

Mask2Former's instance inference keeps the queries whose score (lesion probability x mask quality) exceeds a
threshold. A fixed 0.5 suits a well-trained class head; after a short training the class probabilities are not
yet calibrated (all scores may sit at 0.1-0.3) and a fixed 0.5 finds nothing. ``calibrate_checkpoint`` runs the
network once per validation case with every lesion-like query painted, then scores each candidate threshold by
the lesion F1 of the paper's protocol on those cases, and writes the best into the checkpoint's
``cfg.infer.score_threshold`` (with ``calibration.json`` beside it), so ``predict`` uses it without a flag.
The test split is never looked at.
"""

from __future__ import annotations

from pathlib import Path

from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_write_json

# finer near the top: after a short training the scores of lesion and non-lesion queries crowd into 0.8-0.85
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.725, 0.75, 0.775, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85,
              0.875, 0.9, 0.95)


def threshold_table(predictor, dataset_dir, case_ids, thresholds=THRESHOLDS, progress: bool = False) -> list[dict]:
    """Lesion tp / fp / fn, precision, recall and F1 on ``case_ids`` for every instance score threshold."""
    from plan_lite.data.io import MSDDataset
    from plan_lite.metrics.lesion import lesion_metrics_case

    ds = MSDDataset(dataset_dir, phases=tuple(predictor.cfg.data.phases))
    counts = {t: [0, 0, 0] for t in thresholds}
    ids = case_ids
    if progress:
        from tqdm.auto import tqdm

        ids = tqdm(case_ids, desc="calibrate", unit="case")
    for cid in ids:
        case = ds.load(cid)
        gt = case.label
        if gt is None:
            raise PlanLiteError(f"{dataset_dir}: validation case {cid} has no label file")
        prep, out = predictor.stitch_case(case)
        for t in thresholds:
            pred = predictor.finish_case(case, prep, out, score_threshold=t)
            m = lesion_metrics_case(gt, pred.label, case.spacing, details=False)
            c = counts[t]
            c[0], c[1], c[2] = c[0] + m["tp"], c[1] + m["fp"], c[2] + m["fn"]
    rows = []
    for t, (tp, fp, fn) in counts.items():
        rows.append({"threshold": t, "tp": tp, "fp": fp, "fn": fn,
                     "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
                     "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None})
    return rows


def best_threshold(rows: list[dict]) -> float:
    """The threshold of the highest F1 (ties: the higher threshold, i.e. fewer false positives)."""
    scored = [(r["f1"] or 0.0, r["threshold"]) for r in rows]
    return max(scored)[1]


def calibrate_checkpoint(checkpoint, dataset_dir, split: str = "val", max_cases: int | None = None,
                         progress: bool = False, device: str | None = None) -> dict:
    """Choose ``cfg.infer.score_threshold`` on ``split`` and write it into ``checkpoint`` (atomically).

    Returns the record that is also written to ``<checkpoint folder>/calibration_<stem>.json``: the threshold,
    the split and cases used, and the per-threshold table. Checkpoints without instance output (``pixel_only``,
    a stage-1 checkpoint, ``infer.lesion_output="semantic"``) are left unchanged (``{"skipped": reason}``).
    """
    from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint
    from plan_lite.engine.predict import Predictor
    from plan_lite.engine.training_data import split_ids

    checkpoint = Path(checkpoint)
    pred = Predictor(checkpoint, device=device, score_threshold=0.0)
    if not pred.instance:
        return {"skipped": "no instance output (pixel_only, stage 1 or semantic lesion output)"}
    from plan_lite.data.io import MSDDataset

    ids = split_ids(dataset_dir, split, MSDDataset(dataset_dir, phases=tuple(pred.cfg.data.phases)).case_ids)
    ids = ids[:max_cases] if max_cases else ids
    if not ids:
        return {"skipped": f"no {split} cases"}
    rows = threshold_table(pred, dataset_dir, ids, progress=progress)
    thr = best_threshold(rows)
    state = load_checkpoint(checkpoint)
    state["config"].setdefault("infer", {})["score_threshold"] = thr
    save_checkpoint(checkpoint, state)
    record = {"checkpoint": checkpoint.name, "step": int(state.get("step", 0)), "split": split, "cases": ids,
              "score_threshold": thr, "selection": "highest lesion F1 on the split (ties: higher threshold)",
              "table": rows}
    atomic_write_json(checkpoint.parent / f"calibration_{checkpoint.stem}.json", record)
    return record


def calibration_markdown(record: dict) -> str:
    """The per-threshold table of a calibration record (chosen row in bold)."""
    if "table" not in record:
        return f"calibration skipped: {record.get('skipped')}"
    lines = ["| score threshold | tp | fp | fn | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for r in record["table"]:
        def f(v):
            return "-" if v is None else f"{v:.2f}"
        cells = [f"{r['threshold']:g}", str(r["tp"]), str(r["fp"]), str(r["fn"]), f(r["precision"]), f(r["recall"]),
                 f(r["f1"])]
        if r["threshold"] == record["score_threshold"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["calibrate_checkpoint", "threshold_table", "best_threshold", "calibration_markdown", "THRESHOLDS"]
