"""Config presets, overrides and the paper-vs-code diff."""

from __future__ import annotations

import pytest

from plan_lite.cli import main
from plan_lite.config import PRESETS, VARIANTS, PlanConfig, config_diff, get_preset
from plan_lite.errors import PlanLiteError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_roundtrip_through_dict(name):
    cfg = get_preset(name)
    again = PlanConfig.from_dict(cfg.to_dict())
    assert again.flat() == cfg.flat()


def test_paper_numbers():
    cfg = get_preset("paper")
    assert cfg.model.num_queries == 20 and cfg.model.hidden_dim == 64 and cfg.loss.num_points == 12544
    assert cfg.loss.fes_fg_points == 3 and cfg.train.patch_size == (24, 256, 256)
    assert (cfg.loss.w_pixel, cfg.loss.w_class, cfg.loss.w_mask, cfg.loss.w_dice, cfg.loss.w_patient,
            cfg.loss.w_consistency) == (2, 2, 5, 5, 1, 0.1)


def test_official_diff_lists_code_differences():
    keys = {k for k, _, _ in config_diff(get_preset("paper"), get_preset("official"))}
    assert {"model.num_queries", "loss.fes_fg_points", "loss.fes_fg_on_stuff", "model.patient_groups",
            "infer.lesion_output"} <= keys


def test_size_thresholds_are_volumes():
    """Size thresholds are mm^3: at the paper's 0.7 x 0.7 x 5 mm they are the code's voxel counts (100 and 10),
    at the CPU recipe's 5 x 4 x 4 mm the same volumes are a few voxels."""
    paper = get_preset("paper")
    assert paper.voxels(paper.loss.patient_size_threshold_mm3) == pytest.approx(100)
    assert paper.voxels(paper.model.anchor_min_volume_mm3) == pytest.approx(10)
    assert paper.voxels(paper.data.min_lesion_volume_mm3) == pytest.approx(10)
    coarse = get_preset("tiny", spacing=(5.0, 4.0, 4.0))
    assert coarse.voxels(coarse.loss.patient_size_threshold_mm3) == pytest.approx(245 / 80)


def test_overrides_flat_and_dotted():
    cfg = get_preset("tiny", num_queries=12, **{"loss.fes": "false"})
    assert cfg.model.num_queries == 12 and cfg.loss.fes is False
    assert get_preset("tiny").model.num_queries == 8  # presets are not mutated


@pytest.mark.parametrize("bad", [{"no_such_option": 1}, {"fes": "maybe"}, {"patient_groups": "x"},
                                 {"lesion_output": "panoptic"}, {"stage2_optimizer": "adam"}, {"semantic": "both"},
                                 {"stage2_warmup": 1.5}, {"overlap": 1.0}])
def test_bad_overrides_raise(bad):
    with pytest.raises(PlanLiteError):
        get_preset("tiny", **bad)


def test_variants_switch_effective_parts():
    assert not get_preset("tiny", **VARIANTS["mask2former"]).model.use_anchors
    assert not get_preset("tiny", **VARIANTS["mask2former"]).model.use_patient_branch
    assert not get_preset("tiny", **VARIANTS["pixel_only"]).model.use_lesion_branch
    assert get_preset("tiny").model.use_anchors


def test_cli_config_diff(capsys):
    assert main(["config", "--preset", "paper", "--diff", "official"]) == 0
    out = capsys.readouterr().out
    assert "model.num_queries" in out and "| 20 | 50 |" in out


def test_cli_unknown_preset_exit_2(capsys):
    assert main(["config", "--preset", "huge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset" in err[0]
