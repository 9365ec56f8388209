"""plan_lite.viz: montage, slice viewer callbacks, view3d fallback + snapshot, plots, demo CLI."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from plan_lite.cli import main as cli_main
from plan_lite.errors import PlanLiteError
from plan_lite.viz import (
    choose_slices,
    lesion_components,
    montage,
    plot_hu_curves,
    plot_loss_curves,
    plot_points,
    plot_recall_by_size,
    plot_roc,
    view3d,
)

SPACING = (5.0, 2.5, 2.5)


def make_case(d: int = 12, h: int = 48, w: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """3-phase HU volume with a liver (1), an HCC (7) around z=4 and a cyst (13) around z=8."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:d, :h, :w]
    label = np.zeros((d, h, w), np.uint8)
    label[((y - 24) / 17.0) ** 2 + ((x - 24) / 18.0) ** 2 + ((z - 6) / 6.0) ** 2 < 1] = 1
    label[((y - 20) / 4.0) ** 2 + ((x - 18) / 4.0) ** 2 + ((z - 4) / 1.6) ** 2 < 1] = 7
    label[((y - 30) / 3.0) ** 2 + ((x - 30) / 3.0) ** 2 + ((z - 8) / 1.2) ** 2 < 1] = 13
    hu = {0: -100.0, 1: 60.0, 7: 90.0, 13: 5.0}
    img = np.full((3, d, h, w), -100.0, np.float32)
    for c in range(3):
        for k, v in hu.items():
            img[c][label == k] = v + 20 * c
    return img + rng.normal(0, 5, img.shape).astype(np.float32), label


def artists_with_gid(fig: Figure, gid: str) -> list:
    return [a for ax in fig.axes for a in [*ax.images, *ax.collections, *ax.texts, *ax.lines, *ax.patches] if a.get_gid() == gid]


def test_lesion_components_and_slice_choice():
    _, label = make_case()
    les = lesion_components(label, SPACING)
    assert [d["type"] for d in les] == ["hcc", "cyst"]  # largest first
    assert [d["id"] for d in les] == [1, 2]
    assert round(les[0]["centroid"][0]) == 4 and round(les[1]["centroid"][0]) == 8
    assert les[0]["radius_mm"] > les[1]["radius_mm"] > 0
    zs = choose_slices(label.shape[0], 5, les, label)
    assert {4, 8} <= set(zs) and len(zs) == 5 and zs == sorted(zs)
    assert choose_slices(3, 10) == [0, 1, 2]


def test_montage_axes_overlays_and_ids():
    img, label = make_case()
    pred = label.copy()
    pred[pred == 13] = 1  # missed cyst
    fig = montage(img, label, pred, n=4, spacing=SPACING, title="case")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4
    assert len(artists_with_gid(fig, "gt")) > 0
    assert len(artists_with_gid(fig, "pred")) == 12  # every panel shows liver in the prediction
    ids = {t.get_text() for t in artists_with_gid(fig, "lesion_id")}
    assert ids == {"#1", "#2"}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "7 hcc" in legend and "13 cyst" in legend and "prediction (fill)" in legend
    assert fig.axes[0].get_ylabel() == "nc"
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_montage_single_channel_explicit_slices_and_errors():
    img, label = make_case()
    fig = montage(img[0], label, slices=[1, 4], window=(40, 400), phases=["ct"])
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "ct"
    assert not artists_with_gid(fig, "pred")
    with pytest.raises(PlanLiteError, match="shape"):
        montage(img, label[:-1])
    with pytest.raises(PlanLiteError, match="window"):
        montage(img, label, window="lung")
    with pytest.raises(PlanLiteError, match="outside"):
        montage(img, label, slices=[99])


def test_montage_lesions_json_entries_need_spacing():
    img, label = make_case()
    entry = [{"id": 7, "label": 7, "center_mm": [20.0, 50.0, 45.0], "radius_mm": 9.0}]
    fig = montage(img, label, slices=[4], lesions=entry, spacing=SPACING)
    assert {t.get_text() for t in artists_with_gid(fig, "lesion_id")} == {"#7"}
    with pytest.raises(PlanLiteError, match="spacing"):
        montage(img, label, lesions=entry)


