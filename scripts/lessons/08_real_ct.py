# %% [markdown]
# # Lesson 8: Your own CT: a real scan through plan-lite
#
# Every model in lessons 2-7 learned and was tested on synthetic CT. That is a good start for teaching, but
# it tells you nothing about real patients. This lesson runs a **real** abdominal CT through plan-lite with a
# non-contrast (NC) model trained **only on synthetic data**. It measures how large the synthetic-to-real gap
# is, at the three places where we have a reference on this scan: the liver, the other organs, and the false
# alarms on a subject with no lesion.
#
# The scan is the test CT of TotalSegmentator (Wasserthal et al. 2023, Apache-2.0), shipped with plan-lite in
# `plan_lite.sample_data`:
#
# - a non-contrast scan (TotalSegmentator's phase estimate: native), 3 mm isotropic;
# - a liver mask and an organ map predicted by TotalSegmentator (model outputs, not expert labels);
# - **no liver lesion**, so every lesion a model finds here is a false positive.
#
# ## Overview
# 1. Load the scan and look at it: geometry, HU, the organ map.
# 2. Check it as a one-case NC dataset with `plan-lite validate`.
# 3. Predict with the shipped NC reference model (`plan-lite predict`) and time it.
# 4. The gap, measured: liver Dice and organ Dice against TotalSegmentator, and false-positive lesions per scan,
#    each next to the same model's figure on synthetic NC scans.
# 5. Look at the result in the lesion browser.
# 6. DICOM: the same scan as a DICOM series, predicted from the folder.
#
# ## Prerequisites
#
# | Concepts | Importance | Notes |
# |---|---|---|
# | [Lesson 1: data](01_data_preparation.ipynb) | Necessary | NIfTI, (z, y, x), the label map |
# | [Lesson 6: evaluation](06_evaluation.ipynb) | Necessary | Dice, lesion matching, false positives |
# | CT windows and Hounsfield units | Helpful | liver about 55 HU without contrast |
# | DICOM series | Helpful | one file per slice, geometry in the headers |
#
# - **Time to learn**: 30 minutes.
# - **System requirements**: CPU; about 3-5 minutes on 2 cores with the defaults (sliding windows of the training
#   patch over a whole scan: about 270 windows).
#
# ---

# %% [markdown]
# ## Imports

# %%
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from plan_lite.config import CPU_SYNTH
from plan_lite.data.io import read_image, write_image, write_label
from plan_lite.engine.predict import predict
from plan_lite.labels import LABEL_NAMES, LESION_LABELS, LIVER_LABEL
from plan_lite.lessons import check_common, ensure_dataset, need, show
from plan_lite.metrics.pixel import mask_dice as dice
from plan_lite.sample_data import TOTALSEG_TO_PLAN, real_ct
from plan_lite.utils import atomic_write_json
from plan_lite.viz import lesion_browser, montage

T0 = time.time()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
scan_dir = ""  # folder with your own NC scan as ct.nii.gz (+ liver.nii.gz); empty: the shipped real CT
data_dir = "../data/synthetic_cpu"  # synthetic comparison cases (test split; generated if absent)
out_dir = "../build/lessons/08"  # dataset folder, predictions, figures and metrics.json
checkpoint = "reference"  # "reference": the shipped NC reference model (tiny_nc_cpu); or a tiny_nc run's last.pt
seed = 0  # seed of the fallback synthetic dataset (the reference model was trained on seed 1)
n_cases = 24  # cases of the fallback synthetic dataset when data_dir does not exist
overlap = 0.5  # sliding-window overlap
dicom = True  # also write the scan as a DICOM series and predict from the folder

# %%
check_common(data_dir, out_dir, seed, n_cases, min_cases=4)
need(isinstance(scan_dir, str), f"scan_dir must be a str (\"\" for the shipped scan), got {scan_dir!r}")
need(isinstance(checkpoint, str) and checkpoint, f"checkpoint must be 'reference' or a path, got {checkpoint!r}")
need(isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0 <= overlap < 1,
     f"overlap must be a number in [0, 1), got {overlap!r}")
