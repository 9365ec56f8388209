"""Hungarian matcher (book/design_decisions.md#dd-matcher; D4, D5, D6; M2F ``matcher.py``, PLAN ``plan/matcher.py``).

Per image and per prediction set, under no_grad and in fp32 (autocast off):

* K uniform random points in [0, 1]^3 shared by all queries and targets (plus, opt-in ``matcher_fg_points``,
  FES points of every lesion target, D5);
* mask logits at the points = pred_mask_embed . mask_features sampled there (D6 exact rewrite: the M-channel
  features are sampled once); targets are sampled at the same points (trilinear -> soft);
* C = w_class * (-softmax(logits)[label]) + w_mask * pairwise BCE (mean over points)
  + w_dice * (1 - (2 sum(sig y) + 1) / (sum sig + sum y + 1));
* NaN -> 0, clamp +-1e10 (D4, pitfall 3), then ``scipy.optimize.linear_sum_assignment``.

Padded queries (``query_padding_mask`` True) never take part; returned query indices are in the padded range.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from plan_lite.labels import lesion_class_ids
from plan_lite.losses.point_sampling import fes_points, point_sample


def hungarian_match(cost: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a (Q, T) cost matrix after NaN -> 0 and clamping to +-1e10 (D4)."""
    c = cost.detach().float().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost, dtype=np.float64)
    c = np.clip(np.nan_to_num(c, nan=0.0, posinf=1e10, neginf=-1e10), -1e10, 1e10)
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)


def point_mask_logits(pred: dict, mask_features: Tensor | None, b: int, query_idx: Tensor, coords: Tensor
                      ) -> Tensor:
    """Mask logits (n, P) of queries ``query_idx`` of image ``b`` at per-query points ``coords`` (n, P, 3).

    D6: sample the M-channel ``mask_features[b]`` at all n * P points once, then dot with the query embeddings
    (exact: sampling is linear). If ``pred`` carries full-resolution ``pred_masks`` (B, Q, D, H, W) those are
    sampled instead (reference path, used by the equivalence test). Gradients flow to both inputs.
    """
    n, p = coords.shape[:2]
    if "pred_masks" in pred:
        vol = pred["pred_masks"][b, query_idx].float().unsqueeze(1)
        return point_sample(vol, coords)[:, 0]
    feats = point_sample(mask_features[b:b + 1].float(), coords.reshape(1, n * p, 3))  # (1, M, n*P)
    feats = feats.view(feats.shape[1], n, p)
    emb = pred["pred_mask_embed"][b, query_idx].float()  # (n, M)
    return torch.einsum("nm,mnp->np", emb, feats)


def shared_point_logits(pred: dict, mask_features: Tensor | None, b: int, query_idx: Tensor, coords: Tensor
                        ) -> Tensor:
    """Mask logits (Q, P) of queries ``query_idx`` of image ``b`` at points ``coords`` (P, 3) shared by all.

    D6: the M-channel features are sampled once at the P points, then one matrix product (fp32).
    """
    if "pred_masks" in pred:
        return point_mask_logits(pred, mask_features, b, query_idx, coords[None].expand(len(query_idx), -1, -1))
    feats = point_sample(mask_features[b:b + 1].float(), coords[None])[0]  # (M, P)
    return pred["pred_mask_embed"][b, query_idx].float() @ feats


def batch_dice_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, P) logits x (T, P) soft targets -> (Q, T) 1 - (2 sum(sig y) + 1) / (sum sig + sum y + 1)."""
    s = logits.sigmoid()
    num = 2 * s @ targets.T
    den = s.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def batch_bce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, P) logits x (T, P) soft targets -> (Q, T) pairwise sigmoid BCE, mean over points."""
    pos = F.softplus(-logits)  # BCE(logit, 1)
    neg = F.softplus(logits)  # BCE(logit, 0)
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


class HungarianMatcher(nn.Module):
    """Hungarian matcher with weights class 2 / mask 5 / dice 5 and K shared uniform points
    (book/design_decisions.md#dd-matcher).

    ``fg_points`` > 0 (``cfg.loss.matcher_fg_points``, D5) adds that many FES points per lesion target to the
    shared points. ``last_costs`` keeps the (Q_valid, T) cost matrices of the last call (for tests/notebooks).
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544, fg_points: int = 0, fg_norm: str = "center"):
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points, self.fg_points, self.fg_norm = num_points, fg_points, fg_norm
        self.last_costs: list[Tensor] = []

    @torch.no_grad()
    def cost_matrix(self, pred: dict, mask_features: Tensor | None, b: int, query_idx: Tensor,
                    target: dict, generator: torch.Generator | None = None) -> Tensor:
        """Total cost (Q_valid, T) for image ``b`` (fp32)."""
        logits = pred["pred_logits"][b, query_idx].float()
        device = logits.device
        masks = target["masks"]
        coords = torch.rand(self.num_points, 3, device=device, generator=generator)
        if self.fg_points > 0:
            extra = [fes_points(masks[t], self.fg_points, self.fg_norm, generator).to(device)
                     for t in range(len(masks)) if bool(target["is_thing"][t])]
            coords = torch.cat([coords, *extra])
        out_mask = shared_point_logits(pred, mask_features, b, query_idx, coords)  # (Q, P)
        coords = coords[None]
        tgt = point_sample(masks.float().unsqueeze(0), coords)[0]  # (T, P)
        prob = logits.softmax(-1)
        c_class = -prob[:, lesion_class_ids(target["labels"], prob.shape[-1] - 1)]
        c_mask = batch_bce_cost(out_mask, tgt)
        c_dice = batch_dice_cost(out_mask, tgt)
        return self.cost_mask * c_mask + self.cost_class * c_class + self.cost_dice * c_dice

    @torch.no_grad()
    def forward(self, pred: dict, targets: list[dict], mask_features: Tensor | None = None,
                query_padding_mask: Tensor | None = None, generator: torch.Generator | None = None
                ) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(query_idx, target_idx)`` long tensors (CPU), query indices in the padded range."""
        out, self.last_costs = [], []
        bsz, nq = pred["pred_logits"].shape[:2]
        device = pred["pred_logits"].device
        with torch.autocast(device_type=device.type, enabled=False):
            for b in range(bsz):
                valid = torch.ones(nq, dtype=torch.bool, device=device) if query_padding_mask is None \
                    else ~query_padding_mask[b].to(device)
                qidx = valid.nonzero()[:, 0]
                nt = len(targets[b]["labels"])
                if nt == 0 or len(qidx) == 0:
                    self.last_costs.append(torch.zeros(len(qidx), nt))
                    out.append((torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
                    continue
                cost = self.cost_matrix(pred, mask_features, b, qidx, targets[b], generator).cpu()
                self.last_costs.append(cost)
                rows, cols = hungarian_match(cost)
                out.append((qidx.cpu()[torch.from_numpy(rows)], torch.from_numpy(cols)))
        return out


__all__ = ["HungarianMatcher", "hungarian_match", "point_mask_logits", "shared_point_logits", "batch_dice_cost", "batch_bce_cost"]
