"""Losses: matcher, point sampling / FES, pixel DC+CE, consistency, criterion switches.

See book/design_decisions.md#dd-architecture.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plan_lite.config import VARIANTS, get_preset
from plan_lite.losses import (
    HungarianMatcher,
    PixelDiceCELoss,
    PlanCriterion,
    build_targets,
    consistency_loss,
    fes_points,
    hungarian_match,
    importance_points,
    point_sample,
    soft_patient_labels,
)
from plan_lite.losses.matcher import point_mask_logits

torch.set_num_threads(2)

B, D, H, W, M, Q = 2, 8, 24, 24, 8, 6


def _cfg(**kw):
    return get_preset("tiny", num_points=256, **kw)


def _labels():
    lab = torch.zeros(B, D, H, W, dtype=torch.long)
    lab[:, 1:7, 4:20, 4:20] = 1
    lab[0, 2:5, 6:10, 6:10] = 7
    lab[0, 3:6, 14:18, 14:18] = 7
    lab[1, 2:4, 10:14, 10:14] = 9
    lab[1, 0, 0, :4] = 100
    return lab


def _outputs(seed=0, nq=Q, aux=2, pad_last=2):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g).requires_grad_()

    out = {"pixel_logits": r(B, 15, D, H, W), "mask_features": r(B, M, D, H, W), "pred_logits": r(B, nq, 16),
           "pred_mask_embed": r(B, nq, M), "query_padding_mask": torch.zeros(B, nq, dtype=torch.bool),
           "patient_logits": r(B, 11)}
    if pad_last:
        out["query_padding_mask"][1, -pad_last:] = True
    out["aux_outputs"] = [{"pred_logits": r(B, nq, 16), "pred_mask_embed": r(B, nq, M)} for _ in range(aux)]
    return out


def _brute_min(cost: np.ndarray) -> float:
    q, t = cost.shape
    if q >= t:
        return min(sum(cost[p[j], j] for j in range(t)) for p in itertools.permutations(range(q), t))
    return min(sum(cost[i, p[i]] for i in range(q)) for p in itertools.permutations(range(t), q))


# ---------------------------------------------------------------- matcher
@pytest.mark.parametrize("shape", [(3, 3), (5, 3), (3, 5), (6, 4), (1, 4)])
def test_hungarian_match_equals_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.normal(size=shape)
        rows, cols = hungarian_match(cost)
        assert len(rows) == min(shape) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(_brute_min(cost))


def test_matcher_minimises_its_own_cost_and_skips_padding():
    targets = build_targets(_labels(), _cfg())
    out = _outputs()
    matcher = HungarianMatcher(num_points=200)
    idx = matcher(out, targets, out["mask_features"], out["query_padding_mask"])
    for b, (qi, ti) in enumerate(idx):
        nq_valid = Q - (2 if b == 1 else 0)
        cost = matcher.last_costs[b].numpy()
        assert cost.shape == (nq_valid, len(targets[b]["labels"]))
        assert len(qi) == min(cost.shape) and int(qi.max()) < nq_valid
        assert cost[qi.numpy(), ti.numpy()].sum() == pytest.approx(_brute_min(cost), rel=1e-5)


def test_matcher_with_foreground_points_d5():
    targets = build_targets(_labels(), _cfg())
    out = _outputs()
    matcher = HungarianMatcher(num_points=100, fg_points=3)
    idx = matcher(out, targets, out["mask_features"], out["query_padding_mask"])
    for b, (qi, ti) in enumerate(idx):
        cost = matcher.last_costs[b].numpy()
        assert cost[qi.numpy(), ti.numpy()].sum() == pytest.approx(_brute_min(cost), rel=1e-5)


def test_importance_points_pick_uncertain_region():
    """Importance sampling (book/design_decisions.md#dd-fes): 0.75 K points at the most uncertain (|logit| small)
    candidates, 0.25 K fresh uniform."""
    logits = torch.full((2, 1, 8, 16, 16), 10.0)
    logits[:, :, :, :, :4] = 0.0  # a quarter of the volume (x < 0.25) is uncertain
    pts = importance_points(logits, 400, 3.0, 0.75, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (2, 400, 3)
    # uncertain part: mostly the slab (the rest: half-voxel borders, where zero padding lowers |logit|)
    assert float((pts[:, :300, 2] < 0.25 + 1 / 32).float().mean()) > 0.7
    frac_rest = float((pts[:, 300:, 2] < 0.25).float().mean())
    assert 0.1 < frac_rest < 0.45  # fresh uniform points


def test_matcher_cost_terms_by_hand():
    """Cost = 2 * (-p[label]) + 5 * BCE + 5 * Dice with one target covering the whole volume
    (book/design_decisions.md#dd-matcher)."""
    logits = torch.tensor([[[2.0, 0.0, 0.0]]])
    emb = torch.tensor([[[1.0]]])
    feats = torch.full((1, 1, 2, 2, 2), 0.5)
    tgt = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 2, 2, 2, dtype=torch.bool),
            "is_thing": torch.tensor([True])}]
    m = HungarianMatcher(num_points=50)
    m({"pred_logits": logits, "pred_mask_embed": emb}, tgt, feats)
    # interior points see 1; points within half a voxel of the border see less (zero padding) -> check bounds
    p1 = torch.softmax(logits[0, 0], -1)[1]
    c = float(m.last_costs[0])
    s = torch.sigmoid(torch.tensor(0.5))
    lower = -2 * p1 + 5 * F.softplus(torch.tensor(-0.5)) + 5 * (1 - (2 * 50 * s + 1) / (50 * s + 50 + 1))
    assert c >= float(lower) - 1e-5 and c < float(lower) + 3.0


