"""``plan-lite convert lits SRC... --out DIR``: a LiTS download in the MSD / nnU-Net v2 layout (links, no copies)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=("lits",), help="layout of the source folders")
    p.add_argument("sources", nargs="+", help="folders with volume-N.nii / segmentation-N.nii (searched recursively)")
    p.add_argument("--out", required=True, help="dataset folder to write (dataset.json, imagesTr, labelsTr, imagesTs)")
    p.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    p.add_argument("--phase", default="CT", help="channel name (default CT: serves any single-phase preset)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")


def run(args: argparse.Namespace) -> int:
    from plan_lite.data.io import LABEL_MAPS
    from plan_lite.data.lits import convert_lits

    r = convert_lits(args.sources, args.out, copy=args.copy, phase=args.phase, overwrite=args.overwrite)
    how = "linked" if r["linked"] else "copied"
    print(f"{r['out']}: {r['training']} training and {r['test']} test scans {how} ({r['file_ending']})")
    print(f"labels kept as stored; every command maps them {LABEL_MAPS['lits']} (2 tumour -> 14 other)")
    print(f"next: plan-lite validate {r['out']}")
    return 0
