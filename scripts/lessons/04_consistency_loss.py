# %% [markdown]
# # Lesson 4: The patient branch and the lesion-patient consistency loss
#
# A screening system must answer per **patient**: does this scan contain a tumour, benign or malignant, which
# type? PLAN's **patient branch** (Sec. 2.3) answers directly from image features with a small memory transformer.
# The lesion branch answers the same question implicitly: if some query predicts "HCC" with probability 0.9, the
# patient has HCC with probability at least 0.9. The **consistency loss** makes the two answers agree.
#
# ## Overview
# 1. The two patient-level readouts: max-pooled lesion probabilities and the patient branch.
# 2. The consistency term and its stop-gradient form (Eq. 1).
# 3. Measured: agreement of the two readouts with and without the term, optimising crafted outputs with the
#    package's `PlanCriterion`.
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | [Lesson 2: anchor queries](02_anchor_queries.ipynb) | Helpful | the lesion branch's queries and classes |
# | Softmax, sigmoid, binary cross-entropy | Necessary | |
# | Stop-gradient (`detach`) | Helpful | |
#
# - **Time to learn**: 20 minutes.
# - **System requirements**: CPU only; about 1 minute on 2 cores with the defaults.
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
from plan_lite.engine.sampler import PatchSampler, make_train_case
from plan_lite.engine.training_data import make_preprocessor
from plan_lite.labels import LESION_TYPE_NAMES, NUM_LESION_TYPES, patient_output_names
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.losses import PlanCriterion, build_targets, consistency_loss, patient_targets
from plan_lite.model import PLAN
from plan_lite.utils import atomic_write_json

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic"  # dataset written by `make book`; generated into out_dir if absent
out_dir = "../build/lessons/04"  # figures and metrics.json
seed = 0
n_cases = 6  # cases of the fallback dataset when data_dir does not exist
preset = "tiny"
patch_size = [16, 96, 96]  # (D, H, W) of the two patches, divisible by the total stride
opt_steps = 25  # optimisation steps on the crafted outputs
lr = 0.05  # Adam learning rate on the output logits
w_consistency = 0.1  # weight of the consistency term (paper 0.1)
n_reference_cases = 12  # cases read by the shipped reference model in section 4 (0 to skip it)

# %%
def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


check_common(data_dir, out_dir, seed, n_cases, min_cases=3, preset=preset)
need(isinstance(patch_size, (list, tuple)) and len(patch_size) == 3 and all(is_int(s) and s > 0 for s in patch_size),
      f"patch_size must be three ints (D, H, W), got {patch_size!r}")
