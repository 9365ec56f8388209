"""Evaluate a folder of predicted label maps (and patient scores) against ground truth.

``gt_dir`` is an MSD/nnU-Net dataset folder (``labelsTr/{case}.nii.gz``) or a plain folder of ``{case}.nii.gz``;
``pred_dir`` holds ``{case}.nii.gz`` and ``{case}_patient.json``. Shapes must match and spacings agree (else a
``PlanLiteError`` naming the prediction file). Without a cases table the evaluated cases are the predictions found
in ``pred_dir`` (each must have a GT, except a dataset's unlabelled imagesTs cases, which are skipped), and only pixel and lesion metrics are computed; with one, the cases of
``splits`` are evaluated and patient metrics added (threshold from the ``val`` split, see ``patient.py``).

metrics.json layout (stable keys): ``{"label_map" (the ground-truth remapping applied, or null), "unlabelled"
(predicted imagesTs cases, skipped), "pixel": {"dice", "dice_incl_empty"}, "lesion": {"tp", "fp", "fn",
"precision", "recall", "recall_by_radius": {"[3,5)": {"gt", "detected", "recall"}, ...}, "type_accuracy"},
"patient": {"sensitivity", "specificity_normal", "specificity_hard", "auc_malignant", "auc_benign",
"auc_types_mean", "auc_types_n", "threshold", ...}, "n_cases", "protocol", "per_case"}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LESION_LABELS, PATIENT_GROUPS
from plan_lite.metrics.lesion import DEFAULT_RADIUS_BINS, lesion_metrics_case, summarize_lesions, tumor_mask
from plan_lite.metrics.patient import PATIENT_NAMES, patient_metrics, read_cases_table, read_patient_scores
from plan_lite.metrics.pixel import dice_from_counts, summarize_pixel

SUFFIX = ".nii.gz"
PATIENT_KEYS = ("sensitivity", "specificity", "specificity_normal", "specificity_hard", "auc_any_tumor",
                "auc_malignant", "auc_benign", "auc_types_mean", "auc_types_n", "threshold")


def evaluate_case(gt: np.ndarray, pred: np.ndarray, spacing, **lesion_opts) -> dict:
    """Pixel Dice, lesion counts and predicted group volumes (mm^3) of one (D, H, W) case."""
    g, p = tumor_mask(gt), tumor_mask(pred)
    ng, npr, inter = int(np.count_nonzero(g)), int(np.count_nonzero(p)), int(np.count_nonzero(g & p))
    les = lesion_metrics_case(gt, pred, spacing, **lesion_opts)
    vox = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    vol = {name: vox * sum(les["pred_label_voxels"].get(k, 0) for k in labels)
           for name, labels in PATIENT_GROUPS["paper"]}
    return {"pixel": {"dice": dice_from_counts(inter, ng, npr), "gt_empty": ng == 0}, "lesion": les,
            "pred_volume_mm3": vol}


def _label_dir(gt_dir: Path) -> Path:
    return gt_dir / "labelsTr" if (gt_dir / "labelsTr").is_dir() else gt_dir


class GroundTruth:
    """Where the ground-truth label map of a case is and how its values become plan-lite labels.

    A dataset folder's ``dataset.json`` gives the file ending (``.nii`` for a converted LiTS folder) and, for
    MSD Task03 / LiTS labels {0 background, 1 liver, 2 cancer}, the label map that makes them plan-lite labels
    (2 -> 14 ``other``: the tumour type is unknown); ``label_map`` says which map was applied (None: labels used
    as stored).
    """

    def __init__(self, gt_dir: Path):
        from plan_lite.data.io import describe_label_map, guess_label_map, read_dataset_spec

        self.dir = _label_dir(gt_dir)
        self.ending, self.mapping, self.label_map = SUFFIX, None, None
        if (gt_dir / "dataset.json").is_file():
            spec = read_dataset_spec(gt_dir)
            self.ending, self.mapping = spec.file_ending, guess_label_map(spec)
            if self.mapping is not None:
                self.label_map = describe_label_map(spec, self.mapping)

    def unlabelled(self, case: str) -> bool:
        """A test case of the dataset (an image in ``imagesTs``, no label file): nothing to evaluate against."""
        ts = self.dir.parent / "imagesTs"
        return (self.dir.name == "labelsTr" and not self.path(case).exists() and ts.is_dir()
                and any(ts.glob(f"{case}*")))

    def path(self, case: str) -> Path:
        return self.dir / f"{case}{self.ending}"

    def remap(self, gt: np.ndarray, path: Path) -> np.ndarray:
        from plan_lite.data.io import remap_labels

        return gt if self.mapping is None else remap_labels(np.asarray(gt), self.mapping, str(path))


def _case_ids(folder: Path) -> list[str]:
    return sorted(f.name[: -len(SUFFIX)] for f in folder.glob(f"*{SUFFIX}") if not f.name.startswith("."))


def _read_pair(gt_path: Path, pred_path: Path):
    from plan_lite.data.io import read_image

    for pth in (gt_path, pred_path):
        if not pth.is_file():
            raise PlanLiteError(f"{pth}: missing {'prediction' if pth == pred_path else 'ground truth'} file")
    gt, gsp, _ = read_image(gt_path)
    pred, psp, _ = read_image(pred_path)
    if gt.shape != pred.shape:
        raise PlanLiteError(f"{pred_path}: shape {pred.shape} (z,y,x) does not match ground truth {gt.shape}")
    if not np.allclose(gsp, psp, rtol=1e-3, atol=1e-3):
        raise PlanLiteError(f"{pred_path}: spacing {tuple(round(s, 4) for s in psp)} (z,y,x) mm does not match "
                            f"ground truth {tuple(round(s, 4) for s in gsp)}")
    return np.asarray(gt), np.asarray(pred), gsp


def evaluate_folders(gt_dir, pred_dir, cases_csv=None, splits=("test",), score_source: str = "patient",
                     progress: bool = True, *, threshold_split: str = "val", threshold_method: str = "youden",
                     target_specificity: float = 0.95, ignore_other_type: bool = False, min_radius_mm: float = 3.0,
                     dice_threshold: float = 0.2, matching: str = "optimal", connectivity: int = 26,
                     radius_bins=DEFAULT_RADIUS_BINS, return_curves: bool = False) -> dict:
    """metrics.json content for a prediction folder (see the module docstring). ``splits=None``: every row.

    ``return_curves`` adds ``"_roc"`` (ROC curves of the evaluated split, for :func:`plan_lite.viz.plots.plot_roc`).
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if score_source not in ("patient", "volume"):
        raise PlanLiteError(f"score_source must be 'patient' or 'volume', got {score_source!r}")
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise PlanLiteError(f"{d}: not a directory")
    truth = GroundTruth(gt_dir)
    rows = read_cases_table(cases_csv) if cases_csv is not None else None
    if isinstance(splits, str):
        splits = (splits,)
    if rows is None:
        found = _case_ids(pred_dir)
        if not found:
            raise PlanLiteError(f"{pred_dir}: no predicted label maps (*{SUFFIX})")
        cases = [c for c in found if not truth.unlabelled(c)]
        unlabelled = [c for c in found if c not in cases]
        if not cases:
            raise PlanLiteError(f"{pred_dir}: every prediction is of an unlabelled imagesTs case of {gt_dir}")
        extra_cases: list[str] = []
    else:
        cases = [r["case"] for r in rows if splits is None or r["split"] in splits]
        if not cases:
            raise PlanLiteError(f"{cases_csv}: no cases in split(s) {', '.join(splits or ())}")
        extra_cases = [r["case"] for r in rows if r["split"] == threshold_split and r["case"] not in cases]
        unlabelled = []
    opts = {"min_radius_mm": min_radius_mm, "dice_threshold": dice_threshold, "matching": matching,
            "connectivity": connectivity, "radius_bins": tuple(radius_bins)}
    it = cases
    if progress:
        from tqdm import tqdm

        it = tqdm(cases, desc="evaluate", unit="case")
    per_case, lesions, pixels, volumes = {}, [], [], {}
    for case in it:
        gt, pred, sp = _read_pair(truth.path(case), pred_dir / f"{case}{SUFFIX}")
        gt = truth.remap(gt, truth.path(case))
        r = evaluate_case(gt, pred, sp, details=False, **opts)
        pixels.append(r["pixel"])
        lesions.append(r["lesion"])
        volumes[case] = r["pred_volume_mm3"]
        lc = r["lesion"]
        typed = [(g, p) for g, p in lc["type_pairs"] if not (ignore_other_type and g == max(LESION_LABELS))]
        per_case[case] = {"dice": r["pixel"]["dice"], "gt_empty": r["pixel"]["gt_empty"], "tp": lc["tp"],
                          "fp": lc["fp"], "fn": lc["fn"], "pred_volume_mm3": r["pred_volume_mm3"]["any_tumor"],
                          "by_radius": lc["by_radius"], "type_n": len(typed),
                          "type_correct": sum(g == p for g, p in typed)}
    out = {"n_cases": len(cases), "splits": list(splits) if (rows is not None and splits) else None,
           "pixel": summarize_pixel(pixels),
           "lesion": summarize_lesions(lesions, radius_bins, ignore_other_type=ignore_other_type),
           "label_map": truth.label_map,
           "unlabelled": unlabelled if rows is None else [],
           "protocol": {**opts, "radius_bins": list(radius_bins), "ignore_other_type": ignore_other_type,
                        "score_source": score_source, "threshold_split": threshold_split,
                        "threshold_method": threshold_method, "target_specificity": target_specificity},
           "per_case": per_case}
    if rows is None:
        out["patient"] = {**{k: None for k in PATIENT_KEYS}, "auc_types_n": 0, "available": False,
                          "note": "no cases table (--cases): patient metrics not computed"}
        return out
    scores = _scores(cases, extra_cases, pred_dir, volumes, score_source)
    pm = patient_metrics(rows, scores, threshold_split=threshold_split,
                         eval_split=None if splits is None else tuple(splits), threshold_method=threshold_method,
                         target_specificity=target_specificity)
    out["patient"] = {**pm, "available": True, "score_source": score_source}
    if str(pm.get("threshold_source", "")).startswith("default"):
        warnings.warn(f"{pred_dir}: patient threshold is the fallback {pm['threshold_source']}: sensitivity and "
                      f"specificity are not at a validated operating point (predict the {threshold_split} split "
                      "into the same folder)", UserWarning, stacklevel=2)
    if return_curves:
        from plan_lite.metrics.patient import roc_curves

        out["_roc"] = roc_curves(rows, scores, eval_split=None if splits is None else tuple(splits))
    return out


