"""The reference teaching model: a ``tiny`` PLAN trained on the CPU recipe, shipped with the package.

``checkpoint_path()`` is a normal plan-lite checkpoint (half-precision weights, loaded with
``torch.load(..., weights_only=True)`` and used like any ``best.pt``: ``Predictor(checkpoint_path())``);
``provenance()`` says how it was made (command, commit, data, budget) and what it measured on a check cohort
that ``tests/test_reference.py`` regenerates and re-evaluates by inference only. Made by
``python scripts/train_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from plan_lite.errors import PlanLiteError

HERE = Path(__file__).resolve().parent
NAME = "tiny_cpu"


def checkpoint_path(name: str = NAME) -> Path:
    """Path of the shipped checkpoint ``<name>.pt`` (a clear error if it was not built)."""
    path = HERE / f"{name}.pt"
    if not path.is_file():
        raise PlanLiteError(f"{path}: reference model not found (make it with `python scripts/train_reference.py`)")
    return path


def provenance(name: str = NAME) -> dict:
    """The provenance record ``<name>.json``: command, commit, data, schedule, training time and metrics."""
    path = HERE / f"{name}.json"
    if not path.is_file():
        raise PlanLiteError(f"{path}: reference provenance not found")
    return json.loads(path.read_text())


__all__ = ["checkpoint_path", "provenance", "NAME"]
