"""End-to-end: the ``tiny`` PLAN overfits one synthetic patch with the full Eq. 1 criterion (paper Sec. 3, implementation details).

A liver-like ellipsoid with two lesions of distinct intensities (HCC bright, cyst dark); Adam lr 2e-3, stage 2
(all branches, patient + consistency on). The patch is 16 x 32 x 32 (not the preset's 96 x 96 in-plane; patient token grid (2, 2, 2) to fit it) to
keep the test CPU-cheap on 2 cores; the model and criterion are the ``tiny`` preset otherwise.
"""

from __future__ import annotations

import time

import pytest
import torch

from plan_lite.config import get_preset

torch.set_num_threads(2)
PATCH = (16, 32, 32)
STEPS = 40
LR = 2e-3  # Adam; 1e-3 (the preset lr) needs ~2x the steps at M = 16


def _case():
    g = torch.Generator().manual_seed(0)
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in PATCH), indexing="ij")
    lab = torch.zeros(PATCH, dtype=torch.long)
    liver = ((z - 8) / 6) ** 2 + ((y - 16) / 12) ** 2 + ((x - 16) / 12) ** 2 <= 1
    lab[liver] = 1
    hcc = ((z - 7) / 2.5) ** 2 + ((y - 11) / 4) ** 2 + ((x - 11) / 4) ** 2 <= 1
    cyst = ((z - 9) / 2.5) ** 2 + ((y - 21) / 4) ** 2 + ((x - 21) / 4) ** 2 <= 1
    lab[hcc] = 7
    lab[cyst] = 13
    means = {0: (-1.0, -1.0, -1.0), 1: (0.5, 0.8, 1.0), 7: (0.6, 2.0, 0.6), 13: (-0.3, -0.2, -0.2)}
    img = torch.zeros(3, *PATCH)
    for k, m in means.items():
        for c in range(3):
            img[c][lab == k] = m[c]
    img += 0.1 * torch.randn(img.shape, generator=g)
    return img[None], lab[None]


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))


@pytest.mark.slow
def test_tiny_plan_overfits_one_case():
    model_mod = pytest.importorskip("plan_lite.model")
    from plan_lite.losses import PlanCriterion
    from plan_lite.model.postprocess import semantic_inference

    torch.manual_seed(0)
    cfg = get_preset("tiny", patch_size=PATCH, patient_token_grid=(2, 2, 2))
    model = model_mod.PLAN(cfg)
    crit = PlanCriterion(cfg, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    img, lab = _case()
    t0 = time.time()
    hist = []
    for _ in range(STEPS):
        out = model(img, stage=2)
        losses = crit(out, {"labels": lab})
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        opt.step()
        hist.append(losses["total"].item())
    seconds = time.time() - t0
    start, end = hist[0], min(hist[-3:])
    print(f"overfit: total loss {start:.3f} -> {end:.3f} in {STEPS} steps, {seconds:.1f} s")
    print("overfit: history " + " ".join(f"{h:.2f}" for h in hist))
    assert end <= 0.65 * start, hist  # measured over seeds 0, 1, 2: 0.44, 0.37, 0.42

    model.eval()
    with torch.no_grad():
        out = model(img, stage=2)
        pred = semantic_inference(out).argmax(1)
    gt_lesion = lab >= 7
    sem_dice = _dice(pred >= 7, gt_lesion)
    # per lesion: the query matched to it (Hungarian, final set) covers it
    losses = crit(out, {"labels": lab})
    q_idx, t_idx = crit.last_indices[0][0]
    tg = crit.last_targets[0]
    masks = torch.einsum("qm,mdhw->qdhw", out["pred_mask_embed"][0], out["mask_features"][0]) > 0
    match_dice = [_dice(masks[q], tg["masks"][t]) for q, t in zip(q_idx.tolist(), t_idx.tolist())
                  if bool(tg["is_thing"][t])]
    print(f"overfit: lesion Dice semantic {sem_dice:.3f}, matched queries {match_dice}")
    assert len(match_dice) == 2
    assert sem_dice > 0.5 or min(match_dice) > 0.5
