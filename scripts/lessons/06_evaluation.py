# %% [markdown]
# # Lesson 6: Evaluation at pixel, lesion and patient level
#
# PLAN is judged at three levels (paper Tables 1 and 2): **pixel** (tumour Dice), **lesion** (is every lesion
# found, with how many false positives, of which type, down to which size) and **patient** (sensitivity and
# specificity of "this patient has a tumour", AUC of malignant / benign / each type). This lesson predicts the
# test split with the checkpoint of lesson 5 and computes all three with `plan_lite.metrics`.
#
# ## Overview
# 1. Predict the validation and test splits (`plan_lite.engine.predict.predict`).
# 2. Metrics and tables shaped like the paper's Tables 1 and 2 (`evaluate_folders`, `tables_markdown`), against
#    chance, against the same model's pixel branch and against the reference model (16,000 steps, about 60 CPU minutes).
# 3. Patient-level ROC curves with the operating point (Fig. 2 style).
# 4. Lesion recall by size.
# 5. The worst cases: ground truth vs prediction; slice viewer and the lesion browser (NiiVue).
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | [Lesson 5: training](05_training.ipynb) | Necessary | provides the checkpoint (or a short run is trained here) |
# | Precision, recall, Dice | Necessary | |
# | ROC curves and AUC | Helpful | sensitivity vs 1 - specificity over all thresholds |
#
# - **Time to learn**: 30 minutes.
# - **System requirements**: CPU; about 1-2 minutes on 2 cores with the defaults when lesson 5 has run.
#
# ---

# %% [markdown]
# ## Imports

# %%
import json
import time
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

from plan_lite.config import CPU_RECIPE, CPU_SYNTH, get_preset
from plan_lite.data.io import MSDDataset, read_image
from plan_lite.engine.predict import predict
from plan_lite.engine.train import train
from plan_lite.lessons import check_common, ensure_dataset, is_int, need, show
from plan_lite.metrics import evaluate_folders, flatten_metrics, tables_markdown
from plan_lite.utils import atomic_write_json
from plan_lite.viz import montage, plot_recall_by_size, plot_roc, slice_viewer

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
data_dir = "../data/synthetic_cpu"  # the cohort lesson 5 trained on (`make book`); generated if absent
out_dir = "../build/lessons/06"  # predictions, figures and metrics.json
checkpoint = "../build/lessons/05/run/last.pt"  # trained in lesson 5; a short run is trained here if missing
seed = 0
n_cases = 40  # cases of the fallback dataset when data_dir does not exist
split = "test"  # split of cases.csv to evaluate
fallback_steps = 12  # steps of the short run when the checkpoint is missing
fallback_patch = [8, 48, 48]  # (D, H, W) patch of that short run (CPU recipe)
overlap = 0.5  # sliding-window overlap at inference (paper code 0.5)
lesion_output = None  # None: the checkpoint's setting ("instance"); or "instance" / "semantic"
semantic = None  # None: the checkpoint's; "lesion" (lesion-branch map), "pixel" (pixel branch) or "fused"
lesion_decision = None  # None: the checkpoint's; semantic output: "argmax" of the 15 classes or "merged"
compare = True  # also evaluate the pixel branch of the same checkpoint and the shipped reference model
n_worst = 2  # worst cases shown

# %%
check_common(data_dir, out_dir, seed, n_cases, min_cases=5)
need(isinstance(checkpoint, str), f"checkpoint must be a path string, got {checkpoint!r}")
need(split in ("train", "val", "test"), f"split must be train, val or test, got {split!r}")
need(is_int(fallback_steps) and fallback_steps >= 2, f"fallback_steps must be an int >= 2, got {fallback_steps!r}")
need(isinstance(fallback_patch, (list, tuple)) and len(fallback_patch) == 3
      and all(is_int(s) and s > 0 for s in fallback_patch), f"fallback_patch must be three ints, got {fallback_patch!r}")
need(isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0 <= overlap < 1,
      f"overlap must be a number in [0, 1), got {overlap!r}")
need(lesion_output in (None, "instance", "semantic"), f"lesion_output must be None, instance or semantic, got "
     f"{lesion_output!r}")
