"""``plan-lite synth OUT``: write a synthetic multi-phase liver CT dataset (MSD / nnU-Net v2 layout).

See ``plan_lite.data.synthetic`` and ``data_cards/synthetic_liver_ct.md``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="output dataset folder (must be empty or absent unless --overwrite)")
    p.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; case i uses SeedSequence([seed, i])")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), default=(5.0, 2.5, 2.5),
                   help="voxel spacing in mm (default 5 2.5 2.5)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), default=(32, 160, 160),
                   help="volume shape in voxels (default 32 160 160)")
    p.add_argument("--phases", nargs="+", choices=("nc", "la", "pv"), default=["nc", "la", "pv"],
                   help="CT phases, one image channel each (default nc la pv; --phases nc for NC-only)")
    p.add_argument("--lesion-contrast", type=float, default=1.0,
                   help="multiply each lesion's HU difference to the liver (default 1 = realistic; 2 = easy cohort)")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="multiply image noise and liver texture (default 1 = realistic; 0.5 = easy cohort)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT (only once complete)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1; output identical)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from plan_lite.data.synthetic import generate_dataset
    from plan_lite.errors import PlanLiteError

    if args.cases < 1:
        raise PlanLiteError(f"synth: --cases must be >= 1, got {args.cases}")
    if min(args.spacing) <= 0 or min(args.shape) < 1:
        raise PlanLiteError("synth: --spacing must be > 0 and --shape >= 1")
    if len(set(args.phases)) != len(args.phases):
        raise PlanLiteError(f"synth: repeated phase in --phases {args.phases}")
    out = generate_dataset(args.out, args.cases, seed=args.seed, spacing=tuple(args.spacing), shape=tuple(args.shape),
                           phases=tuple(args.phases), overwrite=args.overwrite, progress=not args.no_progress,
                           workers=args.workers, lesion_contrast=args.lesion_contrast,
                           noise_scale=args.noise_scale)
    print(f"wrote {args.cases} cases to {out}")
    return 0
