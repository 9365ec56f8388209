"""The lesion operating point, chosen on the validation split (as the patient threshold is, Sec. 3).

Mask2Former's instance inference keeps the queries whose score (lesion probability x mask quality) exceeds a
threshold. A fixed 0.5 suits a well-trained class head; after a short training the class probabilities are not
yet calibrated (all scores may sit at 0.1-0.3) and a fixed 0.5 finds nothing. ``calibrate_checkpoint`` runs the
network once per validation case (and painting mode) with every lesion-like query painted, then scores each
pair of candidate settings by the lesion F1 of the paper's protocol on those cases:

* ``score_threshold`` (``THRESHOLDS``): the instance score a painted voxel needs;
* ``pixel_agreement`` (``AGREEMENTS``; 0 = off): the pixel-branch lesion probability a lesion needs somewhere
  inside it (``plan_lite.model.postprocess.gate_lesions``);
* optionally ``instance_paint`` (``paints=("lesion", "panoptic")``: one more network pass per mode).

The choice follows the one-standard-error rule (``select_setting``): the simplest setting (pixel agreement off,
the checkpoint's painting) whose val F1 is within one bootstrap standard error of the best, else the best. A long
training whose spurious masks are rare gains a point or two of val F1 from the agreement, which a small val
split cannot tell from noise; a short one gains tens of points. The chosen setting goes into the checkpoint's
``cfg.infer`` (with ``calibration_<stem>.json`` beside it), so
``predict`` uses it without a flag. The test split is never looked at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_write_json

# finer near the top: after a short training the scores of lesion and non-lesion queries crowd into 0.8-0.85
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.725, 0.75, 0.775, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85,
              0.875, 0.9, 0.95)
#: candidate ``infer.pixel_agreement`` values (0 = every lesion the lesion branch paints is kept)
AGREEMENTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: the ``infer`` keys a calibration sets
CALIBRATED = ("score_threshold", "pixel_agreement", "instance_paint")


def _row(paint, t, a, tp, fp, fn) -> dict:
    return {"instance_paint": paint, "threshold": t, "pixel_agreement": a, "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}


def threshold_table(predictor, dataset_dir, case_ids, thresholds=THRESHOLDS, agreements=AGREEMENTS,
                    paints=None, progress: bool = False, per_case: list | None = None) -> list[dict]:
    """Lesion tp / fp / fn, precision, recall and F1 on ``case_ids`` for every (painting mode, score threshold,
    pixel agreement). ``paints``: the painting modes to try (default: the predictor's); each costs one network
    pass per case. The agreement filter is applied to each threshold's prediction by removing the lesions whose
    ``pixel_probability`` is below it (what ``finish_case(pixel_agreement=...)`` does, without redoing the rest).
    ``per_case`` (a list), when given, receives one ``(settings, 3)`` array of tp / fp / fn per case, the settings
    in the order of the returned rows (what ``select_setting`` resamples)."""
    from plan_lite.data.io import MSDDataset
    from plan_lite.metrics.lesion import lesion_metrics_case

    paints = tuple(paints or (predictor.instance_paint,))
    ds = MSDDataset(dataset_dir, phases=tuple(predictor.cfg.data.phases))
    counts = {(m, t, a): [0, 0, 0] for m in paints for t in thresholds for a in agreements}
    ids = case_ids
    if progress:
        from tqdm.auto import tqdm

        ids = tqdm(case_ids, desc="calibrate", unit="case")
    before = predictor.instance_paint
    try:
        for cid in ids:
            case = ds.load(cid)
            gt = case.label
            if gt is None:
                raise PlanLiteError(f"{dataset_dir}: validation case {cid} has no label file")
            this: dict = {}
            for mode in paints:
                predictor.instance_paint = mode
                prep, out = predictor.stitch_case(case)
                for t in thresholds:
                    pred = predictor.finish_case(case, prep, out, score_threshold=t, pixel_agreement=0.0)
                    agree = np.array([les.get("pixel_probability", 1.0) for les in pred.lesions])
                    for a in agreements:
                        label = pred.label
                        gone = np.flatnonzero(agree < a) + 1  # output lesion ids below the agreement
                        if len(gone):
                            label = label.copy()
                            label[np.isin(pred.instances, gone)] = 0
                        m = lesion_metrics_case(gt, label, case.spacing, details=False)
                        c = counts[(mode, t, a)]
                        c[0], c[1], c[2] = c[0] + m["tp"], c[1] + m["fp"], c[2] + m["fn"]
                        this[(mode, t, a)] = (m["tp"], m["fp"], m["fn"])
            if per_case is not None:
                per_case.append(np.array([this[k] for k in counts], dtype=np.int64))
    finally:
        predictor.instance_paint = before
    return [_row(m, t, a, *c) for (m, t, a), c in counts.items()]


def best_setting(rows: list[dict], prefer_paint: str | None = None) -> dict:
    """The row of the highest F1. Ties: the higher score threshold, then the higher agreement (fewer false
    positives), then ``prefer_paint`` (the painting the checkpoint had)."""
    return max(rows, key=lambda r: (r["f1"] or 0.0, r["threshold"], r.get("pixel_agreement", 0.0),
                                    r.get("instance_paint") == prefer_paint))


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 = 2 tp / (2 tp + fp + fn) over the last axis (tp, fp, fn); 0 where nothing was predicted or expected."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def select_setting(rows: list[dict], per_case: np.ndarray, prefer_paint: str | None = None, n_boot: int = 200,
                   seed: int = 0) -> tuple[dict, dict]:
    """The one-standard-error rule over the rows of ``threshold_table`` (``per_case``: (cases, rows, 3) counts).

    The standard error is that of the best row's F1 over ``n_boot`` bootstrap resamples of the cases. Among the rows
    within one standard error of the best F1, the simplest is chosen: pixel agreement 0 and ``prefer_paint`` first,
    then agreement 0, then ``prefer_paint``; within the chosen group, ``best_setting``. Returns ``(row, info)`` with
    ``info`` = best F1, standard error, and the rule's text.
    """
    per_case = np.asarray(per_case)
    best = best_setting(rows, prefer_paint)
    i_best = rows.index(best)
    rng = np.random.default_rng(seed)
    n = per_case.shape[0]
    boot = [float(_f1(per_case[rng.integers(0, n, n), i_best].sum(0))) for _ in range(n_boot)] if n > 1 else [0.0]
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else 0.0
    best_f1 = best["f1"] or 0.0
    near = [r for r in rows if (r["f1"] or 0.0) >= best_f1 - se]
    groups = ([r for r in near if r["pixel_agreement"] == 0 and r["instance_paint"] == prefer_paint],
              [r for r in near if r["pixel_agreement"] == 0],
              [r for r in near if r["instance_paint"] == prefer_paint], near)
    chosen = best_setting(next(g for g in groups if g), prefer_paint)
    return chosen, {"best_f1": best_f1, "best": {k: best[k] for k in ("instance_paint", "threshold",
                                                                      "pixel_agreement")},
                    "f1_standard_error": se, "bootstrap_resamples": n_boot}


def calibrate_checkpoint(checkpoint, dataset_dir, split: str = "val", max_cases: int | None = None,
                         progress: bool = False, device: str | None = None, agreements=AGREEMENTS,
                         paints=None) -> dict:
    """Choose ``cfg.infer.score_threshold`` and ``pixel_agreement`` (and, with ``paints``, ``instance_paint``) on
    ``split`` and write them into ``checkpoint`` (atomically).

    Returns the record that is also written to ``<checkpoint folder>/calibration_<stem>.json``: the chosen
    settings (also under ``"infer"``), the split and cases used, and the table of every setting tried.
    ``agreements=(0.0,)`` keeps every lesion the lesion branch paints (the filter off). Checkpoints without
    instance output (``pixel_only``, a stage-1 checkpoint, ``infer.lesion_output="semantic"``) are left unchanged
    (``{"skipped": reason}``).
    """
    from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint
    from plan_lite.engine.predict import Predictor
    from plan_lite.engine.training_data import split_ids

    checkpoint = Path(checkpoint)
    pred = Predictor(checkpoint, device=device, score_threshold=0.0, pixel_agreement=0.0)
    if not pred.instance:
        return {"skipped": "no instance output (pixel_only, stage 1 or semantic lesion output)"}
    from plan_lite.data.io import MSDDataset

    ids = split_ids(dataset_dir, split, MSDDataset(dataset_dir, phases=tuple(pred.cfg.data.phases)).case_ids)
    ids = ids[:max_cases] if max_cases else ids
    if not ids:
        return {"skipped": f"no {split} cases"}
    per_case: list = []
    rows = threshold_table(pred, dataset_dir, ids, agreements=agreements, paints=paints, progress=progress,
                           per_case=per_case)
    best, info = select_setting(rows, np.stack(per_case), prefer_paint=pred.instance_paint)
    chosen = {"score_threshold": best["threshold"], "pixel_agreement": best["pixel_agreement"],
              "instance_paint": best["instance_paint"]}
    state = load_checkpoint(checkpoint)
    state["config"].setdefault("infer", {}).update(chosen)
    save_checkpoint(checkpoint, state)
    record = {"checkpoint": checkpoint.name, "step": int(state.get("step", 0)), "split": split, "cases": ids,
              **chosen, "infer": chosen, "val": {k: best[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")},
              "selection": "one-standard-error rule on the split's lesion F1: the simplest setting (pixel agreement "
                           "0, the checkpoint's painting) within one bootstrap SE of the best, else the best (ties: "
                           "higher score threshold, then higher agreement)", **info,
              "table": rows}
    atomic_write_json(checkpoint.parent / f"calibration_{checkpoint.stem}.json", record)
    return record


def calibration_markdown(record: dict) -> str:
    """The calibration table at the chosen painting: F1 by score threshold (rows) and pixel agreement (columns),
    the chosen cell in bold; then tp / fp / fn of the chosen setting."""
    if "table" not in record:
        return f"calibration skipped: {record.get('skipped')}"
    paint = record.get("instance_paint")
    rows = [r for r in record["table"] if r.get("instance_paint", paint) == paint]
    agrees = sorted({r.get("pixel_agreement", 0.0) for r in rows})
    thrs = sorted({r["threshold"] for r in rows})
    f1 = {(r["threshold"], r.get("pixel_agreement", 0.0)): r["f1"] for r in rows}
    lines = ["| score threshold \\ pixel agreement | " + " | ".join(f"{a:g}" for a in agrees) + " |",
             "|---" * (len(agrees) + 1) + "|"]
    for t in thrs:
        cells = []
        for a in agrees:
            v = f1.get((t, a))
            c = "-" if v is None else f"{v:.2f}"
            chosen = t == record["score_threshold"] and a == record.get("pixel_agreement", 0.0)
            cells.append(f"**{c}**" if chosen else c)
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    v = record.get("val", {})
    lines.append("")
    lines.append(f"Lesion F1 on {len(record['cases'])} {record['split']} cases, painting {paint!r}; chosen: score "
                 f"threshold {record['score_threshold']:g}, pixel agreement {record.get('pixel_agreement', 0.0):g} "
                 f"(tp {v.get('tp')}, fp {v.get('fp')}, fn {v.get('fn')})"
                 + (f"; best F1 {record['best_f1']:.2f}, bootstrap SE {record['f1_standard_error']:.2f} (the simplest "
                    f"setting within one SE is chosen)." if "f1_standard_error" in record else "."))
    return "\n".join(lines)


__all__ = ["calibrate_checkpoint", "threshold_table", "best_setting", "select_setting", "calibration_markdown", "THRESHOLDS",
           "AGREEMENTS", "CALIBRATED"]
