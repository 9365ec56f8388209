"""Where should a predicted lesion's type come from? The three ``InferConfig.lesion_type`` sources side by side.

PLAN types a lesion with the lesion branch's class head (``"query"``, the paper, Sec. 2.2). After a short CPU
training that head is the weakest part of the model, while the pixel branch's per-voxel types are already useful
(lesson 7: pixel_only's type accuracy is about twice PLAN's at 4,000 steps). ``"pixel"`` types each lesion
by the pixel branch's mean type probabilities over it, ``"fused"`` by the mean of both distributions
(``plan_lite.model.postprocess.retype_lesions``); which voxels are lesions does not change.

For each checkpoint: every val and test case of the cohort is stitched **once** (the network runs once per case)
and finished with each source into ``OUT/<name>/<source>/``; the test split is evaluated with the paper's
protocol (``evaluate_folders``, patient threshold chosen on val) and the val split for the type accuracy a user
would choose the source by. The script checks that the three sources detect the same lesions. Printed: type
accuracy on val and test (95 % bootstrap interval over test cases), the matched lesions it is computed on, the
lesion-vs-patient readout gap (``metrics.readout_gap``; the lesion-derived readout uses the lesion types), lesion
F1 and the malignant AUC (the same for every source; a check)::

    python benchmarks/bench_type_source.py DATA --checkpoint plan_s0=RUN/last.pt --checkpoint ref=REF.pt \\
        --out runs/type_source --table benchmarks/results/type_source_cpu.md

Finished checkpoints and sources are not redone (``OUT/<name>/info.json``, ``OUT/<name>/<source>/summary.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from plan_lite.utils import atomic_write_json, atomic_write_text, provenance

SOURCES = ("query", "pixel", "fused")


def predict_all_sources(checkpoint: Path, data: Path, out: Path, progress: bool = True) -> dict:
    """Stitch every val + test case once, finish it with each source; write ``out/<source>/`` predictions."""
    from tqdm.auto import tqdm

    from plan_lite.engine.predict import Predictor, resolve_inputs, write_patients_csv, write_prediction
    from plan_lite.labels import LESION_LABELS

    for s in SOURCES:
        (out / s).mkdir(parents=True, exist_ok=True)
    pred = Predictor(checkpoint, lesion_type="fused")  # "fused" stitches the pixel branch's type channels too
    loaders = resolve_inputs([data], pred.cfg.data.phases, ("val", "test"))
    tables = {s: {} for s in SOURCES}
    mismatches = []
    t0 = time.process_time()
    for load in tqdm(loaders, desc=checkpoint.parent.name, unit="case", disable=not progress):
        case = load()
        prep, stitched = pred.stitch_case(case)
        lesion_voxels = None
        for s in SOURCES:
            pred.lesion_type = s
            p = pred.finish_case(case, prep, stitched)
            write_prediction(p, out / s)
            tables[s][p.case_id] = p.patient
            mask = np.isin(p.label, LESION_LABELS)
            if lesion_voxels is None:
                lesion_voxels = mask
            elif (mask != lesion_voxels).any():
                mismatches.append((p.case_id, s))
    for s in SOURCES:
        pred.lesion_type = s
        write_patients_csv(tables[s], pred.names, out / s / "patients.csv")
        atomic_write_json(out / s / "prediction.json", pred.settings())
    if mismatches:
        raise SystemExit(f"{checkpoint}: the type sources changed which voxels are lesions: {mismatches[:5]}")
    return {"cpu_seconds": round(time.process_time() - t0, 1), "n_cases": len(loaders),
            "step": pred.source["step"], "stage": pred.source["checkpoint_stage"],
            "patient_branch": bool(pred.has_patient)}


def evaluate_source(data: Path, folder: Path, score_source: str) -> dict:
    from plan_lite.engine.experiment import summary_row
    from plan_lite.metrics import bootstrap_intervals, evaluate_folders, readout_gap

    cases_csv = data / "cases.csv"
    row = {}
    for split in ("val", "test"):
        m = evaluate_folders(data, folder, cases_csv=cases_csv, splits=(split,), score_source=score_source,
                             progress=False)
        les = m["lesion"]
        row[f"{split}_type_accuracy"] = les["type_accuracy"]
        row[f"{split}_type_n"] = les["type_n"]
        if split == "test":
            row["f1"] = summary_row(m)["f1"]
            row["auc_malignant"] = m["patient"].get("auc_malignant")
            row["type_accuracy_ci95"] = bootstrap_intervals(m).get("type_accuracy")
            row["readout_gap"] = readout_gap(folder, list(m["per_case"]))["mean_abs_gap"]
    return row


def markdown(results: dict, meta: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = [
        "# Lesion type source (`InferConfig.lesion_type`): query vs pixel branch vs both",
        "",
        f"Generated by `benchmarks/bench_type_source.py` on commit `{meta['commit']}` ({meta['machine']}). "
        f"Cohort: {meta['data']}. Command: `{meta['command']}`.",
        "",
        "Type accuracy (%) over the matched lesions (n) of each split, test with its 95 % bootstrap interval over "
        "cases. F1 and the malignant AUC do not depend on the source (the same lesions are found); the readout gap "
        "is the mean |lesion-derived - patient-branch| type readout on test (lower = the two readouts agree).",
        "",
        "| checkpoint | step | source | val type acc. (n) | test type acc. [95 % CI] (n) | readout gap | F1 | "
        "AUC malignant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        best_val = max(SOURCES, key=lambda s: r["sources"][s]["val_type_accuracy"] or -1)
        for s in SOURCES:
            x = r["sources"][s]
            lo, hi = x["type_accuracy_ci95"] or (None, None)
            gap = "-" if x["readout_gap"] is None else f"{x['readout_gap']:.3f}"
            val = f"{pct(x['val_type_accuracy'])} ({x['val_type_n']})"
            if s == best_val and x["val_type_accuracy"] is not None:
                val = f"**{val}**"
            lines.append(f"| {name} | {r['step']} | {s} | {val} | {pct(x['test_type_accuracy'])} "
                         f"[{pct(lo)}, {pct(hi)}] ({x['test_type_n']}) | {gap} | {pct(x['f1'])} | "
                         f"{pct(x['auc_malignant'])} |")
    lines += ["", "Bold: the source with the highest val type accuracy (the one a user would choose on val)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="MSD cohort with cases.csv (val and test splits)")
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--table", type=Path, help="write the Markdown table (and a .json beside it) here")
    ap.add_argument("--data-description", help="how the cohort was made (for the table's header)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    for spec in args.checkpoint:
        name, _, path = spec.partition("=")
        ckpt, out = Path(path), args.out / name
        info_f = out / "info.json"
        if info_f.is_file():
            info = json.loads(info_f.read_text())
        else:
            info = predict_all_sources(ckpt, args.data, out)
            atomic_write_json(info_f, info)
        score_source = "patient" if info["patient_branch"] else "volume"
        rows = {}
        for s in SOURCES:
            mf = out / s / "summary.json"
            if not mf.is_file():
                atomic_write_json(mf, evaluate_source(args.data, out / s, score_source))
            rows[s] = json.loads(mf.read_text())
        results[name] = {**info, "checkpoint": str(ckpt), "sources": rows}
    meta = provenance("benchmarks/bench_type_source.py", argv)
    meta.update(machine=f"{meta['machine']}, {args.threads} torch thread(s)",
                data=args.data_description or str(args.data))
    md = markdown(results, meta)
    print(md)
    if args.table:
        atomic_write_text(args.table, md)
        atomic_write_json(args.table.with_suffix(".json"), {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
