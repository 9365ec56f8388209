"""The lesson notebooks (notebooks/0X_*.ipynb): structure, smoke execution with papermill, parameter validation.

Each lesson runs with tiny SMOKE parameters (out_dir in tmp_path, cwd notebooks/, kernel python3) on one small
synthetic dataset shared by the session; assertions read the ``metrics.json`` the notebook writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import check_book  # noqa: E402

NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ["01_data_preparation", "02_anchor_queries", "03_fes_loss", "04_consistency_loss", "05_training",
             "06_evaluation", "07_experiments", "08_real_ct"]
HEADINGS = ("## Overview", "## Prerequisites", "## Imports", "## Try it", "## Summary", "## What's next")

# Tiny parameters per lesson (the defaults are CPU teaching sizes; these only exercise every cell).
SMOKE: dict[str, dict] = {
    "01_data_preparation": {"n_augment": 1},
    "02_anchor_queries": {"patch_size": [16, 48, 48], "n_patches": 1},
    "03_fes_loss": {"n_cases": 2, "n_draws": 2, "demo_patch": [8, 48, 48]},
    "04_consistency_loss": {"patch_size": [8, 48, 48], "opt_steps": 16},  # see _check_04
    "05_training": {"max_steps": 4, "resume_at": 2, "batch_size": 1, "patch_size": [8, 48, 48], "max_minutes": 10.0},
    "06_evaluation": {"checkpoint": "", "fallback_steps": 2, "fallback_patch": [8, 48, 48], "overlap": 0.0,
                      "n_worst": 1},
    "07_experiments": {"variants": ["plan", "pixel_only"], "max_steps": 2, "patch_size": [8, 48, 48],
                       "sweep_fes_points": [1]},
    "08_real_ct": {"overlap": 0.0},
}


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


@pytest.fixture(scope="session")
def smoke_dataset(tmp_path_factory) -> Path:
    """One small synthetic dataset for every smoke run (8 cases of 16 x 96 x 96 at 5 x 2.5 x 2.5 mm)."""
    from plan_lite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("nb") / "synthetic", n_cases=8, seed=1, shape=(16, 96, 96),
                            progress=False)


def _execute(name: str, params: dict, tmp_path: Path):
    papermill = pytest.importorskip("papermill")
    return papermill.execute_notebook(
        str(NB_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"), parameters=params,
        kernel_name="python3", cwd=str(NB_DIR), progress_bar=False, execution_timeout=600, log_output=False)


# ---------------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_structure(name):
    """Pythia skeleton, a `parameters` cell followed by validation, no outputs or execution counts."""
    nb = _load(name)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "first cell is the title"
    for h in HEADINGS:
        assert h in md, f"{name}: missing heading {h!r}"
    assert "\n---" in md and "$" in md, f"{name}: separator and math expected"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters'"
    params = nb.cells[tagged[0]].source
    for p in ("data_dir", "out_dir", "seed"):
        assert f"{p} = " in params, f"{name}: parameter {p} missing"
    nxt = nb.cells[tagged[0] + 1]
    validates = "need(" in nxt.source or "raise ValueError" in nxt.source
    assert nxt.cell_type == "code" and validates, "validation right after the parameters"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{name}: committed with outputs"
    # threads come from the environment (OMP_NUM_THREADS; the book builder runs two kernels with one each)
    assert "set_num_threads" not in "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_generated_from_sources():
    """notebooks/*.ipynb are exactly what scripts/make_notebooks.py builds from scripts/lessons/."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_notebooks.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------- execution
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke(name, smoke_dataset, tmp_path):
    out = tmp_path / "out"
    _execute(name, {"data_dir": str(smoke_dataset), "out_dir": str(out), **SMOKE[name]}, tmp_path)
    m = json.loads((out / "metrics.json").read_text())
    CHECKS[name](m, out)
    # every figure the lesson saved is an image/png output of the executed notebook, none is placeholder text
    shown = check_book.notebook_outputs(tmp_path / f"{name}.out.ipynb")
    assert shown["placeholders"] == 0, f"{name}: a figure was recorded as text only"
    pngs = sorted(out.glob("*.png"))
    assert shown["images"] >= max(1, len(pngs)), f"{name}: {shown['images']} image outputs for {len(pngs)} PNGs"


def _check_01(m, out):
    assert m["validation_clean_problems"] == 0
    assert m["validation_broken_problems"] >= 3  # missing phase, undeclared label, wrong numTraining
    assert m["realdata_present"] or m["roundtrip_max_abs_diff"] == 0
    assert m["preprocessed_spacing"] == [5.0, 0.7, 0.7]
    assert "liver" in m["hu_measured"] and m["hu_measured"]["liver"][1] > m["hu_measured"]["liver"][0]  # enhances


def _check_02(m, out):
    for k in ("with_anchors", "without_anchors"):
        r = m[k]
        assert r["n_lesion_targets"] >= 1
        assert 0.0 <= r["frac_matched"] <= 1.0 and 0.0 <= r["frac_matched_to_lesion_anchor"] <= 1.0
    assert m["without_anchors"]["frac_matched_to_lesion_anchor"] == 0.0  # no anchors, nothing matched to one
    assert m["with_anchors"]["frac_matched"] >= m["without_anchors"]["frac_matched"]


def _check_03(m, out):
    assert m["K"] == 12544 and m["n"] == 3 and m["n_lesions"] >= 1
    assert m["min_fg_points_fes"] >= m["n"]  # FES: every lesion gets >= n foreground points in every draw
    assert m["frac_lesions_zero_fg_fes"] == 0.0
    assert m["frac_lesions_zero_fg_importance"] >= 0.0
    if m["radius_range_mm"][0] < 3.5:  # a lesion this small is expected to be missed by importance sampling
        assert m["min_fg_points_importance"] == 0
    assert m["demo_n_fes"] == 3


def _check_04(m, out):
    # 16 steps, measured over seeds 0 / 1 / 2: start 0.45 / 0.36 / 0.42, with 0.31 / 0.18 / 0.26, without
    # 0.33 / 0.24 / 0.27 (8 steps gave a with-vs-without margin of only 0.007 for seed 2).
    assert 0.0 < m["disagreement_start"] <= 1.0
    assert m["disagreement_with"] < m["disagreement_start"]
    assert m["disagreement_with"] <= m["disagreement_without"] + 1e-6


def _check_05(m, out):
    assert m["steps"] == 4 and m["resumed_at"] == 2
    assert m["last_pixel_loss"] < m["first_pixel_loss"], "the pixel loss falls"
    assert m["seconds"] > 0 and Path(m["checkpoint"]).exists()
    assert (out / "run" / "log.jsonl").exists() and (out / "loss_curves.png").exists()


def _check_06(m, out):
    for k in ("pixel.dice", "lesion.precision", "lesion.recall", "patient.sensitivity", "patient.specificity",
              "patient.auc_any_tumor"):
        assert k in m, k
        assert m[k] is None or 0.0 <= m[k] <= 1.0, (k, m[k])
    assert m["trained_here"] is True and m["n_cases"] >= 1
    assert (out / "pred").is_dir()


def _check_07(m, out):
    assert m["variants"] == ["plan", "pixel_only"] and m["seeds"] == [0]
    assert set(m["results"]) == {"plan/seed0", "pixel_only/seed0"}
    for r in m["results"].values():
        for k in ("precision", "recall", "dice"):
            assert r[k] is None or 0.0 <= r[k] <= 1.0
    assert (out / "sweep" / "ablation.md").exists()
    # the committed experiment (benchmarks/results/ablation_nc_cpu_4000.json) is read, tabled and plotted, and
    # compared with the same experiment at 1,500 steps (ablation_nc_cpu.json)
    assert m["reference_variants"] == ["plan", "no_anchor", "no_fes", "no_consistency", "pixel_only", "mask2former"]
    assert m["reference_cpu_minutes"] > 0 and m["reference_max_steps"] == 4000
    assert m["budgets_compared"] == [1500, 4000]
    # and the same experiment on the three-phase cohort (ablation_dce_cpu_4000.json)
    assert m["dce_variants"] == m["reference_variants"] and m["dce_preset"] == "tiny"
    for png in ("ablation_paired", "mechanisms", "budgets", "ablation_paired_dce"):
        assert (out / f"{png}.png").exists(), png


def _check_08(m, out):
    assert m["validate_exit_code"] == 0  # the real scan is a valid one-case NC dataset
    assert 0.0 <= m["real_dice"]["liver"] <= 1.0 and set(m["real_dice"]) >= {"liver", "spleen"}
    assert m["fp_lesions"] >= 0 and m["predict_seconds"] > 0
    assert m["dicom_prediction_identical"] and m["dicom_slices"] == 30  # the crop, read back from DICOM
    assert (out / "gap.png").exists() and (out / "real_ct.png").exists()


CHECKS = {"01_data_preparation": _check_01, "02_anchor_queries": _check_02, "03_fes_loss": _check_03,
          "04_consistency_loss": _check_04, "05_training": _check_05, "06_evaluation": _check_06,
          "07_experiments": _check_07, "08_real_ct": _check_08}


# ---------------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("name,bad", [("03_fes_loss", {"num_points": "many"}), ("05_training", {"max_steps": 2.5})])
def test_wrong_parameter_type(name, bad, tmp_path):
    """A wrong parameter type stops the notebook at the validation cell with a clear ValueError."""
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError) as exc:
        _execute(name, {"out_dir": str(tmp_path / "out"), **bad}, tmp_path)
    assert exc.value.ename == "ValueError"
    assert next(iter(bad)) in exc.value.evalue
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_lesson_sources_are_jupytext_percent_notebooks():
    """A lesson source opens in jupytext (and JupyterLab) as the notebook itself: the parameters cell carries
    papermill's tag in jupytext's syntax, and nothing precedes the first cell."""
    jupytext = pytest.importorskip("jupytext")
    for name in NOTEBOOKS:
        src = ROOT / "scripts" / "lessons" / f"{name}.py"
        assert src.read_text().startswith("# %% [markdown]\n"), f"{name}: text before the first cell"
        nb = jupytext.read(src, fmt="py:percent")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "data_dir = " in tagged[0].source, name
