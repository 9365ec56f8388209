"""``plan_lite.sweep`` / ``plan-lite sweep`` on a tiny notebook (each run is a papermill kernel, ~2-3 s).

The notebook has ``a = 1``, ``b = 0.5``, ``name = "x"``, ``out_dir = "out"``, ``fail = False`` and ``log = ""``:
it appends one line per execution to ``log`` (to count executions), writes ``{"score": a * b, ...}`` to
``out_dir/metrics.json`` and then raises if ``fail``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytest.importorskip("papermill")

from plan_lite.cli import main  # noqa: E402
from plan_lite.errors import PlanLiteError  # noqa: E402
from plan_lite.sweep import SweepResult, convert_value, notebook_parameters, plot, run_name, run_sweep  # noqa: E402

PARAMS = 'a = 1\nb = 0.5\nname = "x"\nout_dir = "out"\nfail = False\nlog = ""  # file counting executions\n'
BODY = """\
import json, os
from pathlib import Path
if log:
    with open(log, "a") as fh:
        fh.write(f"{a} {b} {name}\\n")
Path(out_dir).mkdir(parents=True, exist_ok=True)
metrics = {"score": a * b, "label": name, "nested": {"sum": a + b}, "shape": [1, 2],
           "threads": os.environ.get("OMP_NUM_THREADS")}
Path(out_dir, "metrics.json").write_text(json.dumps(metrics))
if fail:
    raise RuntimeError(f"boom with a={a}")
