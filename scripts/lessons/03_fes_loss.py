# %% [markdown]
# # Lesson 3: Foreground-enhanced sampling (FES)
#
# Mask2Former does not compute its mask loss on every voxel: it samples **K points** per matched
# (query, target) pair and evaluates binary cross-entropy and Dice there. In 3D CT that is a tiny fraction of
# the volume, and a lesion of a few millimetres can receive **no point at all**: the loss then cannot see it.
# PLAN's fix (Sec. 2.2) is to add **n foreground points** drawn inside every lesion target. This lesson
# measures the problem and the fix on synthetic lesions at the paper's patch size.
#
# ## Overview
# 1. Point-sampled mask losses: uniform + importance sampling.
# 2. How many points fall into a lesion? The expected count and its small-lesion problem.
# 3. FES: n foreground points per lesion, measured over the lesions of several synthetic cases.
# 4. The points the real training criterion uses (`PlanCriterion(..., return_points=True)`).
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | [Lesson 2: anchor queries](02_anchor_queries.ipynb) | Helpful | matched (query, target) pairs |
# | Binary cross-entropy and Dice loss | Necessary | the two mask losses |
# | Trilinear interpolation (`grid_sample`) | Helpful | how values are read at continuous points |
#
# - **Time to learn**: 25 minutes.
# - **System requirements**: CPU only; about 1-2 minutes on 2 cores with the defaults.
#
# ---

# %% [markdown]
# ## Imports

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from plan_lite.config import get_preset
from plan_lite.data.io import MSDDataset, read_cases_csv
from plan_lite.data.synthetic import generate_case
from plan_lite.engine.sampler import PatchSampler, make_train_case
from plan_lite.engine.training_data import make_preprocessor
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.losses import PlanCriterion, build_targets, patient_targets, point_sample, sample_points
from plan_lite.metrics.lesion import equivalent_radius
from plan_lite.model import PLAN
from plan_lite.utils import atomic_write_json
from plan_lite.viz import plot_points

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic"  # dataset written by `make book`; generated into out_dir if absent
out_dir = "../build/lessons/03"  # figures and metrics.json
seed = 0
n_cases = 6  # synthetic tumour subjects whose lesions are measured (and size of a fallback dataset)
grid = [24, 256, 256]  # (D, H, W) voxels, training patch of the paper
grid_spacing = [5.0, 0.7, 0.7]  # (z, y, x) mm, spacing of the paper
num_points = 12544  # K, points per matched pair (paper)
fes_fg_points = 3  # n, FES foreground points per lesion target (paper)
n_draws = 5  # repeated samplings per lesion (the sampler is random)
demo_patch = [16, 96, 96]  # patch of the tiny-model criterion demo (section 4); [] skips it

# %%
def _ints(v, n, low=1):
    return isinstance(v, (list, tuple)) and len(v) == n and all(is_int(x) and x >= low for x in v)


check_common(data_dir, out_dir, seed, n_cases, min_cases=1)
need(_ints(grid, 3, 4), f"grid must be three ints >= 4 (D, H, W), got {grid!r}")
need(isinstance(grid_spacing, (list, tuple)) and len(grid_spacing) == 3
      and all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in grid_spacing),
      f"grid_spacing must be three positive numbers (z, y, x) mm, got {grid_spacing!r}")
need(is_int(num_points) and num_points >= 16, f"num_points must be an int >= 16, got {num_points!r}")
need(is_int(fes_fg_points) and 1 <= fes_fg_points < num_points // 4,
      f"fes_fg_points must be an int in 1..K/4, got {fes_fg_points!r}")
