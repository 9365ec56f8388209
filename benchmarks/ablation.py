"""Table-4 ablation over seeds (paper Sec. 3, Table 4): a thin wrapper around
``plan_lite.engine.experiment.run_experiment`` (``plan-lite experiment``) that adds a ``provenance`` block to
``OUT/ablation.json`` (command, date, machine, torch version, git commit, wall and total CPU seconds).

The committed result ``benchmarks/results/ablation_nc_cpu_4000.json`` / ``.md`` (lesson 7) is this command on the
default synthetic cohort (``plan-lite synth DATA --cases 240 --seed 0 --spacing 5 4 4 --shape 24 96 96``), the
non-contrast preset and lesson 5's CPU recipe, 4000 steps per run (about 10 CPU minutes of training for PLAN,
the budget of the training goals), three seeds, two runs at a time with one torch thread each::

    python benchmarks/ablation.py DATA --out runs/ablation_nc_4000 --preset tiny_nc --cpu-recipe --max-steps 4000 \\
        --seeds 0 1 2 --jobs 2 --threads 1 --no-validate

``ablation_nc_cpu.json`` / ``.md`` is the same with ``--max-steps 1500`` (lesson 7 compares the two budgets), and
``ablation_dce_cpu_4000.json`` / ``.md`` the same with ``--preset tiny`` (three phases; 136 min wall, 258 CPU min).

Finished runs are kept (``OUT/{variant}/seed{s}/result.json``): the same command resumes, and more ``--seeds``
add runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from plan_lite.cli import main


def provenance(argv: list[str], seconds: float, cpu_seconds: float) -> dict:
    from plan_lite.utils import provenance as base

    prov = base("benchmarks/ablation.py", argv)
    return {**prov, "git_commit": prov.pop("commit"),
            "wall_seconds_this_call": round(seconds, 1), "cpu_seconds_all_runs": round(cpu_seconds, 1)}


if __name__ == "__main__":
    argv = sys.argv[1:]
    t0 = time.time()
    code = main(["experiment", *argv])
    if code == 0 and "--out" in argv:
        path = Path(argv[argv.index("--out") + 1]) / "ablation.json"
        report = json.loads(path.read_text())
        report["provenance"] = provenance(argv, time.time() - t0, report.get("cpu_seconds", 0.0))
        from plan_lite.utils import atomic_write_json

        atomic_write_json(path, report)
    sys.exit(code)
