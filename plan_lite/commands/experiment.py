"""``plan-lite experiment DATASET --out DIR [--preset tiny] [--variants ...] [--seeds 0 1 2] [--jobs N]
[--max-steps N] [--max-minutes M]`` (paper Table 4: ablations and baselines with one budget over several seeds;
``plan_lite.engine.experiment``)."""

from __future__ import annotations

import argparse

from plan_lite.config import VARIANTS

DEFAULT_VARIANTS = tuple(VARIANTS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset folder with cases.csv (train/val/test splits)")
    p.add_argument("--out", required=True, help="experiment folder (one sub-folder per variant, ablation.md)")
    p.add_argument("--preset", default="tiny", help="preset for every variant [tiny]")
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=DEFAULT_VARIANTS,
                   metavar="VARIANT", help=f"variants to run [{' '.join(DEFAULT_VARIANTS)}]")
    p.add_argument("--max-steps", type=int, help="training steps per variant (default: the preset's schedule)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget per variant")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="one run per variant and seed; the table gives mean +- sd and paired differences [0]")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel, each in its own process [1]")
    p.add_argument("--threads", type=int, help="torch threads per run [CPU count // jobs; with --jobs 1 the process's own]")
    p.add_argument("--cpu-recipe", action="store_true",
                   help="start from plan_lite.config.CPU_RECIPE (lesson 5's CPU recipe), then apply --set")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override for all")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--semantic", choices=("lesion", "pixel", "fused"),
                   help="probabilities used at prediction (see plan-lite predict; default: the config's infer)")
    p.add_argument("--lesion-decision", choices=("argmax", "merged"),
                   help="label rule at prediction (see plan-lite predict; default: the config's infer)")
    p.add_argument("--no-validate", action="store_true", help="skip validation during training (faster on CPU)")


def run(args: argparse.Namespace) -> int:
    from plan_lite.config import CPU_RECIPE, parse_overrides
    from plan_lite.engine.experiment import run_experiment

    run_experiment(args.dataset, args.out, preset=args.preset, variants=tuple(args.variants),
                   max_steps=args.max_steps, max_minutes=args.max_minutes, seeds=args.seeds,
                   jobs=args.jobs, threads=args.threads,
                   overrides={**(CPU_RECIPE if args.cpu_recipe else {}), **parse_overrides(args.overrides)},
                   device=args.device, progress=not args.no_progress,
                   validate=not args.no_validate, semantic=args.semantic, lesion_decision=args.lesion_decision)
    print((__import__("pathlib").Path(args.out) / "ablation.md").read_text())
    return 0
