"""The shipped reference models (``tiny_cpu``, three phases; ``tiny_nc_cpu``, NC only) re-measured by inference only on a freshly generated check cohort.

``scripts/train_reference.py`` trained it and recorded, in ``plan_lite/reference/tiny_cpu.json``, its lesion
recall / precision, tumour Dice and patient AUC on a check cohort defined by a seed (cases it never saw). This test
regenerates that cohort, predicts it with the shipped half-precision checkpoint and checks every recorded figure
within the recorded tolerance (0.05 absolute: floating-point paths differ between CPUs, and one lesion of the
~60 moves recall by ~0.02).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = pytest.mark.slow
NAMES = ("tiny_cpu", "tiny_nc_cpu")


@pytest.mark.parametrize("name", NAMES)
def test_reference_checkpoint_loads_safely(name):
    from plan_lite.engine.checkpoint import load_checkpoint
    from plan_lite.reference import checkpoint_path, provenance

    path = checkpoint_path(name)
    assert path.stat().st_size < 3 * 2**20, "the reference weights must stay under 3 MB"
    state = load_checkpoint(path)  # weights_only=True
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    prov = provenance(name)
    assert prov["preset"] == name.removesuffix("_cpu")
    assert {"command", "commit", "training_cohort", "check_cohort", "test_split", "check"} <= set(prov)
    assert state["config"]["infer"]["score_threshold"] == prov["calibration"]["score_threshold"]
    assert state["config"]["infer"].get("pixel_agreement", 0.0) == prov["calibration"].get("pixel_agreement", 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_reference_model_reproduces_its_recorded_metrics(tmp_path, name):
    from train_reference import CHECK_KEYS, evaluate_checkpoint, make_cohort, pick

    from plan_lite.reference import checkpoint_path, provenance

    prov = provenance(name)
    spec = {k: (tuple(v) if isinstance(v, list) else v) for k, v in prov["check_cohort"].items()}
    data = make_cohort(tmp_path / "check", {k: v for k, v in spec.items() if k not in ("lesion_contrast",
                                                                                          "noise_scale")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = evaluate_checkpoint(checkpoint_path(name), data, tmp_path / "pred", splits=("test",))
    finally:
        torch.set_num_threads(threads)
    tol = prov["check_tolerance"]
    for key in CHECK_KEYS:
        want, got = prov["check"][key], pick(m, key)
        print(f"{key}: recorded {want}, measured {got}")
        assert got is not None and not math.isnan(got), key
        assert abs(got - want) <= tol, f"{key}: recorded {want:.3f}, measured {got:.3f} (tolerance {tol})"
    assert m["lesion"]["recall"] > 2 * m["chance_recall"], "the reference model must be well above chance"


def test_logged_seconds_add_up_over_resumes(tmp_path):
    import json

    from train_reference import logged_seconds

    rows = [{"cpu": 1.0}, {"cpu": 5.0}, {"cpu": 0.5}, {"cpu": 3.0}]  # resumed after the second row
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert logged_seconds(tmp_path / "log.jsonl", "cpu") == 8.0