"""
IGNORE = ("wall_s", "notebook", "run_dir", "threads")  # differ between two sweeps of the same grid


def _write_notebook(path: Path, params: str = PARAMS) -> Path:
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(BODY)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _executions(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in IGNORE} for r in rows]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _write_notebook(tmp_path_factory.mktemp("nb") / "tiny.ipynb")


@pytest.fixture(scope="module")
def grid(tiny, tmp_path_factory) -> tuple[SweepResult, Path]:
    """The 2 x 2 grid a in (1, 2) x b in (0.5, 0.25), run once with jobs=1 (4 kernels)."""
    log = tmp_path_factory.mktemp("log") / "calls.txt"
    res = run_sweep(tiny, {"a": ["1", "2"], "b": [0.5, 0.25]}, tmp_path_factory.mktemp("sweep") / "grid",
                    fixed={"log": str(log)}, progress=False)
    return res, log


# ---------------------------------------------------------------------------------------------------- no kernel
def test_parameters_and_conversion(tiny, tmp_path):
    assert notebook_parameters(tiny) == {"a": 1, "b": 0.5, "name": "x", "out_dir": "out", "fail": False, "log": ""}
    nb = _write_notebook(tmp_path / "types.ipynb", 'patch = [8, 48, 48]\nflag = True\nmaybe = None\nlr = 1e-2\n')
    d = notebook_parameters(nb)
    assert convert_value(nb, "patch", "[16, 48, 48]", d) == [16, 48, 48] == convert_value(nb, "patch", "16,48,48", d)
    assert [convert_value(nb, "flag", v, d) for v in ("true", "0", "False", "1")] == [True, False, False, True]
    assert convert_value(nb, "maybe", "None", d) is None and convert_value(nb, "maybe", "abc", d) == "abc"
    assert convert_value(nb, "lr", "3e-3", d) == 0.003 and convert_value(nb, "lr", 1, d) == 1.0
    with pytest.raises(PlanLiteError, match="zip mode needs the same number of values for every parameter"):
        run_sweep(nb, {"patch": ["[16, 48, 48]", "8,32,32"], "flag": ["true", "0", "yes"]}, tmp_path / "o",
                  mode="zip", progress=False)
    assert not (tmp_path / "o").exists(), "nothing is written for a rejected sweep"
    assert run_name({"lr": 0.003, "fes_points": 4}) == "lr=0.003_fes_points=4"
    assert run_name({"patch": [8, 48, 48]}) == "patch=8,48,48"
    odd = run_name({"name": "a/b c"})
    assert "/" not in odd and " " not in odd and odd != run_name({"name": "a-b-c"})


def test_unknown_parameter_lists_the_existing_ones(tiny, tmp_path):
    with pytest.raises(PlanLiteError) as exc:
        run_sweep(tiny, {"c": [1, 2]}, tmp_path / "o", progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "tiny.ipynb" in msg and "'c'" in msg
    assert "a, b, name, out_dir, fail, log" in msg


@pytest.mark.parametrize("name,value,expected", [("a", "x", "int"), ("a", "2.5", "int"), ("b", "half", "float"),
                                                 ("fail", "maybe", "bool")])
def test_wrong_type_value(tiny, tmp_path, name, value, expected):
    with pytest.raises(PlanLiteError) as exc:
        values = ["true", value] if name == "fail" else ["1", value]
        run_sweep(tiny, {name: values}, tmp_path / "o", progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and repr(name) in msg and repr(value) in msg and expected in msg


# ---------------------------------------------------------------------------------------------------- sweeps
def _threads(jobs: int) -> int:
    """Threads per kernel: the cores (capped by this process's own OMP_NUM_THREADS) shared among the jobs."""
    cores = min(os.cpu_count() or 1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    return max(1, cores // jobs)


def test_grid_rows_csv_and_markdown(grid):
    res, log = grid
    assert [r["run"] for r in res.rows] == ["a=1_b=0.5", "a=1_b=0.25", "a=2_b=0.5", "a=2_b=0.25"]
    assert all(r["status"] == "ok" for r in res.rows) and len(_executions(log)) == 4
    assert {(r["a"], r["b"]): r["score"] for r in res.rows} == {(1, 0.5): 0.5, (1, 0.25): 0.25, (2, 0.5): 1.0,
                                                                (2, 0.25): 0.5}
    row = res.rows[0]
    assert row["label"] == "x" and row["nested.sum"] == 1.5 and "shape" not in row  # flattened, lists left out
    assert row["wall_s"] > 0 and Path(row["notebook"]).name == "tiny.ipynb" and Path(row["notebook"]).exists()
    assert row["threads"] == str(_threads(1))
    run = json.loads((res.out_dir / "a=1_b=0.5" / "run.json").read_text())
    assert run["status"] == "ok" and run["params"] == {"a": 1, "b": 0.5} and run["metrics"]["score"] == 0.5
    with open(res.csv_path) as fh:
        table = list(csv.DictReader(fh))
    assert [(t["run"], float(t["score"])) for t in table] == [(r["run"], r["score"]) for r in res.rows]
    md = res.md_path.read_text()
    assert "| run | status | a | b | score |" in md and "| a=2_b=0.5 | ok | 2 | 0.5 | 1 |" in md
    assert res._repr_markdown_() in md and "<table>" in res._repr_html_()
    spec = json.loads((res.out_dir / "sweep.json").read_text())
    assert spec["mode"] == "grid" and spec["params"] == {"a": [1, 2], "b": [0.5, 0.25]}
    assert spec["fixed"] == {"log": str(log)} and spec["notebook"] == str(res.notebook)


def test_parallel_jobs_give_the_same_results(grid, tmp_path):
    res, log = grid
    par = run_sweep(res.notebook, {"a": [1, 2], "b": [0.5, 0.25]}, tmp_path / "par", jobs=2,
                    fixed={"log": str(log)}, progress=False)
    assert _comparable(par.rows) == _comparable(res.rows)
    assert {r["threads"] for r in par.rows} == {str(_threads(2))}


def test_resume_redoes_only_the_missing_run(grid, tmp_path):
    res, log = grid
    out = tmp_path / "grid"
    shutil.copytree(res.out_dir, out)
    shutil.rmtree(out / "a=2_b=0.5")
    before = len(_executions(log))
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/run.json")}
    again = run_sweep(res.notebook, {"a": [1, 2], "b": [0.5, 0.25]}, out, fixed={"log": str(log)}, progress=False)
    assert _executions(log)[before:] == ["2 0.5 x"], "only the deleted run is executed again"
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert _comparable(again.rows) == _comparable(res.rows)

    other = _write_notebook(tmp_path / "other.ipynb")
    with pytest.raises(PlanLiteError, match="holds a sweep of .*tiny.ipynb"):
        run_sweep(other, {"a": [1]}, out, fixed={"log": str(log)}, progress=False)


def test_zip_mode_and_a_changed_notebook_is_rerun(tmp_path):
    nb, log = _write_notebook(tmp_path / "zipped.ipynb"), tmp_path / "calls.txt"
    kw = {"mode": "zip", "fixed": {"log": str(log)}, "progress": False}
    res = run_sweep(nb, {"a": [1, 3], "name": ["p", "q"]}, tmp_path / "zip", **kw)
    assert [(r["run"], r["score"], r["label"]) for r in res.rows] == [("a=1_name=p", 0.5, "p"),
                                                                       ("a=3_name=q", 1.5, "q")]
    assert len(_executions(log)) == 2
    run_sweep(nb, {"a": [1, 3], "name": ["p", "q"]}, tmp_path / "zip", **kw)
    assert len(_executions(log)) == 2, "nothing to redo"
    _write_notebook(nb, PARAMS.replace("b = 0.5", "b = 2.0"))  # the notebook changed: its runs are stale
    res = run_sweep(nb, {"a": [1, 3], "name": ["p", "q"]}, tmp_path / "zip", **kw)
    assert len(_executions(log)) == 4 and [r["score"] for r in res.rows] == [2.0, 6.0]


def test_failing_run_is_reported_and_retried_only_on_request(tiny, tmp_path):
    log = tmp_path / "calls.txt"
    kw = {"mode": "zip", "fixed": {"log": str(log)}, "progress": False}
    params = {"a": [1, 2], "fail": ["false", "true"]}
    res = run_sweep(tiny, params, tmp_path / "f", **kw)
    ok, bad = res.rows
    assert ok["status"] == "ok" and ok["score"] == 0.5
    assert bad["status"] == "failed" and bad["error"] == "RuntimeError: boom with a=2"
    assert Path(bad["notebook"]).exists() and res.failed == [bad]
    assert json.loads((tmp_path / "f" / bad["run"] / "run.json").read_text())["status"] == "failed"
    assert "failed" in res.md_path.read_text() and "boom with a=2" in res.csv_path.read_text()
    assert len(_executions(log)) == 2

    again = run_sweep(tiny, params, tmp_path / "f", **kw)
    assert len(_executions(log)) == 2, "a failed run is not retried without retry_failed"
    assert again.rows[1]["status"] == "failed" and again.rows[1]["error"] == bad["error"]

    retried = run_sweep(tiny, params, tmp_path / "f", retry_failed=True, **kw)
    assert _executions(log)[2:] == ["2 0.5 x"], "retry_failed runs the failed one, not the finished one"
    assert retried.rows[1]["status"] == "failed"


# ---------------------------------------------------------------------------------------------------- CLI, plot
def test_cli_unknown_parameter_exits_2(tiny, tmp_path, capsys):
    rc = main(["sweep", str(tiny), "--param", "nope", "1", "2", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("plan-lite: error: tiny.ipynb: unknown parameter")
    assert "a, b, name" in err
    rc = main(["sweep", str(tmp_path / "missing.ipynb"), "--param", "a", "1", "--out", str(tmp_path / "o")])
    assert rc == 2 and "missing.ipynb: notebook not found" in capsys.readouterr().err


def test_cli_failing_run_exits_1(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["sweep", str(tiny), "--param", "a", "7", "--param", "fail", "true", "--out", str(out),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err
    line = next(ln for ln in captured.err.splitlines() if "a=7_fail=True" in ln)
    assert "RuntimeError: boom with a=7" in line and str(out / "a=7_fail=True" / "tiny.ipynb") in line
    assert "| a=7_fail=True | failed |" in captured.out


def test_cli_plot_writes_png(grid, tmp_path, capsys):
    res, log = grid
    out = tmp_path / "grid"
    shutil.copytree(res.out_dir, out)
    before = len(_executions(log))
    rc = main(["sweep", str(res.notebook), "--param", "a", "1", "2", "--param", "b", "0.5", "0.25",
               "--set", "log", str(log), "--out", str(out), "--plot", "score:a", "--no-progress"])
    assert rc == 0 and len(_executions(log)) == before, "every run is reused"
    png = out / "score_vs_a.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out
    fig = plot(res, "score", "a")
    assert len(fig.axes[0].lines) == 2  # one line per value of b
    with pytest.raises(PlanLiteError, match="numeric metrics: score"):
        plot(res, "label", "a")