need(isinstance(dicom, bool), f"dicom must be True or False, got {dicom!r}")
out_path = Path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
metrics: dict = {}

# %% [markdown]
# ## 1. The scan
#
# `read_image` returns the volume as (z, y, x) with its spacing and affine. The file is int32 HU at 3 mm: far
# from PLAN's 0.7 x 0.7 x 5 mm and from the 5 x 4 x 4 mm our CPU model was trained at, so prediction resamples it
# (and writes the result back on the scan's own grid). Values below -1024 HU mark the area outside the scanner's
# field of view.

# %%
if scan_dir:
    ct_path, liver_path, organ_path, crop_path = Path(scan_dir) / "ct.nii.gz", Path(scan_dir) / "liver.nii.gz", None, None
    need(ct_path.is_file(), f"{ct_path}: no such file (scan_dir must hold ct.nii.gz)")
else:
    ct_path, liver_path = real_ct("example_ct.nii.gz"), real_ct("example_ct_liver_mask_v1.nii.gz")
    crop_path, organ_path = real_ct("example_ct_sm.nii.gz"), real_ct("example_seg.nii.gz")
ct, spacing, affine = read_image(ct_path)
liver_ref = (read_image(liver_path)[0] > 0.5) if liver_path is not None and liver_path.is_file() else None
print(f"{ct_path.name}: {ct.shape} (z, y, x) at {tuple(round(s, 2) for s in spacing)} mm, "
      f"HU {ct.min():.0f} .. {ct.max():.0f}")
if liver_ref is not None:
    vol_ml = liver_ref.sum() * np.prod(spacing) / 1000
    print(f"reference liver: {vol_ml:.0f} ml, median {np.median(ct[liver_ref]):.0f} HU")
    metrics["liver_ml_reference"] = float(vol_ml)
show(montage(ct.astype(np.float32), liver_ref.astype(np.uint8) if liver_ref is not None else None,
             phases=["NC (real)"], spacing=spacing, n=5, window="abdomen",
             title="Real non-contrast CT with TotalSegmentator's liver mask"), out_path, "real_ct")

# %% [markdown]
# ## 2. Check it as a dataset
#
# A single scan becomes a one-case dataset in the MSD / nnU-Net v2 layout: `imagesTr/real_0000.nii.gz` (the NC
# channel), `labelsTr/real.nii.gz` (the reference liver as label 1) and a `dataset.json`. `plan-lite validate`
# reads every file and reports each fault on one line; a clean dataset ends with "OK".

# %%
ds_dir = out_path / "real_nc"
write_image(ds_dir / "imagesTr" / "real_0000.nii.gz", ct, affine)
if liver_ref is not None:
    write_label(ds_dir / "labelsTr" / "real.nii.gz", liver_ref.astype(np.uint8), affine)
(ds_dir / "dataset.json").write_text(json.dumps({
    "channel_names": {"0": "nc"}, "labels": {"background": 0, "liver": 1}, "numTraining": 1,
    "file_ending": ".nii.gz"}, indent=2))
cli = [sys.executable, "-m", "plan_lite.cli"]
r = subprocess.run([*cli, "validate", str(ds_dir)], capture_output=True, text=True)
print(r.stdout + r.stderr)
metrics["validate_exit_code"] = r.returncode

# %% [markdown]
# ## 3. Predict with a model that has never seen a real scan
#
# The NC reference model (`plan_lite.reference`, `tiny_nc_cpu`) is the `tiny_nc` preset trained with the CPU
# recipe of lesson 5 on synthetic non-contrast scans only. Its provenance file says how it was made and what it
# measured on synthetic test cases. Prediction is the same command as for any scan:
#
# ```bash
# plan-lite predict plan_lite/reference/tiny_nc_cpu.pt ct.nii.gz --out pred/
# ```

# %%
from plan_lite.reference import checkpoint_path, provenance  # noqa: E402

if checkpoint == "reference":
    ckpt = checkpoint_path("tiny_nc_cpu")
    prov = provenance("tiny_nc_cpu")
    print(f"reference NC model: {prov['steps']} steps, {prov['train_seconds_logged'] / 60:.0f} min of training, "
          f"commit {prov['commit'][:8]}")
