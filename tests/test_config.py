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


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_is_its_plain_flags(variant):
    """A variant is nothing but the plain options it sets: config --diff against plan shows all of them."""
    from plan_lite.config import config_diff

    base, cfg = get_preset("tiny"), get_preset("tiny", **VARIANTS[variant])
    changed = {key.split(".", 1)[1]: value for key, value, _ in config_diff(cfg, base)}
    assert changed == VARIANTS[variant]  # every flag the variant sets changes a default, nothing else changes


def test_variants_switch_effective_parts():
    assert not get_preset("tiny", **VARIANTS["mask2former"]).model.anchor_queries
    assert not get_preset("tiny", **VARIANTS["mask2former"]).model.patient_branch
    assert not get_preset("tiny", **VARIANTS["mask2former"]).loss.fes
    assert not get_preset("tiny", **VARIANTS["pixel_only"]).model.lesion_branch
    assert get_preset("tiny").model.anchor_queries
    with pytest.raises(PlanLiteError, match="need the lesion branch"):
        get_preset("tiny", lesion_branch=False)  # anchors and consistency would be silently off


def test_from_dict_round_trip_rejects_unknown_and_upgrades_old_flags():
    from plan_lite.config import PlanConfig

    cfg = get_preset("tiny", **VARIANTS["mask2former"])
    assert PlanConfig.from_dict(cfg.to_dict()) == cfg
    d = cfg.to_dict()
    d["model"]["num_querries"] = 3
    with pytest.raises(PlanLiteError, match="model.num_querries"):
        PlanConfig.from_dict(d)
    old = get_preset("tiny").to_dict()  # a checkpoint written before the meta-flags were expanded
    old["model"].update(pixel_only=True, num_classes=15)
    old["train"]["num_workers"] = 0
    up = PlanConfig.from_dict(old)
    assert up.model == get_preset("tiny", **VARIANTS["pixel_only"]).model
    # a checkpoint saved before infer.instance_paint existed keeps the painting it was calibrated with
    before = get_preset("tiny").to_dict()
    del before["infer"]["instance_paint"]
    assert PlanConfig.from_dict(before).infer.instance_paint == "lesion"
    assert PlanConfig.from_dict(get_preset("tiny", instance_paint="panoptic").to_dict()).infer.instance_paint == "panoptic"


def test_string_options_are_checked_from_their_literal_types():
    from plan_lite.config import _choices

    ch = _choices()
    assert ch["infer.lesion_output"] == ("instance", "semantic") and ch["train.stage2_optimizer"] == ("fresh", "continue")
    assert ch["loss.fes_point_norm"] == ("center", "code") and "model.patient_groups" in ch
    with pytest.raises(PlanLiteError, match="infer.semantic must be one of lesion, pixel, fused"):
        get_preset("tiny", semantic="both")


def test_cli_config_variant_diff(capsys):
    assert main(["config", "--preset", "tiny", "--variant", "pixel_only", "--diff", "tiny"]) == 0
    out = capsys.readouterr().out
    for key in ("model.lesion_branch", "model.anchor_queries", "model.patient_branch", "loss.fes", "loss.consistency"):
        assert key in out


def test_cli_config_diff(capsys):
    assert main(["config", "--preset", "paper", "--diff", "official"]) == 0
    out = capsys.readouterr().out
    assert "model.num_queries" in out and "| 20 | 50 |" in out


def test_cli_unknown_preset_exit_2(capsys):
    assert main(["config", "--preset", "huge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset" in err[0]
