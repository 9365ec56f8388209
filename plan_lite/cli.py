"""``plan-lite`` command line. Each subcommand lives in ``plan_lite/commands/<name>.py`` with
``add_arguments(parser)`` (light: no heavy imports) and ``run(args) -> int``.

User-facing faults (``PlanLiteError``) print one line ``plan-lite: error: ...`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from plan_lite.errors import PlanLiteError

COMMANDS: dict[str, str] = {
    "synth": "Generate a synthetic multi-phase liver CT dataset (MSD / nnU-Net v2 layout).",
    "convert": "Write a LiTS download in the MSD / nnU-Net v2 layout (links, no copies).",
    "validate": "Check a dataset folder and report every fault (exit 2 if any).",
    "preprocess": "Preprocess a dataset's train split once; later runs with the same data settings reuse it.",
    "config": "Print a preset, or the diff between two presets.",
    "train": "Train PLAN or a baseline on a dataset.",
    "predict": "Predict label maps, lesions and patient scores for CT volumes.",
    "evaluate": "Pixel, lesion and patient metrics of predictions against ground truth.",
    "experiment": "Ablations and baselines with one budget, gathered into a Table-4-style table.",
    "sweep": "Run a notebook over a parameter grid (papermill) and gather its metrics into one table.",
    "demo": "Quick end-to-end demo on a dataset: montage PNG of a case with its labels.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plan-lite", description="PLAN for liver tumour screening and diagnosis in CT.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"plan_lite.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except PlanLiteError as exc:
        print(f"plan-lite: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plan-lite: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