else:
    ckpt, prov = Path(checkpoint), None
pred_dir = out_path / "pred"
t = time.time()
r = subprocess.run([*cli, "predict", str(ckpt), str(ct_path), "--out", str(pred_dir), "--no-progress",
                    "--overlap", str(overlap)], capture_output=True, text=True)
predict_s = time.time() - t
print(r.stdout[-2000:] + r.stderr[-2000:])
need(r.returncode == 0, f"predict failed (exit {r.returncode})")
stem = ct_path.name.split(".nii")[0]
pred = read_image(pred_dir / f"{stem}.nii.gz")[0].astype(np.uint8)
lesions = json.loads((pred_dir / f"{stem}_lesions.json").read_text())["lesions"]
patient = json.loads((pred_dir / f"{stem}_patient.json").read_text())
print(f"predicted in {predict_s:.1f} s (wall, including start-up): {len(lesions)} lesion(s), "
      f"p(any tumour) = {patient.get('any_tumor', float('nan')):.2f}")
metrics.update(predict_seconds=predict_s, fp_lesions=len(lesions), p_any_tumor=patient.get("any_tumor"))

# %% [markdown]
# ## 4. The synthetic-to-real gap, measured
#
# Three figures have a reference on this scan:
#
# - **liver Dice** against TotalSegmentator's liver mask (the liver is the predicted liver plus any lesion inside
#   it, as in the paper's protocol, where lesions are part of the organ);
# - **organ Dice** on the 30-slice crop, against TotalSegmentator's organ map, for the organs both label maps have
#   (liver, gallbladder, spleen, stomach, pancreas);
# - **false-positive lesions per scan**: this subject has none, so every predicted lesion is a false alarm.
#
# Each is shown next to the same model on synthetic NC scans of its own generator (fresh subjects it never saw),
# where the ground truth is exact. Dice of a predicted mask $P$ against a reference $R$ is
# $\mathrm{Dice} = 2|P \cap R| / (|P| + |R|)$: 1 for a perfect overlap, 0 for none.

# %%
def liver_of(label):
    return (label == LIVER_LABEL) | np.isin(label, LESION_LABELS)


real = {"liver": dice(liver_of(pred), liver_ref) if liver_ref is not None else None}
if organ_path is not None:
    crop_dir = out_path / "pred_crop"
    predict(ckpt, [crop_path], crop_dir, progress=False, overlap=overlap)
    pred_crop = read_image(crop_dir / "example_ct_sm.nii.gz")[0]
    organs = read_image(organ_path)[0].astype(np.int64)
    for ts_id, plan_id in TOTALSEG_TO_PLAN.items():
        ref = organs == ts_id
        got = liver_of(pred_crop) if plan_id == LIVER_LABEL else pred_crop == plan_id
        if ref.sum() > 0:
            real[LABEL_NAMES[plan_id]] = dice(got, ref)

# the model's own world: synthetic NC subjects it never saw (all three groups), exact labels
syn_dir = ensure_dataset(data_dir, out_path, n_cases, seed, **CPU_SYNTH)
syn_pred = out_path / "pred_synthetic"
predict(ckpt, [syn_dir], syn_pred, progress=False, overlap=overlap, split="test")
syn: dict[str, list] = {}
syn_fp_normal = []
with open(syn_dir / "cases.csv") as fh:
    rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
for row in rows:
    cid = row["case"]
    gt = read_image(syn_dir / "labelsTr" / f"{cid}.nii.gz")[0]
    pr = read_image(syn_pred / f"{cid}.nii.gz")[0]
    syn.setdefault("liver", []).append(dice(liver_of(pr), liver_of(gt)))
    for plan_id in TOTALSEG_TO_PLAN.values():
        if plan_id != LIVER_LABEL and (gt == plan_id).any():
            syn.setdefault(LABEL_NAMES[plan_id], []).append(dice(pr == plan_id, gt == plan_id))
    if row["group"] != "tumor":  # normal and hard-negative subjects: every predicted lesion is a false alarm
        n_les = len(json.loads((syn_pred / f"{cid}_lesions.json").read_text())["lesions"])
        syn_fp_normal.append(n_les)
