# %% [markdown]
# # Lesson 5: Training PLAN in two stages
#
# Everything so far comes together in one loss (Eq. 1) and one schedule. PLAN trains in **two stages**: first the
# backbone and pixel branch alone (so the anchors of lesson 2 mean something), then all branches together, with
# the patient branch and the consistency term switched on a little later. This lesson trains the `tiny` preset on
# CPU with `plan_lite.engine.train`, plots every loss term, and stops and resumes a run from its checkpoint.
#
# A few CPU minutes are enough to find lesions with a recipe tuned for speed: the book trains on
# `data/synthetic_cpu` (the realistic generator at 5 x 4 x 4 mm, `plan_lite.config.CPU_SYNTH`) with the overrides
# `plan_lite.config.CPU_RECIPE` (8 x 48 x 48 patches, a third centred on lesions, no augmentation, lr 1e-2, half of
# the steps in stage 2, a fresh optimizer at the stage switch). Section 1 prints every deviation from the preset.
# On a GPU, `recipe = "preset"` trains with the preset's own settings.
#
# ## Overview
# 1. The loss (Eq. 1) and the two-stage schedule.
# 2. Training with live progress (`plan_lite.engine.train.train`).
# 3. Checkpoint and exact resume.
# 4. Loss curves per term from the run's `log.jsonl`.
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | Lessons [2](02_anchor_queries.ipynb), [3](03_fes_loss.ipynb), [4](04_consistency_loss.ipynb) | Helpful | the terms of the loss |
# | PyTorch training loop, optimiser, learning-rate schedule | Necessary | |
# | GPU training | Helpful | the same cell runs `preset="paper", recipe="preset", device="cuda"` |
#
# - **Time to learn**: 30 minutes.
# - **System requirements**: CPU, about 3 minutes on two cores with the defaults; the `paper` preset needs a GPU
#   (about 24 GB at batch 2, patch 24 x 256 x 256).
#
# ---

# %% [markdown]
# ## Imports

# %%
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from IPython.display import Markdown, display

from plan_lite.config import CPU_RECIPE, CPU_SYNTH, config_diff, get_preset
from plan_lite.engine.checkpoint import load_checkpoint
from plan_lite.engine.train import Schedule, train
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.model import PLAN
from plan_lite.utils import atomic_write_json
from plan_lite.viz import plot_loss_curves
from plan_lite.viz.plots import read_log

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic_cpu"  # the 5 x 4 x 4 mm cohort written by `make book`; generated if absent
out_dir = "../build/lessons/05"  # the run goes to out_dir/run (log.jsonl, last.pt, best.pt)
seed = 0
n_cases = 40  # cases of the fallback dataset when data_dir does not exist
preset = "tiny"  # paper on a GPU
recipe = "cpu"  # "cpu": plan_lite.config.CPU_RECIPE on top of the preset; "preset": the preset as it is (GPU)
device = "cpu"  # cuda on a GPU
max_steps = 1500  # total optimiser steps, split between the stages in the ratio of the recipe
patch_size = []  # (D, H, W), or [] for the patch of the recipe / preset
batch_size = 2
resume_at = 300  # stop the run after this many steps, then resume it (0 for no stop)
val_every = 300  # validate (8 val cases) every this many steps; the tiny preset's 50 would cost a minute more here
max_minutes = 8.0  # wall-clock budget of the whole run (ends cleanly, checkpoint written)

# %%
check_common(data_dir, out_dir, seed, n_cases, min_cases=3, preset=preset)
need(recipe in ("cpu", "preset"), f"recipe must be 'cpu' or 'preset', got {recipe!r}")
need(device in ("cpu", "cuda") or (isinstance(device, str) and device.startswith("cuda:")),
      f"device must be 'cpu' or 'cuda', got {device!r}")
need(device == "cpu" or torch.cuda.is_available(), f"device {device!r} requested but CUDA is not available")
need(is_int(max_steps) and max_steps >= 2, f"max_steps must be an int >= 2, got {max_steps!r}")
need(isinstance(patch_size, (list, tuple)) and (len(patch_size) == 0 or (len(patch_size) == 3 and all(
    is_int(s) and s > 0 for s in patch_size))), f"patch_size must be [] or three ints (D, H, W), got {patch_size!r}")
