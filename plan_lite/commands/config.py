"""``plan-lite config --preset paper [--variant V] [--diff official] [--set key=value ...] [--json]``.

``plan-lite config --preset tiny --variant pixel_only --diff tiny`` shows every plain option a variant sets."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="paper", help="preset name (paper, paper_nc, official, tiny, tiny_nc)")
    p.add_argument("--variant", default="plan", help="ablation / baseline applied on the preset (config.VARIANTS)")
    p.add_argument("--diff", metavar="PRESET", help="show only the options that differ from this preset")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override an option")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from plan_lite.config import VARIANTS, config_diff, config_diff_markdown, get_preset, parse_overrides
    from plan_lite.errors import PlanLiteError

    if args.variant not in VARIANTS:
        raise PlanLiteError(f"config: unknown variant {args.variant!r}; choose from {', '.join(VARIANTS)}")
    cfg = get_preset(args.preset, **{**VARIANTS[args.variant], **parse_overrides(args.overrides)})
    if args.variant != "plan":
        cfg.name = f"{args.preset}+{args.variant}"
    if args.diff:
        other = get_preset(args.diff)
        if args.json:
            print(json.dumps([{"option": k, cfg.name: a, other.name: b} for k, a, b in config_diff(cfg, other)], indent=2))
        else:
            print(config_diff_markdown(cfg, other))
        return 0
    if args.json:
        print(cfg.to_json())
    else:
        print(f"| option | {cfg.name} |\n|---|---|")
        for k, v in cfg.flat().items():
            print(f"| `{k}` | {v} |")
    return 0
