# %% [markdown]
# # Lesson 7: Experiments: ablations and baselines
#
# The paper's Table 4 removes one component at a time (anchor queries, FES, the consistency loss) and compares
# PLAN with an nnU-Net-like pixel-only model and a plain 3D Mask2Former. Every variant is a switch of the config
# (`plan_lite.config.VARIANTS`), so one function trains, predicts and evaluates them all under the **same budget**:
# `plan_lite.engine.experiment.run_experiment`. This lesson runs a small sweep live, gathers it into a
# Table-4-style table and a plot, and then shows the same table from a longer CPU run of all six variants
# (600 steps each, measured with the same command and committed with the project).
#
# ## Overview
# 1. The variants as config overrides.
# 2. One budget, every variant: `run_experiment` (or `plan-lite experiment`, or `plan-lite sweep` over lesson 5).
# 3. The ablation table and a precision / recall plot.
# 4. The reference run: all six variants, 600 steps each.
# 5. Sweeping a lesson's parameters: `plan_lite.sweep` runs lesson 3 for several numbers of FES points.
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | Lessons [5](05_training.ipynb) and [6](06_evaluation.ipynb) | Necessary | training and evaluation |
# | Ablation studies | Helpful | change one thing at a time, keep the rest fixed |
#
# - **Time to learn**: 20 minutes (plus the runs you launch yourself).
# - **System requirements**: CPU; about 1 minute per variant on one core with the defaults (each variant
#   preprocesses the train split, trains, predicts and evaluates the test split). Meaningful comparisons need the
#   `paper` preset on a GPU for hours per variant. The lesson-3 sweep of section 5 adds about 10 s per run.
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
from IPython.display import Image, Markdown, display

from plan_lite.config import CPU_RECIPE, CPU_SYNTH, VARIANTS, config_diff, get_preset
from plan_lite.engine.experiment import ablation_markdown, run_experiment
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.sweep import plot, run_sweep
from plan_lite.utils import atomic_write_json

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic_cpu"  # the 5 x 4 x 4 mm cohort written by `make book`; generated if absent
out_dir = "../build/lessons/07"  # one folder per variant plus ablation.json / ablation.md
seed = 0
n_cases = 40  # cases of the fallback dataset when data_dir does not exist
preset = "tiny"
recipe = "cpu"  # "cpu": plan_lite.config.CPU_RECIPE on top of the preset; "preset": the preset as it is (GPU)
variants = ["plan", "pixel_only"]  # any of plan no_anchor no_fes no_consistency pixel_only mask2former
max_steps = 100  # training steps per variant (the reference run below used 600)
patch_size = []  # (D, H, W) training patch of every variant, or [] for the recipe's
overlap = 0.0  # sliding-window overlap at inference (0 is fastest)
reference = "../benchmarks/results/ablation_tiny_cpu.json"  # the committed longer run ("" to skip)
sweep_fes_points = [1, 2, 3]  # values of lesson 3's fes_fg_points swept in section 5 ([] skips the sweep)

# %%
check_common(data_dir, out_dir, seed, n_cases, min_cases=5, preset=preset)
need(isinstance(variants, (list, tuple)) and len(variants) >= 1 and all(v in VARIANTS for v in variants),
      f"variants must be a list of {sorted(VARIANTS)}, got {variants!r}")
need(recipe in ("cpu", "preset"), f"recipe must be 'cpu' or 'preset', got {recipe!r}")
need(is_int(max_steps) and max_steps >= 2, f"max_steps must be an int >= 2, got {max_steps!r}")
need(isinstance(patch_size, (list, tuple)) and (len(patch_size) == 0 or (len(patch_size) == 3 and all(
    is_int(s) and s > 0 for s in patch_size))), f"patch_size must be [] or three ints (D, H, W), got {patch_size!r}")
need(isinstance(reference, str), f"reference must be a path string, got {reference!r}")
need(isinstance(sweep_fes_points, (list, tuple)) and all(is_int(n) and n >= 1 for n in sweep_fes_points)
      and len(set(sweep_fes_points)) == len(sweep_fes_points),
      f"sweep_fes_points must be a list of distinct ints >= 1, got {sweep_fes_points!r}")
