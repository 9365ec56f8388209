# %% [markdown]
# # Lesson 2: Anchor queries: from pixels to lesion queries
#
# Mask2Former starts every image from the same $Q$ **learned queries**; each must discover on its own where a
# lesion is. PLAN (Sec. 2.2) first lets its **pixel branch** segment the volume, cuts the lesion probability map
# into connected components and turns each component into an extra query, an **anchor query**, whose vector is
# the mean pixel embedding inside the component. The transformer therefore starts with one query per candidate
# lesion, already pointing at it.
#
# ## Overview
# 1. The pixel branch's prediction and the lesion-probability threshold.
# 2. Connected components -> anchor regions -> anchor vectors (`compute_anchors`).
# 3. Anchors on the image.
# 4. Measured: Hungarian matching of lesion targets with and without anchor queries.
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | [Lesson 1: data](01_data_preparation.ipynb) | Necessary | cases, labels, preprocessing |
# | Mask2Former queries and Hungarian matching | Helpful | each target is assigned the query of lowest cost |
# | Connected components (3D, 18-connectivity) | Helpful | `cc3d` |
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
import torch.nn.functional as F
from IPython.display import Markdown, display

from plan_lite.config import PlanConfig, apply_overrides, get_preset
from plan_lite.data.io import MSDDataset, read_cases_csv
from plan_lite.engine.checkpoint import load_checkpoint
from plan_lite.engine.sampler import PatchSampler, make_train_case
from plan_lite.engine.training_data import make_preprocessor
from plan_lite.labels import IGNORE_LABEL, LABEL_NAMES, LESION_LABELS, NUM_CLASSES
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.losses import HungarianMatcher, build_targets
from plan_lite.metrics.pixel import dice_from_counts
from plan_lite.model import PLAN, compute_anchors, mask_logits
from plan_lite.utils import atomic_write_json
from plan_lite.viz import montage, slice_viewer

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic"  # dataset written by `make book`; generated into out_dir if absent
out_dir = "../build/lessons/02"  # figures and metrics.json
seed = 0
n_cases = 6  # cases of the fallback dataset when data_dir does not exist
preset = "tiny"  # model size (the same code runs paper on a GPU)
patch_size = [16, 96, 96]  # (D, H, W) of the patches, divisible by the total stride of the preset
n_patches = 4  # lesion patches in the matching experiment
pixel_source = "auto"  # oracle (pixel logits from the labels), model (the own pixel branch), auto: model if trained
checkpoint = "reference"  # "reference": the shipped trained model (plan_lite.reference); a run's last.pt; "": none

# %%
check_common(data_dir, out_dir, seed, n_cases, min_cases=3, preset=preset)
need(isinstance(patch_size, (list, tuple)) and len(patch_size) == 3 and all(is_int(s) and s > 0 for s in patch_size),
      f"patch_size must be three ints (D, H, W), got {patch_size!r}")
