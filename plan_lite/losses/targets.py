"""Lesion-branch targets from a label map (book/design_decisions.md#dd-d2; PLAN prepare_targets_mask2former).

Per image: one semantic "stuff" target per non-lesion label 0-6 present (``cfg.model.lesion_stuff_targets``),
then one "thing" target per lesion instance = 18-connected component of one lesion label 7-14 (cc3d).
Ignore voxels (label 100) belong to no target, so they are negatives for every mask.
"""

from __future__ import annotations

import cc3d
import numpy as np
import torch
from torch import Tensor

from plan_lite.labels import LESION_LABELS, STUFF_LABELS


def build_targets(labels: Tensor, cfg=None, stuff: bool | None = None, connectivity: int | None = None
                  ) -> list[dict[str, Tensor]]:
    """Targets for a batch of label maps (B, D, H, W) long.

    Returns one dict per image: ``labels`` (T,) long class ids, ``masks`` (T, D, H, W) bool (on the labels'
    device), ``is_thing`` (T,) bool. Stuff targets come first (ascending label), then lesion instances in cc3d
    (raster) order. ``stuff`` / ``connectivity`` default to ``cfg.model.lesion_stuff_targets`` /
    ``cfg.model.anchor_connectivity`` (True / 18 without a cfg).
    """
    if stuff is None:
        stuff = cfg.model.lesion_stuff_targets if cfg is not None else True
    if connectivity is None:
        connectivity = cfg.model.anchor_connectivity if cfg is not None else 18
    device = labels.device
    lab_np = labels.detach().to("cpu", torch.int64).numpy()
    lesion_lut = np.zeros(256, dtype=np.uint8)
    lesion_lut[list(LESION_LABELS)] = LESION_LABELS
    out = []
    for b in range(lab_np.shape[0]):
        lab = lab_np[b]
        classes, masks = [], []
        if stuff:
            present = np.unique(lab)
            for k in STUFF_LABELS:
                if k in present:
                    classes.append(k)
                    masks.append(torch.from_numpy(lab == k))
        lesion = lesion_lut[np.clip(lab, 0, 255)] * (lab <= 255)
        n_stuff = len(classes)
        if lesion.any():
            cc = cc3d.connected_components(lesion, connectivity=connectivity)  # multilabel: per label value
            ids, first = np.unique(cc.ravel(), return_index=True)
            keep = ids > 0
            ids, first = ids[keep], first[keep]
            classes += [int(x) for x in lesion.ravel()[first]]
            cc_t = torch.from_numpy(cc.astype(np.int64))
            masks += list(cc_t.unsqueeze(0) == torch.from_numpy(ids.astype(np.int64)).view(-1, 1, 1, 1))
        shape = lab.shape
        m = torch.stack(masks) if masks else torch.zeros((0, *shape), dtype=torch.bool)
        out.append({
            "labels": torch.tensor(classes, dtype=torch.long, device=device),
            "masks": m.to(device),
            "is_thing": torch.arange(len(classes), device=device) >= n_stuff,
        })
    return out


__all__ = ["build_targets"]
