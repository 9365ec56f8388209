"""Tests for plan_lite.model: output contract, switches, anchors, attention masks, D6, inference.

D1-D6 and "pitfall N": book/design_decisions.md#dd-d6, #dd-pitfalls.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plan_lite.config import PRESETS, VARIANTS, get_preset
from plan_lite.errors import PlanLiteError
from plan_lite.labels import LESION_LABELS, NUM_CLASSES, NUM_PATIENT_OUTPUTS
from plan_lite.model import PLAN, compute_anchors, mask_logits
from plan_lite.model.anchors import AnchorSet
from plan_lite.model.lesion_branch import LesionBranch, attention, level_mask_logits
from plan_lite.model.position_encoding import axis_channels, sine_position_encoding_3d
from plan_lite.model.postprocess import extract_lesions, label_lesions, semantic_inference

torch.set_num_threads(2)

# tiny preset on a small input: total stride (4, 16, 16); patient grid (2, 3, 3) needs stage-4 size (2, 3, 3)
SMALL = (8, 48, 48)


def tiny(**overrides):
    return get_preset("tiny", patch_size=SMALL, **overrides)


def all_outputs_loss(out: dict) -> torch.Tensor:
    """A scalar touching every output (full-resolution mask logits of every prediction set included)."""
    loss = out["pixel_logits"].float().mean() + out["mask_features"].float().mean()
    if "pred_logits" in out:
        for s in [out, *out["aux_outputs"]]:
            loss = loss + s["pred_logits"].float().mean()
            loss = loss + mask_logits(out, mask_embed=s["pred_mask_embed"]).float().sigmoid().mean()
    if "patient_logits" in out:
        loss = loss + out["patient_logits"].float().mean()
    return loss


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    model = PLAN(get_preset(name))
    counts = model.parameter_counts()
    print(f"{name}: {counts}")
    assert counts["total"] == sum(p.numel() for p in model.parameters()) == model.num_parameters()
    assert all(counts[p] > 0 for p in ("backbone", "pixel", "lesion", "patient"))


def test_paper_forward_backward_small_input():
    """Paper architecture on (1, 3, 8, 64, 64) (divisible by the total stride (4, 64, 64))."""
    torch.manual_seed(0)
    cfg = get_preset("paper", patch_size=(8, 64, 64), patient_token_grid=(2, 2, 2))
    model = PLAN(cfg)
    print(f"paper (patch 8x64x64, token grid 2x2x2): {model.parameter_counts()}")
    out = model(torch.randn(1, 3, 8, 64, 64))
    assert out["pixel_logits"].shape == (1, 15, 8, 64, 64)
    assert out["mask_features"].shape == (1, 64, 8, 64, 64)
    assert out["pred_logits"].shape[-1] == 16 and out["patient_logits"].shape == (1, 11)
    all_outputs_loss(out).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_tiny_output_contract():
    torch.manual_seed(0)
    cfg = tiny()
    model = PLAN(cfg).eval()
    b, (d, h, w) = 2, SMALL
    with torch.no_grad():
        out = model(torch.randn(b, 3, d, h, w))
    m = cfg.model
    q = out["pred_logits"].shape[1]
    assert out["pixel_logits"].shape == (b, NUM_CLASSES, d, h, w)
    assert out["mask_features"].shape == (b, m.hidden_dim, d, h, w)
    assert out["pred_logits"].shape == (b, q, NUM_CLASSES + 1)
    assert out["pred_mask_embed"].shape == (b, q, m.hidden_dim)
    assert out["query_padding_mask"].shape == (b, q) and out["query_padding_mask"].dtype == torch.bool
    assert out["query_kind"].shape == (b, q) and out["query_kind"].dtype == torch.long
    assert out["num_anchors"].shape == (b,) and out["num_anchors"].dtype == torch.long
    assert q == m.num_queries + int(out["num_anchors"].max())
    assert len(out["aux_outputs"]) == m.dec_layers  # initial queries + every layer but the last
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert aux["pred_mask_embed"].shape == out["pred_mask_embed"].shape
    assert out["patient_logits"].shape == (b, NUM_PATIENT_OUTPUTS)
    for i in range(b):
        a = int(out["num_anchors"][i])
        kinds = out["query_kind"][i]
        assert (kinds[: m.num_queries] == 0).all() and (kinds[m.num_queries: m.num_queries + a] > 0).all()
        assert ((kinds == -1) == out["query_padding_mask"][i]).all()
        assert out["anchor_masks"][i].shape == (a, d, h, w) and out["anchor_masks"][i].dtype == torch.bool
    assert all(torch.isfinite(out[k]).all() for k in ("pred_logits", "pred_mask_embed", "patient_logits"))
    assert set(model(torch.randn(1, 3, d, h, w), stage=1)) == {"pixel_logits", "mask_features"}


@pytest.mark.parametrize("variant", ["plan", "mask2former"])
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(0)
    model = PLAN(tiny(**VARIANTS[variant])).train()
    out = model(torch.randn(2, 3, *SMALL))
    all_outputs_loss(out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_switches_remove_their_part():
    models = {v: PLAN(tiny(**VARIANTS[v])) for v in ("pixel_only", "mask2former", "plan", "no_anchor")}
    n = {v: m.num_parameters() for v, m in models.items()}
    assert n["pixel_only"] < n["mask2former"] < n["plan"]
    assert models["pixel_only"].lesion is None and models["pixel_only"].patient is None
    assert models["mask2former"].patient is None and models["mask2former"].lesion.query_embed is not None
    assert models["plan"].lesion.query_embed is None  # no unused parameters (query_pos_embed off)
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        assert set(models["pixel_only"](x)) == {"pixel_logits", "mask_features"}
        out = models["no_anchor"](x)
        assert int(out["num_anchors"].sum()) == 0 and out["pred_logits"].shape[1] == 8
        assert out["anchor_masks"][0].shape[0] == 0
        out = models["mask2former"](x)
        assert "patient_logits" not in out and int(out["num_anchors"].sum()) == 0


def test_bad_input_sizes_raise():
    model = PLAN(tiny())
    with pytest.raises(PlanLiteError, match="total stride"):
        model(torch.randn(1, 3, 8, 40, 48))


def test_patient_branch_takes_any_input_the_stride_divides():
    """The patient tokens keep their grid for any input size: a map larger than the training one is
    average-pooled to it, a smaller one interpolated; at the training size the branch is unchanged."""
    from plan_lite.model.patient_branch import fit_to_token_grid

    model = PLAN(tiny()).eval()
    with torch.no_grad():
        for shape in ((1, 3, 8, 64, 64), (2, 3, 16, 48, 96), (1, 3, 8, 32, 32)):
            out = model(torch.randn(*shape))
            assert out["patient_logits"].shape == (shape[0], 11) and torch.isfinite(out["patient_logits"]).all()
    x = torch.randn(1, 4, 4, 6, 6)
    assert fit_to_token_grid(x, (4, 6, 6)) is x
    pooled = fit_to_token_grid(x, (2, 3, 3))
    assert torch.allclose(pooled[0, :, 0, 0, 0], x[0, :, :2, :2, :2].mean((1, 2, 3)), atol=1e-6)
    assert fit_to_token_grid(x, (8, 12, 12)).shape == (1, 4, 8, 12, 12)


def _crafted_label_map():
    """(8, 32, 32): background, liver block, lesion 7 (3x4x4 = 48 vox), lesion 9 (2x3x3 = 18), lesion 8 (5 vox)."""
    lab = torch.zeros(8, 32, 32, dtype=torch.long)
    lab[1:7, 4:28, 4:28] = 1
    lab[2:5, 6:10, 6:10] = 7
    lab[4:6, 18:21, 18:21] = 9
    lab[2, 22:27, 10] = 8  # 5 voxels: 12.25 mm^3 at the paper's 2.45 mm^3 voxels <= 24.5 mm^3: no anchor
    return lab


def test_compute_anchors_ground_truth_like_prediction():
    torch.manual_seed(0)
    lab = _crafted_label_map()
    logits = 20.0 * torch.nn.functional.one_hot(lab, NUM_CLASSES).permute(3, 0, 1, 2)[None].float()
    emb = torch.randn(1, 32, *lab.shape)
    paper_voxels = (5.0, 0.7, 0.7)  # 2.45 mm^3: the size threshold is the code's 10 voxels
    anchors = compute_anchors(logits, emb, tiny(spacing=paper_voxels))
    kinds, labels, masks, vecs = anchors.kinds[0], anchors.labels[0], anchors.masks[0], anchors.vectors[0]
    assert anchors.counts() == [4]
    assert kinds.tolist() == [1, 1, 2, 2] and labels.tolist() == [0, 1, -1, -1]
    expected = [lab == 0, lab == 1, lab == 7, lab == 9]  # stuff ascending, then lesions largest first
    for i, region in enumerate(expected):
        assert torch.equal(masks[i], region)
        torch.testing.assert_close(vecs[i], emb[0][:, region].mean(1), rtol=1e-5, atol=1e-5)
    # the threshold is a volume: at 5 x 4 x 4 mm (80 mm^3 a voxel) the 5-voxel lesion (400 mm^3) gets an anchor
    coarse = compute_anchors(logits, emb, tiny(spacing=(5.0, 4.0, 4.0)))
    assert coarse.counts() == [5] and torch.equal(coarse.masks[0][4], lab == 8)
    # no stuff anchors without lesion_stuff_targets; the cap keeps the largest lesion
    a = compute_anchors(logits, emb, tiny(lesion_stuff_targets=False, anchor_max_lesions=1))
    assert a.counts() == [1] and torch.equal(a.masks[0][0], lab == 7)
    # nothing at all -> no anchors
    a = compute_anchors(logits, emb, tiny(lesion_stuff_targets=False, anchor_threshold=1.1))
    assert a.counts() == [0] and a.vectors[0].shape == (0, 32) and a.masks[0].shape == (0, *lab.shape)


def _branch_inputs(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = cfg.model
    mask_features = torch.randn(b, m.hidden_dim, 8, 32, 32, generator=g)
    levels = [torch.randn(b, m.hidden_dim, *s, generator=g) for s in ((2, 2, 2), (4, 4, 4), (8, 8, 8))]
    return levels, mask_features


def test_padding_and_fully_blocked_rows_give_no_nan(monkeypatch):
    """Different anchor counts per image (padding rows) and every attention row blocked (pitfall 1)."""
    torch.manual_seed(0)
    cfg = tiny()
    branch = LesionBranch(cfg.model)
    levels, feats = _branch_inputs(cfg)
    m = cfg.model.hidden_dim
    anchors = AnchorSet(vectors=[torch.zeros(0, m), torch.randn(3, m)], masks=[], kinds=[
        torch.zeros(0, dtype=torch.long), torch.tensor([1, 2, 2])], labels=[])
    monkeypatch.setattr(LesionBranch, "attn_mask", lambda self, e, f, size, r=None: torch.ones(
        e.shape[0] * self.num_heads, e.shape[1], math.prod(size), dtype=torch.bool))
    out = branch(levels, feats, anchors)
    assert out["query_padding_mask"].tolist() == [[False] * 8 + [True] * 3, [False] * 11]
    assert out["query_kind"][0, 8:].tolist() == [-1] * 3 and out["query_kind"][1, 8:].tolist() == [1, 2, 2]
    for s in [out, *out["aux_outputs"]]:
        assert torch.isfinite(s["pred_logits"]).all() and torch.isfinite(s["pred_mask_embed"]).all()
    out["pred_logits"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in branch.parameters() if p.grad is not None)


def test_fp32_attention_under_autocast():
    """D4: attention maths run in fp32 even under low-precision autocast; outputs stay finite."""
    torch.manual_seed(0)
    cfg = tiny()
    branch = LesionBranch(cfg.model)
    levels, feats = _branch_inputs(cfg)
    mha = branch.layers[0].cross
    m = cfg.model.hidden_dim
    q, k = torch.randn(2, 5, m), torch.randn(2, 7, m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention(mha, q, k, k, fp32=True).dtype == torch.float32
        assert attention(mha, q, k, k, fp32=False).dtype == torch.bfloat16
        out = branch(levels, feats, None)
    assert torch.isfinite(out["pred_logits"].float()).all()


def test_d6_mask_logits_from_features_equal_resized_full_logits():
    """D6: emb . resize(P) == resize(emb . P) for trilinear (linear) interpolation."""
    torch.manual_seed(0)
    emb = torch.randn(2, 11, 32)
    feats = torch.randn(2, 32, 8, 32, 32)
    for size in ((2, 2, 2), (4, 8, 8), (8, 8, 8), (8, 32, 32)):
        a = level_mask_logits(emb, feats, size, from_features=True)
        b = level_mask_logits(emb, feats, size, from_features=False)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # whole branch: both paths give the same outputs
    cfg_a, cfg_b = tiny(), tiny(mask_logits_from_features=False)
    ba, bb = LesionBranch(cfg_a.model), LesionBranch(cfg_b.model)
    bb.load_state_dict(ba.state_dict())
    levels, feats = _branch_inputs(cfg_a)
    oa, ob = ba(levels, feats, None), bb(levels, feats, None)
    torch.testing.assert_close(oa["pred_logits"], ob["pred_logits"], rtol=1e-4, atol=1e-4)


def test_position_encoding():
    assert axis_channels(64) == (20, 22, 22) and axis_channels(32) == (8, 12, 12)
    pe = sine_position_encoding_3d((3, 4, 5), 64)
    assert pe.shape == (64, 3, 4, 5)
    # z block: channel 0 = sin(pos_z), channel 1 = cos(pos_z); x block starts at 20 + 22
    pos_z = torch.arange(1, 4) / (3 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pe[0, :, 0, 0], pos_z.sin())
    torch.testing.assert_close(pe[1, :, 0, 0], pos_z.cos())
    pos_x = torch.arange(1, 6) / (5 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pe[42 + 2, 0, 0, :], (pos_x / 10000 ** (2 / 22)).sin())
    assert torch.equal(pe[42:, 0, 0], pe[42:, 2, 3])  # x channels do not depend on z, y


def test_mask_logits_and_semantic_inference():
    torch.manual_seed(0)
    out = {"pred_mask_embed": torch.randn(2, 11, 32), "mask_features": torch.randn(2, 32, 4, 8, 8),
           "pred_logits": torch.randn(2, 11, 16), "query_padding_mask": torch.zeros(2, 11, dtype=torch.bool)}
    full = torch.einsum("bqm,bmdhw->bqdhw", out["pred_mask_embed"], out["mask_features"])
    torch.testing.assert_close(mask_logits(out, chunk=3), full)
    torch.testing.assert_close(mask_logits(out, index=[0, 5]), full[:, [0, 5]])
    out["query_padding_mask"][0, 9:] = True
    probs = semantic_inference(out, chunk=4)
    assert probs.shape == (2, 15, 4, 8, 8)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 4, 8, 8))
    # padded queries contribute nothing
    ref = semantic_inference({**out, "pred_logits": out["pred_logits"][:, :9],
                              "pred_mask_embed": out["pred_mask_embed"][:, :9],
                              "query_padding_mask": out["query_padding_mask"][:, :9]})
    torch.testing.assert_close(probs[0], ref[0])
    pix = semantic_inference({"pixel_logits": torch.randn(1, 15, 4, 8, 8)})
    torch.testing.assert_close(pix.sum(1), torch.ones(1, 4, 8, 8))


def test_extract_lesions():
    spacing = (2.0, 1.0, 1.0)  # 2 mm^3 per voxel
    lab = np.zeros((10, 40, 40), dtype=np.uint8)
    lab[1:9, 2:25, 2:25] = 1  # liver
    lab[2:5, 5:10, 5:10] = 7  # 75 vox = 150 mm^3, inside the liver
    lab[5:7, 12:17, 12:15] = 11  # 30 vox of label 11 + 40 vox of label 13 -> one lesion, majority 13
    lab[5:7, 12:17, 15:19] = 13
    lab[6:8, 18:20, 20:23] = 9  # 12 vox = 24 mm^3 < 25: dropped
    lab[2:6, 30:35, 30:35] = 8  # 100 vox, 5+ mm from the liver: dropped
    probs = np.eye(15, dtype=np.float32)[lab].transpose(3, 0, 1, 2)
    recs, inst = label_lesions(lab, probs, spacing)
    assert len(recs) == 2
    assert [r["label"] for r in recs] == [7, 13]
    assert [r["volume_mm3"] for r in recs] == [150.0, 140.0]
    assert recs[0]["bbox"] == (2, 5, 5, 5, 10, 10) and recs[0]["centroid"] == (3.0, 7.0, 7.0)
    assert recs[0]["probability"] == pytest.approx(1.0) and recs[0]["type_probs"]["hcc"] == pytest.approx(1.0)
    assert recs[1]["type_probs"]["cyst"] == pytest.approx(40 / 70)
    assert recs[0]["radius_mm"] == pytest.approx((3 * 150 / (4 * math.pi)) ** (1 / 3))
    assert set(np.unique(inst)) == {0, 1, 2} and (inst == 1).sum() == 75
    # the far lesion is kept without the liver-distance test; tie -> smaller label
    assert len(extract_lesions(lab, None, spacing, max_liver_distance_mm=None)) == 3
    tie = np.zeros((4, 8, 8), dtype=np.uint8)
    tie[1:3, 2:4, 2:4] = 12
    tie[1:3, 2:4, 4:6] = 10
    (rec,) = extract_lesions(tie, None, (5.0, 1.0, 1.0), max_liver_distance_mm=3.0)  # no liver: test skipped
    assert rec["label"] == 10 and rec["probability"] == 1.0 and len(rec["type_probs"]) == len(LESION_LABELS)
    assert rec["type_probs"]["fnh"] == rec["type_probs"]["hepatoblastoma"] == 0.5


def test_gate_lesions_keeps_what_the_pixel_branch_also_sees():
    from plan_lite.model.postprocess import gate_lesions

    lab = np.zeros((4, 10, 10), dtype=np.uint8)
    lab[1:3, 1:4, 1:4] = 7  # lesion 1
    lab[1:3, 6:9, 6:9] = 8  # lesion 2
    pixel = np.zeros(lab.shape, np.float32)
    pixel[1, 2, 2] = 0.9  # the pixel branch sees lesion 1 at one voxel only ...
    pixel[1:3, 6:9, 6:9] = 0.15  # ... and lesion 2 weakly everywhere
    for thr, kept in ((0.0, [1, 2]), (0.1, [1, 2]), (0.2, [1]), (0.95, [])):
        recs, inst = label_lesions(lab, None, (1.0, 1.0, 1.0), min_volume_mm3=1, max_liver_distance_mm=None)
        out = gate_lesions(inst, recs, torch.from_numpy(pixel), thr)
        assert [r["id"] for r in out] == kept
        assert [r["pixel_probability"] for r in recs] == pytest.approx([0.9, 0.15])  # the maximum, on every record
        assert set(np.unique(inst)) == {0, *kept}  # dropped lesions leave the instance map


def test_no_lesion_patient_scores_rank_by_the_pixel_branch_inside_the_liver():
    """A case without lesions (``patient_no_lesion="pixel"``): each patient output is 1 % of the highest summed
    pixel probability of its labels inside the region; evidence outside the region does not count."""
    from plan_lite.labels import PATIENT_GROUPS
    from plan_lite.model.postprocess import NO_LESION_SCALE, no_lesion_patient_scores

    pix = np.zeros((len(LESION_LABELS), 4, 6, 6), np.float32)
    pix[0, 1, 2, 2] = 0.6  # hcc (7), inside the liver
    pix[6, 1, 2, 2] = 0.3  # cyst (13), same voxel
    pix[1, 3, 5, 5] = 0.9  # icc (8), outside the liver
    liver = np.zeros((4, 6, 6), bool)
    liver[:3, :4, :4] = True
    groups = PATIENT_GROUPS["paper"]
    names = [n for n, _ in groups]
    got = dict(zip(names, no_lesion_patient_scores(pix, liver, groups)))
    assert got["any_tumor"] == pytest.approx(NO_LESION_SCALE * 0.9)  # 0.6 + 0.3 at one voxel
    assert got["malignant"] == pytest.approx(NO_LESION_SCALE * 0.6) and got["type_icc"] == 0.0
    assert got["benign"] == pytest.approx(NO_LESION_SCALE * 0.3)
    everywhere = dict(zip(names, no_lesion_patient_scores(pix, None, groups)))
    assert everywhere["type_icc"] == pytest.approx(NO_LESION_SCALE * 0.9)
    assert max(got.values()) <= NO_LESION_SCALE


def test_lesion_patient_scores_take_the_best_lesion_weighted_by_its_type_share():
    """``patient_readout="lesion"``: each output is the highest, over the lesions, of the lesion's probability times
    the share of its type probabilities on the output's labels; outputs no lesion speaks for score 0."""
    from plan_lite.labels import PATIENT_GROUPS
    from plan_lite.model.postprocess import lesion_patient_scores

    recs = [{"label": 7, "probability": 0.8, "type_probs": {"hcc": 0.6, "cyst": 0.2}},  # 75 % hcc, 25 % cyst
            {"label": 13, "probability": 0.4, "type_probs": {"cyst": 0.5}}]
    groups = PATIENT_GROUPS["paper"]
    got = dict(zip([n for n, _ in groups], lesion_patient_scores(recs, groups)))
    assert got["any_tumor"] == pytest.approx(0.8)  # the best lesion, whatever its type
    assert got["malignant"] == pytest.approx(0.8 * 0.75) and got["type_hcc"] == pytest.approx(0.6)
    assert got["type_cyst"] == pytest.approx(0.4)  # the cyst (0.4 x 1) beats the hcc's cyst share (0.8 x 0.25)
    assert got["benign"] == pytest.approx(0.4) and got["type_icc"] == 0.0
    code = dict(zip([n for n, _ in PATIENT_GROUPS["code"]], lesion_patient_scores(recs[1:], PATIENT_GROUPS["code"])))
    assert code["any_tumor"] == 0.0  # the official groups leave cysts out of "any tumour"
    assert lesion_patient_scores([], groups) == [0.0] * len(groups)


