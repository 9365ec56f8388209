"""Synthetic generator speed and disk size at the default size (5 x 2.5 x 2.5 mm, 32 x 160 x 160, 3 phases).

Usage: ``python benchmarks/bench_synth.py [--cases 10] [--workers 1]``. Prints a markdown table: cases/s (wall
and per CPU-second, the latter robust to a busy machine), MB on disk per case, and the extrapolated size of
100 cases.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from plan_lite.data.synthetic import generate_case, generate_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    generate_case(0)  # warm-up (imports)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(a.cases):
        generate_case(1000 + i)
    gen_wall, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        t0, c0 = time.perf_counter(), time.process_time()
        generate_dataset(out, a.cases, seed=0, progress=False, workers=a.workers)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    per = size / a.cases
    print(f"| measure ({a.cases} cases, {os.cpu_count()} CPUs, workers={a.workers}) | value |")
    print("|---|---|")
    print(f"| generate_case only: cases/s (wall) | {a.cases / gen_wall:.2f} |")
    print(f"| generate_case only: cases per CPU-second | {a.cases / gen_cpu:.2f} |")
    print(f"| generate + write .nii.gz: cases/s (wall) | {a.cases / wall:.2f} |")
    if a.workers == 1:
        print(f"| generate + write .nii.gz: cases per CPU-second | {a.cases / cpu:.2f} |")
    print(f"| MB on disk per case | {per:.2f} |")
    print(f"| 100 cases: MB on disk (extrapolated) | {100 * per:.0f} |")
    print(f"| 100 cases: minutes (extrapolated, wall) | {100 * wall / a.cases / 60:.1f} |")


if __name__ == "__main__":
    main()