need(is_int(opt_steps) and opt_steps >= 1, f"opt_steps must be an int >= 1, got {opt_steps!r}")
need(_is_num(lr) and lr > 0, f"lr must be a positive number, got {lr!r}")
need(_is_num(w_consistency) and w_consistency > 0, f"w_consistency must be a positive number, got {w_consistency!r}")
need(is_int(n_reference_cases) and n_reference_cases >= 0, f"n_reference_cases must be an int >= 0, got "
     f"{n_reference_cases!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
metrics = {"preset": preset, "patch_size": list(patch_size), "opt_steps": opt_steps, "w_consistency": w_consistency}

# %% [markdown]
# ## Data and one forward pass
#
# A batch of two training patches: one centred on a lesion of a tumour case and one from a normal subject. The
# patient targets are the training code's soft labels of the patch, $\min(1, \text{voxels}/100)$ per group.

# %%
data_path = ensure_dataset(data_dir, out_path, n_cases, seed)
cfg = get_preset(preset, patch_size=tuple(patch_size), w_consistency=float(w_consistency))
rows = read_cases_csv(data_path / "cases.csv")
tumor_id = next(r["case"] for r in rows if r["group"] == "tumor" and int(r["num_lesions"]) > 0)
other_id = next((r["case"] for r in rows if r["group"] != "tumor"), None)
ds = MSDDataset(data_path, phases=cfg.data.phases)
raws = [ds.load(c) for c in [tumor_id, other_id] if c is not None]
pre = make_preprocessor(cfg).fit(raws)
batch_img, batch_lab = [], []
for raw, fg in zip(raws, (1.0, 0.0)):
    prep = pre(raw)
    tc = make_train_case(raw.case_id, prep.image, prep.label, cfg.train.patch_size, cfg.voxels(cfg.data.min_lesion_volume_mm3))
    img, lab = PatchSampler([tc], cfg.train.patch_size, 1, fg_oversample=fg, seed=seed).sample()
    batch_img.append(img[0])
    batch_lab.append(lab[0])
images, labels = np.stack(batch_img), np.stack(batch_lab)
patient = patient_targets(torch.from_numpy(labels), cfg).numpy()
targets = {"labels": torch.from_numpy(labels), "patient": torch.from_numpy(patient)}
targets["instances"] = build_targets(targets["labels"], cfg)  # computed once, reused by every criterion call
names = patient_output_names(cfg.model.patient_groups)
for i, raw in enumerate(raws):
    pos = [n for n, v in zip(names, patient[i]) if v > 0]
    print(f"patch {i} from {raw.case_id}: patient targets > 0: {pos or 'none'}")
torch.manual_seed(seed)
model = PLAN(cfg).eval()
with torch.no_grad():
    outputs = model(torch.from_numpy(images))
print("outputs:", {k: tuple(v.shape) for k, v in outputs.items() if torch.is_tensor(v)})

# %% [markdown]
# ## 1. Two patient-level readouts
#
# **Lesion branch.** Each query $q$ has a softmax over the 15 classes + no-object. The probability that the
# patient has lesion type $c$ is read as the maximum over queries (anchors included):
#
# $$ d_c = \max_{q} \operatorname{softmax}(z_q)_c , \qquad c \in \{7, \dots, 14\}. $$
#
# **Patient branch.** A memory transformer reads tokens from encoder and FPN features and outputs 11 logits
# (any tumour, benign, malignant, then the 8 types); the per-type probabilities are
# $p_c = \sigma(s_c)$ for the last 8 outputs.
#
# :::{note}
# The max over queries is computed the way `plan_lite.losses.consistency_loss` does it (padded queries
# excluded, no-object in the softmax denominator); the helper below only reads the two vectors out for plotting.
# :::

# %%
def readouts(out):
    """(d, p): (B, 8) max-pooled lesion-branch probabilities and patient-branch per-type probabilities."""
    prob = out["pred_logits"].float().softmax(-1).masked_fill(out["query_padding_mask"].unsqueeze(-1), 0.0)
    d = prob.max(1).values[:, 7:7 + NUM_LESION_TYPES]
    p = out["patient_logits"].float().sigmoid()[:, 3:3 + NUM_LESION_TYPES]
    return d.detach().numpy(), p.detach().numpy()


d0, p0 = readouts(outputs)
fig, axes = plt.subplots(1, len(raws), figsize=(5.2 * len(raws), 3.2), squeeze=False)
xs = np.arange(NUM_LESION_TYPES)
for i, ax in enumerate(axes[0]):
    ax.bar(xs - 0.2, d0[i], 0.4, label="lesion branch $d_c$")
    ax.bar(xs + 0.2, p0[i], 0.4, label="patient branch $p_c$")
    ax.plot(xs, patient[i, 3:], "k_", ms=14, mew=2, label="target", clip_on=False)
    ax.set_xticks(xs, LESION_TYPE_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.08), title=f"patch {i} ({raws[i].case_id}), untrained")
axes[0][0].legend(fontsize=8)
show(fig, out_path, "readouts_untrained")

# %% [markdown]
# ## 2. The consistency term
#
# The paper adds an L2 penalty between the two readouts, weight 0.1 in Eq. 1:
#
# $$ \mathcal{L} = 2\mathcal{L}_{pixel} + \sum_{\text{sets}} \big(2\mathcal{L}_{cls} + 5\mathcal{L}_{BCE} + 5\mathcal{L}_{Dice}\big)
#    + \mathcal{L}_{patient} + 0.1\,\mathcal{L}_{consist}, $$
#
# $$ \mathcal{L}_{consist} = \tfrac12 \sum_{b}\sum_{c} \Big[\big(d_{bc} - \operatorname{sg}(p_{bc})\big)^2
#    + \big(\operatorname{sg}(d_{bc}) - p_{bc}\big)^2\Big] , $$
#
# the official code's form: each branch is pulled toward the other's **detached** value ($\operatorname{sg}$ =
# stop-gradient). Its gradients equal those of $\tfrac12\sum(d - p)^2$; only the logged value is twice as large.
# With `weight=1, reduction="mean"` the package's `consistency_loss` is the mean squared disagreement
# $\overline{(d - p)^2}$, our agreement measure below.