syn_mean = {k: float(np.mean(v)) for k, v in syn.items()}
syn_fp = float(np.mean(syn_fp_normal)) if syn_fp_normal else None

names = [k for k in real if real[k] is not None]
lines = ["| structure | Dice on the real scan | Dice on synthetic NC scans (mean) |", "|---|---|---|"]
lines += [f"| {k} | {real[k]:.2f} | {syn_mean.get(k, float('nan')):.2f} |" for k in names]
lines.append(f"| false-positive lesions per lesion-free scan | {len(lesions)} | "
             f"{'-' if syn_fp is None else f'{syn_fp:.1f}'} (over {len(syn_fp_normal)} synthetic normal / hard) |")
display(Markdown("\n".join(lines)))
metrics.update(real_dice=real, synthetic_dice=syn_mean, synthetic_fp_per_lesion_free_scan=syn_fp)

fig, ax = plt.subplots(figsize=(6.5, 3.2))
x = np.arange(len(names))
ax.bar(x - 0.2, [syn_mean.get(k, 0) for k in names], 0.4, label="synthetic NC (own generator)", color="#7aa6c2")
ax.bar(x + 0.2, [real[k] for k in names], 0.4, label="real NC scan", color="#d9822b")
ax.set_xticks(x, names)
ax.set_ylim(0, 1)
ax.set_ylabel("Dice")
ax.set_title("Synthetic-to-real gap of a model trained on synthetic data only")
ax.legend(loc="upper right", fontsize=8)
show(fig, out_path, "gap")

# %% [markdown]
# What the numbers say (they are printed in words below, from this run's values): a large drop from the
# synthetic to the real column means the model learned the **generator**, not the anatomy. Our synthetic liver
# is an ellipsoid-like shape with textbook HU and white-ish noise; a real liver has a different shape, texture,
# neighbouring organs, beam-hardening and partial-volume effects at 3 mm. False alarms on the lesion-free scan
# say whether real tissue boundaries look like lesions to the model. None of this is fixed by training longer on
# the same generator: it takes real training scans (MSD Task03, LiTS: see the data cards) or a generator that is
# closer to real anatomy.

# %%
gap = real["liver"] - syn_mean["liver"] if real.get("liver") is not None else None
if gap is not None:
    size = "small" if abs(gap) < 0.1 else "large" if abs(gap) > 0.3 else "clear"
    text = (f"On this real scan the liver Dice is **{real['liver']:.2f}**, against **{syn_mean['liver']:.2f}** on "
            f"synthetic scans: a {size} gap ({gap:+.2f}). The model marks **{len(lesions)}** lesion(s) on a scan "
            "that has none" + (f" (synthetic lesion-free scans: {syn_fp:.1f} per scan)." if syn_fp is not None
                               else "."))
    display(Markdown(text))
    metrics["liver_dice_gap"] = gap

# %% [markdown]
# ## 5. The result in the lesion browser
#
# NiiVue's multiplanar and 3D view (`plan_lite.viz.lesion_browser`): the reference liver as the first overlay,
# the prediction as the second. Any predicted lesion is listed in the table (all are false positives here).

# %%
display(lesion_browser(ct[None].astype(np.float32), spacing,
                       gt=liver_ref.astype(np.uint8) if liver_ref is not None else None, pred=pred,
                       affine=affine, title=f"{ct_path.name}: reference liver vs prediction"))
show(montage(ct.astype(np.float32), liver_ref.astype(np.uint8) if liver_ref is not None else None, pred=pred,
             phases=["NC (real)"], spacing=spacing, n=5, window="abdomen",
             title="Reference liver (contour) and prediction (fill)"), out_path, "prediction")

# %% [markdown]
# ## 6. DICOM input
#
# Scanners and PACS store CT as **DICOM**: one file per slice, with the geometry in each header (image position
# and orientation, pixel spacing) and the HU scaling (rescale slope and intercept). `plan-lite predict` accepts a
# folder that holds one DICOM series wherever it accepts a NIfTI file: the slices are sorted by their position
# along the slice normal, the scaling applied and the geometry turned into a NIfTI affine; the output is NIfTI on
# the series' grid. Here the 30-slice crop of the scan is written as a DICOM series
# (`plan_lite.data.dicom.write_dicom_series`) and predicted from the folder; the label map must be the one
# predicted from the NIfTI.

