"""Backbone of Fig. 1: nnU-Net plain-conv encoder + FPN pixel decoder (book/design_decisions.md#dd-backbone).

Encoder (nnU-Net v1 ``Generic_UNet`` encoder): one stage per entry of ``cfg.model.stage_widths``; each
stage is ``convs_per_stage`` x [Conv3d(bias) -> InstanceNorm3d(eps 1e-5, affine) -> LeakyReLU(0.01)];
downsampling is the stride of the stage's first conv (no pooling); padding = kernel // 2; He init a = 1e-2.

FPN ("BasePixelDecoder", PLAN 3D version): top-down from the coarsest stage. The coarsest level is a
3x3x3 conv + IN + ReLU of the bottleneck; every finer level is a 1x1x1 lateral conv + IN of the encoder
output plus the nearest-upsampled coarser output, then a 3x3x3 conv + IN + ReLU. Width M = hidden_dim, no
conv bias, every level output kept. The finest output is the per-voxel embedding P ("mask features",
full resolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def he_init(module: nn.Module) -> None:
    """nnU-Net ``InitWeights_He(1e-2)``: Kaiming-normal (a = 0.01) conv weights, zero biases."""
    if isinstance(module, nn.Conv3d):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def c2_xavier_fill(conv: nn.Conv3d) -> nn.Conv3d:
    """detectron2 ``c2_xavier_fill`` (used by the official FPN): Kaiming-uniform a = 1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ConvNormAct(nn.Sequential):
    """Conv3d -> InstanceNorm3d(affine) -> activation (None = no activation)."""

    def __init__(self, cin, cout, kernel, stride=1, bias=True, act: nn.Module | None = None):
        kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        layers = [nn.Conv3d(cin, cout, kernel, stride, padding=tuple(k // 2 for k in kernel), bias=bias),
                  nn.InstanceNorm3d(cout, eps=1e-5, affine=True)]
        super().__init__(*layers, *([act] if act is not None else []))


class Encoder(nn.Module):
    """nnU-Net plain-conv encoder (book/design_decisions.md#dd-backbone, stage table).

    ``forward`` returns the output of every stage, finest first."""

    def __init__(self, in_channels, widths, strides, kernels, convs_per_stage=2):
        super().__init__()
        self.stages = nn.ModuleList()
        cin = in_channels
        for width, stride, kernel in zip(widths, strides, kernels):
            convs = [ConvNormAct(cin if i == 0 else width, width, kernel, stride if i == 0 else 1,
                                 act=nn.LeakyReLU(1e-2, inplace=True)) for i in range(convs_per_stage)]
            self.stages.append(nn.Sequential(*convs))
            cin = width
        self.apply(he_init)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class FPN(nn.Module):
    """FPN pixel decoder (PLAN ``mask2former/fpn.py``; book/design_decisions.md#dd-backbone): one M-channel output
    per encoder stage."""

    def __init__(self, in_widths, dim):
        super().__init__()
        n = len(in_widths)
        # lateral[i] / output[i] belong to encoder stage i; the coarsest stage has no lateral conv.
        self.lateral = nn.ModuleList(
            [ConvNormAct(w, dim, 1, bias=False) for w in in_widths[:-1]] + [nn.Identity()])
        self.output = nn.ModuleList(
            [ConvNormAct(dim if i < n - 1 else w, dim, 3, bias=False, act=nn.ReLU(inplace=True))
             for i, w in enumerate(in_widths)])
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                c2_xavier_fill(m)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder outputs (finest first) -> FPN outputs at the same resolutions (finest first)."""
        n = len(feats)
        outs: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        y = self.output[-1](feats[-1])
        outs[-1] = y
        for i in range(n - 2, -1, -1):  # top-down
            lat = self.lateral[i](feats[i])
            if y.shape[2:] != lat.shape[2:]:
                y = F.interpolate(y, size=lat.shape[2:], mode="nearest")
            y = self.output[i](lat + y)
            outs[i] = y
        return outs


class Backbone(nn.Module):
    """Encoder + FPN. Returns ``{"enc": [...], "fpn": [...]}``, both indexed by encoder stage."""

    def __init__(self, m):
        super().__init__()
        self.encoder = Encoder(m.in_channels, m.stage_widths, m.stage_strides, m.stage_kernels,
                               m.convs_per_stage)
        self.fpn = FPN(m.stage_widths, m.hidden_dim)

    def forward(self, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        enc = self.encoder(images)
        return {"enc": enc, "fpn": self.fpn(enc)}
