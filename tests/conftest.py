"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The real non-contrast CT with its liver mask (TotalSegmentator fixtures), if present on this machine."""
    if not (REALDATA / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT fixture not found under {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset shared by tests (8 cases at the tiny preset's spacing)."""
    from plan_lite.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, n_cases=8, seed=123, progress=False)
    return out