def test_matcher_nan_safe():
    targets = build_targets(_labels(), _cfg())
    out = _outputs()
    with torch.no_grad():
        out["pred_logits"][0, 0, 3] = float("inf")
        out["pred_logits"][0, 1, :] = float("nan")
        out["pred_mask_embed"][1, 0, :] = float("inf")
        out["pred_mask_embed"][1, 1, 0] = float("-inf")
    idx = HungarianMatcher(num_points=100)(out, targets, out["mask_features"], out["query_padding_mask"])
    for b, (qi, _) in enumerate(idx):
        assert len(qi) == min(Q - (2 if b else 0), len(targets[b]["labels"]))
    assert hungarian_match(np.array([[np.nan, np.inf], [-np.inf, 1.0]]))[0].tolist() == [0, 1]


def test_d6_feature_path_equals_full_logits():
    """D6: dot(embedding, sampled features) == sampled full-resolution mask logits."""
    out = _outputs()
    full = torch.einsum("bqm,bmdhw->bqdhw", out["pred_mask_embed"], out["mask_features"])
    coords = torch.rand(3, 50, 3)
    q = torch.tensor([0, 2, 5])
    a = point_mask_logits(out, out["mask_features"], 1, q, coords)
    b = point_mask_logits({"pred_masks": full}, None, 1, q, coords)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_criterion_point_paths_agree():
    """D6: point losses from sampled features == from full-resolution logits (same random points)."""
    res = {}
    for path in ("features", "logits"):
        crit = PlanCriterion(_cfg(), generator=torch.Generator().manual_seed(5))
        crit.point_path = path
        out = _outputs()
        losses = crit(out, {"labels": _labels()})
        losses["total"].backward()
        res[path] = (losses, out["mask_features"].grad)
    for k in res["features"][0]:
        torch.testing.assert_close(res["features"][0][k], res["logits"][0][k], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res["features"][1], res["logits"][1], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- point sampling
def test_point_sample_axis_order():
    vol = torch.zeros(1, 1, 4, 6, 8)
    for z, y, x in [(1, 2, 5), (3, 0, 7), (0, 5, 0)]:
        vol[0, 0, z, y, x] = 1
    shape = torch.tensor([4.0, 6.0, 8.0])
    pts = (torch.tensor([[1, 2, 5], [3, 0, 7], [0, 5, 0], [5 % 4, 1, 2], [2, 5, 1]]).float() + 0.5) / shape
    vals = point_sample(vol, pts[None])[0, 0]  # exact up to fp32 rounding of (i + 0.5) / S
    torch.testing.assert_close(vals, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    # the transposed coordinate must miss
    swapped = (torch.tensor([[5, 2, 1]]).float() + 0.5) / torch.tensor([8.0, 6.0, 4.0])
    assert float(point_sample(vol, swapped.flip(-1)[None])[0, 0, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(point_sample(vol, swapped[None])[0, 0, 0]) == 0.0


@pytest.mark.parametrize("lesion", ["one_voxel", "cube27"])
def test_fes_guarantees_foreground_points_importance_does_not(lesion):
    """Sec. 2.2 FES; pitfall 7 (book/design_decisions.md#dd-pitfalls): 12,544 points in 24 x 256 x 256 rarely
    touch a tiny lesion."""
    shape = (24, 256, 256)
    mask = torch.zeros(shape, dtype=torch.bool)
    if lesion == "one_voxel":
        mask[12, 100, 150] = True
    else:
        mask[11:14, 99:102, 149:152] = True
    n, k = 3, 12544
    g = torch.Generator().manual_seed(0)
    logits = 0.01 * torch.randn(1, 1, *shape, generator=g)  # uniform-ish prediction
    imp = importance_points(logits, k, 3.0, 0.75, generator=g)
    assert imp.shape == (1, k, 3)
    fg_imp = (point_sample(mask[None, None].float(), imp)[0, 0] > 0.5).sum()
    assert int(fg_imp) < n
    pts = fes_points(mask, n, "center", g)
    assert pts.shape == (n, 3)
    vox = (pts * torch.tensor(shape)).floor().long()
    assert bool(mask[vox[:, 0], vox[:, 1], vox[:, 2]].all())
    vals = point_sample(mask[None, None].float(), pts[None])[0, 0]
    torch.testing.assert_close(vals, torch.ones(n), atol=1e-6, rtol=0)


def test_fes_code_norm_is_off_at_the_border():
    """Pitfall 6 (book/design_decisions.md#dd-pitfalls): i / (S - 1) with align_corners=False lands half a voxel
    outside at index 0."""
    mask = torch.zeros(24, 32, 32, dtype=torch.bool)
    mask[0, 0, 0] = True
    vol = mask[None, None].float()
    centre = point_sample(vol, fes_points(mask, 3, "center")[None])[0, 0]
    code = point_sample(vol, fes_points(mask, 3, "code")[None])[0, 0]
    torch.testing.assert_close(centre, torch.ones(3), atol=1e-6, rtol=0)
    assert bool((code < 1).all()) and float(code.max()) == pytest.approx(0.125)


def test_fes_padding_modes():
    mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    mask[2, 3, 4] = True
    g = torch.Generator().manual_seed(1)
    rep = fes_points(mask, 5, "center", g, pad="repeat")
    assert float(point_sample(mask[None, None].float(), rep[None]).min()) == pytest.approx(1.0, abs=1e-6)
    rnd = fes_points(mask, 5, "center", g, pad="random")
    assert rnd.shape == (5, 3) and bool(((rnd > 0) & (rnd < 1)).all())
    assert fes_points(torch.zeros(4, 4, 4, dtype=torch.bool), 2).shape == (2, 3)


# ---------------------------------------------------------------- targets / pixel / patient
def test_build_targets_18_connectivity_stuff_and_ignore():
    lab = torch.zeros(1, 6, 6, 6, dtype=torch.long)
    lab[0, 1, 1, 1] = lab[0, 1, 2, 2] = 7  # share an edge -> one 18-connected component
    lab[0, 4, 4, 4] = lab[0, 5, 5, 5] = 8  # share a corner only -> two components
    lab[0, 0, 0, 5] = 100
    t = build_targets(lab, _cfg())[0]
    assert t["labels"].tolist() == [0, 7, 8, 8]
    assert t["is_thing"].tolist() == [False, True, True, True]
    assert t["masks"].sum((1, 2, 3)).tolist() == [6 ** 3 - 5, 2, 1, 1]
    assert not bool(t["masks"][:, 0, 0, 5].any())  # ignore voxel is in no target
    t2 = build_targets(lab, _cfg(lesion_stuff_targets=False))[0]
    assert t2["labels"].tolist() == [7, 8, 8]


def test_pixel_loss_matches_monai_and_ignores_label_100():
    from monai.losses import DiceCELoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 15, 4, 8, 8, generator=g)
    lab = torch.randint(0, 15, (2, 4, 8, 8), generator=g)
    ce, dice = PixelDiceCELoss()(logits, lab)
    monai = DiceCELoss(softmax=True, include_background=False, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5,
                       lambda_ce=1.0, lambda_dice=0.0)(logits, lab[:, None])
    torch.testing.assert_close(ce, monai)
    md = DiceCELoss(softmax=True, include_background=False, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5,
                    lambda_ce=0.0, lambda_dice=1.0)(logits, lab[:, None])
    torch.testing.assert_close(dice, md)
    lab_ign = lab.clone()
    lab_ign[:, :, :2] = 100
    a = PixelDiceCELoss()(logits, lab_ign)
    logits2 = logits.clone()
    logits2[:, :, :, :2] = 50 * torch.randn(2, 15, 4, 2, 8, generator=g)
    b = PixelDiceCELoss()(logits2, lab_ign)
    torch.testing.assert_close(a, b)
    perfect = F.one_hot(lab, 15).permute(0, 4, 1, 2, 3).float() * 40
    ce0, d0 = PixelDiceCELoss()(perfect, lab)
    assert float(ce0) < 1e-6 and float(d0) < 1e-3
    allign = torch.full_like(lab, 100)
    ce_e, _ = PixelDiceCELoss()(logits, allign)
    assert float(ce_e) == 0.0


def test_soft_patient_labels():
    lab = torch.zeros(1, 4, 10, 10, dtype=torch.long)
    lab[0, 0, :5, :10] = 13  # 50 voxels of cyst
    lab[0, 1, :10, :10] = 7  # 100 voxels of HCC
    lab[0, 2, 0, :3] = 100
    got = soft_patient_labels(lab, "paper", 100.0)[0].tolist()
    # any, benign, malignant, 8 types (7..14)
    assert got == [1.0, 0.5, 1.0, 1.0, 0, 0, 0, 0, 0, 0.5, 0]
    assert soft_patient_labels(lab, "paper", None)[0].tolist()[1] == 1.0


# ---------------------------------------------------------------- consistency
def test_consistency_loss_by_hand_and_gradient():
    g = torch.Generator().manual_seed(3)
    pl = torch.randn(2, 4, 16, generator=g, requires_grad=True)
    pat = torch.randn(2, 11, generator=g, requires_grad=True)
    pad = torch.tensor([[False] * 4, [False, False, True, True]])
    det = torch.zeros(2, 8)
    for b in range(2):
        for c in range(8):
            det[b, c] = max(float(torch.softmax(pl.detach()[b, q], -1)[7 + c]) for q in range(4) if not pad[b, q])
    cls = torch.sigmoid(pat.detach())[:, 3:11]
    sq = ((det - cls) ** 2)
    hand_sum = 0.1 * 0.5 * 2 * float(sq.sum())
    hand_mean = 0.1 * 0.5 * 2 * float(sq.mean())
    assert consistency_loss(pl, pat, pad, 0.1, "sum").item() == pytest.approx(hand_sum, rel=1e-5)
    assert consistency_loss(pl, pat, pad, 0.1, "mean").item() == pytest.approx(hand_mean, rel=1e-5)
    consistency_loss(pl, pat, pad, 0.1, "sum").backward()
    g1 = (pl.grad.clone(), pat.grad.clone())
    pl.grad = pat.grad = None
    prob = pl.softmax(-1).masked_fill(pad[..., None], 0)
    d = prob.max(1).values[:, 7:15]
    (0.1 * 0.5 * ((d - pat.sigmoid()[:, 3:11]) ** 2).sum()).backward()  # D1 note (book/design_decisions.md#dd-d1)
    torch.testing.assert_close(g1[0], pl.grad)
    torch.testing.assert_close(g1[1], pat.grad)


# ---------------------------------------------------------------- criterion
def test_class_loss_no_object_weight():
    crit = PlanCriterion(_cfg())
    logits = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0))
    pad = torch.tensor([[False, False, False, True]])
    tg = [{"labels": torch.tensor([7])}]
    idx = [(torch.tensor([1]), torch.tensor([0]))]
    got = float(crit.class_loss(logits, idx, tg, pad))
    ls = -logits[0].log_softmax(-1)
    w = torch.tensor([0.1, 1.0, 0.1])
    per = torch.stack([ls[0, 15], ls[1, 7], ls[2, 15]])
    assert got == pytest.approx(float((w * per).sum() / w.sum()), rel=1e-5)
    crit.lc.no_object_weight = 1.0
    assert float(crit.class_loss(logits, idx, tg, pad)) == pytest.approx(float(per.mean()), rel=1e-5)


def test_criterion_full_terms_backward_and_points():
    cfg = _cfg()
    crit = PlanCriterion(cfg)
    out = _outputs()
    losses = crit(out, {"labels": _labels()}, return_points=True)
    expected = {"loss_pixel_ce", "loss_pixel_dice", "loss_class", "loss_mask", "loss_dice", "loss_aux",
                "loss_patient", "loss_consistency", "total"}
    assert set(losses) == expected
    parts = sum(v for k, v in losses.items() if k != "total")
    torch.testing.assert_close(losses["total"], parts)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    for t in (out["pixel_logits"], out["mask_features"], out["pred_logits"], out["pred_mask_embed"],
              out["patient_logits"], out["aux_outputs"][1]["pred_mask_embed"]):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert len(crit.last_indices) == 3
    pairs = crit.last_points["pairs"]
    assert all(p["coords"].shape[1:] == (256, 3) for p in pairs)
    for p in pairs:  # FES on lesion targets only, n = 3, all in the foreground
        things = crit.last_targets[p["batch"]]["is_thing"][p["target_idx"]]
        assert p["n_fes"].tolist() == [3 if t else 0 for t in things.tolist()]
        for row, k in enumerate(p["n_fes"].tolist()):
            assert bool((p["labels"][row, :k] > 1 - 1e-6).all())
    # padded queries are never matched
    assert all(int(q.max()) < Q - 2 for q, _ in (s[1] for s in crit.last_indices))


def test_criterion_switches():
    lab = {"labels": _labels()}
    crit = PlanCriterion(_cfg(fes=False))
    crit(_outputs(), lab, return_points=True)
    assert all(int(p["n_fes"].sum()) == 0 for p in crit.last_points["pairs"])
    m2f = PlanCriterion(_cfg(**VARIANTS["mask2former"]))
    m2f(_outputs(), lab, return_points=True)
    assert all(int(p["n_fes"].sum()) == 0 for p in m2f.last_points["pairs"])
    assert "loss_consistency" not in PlanCriterion(_cfg(consistency=False))(_outputs(), lab)
    pixel = {"loss_pixel_ce", "loss_pixel_dice", "total"}
    assert set(PlanCriterion(_cfg())(_outputs(), lab, stage=1)) == pixel
    only_pix = {k: v for k, v in _outputs().items() if k in ("pixel_logits", "mask_features")}
    assert set(PlanCriterion(_cfg())(only_pix, lab)) == pixel
    no_pat = PlanCriterion(_cfg())(_outputs(), lab, patient_active=False)
    assert "loss_patient" not in no_pat and "loss_consistency" not in no_pat and "loss_class" in no_pat
    assert "loss_aux" not in PlanCriterion(_cfg(deep_supervision=False))(_outputs(), lab)
    given = PlanCriterion(_cfg())(_outputs(), {"labels": _labels(), "patient": torch.zeros(B, 11)})
    assert "loss_patient" in given


def test_num_masks_clamp_without_targets():
    lab = torch.full((B, D, H, W), 100, dtype=torch.long)  # everything ignored -> no targets at all
    crit = PlanCriterion(_cfg())
    out = _outputs()
    losses = crit(out, {"labels": lab})
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    # all queries unmatched -> class loss = CE to no-object
    ls = -out["pred_logits"].log_softmax(-1)[..., 15][~out["query_padding_mask"]]
    assert losses["loss_class"].item() == pytest.approx(2.0 * ls.mean().item(), rel=1e-5)
    losses["total"].backward()
    assert math.isfinite(float(out["pred_logits"].grad.abs().sum()))