def test_slice_viewer_callbacks_without_frontend():
    pytest.importorskip("ipywidgets")
    from plan_lite.viz import slice_viewer

    img, label = make_case()
    anchors = np.stack([label == 7, label == 13])
    v = slice_viewer(img, label, pred=label, anchors=anchors, spacing=SPACING)
    assert v.slice_index == 4  # starts at the largest lesion
    first_png = v.canvas.value
    assert first_png[:4] == b"\x89PNG"
    v.slider.value = 10
    assert v.slice_index == 10 and v.canvas.value != first_png
    v.phase.value = 2
    assert v.displayed[0] == 2
    v.window.value = "bone"
    assert v.displayed[2] == "bone"
    v.show_anchors.value = True
    v.show_gt.value = False
    # clicking the cyst row jumps to its centroid slice
    v.select_lesion(2)
    assert v.slider.value == 8 and v.slice_index == 8
    v.lesion_table.value = 0
    assert v.slice_index == 4
    assert "hcc" in v.lesion_table.options[0][0] and "z=4" in v.lesion_table.options[0][0]
    with pytest.raises(KeyError):
        v.select_lesion(99)


def test_slice_viewer_table_columns():
    pytest.importorskip("ipywidgets")
    from plan_lite.viz.viewer import SliceViewer

    img, label = make_case()
    les = [{"id": 1, "type": "hcc", "centroid": (4.0, 20.0, 18.0), "probability": 0.93, "radius_mm": 10.0,
            "matched": True},
           {"id": 2, "type": "cyst", "centroid": (8.0, 30.0, 30.0), "probability": None, "matched": False}]
    v = SliceViewer(img, label, lesions=les)
    rows = [o[0] for o in v.lesion_table.options]
    assert "p= 0.93" in rows[0] and "matched" in rows[0] and "r= 10.0 mm" in rows[0]
    assert "missed" in rows[1] and "p=    -" in rows[1]
    assert v.show_pred.disabled and v.show_anchors.disabled


def test_view3d_falls_back_to_montage_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "1")
    img, label = make_case()
    out = view3d(img, label, SPACING)
    assert isinstance(out, Figure) and len(out.axes) == 3 * 6
    monkeypatch.delenv("CI")
    monkeypatch.setenv("PLAN_LITE_STATIC_VIEWS", "1")
    assert isinstance(view3d(img, label, SPACING), Figure)
    with pytest.raises(PlanLiteError, match="backend"):
        view3d(img, label, SPACING, backend="vtk")


def test_downsample_keeps_small_lesions():
    from plan_lite.viz.view3d import downsample_label

    label = np.zeros((40, 200, 200), np.uint8)
    label[5:35, 20:180, 20:180] = 1
    label[20, 100, 100] = 9  # one-voxel metastasis
    small, spacing = downsample_label(label, SPACING, max_voxels=32 ** 3)
    assert small.size <= 32 ** 3 and 9 in small and 1 in small
    assert spacing[1] > SPACING[1]