need(semantic in (None, "lesion", "pixel", "fused"), f"semantic must be None, lesion, pixel or fused, got {semantic!r}")
need(lesion_decision in (None, "argmax", "merged"), f"lesion_decision must be None, argmax or merged, got "
     f"{lesion_decision!r}")
need(isinstance(compare, bool), f"compare must be True or False, got {compare!r}")
need(is_int(n_worst) and n_worst >= 0, f"n_worst must be an int >= 0, got {n_worst!r}")

out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Predict the validation and test splits
#
# `predict(checkpoint, [dataset], out_dir, split=("val", "test"))` preprocesses each case with the statistics stored in the
# checkpoint, runs the network in sliding windows, forms the semantic map from the lesion branch (class
# probability x mask probability summed over queries), extracts lesion instances (26-connected, >= 25 mm$^3$,
# inside the liver), maps everything back to the original grid and writes `{case}.nii.gz`,
# `{case}_lesions.json` and `{case}_patient.json` (the 11 patient-branch probabilities).
#
# The lesions come from the **lesion branch** by Mask2Former's instance inference: every query gets a score (its
# lesion probability times the mean mask probability inside its mask), queries above a threshold paint their masks
# (the higher score x mask probability wins a voxel; with `infer.instance_paint="panoptic"` the background and
# organ queries compete for the voxels too, as in Mask2Former's panoptic inference - better after 4,000 steps,
# nothing found after 1,200, see lesson 7), and each painted region is one lesion with its type and score; a
# lesion is kept only where the pixel branch's lesion probability reaches the **pixel agreement** somewhere inside
# it. Neither number is fixed by fiat: at the end of training `train` chose both on the **validation** split
# (the best lesion F1, or the agreement off when that is within one standard error of it; lesson 5, section 5) and
# stored them in the checkpoint with the other inference settings, so `predict` needs no flag to reproduce what
# training validated (`prediction.json` records what was used). The parameters
# `lesion_output`, `semantic`, `lesion_decision` override the checkpoint (None keeps it).

# %%
data_path = ensure_dataset(data_dir, out_path, n_cases, seed, **CPU_SYNTH)
ckpt = Path(checkpoint) if checkpoint else None
trained_here = False
if ckpt is None or not ckpt.is_file():
    print(f"checkpoint {checkpoint!r} not found (run lesson 5 first for a better model): "
          f"training {fallback_steps} steps here")
    run_dir = out_path / "run"
    if not (run_dir / "last.pt").exists():
        cfg = get_preset("tiny", **{**CPU_RECIPE, "patch_size": tuple(fallback_patch), "seed": seed})
        train(data_path, cfg, run_dir, max_steps=fallback_steps, progress=True, validate=False)
    ckpt, trained_here = run_dir / "last.pt", True
pred_dir = out_path / "pred"
t = time.time()
# the validation split too: the patient threshold is chosen there (Sec. 3), then applied to the evaluated split
splits = ("val", split) if split != "val" else ("val",)
predict(ckpt, [data_path], pred_dir, split=splits, progress=True, overlap=overlap, semantic=semantic,
        lesion_decision=lesion_decision, lesion_output=lesion_output)
print(f"predicted the {' and '.join(splits)} splits in {time.time() - t:.0f} s into {pred_dir}")
used = json.loads((pred_dir / "prediction.json").read_text())
print("inference settings (from the checkpoint):")
for k in ("step", "checkpoint_stage", "lesion_output", "score_threshold", "pixel_agreement", "instance_paint",
          "semantic", "patient_readout", "patient_no_lesion"):
    print(f"  {k}: {used[k]}")

