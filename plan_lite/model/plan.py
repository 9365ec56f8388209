"""PLAN: Pixel-Lesion-pAtient Network (Fig. 1 of Yan et al., MICCAI 2023).

images -> backbone (encoder + FPN) -> embedding P (finest FPN output)
  -> pixel branch: 3x3x3 conv + 1x1x1 conv -> 15-class pixel logits (Sec. 2.1)
  -> anchor queries from the pixel prediction (Sec. 2.2; book/design_decisions.md#dd-anchor-queries)
  -> lesion branch: Mask2Former decoder over [learned; anchor] queries (Sec. 2.2; book/design_decisions.md#dd-lesion-branch)
  -> patient branch: dual-path memory transformer over encoder/FPN features (Sec. 2.3; book/design_decisions.md#dd-patient-branch)

Baselines are plain switches (``config.VARIANTS``): ``lesion_branch`` off (pixel_only: backbone + pixel branch),
``anchor_queries`` off (no_anchor; with ``patient_branch`` and FES off and query positions on: mask2former).
"""

from __future__ import annotations

import torch
from torch import nn

from plan_lite.config import cumulative_strides, total_stride
from plan_lite.errors import PlanLiteError
from plan_lite.labels import NUM_CLASSES
from plan_lite.model.anchors import compute_anchors
from plan_lite.model.backbone import Backbone
from plan_lite.model.lesion_branch import LesionBranch
from plan_lite.model.patient_branch import PatientBranch
from plan_lite.model.pixel_branch import PixelBranch

PARTS = ("backbone", "pixel", "lesion", "patient")


class PLAN(nn.Module):
    """``PLAN(cfg)(images (B, C, D, H, W), stage=2) -> dict`` (keys: DESIGN.md, ``plan_lite.model``)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        self.backbone = Backbone(m)
        self.pixel = PixelBranch(m.hidden_dim, NUM_CLASSES)
        self.lesion = LesionBranch(m) if m.lesion_branch else None
        self.patient = None
        if m.patient_branch:
            strides = cumulative_strides(cfg)
            chans, kernels = [], []
            for kind, stage in m.patient_sources:
                if kind not in ("enc", "fpn"):
                    raise PlanLiteError(f"config: patient source kind {kind!r} must be 'enc' or 'fpn'")
                size = [p // s for p, s in zip(cfg.train.patch_size, strides[stage])]
                if any(s % g for s, g in zip(size, m.patient_token_grid)):
                    raise PlanLiteError(
                        f"config: patient source {kind}{stage} has size {tuple(size)} for patch_size "
                        f"{cfg.train.patch_size}, not divisible by patient_token_grid {m.patient_token_grid}")
                kernels.append(tuple(s // g for s, g in zip(size, m.patient_token_grid)))
                chans.append(m.stage_widths[stage] if kind == "enc" else m.hidden_dim)
            self.patient = PatientBranch(m, chans, kernels)

    @property
    def total_stride(self) -> tuple[int, int, int]:
        return total_stride(self.cfg)

    def forward(self, images: torch.Tensor, stage: int = 2) -> dict:
        m = self.cfg.model
        if any(s % t for s, t in zip(images.shape[2:], self.total_stride)):
            raise PlanLiteError(f"model: input size {tuple(images.shape[2:])} is not divisible by the total "
                                f"stride {self.total_stride}")
        feats = self.backbone(images)
        embedding = feats["fpn"][0]  # P: finest FPN output, full resolution (book/design_decisions.md#dd-backbone)
        out = {"pixel_logits": self.pixel(embedding), "mask_features": embedding}
        if stage == 1 or self.lesion is None:
            return out
        anchors = compute_anchors(out["pixel_logits"], embedding, self.cfg) if m.anchor_queries else None
        levels = [feats["fpn"][s] for s in m.transformer_levels]
        out.update(self.lesion(levels, embedding, anchors))
        b = images.shape[0]
        if anchors is not None:
            out["num_anchors"] = torch.tensor(anchors.counts(), dtype=torch.long, device=images.device)
            out["anchor_masks"] = anchors.masks
        else:
            out["num_anchors"] = torch.zeros(b, dtype=torch.long, device=images.device)
            out["anchor_masks"] = [torch.zeros((0, *images.shape[2:]), dtype=torch.bool, device=images.device)
                                   for _ in range(b)]
        if self.patient is not None:
            out["patient_logits"] = self.patient(feats)
        return out

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per branch (absent branches count 0) and ``total``."""
        counts = {p: sum(x.numel() for x in getattr(self, p).parameters()) if getattr(self, p) is not None else 0
                  for p in PARTS}
        counts["total"] = sum(counts.values())
        return counts

    def num_parameters(self, part: str | None = None) -> int:
        """Parameters of one branch (``backbone``, ``pixel``, ``lesion``, ``patient``) or of the whole model."""
        if part is not None and part not in PARTS:
            raise PlanLiteError(f"model: unknown part {part!r}; choose from {', '.join(PARTS)}")
        return self.parameter_counts()["total" if part is None else part]
