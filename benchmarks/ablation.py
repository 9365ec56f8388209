"""Table-4-style ablation (paper Sec. 3, Table 4) on a dataset: a thin wrapper around
``plan_lite.engine.experiment.run_experiment``.

    python benchmarks/ablation.py DATA --out runs/ablation --preset tiny --max-steps 600
"""

from __future__ import annotations

import sys

from plan_lite.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