need(is_int(batch_size) and batch_size >= 1, f"batch_size must be an int >= 1, got {batch_size!r}")
need(is_int(resume_at) and 0 <= resume_at < max_steps, f"resume_at must be an int in 0..max_steps-1, got {resume_at!r}")
need(is_int(val_every) and val_every >= 1, f"val_every must be an int >= 1, got {val_every!r}")
need(isinstance(max_minutes, (int, float)) and not isinstance(max_minutes, bool) and max_minutes > 0,
      f"max_minutes must be a positive number, got {max_minutes!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
metrics = {"preset": preset, "device": device}

# %% [markdown]
# ## 1. The loss and the schedule
#
# $$ \mathcal{L} = 2\,(\mathcal{L}^{pix}_{CE} + \mathcal{L}^{pix}_{Dice})
#    + \sum_{\text{sets}} \big(2\,\mathcal{L}_{cls} + 5\,\mathcal{L}_{BCE} + 5\,\mathcal{L}_{Dice}\big)
#    + 1\cdot\mathcal{L}_{patient} + 0.1\,\mathcal{L}_{consist} $$
#
# | stage | trains | loss terms (log keys) |
# |---|---|---|
# | 1 | backbone + pixel branch | `loss_pixel_ce`, `loss_pixel_dice` |
# | 2 | all branches | + `loss_class`, `loss_mask`, `loss_dice` (final set), `loss_aux` (deep supervision) |
# | 2, from the patient start | + patient branch | + `loss_patient`, `loss_consistency` |
#
# The paper trains 500 + 500 epochs of 250 iterations (RAdam, lr 1e-4, poly decay, batch 2, patch
# 24 x 256 x 256); the patient branch and the consistency term start at epoch 50 of stage 2. `max_steps` shrinks
# that schedule keeping its proportions.

# %%
data_path = ensure_dataset(data_dir, out_path, n_cases, seed, **CPU_SYNTH)
overrides = {**(CPU_RECIPE if recipe == "cpu" else {}), "seed": seed, "batch_size": batch_size, "val_every": val_every}
if patch_size:
    overrides["patch_size"] = tuple(patch_size)
cfg = get_preset(preset, **overrides)
display(Markdown("Options that differ from the preset:\n\n| option | preset | here |\n|---|---|---|\n" + "\n".join(
    f"| `{k}` | {a} | {b} |" for k, a, b in config_diff(get_preset(preset), cfg))))
sched = Schedule.from_config(cfg, max_steps)
print(f"preset {cfg.name}: patch {cfg.train.patch_size}, batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
      f"K = {cfg.loss.num_points}, Q = {cfg.model.num_queries}")
print(f"schedule for {max_steps} steps: stage 1 = steps 1..{sched.stage1}, stage 2 = steps {sched.stage1 + 1}.."
      f"{sched.total}, patient + consistency from step {sched.patient_start + 1}")
print("parameters per branch:", PLAN(cfg).parameter_counts())

# %% [markdown]
# ## 2. Train
#
# `train(dataset_dir, cfg, out_dir, max_steps=..., device=...)` preprocesses the train split once (intensity
# statistics from the train split only), samples patches (a third centred on lesions, the rest anywhere in the
# case, as nnU-Net), augments them (not with the CPU recipe), and logs every step to `out_dir/log.jsonl`. Every
# `val_every` steps it predicts 8 val cases and keeps the best stage-2 checkpoint as `best.pt`. The progress bar shows the current loss terms. On a GPU the same call
# with `preset = "paper"`, `recipe = "preset"`, `device = "cuda"` trains the full model (mixed precision on).
#
# Here the run is stopped after `resume_at` steps (`stop_after`), as if the machine had been switched off.

# %%
run_dir = out_path / "run"
if run_dir.exists():
    shutil.rmtree(run_dir)  # a fresh run every time the lesson is executed
t_start = time.time()
first_budget = max_minutes * resume_at / max_steps if resume_at else max_minutes  # keep time for the resume
train(data_path, cfg, run_dir, max_steps=max_steps, device=device, progress=True,
      stop_after=resume_at or None, max_minutes=first_budget)
t_first = time.time() - t_start
print(f"first part: {t_first:.0f} s; run folder: {sorted(p.name for p in run_dir.iterdir())}")

# %% [markdown]
# ## 3. Checkpoint and resume
#
# `last.pt` holds the model, optimiser, schedule, preprocessing statistics, the config and **every random state**
# (Python, NumPy, torch, patch sampler, augmentation), in a format loaded with `torch.load(weights_only=True)`
# (no pickled code). `train(..., resume=True)` continues exactly where the run stopped: the resumed run draws the
# same patches and gives the same losses as an uninterrupted one.

# %%
state = load_checkpoint(run_dir / "last.pt")
print(f"checkpoint at step {state['step']} (stage {state['stage']}); keys: {sorted(state)}")
display(Markdown("| checkpoint field | content |\n|---|---|\n" + "\n".join(
    f"| `{k}` | {type(v).__name__}{f' ({len(v)} entries)' if hasattr(v, '__len__') else ''} |"
    for k, v in sorted(state.items()))))
remaining = max_minutes - t_first / 60.0
if state["step"] < max_steps and remaining > 0.1:
    train(data_path, cfg, run_dir, resume=True, device=device, progress=True, max_minutes=remaining)
seconds = time.time() - t_start
final = load_checkpoint(run_dir / "last.pt")
print(f"finished at step {final['step']} of {max_steps} in {seconds:.0f} s")

# %% [markdown]
# ## 4. Loss curves
#
# One curve per term of Eq. 1 (already weighted), against the step. The dashed line marks the start of
# stage 2: the lesion-branch terms appear, and the total jumps because it now contains more terms.

# %%
log = read_log(run_dir / "log.jsonl")
show(plot_loss_curves(log, smooth=max(1, len(log) // 20), title=f"{cfg.name}: loss terms (weighted)"), out_path, "loss_curves")
val_log = run_dir / "val.jsonl"
if val_log.exists() and val_log.read_text().strip():
    vals = [json.loads(line) for line in val_log.read_text().splitlines()]
    display(Markdown("Validation during training (8 val cases, the checkpoint's inference settings *before* "
                     "section 5 chooses them, so a short run's lesion scores may not reach the default 0.5):\n\n"
                     "| step | stage | tumour Dice | lesions found | false positives | score |\n|---|---|---|---|---|---|\n"
                     + "\n".join(f"| {v['step']} | {v['stage']} | {v.get('dice') or 0:.2f} | {v.get('tp', 0)} of "
                                  f"{v.get('tp', 0) + v.get('fn', 0)} | {v.get('fp', 0)} | {v.get('score', 0):.3f} |"
                                  for v in vals)))

# %% [markdown]
# ## 5. The operating point, chosen on validation
#
# At the end of the run `train` predicts the validation split once more and chooses how the lesion branch's
# output becomes lesions (`plan_lite.engine.calibrate`): the **score threshold** a query needs (its lesion
# probability x mask quality) and the **pixel agreement**, the lesion probability the pixel branch must reach
# somewhere inside a lesion for it to be kept (0 = off). The pair with the best lesion F1 on val goes into the
# checkpoint's `cfg.infer` - unless the agreement-off pair is within one bootstrap standard error of it, then that
# simpler pair does - so `predict` (lesson 6) reproduces it without flags; the test split is never looked at.
# The table is that F1 for every pair (chosen cell in bold). After a short training the scores of true and false
# lesions are alike, so the score threshold changes little; most false positives are small masks the pixel branch
# does not see, which the agreement removes.

# %%
from plan_lite.engine.calibrate import calibration_markdown  # noqa: E402

cal_path = run_dir / "calibration_last.json"
calibration = json.loads(cal_path.read_text()) if cal_path.exists() else None
if calibration and "table" in calibration:
    display(Markdown(calibration_markdown(calibration)))
    metrics.update(score_threshold=calibration["score_threshold"], pixel_agreement=calibration["pixel_agreement"],
                   val_lesion_f1=calibration["val"]["f1"])
else:
    print("no calibration (the run ended in stage 1, or the dataset has no val split):",
          (calibration or {}).get("skipped", "calibration_last.json absent"))

# %% [markdown]
# The numbers quoted in this lesson are written to `out_dir/metrics.json`: the first and last logged total loss,
# the pixel-branch loss (comparable across the stages), the steps and the wall-clock seconds.

# %%
def pixel(rec):
    return rec["loss_pixel_ce"] + rec["loss_pixel_dice"]


n_avg = max(1, min(3, len(log) // 4))
metrics.update(
    steps=int(final["step"]), max_steps=max_steps, stage1_steps=sched.stage1,
    first_loss=round(float(log[0]["total"]), 4), last_loss=round(float(log[-1]["total"]), 4),
    first_pixel_loss=round(float(np.mean([pixel(r) for r in log[:n_avg]])), 4),
    last_pixel_loss=round(float(np.mean([pixel(r) for r in log[-n_avg:]])), 4),
    seconds=round(seconds, 1), seconds_per_step=round(seconds / max(1, final["step"]), 2),
    resumed_at=int(state["step"]), checkpoint=str((run_dir / "last.pt").resolve()),
)
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Try it
#
# - Compare budgets (evaluated as in lesson 6). `benchmarks/bench_budget.py` measured this recipe on a 240-case
#   cohort (84 test patients, 171 lesions) with the operating point chosen on val as above: PLAN after 10 CPU
#   minutes (about 4,800 steps; three seeds) finds 52 ± 9 % of the lesions at 86 ± 10 % precision (chance 2 %),
#   83 ± 15 % of those of radius >= 10 mm, lesion F1 64 ± 4 % against 47 % for the pixel-only baseline at the same
#   CPU time, patient AUC (any tumour) 89 ± 2 %; seed 0 after 5 minutes F1 49 % (precision 98 %), after 2.5 minutes
#   35 %, where the pixel-only baseline (39 %) is still ahead. The reference model (16,000 steps, its agreement off)
#   finds 61 % at 53 % precision on its own test split. A run of this lesson varies: with one torch thread it
#   repeats exactly on one machine (the book build), but floating-point sums differ with the thread count and
#   between machines, and 1,500 steps on 30 training cases are early in the training. Measured on a
#   2-core machine, lesion F1 on lesson 6's 12 test cases (27 lesions): 42 % with two threads and 18 % in the
#   book build (one thread) after 1,500 steps (8 and 3 lesions found at precision 73 and 50 %), 11 % and 24 % in two
#   runs of 1,200. Try `max_steps = 3000` and
#   compare lesson 6's table.
# - `stage2_warmup = 0` and `stage2_optimizer = "continue"` (add them to the overrides): the pixel loss jumps at
#   the stage switch (measured 1.73 -> 2.66 over the first 60 stage-2 steps, against 1.78 with the recipe).
# - `recipe = "preset"` on the same data: the tiny preset's 16 x 96 x 96 patches, a third of them on lesions, full
#   augmentation and lr 1e-3 - about ten times slower per step and far slower to learn on a CPU budget.
# - On a GPU: `preset = "paper"`, `recipe = "preset"`, `device = "cuda"`, `data_dir = "../data/synthetic"`,
#   `max_steps = 2000`, `max_minutes = 60`.
# - Set `resume_at = 0` and compare the loss curve with a stopped-and-resumed run of the same seed: identical.
# - From the shell: `plan-lite train DATASET --preset tiny --out runs/tiny --max-steps 60` and
#   `--resume` (the same function).
#
# ## Summary
#
# - Eq. 1 sums the pixel, lesion (per prediction set), patient and consistency terms with weights 2 / 2-5-5 / 1 /
#   0.1; the log keeps every term.
# - Stage 1 trains the pixel branch alone, so the anchors are meaningful when stage 2 starts.
# - A checkpoint carries model, optimiser, schedule, statistics and all random states; resume is exact.
# - The lesion operating point (score threshold, pixel agreement) is chosen on val at the end and stored in the
#   checkpoint.
#
# ## What's next
#
# [Lesson 6: evaluation](06_evaluation.ipynb) predicts the test split with this checkpoint and scores it at pixel,
# lesion and patient level.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Sec. 2.4 and 3 (loss, training details).
# - Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond (RAdam)*, ICLR 2020.