def test_retype_lesions_takes_each_lesions_type_from_the_chosen_source():
    from plan_lite.model.postprocess import retype_lesions

    lab = np.zeros((4, 10, 10), dtype=np.uint8)
    lab[1:3, 1:4, 1:4] = 7  # lesion 1: 18 voxels, 12 hcc (7) + 6 cyst (13) by the queries
    lab[1:3, 1:4, 3] = 13
    lab[1:3, 6:9, 6:9] = 8  # lesion 2: 18 voxels of icc (8)
    first = min(LESION_LABELS)
    query = np.zeros((8, *lab.shape), np.float32)
    for k in LESION_LABELS:
        query[k - first][lab == k] = 0.6
    query[13 - first][lab == 7] = 0.3  # hcc voxels are unsure between hcc and cyst
    pixel = np.zeros_like(query)
    pixel[13 - first][lab > 0] = 0.5  # the pixel branch says cyst everywhere, weakly ...
    pixel[8 - first][lab == 8] = 0.9  # ... except on lesion 2, which it calls icc strongly
    results = {}
    for source in ("query", "pixel", "fused"):
        out = lab.copy()
        recs, inst = label_lesions(out, None, (1.0, 1.0, 1.0), min_volume_mm3=1, max_liver_distance_mm=None)
        before = [r["probability"] for r in recs]
        retype_lesions(out, inst, recs, query, pixel, source)
        assert [r["probability"] for r in recs] == before  # the detection score is not touched
        assert ((out > 0) == (lab > 0)).all()  # nor which voxels are lesions
        results[source] = out, recs
    q, _ = results["query"]
    assert (q == lab).all()  # query: the per-voxel types stand (two types inside lesion 1)
    p, precs = results["pixel"]
    assert set(np.unique(p[inst == 1])) == {13} and set(np.unique(p[inst == 2])) == {8}
    assert precs[0]["type_name"] == "cyst" and precs[0]["type_probs"]["cyst"] == pytest.approx(1.0)
    f, frecs = results["fused"]
    # lesion 1: query mean hcc 0.4, cyst 0.4 -> normalised 0.5 / 0.5; pixel cyst 1.0 -> fused cyst 0.75
    assert set(np.unique(f[inst == 1])) == {13}
    assert frecs[0]["type_probs"]["cyst"] == pytest.approx(0.75)
    assert frecs[1]["label"] == 8 and sum(frecs[1]["type_probs"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lesion type source"):
        retype_lesions(lab.copy(), inst, recs, query, pixel, "vote")


def test_decide_labels_merged_vs_argmax():
    """Lesion probability split over types: argmax keeps liver, "merged" calls a lesion of the best type;
    a voxel where liver beats the summed lesion probability stays liver under both rules."""
    from plan_lite.model.postprocess import decide_labels

    p = np.zeros((15, 1, 1, 3), np.float32)
    p[1, 0, 0, 0], p[7, 0, 0, 0], p[8, 0, 0, 0], p[9, 0, 0, 0] = 0.4, 0.25, 0.2, 0.15  # lesion 0.6 > liver 0.4
    p[1, 0, 0, 1], p[7, 0, 0, 1], p[12, 0, 0, 1] = 0.6, 0.3, 0.1  # liver wins
    p[0, 0, 0, 2], p[2, 0, 0, 2], p[13, 0, 0, 2] = 0.3, 0.35, 0.35  # tie lesion vs best stuff: not a lesion
    assert decide_labels(p, "argmax").ravel().tolist() == [1, 1, 2]
    assert decide_labels(torch.from_numpy(p), "merged").ravel().tolist() == [7, 1, 2]
    with pytest.raises(ValueError, match="lesion_decision"):
        decide_labels(p, "vote")


def _crafted_queries(head: int = 16):
    """Three queries over a (1, 1, 10) line of voxels, mask features = identity (mask logit = embedding value).

    q0: a confident HCC (label 7) covering voxels 0-3; q1: a confident cyst (label 13) covering voxels 3-6, with
    a higher mask probability at voxel 3; q2: a mask at voxels 7-9 but most probably no-object. ``head``: 16
    classes (15 + no-object) or 9 (C + 1).
    """
    n = 10
    feats = torch.eye(n)[None].reshape(1, n, 1, 1, n)  # channel i = indicator of voxel i
    emb = torch.full((1, 3, n), -6.0)
    emb[0, 0, 0:4] = 4.0
    emb[0, 1, 3:7] = 4.0
    emb[0, 1, 3] = 6.0
    emb[0, 2, 7:10] = 4.0
    first = 7 if head == 16 else 0
    logits = torch.full((1, 3, head), -5.0)
    logits[0, 0, first + 0] = 5.0  # hcc
    logits[0, 1, first + 6] = 5.0  # cyst (label 13)
    logits[0, 2, -1] = 5.0  # no-object
    logits[0, 2, first + 2] = 3.0
    return {"pred_logits": logits, "pred_mask_embed": emb, "mask_features": feats,
            "query_padding_mask": torch.zeros(1, 3, dtype=torch.bool),
            "pixel_logits": torch.zeros(1, 15, 1, 1, n)}


@pytest.mark.parametrize("head", [16, 9])
def test_instance_inference_paints_kept_queries_by_score(head):
    """Mask2Former instance inference: a score per query (lesion probability x mask quality), queries kept
    above the threshold and only when a lesion beats every other class, voxels painted by score x mask."""
    from plan_lite.model.postprocess import INSTANCE_CHANNELS, instance_inference, instance_labels

    out = _crafted_queries(head)
    painted = instance_inference(out, score_threshold=0.5)[0, :, 0, 0]  # (10, n)
    assert painted.shape == (INSTANCE_CHANNELS, 10)
    cover, score, types = painted[-1], painted[-2], painted[:8]
    assert cover.tolist() == [1.0] * 7 + [0.0] * 3  # q2 (no-object wins) paints nothing
    assert types[:, :3].argmax(0).tolist() == [0, 0, 0] and types[:, 4:7].argmax(0).tolist() == [6, 6, 6]
    assert types[:, 3].argmax().item() == 6  # overlap at voxel 3: q1's larger mask probability wins
    q0 = torch.softmax(out["pred_logits"][0, 0], -1)[(7 if head == 16 else 0):][:8].sum()
    assert score[0].item() == pytest.approx(q0.item() * torch.sigmoid(torch.tensor(4.0)).item(), rel=1e-4)
    assert (instance_inference(out, score_threshold=0.99)[0, -1] == 0).all()  # nothing passes a high threshold
    stuff = torch.zeros(15, 1, 1, 10)
    stuff[1] = 1.0  # liver everywhere else
    label, sc, tp = instance_labels(stuff, painted[:, None, None])
    assert label[0, 0].tolist() == [7, 7, 7, 13, 13, 13, 13, 1, 1, 1]
    assert sc[0, 0, 7:].tolist() == [0.0, 0.0, 0.0] and sc[0, 0, 0] > 0.9
    # stitched coverage below one half (most windows did not paint the voxel) is not a lesion
    half = painted.clone() * 0.4
    assert (instance_labels(stuff, half[:, None, None])[0] == 1).all()


def test_panoptic_painting_lets_stuff_queries_compete_and_overlap_threshold_drops_covered_queries():
    """``paint="panoptic"`` (Mask2Former's panoptic inference): a confident stuff query wins the voxels where its
    score x mask probability beats a lesion query's; ``overlap_threshold``: a lesion query left with under that
    fraction of its mask paints nothing (its voxels are not handed to another query)."""
    from plan_lite.model.postprocess import instance_inference

    out = _crafted_queries(16)
    out["pred_mask_embed"] = torch.cat([out["pred_mask_embed"], torch.full((1, 1, 10), -6.0)], 1)
    out["pred_mask_embed"][0, 3, 5:10] = 8.0  # q3: a confident liver query over voxels 5-9
    liver = torch.full((1, 1, 16), -5.0)
    liver[0, 0, 1] = 5.0
    out["pred_logits"] = torch.cat([out["pred_logits"], liver], 1)
    out["query_padding_mask"] = torch.zeros(1, 4, dtype=torch.bool)

    def cover(**kw):
        return instance_inference(out, score_threshold=0.5, **kw)[0, -1, 0, 0].tolist()

    assert cover() == [1.0] * 7 + [0.0] * 3  # lesion painting: the stuff query does not take part
    assert cover(paint="panoptic") == [1.0] * 5 + [0.0] * 5  # q1 loses voxels 5-6 to the liver query
    # panoptic: q0 keeps 3 of its 4 mask voxels (q1 wins voxel 3), q1 keeps 2 of 4 (voxels 3 and 4)
    assert cover(paint="panoptic", overlap_threshold=0.7) == [1.0] * 3 + [0.0] * 7
    assert cover(paint="panoptic", overlap_threshold=0.8) == [0.0] * 10
    assert cover(paint="panoptic", overlap_threshold=0.4) == cover(paint="panoptic")
    assert cover(overlap_threshold=0.8) == [0.0] * 3 + [1.0] * 4 + [0.0] * 3  # lesion painting: q1 keeps 4 of 4
    assert cover(overlap_threshold=0.7) == cover()
    with pytest.raises(ValueError, match="paint"):
        instance_inference(out, paint="semantic")


def test_c_plus_one_head_without_stuff_targets():
    """``lesion_stuff_targets=False`` is the paper's C + 1 head: 9 class logits, lesion-only targets, a loss that
    trains, and a label map whose background and organs come from the pixel branch."""
    from plan_lite.losses import PlanCriterion

    cfg = tiny(lesion_stuff_targets=False)
    model = PLAN(cfg)
    assert model.lesion.class_embed.out_features == 9
    torch.manual_seed(0)
    x = torch.randn(1, 3, *SMALL)
    labels = torch.zeros(1, *SMALL, dtype=torch.long)
    labels[0, 2:6, 10:30, 10:30] = 1
    labels[0, 3:5, 14:20, 14:20] = 9
    out = model(x, stage=2)
    assert out["pred_logits"].shape[-1] == 9
    losses = PlanCriterion(cfg)(out, {"labels": labels}, stage=2)
    assert torch.isfinite(losses["total"]) and losses["loss_class"] > 0
    losses["total"].backward()
    assert model.lesion.class_embed.weight.grad.abs().sum() > 0
    probs = semantic_inference({k: v.detach() if torch.is_tensor(v) else v for k, v in out.items()})
    assert probs.shape == (1, 15, *SMALL)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, *SMALL))
    crafted = _crafted_queries(9)
    crafted["pixel_logits"][0, 1] = 5.0  # the pixel branch says liver
    p = semantic_inference(crafted)[0, :, 0, 0]
    assert p[:, 8:].argmax(0).eq(1).all()  # voxels without a lesion query: the pixel branch's liver
    assert p[:, 0].argmax().item() == 7  # q0's HCC