need(isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0 <= overlap < 1,
      f"overlap must be a number in [0, 1), got {overlap!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The variants
#
# | variant | what changes | paper |
# |---|---|---|
# | `plan` | nothing: anchors + FES + patient branch + consistency | PLAN |
# | `no_anchor` | learned queries only | Table 4, w/o anchor queries |
# | `no_fes` | importance + uniform points only | Table 4, w/o FES |
# | `no_consistency` | no lesion-patient consistency term | Table 4, w/o consistency |
# | `pixel_only` | backbone + pixel branch (nnU-Net-like), patient score from the predicted tumour volume | nnU-Net baseline |
# | `mask2former` | learned queries with positional embedding, no FES, no patient branch | 3D Mask2Former baseline |
#
# Each row is a handful of config overrides on the preset; the config diff against `plan`:

# %%
base = get_preset(preset)
rows = ["| variant | overrides | changed options |", "|---|---|---|"]
for v in VARIANTS:
    diff = config_diff(base, get_preset(preset, **VARIANTS[v]))
    rows.append(f"| `{v}` | `{VARIANTS[v]}` | {', '.join(f'`{k}`' for k, _, _ in diff) or '-'} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 2. One budget, every variant
#
# `run_experiment(dataset, out, preset, variants, max_steps=...)` trains each variant with the same data, seed
# and step budget (`OUT/{variant}/run`), predicts the test split (`OUT/{variant}/pred`), evaluates it
# (`OUT/{variant}/metrics.json`) and writes `ablation.json` / `ablation.md`. A variant whose run already exists is
# resumed, so the sweep can be interrupted. The same sweep from the shell:
#
# ```bash
# plan-lite experiment data/synthetic_cpu --preset tiny --max-steps 600 --out runs/ablation \
#     --no-validate --lesion-decision merged --set spacing=5,4,4 --set patch_size=8,48,48 ...  # CPU_RECIPE
# ```
#
# or, to keep every run as an executed notebook, `plan-lite sweep` over lesson 5 (one executed copy and one
# `metrics.json` per value, gathered into `runs/batch/results.md`; section 5 and the book page *Parameter sweeps*):
#
# ```bash
# plan-lite sweep notebooks/05_training.ipynb --param batch_size 1 2 4 --set max_steps 200 --set resume_at 0 \
#     --out runs/batch --jobs 2 --plot last_pixel_loss:batch_size
# ```
#
# Every variant is predicted with the `"merged"` lesion decision (lesson 6) and its own semantic map (the lesion
# branch where there is one, the pixel branch for `pixel_only`).
#
# :::{warning}
# With 100 CPU steps per variant the networks are barely trained: the live numbers exercise the machinery, they
# are **not** evidence for or against any component. Section 4 shows a longer run; the paper trains 2 x 500
# epochs per variant.
# :::

# %%
data_path = ensure_dataset(data_dir, out_path, n_cases, seed, **CPU_SYNTH)
sweep_dir = out_path / "sweep"
overrides = dict(CPU_RECIPE) if recipe == "cpu" else {}
if patch_size:
    overrides["patch_size"] = tuple(patch_size)
t = time.time()
report = run_experiment(data_path, sweep_dir, preset=preset, variants=list(variants), max_steps=max_steps, seed=seed,
                        overrides=overrides, progress=False, overlap=overlap, validate=False,
                        lesion_decision="merged")
print(f"{len(variants)} variants in {time.time() - t:.0f} s")

# %% [markdown]
# ## 3. The ablation table (Table 4 style) and a plot

# %%
display(Markdown((sweep_dir / "ablation.md").read_text()))
res = report["results"]
names = list(res)
prec = [res[v]["summary"].get("precision") for v in names]
rec = [res[v]["summary"].get("recall") for v in names]
fig, ax = plt.subplots(figsize=(7, 3.4))
xs = np.arange(len(names))
ax.bar(xs - 0.2, [np.nan if p is None else p for p in prec], 0.4, label="lesion precision")
ax.bar(xs + 0.2, [np.nan if r is None else r for r in rec], 0.4, label="lesion recall")
ax.set_xticks(xs, names, rotation=20)
ax.set(ylim=(0, 1), ylabel="test split", title=f"{preset}, {max_steps} steps per variant")
ax.legend(fontsize=8)
show(fig, out_path, "ablation")

# %% [markdown]
# ## 4. The reference run: six variants, 600 steps each
#
# The same `run_experiment` call with all six variants and `max_steps = 600` (the end-to-end test's budget) on 60
# easy cases, run once on a 2-core CPU and committed as `benchmarks/results/ablation_tiny_cpu.json` (the file
# records the command, the machine, the date and the wall time). Read it like the live table, with the same
# caution: one seed, 12 test patients, 600 steps instead of 250 000 - differences of a few lesions are noise.
#
# What it shows at this budget: the **pixel-only baseline leads** (recall 37 %, the highest Dice and patient AUC),
# the models whose lesions come from the lesion branch's semantic map find few or none. Each variant had 480
# stage-1 and 120 stage-2 steps; the pixel branch is trained from the first step, the lesion branch's queries and
# mask head only in those 120 steps. The paper's ordering (PLAN ahead of every ablation and of both baselines)
# appears after 500 stage-2 epochs on a GPU - this table measures how far a CPU budget is from that, not which
# component matters.

# %%
ref_path = Path(reference) if reference else None
ref_rows = {}
if ref_path is not None and ref_path.is_file():
    ref = json.loads(ref_path.read_text())
    ref_rows = {v: r["summary"] for v, r in ref["results"].items()}
    display(Markdown(ablation_markdown(ref_rows, {**ref, "dataset": Path(ref["dataset"]).name})))
    prov = ref.get("provenance", {})
    print("provenance:", ", ".join(f"{k}: {v}" for k, v in prov.items()))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    xs = np.arange(len(ref_rows))
    for i, (key, label) in enumerate((("precision", "lesion precision"), ("recall", "lesion recall"),
                                      ("auc_any_tumor", "patient AUC (any tumour)"))):
        ax.bar(xs + (i - 1) * 0.27, [np.nan if r.get(key) is None else r[key] for r in ref_rows.values()], 0.27,
               label=label)
    ax.set_xticks(xs, list(ref_rows), rotation=20)
    ax.set(ylim=(0, 1), ylabel="test split", title=f"reference run: {ref['preset']}, {ref['max_steps']} steps per variant")
    ax.legend(fontsize=8)
    show(fig, out_path, "ablation_reference")
else:
    print(f"no reference results at {reference!r}")

# %% [markdown]
# ## 5. Sweeping a lesson's parameters
#
# `run_experiment` sweeps config variants of one training recipe. For any other question - "lesson 5 with
# `batch_size = 4`", "lesson 3 with fewer FES points" - `plan_lite.sweep.run_sweep(notebook, {name: [values]}, out)`
# executes a lesson once per combination of parameter values with papermill (`mode="grid"`: every combination,
# `"zip"`: the i-th values together), each into `out/<run>/` with its own `out_dir`, and gathers the
# `metrics.json` of every run into one table (`results.csv`, `results.md`). Finished runs are kept, so a sweep
# can be interrupted and extended; a failing run is reported and does not stop the others. From the shell:
# `plan-lite sweep NOTEBOOK --param NAME VALUE [VALUE ...] --out DIR [--jobs N] [--plot METRIC:PARAM]`.
#
# Here: lesson 3 for each of `sweep_fes_points` FES points $n$, on 2 synthetic cases with 2 draws per lesion and
# without its model demo. Lesson 3 writes `frac_lesions_zero_fg_fes`, the share of (lesion, draw) samplings in
# which a lesion gets **no** foreground point with FES, and `frac_lesions_zero_fg_importance` for importance
# sampling alone; the share of draws that *contain* a lesion point is one minus these.

# %%
sweep = None
if sweep_fes_points:
    t = time.time()
    sweep = run_sweep("03_fes_loss.ipynb", {"fes_fg_points": list(sweep_fes_points)}, out_path / "fes_sweep",
                      fixed={"n_cases": 2, "n_draws": 2, "demo_patch": [], "seed": seed}, progress=False)
    print(f"{len(sweep.rows)} runs of lesson 3 in {time.time() - t:.0f} s ({len(sweep.failed)} failed)")
    shown = ["n_lesions", "n_samplings", "min_fg_points_fes", "frac_lesions_zero_fg_fes",
             "frac_lesions_zero_fg_importance"]
    display(Markdown(sweep.to_markdown(metrics=shown)))
    if sweep.ok:
        png = out_path / "fes_sweep.png"
        plot(sweep, ["frac_lesions_zero_fg_fes", "frac_lesions_zero_fg_importance"], "fes_fg_points", png,
             title="lesson 3: samplings with no foreground point")
        display(Image(data=png.read_bytes(), format="png"))

# %% [markdown]
# With FES no sampling misses its lesion, whatever $n \ge 1$; importance sampling alone misses a share of the
# small lesions (that column changes a little between runs only because the random draws differ).
#
# The per-variant summaries (and the sweep's rows) are written to `out_dir/metrics.json`:

# %%
metrics = {"preset": preset, "max_steps": max_steps, "variants": names,
           "results": {v: {k: res[v]["summary"].get(k) for k in ("precision", "recall", "dice", "auc_any_tumor")}
                       for v in names},
           "reference_variants": list(ref_rows),
           "fes_sweep": [{k: r.get(k) for k in ("run", "status", "fes_fg_points", "min_fg_points_fes",
                                                 "frac_lesions_zero_fg_fes", "frac_lesions_zero_fg_importance")}
                         for r in sweep.rows] if sweep else [],
           "seconds": round(time.time() - T0, 1)}
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))