# %% [markdown]
# ## 2. Metrics and the paper's tables
#
# `evaluate_folders(dataset, predictions, cases_csv)` follows the paper's protocol:
#
# - **pixel**: tumour Dice per case (all lesion labels merged), mean over cases with tumour;
# - **lesion**: ground-truth and predicted lesions are 26-connected components; a pair matches when their Dice
#   exceeds 0.2 (one-to-one); lesions under 3 mm radius are not required. Precision, recall per radius bin, and the
#   accuracy of the predicted type of matched lesions:
#
# $$ \text{Dice} = \frac{2|G \cap P|}{|G| + |P|}, \qquad \text{precision} = \frac{TP}{TP + FP}, \qquad
#    \text{recall} = \frac{TP}{TP + FN}; $$
#
# - **patient**: the `any_tumor` score is thresholded at the value chosen on the **validation** split (Youden's J),
#   then sensitivity on tumour patients and specificity on normal and on hard-negative subjects; AUCs for
#   malignant, benign and each type. In the paper a patient's score is the patient branch's output averaged over
#   the voxels of its predicted lesions (`patient_readout: patient`); the CPU recipe takes the mean of that and
#   the highest score of the kept lesions (`fused`), because after a few CPU minutes the patient branch alone
#   hardly ranks patients yet. A case without a lesion scores 0 in the official code (`patient_no_lesion: zero`),
#   or, with the CPU recipe (`pixel`), 1 % of the pixel branch's highest lesion probability in its liver, so that
#   the lesion-free cases are ranked instead of tied at the bottom of the ROC.

# %%
metrics = evaluate_folders(data_path, pred_dir, cases_csv=data_path / "cases.csv", splits=(split,),
                           progress=False, return_curves=True)
display(Markdown(tables_markdown(metrics, title=f"{split} split, {metrics['n_cases']} cases")))
if trained_here:
    display(Markdown("*A very short run trained in this notebook: expect poor numbers. Run lesson 5 first.*"))

# %% [markdown]
# ### What the numbers mean: chance, the pixel branch, a longer training
#
# A recall means little alone. A model that marked a fraction $f$ of the liver as lesion **at random** would
# overlap about a fraction $f$ of the lesions: that fraction is the **chance level** of the recall
# (`marked_liver_fraction`). The table puts the lesion branch next to its chance level, next to the **pixel
# branch of the same checkpoint** (the nnU-Net-like output the anchors are built from, read with the "merged"
# rule: a voxel is a lesion when the summed lesion probability wins), and next to the **reference model** shipped
# with plan-lite (`plan_lite.reference`: the same recipe trained for 16,000 steps, about 60 CPU minutes, on other subjects),
# evaluated on the same split.
#
# The lesion output keeps a lesion only where the pixel branch's lesion probability reaches the **pixel agreement**
# somewhere inside it (`infer.pixel_agreement`, chosen on val with the score threshold at the end of training;
# 0 = off). After a short training most false positives of the lesion branch are tiny masks that the pixel branch
# does not see, with scores as high as the true lesions', so the score threshold cannot remove them and the
# agreement can. When the run chose an agreement above 0, the table also shows the same output without it.

# %%
from scipy.stats import binom  # noqa: E402

from plan_lite.metrics import marked_liver_fraction, recall_from_bins  # noqa: E402


def summary(name, m, pdir):
    les, pat = m["lesion"], m["patient"]
    p, r = les.get("precision"), les.get("recall")
    f1 = 2 * p * r / (p + r) if p and r else None
    return {"model / output": name, "recall": r, "precision": p, "F1": f1,
            "recall r>=10 mm": recall_from_bins(les.get("recall_by_radius") or {}), "Dice": m["pixel"].get("dice"),
            "AUC any tumour": pat.get("auc_any_tumor"), "specificity (normal)": pat.get("specificity_normal"),
            "chance": marked_liver_fraction(data_path, pdir, cases=list(m["per_case"])),
            "found": les.get("tp", 0), "lesions": les.get("tp", 0) + les.get("fn", 0)}


rows = [summary(f"this run: {used['lesion_output']} output (score threshold {used['score_threshold']:g}, "
                f"pixel agreement {used['pixel_agreement']:g})", metrics, pred_dir)]
if compare and used["lesion_output"] == "instance" and used["pixel_agreement"] > 0:
    # the same lesion output without the pixel branch's veto: what the agreement chosen on val removes
    free_dir = out_path / "pred_no_agreement"
    predict(ckpt, [data_path], free_dir, split=splits, progress=False, overlap=overlap, pixel_agreement=0.0)
    m_free = evaluate_folders(data_path, free_dir, cases_csv=data_path / "cases.csv", splits=(split,), progress=False)
    rows.append(summary("this run: instance output, pixel agreement 0 (off)", m_free, free_dir))