# %%
def disagreement(out):
    """Root-mean-square of d - p over the batch and the 8 types, via the package's consistency_loss."""
    with torch.no_grad():
        return float(consistency_loss(out["pred_logits"], out["patient_logits"], out["query_padding_mask"],
                                      weight=1.0, reduction="mean")) ** 0.5


losses = PlanCriterion(cfg, generator=torch.Generator().manual_seed(seed))(outputs, targets)
print({k: round(float(v), 4) for k, v in losses.items()})
print(f"RMS disagreement |d - p| of the untrained model: {disagreement(outputs):.3f}")

# %% [markdown]
# ## 3. Measured: with and without the consistency term
#
# A full training run is lesson 5's job. Here we isolate the term: the network's outputs are frozen except the
# two things the term acts on, the final class logits $z$ and the patient logits $s$, which become free
# parameters. We minimise the criterion's `total` (class CE with Hungarian matching, patient BCE, and, when
# switched on, the consistency term; pixel and mask terms are constants here) for `opt_steps` Adam steps, once with
# `consistency=True` and once with `consistency=False`, from the same start.

# %%
curves, final = {}, {}
for name, on in (("with consistency", True), ("without consistency", False)):
    c = get_preset(preset, patch_size=tuple(patch_size), w_consistency=float(w_consistency), consistency=on,
                   deep_supervision=False)
    crit = PlanCriterion(c, generator=torch.Generator().manual_seed(seed))
    z = outputs["pred_logits"].clone().requires_grad_(True)
    s = outputs["patient_logits"].clone().requires_grad_(True)
    opt = torch.optim.Adam([z, s], lr=lr)
    hist = []
    for _ in range(opt_steps):
        out = {**outputs, "pred_logits": z, "patient_logits": s, "aux_outputs": []}
        loss = crit(out, targets)
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
        hist.append(disagreement(out))
    curves[name] = hist
    final[name] = {"out": {**outputs, "pred_logits": z.detach(), "patient_logits": s.detach()},
                   "terms": {k: round(float(v), 4) for k, v in loss.items()}}
    print(f"{name}: RMS disagreement {hist[0]:.3f} -> {hist[-1]:.3f}; final terms {final[name]['terms']}")

fig, ax = plt.subplots(figsize=(6, 3.6))
for name, hist in curves.items():
    ax.plot(np.arange(1, opt_steps + 1), hist, label=name)
ax.set(xlabel="step", ylabel="RMS $|d - p|$", title="Lesion vs patient readouts", ylim=(0, None))
ax.legend()
show(fig, out_path, "disagreement")

# %%
fig, axes = plt.subplots(2, len(raws), figsize=(5.2 * len(raws), 6.0), squeeze=False)
for r, name in enumerate(final):
    d, p = readouts(final[name]["out"])
    for i in range(len(raws)):
        ax = axes[r][i]
        ax.bar(xs - 0.2, d[i], 0.4, label="lesion branch $d_c$")
        ax.bar(xs + 0.2, p[i], 0.4, label="patient branch $p_c$")
        ax.plot(xs, patient[i, 3:], "k_", ms=14, mew=2, label="target", clip_on=False)
        ax.set_xticks(xs, LESION_TYPE_NAMES if r else [""] * len(xs), rotation=45, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.08), title=f"{name}, patch {i}")
axes[0][0].legend(fontsize=8)
show(fig, out_path, "readouts_after")

table = ["| run | RMS disagreement at start | after optimisation |", "|---|---|---|"]
table += [f"| {k} | {v[0]:.3f} | {v[-1]:.3f} |" for k, v in curves.items()]
display(Markdown("\n".join(table)))
metrics.update(
    disagreement_start=round(curves["with consistency"][0], 4),
    disagreement_with=round(curves["with consistency"][-1], 4),
    disagreement_without=round(curves["without consistency"][-1], 4),
    consistency_term_untrained=round(float(losses.get("loss_consistency", torch.tensor(float("nan")))), 4),
)

