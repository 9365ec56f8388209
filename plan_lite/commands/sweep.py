"""``plan-lite sweep NOTEBOOK --param NAME VALUE [VALUE ...] [--set NAME VALUE] --out DIR [--jobs N] [--zip]
[--retry-failed] [--plot METRIC:PARAM]`` (run a notebook over a parameter grid; ``plan_lite.sweep``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="notebook with a cell tagged 'parameters' (e.g. notebooks/05_training.ipynb)")
    p.add_argument("--param", nargs="+", action="append", metavar=("NAME", "VALUE"), default=[],
                   help="a swept parameter and its values: --param NAME VALUE [VALUE ...] (repeatable); values "
                        "are converted to the type of the notebook's default (lists as Python literals: "
                        "'[8, 48, 48]')")
    p.add_argument("--set", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[], dest="fixed",
                   help="a parameter with one value for every run (repeatable)")
    p.add_argument("--out", required=True, help="sweep folder (one sub-folder per run, results.csv / results.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time; each kernel gets cpu_count // jobs threads [1]")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--grid", dest="mode", action="store_const", const="grid",
                      help="every combination (default)")
    mode.add_argument("--zip", dest="mode", action="store_const", const="zip",
                      help="the i-th value of every --param together (all lists of one length)")
    p.set_defaults(mode="grid")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again (finished ones are kept)")
    p.add_argument("--plot", metavar="METRIC:PARAM",
                   help="PNG of METRIC (or M1,M2) against the swept PARAM, written into --out")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel [python3]")
    p.add_argument("--timeout", type=float, help="seconds per cell (default: no limit)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from plan_lite.errors import PlanLiteError
    from plan_lite.sweep import plot, run_sweep

    if not Path(args.notebook).is_file():
        raise PlanLiteError(f"{args.notebook}: notebook not found")
    params: dict[str, list[str]] = {}
    for name, *values in args.param:
        if not values:
            raise PlanLiteError(f"--param {name}: give at least one value")
        if name in params:
            raise PlanLiteError(f"--param {name}: given twice")
        params[name] = values
    plot_spec = None
    if args.plot:
        metric, sep, param = args.plot.rpartition(":")
        if not sep or not metric or param not in params:
            raise PlanLiteError(f"--plot {args.plot}: expected METRIC:PARAM with PARAM one of the --param names "
                                f"({', '.join(params) or 'none'})")
        plot_spec = (metric.split(","), param)

    result = run_sweep(args.notebook, params, args.out, jobs=args.jobs, mode=args.mode,
                       retry_failed=args.retry_failed, fixed=dict(args.fixed), progress=not args.no_progress,
                       kernel_name=args.kernel, execution_timeout=args.timeout)
    print(result.to_markdown())
    print(f"\nresults: {result.csv_path}\n         {result.md_path}")
    if plot_spec is not None and result.ok:
        name = re.sub(r"[^A-Za-z0-9._=+-]+", "-", f"{'+'.join(plot_spec[0])}_vs_{plot_spec[1]}")
        path = result.out_dir / f"{name}.png"
        plot(result, plot_spec[0], plot_spec[1], path)
        print(f"plot:    {path}")
    for r in result.failed:
        print(f"plan-lite: run {r['run']} failed: {r['error']} (executed notebook: {r['notebook']})",
              file=sys.stderr)
    return 1 if result.failed else 0
