"""How the lesion branch's instance output is painted (``InferConfig.instance_paint``) and gated by the pixel
branch (``InferConfig.pixel_agreement``), measured on trained checkpoints: the same weights, each mode calibrated
on val as ``train`` does, then predicted and evaluated on the test split (not a timed test).

Modes (``--modes``): ``lesion`` - only lesion queries paint, a voxel goes to the kept lesion query with the largest
score x mask probability; ``panoptic`` (Mask2Former's panoptic inference) - the background and organ queries
compete for the voxels too; ``+gate`` - the pixel agreement is chosen on val together with the score threshold
(``AGREEMENTS``, 0 = off among them), without it the gate stays off. For every checkpoint
(``--checkpoint NAME=PATH``) and mode: copy the checkpoint with that painting, calibrate it on val
(``calibrate_checkpoint``), predict val + test, evaluate the test split with the paper's protocol (patient
threshold chosen on val). Finished pairs are kept (``OUT/<name>_<mode>/summary.json``)::

    python benchmarks/bench_instance_paint.py DATA --checkpoint plan_s0=runs/plan/seed0/run/last.pt \\
        --compare lesion+gate lesion --out runs/paint --table benchmarks/results/instance_paint_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

KEYS = ("f1", "precision", "recall", "recall_[5,10)", "recall_[10,20)", "recall_[20,inf)", "recall_>=10", "dice",
        "type_accuracy", "auc_any_tumor", "specificity_normal", "chance")


def _test_metrics(data: Path, pred: Path) -> tuple[dict, dict]:
    """Evaluate the test split of ``pred``: (the full metrics, the table's figures)."""
    from plan_lite.engine.experiment import summary_row
    from plan_lite.metrics import evaluate_folders, marked_liver_fraction, recall_from_bins

    m = evaluate_folders(data, pred, cases_csv=data / "cases.csv", splits=("test",), progress=False)
    row = summary_row(m)
    row["recall_>=10"] = recall_from_bins(m["lesion"].get("recall_by_radius") or {})  # the training goal's bin
    row["chance"] = marked_liver_fraction(data, pred, cases=list(m["per_case"]))
    return m, row


MODES = ("lesion", "panoptic", "lesion+gate", "panoptic+gate")


def run_pair(checkpoint: Path, data: Path, out: Path, mode: str) -> dict:
    """One checkpoint in one mode: calibrate on val, predict val + test, evaluate test (cached)."""
    import torch

    from plan_lite.engine.calibrate import AGREEMENTS, calibrate_checkpoint
    from plan_lite.engine.checkpoint import load_checkpoint, save_checkpoint
    from plan_lite.engine.predict import predict
    from plan_lite.metrics import bootstrap_intervals
    from plan_lite.utils import atomic_write_json

    done = out / "summary.json"
    if done.exists():
        res = json.loads(done.read_text())
        if "recall_>=10" not in res["summary"] and (out / "pred").is_dir():  # a pair measured before the column
            res["summary"] = _test_metrics(data, out / "pred")[1]
            atomic_write_json(done, res)
        return res
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(checkpoint)
    paint, _, gate = mode.partition("+")
    state["config"].setdefault("infer", {})["instance_paint"] = paint
    save_checkpoint(out / "last.pt", state)
    cal = calibrate_checkpoint(out / "last.pt", data, agreements=AGREEMENTS if gate else (0.0,))
    predict(out / "last.pt", [data], out / "pred", progress=False, split=("val", "test"))
    m, row = _test_metrics(data, out / "pred")
    res = {"checkpoint": str(checkpoint), "step": int(state.get("step", 0)), "paint": paint, "mode": mode,
           "score_threshold": cal.get("score_threshold"), "pixel_agreement": cal.get("pixel_agreement", 0.0), "summary": row, "ci95": bootstrap_intervals(m),
           "n_test_cases": m["n_cases"], "seconds": round(time.time() - t0, 1),
           "cpu_seconds": round(time.process_time() - c0, 1)}
    atomic_write_json(done, res)
    (out / "last.pt").unlink()  # the weights are the source checkpoint's; keep the folder small
    return res


def _pct(v) -> str:
    return "-" if v is None or v != v else f"{100 * v:.0f}"


def table(results: dict[str, dict[str, dict]]) -> str:
    head = ["checkpoint", "mode", "score thr.", "pixel agr.", *KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, modes in results.items():
        for paint, r in modes.items():
            s, ci = r["summary"], r.get("ci95", {})
            cells = [name, paint, f"{r['score_threshold']:g}" if r.get("score_threshold") is not None else "-",
                     f"{r.get('pixel_agreement', 0.0):g}"]
            for k in KEYS:
                c = _pct(s.get(k))
                if k in ("f1", "precision", "recall") and ci.get(k) and ci[k][0] is not None:
                    c += f" ({_pct(ci[k][0])}-{_pct(ci[k][1])})"
                cells.append(c)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(results: dict[str, dict[str, dict]], a: str = "panoptic", b: str = "lesion") -> dict:
    """Mean and sd over checkpoints of the difference a - b of each figure (percentage points)."""
    import statistics

    out = {}
    for k in KEYS:
        d = [100 * (m[a]["summary"][k] - m[b]["summary"][k]) for m in results.values()
             if a in m and b in m and m[a]["summary"].get(k) is not None and m[b]["summary"].get(k) is not None]
        if d:
            out[k] = {"mean": statistics.fmean(d), "sd": statistics.stdev(d) if len(d) > 1 else None, "n": len(d)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="dataset folder with cases.csv (val and test splits)")
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                    help="paired difference A - B to report (default: panoptic lesion; repeatable)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="", help="a paragraph for the table file (what the checkpoints are)")
    ap.add_argument("--cached-only", action="store_true",
                    help="measure nothing new: tabulate the finished pairs under --out, skip the others")
    ap.add_argument("--table", help="also write the Markdown table (with provenance) here, and .json beside it")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data, t0 = Path(args.data), time.time()
    results: dict[str, dict[str, dict]] = {}
    for item in args.checkpoint:
        name, _, path = item.partition("=")
        for mode in args.modes:
            folder = Path(args.out) / f"{name}_{mode.replace('+', '_')}"
            if args.cached_only and not (folder / "summary.json").is_file():
                print(f"{name} {mode}: not measured", flush=True)
                continue
            r = run_pair(Path(path), data, folder, mode)
            results.setdefault(name, {})[mode] = r
            print(f"{name} {mode}: F1 {r['summary']['f1']:.3f} P {r['summary']['precision']} "
                  f"R {r['summary']['recall']:.3f} (thr {r['score_threshold']})", flush=True)
    text = table(results)
    groups: dict[str, dict] = {}  # checkpoints named <group>_s<seed> are paired within their group
    for name, modes in results.items():
        groups.setdefault(re.sub(r"_s\d+$", "", name), {})[name] = modes
    diff = {}
    for a, b in args.compare or [("panoptic", "lesion")]:
        for g, members in groups.items():
            d = paired(members, a, b)
            if not d:
                continue
            diff[f"{g}: {a} - {b}"] = d
            n = max(v["n"] for v in d.values())
            text += (f"\n\nPaired difference {a} - {b}, {g} ({n} checkpoint{'s' * (n > 1)}; percentage points, "
                     "mean ± sd): " + ", ".join(f"{k} {v['mean']:+.1f}" + (f" ± {v['sd']:.1f}" if v["sd"] is not None
                                                                          else "") for k, v in d.items()))
    print(text)
    if args.table:
        from plan_lite.utils import atomic_write_text, provenance

        meta = provenance("benchmarks/bench_instance_paint.py", argv)
        prov = (f"Command: `{meta['command']}`  \n"
                f"Commit {meta['commit']}; {meta['machine']}, one torch thread; wall time "
                f"{(time.time() - t0) / 60:.0f} min for the pairs not already measured.  \n"
                + (args.note.strip() + "  \n" if args.note.strip() else "")
                + "Values in % on the test split (95 % bootstrap intervals over cases for F1, precision, recall); "
                "each mode's score threshold (and, +gate, pixel agreement) chosen on val; `recall_>=10` pools the "
                "lesions of radius >= 10 mm; `chance` = fraction of the liver marked as lesion.\n\n")
        atomic_write_text(Path(args.table), "# The lesion branch's output: painting and pixel agreement\n\n" + prov
                          + text + "\n")
        atomic_write_text(Path(args.table).with_suffix(".json"),
                          json.dumps({"results": results, "paired": diff}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
