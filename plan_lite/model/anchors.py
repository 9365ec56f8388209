"""Anchor queries (Sec. 2.2; book/design_decisions.md#dd-anchor-queries, #dd-d2; PLAN ``plan/anchor_matcher.py``).

Recomputed every forward pass (training and inference) under ``no_grad``, per image:

1. p = softmax(pixel logits);
2. lesion foreground = sum of p over the lesion labels 7..14 > ``anchor_threshold`` (0.1, a soft threshold);
3. 3D connected components (``anchor_connectivity`` = 18, cc3d on CPU, pitfall 10);
4. keep components larger than ``anchor_min_volume_mm3`` (24.5 mm^3: 10 voxels at 0.7 x 0.7 x 5 mm), at most the ``anchor_max_lesions`` (20) largest;
5. with ``lesion_stuff_targets`` (D2): one stuff anchor per non-lesion label 0..6 present in the argmax;
6. anchor vector = mean of the **detached** embedding P inside the region (M-d, no projection).

If no region qualifies the image simply has no anchors (the learned queries remain); the official
``must_have_anchor`` fallback never fires because the background stuff anchor always exists.
Order per image: stuff anchors (ascending label), then lesion anchors (largest first).
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import torch

from plan_lite.labels import LESION_LABELS, STUFF_LABELS

KIND_LEARNED, KIND_STUFF, KIND_LESION, KIND_PADDING = 0, 1, 2, -1


@dataclass
class AnchorSet:
    """Per-image lists: ``vectors`` (A_b, M) float32, ``masks`` bool (A_b, D, H, W), ``kinds`` long (A_b,)
    (1 stuff, 2 lesion), ``labels`` long (A_b,) (stuff label, -1 for lesion anchors)."""

    vectors: list[torch.Tensor]
    masks: list[torch.Tensor]
    kinds: list[torch.Tensor]
    labels: list[torch.Tensor]

    def counts(self) -> list[int]:
        return [int(v.shape[0]) for v in self.vectors]


def _region_means(embedding: torch.Tensor, region_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Mean embedding (n, M) of regions 1..n of an integer map (0 = none). embedding (M, N), ids (N,)."""
    m = embedding.shape[0]
    sums = torch.zeros(m, n + 1, dtype=torch.float32, device=embedding.device)
    sums.index_add_(1, region_ids, embedding.float())
    counts = torch.bincount(region_ids, minlength=n + 1).clamp_min(1).to(sums)
    return (sums / counts)[:, 1:].t()


@torch.no_grad()
def compute_anchors(pixel_logits: torch.Tensor, embedding: torch.Tensor, cfg) -> AnchorSet:
    """Anchor vectors and regions from the pixel branch (book/design_decisions.md#dd-anchor-queries).

    ``cfg``: the PlanConfig (its ``data.spacing`` turns the anchor size threshold from mm^3 into voxels)."""
    m = cfg.model
    min_voxels = cfg.voxels(m.anchor_min_volume_mm3)
    probs = torch.softmax(pixel_logits.detach().float(), dim=1)
    lesion_fg = probs[:, list(LESION_LABELS)].sum(1) > m.anchor_threshold  # (B, D, H, W)
    argmax = probs.argmax(1)
    embedding = embedding.detach()
    out = AnchorSet([], [], [], [])
    for b in range(pixel_logits.shape[0]):
        emb = embedding[b].flatten(1)  # (M, N)
        masks, vecs, kinds, labels = [], [], [], []
        if m.lesion_stuff_targets:
            present = [k for k in STUFF_LABELS if bool((argmax[b] == k).any())]
            if present:
                stuff = torch.stack([argmax[b] == k for k in present])  # disjoint regions
                ids = (stuff.flatten(1).long() * torch.arange(1, len(present) + 1, device=stuff.device)[:, None])
                vecs.append(_region_means(emb, ids.sum(0), len(present)))
                masks.append(stuff)
                kinds += [KIND_STUFF] * len(present)
                labels += present
        cc = cc3d.connected_components(lesion_fg[b].cpu().numpy(), connectivity=m.anchor_connectivity)
        sizes = np.bincount(cc.ravel())
        sizes[0] = 0
        keep = [int(i) for i in np.argsort(-sizes, kind="stable") if sizes[i] > min_voxels]
        keep = keep[: m.anchor_max_lesions]
        if keep:
            remap = np.zeros(len(sizes), dtype=np.int64)
            remap[keep] = np.arange(1, len(keep) + 1)
            ids = torch.from_numpy(remap[cc]).to(emb.device)  # (D, H, W), 1..A largest first
            vecs.append(_region_means(emb, ids.flatten(), len(keep)))
            masks.append(ids[None] == torch.arange(1, len(keep) + 1, device=ids.device)[:, None, None, None])
            kinds += [KIND_LESION] * len(keep)
            labels += [-1] * len(keep)
        dev, shape = embedding.device, tuple(embedding.shape[2:])
        out.vectors.append(torch.cat(vecs) if vecs else embedding.new_zeros(0, embedding.shape[1]).float())
        out.masks.append(torch.cat(masks) if masks else torch.zeros((0, *shape), dtype=torch.bool, device=dev))
        out.kinds.append(torch.tensor(kinds, dtype=torch.long, device=dev))
        out.labels.append(torch.tensor(labels, dtype=torch.long, device=dev))
    return out