need(is_int(n_patches) and n_patches >= 1, f"n_patches must be an int >= 1, got {n_patches!r}")
need(pixel_source in ("oracle", "model", "auto"), f"pixel_source must be oracle, model or auto, got {pixel_source!r}")
need(isinstance(checkpoint, str), f"checkpoint must be a path string ('' for none), got {checkpoint!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
metrics = {"preset": preset, "patch_size": list(patch_size), "pixel_source": pixel_source}

# %% [markdown]
# ## Data: lesion patches
#
# Patches are cut the way training cuts them (`PatchSampler` with foreground oversampling 1.0, so every patch is
# centred on a lesion) from preprocessed tumour cases.

# %%
data_path = ensure_dataset(data_dir, out_path, n_cases, seed)
if checkpoint == "reference":
    from plan_lite.reference import checkpoint_path

    checkpoint = str(checkpoint_path())
state = load_checkpoint(checkpoint) if checkpoint and Path(checkpoint).exists() else None
if pixel_source == "auto":
    pixel_source = "model" if state is not None else "oracle"
print(f"pixel source: {pixel_source}")
metrics["pixel_source"] = pixel_source
metrics["checkpoint"] = "reference" if state is not None and "reference" in str(checkpoint) else checkpoint
if state is not None:  # a trained run brings its own config (spacing, patch) and intensity statistics
    cfg = PlanConfig.from_dict(state["config"])
    print(f"{checkpoint}: preset {cfg.name}, patch {cfg.train.patch_size}, spacing {cfg.data.spacing}")
else:
    if checkpoint:
        print(f"checkpoint {checkpoint} not found: using an untrained model")
    cfg = get_preset(preset, patch_size=tuple(patch_size))
cfg_no_anchor = apply_overrides(cfg, anchor_queries=False)
ds = MSDDataset(data_path, phases=cfg.data.phases)
tumor_ids = [r["case"] for r in read_cases_csv(data_path / "cases.csv")
             if r["group"] == "tumor" and int(r["num_lesions"]) > 0][:max(1, min(n_patches, 3))]
raws = [ds.load(c) for c in tumor_ids]
pre = make_preprocessor(cfg, state["preprocess"]) if state is not None else make_preprocessor(cfg).fit(raws)
cases = []
for raw in raws:
    prep = pre(raw)
    cases.append(make_train_case(raw.case_id, prep.image, prep.label, cfg.train.patch_size, cfg.voxels(cfg.data.min_lesion_volume_mm3)))
sampler = PatchSampler(cases, cfg.train.patch_size, 1, fg_oversample=1.0, seed=seed)
patches = [sampler.sample() for _ in range(n_patches)]
print(f"{len(patches)} patches of {tuple(cfg.train.patch_size)} from {tumor_ids}")

# %% [markdown]
# ## 1. The pixel branch's prediction
#
# The pixel branch outputs 15 class logits per voxel. Anchors use the **summed lesion probability**
#
# $$ s(x) = \sum_{c=7}^{14} \operatorname{softmax}\big(z(x)\big)_c \;>\; 0.1 , $$
#
# a soft threshold (not the argmax), so a lesion the pixel branch is unsure about still gets an anchor. By default
# the weights are the shipped **reference model** (`plan_lite.reference`), so the anchors come from a trained
# pixel branch on real lesions (`pixel_source = "model"`). To study the anchors independently of any training,
# `checkpoint = ""` uses an untrained model and `pixel_source = "oracle"` stands in a perfect stage-1 model:
# logits $10 \cdot \text{one-hot}(\text{label})$.

# %%
torch.manual_seed(seed)
model = PLAN(cfg).eval()
if state is not None:
    model.load_state_dict(state["model"])
    print(f"loaded weights from {checkpoint} (step {state.get('step')})")
model_no_anchor = PLAN(cfg_no_anchor).eval()
print("weights shared by the two models:", model_no_anchor.load_state_dict(model.state_dict()))


class FixedPixelBranch(torch.nn.Module):
    """Stands in for the trained pixel branch: returns given logits (a perfect stage-1 model)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, embedding):
        return self.logits


def mask_dice(a, b):
    """Dice of two boolean masks (plan_lite.metrics.pixel.dice_from_counts)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return dice_from_counts(int(np.count_nonzero(a & b)), int(a.sum()), int(b.sum()))


def oracle_logits(labels):
    lab = labels.clone()
    lab[lab == IGNORE_LABEL] = 0  # ignore = lesions below 10 voxels: no anchor for them
    return 10.0 * F.one_hot(lab, NUM_CLASSES).permute(0, 4, 1, 2, 3).float()


pixel_branch = model.pixel
images, labels = patches[0]
x, y = torch.from_numpy(images), torch.from_numpy(labels)
with torch.no_grad():
    feats = model(x, stage=1)
    logits = oracle_logits(y) if pixel_source == "oracle" else feats["pixel_logits"]
    s = torch.softmax(logits, 1)[:, list(LESION_LABELS)].sum(1)[0]
zc = int(np.argwhere(np.isin(labels[0], LESION_LABELS))[:, 0].mean()) if np.isin(labels[0], LESION_LABELS).any() \
    else labels.shape[1] // 2
fig, ax = plt.subplots(1, 3, figsize=(10, 3.4))
ax[0].imshow(images[0, 2, zc], cmap="gray", vmin=-2, vmax=3)
ax[0].set_title("PV (normalised)")
im = ax[1].imshow(s[zc].numpy(), vmin=0, vmax=1, cmap="magma")
ax[1].set_title("summed lesion probability s(x)")
fig.colorbar(im, ax=ax[1], fraction=0.046)
ax[2].imshow(s[zc].numpy() > cfg.model.anchor_threshold, cmap="gray")
ax[2].set_title(f"s(x) > {cfg.model.anchor_threshold}")
for a in ax:
    a.axis("off")
show(fig, out_path, "lesion_probability")

# %% [markdown]
# ## 2. Components -> anchor regions -> anchor vectors
#
# `compute_anchors(pixel_logits, embedding, cfg)` (run inside every forward pass, under `no_grad`):
#
# 1. 18-connected components of $s(x) > 0.1$, keep those with more than 10 voxels, at most the 20 largest;
# 2. one **stuff** anchor per non-lesion label present in the argmax (background, liver, organs);
# 3. anchor vector = mean of the detached pixel embedding $P$ (M channels) inside the region:
#
# $$ a_r = \frac{1}{|R_r|} \sum_{x \in R_r} P(x) \in \mathbb{R}^M . $$
#
# The query set of the image is then $[\,q_1, \dots, q_Q \mid a_1, \dots, a_A\,]$.

# %%
with torch.no_grad():
    anchors = compute_anchors(logits, feats["mask_features"], cfg)
targets = build_targets(y, cfg)[0]
lesion_targets = [t for t in range(len(targets["labels"])) if bool(targets["is_thing"][t])]
rows = ["| anchor | kind | region | voxels | best Dice with a GT lesion |", "|---|---|---|---|---|"]
for i, (mask, kind, lab) in enumerate(zip(anchors.masks[0], anchors.kinds[0], anchors.labels[0])):
    kind = int(kind)
    best = max((mask_dice(targets["masks"][t].numpy(), mask.numpy()) for t in lesion_targets), default=0.0) \
        if kind == 2 else None
    region = LABEL_NAMES[int(lab)] if kind == 1 else "lesion component"
    rows.append(f"| {i} | {'stuff' if kind == 1 else 'lesion'} | {region} | {int(mask.sum())} | "
                f"{'' if best is None else f'{best:.2f}'} |")
display(Markdown("\n".join(rows)))
print(f"{cfg.model.num_queries} learned queries + {anchors.counts()[0]} anchors; "
      f"{len(lesion_targets)} lesion targets in this patch")

# %% [markdown]
# ## 3. Anchors on the image
#
# Ground-truth lesions are outlined; the lesion-anchor regions are filled in the colour of the lesion they cover. Below the static montage, a
# slice viewer (live kernels only) lets you scroll through the anchors.

# %%
lesion_anchor = np.zeros(labels.shape[1:], np.uint8)
for mask, kind in zip(anchors.masks[0], anchors.kinds[0]):
    if int(kind) == 2:  # fill with the lesion label the region covers most (14 "other" if none)
        under = labels[0][mask.numpy()]
        under = under[np.isin(under, LESION_LABELS)]
        lesion_anchor[mask.numpy()] = np.bincount(under).argmax() if under.size else 14
show(montage(images[0], np.where(labels[0] == IGNORE_LABEL, 0, labels[0]), pred=lesion_anchor, n=4,
             window=(0.0, 5.0), spacing=cfg.data.spacing, title="GT lesions (outline) and lesion anchors (fill)"),
     out_path, "anchors")
slice_viewer(images[0], np.where(labels[0] == IGNORE_LABEL, 0, labels[0]).astype(np.uint8),
             anchors=anchors.masks[0][anchors.kinds[0] == 2].numpy(), spacing=cfg.data.spacing)

# %% [markdown]
# ## 4. Measured: matching with and without anchor queries
#
# Training assigns each target (stuff region or lesion instance) the query of lowest cost
#
# $$ C(q, t) = 2\,C_{cls} + 5\,C_{BCE} + 5\,C_{Dice} $$
#
# (`HungarianMatcher`, points shared by all queries). We run the **same weights** twice, once with anchors
# (`anchor_queries = True`) and once with learned queries only, over `n_patches` lesion patches, and record for
# every lesion target: whether it is matched at all (there are only $Q$ learned queries but one target per stuff
# region and per lesion), the matched cost, the Dice of the matched query's mask, and whether the matched query is
# a lesion anchor.

# %%
matcher = HungarianMatcher(cfg.loss.w_class, cfg.loss.w_mask, cfg.loss.w_dice, cfg.loss.num_points)
records = {"anchors": [], "learned only": []}
for images, labels in patches:
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    tg = build_targets(y, cfg)
    for name, net in (("anchors", model), ("learned only", model_no_anchor)):
        if pixel_source == "oracle":
            net.pixel = FixedPixelBranch(oracle_logits(y))
        with torch.no_grad():
            out = net(x)
            (qi, ti), = matcher(out, tg, out["mask_features"], out["query_padding_mask"],
                                generator=torch.Generator().manual_seed(seed))
            valid = (~out["query_padding_mask"][0]).nonzero()[:, 0]
            cost = matcher.last_costs[0]  # rows: valid queries in order
            masks = mask_logits(out, index=qi)[0] > 0 if len(qi) else None
        matched = {int(t): k for k, t in enumerate(ti)}
        for t in range(len(tg[0]["labels"])):
            if not bool(tg[0]["is_thing"][t]):
                continue
            rec = {"matched": t in matched, "voxels": int(tg[0]["masks"][t].sum())}
            if t in matched:
                k = matched[t]
                q = int(qi[k])
                row = int((valid == q).nonzero()[0, 0])
                rec.update(cost=float(cost[row, t]), kind=int(out["query_kind"][0, q]),
                           dice=mask_dice(tg[0]["masks"][t].numpy(), masks[k].numpy()))
            records[name].append(rec)
    model.pixel = model_no_anchor.pixel = pixel_branch


def summary(recs):
    m = [r for r in recs if r["matched"]]
    return {
        "n_lesion_targets": len(recs),
        "frac_matched": round(len(m) / max(len(recs), 1), 3),
        "mean_cost": round(float(np.mean([r["cost"] for r in m])), 3) if m else None,
        "mean_dice": round(float(np.mean([r["dice"] for r in m])), 3) if m else None,
        "frac_matched_to_lesion_anchor": round(sum(r["kind"] == 2 for r in m) / max(len(recs), 1), 3),
    }


res = {k: summary(v) for k, v in records.items()}
table = ["| queries | lesion targets | matched | mean matched cost | mean matched Dice | matched to a lesion anchor |",
         "|---|---|---|---|---|---|"]
for k, v in res.items():
    table.append(f"| {k} | {v['n_lesion_targets']} | {v['frac_matched']:.0%} | {v['mean_cost']} | {v['mean_dice']} "
                 f"| {v['frac_matched_to_lesion_anchor']:.0%} |")
display(Markdown("\n".join(table)))
metrics["with_anchors"], metrics["without_anchors"] = res["anchors"], res["learned only"]
metrics["n_patches"] = len(patches)

# %% [markdown]
# :::{note}
# Read the table with the model in mind. With the **reference model** (the default, `checkpoint = "reference"`:
# the same recipe trained for 16,000 steps, about 60 CPU minutes) the pixel branch finds the lesions, so there are lesion
# anchors on real lesions, and the mask head has learned to turn a query vector into a mask: the matched Dice and
# the share of lesion targets matched to a lesion anchor say how much the trained decoder relies on the anchors.
# With `checkpoint = ""` the lesion branch is **untrained** (anchors from the oracle pixel branch): matched Dice
# values are near zero either way and the assignment among near-equal costs is close to arbitrary; what anchors
# change there is only the **supply** of queries (with $Q$ learned queries and one target per stuff region and
# per lesion, some lesion targets cannot be matched at all).
# :::
#
# The numbers quoted in this lesson are written to `out_dir/metrics.json`:

# %%
metrics["seconds"] = round(time.time() - T0, 1)
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Try it
#
# - `checkpoint = ""`, `pixel_source = "model"`: anchors from an untrained pixel branch. Expect no lesion anchors
#   (or noise): the anchors are only as good as stage 1, which is why PLAN trains the pixel branch alone first.
# - `checkpoint = "../build/lessons/05/run/last.pt"`, `data_dir = "../data/synthetic_cpu"` after lesson 5: a
#   few-minute run instead of the reference model; compare the matched Dice.
# - `preset = "paper"` with `patch_size = [24, 256, 256]` (GPU recommended): Q = 20 learned queries.
#
# ## Summary
#
# - The pixel branch's summed lesion probability, thresholded at 0.1, split into 18-connected components,
#   gives one anchor region per candidate lesion (plus one per stuff class present).
# - An anchor query is the mean pixel embedding of its region, concatenated to the learned queries.
# - Matching then has one query per candidate lesion: measured above, more lesion targets are matched.
#
# ## What's next
#
# [Lesson 3: foreground-enhanced sampling](03_fes_loss.ipynb): once matched, how the mask loss sees small lesions.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Sec. 2.2 (anchor queries).
# - Cheng et al., *Mask2Former*, CVPR 2022 (queries, Hungarian matching).