# %% [markdown]
# :::{important}
# Both runs are supervised toward the same targets, so both readouts move toward them; the consistency term adds
# a direct pull of each readout toward the other, so they agree sooner. In real training this matters where
# supervision is weak or noisy: a lesion the lesion branch sees but the patient branch misses (or the reverse)
# costs a penalty until the two reconcile.
# :::
#
# ## 4. A trained model: do its two readouts agree?
#
# The crafted experiment above starts from an untrained network. The shipped **reference model**
# (`plan_lite.reference`: the same `tiny` network trained with the consistency term for 16,000 steps, about 60 CPU minutes)
# shows where real training ends up. For each case, one training-style patch (centred on a lesion for tumour
# patients, anywhere otherwise) goes through the trained model and through an untrained one of the same size; we
# compare the two readouts $d_c$ and $p_c$ per type, and their mean absolute difference.

# %%
if n_reference_cases:
    from plan_lite.config import PlanConfig
    from plan_lite.engine.checkpoint import load_checkpoint
    from plan_lite.reference import checkpoint_path

    ref = load_checkpoint(checkpoint_path())
    rcfg = PlanConfig.from_dict(ref["config"])
    trained = PLAN(rcfg).eval()
    trained.load_state_dict(ref["model"])  # half-precision weights, copied into the float32 model
    torch.manual_seed(seed)
    untrained = PLAN(rcfg).eval()
    rpre = make_preprocessor(rcfg, ref["preprocess"])
    got = {"trained": ([], []), "untrained": ([], [])}
    targets_ref = []
    for r in rows[:n_reference_cases]:
        prep = rpre(ds.load(r["case"]))
        tc = make_train_case(r["case"], prep.image, prep.label, rcfg.train.patch_size,
                             rcfg.voxels(rcfg.data.min_lesion_volume_mm3))
        fg = 1.0 if r["group"] == "tumor" and int(r["num_lesions"]) > 0 else 0.0
        img, lab = PatchSampler([tc], rcfg.train.patch_size, 1, fg_oversample=fg, seed=seed).sample()
        targets_ref.append(patient_targets(torch.from_numpy(lab), rcfg)[0, 3:].numpy())
        with torch.no_grad():
            for name, net in (("trained", trained), ("untrained", untrained)):
                d, p = readouts(net(torch.from_numpy(img)))
                got[name][0].append(d[0])
                got[name][1].append(p[0])
    tgt = np.array(targets_ref)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), squeeze=False)
    for ax, name in zip(axes[0], ("untrained", "trained")):
        d, p = np.array(got[name][0]), np.array(got[name][1])
        ax.scatter(d[tgt == 0], p[tgt == 0], s=12, c="tab:blue", label="type absent from the patch")
        ax.scatter(d[tgt > 0], p[tgt > 0], s=22, c="tab:red", label="type present")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        mad = float(np.abs(d - p).mean())
        metrics[f"reference_mad_{name}"] = round(mad, 4)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="lesion branch $d_c$", ylabel="patient branch $p_c$",
               title=f"{name}: mean |d - p| = {mad:.3f}")
    axes[0][0].legend(fontsize=8, loc="upper left")
    show(fig, out_path, "readouts_reference")
    metrics["reference_cases"] = len(tgt)

# %% [markdown]
# Each point is one (patch, lesion type) pair. The untrained model's two readouts are unrelated (a mean absolute
# difference of about 0.4 in the book's run); the trained model's sit near the diagonal (about 0.05: the
# consistency term's pull, and both branches learning the same targets). The types present in the patch (red)
# get higher readouts from both branches, but after a few CPU minutes of training they stay well below 1: the
# agreement is better learned than the confidence.
#
# The numbers quoted in this lesson are written to `out_dir/metrics.json`:

# %%
metrics["seconds"] = round(time.time() - T0, 1)
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Try it
#
# - `w_consistency = 1.0`: the two curves separate much more; too large a weight lets the branches agree on a
#   wrong answer.
# - `opt_steps = 200`: both runs converge to the targets and to each other; the difference is in how fast they agree.
# - Lesson 7's `no_consistency` variant trains the whole network without the term.
#
# ## Summary
#
# - The lesion branch implies a patient-level answer: the maximum over queries of each lesion class probability.
# - The patient branch answers directly; the consistency loss (weight 0.1, stop-gradient on each side) pulls the
#   two answers together, measured above as a faster drop of the RMS disagreement.
# - The term starts with the patient branch, at epoch 50 of stage 2 in the paper's schedule.
#
# ## What's next
#
# [Lesson 5: training](05_training.ipynb) puts all terms of Eq. 1 together in the two-stage schedule.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Sec. 2.3 (patient branch, consistency loss).
# - Wang et al., *MaX-DeepLab*, CVPR 2021 (dual-path transformer).
