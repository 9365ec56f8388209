"""``plan-lite experiment`` (not implemented yet)."""

from __future__ import annotations

import argparse

from plan_lite.errors import PlanLiteError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise PlanLiteError("experiment: not implemented yet")