# %% [markdown]
# ## Try it
#
# - The full Table 4: `variants = ["plan", "no_anchor", "no_fes", "no_consistency", "pixel_only", "mask2former"]`.
# - Reproduce the reference run: `variants` = all six, `max_steps = 600`, on a 60-case easy cohort (`plan-lite
#   synth data/easy60 --cases 60 --spacing 5 4 4 --shape 24 96 96 --lesion-contrast 2 --noise-scale 0.5`), about
#   40 minutes on 2 cores.
# - On a GPU: `preset = "paper"`, `patch_size = [24, 256, 256]` and thousands of steps per variant.
# - Add your own variant: any config option works as an override, e.g. `fes_fg_points = 2` (the official code's
#   value) or `num_queries = 50`.
# - Sweep lesson 3's K as well: `run_sweep("03_fes_loss.ipynb", {"fes_fg_points": [1, 3], "num_points": [3136,
#   12544]}, ...)` gives 4 runs; `plot(sweep, "frac_lesions_zero_fg_importance", "num_points", path)` draws one line
#   per value of `fes_fg_points`. `jobs=2` runs two at a time.
#
# ## Summary
#
# - Every ablation and baseline is a config override, trained, predicted and evaluated by one function under one
#   budget and one seed.
# - `ablation.md` is the paper's Table 4 layout: lesion precision / recall, recall by radius, type accuracy,
#   Dice and patient AUCs per variant.
# - Tiny budgets test the pipeline; conclusions need paper-scale training.
# - `plan_lite.sweep` / `plan-lite sweep` runs any lesson over a grid of parameter values and gathers the
#   `metrics.json` of every run into one table.
#
# ## What's next
#
# [Lesson 8: your own CT](08_real_ct.ipynb) takes a real scan through a model trained on synthetic data and
# measures the gap. Or back to [Lesson 1](01_data_preparation.ipynb) to change the data (more small lesions, more
# hard negatives) and see which component matters where.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Table 4 (ablations), Tables 1-2 (baselines).
# - Isensee et al., *nnU-Net*, Nature Methods 2021; Cheng et al., *Mask2Former*, CVPR 2022.