def test_plots_return_figures(tmp_path):
    roc = {"any_tumor": {"fpr": [0, 0.1, 0.3, 1], "tpr": [0, 0.7, 0.95, 1]}, "malignant": ([0, 0.5, 1], [0, 0.8, 1])}
    fig = plot_roc(roc, operating_point={"any_tumor": {"fpr": 0.1, "tpr": 0.7, "threshold": 0.5}})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("any_tumor (AUC 0.8") and artists_with_gid(fig, "operating_point")
    assert isinstance(plot_roc(([0, 1], [0, 1]), operating_point=(0.5, 0.5)), Figure)

    table = {"<5": {"gt": 4, "detected": 1, "recall": 0.25}, "5-10": {"gt": 3, "detected": 3, "recall": 1.0},
             ">20": {"gt": 0, "detected": 0, "recall": None}}
    fig = plot_recall_by_size({"recall_by_radius": table})
    assert len(artists_with_gid(fig, "recall_bar")) == 2
    fig = plot_recall_by_size({"PLAN": table, "nnU-Net": {"<5": {"gt": 4, "detected": 0, "recall": 0.0}}})
    assert len(artists_with_gid(fig, "recall_bar")) == 3

    log = tmp_path / "log.jsonl"
    recs = [{"step": s, "stage": 1 if s < 5 else 2, "total": 3.0 / (s + 1), "loss_pixel_ce": 1.0 / (s + 1)}
            for s in range(10)]
    recs[7]["loss_class"] = float("nan")
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    fig = plot_loss_curves(log)
    assert artists_with_gid(fig, "stage_boundary")[0].get_xdata()[0] == 5
    assert fig.axes[0].get_yscale() == "log"
    assert {ln.get_label() for ln in fig.axes[0].lines} >= {"total", "loss_pixel_ce"}
    assert isinstance(plot_loss_curves(recs, log_scale=False, smooth=3, stage_boundary=2), Figure)
    with pytest.raises(PlanLiteError, match="not found"):
        plot_loss_curves(tmp_path / "missing.jsonl")

    img, label = make_case()
    pts = np.array([[4.5 / 12, 0.4, 0.4], [4.5 / 12, 0.6, 0.6], [0.9, 0.5, 0.5]])
    fig = plot_points(img[0, 4], pts, label[4] == 7, kinds=["fes", "uniform", "uniform"], z_index=4, depth=12)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections if hasattr(c, "get_offsets")) >= 2
    fig = plot_hu_curves(["nc", "la", "pv"], {"liver": [55, 80, 110], "hcc": [45, 120, 70]},
                         std_hu={"liver": [5, 5, 5]})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][1] == "late arterial"
    with pytest.raises(PlanLiteError):
        plot_hu_curves(["nc"], {"liver": [1, 2]})


def _write_dataset(root, n=2):
    from plan_lite.data import io

    aff = io.affine_from_spacing(SPACING)
    for i in range(n):
        img, lab = make_case(seed=i)
        for c in range(3):
            io.write_image(root / "imagesTr" / f"case_{i:04d}_{c:04d}.nii.gz", img[c], aff)
        io.write_label(root / "labelsTr" / f"case_{i:04d}.nii.gz", lab, aff)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "nc", "1": "la", "2": "pv"}, "labels": {"background": 0, "liver": 1},
        "numTraining": n, "file_ending": ".nii.gz"}))
    return root


