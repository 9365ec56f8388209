"""3D point sampling for the lesion-branch losses (Sec. 2.2 FES of the paper; book/design_decisions.md#dd-fes).

Coordinates are normalised to [0, 1] and ordered (z, y, x) everywhere in plan-lite; :func:`point_sample` flips
them to the (x, y, z) order that ``grid_sample`` expects for 5-D input (pitfall 5) and samples
with ``align_corners=False``, so voxel i of an axis of size S sits at (i + 0.5) / S (D4).

Point budget per matched (query, target) pair, K points in this order:

1. FES: n random foreground voxels of the target (lesion targets only unless ``fes_fg_on_stuff``);
2. importance: int(0.75 K) most uncertain (``-|logit|``) of int(3 K) uniform candidates
   (detectron2 ``get_uncertain_point_coords_with_randomness``);
3. the rest fresh uniform points.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LogitSource = Tensor | Callable[[Tensor], Tensor]


def point_sample(features: Tensor, coords: Tensor) -> Tensor:
    """Trilinear samples of ``features`` (N, C, D, H, W) at ``coords`` (N, P, 3) in [0, 1], (z, y, x) -> (N, C, P).

    The grid's last dimension is reordered to (x, y, z) (pitfall 5); ``align_corners=False``, zero padding.
    """
    n, p = coords.shape[:2]
    grid = (2.0 * coords.to(features.dtype) - 1.0).flip(-1).view(n, p, 1, 1, 3)
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(n, features.shape[1], p)


def _rand(shape: tuple[int, ...], device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, device=device, generator=generator)


def _logits_at(source: LogitSource, coords: Tensor) -> Tensor:
    """Logits (N, P) at coords (N, P, 3) from a coarse logit volume (N, [1,] D, H, W) or a callable."""
    if callable(source) and not isinstance(source, Tensor):
        return source(coords)
    vol = source if source.dim() == 5 else source.unsqueeze(1)
    return point_sample(vol.float(), coords)[:, 0]


@torch.no_grad()
def importance_points(logits: LogitSource, num_points: int, oversample_ratio: float = 3.0,
                      importance_ratio: float = 0.75, *, num_boxes: int | None = None,
                      num_random: int | None = None, device=None,
                      generator: torch.Generator | None = None) -> Tensor:
    """Uncertainty-based points, detectron2 ``get_uncertain_point_coords_with_randomness`` in 3D
    (book/design_decisions.md#dd-fes).

    Draws int(oversample_ratio * num_points) uniform candidates, evaluates the logits there (``logits`` is a
    coarse logit volume (N, 1, D, H, W) / (N, D, H, W) or a callable ``coords (N, P, 3) -> (N, P)``), keeps the
    int(importance_ratio * num_points) with the largest uncertainty ``-|logit|`` and appends ``num_random`` (default
    the rest of ``num_points``) fresh uniform points. Returns (N, n_uncertain + n_random, 3), (z, y, x).
    """
    if isinstance(logits, Tensor):
        num_boxes, device = logits.shape[0], logits.device
    if num_boxes is None:
        raise ValueError("importance_points: num_boxes is required with a callable logit source")
    n_sampled = int(num_points * oversample_ratio)
    n_unc = int(importance_ratio * num_points)
    n_rand = num_points - n_unc if num_random is None else num_random
    cand = _rand((num_boxes, n_sampled, 3), device, generator)
    parts = []
    if n_unc > 0:
        unc = -_logits_at(logits, cand).float().abs()
        idx = unc.topk(n_unc, dim=1).indices
        parts.append(torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 3)))
    if n_rand > 0:
        parts.append(_rand((num_boxes, n_rand, 3), device, generator))
    if not parts:
        return cand[:, :0]
    return torch.cat(parts, dim=1)


@torch.no_grad()
def fes_points(target_mask: Tensor, n: int, norm: str = "center", generator: torch.Generator | None = None,
               pad: str = "repeat") -> Tensor:
    """Sec. 2.2 FES: ``n`` random foreground voxels of ``target_mask`` (D, H, W) as (n, 3) coordinates (z, y, x).

    ``norm="center"``: (i + 0.5) / S, the voxel centre under align_corners=False (D4, plan-lite);
    ``norm="code"``: i / (S - 1) as the official code (up to half a voxel off, pitfall 6).
    A target with fewer than n voxels is padded: ``pad="repeat"`` draws its voxels again (every point stays in
    the foreground, plan-lite default), ``pad="random"`` adds random voxels of the volume (official code).
    An empty target always gets random voxels.
    """
    shape = torch.tensor(target_mask.shape, device=target_mask.device)
    if n <= 0:
        return torch.zeros(0, 3, device=target_mask.device)
    fg = target_mask.nonzero()  # (V, 3) long
    nv = fg.shape[0]
    if nv >= n:
        sel = fg[torch.randperm(nv, device=fg.device, generator=generator)[:n]]
    elif nv > 0 and pad == "repeat":
        extra = torch.randint(nv, (n - nv,), device=fg.device, generator=generator)
        sel = torch.cat([fg, fg[extra]])
    else:
        rnd = (_rand((n - nv, 3), fg.device, generator) * shape).long().clamp_max(shape - 1)
        sel = torch.cat([fg, rnd])
    sel = sel.float()
    if norm == "center":
        return (sel + 0.5) / shape
    if norm == "code":
        return sel / (shape - 1).clamp_min(1)
    raise ValueError(f"fes_points: norm must be 'center' or 'code', got {norm!r}")


@torch.no_grad()
def sample_points(logits: LogitSource, target_masks: Tensor | list[Tensor] | None, num_points: int,
                  n_fg: Tensor | list[int] | int = 0, oversample_ratio: float = 3.0,
                  importance_ratio: float = 0.75, norm: str = "center", pad: str = "repeat",
                  num_boxes: int | None = None, device=None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Combined loss sampler per matched pair: [FES] + importance + uniform = K points (book/design_decisions.md#dd-fes).

    ``target_masks``: per pair (D, H, W) masks (stacked tensor or list); ``n_fg``: FES points per pair (0 for
    stuff targets unless ``fes_fg_on_stuff``; the criterion decides). Returns ``coords`` (N, K, 3) (z, y, x)
    with each row's FES points first, and ``n_fes`` (N,) long.
    """
    if isinstance(logits, Tensor):
        num_boxes, device = logits.shape[0], logits.device
    if num_boxes is None:
        raise ValueError("sample_points: num_boxes is required with a callable logit source")
    n_fg_t = torch.as_tensor(n_fg, dtype=torch.long).cpu().expand(num_boxes).clone()
    if num_boxes == 0:
        return torch.zeros(0, num_points, 3, device=device), n_fg_t
    n_unc = int(importance_ratio * num_points)
    imp = importance_points(logits, num_points, oversample_ratio, importance_ratio, num_boxes=num_boxes,
                            num_random=0, device=device, generator=generator)  # (N, n_unc, 3)
    rows = []
    for i in range(num_boxes):
        k = int(n_fg_t[i])
        fg = fes_points(target_masks[i], k, norm, generator, pad) if k > 0 else imp.new_zeros(0, 3)
        rest = num_points - k - n_unc
        rows.append(torch.cat([fg.to(imp.device), imp[i], _rand((rest, 3), imp.device, generator)]))
    return torch.stack(rows), n_fg_t


__all__ = ["point_sample", "importance_points", "fes_points", "sample_points"]
