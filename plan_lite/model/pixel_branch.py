"""Pixel branch (Sec. 2.1; book/design_decisions.md#dd-pixel-branch, PLAN ``plan/seg_head.py``).

Input: the per-voxel embedding P (finest FPN output, M channels, full resolution). One more 3x3x3 conv
(the official FPN's ``mask_features`` conv, M channels, with bias, no norm) followed by a 1x1x1 conv to the
15 semantic classes (labels.py). Trained with nnU-Net's DC + CE (plan_lite.losses).
"""

from __future__ import annotations

import torch
from torch import nn

from plan_lite.model.backbone import c2_xavier_fill


class PixelBranch(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.mask_features = c2_xavier_fill(nn.Conv3d(dim, dim, 3, padding=1))
        self.head = nn.Conv3d(dim, num_classes, 1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, M, D, H, W) -> pixel logits (B, num_classes, D, H, W)."""
        return self.head(self.mask_features(embedding))
