"""Table-4-style ablation (paper Sec. 3, Table 4) on a dataset: a thin wrapper around
``plan_lite.engine.experiment.run_experiment`` (``plan-lite experiment``) that adds a ``provenance`` block to
``OUT/ablation.json`` (command, date, machine, torch version, git commit, wall seconds).

    python benchmarks/ablation.py DATA --out runs/ablation --preset tiny --max-steps 600

The committed reference run ``benchmarks/results/ablation_tiny_cpu.json`` (shown in lesson 7) is this script's
``ablation.json`` for the easy cohort (``make data``: ``data/synthetic_easy``) with ``plan_lite.config.CPU_RECIPE``:

    OMP_NUM_THREADS=1 python benchmarks/ablation.py data/synthetic_easy --out runs/ablation --preset tiny \\
        --max-steps 600 --no-validate --no-progress --lesion-decision merged --set spacing=5,4,4 \\
        --set patch_size=8,48,48 --set fg_oversample=1.0 --set augment=false --set lr=0.01 \\
        --set stage1_epochs=4 --set stage2_epochs=1 --set patient_start_epoch=0 --set min_lesion_voxels=3
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from plan_lite.cli import main


def provenance(argv: list[str], seconds: float) -> dict:
    import torch

    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return {"command": "python benchmarks/ablation.py " + " ".join(argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}",
            "threads": os.environ.get("OMP_NUM_THREADS", "default"), "torch": torch.__version__,
            "git_commit": commit.stdout.strip() or "unknown", "wall_seconds": round(seconds, 1)}


if __name__ == "__main__":
    argv = sys.argv[1:]
    t0 = time.time()
    code = main(["experiment", *argv])
    if code == 0 and "--out" in argv:
        path = Path(argv[argv.index("--out") + 1]) / "ablation.json"
        report = json.loads(path.read_text())
        report["provenance"] = provenance(argv, time.time() - t0)
        from plan_lite.utils import atomic_write_json

        atomic_write_json(path, report)
    sys.exit(code)