# %%
if dicom:
    from plan_lite.data.dicom import read_dicom_series, write_dicom_series

    # the 30-slice crop when it is there (four times faster to predict than the whole scan)
    src, src_pred = (crop_path, pred_crop) if organ_path is not None else (ct_path, pred)
    vol, _, vol_affine = read_image(src)
    series = write_dicom_series(vol, vol_affine, out_path / "dicom" / "real_ct", overwrite=True)
    n_files = len(list(series.glob("*.dcm")))
    back, back_spacing, back_affine = read_dicom_series(series)
    print(f"{series}: {n_files} slices of {src.name}; read back {back.shape}, max |HU difference| "
          f"{np.abs(back - vol).max():.1f}, affine equal: {np.allclose(back_affine, vol_affine, atol=1e-4)}")
    r = subprocess.run([*cli, "predict", str(ckpt), str(series), "--out", str(out_path / "pred_dicom"),
                        "--no-progress", "--overlap", str(overlap)], capture_output=True, text=True)
    need(r.returncode == 0, f"predict on the DICOM folder failed: {r.stderr.strip()[-500:]}")
    pred_dcm = read_image(out_path / "pred_dicom" / f"{series.name}.nii.gz")[0]
    same = bool(np.array_equal(pred_dcm, src_pred))
    print(f"prediction from DICOM identical to the NIfTI one: {same}")
    metrics.update(dicom_slices=n_files, dicom_prediction_identical=same)

# %%
metrics["seconds"] = round(time.time() - T0, 1)
atomic_write_json(out_path / "metrics.json", metrics)
print(json.dumps({k: metrics[k] for k in ("fp_lesions", "predict_seconds", "real_dice", "synthetic_dice")},
                 indent=1, default=float))

# %% [markdown]
# ## Try it
#
# - Your own scan: put a non-contrast CT as `ct.nii.gz` (and a liver mask as `liver.nii.gz`) in a folder and set
#   `scan_dir` to it; or run `plan-lite predict plan_lite/reference/tiny_nc_cpu.pt YOUR_SERIES_FOLDER --out pred/`
#   on a DICOM series.
# - `overlap = 0.0`: four times fewer windows; does the liver Dice change?
# - `checkpoint = "../build/lessons/05/run/last.pt"` does not work here: lesson 5 trains the three-phase `tiny`
#   model, and this scan has one phase. Train a `tiny_nc` model (`plan-lite train DATA --preset tiny_nc`) and
#   compare it with the reference.
# - Contrast-enhanced scans (MSD Task03, LiTS) are portal-venous: an NC model is the wrong model for them. The data
#   cards say how to convert and train on them (`plan-lite convert lits ...`).
#
# ## Summary
#
# - A real scan goes through the same commands as synthetic data: `validate`, `predict` (NIfTI or a DICOM folder);
#   the output is on the scan's own grid.
# - A model trained only on synthetic CT transfers only as far as the generator resembles real anatomy: this
#   lesson measures the gap (liver and organ Dice, false alarms on a lesion-free subject) instead of assuming it.
# - Real-data conclusions need real training data and expert labels; TotalSegmentator's masks are a model's
#   output, good enough to measure a large gap, not to certify a small one.
#
# ## What's next
#
# The reference pages: [data cards](../data_cards.md) (MSD Task03, LiTS and the synthetic generator),
# [real data on a GPU](../real_data_gpu.md) and [design decisions](../design_decisions.md).
#
# ## Resources and references
# - Wasserthal et al., *TotalSegmentator: robust segmentation of 104 anatomic structures in CT images*,
#   Radiology: Artificial Intelligence 2023 (the scan and its masks; Apache-2.0).
# - DICOM PS3.3 C.7.6.2 (Image Plane Module) and C.8.2.1 (CT Image Module).
# - Yan et al., MICCAI 2023, Sec. 3 (the NC screening setting).