need(is_int(n_draws) and n_draws >= 1, f"n_draws must be an int >= 1, got {n_draws!r}")
need(isinstance(demo_patch, (list, tuple)) and (len(demo_patch) == 0 or _ints(demo_patch, 3, 4)),
      f"demo_patch must be [] or three ints (D, H, W), got {demo_patch!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
gen = torch.Generator().manual_seed(seed)
metrics = {"K": num_points, "n": fes_fg_points, "grid": list(grid), "grid_spacing": list(grid_spacing)}

# %% [markdown]
# ## 1. Point-sampled mask losses
#
# For a matched pair (query $q$, target mask $m$) the lesion branch predicts mask logits $\hat m_q$ on the whole
# volume $\Omega$. The loss is evaluated only at $K$ points $p_1, \dots, p_K$ (values read by trilinear
# interpolation, `point_sample`):
#
# $$ \mathcal{L}_{mask} = \frac{1}{K}\sum_{k=1}^{K} \operatorname{BCE}\big(\hat m_q(p_k), m(p_k)\big), \qquad
#    \mathcal{L}_{dice} = 1 - \frac{2\sum_k \sigma(\hat m_q(p_k))\, m(p_k) + 1}
#                                  {\sum_k \sigma(\hat m_q(p_k)) + \sum_k m(p_k) + 1}. $$
#
# Mask2Former draws the points by **importance sampling**: $3K$ uniform candidates, keep the $0.75K$ with the
# most uncertain prediction ($-|\hat m_q|$ largest), add $0.25K$ fresh uniform points. PLAN's **FES** puts
# $n$ points inside the target first:
#
# $$ \{p_k\} = \underbrace{\{n \text{ voxels of } m\}}_{\text{FES}} \cup
#    \underbrace{\{0.75K \text{ most uncertain of } 3K\}}_{\text{importance}} \cup
#    \underbrace{\{K - n - 0.75K \text{ uniform}\}}_{\text{uniform}} . $$
#
# ## 2. How many points does a small lesion get?
#
# Points that are uniform in $\Omega$ hit a lesion of $|m|$ voxels $K\,|m|/|\Omega|$ times on average. On the
# paper's patch ($|\Omega| = 24 \times 256 \times 256 \approx 1.57$ M voxels, $K = 12544$) a lesion of radius
# 3 mm (113 mm$^3$, 46 voxels at 0.7 x 0.7 x 5 mm) expects **0.37** points, so most of the time it gets none.
# Importance points follow the *prediction's* uncertainty, not the target: before the query has found the
# lesion they are no more likely to land in it.

# %%
vox_mm3 = float(np.prod(grid_spacing))
n_vox = int(np.prod(grid))
radii = np.linspace(1.0, 20.0, 200)
expected = num_points * (4 / 3 * np.pi * radii ** 3 / vox_mm3) / n_vox
r_one = float(radii[np.searchsorted(expected, 1.0)]) if expected[-1] >= 1 else float("nan")
print(f"grid {tuple(grid)} = {n_vox:,} voxels at {tuple(grid_spacing)} mm; K = {num_points}")
print(f"uniform points expected inside a lesion of radius 3 mm: {np.interp(3.0, radii, expected):.2f}; "
      f"one expected point needs radius >= {r_one:.1f} mm")
metrics["expected_uniform_points_r3mm"] = round(float(np.interp(3.0, radii, expected)), 3)

# %% [markdown]
# ## 3. Measured over synthetic lesions: importance sampling alone vs FES
#
# We render `n_cases` tumour subjects on the paper's grid (`generate_case(..., spacing=grid_spacing,
# shape=grid)`), build the lesion-branch targets exactly as training does (`build_targets`: each 18-connected
# lesion component is one target) and call the criterion's sampler `sample_points` with $n = 0$ (importance
# only, as Mask2Former) and $n = 3$ (FES), `n_draws` times per lesion. The query's prediction is a smooth random
# logit field, i.e. a query that has **not yet** located the lesion (the situation early in training, and for
# lesions the model misses). A point counts as foreground when the target's interpolated value there is > 0.5.

# %%
rows = []  # (case, lesion voxels, radius mm, fg points importance-only, fg points FES) per draw
example = None
for i in range(n_cases):
    case = generate_case(seed * 1000 + i, spacing=tuple(grid_spacing), shape=tuple(grid), group="tumor")
    tgt = build_targets(torch.from_numpy(case.label.astype(np.int64))[None])[0]
    masks = tgt["masks"][tgt["is_thing"]]
    if len(masks) == 0:
        continue
    vox = masks.flatten(1).sum(1)
    radius = equivalent_radius(vox.numpy() * vox_mm3)
    for _ in range(n_draws):
        # a query's logits before it has found the lesion: a smooth random field on a coarse grid
        logits = 3.0 * torch.randn(len(masks), 1, max(grid[0] // 4, 2), max(grid[1] // 16, 2),
                                   max(grid[2] // 16, 2), generator=gen)
        counts = {}
        for n_fg in (0, fes_fg_points):
            coords, _ = sample_points(logits, masks, num_points, n_fg=n_fg, generator=gen)
            inside = point_sample(masks.float().unsqueeze(1), coords)[:, 0] > 0.5
            counts[n_fg] = inside.sum(1)
        rows += [(i, int(v), float(r), int(a), int(b))
                 for v, r, a, b in zip(vox, radius, counts[0], counts[fes_fg_points])]
    if example is None or vox.min() < example[2].flatten(1).sum(1).min():
        example = (case, tgt, masks, logits)
res = np.array(rows, dtype=float)
n_lesions = len({(int(r[0]), int(r[1])) for r in res})
print(f"{n_lesions} lesions in {n_cases} cases, {len(res)} samplings; radius {res[:, 2].min():.1f}-{res[:, 2].max():.1f} mm")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4))
jit = np.exp(np.random.default_rng(seed).normal(0, 0.03, len(res)))
ax.scatter(res[:, 2] * jit, res[:, 3] + 0.5, s=12, alpha=0.6, label="importance + uniform (Mask2Former)")
ax.scatter(res[:, 2] * jit, res[:, 4] + 0.5, s=12, alpha=0.6, marker="s", label=f"with FES (n = {fes_fg_points})")
ax.plot(radii, expected + 0.5, "k--", lw=1, label="uniform expectation $K|m|/|\\Omega|$")
ax.axhline(fes_fg_points + 0.5, color="tab:orange", lw=0.8, ls=":")
ax.set(xscale="log", yscale="log", xlabel="lesion radius (mm, equivalent sphere)",
       ylabel="foreground points + 0.5", title=f"Points inside each lesion, K = {num_points} on {tuple(grid)}")
ax.legend(fontsize=8)
show(fig, out_path, "fg_points_vs_radius")

small = res[:, 2] < 5.0
table = ["| lesions | samplings | zero fg points, importance only | zero fg points, FES | min fg points, FES |",
         "|---|---|---|---|---|"]
for name, sel in (("radius < 5 mm", small), ("radius >= 5 mm", ~small), ("all", np.ones(len(res), bool))):
    if sel.any():
        table.append(f"| {name} | {int(sel.sum())} | {np.mean(res[sel, 3] == 0):.0%} | {np.mean(res[sel, 4] == 0):.0%} "
                     f"| {int(res[sel, 4].min())} |")
display(Markdown("\n".join(table)))
metrics.update(
    n_cases=n_cases, n_lesions=n_lesions, n_samplings=len(res),
    min_fg_points_fes=int(res[:, 4].min()), min_fg_points_importance=int(res[:, 3].min()),
    frac_lesions_zero_fg_importance=round(float(np.mean(res[:, 3] == 0)), 4),
    frac_lesions_zero_fg_fes=round(float(np.mean(res[:, 4] == 0)), 4),
    frac_small_zero_fg_importance=round(float(np.mean(res[small, 3] == 0)), 4) if small.any() else None,
    radius_range_mm=[round(float(res[:, 2].min()), 2), round(float(res[:, 2].max()), 2)],
)

# %% [markdown]
# :::{important}
# With importance sampling alone a share of the small lesions gets **zero** foreground points in a draw: their
# BCE term sees only background and their Dice term is $1 - 1/(\sum\sigma + 1)$, minimised by predicting
# nothing. With FES every lesion has at least $n$ foreground points in every draw, so the loss always contains
# the signal "this voxel belongs to the lesion".
# :::
#
# The smallest lesion of these cases, on its centre slice: the points of one draw (only those within that slice
# are drawn).

# %%
case, tgt, masks, logits = example
j = int(masks.flatten(1).sum(1).argmin())
zc = int(masks[j].nonzero()[:, 0].float().mean().round())
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, n_fg, title in ((axes[0], 0, "importance + uniform"), (axes[1], fes_fg_points, f"FES (n = {fes_fg_points})")):
    coords, n_fes = sample_points(logits[j:j + 1], masks[j:j + 1], num_points, n_fg=n_fg, generator=gen)
    n_imp = int(0.75 * num_points)
    kinds = ["fes"] * n_fg + ["importance"] * n_imp + ["uniform"] * (num_points - n_fg - n_imp)
    plot_points(case.images["pv"][zc], coords[0].numpy(), masks[j, zc].numpy(), kinds=kinds, z_index=zc,
                depth=grid[0], title=f"{title}: lesion of {int(masks[j].sum())} voxels", ax=ax)
show(fig, out_path, "points_on_slice")

# %% [markdown]
# ## 4. The points the training criterion really uses
#
# The measurement above calls the sampler directly. During training the same sampler runs inside
# `PlanCriterion` for every matched pair of every prediction set; `return_points=True` keeps the final set's
# points (`criterion.last_points`), and `criterion.last_indices` the Hungarian matches. Here: the `tiny` model
# (untrained) on one lesion patch of the dataset, at the tiny preset's own K.

# %%
demo = {}
if demo_patch:
    data_path = ensure_dataset(data_dir, out_path, max(n_cases, 3), seed)
    cfg = get_preset("tiny", patch_size=tuple(demo_patch))
    ds = MSDDataset(data_path, phases=cfg.data.phases)
    rows_csv = read_cases_csv(data_path / "cases.csv")
    cid = next(r["case"] for r in rows_csv if r["group"] == "tumor" and int(r["num_lesions"]) > 0)
    raw = ds.load(cid)
    prep = make_preprocessor(cfg).fit([raw])(raw)
    tc = make_train_case(cid, prep.image, prep.label, cfg.train.patch_size, cfg.voxels(cfg.data.min_lesion_volume_mm3))
    images, labels = PatchSampler([tc], cfg.train.patch_size, 1, fg_oversample=1.0, seed=seed).sample()
    torch.manual_seed(seed)
    model = PLAN(cfg).eval()
    criterion = PlanCriterion(cfg, generator=torch.Generator().manual_seed(seed))
    targets = {"labels": torch.from_numpy(labels), "patient": patient_targets(torch.from_numpy(labels), cfg)}
    with torch.no_grad():
        outputs = model(torch.from_numpy(images))
        losses = criterion(outputs, targets, return_points=True)
    print("loss terms:", {k: round(float(v), 3) for k, v in losses.items()})
    pairs = criterion.last_points["pairs"][0]
    things = criterion.last_targets[0]["is_thing"][pairs["target_idx"]]
    print(f"{len(pairs['query_idx'])} matched pairs, {int(things.sum())} lesion targets; "
          f"FES points per pair: {pairs['n_fes'].tolist()}")
    if things.any():
        k = int(things.nonzero()[0, 0])
        tmask = criterion.last_targets[0]["masks"][pairs["target_idx"][k]]
        nf = int(pairs["n_fes"][k])
        n_imp = int(cfg.loss.importance_ratio * cfg.loss.num_points)
        kinds = ["fes"] * nf + ["importance"] * n_imp + ["uniform"] * (cfg.loss.num_points - nf - n_imp)
        zc = int(tmask.nonzero()[:, 0].float().mean().round())
        fg_in = int((pairs["labels"][k] > 0.5).sum())
        show(plot_points(images[0, 2, zc], pairs["coords"][k].numpy(), tmask[zc].numpy(), kinds=kinds, z_index=zc,
                         depth=images.shape[2], window=(0.0, 5.0),
                         title=f"criterion points, query {int(pairs['query_idx'][k])}: {fg_in} of K inside"),
             out_path, "criterion_points")
        demo = {"demo_K": cfg.loss.num_points, "demo_fg_points": fg_in, "demo_n_fes": nf}
metrics.update(demo)

# %% [markdown]
# The numbers quoted in this lesson are written to `out_dir/metrics.json`:

# %%
metrics["seconds"] = round(time.time() - T0, 1)
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Try it
#
# - `fes_fg_points = 1` (or the official code's 2): still never zero, fewer foreground votes per lesion.
# - `num_points = 50000`: the zero-point fraction of importance sampling drops, at 4x the loss cost; FES gets the
#   same guarantee for 3 extra points.
# - `grid = [24, 128, 128]` with `grid_spacing = [5.0, 1.4, 1.4]`: the same anatomy on 4x fewer voxels, so every
#   lesion covers 4x more of the volume and the problem shrinks.
# - In a training run, the ablation `no_fes` (lesson 7) switches FES off: compare recall on small lesions.
#
# ## Summary
#
# - Point-sampled losses see a lesion only through the points that land in it: on average $K|m|/|\Omega|$.
# - At the paper's K = 12544 on a 24 x 256 x 256 patch a 3 mm lesion expects 0.37 uniform points; importance
#   sampling does not help before the query has found the lesion. We measured the share of draws with zero
#   foreground points above.
# - FES adds n = 3 foreground points per lesion target, so every lesion contributes to the loss.
#
# ## What's next
#
# [Lesson 4: the consistency loss](04_consistency_loss.ipynb) ties the lesion branch to the patient branch.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Sec. 2.2 (FES).
# - Cheng et al., *Masked-attention Mask Transformer (Mask2Former)*, CVPR 2022; Kirillov et al., *PointRend*,
#   CVPR 2020 (importance sampling).
