"""``plan-lite preprocess DATASET [--preset tiny] [--set key=value ...]``: fill ``DATASET/preprocessed/<fingerprint>``
ahead of training (``plan_lite.engine.training_data``); later runs with the same data settings read it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="MSD / nnU-Net v2 dataset folder (the train split of cases.csv is preprocessed)")
    p.add_argument("--preset", default="tiny", help="preset whose data settings apply (spacing, phases, clipping)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override an option")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from plan_lite.config import get_preset, parse_overrides
    from plan_lite.data.io import MSDDataset
    from plan_lite.engine.training_data import load_train_cases, preprocess_fingerprint, split_ids

    cfg = get_preset(args.preset, **parse_overrides(args.overrides))
    ds = MSDDataset(args.dataset, phases=tuple(cfg.data.phases))
    key = preprocess_fingerprint(ds, split_ids(args.dataset, "train", ds.case_ids), cfg)
    folder = Path(args.dataset) / "preprocessed" / key
    before = len(list(folder.glob("*.npz"))) if folder.is_dir() else 0
    t0 = time.time()
    cases, _, _ = load_train_cases(args.dataset, cfg, progress=not args.no_progress)
    after = len(list(folder.glob("*.npz"))) if folder.is_dir() else 0
    if after == 0:
        print(f"{args.dataset}: not writable; {len(cases)} cases preprocessed in memory only")
        return 0
    print(f"{folder}: {len(cases)} train cases ({after - before} written, {before} already there) "
          f"in {time.time() - t0:.1f} s")
    return 0