if compare:
    pix_dir = out_path / "pred_pixel"
    predict(ckpt, [data_path], pix_dir, split=splits, progress=False, overlap=overlap, lesion_output="semantic",
            semantic="pixel", lesion_decision="merged")
    m_pix = evaluate_folders(data_path, pix_dir, cases_csv=data_path / "cases.csv", splits=(split,), progress=False)
    rows.append(summary("this run: pixel branch (merged)", m_pix, pix_dir))
    from plan_lite.reference import checkpoint_path, provenance

    ref_dir = out_path / "pred_reference"
    predict(checkpoint_path(), [data_path], ref_dir, split=splits, progress=False, overlap=overlap)
    m_ref = evaluate_folders(data_path, ref_dir, cases_csv=data_path / "cases.csv", splits=(split,), progress=False)
    rows.append(summary(f"reference model ({provenance()['steps']} steps): instance output", m_ref, ref_dir))


def cell(v):
    return "-" if v is None else f"{100 * v:.0f}" if isinstance(v, float) else str(v)


head = [k for k in rows[0] if k not in ("found", "lesions")]
table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
table += ["| " + " | ".join(cell(r[k]) for k in head) + " |" for r in rows]
display(Markdown(f"**{split} split, values in %.**\n\n" + "\n".join(table)))
r0 = rows[0]
# how likely random marking of the same fraction of the liver would find at least as many lesions (binomial)
p_chance = float(binom.sf(r0["found"] - 1, r0["lesions"], min(max(r0["chance"], 1e-3), 1.0))) if r0["found"] else 1.0
if r0["recall"] and r0["recall"] > 3 * max(r0["chance"], 1e-3) and p_chance < 0.05:
    verdict = (f"This run's lesion branch finds {r0['found']} of {r0['lesions']} lesions "
               f"({100 * r0['recall']:.0f} %) while marking {100 * r0['chance']:.1f} % of the liver: "
               f"{r0['recall'] / max(r0['chance'], 1e-3):.0f} x chance. Random marking of that fraction would find "
               f"about {r0['lesions'] * r0['chance']:.1f} of them, and as many as {r0['found']} with probability "
               f"{p_chance:.1g} (binomial).")
else:
    verdict = ("This run's lesion branch is **not clearly above chance**: its numbers are not a result. Train "
               "longer in lesson 5 (`max_steps = 3000`) or read the reference model's row.")
display(Markdown(verdict))

# %% [markdown]
# ## 3. Patient-level ROC curves (Fig. 2 style)
#
# Each curve sweeps the threshold on one patient output over the test cases. The marker is the operating point:
# the threshold fixed beforehand on the validation split, applied to the test split.

# %%
pm = metrics["patient"]
curves = metrics.get("_roc", {})
if curves:
    op = None
    if pm.get("sensitivity") is not None and pm.get("specificity") is not None and "any_tumor" in curves:
        op = {"any_tumor": {"fpr": 1 - pm["specificity"], "tpr": pm["sensitivity"], "threshold": pm["threshold"]}}
    show(plot_roc(curves, operating_point=op, title=f"Patient level, {split} split"), out_path, "roc")
else:
    print("ROC undefined: the evaluated split needs both positive and negative patients for some output "
          f"(n = {pm.get('n')}, positives = {pm.get('n_pos')}). Use more cases (make book generates 60).")

# %% [markdown]
# ## 4. Lesion recall by size
#
# The paper's central difficulty: small lesions. Each bar is the recall of ground-truth lesions in a radius bin
# (labelled detected / total).

# %%
show(plot_recall_by_size(metrics["lesion"], title=f"Lesion recall by radius, {split} split"), out_path, "recall_by_size")

# %% [markdown]
# ## 5. The worst cases
#
# Cases with tumour sorted by Dice, worst first. Ground truth is outlined, the prediction filled. In a live
# kernel the slice viewer below lets you scroll through the worst case (the static book shows only the montage).

