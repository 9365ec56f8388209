"""Pixel-branch loss: nnU-Net DC_and_CE with an ignore label (book/design_decisions.md#dd-dc-ce; Eq. 1 "2 L_pixel").

A reproduction of nnU-Net v2 ``DC_and_CE_loss`` (``MemoryEfficientSoftDiceLoss`` + ``RobustCrossEntropyLoss``),
not MONAI's ``DiceCELoss`` (MONAI has no ignore label). Details:

* CE over voxels whose label is not the ignore label 100, mean over those voxels (0 if there are none);
* soft Dice on softmax probabilities, background channel excluded (do_bg = False), smooth 1e-5 on numerator
  and denominator, dc = (2 I + s) / max(sum gt + sum pred + s, 1e-8), per sample and class (per class over the
  whole batch if ``batch_dice``), then the mean; ignore voxels are masked out of I, sum gt and sum pred;
* the Dice term is reported as **1 - mean dc** (MONAI convention, >= 0) instead of nnU-Net's -mean dc: a
  constant offset, identical gradients.

Both terms are computed in fp32 and returned separately; the criterion multiplies each by ``w_pixel`` (= 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plan_lite.labels import IGNORE_LABEL


class PixelDiceCELoss(nn.Module):
    """``forward(logits (B, C, D, H, W), labels (B, D, H, W) long) -> (ce, dice)`` scalar tensors."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, ignore_label: int = IGNORE_LABEL,
                 do_bg: bool = False):
        super().__init__()
        self.batch_dice, self.smooth, self.ignore_label, self.do_bg = batch_dice, smooth, ignore_label, do_bg

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            labels = labels.long()
            valid = labels != self.ignore_label
            tgt = labels.masked_fill(~valid, 0)
            n_valid = valid.sum()
            if n_valid > 0:
                ce = F.cross_entropy(logits, labels, ignore_index=self.ignore_label)
            else:
                ce = logits.sum() * 0.0
            probs = logits.softmax(1) * valid.unsqueeze(1)
            onehot = torch.zeros_like(probs).scatter_(1, tgt.unsqueeze(1), 1.0) * valid.unsqueeze(1)
            if not self.do_bg:
                probs, onehot = probs[:, 1:], onehot[:, 1:]
            axes = tuple(range(2, logits.dim()))
            inter = (probs * onehot).sum(axes)
            sum_pred = probs.sum(axes)
            sum_gt = onehot.sum(axes)
            if self.batch_dice:
                inter, sum_pred, sum_gt = inter.sum(0), sum_pred.sum(0), sum_gt.sum(0)
            dc = (2 * inter + self.smooth) / (sum_gt + sum_pred + self.smooth).clamp_min(1e-8)
            dice = 1.0 - dc.mean()
        return ce, dice


__all__ = ["PixelDiceCELoss"]
