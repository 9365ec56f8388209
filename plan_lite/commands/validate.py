"""``plan-lite validate DATASET``: check an MSD / nnU-Net v2 dataset folder (``plan_lite.data.validate``).

Exit 0 and a one-screen summary when the dataset is valid; exit 2 and one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset folder (dataset.json, imagesTr, labelsTr, ...)")
    p.add_argument("--workers", type=int, default=4, help="threads reading cases (default 4)")
    p.add_argument("--quiet", action="store_true", help="no summary on success")


def run(args: argparse.Namespace) -> int:
    from plan_lite.data.validate import scan_dataset, summarize_dataset

    scan = scan_dataset(args.dataset, workers=args.workers)
    if scan.problems:
        for p in scan.problems:
            print(f"plan-lite: error: {p}", file=sys.stderr)
        if len(scan.problems) > 1:
            print(f"plan-lite: {len(scan.problems)} problems in {args.dataset}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(summarize_dataset(args.dataset, scan))
    print(f"{args.dataset}: OK")
    return 0