# %%
per_case = metrics["per_case"]
ranked = sorted((c for c, r in per_case.items() if not r["gt_empty"]), key=lambda c: per_case[c]["dice"])
ranked += [c for c, r in per_case.items() if r["gt_empty"] and r["fp"] > 0]  # false alarms on tumour-free cases
ds = MSDDataset(data_path)
shown = []
for cid in ranked[:n_worst]:
    case = ds.load(cid)
    pred = read_image(pred_dir / f"{cid}.nii.gz")[0].astype(np.uint8)
    r = per_case[cid]
    show(montage(case.image, case.label, pred=pred, spacing=case.spacing, n=4,
                 title=f"{cid}: Dice {r['dice']:.2f}, TP {r['tp']} FP {r['fp']} FN {r['fn']}"), out_path, f"worst_{cid}")
    shown.append((case, pred))
if shown:
    case, pred = shown[0]
    lesions = json.loads((pred_dir / f"{case.case_id}_lesions.json").read_text())["lesions"]
    lesions = [{**les, "centroid": les.get("centroid", les.get("center_voxel_zyx"))} for les in lesions]
    display(slice_viewer(case.image, case.label, pred, lesions=lesions, spacing=case.spacing))

# %% [markdown]
# **The lesion browser.** NiiVue's multiplanar and 3D view of the worst case (`plan_lite.viz.lesion_browser`):
# ground truth and prediction as label overlays, and a table of the ground-truth lesions (type, radius, detected
# or missed, Dice). In a live JupyterLab choosing a row moves the crosshair to that lesion; the static book keeps
# NiiVue's own mouse controls (drag to move the crosshair, scroll through slices, rotate the 3D view).

# %%
if shown:
    from plan_lite.metrics.lesion import lesion_metrics_case
    from plan_lite.viz import lesion_browser

    case, pred = shown[0]
    display(lesion_browser(case.image, case.spacing, gt=case.label, pred=pred, affine=case.affine,
                           lesions=lesion_metrics_case(case.label, pred, case.spacing, details=True),
                           title=f"{case.case_id}: worst case (Dice {per_case[case.case_id]['dice']:.2f})"))

# %% [markdown]
# The metrics are written to `out_dir/metrics.json` with stable dotted keys (`pixel.dice`, `lesion.precision`,
# `lesion.recall`, `patient.sensitivity`, ...):

# %%
flat = flatten_metrics({k: v for k, v in metrics.items() if not k.startswith("_")})
flat.update({"checkpoint": str(ckpt), "trained_here": trained_here, "seconds": round(time.time() - T0, 1),
             "comparison": rows})
atomic_write_json(out_path / "metrics.json", flat)
for k in ("pixel.dice", "lesion.precision", "lesion.recall", "lesion.type_accuracy", "patient.sensitivity",
          "patient.specificity", "patient.auc_any_tumor", "patient.auc_malignant", "patient.auc_benign"):
    print(f"{k:<26} {flat.get(k)}")

# %% [markdown]
# ## Try it
#
# - `overlap = 0.0`: about four times fewer windows, faster, with seams at window borders.
# - `lesion_output = "semantic"`, `lesion_decision = "argmax"`: the official code's inference (the summed query
#   map, then argmax); after a short stage 2 the class head is not yet sharp and it finds fewer lesions.
# - Train longer in lesson 5 (`max_steps = 3000`) and rerun: recall in the small-radius bins is the last to rise.
# - `split = "val"`: the threshold is chosen on val, so val sensitivity / specificity are optimistic.
# - From the shell: `plan-lite predict RUN/last.pt DATASET --split val test --out PRED` and
#   `plan-lite evaluate DATASET PRED --cases DATASET/cases.csv`.
#
# ## Summary
#
# - Pixel Dice, lesion precision / recall (Dice > 0.2 matching, recall by radius) and patient sensitivity /
#   specificity / AUC are computed by `evaluate_folders` and printed as the paper's Tables 1 and 2.
# - The patient threshold is chosen on the validation split and only applied to the test split.
# - Always look at the worst cases: the montage shows whether errors are missed small lesions, false alarms or
#   type confusions.
#
# ## What's next
#
# [Lesson 7: experiments](07_experiments.ipynb) trains the ablations and baselines under one budget and gathers
# them into a Table-4-style comparison.
#
# ## Resources and references
# - Yan et al., MICCAI 2023, Tables 1, 2 and Fig. 2.
# - Maier-Hein et al., *Metrics reloaded*, Nature Methods 2024 (choosing segmentation and detection metrics).
