"""The PLAN network (Fig. 1): backbone + FPN, pixel branch, anchor queries, lesion branch, patient branch.

``PLAN(cfg)(images, stage=2)`` returns the output dict of DESIGN.md. Mask logits are never formed at full
resolution in the forward pass (D6, book/design_decisions.md#dd-d6); ``mask_logits(outputs)`` forms them on demand,
chunked over queries.
"""

from __future__ import annotations

import torch

from plan_lite.model.anchors import AnchorSet, compute_anchors
from plan_lite.model.plan import PLAN


def mask_logits(outputs: dict, index=None, chunk: int = 8, mask_embed: torch.Tensor | None = None,
                mask_features: torch.Tensor | None = None) -> torch.Tensor:
    """Full-resolution mask logits ``einsum("bqm,bmdhw->bqdhw", pred_mask_embed, mask_features)``.

    ``index``: None (all queries) or a sequence / LongTensor of query indices (same for every image).
    ``mask_embed`` / ``mask_features`` override the ones in ``outputs`` (e.g. for an ``aux_outputs`` set).
    Computed in chunks of ``chunk`` queries into one preallocated (B, Q', D, H, W) tensor.
    """
    emb = outputs["pred_mask_embed"] if mask_embed is None else mask_embed
    feats = outputs["mask_features"] if mask_features is None else mask_features
    if index is not None:
        emb = emb[:, torch.as_tensor(index, dtype=torch.long, device=emb.device)]
    dtype = torch.promote_types(emb.dtype, feats.dtype)
    out = feats.new_empty((emb.shape[0], emb.shape[1], *feats.shape[2:]), dtype=dtype)
    for s in range(0, emb.shape[1], chunk):
        out[:, s:s + chunk] = torch.einsum("bqm,bmdhw->bqdhw", emb[:, s:s + chunk].to(dtype), feats.to(dtype))
    return out


__all__ = ["PLAN", "AnchorSet", "compute_anchors", "mask_logits"]
