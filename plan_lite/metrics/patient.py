"""Patient-level screening and diagnosis metrics (paper Table 1; Sec. 2.3 patient branch).

- Truth per patient comes from the cases table (``cases.csv``: case, split, group, and the C + 3 = 11 patient label
  columns ``labels.patient_output_names("paper")``); a label >= 0.5 is positive.
- Scores: the patient branch's named probabilities (``{case}_patient.json``), or for baselines the predicted lesion
  volume of each group in mm^3 (``score_source="volume"``, as the paper does for nnU-Net).
- **Screening** ("any_tumor"): sensitivity over tumour patients; specificity over non-tumour patients, overall and
  separately for ``group == "normal"`` and ``group == "hard"``. A patient is called positive when
  ``score >= threshold``.
- **Operating point** chosen on ``threshold_split`` [val]: ``threshold_method="youden"`` [default] maximises
  Youden's J = TPR - FPR over the ROC vertices (first/highest threshold on ties); ``"specificity"`` takes the
  lowest threshold whose val specificity >= ``target_specificity``. Without usable val cases (none, or only one
  class) the threshold is ``default_threshold`` [0.5] and ``threshold_source`` says so.
- **AUC** (``sklearn.metrics.roc_auc_score``) for "has malignant" (7-10), "has benign" (11-13), any tumour, and
  the mean over the 8 type outputs present in the evaluated cohort (``auc_types_n`` = how many: a type counts if it
  has at least one positive and one negative patient). Undefined values are None.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import patient_output_names

PATIENT_NAMES: list[str] = patient_output_names("paper")
TYPE_NAMES: list[str] = [n for n in PATIENT_NAMES if n.startswith("type_")]


def read_cases_table(path) -> list[dict]:
    """Rows of ``cases.csv`` for patient metrics: ``case``, ``split``, ``group`` and the 11 label columns as
    floats (``plan_lite.data.io.read_cases_csv`` with those requirements)."""
    from plan_lite.data.io import read_cases_csv

    return read_cases_csv(path, required=("case", "split", "group"), numeric=PATIENT_NAMES)


def read_patient_scores(path) -> dict[str, float]:
    """The 11 named probabilities of ``{case}_patient.json`` (flat, or under "probabilities"/"patient"/"scores")."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanLiteError(f"{path}: unreadable patient scores ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        for key in ("probabilities", "patient", "scores"):
            if not all(n in obj for n in PATIENT_NAMES) and isinstance(obj.get(key), dict):
                obj = obj[key]
    if not isinstance(obj, dict) or not all(n in obj for n in PATIENT_NAMES):
        raise PlanLiteError(f"{path}: expected the {len(PATIENT_NAMES)} patient scores {', '.join(PATIENT_NAMES)}")
    try:
        out = {n: float(obj[n]) for n in PATIENT_NAMES}
    except (TypeError, ValueError):
        raise PlanLiteError(f"{path}: patient scores must be numbers") from None
    if not all(math.isfinite(v) for v in out.values()):
        raise PlanLiteError(f"{path}: patient scores must be finite")
    return out


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(y) == 0 or y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def _select(rows: list[dict], split) -> list[dict]:
    if split is None:
        return list(rows)
    splits = {split} if isinstance(split, str) else set(split)
    return [r for r in rows if r.get("split") in splits]


