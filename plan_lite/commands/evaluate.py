"""``plan-lite evaluate``: pixel, lesion and patient metrics of a prediction folder (``plan_lite.metrics``).

Writes metrics.json (atomically) and metrics.md (Tables 1-2) next to it, plus roc.png when patient metrics exist;
prints the tables. User faults raise PlanLiteError (exit 2, one line).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", required=True, help="dataset folder (with labelsTr/) or folder of {case}.nii.gz")
    p.add_argument("--pred", required=True, help="folder of {case}.nii.gz and {case}_patient.json")
    p.add_argument("--cases", default=None, help="cases.csv (splits, groups, patient labels); enables patient metrics")
    p.add_argument("--split", default="test",
                   help="split(s) to evaluate, comma-separated, or 'all' (needs --cases; default: test)")
    p.add_argument("--score-source", choices=("patient", "volume"), default="patient",
                   help="patient scores: the patient branch (*_patient.json) or predicted lesion volume (baselines)")
    p.add_argument("--out", default=None, help="metrics.json path (default: PRED/metrics.json)")
    p.add_argument("--threshold-method", choices=("youden", "specificity"), default="youden",
                   help="operating point on the val split (default: Youden's J)")
    p.add_argument("--target-specificity", type=float, default=0.95)
    p.add_argument("--min-radius", type=float, default=3.0, help="ignore lesions below this radius in mm (3)")
    p.add_argument("--dice-threshold", type=float, default=0.2, help="lesion match needs Dice > this (0.2)")
    p.add_argument("--matching", choices=("optimal", "greedy"), default="optimal")
    p.add_argument("--ignore-other-type", action="store_true",
                   help="leave GT type 14 'other' out of type accuracy (LiTS/MSD)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from plan_lite.metrics import evaluate_folders, tables_markdown
    from plan_lite.utils import atomic_write_json, atomic_write_text

    splits = None if args.split.strip().lower() == "all" else tuple(s for s in args.split.split(",") if s)
    m = evaluate_folders(args.gt, args.pred, cases_csv=args.cases, splits=splits, score_source=args.score_source,
                         progress=not args.no_progress, threshold_method=args.threshold_method,
                         target_specificity=args.target_specificity, min_radius_mm=args.min_radius,
                         dice_threshold=args.dice_threshold, matching=args.matching,
                         ignore_other_type=args.ignore_other_type, return_curves=True)
    curves = m.pop("_roc", None)
    out = Path(args.out) if args.out else Path(args.pred) / "metrics.json"
    atomic_write_json(out, m)
    md = tables_markdown(m)
    atomic_write_text(out.with_name("metrics.md"), md)
    pat = m["patient"]
    if pat.get("available") and curves:
        spec, sens = pat.get("specificity"), pat.get("sensitivity")
        from plan_lite.utils import atomic_path
        from plan_lite.viz import plot_roc

        op = None
        if spec is not None and sens is not None and "any_tumor" in curves:
            op = {"any_tumor": {"fpr": 1.0 - spec, "tpr": sens}}
            if pat.get("threshold") is not None:
                op["any_tumor"]["threshold"] = pat["threshold"]
        fig = plot_roc(curves, operating_point=op, title="Patient-level ROC")
        with atomic_path(out.with_name("roc.png"), suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    elif not pat.get("available"):
        md += "\n(patient metrics need --cases cases.csv)\n"
    if m.get("label_map"):
        print(f"ground truth: {m['label_map']}")
    if m.get("unlabelled"):
        print(f"skipped {len(m['unlabelled'])} prediction(s) of unlabelled imagesTs cases: {' '.join(m['unlabelled'])}")
    print(md, end="")
    print(f"wrote {out}")
    return 0