def _scores(cases, extra_cases, pred_dir: Path, volumes: dict, score_source: str) -> dict:
    """Patient scores of the evaluated cases (required) and of threshold-split cases (when available)."""
    scores: dict[str, dict[str, float]] = {}
    if score_source == "patient":
        for case in list(cases) + list(extra_cases):
            pth = pred_dir / f"{case}_patient.json"
            if pth.is_file():
                scores[case] = read_patient_scores(pth)
            elif case in cases:
                raise PlanLiteError(f"{pth}: missing patient scores (use --score-source volume for a baseline)")
        return scores
    scores.update({c: {n: float(volumes[c][n]) for n in PATIENT_NAMES} for c in cases})
    for case in extra_cases:
        pth = pred_dir / f"{case}{SUFFIX}"
        if pth.is_file():  # threshold split: only the predicted volumes are needed
            from plan_lite.data.io import read_image

            pred, sp, _ = read_image(pth)
            counts = np.bincount(pred[tumor_mask(pred)].astype(np.int64).ravel(), minlength=16)
            vox = float(np.prod(np.asarray(sp, dtype=np.float64)))
            scores[case] = {name: vox * float(sum(counts[k] for k in lab)) for name, lab in PATIENT_GROUPS["paper"]}
    return scores


def marked_liver_fraction(gt_dir, pred_dir, cases=None) -> float:
    """Chance level of lesion recall: predicted lesion voxels / ground-truth liver voxels (liver + lesions).

    A predictor that marks as many voxels at random positions in the liver hits a lesion (Dice > 0.2) with
    probability at most this fraction. ``cases``: the case ids to pool (default: every prediction in ``pred_dir``).
    """
    from plan_lite.data.io import read_image
    from plan_lite.labels import LIVER_LABEL

    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    truth = GroundTruth(gt_dir)
    liver = marked = 0
    for case in cases if cases is not None else _case_ids(pred_dir):
        gt = truth.remap(read_image(truth.path(case))[0], truth.path(case))
        pred = read_image(pred_dir / f"{case}{SUFFIX}")[0]
        liver += int((gt == LIVER_LABEL).sum() + np.isin(gt, LESION_LABELS).sum())
        marked += int(np.isin(pred, LESION_LABELS).sum())
    return marked / max(liver, 1)