def _arrays(rows: list[dict], scores: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([float(r[name]) >= 0.5 for r in rows], dtype=bool)
    s = np.array([float(scores[r["case"]][name]) for r in rows], dtype=np.float64)
    return y, s


def choose_threshold(y: np.ndarray, s: np.ndarray, method: str = "youden",
                     target_specificity: float = 0.95) -> float:
    """Operating point on a validation ROC (needs both classes). ``score >= threshold`` is called positive."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, s)
    finite = np.isfinite(thr)
    if method == "youden":
        j = np.where(finite, tpr - fpr, -np.inf)
        return float(thr[int(np.argmax(j))])
    if method == "specificity":
        ok = np.flatnonzero(finite & (fpr <= 1.0 - target_specificity + 1e-12))
        if len(ok) == 0:  # no finite vertex reaches it: call nothing positive
            return float(np.nextafter(s.max(), np.inf))
        return float(thr[ok[-1]])
    raise ValueError(f"threshold_method must be 'youden' or 'specificity', got {method!r}")


def patient_metrics(rows: list[dict], scores: dict[str, dict[str, float]], threshold_split="val",
                    eval_split="test", threshold_method: str = "youden", target_specificity: float = 0.95,
                    default_threshold: float = 0.5) -> dict:
    """Table-1 metrics. ``rows``: cases-table rows; ``scores``: {case: {output name: score}}.

    ``eval_split``/``threshold_split``: a split name, a collection of names, or None (all rows). Rows of the
    threshold split without scores are skipped; evaluated rows must all have scores.
    """
    ev = _select(rows, eval_split)
    missing = [r["case"] for r in ev if r["case"] not in scores]
    if missing:
        raise PlanLiteError(f"no patient scores for case(s) {', '.join(missing[:5])}"
                            + (" ..." if len(missing) > 5 else ""))
    va = [r for r in _select(rows, threshold_split) if r["case"] in scores] if threshold_split is not None else []
    thr, source = default_threshold, f"default {default_threshold:g} (no {threshold_split} cases with scores)"
    if va:
        yv, sv = _arrays(va, scores, "any_tumor")
        if yv.all() or not yv.any():
            source = f"default {default_threshold:g} ({threshold_split} cases have a single class)"
        else:
            thr = choose_threshold(yv, sv, threshold_method, target_specificity)
            what = "Youden's J" if threshold_method == "youden" else f"specificity >= {target_specificity:g}"
            source = f"{what} on {threshold_split} (n={len(va)})"
    out: dict = {"n": len(ev), "threshold": thr, "threshold_source": source, "threshold_method": threshold_method}
    if not ev:
        out.update({k: None for k in ("sensitivity", "specificity", "specificity_normal", "specificity_hard",
                                      "auc_any_tumor", "auc_malignant", "auc_benign", "auc_types_mean")})
        out.update({"auc_types_n": 0, "auc_types": {n: None for n in TYPE_NAMES}, "n_pos": 0, "n_normal": 0,
                    "n_hard": 0})
        return out
    y, s = _arrays(ev, scores, "any_tumor")
    call = s >= thr
    groups = np.array([r.get("group", "") for r in ev])

    def rate(sel: np.ndarray, positive: bool) -> float | None:
        if not sel.any():
            return None
        return float(np.mean(call[sel] if positive else ~call[sel]))

    out.update({
        "n_pos": int(y.sum()), "n_normal": int(((groups == "normal") & ~y).sum()),
        "n_hard": int(((groups == "hard") & ~y).sum()),
        "sensitivity": rate(y, True), "specificity": rate(~y, False),
        "specificity_normal": rate((groups == "normal") & ~y, False),
        "specificity_hard": rate((groups == "hard") & ~y, False),
        "auc_any_tumor": _auc(y, s),
        "auc_malignant": _auc(*_arrays(ev, scores, "malignant")),
        "auc_benign": _auc(*_arrays(ev, scores, "benign")),
    })
    types = {n: _auc(*_arrays(ev, scores, n)) for n in TYPE_NAMES}
    present = [v for v in types.values() if v is not None]
    out.update({"auc_types_mean": float(np.mean(present)) if present else None, "auc_types_n": len(present),
                "auc_types": types})
    return out


def roc_curves(rows: list[dict], scores: dict, eval_split="test",
               names=("any_tumor", "malignant", "benign")) -> dict[str, dict]:
    """ROC curves ``{name: {"fpr", "tpr", "thresholds", "auc"}}`` of the evaluated split (defined ones only)."""
    from sklearn.metrics import roc_curve

    ev = [r for r in _select(rows, eval_split) if r["case"] in scores]
    out = {}
    for n in names:
        y, s = _arrays(ev, scores, n)
        if len(y) and y.any() and not y.all():
            fpr, tpr, thr = roc_curve(y, s)
            out[n] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist(), "auc": _auc(y, s)}
    return out


def readout_gap(pred_dir, cases) -> dict:
    """Agreement of a prediction's two patient-level readouts (Sec. 2.3, the consistency loss's target).

    Per case and lesion type t: the lesion-derived readout ``d_t`` = the highest type-t probability among the
    predicted lesions (``{case}_lesions.json`` as ``predict`` writes it, ``type_probabilities``; 0 without
    lesions) and the patient branch's ``p_t`` (``{case}_patient.json``, ``type_<t>``). Returns ``{"mean_abs_gap": mean |d_t - p_t| over cases and
    the 8 types, "n_cases": ...}``; ``mean_abs_gap`` is None when no case has both files (no patient branch).
    """
    from plan_lite.labels import LESION_TYPE_NAMES

    pred_dir = Path(pred_dir)
    gaps: list[float] = []
    n = 0
    for case in cases:
        les_f, pat_f = pred_dir / f"{case}_lesions.json", pred_dir / f"{case}_patient.json"
        if not (les_f.is_file() and pat_f.is_file()):
            continue
        lesions = json.loads(les_f.read_text()).get("lesions", [])
        pat = read_patient_scores(pat_f)
        n += 1
        for t in LESION_TYPE_NAMES:
            d = max((float(r["type_probabilities"].get(t, 0.0)) for r in lesions), default=0.0)
            gaps.append(abs(d - float(pat[f"type_{t}"])))
    return {"mean_abs_gap": float(np.mean(gaps)) if gaps else None, "n_cases": n}
