"""plan_lite.metrics: every protocol rule on hand-built volumes with known answers (see plan_lite/metrics/*.py)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from plan_lite.labels import patient_output_names
from plan_lite.metrics import (
    evaluate_folders,
    flatten_metrics,
    lesion_metrics_case,
    match_lesions,
    patient_metrics,
    pixel_dice,
    summarize_lesions,
    summarize_pixel,
    tables_markdown,
)

C = 6  # bar cross-section (C x C voxels at 1 mm): a bar of length L has L*36 voxels; 5 voxels long -> r = 3.5 mm
ISO = (1.0, 1.0, 1.0)
NAMES = patient_output_names("paper")


def vol(shape=(8, 8, 100)):
    return np.zeros(shape, dtype=np.uint8)


def bar(a, x0, x1, label=7):
    """A C x C x (x1 - x0) bar along x (voxels x0 .. x1-1)."""
    a[1:1 + C, 1:1 + C, x0:x1] = label
    return a


def run(gt, pred, spacing=ISO, **kw):
    return lesion_metrics_case(gt, pred, spacing, **kw)


def counts(r):
    return r["tp"], r["fp"], r["fn"]


# ---------------------------------------------------------------------------------------------------- matching rules
def test_split_lesion_one_tp_other_pred_fp():
    gt = bar(vol(), 0, 40)
    pred = bar(bar(vol(), 0, 19), 20, 40)  # two preds, Dice 38/59 = 0.644 and 40/60 = 0.667, both > 0.2
    r = run(gt, pred)
    assert counts(r) == (1, 1, 0)  # one-to-one: the second (eligible but unmatched) pred is a FP
    assert r["pairs"][0]["dice"] == pytest.approx(40 / 60)  # the better pair is kept
    # a second pred that does not match at all (Dice <= 0.2) is also a FP
    pred2 = bar(bar(vol(), 0, 34), 35, 40)
    assert counts(run(gt, pred2)) == (1, 1, 0)


def test_merged_lesions_one_tp_one_fn():
    gt = bar(bar(vol(), 0, 20), 21, 41)
    pred = bar(vol(), 0, 41)  # one component touching both: Dice 40/61 each
    r = run(gt, pred)
    assert counts(r) == (1, 0, 1)
    assert r["n_gt"] == 2 and r["n_pred"] == 1


def test_three_mm_rule_both_sides():
    gt = vol((12, 12, 60))
    gt[1:3, 1:3, 1:3] = 7  # 8 mm^3, r = 1.24 mm: ignored, not a FN
    pred = vol((12, 12, 60))
    pred[1:3, 1:3, 40:42] = 7  # small pred elsewhere: dropped, not a FP
    r = run(gt, pred)
    assert counts(r) == (0, 0, 0)
    assert r["n_gt_ignored"] == 1 and r["n_pred_dropped"] == 1
    # kept pred (5^3 = 125 mm^3, r = 3.10) matching only an ignored GT (4^3 = 64 mm^3, r = 2.48): neither TP nor FP
    gt2, pred2 = vol((12, 12, 60)), vol((12, 12, 60))
    gt2[2:6, 2:6, 2:6] = 7
    pred2[1:6, 1:6, 1:6] = 7
    r2 = run(gt2, pred2, details=True)
    assert counts(r2) == (0, 0, 0) and r2["n_pred_ignored"] == 1
    assert r2["pred_lesions"][0]["status"] == "ignored" and r2["gt_lesions"][0]["ignored"]
    # the same kept pred with Dice <= 0.2 to the ignored GT is a FP
    gt3 = vol((12, 12, 60))
    gt3[1:2, 1:3, 5:8] = 7  # 6 voxels, overlap 6 -> Dice 12/131 = 0.09
    assert counts(run(gt3, pred2)) == (0, 1, 0)
    # the threshold is an option (min_radius_mm=0 keeps everything)
    assert counts(run(gt, pred, min_radius_mm=0.0)) == (0, 1, 1)


def test_dice_exactly_threshold_is_not_a_match():
    gt = bar(vol(), 0, 50)
    exact = bar(vol(), 40, 90)  # overlap 10 bars of 50 + 50: Dice = 20/100 = 0.2 exactly
    assert 2 * 10 * 36 / (100 * 36) == 0.2
    assert counts(run(gt, exact)) == (0, 1, 1)
    above = bar(vol(), 40, 89)  # 20/99 = 0.202
    r = run(gt, above)
    assert counts(r) == (1, 0, 0) and r["pairs"][0]["dice"] == pytest.approx(20 / 99)
    assert counts(run(gt, exact, dice_threshold=0.19)) == (1, 0, 0)


def test_greedy_is_not_maximal_but_optimal_is():
    gt = bar(bar(vol(), 0, 30), 31, 41)  # A (30 long), B (10 long)
    pred = bar(bar(vol(), 0, 5), 6, 36)  # P2 = [0,5) on A only, P1 = [6,36) on A (24) and B (5)
    # Dice: P1-A 48/60 = 0.8, P1-B 10/40 = 0.25, P2-A 10/35 = 0.286
    greedy = run(gt, pred, matching="greedy")
    optimal = run(gt, pred)
    assert counts(greedy) == (1, 1, 1)  # takes P1-A first, then nothing is left
    assert counts(optimal) == (2, 0, 0)  # P1-B and P2-A
    assert sorted(round(p["dice"], 3) for p in optimal["pairs"]) == [0.25, 0.286]


def test_optimal_matching_is_max_cardinality_then_max_dice():
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    rng = np.random.default_rng(0)
    for _ in range(200):
        ng, npr = rng.integers(1, 7, size=2)
        pairs = [(g, p, float(rng.choice([0.1, 0.2, 0.3, 0.5, 0.9])))
                 for g in range(ng) for p in range(npr) if rng.random() < 0.5]
        m = match_lesions(pairs)
        assert len({g for g, _, _ in m}) == len(m) == len({p for _, p, _ in m})
        assert all(d > 0.2 for _, _, d in m)
        adj = np.zeros((ng, npr))
        for g, p, d in pairs:
            adj[g, p] = d > 0.2
        best = int((maximum_bipartite_matching(csr_matrix(adj), perm_type="column") >= 0).sum())
        assert len(m) == best
        assert len(match_lesions(pairs, matching="greedy")) <= best
    # equal cardinality: the larger Dice sum wins
    m = match_lesions([(0, 0, 0.9), (0, 1, 0.3), (1, 0, 0.5), (1, 1, 0.8)])
    assert [(g, p) for g, p, _ in m] == [(0, 0), (1, 1)]


# ------------------------------------------------------------------------------------------------ empty and pixel
def test_empty_cases_and_pixel_dice():
    e = vol()
    assert pixel_dice(e, e) == 1.0
    assert counts(run(e, e)) == (0, 0, 0)
    pred = bar(vol(), 0, 10)
    assert pixel_dice(e, pred) == 0.0
    assert counts(run(e, pred)) == (0, 1, 0)
    assert counts(run(pred, e)) == (0, 0, 1)
    gt = bar(vol(), 0, 10)
    assert pixel_dice(gt, bar(vol(), 5, 15)) == pytest.approx(0.5)
    # organs / ignore label are not tumour
    org = vol()
    org[:] = 1
    org[0] = 100
    assert pixel_dice(org, e) == 1.0
    s = summarize_pixel([{"dice": 1.0, "gt_empty": True}, {"dice": 0.5, "gt_empty": False},
                         {"dice": 0.0, "gt_empty": True}])
    assert s["dice"] == 0.5 and s["dice_incl_empty"] == pytest.approx(0.5)
    assert summarize_pixel([{"dice": 1.0, "gt_empty": True}])["dice"] is None
    agg = summarize_lesions([run(e, e)])
    assert agg["precision"] is None and agg["recall"] is None and agg["type_accuracy"] is None
    assert agg["recall_by_radius"]["[3,5)"] == {"gt": 0, "detected": 0, "recall": None}


# ------------------------------------------------------------------------------------------------ spacing and size
def test_radius_from_volume_and_spacing_order():
    a = vol((10, 10, 10))
    a[2:5, 2:5, 2:5] = 7  # 27 voxels
    r_expected = (3 * 135 / (4 * math.pi)) ** (1 / 3)  # 27 * 5 mm^3 -> 3.18 mm
    for sp in [(5.0, 1.0, 1.0), (1.0, 1.0, 5.0)]:
        r = run(a, a, sp, details=True)
        les = r["gt_lesions"][0]
        assert les["volume_mm3"] == pytest.approx(135.0) and les["radius_mm"] == pytest.approx(r_expected)
        assert counts(r) == (1, 0, 0) and r["by_radius"]["[3,5)"] == {"gt": 1, "detected": 1}
    r = run(a, a, ISO)  # 27 mm^3 -> 1.86 mm: ignored
    assert r["n_gt_ignored"] == 1 and counts(r) == (0, 0, 0)
    # bins by equivalent radius
    big = vol((40, 40, 40))
    big[0:20, 0:20, 0:20] = 9  # 8000 mm^3 -> 12.4 mm
    assert run(big, big)["by_radius"]["[10,20)"] == {"gt": 1, "detected": 1}
    assert run(big, big, (8.0, 2.0, 2.0))["by_radius"]["[20,inf)"]["gt"] == 1  # 256000 mm^3 -> 39 mm


def test_nifti_anisotropic_spacing_volume(tmp_path):
    from plan_lite.data.io import affine_from_spacing, read_image, write_label

    a = np.zeros((6, 10, 12), dtype=np.uint8)  # (z, y, x)
    a[1:4, 2:5, 3:6] = 8
    write_label(tmp_path / "c.nii.gz", a, affine_from_spacing((5.0, 1.0, 1.0)))
    arr, sp, _ = read_image(tmp_path / "c.nii.gz")
    assert arr.shape == (6, 10, 12) and tuple(sp) == pytest.approx((5.0, 1.0, 1.0))
    les = run(arr, arr, sp, details=True)["gt_lesions"][0]
    assert les["volume_mm3"] == pytest.approx(135.0) and les["type"] == 8


# ---------------------------------------------------------------------------------------------------- lesion types
def test_majority_type_and_ties():
    gt = bar(vol(), 0, 10, 7)
    gt[:, :, 6:10][gt[:, :, 6:10] > 0] = 9  # 6 bars HCC, 4 bars metastasis -> HCC
    pred = bar(vol(), 0, 10, 11)
    pred[:, :, 5:10][pred[:, :, 5:10] > 0] = 9  # 5/5 tie between 9 and 11 -> 9 (smaller label)
    r = run(gt, pred, details=True)
    assert r["gt_lesions"][0]["type"] == 7 and r["pred_lesions"][0]["type"] == 9
    assert r["type_pairs"] == [[7, 9]]
    same = run(gt, gt)
    other = run(bar(vol(), 0, 10, 14), bar(vol(), 0, 10, 13))
    assert summarize_lesions([r, same])["type_accuracy"] == 0.5
    assert summarize_lesions([r, same, other])["type_accuracy"] == pytest.approx(1 / 3)
    assert summarize_lesions([r, same, other], ignore_other_type=True)["type_accuracy"] == 0.5


# --------------------------------------------------------------------------------------------------- patient level
def _rows_scores():
    """Toy cohort: 4 val + 6 test patients with hand-computed AUCs (see the comments)."""
    rows, scores = [], {}

    def add(case, split, group, labels: dict, sc: dict):
        rows.append({"case": case, "split": split, "group": group, **{n: float(labels.get(n, 0)) for n in NAMES}})
        scores[case] = {n: float(sc.get(n, 0.0)) for n in NAMES}

    # val: any_tumor scores pos {0.8, 0.55}, neg {0.4, 0.1} -> Youden picks 0.55 (TPR 1, FPR 0)
    add("v0", "val", "tumor", {"any_tumor": 1}, {"any_tumor": 0.8})
    add("v1", "val", "tumor", {"any_tumor": 1}, {"any_tumor": 0.55})
    add("v2", "val", "normal", {}, {"any_tumor": 0.4})
    add("v3", "val", "hard", {}, {"any_tumor": 0.1})
    # test
    at = [0.9, 0.6, 0.3, 0.2, 0.5, 0.7]
    mal = [0.8, 0.4, 0.1, 0.1, 0.2, 0.3]
    ben = [0.3, 0.5, 0.2, 0.1, 0.4, 0.25]
    hcc = [0.7, 0.2, 0.1, 0.1, 0.1, 0.1]
    hem = [0.5, 0.4, 0.3, 0.1, 0.2, 0.0]
    cys = [0.3, 0.2, 0.3, 0.1, 0.6, 0.0]
    lab = [{"any_tumor": 1, "malignant": 1, "type_hcc": 1}, {"any_tumor": 1, "benign": 1, "type_hemangioma": 1},
           {"any_tumor": 1, "benign": 1, "type_cyst": 1}, {}, {}, {}]
    groups = ["tumor", "tumor", "tumor", "normal", "normal", "hard"]
    for i in range(6):
        add(f"t{i}", "test", groups[i], lab[i], {"any_tumor": at[i], "malignant": mal[i], "benign": ben[i],
                                                 "type_hcc": hcc[i], "type_hemangioma": hem[i], "type_cyst": cys[i]})
    return rows, scores


def test_patient_metrics_known_auc_and_val_threshold():
    rows, scores = _rows_scores()
    m = patient_metrics(rows, scores)
    assert m["threshold"] == pytest.approx(0.55) and "val" in m["threshold_source"]
    assert m["auc_any_tumor"] == pytest.approx(6 / 9)  # 0.9 > 3 neg, 0.6 > 2, 0.3 > 1
    assert m["auc_malignant"] == pytest.approx(1.0)
    assert m["auc_benign"] == pytest.approx(5 / 8)  # 0.5 > 4 neg, 0.2 > 1
    assert m["auc_types"]["type_hcc"] == 1.0 and m["auc_types"]["type_hemangioma"] == pytest.approx(0.8)
    assert m["auc_types"]["type_cyst"] == pytest.approx(0.7)  # 3 wins + 1 tie of 5
    assert m["auc_types_n"] == 3 and m["auc_types_mean"] == pytest.approx((1 + 0.8 + 0.7) / 3)
    assert m["auc_types"]["type_icc"] is None
    assert m["sensitivity"] == pytest.approx(2 / 3)  # 0.9, 0.6 >= 0.55; 0.3 not
    assert m["specificity_normal"] == 1.0 and m["specificity_hard"] == 0.0  # hard 0.7 >= 0.55
    assert m["specificity"] == pytest.approx(2 / 3)
    # target-specificity operating point and the no-val fallback
    assert patient_metrics(rows, scores, threshold_method="specificity", target_specificity=1.0)["threshold"] \
        == pytest.approx(0.55)
    no_val = patient_metrics([r for r in rows if r["split"] == "test"], scores)
    assert no_val["threshold"] == 0.5 and "default 0.5" in no_val["threshold_source"]
    assert no_val["sensitivity"] == pytest.approx(2 / 3) and no_val["specificity_hard"] == 0.0
    # undefined -> None, never crash
    only_neg = patient_metrics([r for r in rows if r["case"] in ("v0", "v1", "v2", "v3", "t3", "t4")], scores)
    assert only_neg["sensitivity"] is None and only_neg["auc_malignant"] is None and only_neg["auc_types_n"] == 0
    assert only_neg["specificity_hard"] is None and only_neg["specificity_normal"] == 1.0


# ------------------------------------------------------------------------------------------------- folders and CLI
SP = (2.0, 1.0, 1.0)


def _write_cohort(root, shape=(8, 16, 16), patient_json=True):
    """labelsTr + preds + cases.csv: val (tumour 300 vox pred, normal 0) and test cases with known volumes."""
    from plan_lite.data.io import affine_from_spacing, write_label

    aff = affine_from_spacing(SP)
    spec = [  # case, split, group, gt voxels(label), pred voxels (label)
        ("v0", "val", "tumor", (300, 7), (300, 7)), ("v1", "val", "normal", None, None),
        ("t0", "test", "tumor", (1000, 7), (1000, 7)), ("t1", "test", "tumor", (400, 11), (200, 11)),
        ("t2", "test", "normal", None, None), ("t3", "test", "hard", None, (500, 9)),
    ]
    (root / "ds" / "labelsTr").mkdir(parents=True)
    (root / "pred").mkdir()
    rows = []
    for case, split, group, g, p in spec:
        for sub, what in (("ds/labelsTr", g), ("pred", p)):
            a = np.zeros(shape, dtype=np.uint8)
            a[2, 2, 2] = 1  # an organ voxel (not tumour)
            if what:
                a.ravel()[512:512 + what[0]] = what[1]  # from a slice start: one component
            write_label(root / sub / f"{case}.nii.gz", a, aff)
        labels = {n: 0.0 for n in NAMES}
        if g:
            labels.update({"any_tumor": 1.0, "malignant" if g[1] < 11 else "benign": 1.0,
                           f"type_{ {7: 'hcc', 11: 'hemangioma'}[g[1]] }".replace(" ", ""): 1.0})
        rows.append({"case": case, "split": split, "group": group, "num_lesions": int(bool(g)), **labels})
        if patient_json:
            pv = (p[0] / 1000.0) if p else 0.05
            (root / "pred" / f"{case}_patient.json").write_text(json.dumps({n: pv for n in NAMES}))
    with open(root / "ds" / "cases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "ds", root / "pred", root / "ds" / "cases.csv"


def test_evaluate_folders_volume_score_mode(tmp_path):
    gt, pred, cases = _write_cohort(tmp_path, patient_json=False)
    m = evaluate_folders(gt, pred, cases, score_source="volume", progress=False)
    p = m["patient"]
    assert m["n_cases"] == 4 and p["score_source"] == "volume"
    assert p["threshold"] == pytest.approx(600.0)  # Youden on val: the 300-voxel tumour at 2 mm^3 per voxel
    assert p["auc_any_tumor"] == pytest.approx(0.75)  # pos {2000, 400} vs neg {0, 1000}: 2 + 1 of 4
    assert p["sensitivity"] == 0.5 and p["specificity_normal"] == 1.0 and p["specificity_hard"] == 0.0
    assert m["lesion"]["tp"] == 2 and m["lesion"]["fp"] == 1 and m["lesion"]["fn"] == 0
    assert m["lesion"]["n_pred_dropped"] == 0 and m["per_case"]["t3"]["fp"] == 1
    assert m["pixel"]["dice"] == pytest.approx((1.0 + 400 / 600) / 2)
    assert m["pixel"]["dice_incl_empty"] == pytest.approx((1.0 + 400 / 600 + 1.0 + 0.0) / 4)
    assert p["threshold_source"].startswith("Youden's J on val")
    # without the val predictions the threshold falls back to the default, loudly
    import shutil
    import warnings

    only_test = tmp_path / "only_test"
    shutil.copytree(pred, only_test)
    val = [r["case"] for r in csv.DictReader(open(cases)) if r["split"] == "val"]
    for c in val:
        (only_test / f"{c}.nii.gz").unlink()
    with pytest.warns(UserWarning, match="fallback default"):
        fb = evaluate_folders(gt, only_test, cases, score_source="volume", progress=False)
    assert fb["patient"]["threshold_source"].startswith("default")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a validated threshold is silent
        evaluate_folders(gt, pred, cases, score_source="volume", progress=False)
    # patient mode needs the json files
    from plan_lite.errors import PlanLiteError

    with pytest.raises(PlanLiteError, match="_patient.json"):
        evaluate_folders(gt, pred, cases, progress=False)
    # without a cases table: every prediction, pixel and lesion only
    m2 = evaluate_folders(gt, pred, progress=False)
    assert m2["n_cases"] == 6 and m2["patient"]["available"] is False and m2["patient"]["auc_malignant"] is None



def test_bootstrap_intervals_resample_cases_including_type_accuracy(tmp_path):
    from plan_lite.metrics import bootstrap_intervals

    gt, pred, cases = _write_cohort(tmp_path, patient_json=False)
    m = evaluate_folders(gt, pred, cases, score_source="volume", progress=False)
    per = m["per_case"]
    assert sum(c["type_n"] for c in per.values()) == m["lesion"]["type_n"]
    assert sum(c["type_correct"] for c in per.values()) == round(m["lesion"]["type_accuracy"] * m["lesion"]["type_n"])
    bins = {"[3,5)": {"gt": 1, "detected": 1}}
    right = {"tp": 1, "fp": 0, "fn": 0, "by_radius": bins, "type_n": 1, "type_correct": 1}
    wrong = {"tp": 1, "fp": 1, "fn": 0, "by_radius": bins, "type_n": 1, "type_correct": 0}
    same = bootstrap_intervals({"per_case": {"a": right, "b": right}}, n_boot=200)
    assert same["type_accuracy"] == (1.0, 1.0) and same["precision"] == (1.0, 1.0)
    mixed = bootstrap_intervals({"per_case": {str(i): (right if i % 2 else wrong) for i in range(20)}}, n_boot=500)
    lo, hi = mixed["type_accuracy"]
    assert 0.2 < lo < 0.5 < hi < 0.8  # 10 of 20 typed right: the interval straddles one half, well inside (0, 1)
    assert mixed["precision"][0] < 20 / 30 < mixed["precision"][1]

STABLE = ["n_cases", "pixel.dice", "pixel.dice_incl_empty", "lesion.tp", "lesion.fp", "lesion.fn",
          "lesion.precision", "lesion.recall", "lesion.type_accuracy", "patient.sensitivity",
          "patient.specificity_normal", "patient.specificity_hard", "patient.auc_malignant", "patient.auc_benign",
          "patient.auc_types_mean", "patient.auc_types_n", "patient.threshold",
          *(f"lesion.recall_by_radius.{b}.{k}" for b in ("[3,5)", "[5,10)", "[10,20)", "[20,inf)")
            for k in ("gt", "detected", "recall"))]


def test_cli_writes_metrics_with_stable_keys(tmp_path, capsys):
    from plan_lite.cli import main

    gt, pred, cases = _write_cohort(tmp_path)
    out = tmp_path / "res" / "metrics.json"
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--cases", str(cases), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    m = json.loads(out.read_text())
    flat = flatten_metrics(m)
    assert all(k in flat for k in STABLE), [k for k in STABLE if k not in flat]
    assert m["patient"]["auc_any_tumor"] == pytest.approx(0.75) and m["patient"]["threshold"] == pytest.approx(0.3)
    assert (tmp_path / "res" / "metrics.md").read_text().count("Table") == 2
    assert (tmp_path / "res" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "Table 2" in capsys.readouterr().out
    assert "Table 1" in tables_markdown(m) and "n/a" in tables_markdown({"lesion": {}, "pixel": {}})


def test_cli_exit_2_on_shape_or_spacing_mismatch(tmp_path, capsys):
    from plan_lite.cli import main
    from plan_lite.data.io import affine_from_spacing, write_label

    gt, pred, cases = _write_cohort(tmp_path)
    write_label(pred / "t1.nii.gz", np.zeros((8, 16, 15), np.uint8), affine_from_spacing(SP))
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--cases", str(cases), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "t1.nii.gz" in err and "shape" in err
    write_label(pred / "t1.nii.gz", np.zeros((8, 16, 16), np.uint8), affine_from_spacing((3.0, 1.0, 1.0)))
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "spacing" in err and "t1.nii.gz" in err and len(err.strip().splitlines()) == 1


def test_add_arguments_is_light_and_masks_any_dtype():
    import subprocess
    import sys

    code = ("import argparse, sys; import plan_lite.commands.evaluate as e; e.add_arguments(argparse.ArgumentParser());"
            "print(sorted(m for m in ('numpy', 'scipy', 'sklearn', 'cc3d', 'nibabel', 'matplotlib', 'torch',"
            " 'plan_lite.metrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from plan_lite.metrics import tumor_mask

    vals = np.array([-3, 0, 1, 6, 7, 10, 14, 15, 100, 255])
    expect = [False, False, False, False, True, True, True, False, False, False]
    for dt in (np.uint8, np.uint16, np.int16, np.int32, np.float32):  # -3 wraps to 253 / 65533 when unsigned
        assert tumor_mask(vals.astype(dt)).tolist() == expect


def test_marked_liver_fraction_is_lesion_voxels_over_liver(tmp_path):
    """Chance level of lesion recall: predicted lesion voxels over GT liver (liver + lesion) voxels, pooled."""
    from plan_lite.data.io import affine_from_spacing, write_label
    from plan_lite.metrics import marked_liver_fraction

    aff = affine_from_spacing(SP)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for case, lesion_pred in (("a", 10), ("b", 30)):
        gt = np.zeros((4, 10, 10), np.uint8)
        gt[:2] = 1  # 200 liver voxels
        gt[0, 0, :5] = 7  # 5 of them a lesion: still liver tissue for the denominator
        pred = np.zeros_like(gt)
        pred.reshape(-1)[:lesion_pred] = 9
        pred[3, 0, 0] = 1  # liver in the prediction does not count
        write_label(tmp_path / "gt" / f"{case}.nii.gz", gt, aff)
        write_label(tmp_path / "pred" / f"{case}.nii.gz", pred, aff)
    assert marked_liver_fraction(tmp_path / "gt", tmp_path / "pred") == pytest.approx(40 / 400)
    assert marked_liver_fraction(tmp_path / "gt", tmp_path / "pred", cases=["b"]) == pytest.approx(30 / 200)