def _lower_edge(bin_name: str) -> float:
    """``"[10,20)"`` -> 10.0."""
    return float(bin_name.strip("[(").split(",")[0])


def recall_from_bins(by_radius: dict, min_radius: float = 10.0) -> float | None:
    """Recall of the lesions in the radius bins starting at or above ``min_radius`` (pooled counts)."""
    sel = [v for k, v in by_radius.items() if isinstance(v, dict) and _lower_edge(k) >= min_radius]
    gt = sum(v["gt"] for v in sel)
    return sum(v["detected"] for v in sel) / gt if gt else None


def bootstrap_intervals(metrics: dict, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals over cases (resampled with replacement) of the lesion detection figures.

    Uses ``metrics["per_case"]`` of ``evaluate_folders``; returns ``{"precision": (lo, hi), "recall": ...,
    "f1": ..., "recall_[3,5)": ..., ..., "recall_>=10": ..., "type_accuracy": ...}`` (``recall_>=10`` pools the
    bins from 10 mm up; ``type_accuracy`` over the matched lesions of the resampled cases). A case is the unit because its lesions are not independent (one
    model, one image); an interval says how much the figure would move on another test cohort of that size.
    """
    cases = list(metrics.get("per_case", {}).values())
    if not cases:
        return {}
    tp = np.array([c["tp"] for c in cases], float)
    fp = np.array([c["fp"] for c in cases], float)
    fn = np.array([c["fn"] for c in cases], float)
    bins = list(cases[0].get("by_radius", {}))
    gt_b = np.array([[c["by_radius"][b]["gt"] for b in bins] for c in cases], float).reshape(len(cases), -1)
    det_b = np.array([[c["by_radius"][b]["detected"] for b in bins] for c in cases], float).reshape(len(cases), -1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(cases), size=(n_boot, len(cases)))
    T, F, N = tp[idx].sum(1), fp[idx].sum(1), fn[idx].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = {"precision": T / (T + F), "recall": T / (T + N), "f1": 2 * T / (2 * T + F + N)}
        G, D = gt_b[idx].sum(1), det_b[idx].sum(1)
        for j, b in enumerate(bins):
            stats[f"recall_{b}"] = D[:, j] / G[:, j]
        big = [j for j, b in enumerate(bins) if _lower_edge(b) >= 10]
        if big:
            stats["recall_>=10"] = D[:, big].sum(1) / G[:, big].sum(1)
        if "type_n" in cases[0]:
            tn = np.array([c["type_n"] for c in cases], float)
            tc = np.array([c["type_correct"] for c in cases], float)
            stats["type_accuracy"] = tc[idx].sum(1) / tn[idx].sum(1)
    a = (1 - level) / 2
    out = {}
    for k, v in stats.items():
        v = v[np.isfinite(v)]
        out[k] = (float(np.quantile(v, a)), float(np.quantile(v, 1 - a))) if v.size else (None, None)
    return out


def flatten_metrics(m: dict, prefix: str = "") -> dict:
    """Dotted keys (``pixel.dice``, ``lesion.recall_by_radius.[3,5).recall``, ...); skips ``per_case`` and ``_*``."""
    flat = {}
    for k, v in m.items():
        if not prefix and (k == "per_case" or k.startswith("_")):
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_metrics(v, key + "."))
        else:
            flat[key] = v
    return flat
