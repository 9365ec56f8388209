"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
# The real CT fixtures ship with the package (plan_lite/sample_data); PLAN_LITE_REALDATA points elsewhere.
REALDATA = Path(os.environ.get("PLAN_LITE_REALDATA") or ROOT / "plan_lite" / "sample_data")
REALDATA_FILES = ("example_ct_sm.nii.gz", "example_seg.nii.gz")


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The real non-contrast CT with its organ map (TotalSegmentator fixtures).

    Skipped on a machine without them, but with ``CI`` set a missing fixture fails the test: CI must run it.
    """
    missing = [f for f in REALDATA_FILES if not (REALDATA / f).exists()]
    if missing:
        msg = f"real CT fixture {', '.join(missing)} not found under {REALDATA} (set PLAN_LITE_REALDATA)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the real-CT tests")
        pytest.skip(msg)
    return REALDATA


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset shared by tests (8 cases at the tiny preset's spacing)."""
    from plan_lite.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, n_cases=8, seed=123, progress=False)
    return out
