"""``plan-lite train DATASET --preset NAME [--variant V] [--set key=value ...] --out RUN [--max-steps N]
[--max-minutes M] [--resume] [--device cpu|cuda]`` (paper Sec. 3, implementation details).

Multi-GPU / multi-node with torchrun (DDP; rank 0 logs and checkpoints)::

    torchrun --nproc_per_node=4 -m plan_lite.cli train DATA --preset paper --out runs/paper
"""

from __future__ import annotations

import argparse

from plan_lite.config import VARIANTS

VARIANT_NAMES = tuple(VARIANTS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="MSD / nnU-Net v2 dataset folder (cases.csv splits; all cases if absent)")
    p.add_argument("--preset", default="tiny", help="preset name (paper, paper_nc, official, tiny, tiny_nc)")
    p.add_argument("--variant", default="plan", choices=VARIANT_NAMES, help="ablation / baseline (Table 4)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override an option")
    p.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, val.jsonl, last.pt, best.pt)")
    p.add_argument("--max-steps", type=int, help="total optimisation steps (split between the two stages)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this many minutes")
    p.add_argument("--stop-after", type=int, help="stop cleanly after this step without changing the schedule")
    p.add_argument("--resume", action="store_true", help="continue exactly from RUN/last.pt")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from plan_lite.config import VARIANTS, get_preset, parse_overrides
    from plan_lite.engine.train import train

    overrides = {**VARIANTS[args.variant], **parse_overrides(args.overrides)}
    cfg = get_preset(args.preset, **overrides)
    from plan_lite.data.io import MSDDataset

    ds = MSDDataset(args.dataset, phases=tuple(cfg.data.phases))
    if ds.label_map is not None:  # MSD Task03 / LiTS: say how their labels become plan-lite's
        print(f"{args.dataset}: {ds.label_map_note}")
    out = train(args.dataset, cfg, args.out, max_steps=args.max_steps, max_minutes=args.max_minutes,
                resume=args.resume, device=args.device, progress=not args.no_progress, stop_after=args.stop_after)
    print(f"run folder: {out}")
    best = out / "best.json"
    if best.is_file():
        import json

        b = json.loads(best.read_text())
        score = "-" if b["score"] is None else f"{b['score']:.4f}"
        print(f"best.pt: step {b['step']}, stage {b['stage']}, validation score {score} ({b['selection']})")
    return 0
