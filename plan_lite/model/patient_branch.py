"""Patient branch (Sec. 2.3): dual-path memory transformer (PLAN ``plan/cls_head.py``).

book/design_decisions.md#dd-patient-branch.

A pre-LN, ViT-style simplification of MaX-DeepLab's dual-path layer: a learned memory
(``patient_memory_tokens`` x ``patient_dim``, N(0, 1)) reads one pixel source per block. Sources are
``cfg.model.patient_sources``: ``("enc", s)`` = encoder output of stage s, ``("fpn", s)`` = FPN output at stage
s. Tokenisation: Conv3d patch embedding with kernel = stride = feature size / ``patient_token_grid`` ->
InstanceNorm3d(affine) -> flatten -> + a learned pixel positional embedding shared by all blocks.

Block: mem += DropPath(Attn(q = LN(mem), k/v = [pixel tokens; LN(mem)])); mem += DropPath(MLP(LN(mem))).
No pixel update (p2m_feedback off); pixel tokens are not LayerNorm'ed. Head: mean over memory -> LN ->
Linear(patient_dim -> 11).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plan_lite.labels import NUM_PATIENT_OUTPUTS


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability p."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class MemoryAttention(nn.Module):
    """Memory queries attend over [pixel tokens; memory] in one softmax (M2P + M2M). Separate bias-free
    projections for pixels (k, v) and memory (q, k, v)."""

    def __init__(self, dim, heads, drop):
        super().__init__()
        self.heads = heads
        self.mem_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.pix_kv = nn.Linear(dim, 2 * dim, bias=False)  # the pixel q would be unused (no pixel update)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, mem, pix):
        b, n, c = mem.shape
        q, k_m, v_m = self.mem_qkv(mem).chunk(3, dim=-1)
        k_p, v_p = self.pix_kv(pix).chunk(2, dim=-1)
        k, v = torch.cat([k_p, k_m], 1), torch.cat([v_p, v_m], 1)
        split = lambda t: t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))  # scale head_dim^-0.5
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class MemoryBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, drop, drop_path_p):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MemoryAttention(dim, heads, drop)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim),
                                 nn.Dropout(drop))
        self.drop_path_p = drop_path_p

    def forward(self, mem, pix):
        mem = mem + drop_path(self.attn(self.norm1(mem), pix), self.drop_path_p, self.training)
        return mem + drop_path(self.mlp(self.norm2(mem)), self.drop_path_p, self.training)


def fit_to_token_grid(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Resample a (B, C, D, H, W) feature map to the ``size`` the patch embedding was built for.

    The patch embedding (kernel = stride = training feature size / ``patient_token_grid``) and the learned
    positional embedding are sized for the training patch. An input of another size (a whole volume, a crop)
    keeps the same token grid: larger maps are average-pooled to ``size`` (each token summarises its share of
    the volume), smaller ones trilinearly interpolated. At the training size this is the identity, so training
    and sliding-window inference are unchanged (a plan-lite extension; the paper only sees training patches).
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if all(s >= t for s, t in zip(x.shape[2:], size)):
        return F.adaptive_avg_pool3d(x, size)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


class PatientBranch(nn.Module):
    """``forward(feats)`` with ``feats = {"enc": [...], "fpn": [...]}`` (by stage) -> logits (B, 11)."""

    def __init__(self, m, source_channels: list[int], source_kernels: list[tuple[int, int, int]]):
        super().__init__()
        dim, self.sources, self.grid = m.patient_dim, list(m.patient_sources), tuple(m.patient_token_grid)
        n_tokens = math.prod(self.grid)
        self.memory = nn.Parameter(torch.randn(1, m.patient_memory_tokens, dim))
        self.pixel_pos_embed = nn.Parameter(torch.randn(1, n_tokens, dim))
        self.patch_embeds = nn.ModuleList(
            [nn.Conv3d(c, dim, kernel_size=k, stride=k) for c, k in zip(source_channels, source_kernels)])
        self.patch_norms = nn.ModuleList([nn.InstanceNorm3d(dim, affine=True) for _ in self.sources])
        self.blocks = nn.ModuleList(
            [MemoryBlock(dim, m.patient_heads, m.patient_mlp_ratio, m.patient_dropout, m.patient_drop_path)
             for _ in self.sources])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, NUM_PATIENT_OUTPUTS)

    def forward(self, feats: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        mem = self.memory.expand(feats["enc"][0].shape[0], -1, -1)
        for (kind, stage), embed, norm, block in zip(self.sources, self.patch_embeds, self.patch_norms,
                                                     self.blocks):
            x = fit_to_token_grid(feats[kind][stage], tuple(k * g for k, g in zip(embed.kernel_size, self.grid)))
            pix = norm(embed(x)).flatten(2).transpose(1, 2) + self.pixel_pos_embed
            mem = block(mem, pix)
        return self.classifier(self.norm(mem.mean(1)))
