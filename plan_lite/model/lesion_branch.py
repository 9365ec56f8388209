"""Lesion branch (Sec. 2.2): 3D Mask2Former masked-attention decoder with anchor queries.

book/design_decisions.md#dd-lesion-branch (PLAN ``plan/my_transformer_decoder.py``):

* query set = [Q learned ``query_feat``; this image's anchor vectors], padded to the batch maximum; a
  ``key_padding_mask`` hides the padding in self-attention (pitfall 9);
* ``dec_layers`` layers, layer i attends to level i mod n_levels (coarsest first); each layer is masked
  cross-attention -> self-attention -> FFN, post-norm by default (``pre_norm``), dropout ``cfg.model.dropout``;
* keys = level features + level embedding + 3D sine PE; values = level features + level embedding;
  the query positional embedding is used only with ``query_pos_embed`` (M2F baseline);
* prediction heads (decoder LayerNorm -> class Linear(M -> 16), mask MLP 3 x M) after the initial queries
  and after every layer; mask logits = mask_embed . P (formed lazily, ``plan_lite.model.mask_logits``);
* attention mask for the next layer: mask logits at the next level's size, sigmoid < 0.5 = blocked,
  detached; fully blocked rows re-opened before every cross-attention (pitfall 1). With
  ``mask_logits_from_features`` (D6) the logits are mask_embed . (P trilinearly resized), an exact rewrite
  of resizing the full-resolution logits (trilinear interpolation is linear).
* attention maths in fp32 under autocast with ``fp32_attention`` (D4, pitfall 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plan_lite.labels import lesion_branch_labels
from plan_lite.model.anchors import KIND_LEARNED, KIND_PADDING, AnchorSet
from plan_lite.model.position_encoding import sine_position_encoding_3d


def attention(mha: nn.MultiheadAttention, q, k, v, fp32: bool, **masks) -> torch.Tensor:
    """``nn.MultiheadAttention`` (batch_first, True = blocked) with need_weights=False (pitfall 1); in fp32
    with autocast disabled when ``fp32`` (D4)."""
    if not fp32:
        return mha(q, k, v, need_weights=False, **masks)[0]
    dtype = mha.in_proj_weight.dtype
    with torch.autocast(q.device.type, enabled=False):
        return mha(q.to(dtype), k.to(dtype), v.to(dtype), need_weights=False, **masks)[0]


class _Residual(nn.Module):
    """x + Dropout(f(x)) with post-norm (LN after) or pre-norm (LN on the input of f)."""

    def __init__(self, dim, dropout, pre_norm):
        super().__init__()
        self.norm, self.dropout, self.pre_norm = nn.LayerNorm(dim), nn.Dropout(dropout), pre_norm

    def wrap(self, x, f):
        if self.pre_norm:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN (book/design_decisions.md#dd-lesion-branch)."""

    def __init__(self, dim, heads, ffn, dropout, pre_norm, fp32):
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.res_cross, self.res_self, self.res_ffn = (_Residual(dim, dropout, pre_norm) for _ in range(3))
        self.fp32 = fp32
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x, src, pos, attn_mask, key_padding_mask, query_pos=None):
        qp = (lambda t: t) if query_pos is None else (lambda t: t + query_pos)
        x = self.res_cross.wrap(x, lambda t: attention(self.cross, qp(t), src + pos, src, self.fp32,
                                                       attn_mask=attn_mask))
        x = self.res_self.wrap(x, lambda t: attention(self.self_attn, qp(t), qp(t), t, self.fp32,
                                                      key_padding_mask=key_padding_mask))
        return self.res_ffn.wrap(x, self.ffn)