def test_demo_cli_writes_png(tmp_path, capsys):
    ds = _write_dataset(tmp_path / "ds")
    assert cli_main(["demo", str(ds), "--out", str(tmp_path / "out"), "--case", "case_0001"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [str(tmp_path / "out" / "montage_case_0001.png")]
    assert (tmp_path / "out" / "montage_case_0001.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]


def test_demo_cli_missing_dataset_exits_2(tmp_path, capsys):
    assert cli_main(["demo", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plan-lite: error:") and "nope" in err[0]
    ds = _write_dataset(tmp_path / "ds", n=1)
    assert cli_main(["demo", str(ds), "--out", str(tmp_path / "out"), "--case", "case_0042"]) == 2
    assert "case_0042" in capsys.readouterr().err


def test_experiment_figures_draw_every_variant_and_mechanism():
    from plan_lite.engine.experiment import aggregate, mechanisms
    from plan_lite.viz.plots import plot_mechanisms, plot_paired_differences

    curve = {"step": [10, 20], "match_dice": [0.2, 0.5], "match_class_acc": [0.1, 0.4], "readout_gap": [0.3, 0.2]}
    rs = []
    for v, f1 in (("plan", 0.5), ("no_fes", 0.4), ("no_anchor", 0.3), ("no_consistency", 0.45)):
        for s in range(2):
            rs.append({"variant": v, "seed": s, "curves": curve,
                       "summary": {"f1": f1 + 0.01 * s, "recall": f1, "recall_[3,5)": f1 / 2,
                                   "recall_[5,10)": f1, "readout_gap": 0.2, "auc_any_tumor": 0.7}})
    report = {**aggregate(rs), "mechanisms": mechanisms(rs)}
    fig = plot_paired_differences(report, metrics=("f1", "recall"))
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one errorbar series per metric
    assert [t.get_text() for t in ax.get_yticklabels()] == ["no_fes − plan", "no_anchor − plan",
                                                             "no_consistency − plan"]
    fig = plot_mechanisms(report)
    fes, anchors, cons = fig.axes[:3]
    assert len(fes.patches) == 4  # 2 variants x 2 radius bins
    assert len(anchors.lines) == 4  # 2 variants x (mask Dice, class accuracy)
    assert len(cons.patches) == 8  # 2 variants x 4 figures
    with pytest.raises(PlanLiteError, match="paired"):
        plot_paired_differences({"paired": {}})


def test_budget_figure_has_one_bar_per_variant_and_budget():
    from plan_lite.engine.experiment import aggregate
    from plan_lite.viz.plots import plot_budgets

    def report(steps, variants):
        rs = [{"variant": v, "seed": s, "summary": {"f1": 0.1 * (s + 1), "recall": 0.3}} for v in variants
              for s in range(2)]
        return {"meta": {"max_steps": steps}, **aggregate(rs)}

    fig = plot_budgets([report(1500, ("plan", "no_fes")), report(4000, ("plan", "no_fes", "pixel_only"))],
                       metrics=("f1", "recall"))
    f1 = fig.axes[0]
    assert [t.get_text() for t in f1.get_xticklabels()] == ["plan", "no_fes", "pixel_only"]
    assert len(f1.patches) == 6  # 3 variants x 2 budgets (a variant absent at 1500 steps draws no visible bar)
    assert [t.get_text() for t in f1.get_legend().get_texts()] == ["1500 steps", "4000 steps"]
    assert f1.patches[0].get_height() == pytest.approx(15.0)  # plan at 1500 steps: mean of 10 % and 20 %
    with pytest.raises(PlanLiteError, match="plot_budgets"):
        plot_budgets([])


def test_type_source_figure_draws_test_bars_with_their_intervals_and_val_markers():
    from plan_lite.viz.plots import plot_type_sources

    def src(test, ci, val):
        return {"test_type_accuracy": test, "type_accuracy_ci95": ci, "val_type_accuracy": val}

    report = {"results": {
        "a": {"sources": {"query": src(0.2, [0.1, 0.4], 0.3), "pixel": src(0.5, [0.3, 0.6], 0.45)}},
        "b": {"sources": {"query": src(0.6, None, None), "pixel": src(0.7, [0.6, 0.8], 0.65)}}}}
    fig = plot_type_sources(report)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([20, 60, 50, 70])  # query bars (a, b), then pixel bars
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    bars = ax.containers  # one ErrorbarContainer per source, next to its BarContainer
    err = [c for c in bars if c.__class__.__name__ == "ErrorbarContainer"]
    segs = err[0].lines[2][0].get_segments()  # query: a from 10 to 40 %, b without an interval (zero length)
    assert segs[0][:, 1] == pytest.approx([10, 40]) and segs[1][0, 1] == pytest.approx(segs[1][1, 1])
    val = [ln for ln in ax.lines if ln.get_marker() == "D"]
    assert np.allclose(val[1].get_ydata(), [45, 65]) and np.isnan(val[0].get_ydata()[1])
    with pytest.raises(PlanLiteError, match="plot_type_sources"):
        plot_type_sources({"results": {}})


def test_inference_mode_figure_draws_the_mean_over_a_groups_checkpoints():
    from plan_lite.viz.plots import plot_inference_modes

    def row(f1, precision, chance=0.02):
        return {"summary": {"f1": f1, "precision": precision, "recall": None, "chance": chance}}

    report = {"results": {
        "plan_s0": {"lesion": row(0.3, 0.4), "lesion+gate": row(0.6, 0.8)},
        "plan_s1": {"lesion": row(0.5, 0.2), "lesion+gate": row(0.6, 0.9)},
        "other_s0": {"lesion": row(0.9, 0.9)}}}  # another group: not drawn
    fig = plot_inference_modes(report, metrics=("f1", "precision", "recall"))
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:2] == pytest.approx([40, 30]) and heights[3:5] == pytest.approx([60, 85])
    assert np.isnan(heights[2]) and np.isnan(heights[5])  # recall not measured
    chance = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(2.0)
    assert {"lesion (2 runs)", "lesion+gate (2 runs)"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    with pytest.raises(PlanLiteError, match="plot_inference_modes"):
        plot_inference_modes(report, group="none")
