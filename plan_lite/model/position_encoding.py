"""3D sine positional encoding of the lesion-branch levels (book/design_decisions.md#dd-lesion-branch).

PLAN variant of DETR's ``PositionEmbeddingSine`` (PLAN ``mask2former/position_encoding.py``): of the M
channels, x and y get ceil(ceil(M / 3) / 2) * 2 each and z the rest (M = 64: x 22, y 22, z 20). Per axis
the position is the normalised cumulative index (1..S) / S * 2pi (eps 1e-6), divided by
10000^(2 floor(i / 2) / n_axis), with sin on even and cos on odd channels (interleaved). Output is
concat(z, y, x) along channels.
"""

from __future__ import annotations

import math

import torch


def axis_channels(dim: int) -> tuple[int, int, int]:
    """Channels (z, y, x) of the PE for total width ``dim`` (64 -> (20, 22, 22))."""
    n_xy = int(math.ceil(math.ceil(dim / 3) / 2) * 2)
    return dim - 2 * n_xy, n_xy, n_xy


def _axis_encoding(size: int, n: int, device, temperature: float = 10000.0) -> torch.Tensor:
    """(size, n) sine encoding of one axis."""
    pos = torch.arange(1, size + 1, dtype=torch.float32, device=device) / (size + 1e-6) * (2 * math.pi)
    i = torch.arange(n, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / n)
    p = pos[:, None] / dim_t  # (size, n)
    return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)


def sine_position_encoding_3d(shape: tuple[int, int, int], dim: int, device=None) -> torch.Tensor:
    """(dim, D, H, W) float32 positional encoding of a (D, H, W) grid."""
    d, h, w = shape
    nz, ny, nx = axis_channels(dim)
    ez = _axis_encoding(d, nz, device)[:, None, None, :].expand(d, h, w, nz)
    ey = _axis_encoding(h, ny, device)[None, :, None, :].expand(d, h, w, ny)
    ex = _axis_encoding(w, nx, device)[None, None, :, :].expand(d, h, w, nx)
    return torch.cat((ez, ey, ex), dim=3).permute(3, 0, 1, 2).contiguous()