class MLP(nn.Module):
    """n Linear layers of width ``hidden`` with ReLU in between (the mask-embedding head)."""

    def __init__(self, din, hidden, dout, n):
        super().__init__()
        dims = [din] + [hidden] * (n - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def pad_queries(learned: torch.Tensor, anchors: AnchorSet | None, batch: int):
    """[learned; anchors] per image, padded to the batch max -> (queries (B, Qmax, M), padding (B, Qmax) bool,
    kinds (B, Qmax) long)."""
    q, dim = learned.shape
    counts = anchors.counts() if anchors is not None else [0] * batch
    qmax = q + max(counts, default=0)
    queries = learned.new_zeros(batch, qmax, dim)
    queries[:, :q] = learned
    padding = torch.ones(batch, qmax, dtype=torch.bool, device=learned.device)
    kinds = torch.full((batch, qmax), KIND_PADDING, dtype=torch.long, device=learned.device)
    padding[:, :q], kinds[:, :q] = False, KIND_LEARNED
    for b, a in enumerate(counts):
        if a:
            queries[b, q:q + a] = anchors.vectors[b].to(learned.dtype)
            padding[b, q:q + a] = False
            kinds[b, q:q + a] = anchors.kinds[b]
    return queries, padding, kinds


class LesionBranch(nn.Module):
    """``forward(levels, mask_features, anchors)`` -> the lesion part of the output dict (DESIGN.md)."""

    def __init__(self, m):
        super().__init__()
        dim, self.num_heads, self.n_levels = m.hidden_dim, m.num_heads, len(m.transformer_levels)
        self.mask_from_features = m.mask_logits_from_features
        self.query_feat = nn.Parameter(torch.randn(m.num_queries, dim))  # nn.Embedding init N(0, 1)
        self.query_embed = nn.Parameter(torch.randn(m.num_queries, dim)) if m.query_pos_embed else None
        self.level_embed = nn.Parameter(torch.randn(self.n_levels, dim))
        self.layers = nn.ModuleList(DecoderLayer(dim, m.num_heads, m.dim_feedforward, m.dropout, m.pre_norm,
                                                 m.fp32_attention) for _ in range(m.dec_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, len(lesion_branch_labels(m.lesion_stuff_targets)) + 1)
        self.mask_embed = MLP(dim, dim, dim, 3)

    def heads(self, x):
        """Prediction heads: class logits (B, Q, 16, or 9 without stuff targets) and mask embeddings (B, Q, M)."""
        x = self.decoder_norm(x)
        return self.class_embed(x), self.mask_embed(x)

    def attn_mask(self, mask_embed, mask_features, size, resized=None) -> torch.Tensor:
        """Blocked positions (B * heads, Q, prod(size)) for a level of (D, H, W) ``size``
        (book/design_decisions.md#dd-lesion-branch):
        sigmoid(logit) < 0.5, repeated per head (batch-major, as nn.MultiheadAttention expects)."""
        logits = level_mask_logits(mask_embed, mask_features, size, self.mask_from_features, resized)
        return (logits.sigmoid() < 0.5).repeat_interleave(self.num_heads, dim=0)

    def forward(self, levels: list[torch.Tensor], mask_features: torch.Tensor, anchors: AnchorSet | None):
        b = mask_features.shape[0]
        sizes = [tuple(x.shape[2:]) for x in levels]
        src = [x.flatten(2).transpose(1, 2) + self.level_embed[i] for i, x in enumerate(levels)]
        pos = [sine_position_encoding_3d(s, x.shape[1], x.device).flatten(1).t().to(x.dtype)
               for s, x in zip(sizes, levels)]
        resized = ([resize(mask_features, s) for s in sizes] if self.mask_from_features else [None] * len(sizes))
        x, padding, kinds = pad_queries(self.query_feat, anchors, b)
        query_pos = None
        if self.query_embed is not None:  # learned queries only; anchors have no positional embedding
            query_pos = torch.zeros_like(x)
            query_pos[:, : self.query_embed.shape[0]] = self.query_embed

        cls, emb = self.heads(x)
        sets = [(cls, emb)]
        for i, layer in enumerate(self.layers):
            lvl = i % self.n_levels
            mask = self.attn_mask(emb, mask_features, sizes[lvl], resized[lvl])
            mask[mask.all(-1)] = False  # pitfall 1: a query predicting an empty mask attends everywhere
            x = layer(x, src[lvl], pos[lvl], mask, padding, query_pos)
            cls, emb = self.heads(x)
            sets.append((cls, emb))
        return {
            "pred_logits": sets[-1][0],
            "pred_mask_embed": sets[-1][1],
            "query_padding_mask": padding,
            "query_kind": kinds,
            "aux_outputs": [{"pred_logits": c, "pred_mask_embed": e} for c, e in sets[:-1]],
        }


@torch.no_grad()
def level_mask_logits(mask_embed, mask_features, size, from_features: bool = True, resized=None) -> torch.Tensor:
    """Detached fp32 mask logits (B, Q, prod(size)) at a level's (D, H, W) ``size``.

    ``from_features`` (D6): mask_embed . (P resized to ``size``); otherwise the full-resolution logits resized.
    Both are equal up to rounding because trilinear interpolation is linear in its input.
    """
    emb = mask_embed.detach().float()
    if from_features:
        feats = resized if resized is not None else resize(mask_features, size)
        return torch.einsum("bqm,bmn->bqn", emb, feats.flatten(2))
    full = torch.einsum("bqm,bmdhw->bqdhw", emb, mask_features.detach().float())
    return resize(full, size).flatten(2)


@torch.no_grad()
def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Trilinear resize (align_corners=False) in fp32; identity when the size already matches."""
    x = x.detach().float()
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)
