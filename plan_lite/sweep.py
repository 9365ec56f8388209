"""Run a papermill notebook over a grid of parameters and gather what each run writes (``plan-lite sweep``).

``run_sweep(notebook, {"lr": [1e-2, 3e-3]}, "runs/lr")`` executes the notebook once per combination into
``runs/lr/<run>/<stem>.ipynb`` (``<run>`` is readable from the parameters, e.g. ``lr=0.003``), passes
``out_dir=<run>/out`` when the notebook has an ``out_dir`` parameter, and collects the ``metrics.json`` it writes.
Each finished run leaves ``<run>/run.json`` (status, parameters, metrics, wall time), so a second call redoes only
what is missing or stale (other fixed parameters, or the notebook changed since), failed runs only with
``retry_failed=True``. The gathered table goes to ``results.csv`` and ``results.md``; ``plot`` draws a metric
against a parameter. Values given as strings (the CLI) are converted to the type of the parameter's default in
the notebook's ``parameters`` cell.

Every combination runs in its own ``python`` subprocess driving papermill, ``jobs`` at a time, with
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``TORCH_NUM_THREADS`` = ``cores // jobs`` for its kernel (cores = the
CPU count, or the caller's own ``OMP_NUM_THREADS`` if smaller).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import html
import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_path, atomic_write_json, atomic_write_text

_UNKNOWN = object()  # a default that is not a Python literal (e.g. ``Path("x")``)
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_RESERVED = ("run", "status", "wall_s", "error", "notebook", "run_dir")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


# ---------------------------------------------------------------------------------------------------- parameters
def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Name -> default of every assignment in the notebook's cell tagged ``parameters`` (``{}`` if none).

    A default that is not a Python literal is returned as an opaque marker (any value is then accepted).
    """
    path = Path(notebook)
    if not path.is_file():
        raise PlanLiteError(f"{path}: notebook not found")
    try:
        nb = json.loads(path.read_text())
        cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
                 and "parameters" in c.get("metadata", {}).get("tags", [])]
        source = "".join(cells[0]["source"]) if cells else ""
        tree = ast.parse(source)
    except (ValueError, SyntaxError, KeyError, AttributeError) as exc:
        raise PlanLiteError(f"{path}: cannot read its parameters cell ({type(exc).__name__}: {exc})") from None
    params: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        for t in targets:
            if isinstance(t, ast.Name):
                try:
                    params[t.id] = ast.literal_eval(node.value)
                except (ValueError, SyntaxError, TypeError):
                    params[t.id] = _UNKNOWN
    return params


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "bool (true/false/1/0)"
    if isinstance(default, (int, float, str, dict)):
        return type(default).__name__
    if isinstance(default, (list, tuple)):
        return "list (a Python literal such as [8, 48, 48])"
    return "Python literal or str"


def _convert(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (strings are parsed); ValueError/SyntaxError if it is not one."""
    text = value.strip() if isinstance(value, str) else None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _BOOL:
            return _BOOL[text.lower()]
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None:
            return int(text)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text is not None:
            return float(text)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple, dict)):
        v = ast.literal_eval(text) if text is not None else value
        if isinstance(default, dict) and isinstance(v, dict):
            return v
        if not isinstance(default, dict) and isinstance(v, (list, tuple)):
            return list(v)
    else:  # None or a non-literal default: a Python literal, else the string itself
        if text is None:
            return value
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return value
    raise ValueError(value)


def _known(notebook: str | os.PathLike, name: str, defaults: dict[str, Any]) -> None:
    if name not in defaults:
        existing = ", ".join(defaults) or "none (no cell tagged 'parameters')"
        raise PlanLiteError(f"{Path(notebook).name}: unknown parameter {name!r}; the notebook's parameters are: "
                            f"{existing}")


def convert_value(notebook: str | os.PathLike, name: str, value: Any, defaults: dict[str, Any]) -> Any:
    """Check ``name`` exists in ``defaults`` and convert ``value`` to its type; one-line PlanLiteError if not."""
    _known(notebook, name, defaults)
    try:
        return _convert(value, defaults[name])
    except (ValueError, SyntaxError, TypeError):
        expected = _type_name(defaults[name])
        raise PlanLiteError(f"{Path(notebook).name}: parameter {name!r}: {value!r} is not a valid {expected} "
                            f"(default {defaults[name]!r})") from None


def combinations(params: dict[str, list], mode: str = "grid") -> list[dict[str, Any]]:
    """The runs of a sweep: the cartesian product (``grid``) or the element-wise pairs (``zip``) of the lists."""
    names = list(params)
    if mode == "grid":
        return [dict(zip(names, vals)) for vals in itertools.product(*params.values())]
    if mode == "zip":
        lengths = {n: len(v) for n, v in params.items()}
        if len(set(lengths.values())) > 1:
            raise PlanLiteError("zip mode needs the same number of values for every parameter, got "
                                + ", ".join(f"{n}: {k}" for n, k in lengths.items()))
        return [dict(zip(names, vals)) for vals in zip(*params.values())]
    raise PlanLiteError(f"mode must be 'grid' or 'zip', got {mode!r}")


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"))
    return repr(v) if isinstance(v, float) else str(v)


def run_name(combo: dict[str, Any]) -> str:
    """Readable, filesystem-safe and deterministic: ``lr=0.003_fes_points=4`` (a hash is appended when characters
    had to be replaced or the name is long, so that different combinations never share a name)."""
    raw = "_".join(f"{k}={_fmt(v)}" for k, v in combo.items()) or "defaults"
    safe = re.sub(r"[^A-Za-z0-9._,=+-]+", "-", raw)
    if safe != raw or len(safe) > 100:
        digest = hashlib.sha1(json.dumps(combo, sort_keys=True, default=str).encode()).hexdigest()[:8]
        safe = f"{safe[:80]}-{digest}"
    return safe


# ---------------------------------------------------------------------------------------------------- results
def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar entries of ``metrics``; nested dicts flattened with dots (``a.b``); lists are left out."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flatten_metrics(v, f"{prefix}{k}."))
        elif _scalar(v):
            out[f"{prefix}{k}"] = v
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


@dataclass(repr=False)
class SweepResult:
    """The runs of a sweep, one dict per run in ``rows`` (``run``, ``status``, each swept parameter, each metric,
    ``wall_s``, ``error``, ``notebook`` (the executed copy) and ``run_dir``). Displays as a table in Jupyter."""

    notebook: Path
    out_dir: Path
    params: dict[str, list]
    rows: list[dict[str, Any]]
    mode: str = "grid"

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "results.csv"

    @property
    def md_path(self) -> Path:
        return self.out_dir / "results.md"

    @property
    def metric_names(self) -> list[str]:
        skip = {*_RESERVED, *self.params}
        return list(dict.fromkeys(k for r in self.rows for k in r if k not in skip))

    def columns(self, metrics: Sequence[str] | None = None, paths: bool = False) -> list[str]:
        chosen = self.metric_names if metrics is None else list(metrics)
        extra = ["error"] if self.failed else []
        return ["run", "status", *self.params, *chosen, "wall_s", *extra, *(["notebook"] if paths else [])]

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """A Markdown table of the runs (``metrics``: the metric columns to show, default all)."""
        cols = self.columns(metrics)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in self.rows]
        return "\n".join(lines)

    def to_csv(self) -> str:
        buf = io.StringIO()
        cols = self.columns(paths=True)
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            w.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r[c], (list, dict)) else r[c]
                        for c in cols])
        return buf.getvalue()

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (pandas is optional and imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
                       for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return (f"SweepResult({self.notebook.name}, {len(self.rows)} runs: {len(self.ok)} ok, "
                f"{len(self.failed)} failed, out_dir={str(self.out_dir)!r})")


def _row(name: str, combo: dict[str, Any], record: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"run": name, "status": record["status"] if record else "pending", **combo}
    for k, v in flatten_metrics((record or {}).get("metrics") or {}).items():
        row[f"metrics.{k}" if k in row or k in _RESERVED else k] = v
    executed = (record or {}).get("executed")
    row.update(wall_s=(record or {}).get("wall_s"), error=(record or {}).get("error"),
               notebook=str(run_dir / executed) if executed else None, run_dir=str(run_dir))
    return row


# ---------------------------------------------------------------------------------------------------- running
def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _child(job_path: str) -> int:
    """Entry point of the per-run subprocess: execute the job's notebook; on error write ``.error.json``."""
    import papermill as pm

    job = json.loads(Path(job_path).read_text())
    try:
        pm.execute_notebook(job["notebook"], job["output"], parameters=job["parameters"],
                            kernel_name=job["kernel_name"], cwd=job["cwd"], progress_bar=False, log_output=False,
                            execution_timeout=job["timeout"])
        return 0
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout, unreadable notebook: recorded, never raised
        error = f"{type(exc).__name__}: {exc}"
    atomic_write_json(Path(job_path).with_name(".error.json"), {"error": _one_line(error)})
    return 1


_CHILD = "import sys; from plan_lite.sweep import _child; sys.exit(_child(sys.argv[1]))"


def _find_metrics(run_dir: Path, since: float) -> dict[str, Any]:
    """``out/metrics.json``, else the first ``metrics.json`` under ``run_dir``, written after ``since`` (epoch s)."""
    found = [run_dir / "out" / "metrics.json"] + sorted(run_dir.rglob("metrics.json"))
    for path in found:
        if path.is_file() and path.stat().st_mtime >= since:  # never an earlier attempt's metrics
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            return data if isinstance(data, dict) else {}
    return {}


def _execute(job: dict[str, Any], run_dir: Path, threads: int) -> dict[str, Any]:
    """Run one combination in a subprocess and write its ``run.json`` (the record, returned)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".error.json").unlink(missing_ok=True)
    job_path = run_dir / ".job.json"
    atomic_write_json(job_path, job["papermill"])
    env = {**os.environ, **{k: str(threads) for k in _THREAD_VARS}}
    started, t0 = time.time() - 1.0, time.perf_counter()  # 1 s of slack for coarse file-system timestamps
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(job_path)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    atomic_write_text(run_dir / "papermill.log", proc.stdout + proc.stderr)
    error = None
    if proc.returncode != 0:
        err_file = run_dir / ".error.json"
        if err_file.is_file():
            error = json.loads(err_file.read_text())["error"]
        else:
            lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
            error = _one_line(lines[-1] if lines else f"exit code {proc.returncode}")
    record = {"status": "failed" if error else "ok", "run": job["name"], "notebook": job["papermill"]["notebook"],
              "notebook_sha1": job["sha1"], "params": job["params"], "fixed": job["fixed"],
              "metrics": _find_metrics(run_dir, started),
              "wall_s": round(wall, 2), "threads": threads, "executed": Path(job["papermill"]["output"]).name,
              "error": error, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(run_dir / "run.json", record)
    return record


def _read_record(path: Path) -> dict[str, Any] | None:
    """A run's ``run.json``, or None when it is missing or unreadable (the run is then done again)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("status") in ("ok", "failed") else None


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _check_spec(out_dir: Path, spec: dict[str, Any]) -> None:
    path = out_dir / "sweep.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise PlanLiteError(f"{path}: not valid JSON (remove it to start a new sweep there)") from None
    if Path(str(old.get("notebook"))).name != Path(spec["notebook"]).name:
        raise PlanLiteError(f"{out_dir}: holds a sweep of {old.get('notebook')}, not of {spec['notebook']}; "
                            "use another output folder")


def run_sweep(notebook: str | os.PathLike, params: dict[str, list], out_dir: str | os.PathLike, *, jobs: int = 1,
              mode: str = "grid", retry_failed: bool = False, fixed: dict[str, Any] | None = None,
              progress: bool = True, kernel_name: str = "python3", cwd: str | os.PathLike | None = None,
              execution_timeout: float | None = None) -> SweepResult:
    """Execute ``notebook`` once per combination of ``params`` (``grid``: cartesian product, ``zip``: element-wise)
    into ``out_dir/<run>/``, ``jobs`` at a time; ``fixed`` parameters are the same for every run.

    Finished runs (``<run>/run.json`` with the same parameters and the same notebook contents) are reused; failed
    ones are run again only with ``retry_failed``. A failing run never stops the others: it has
    ``status == "failed"`` and its ``error`` (``Exception: message``) in the result. The kernels run in ``cwd``
    (default: the notebook's folder), ``execution_timeout`` seconds per cell at most. Writes ``sweep.json``,
    ``results.csv`` and ``results.md`` into ``out_dir``; raises ``PlanLiteError`` (one line) for an unknown
    parameter, a value of the wrong type, unequal ``zip`` lists, or an ``out_dir`` that holds another notebook's
    sweep.
    """
    nb_path = Path(notebook).resolve()
    defaults = notebook_parameters(notebook)
    fixed = dict(fixed or {})
    if not isinstance(jobs, int) or jobs < 1:
        raise PlanLiteError(f"jobs must be an int >= 1, got {jobs!r}")
    for name in (*params, *fixed):
        if name == "out_dir":
            raise PlanLiteError("out_dir is set by the sweep (<out>/<run>/out); do not sweep or fix it")
        _known(nb_path, name, defaults)
    for name, values in params.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise PlanLiteError(f"parameter {name!r}: give a non-empty list of values, got {values!r}")
    swept = {n: [convert_value(nb_path, n, v, defaults) for v in vals] for n, vals in params.items()}
    fixed = {n: convert_value(nb_path, n, v, defaults) for n, v in fixed.items()}
    if set(swept) & set(fixed):
        raise PlanLiteError(f"parameters both swept and fixed: {', '.join(sorted(set(swept) & set(fixed)))}")
    combos = combinations(swept, mode)
    names = [run_name(c) for c in combos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise PlanLiteError(f"two runs would be {dup!r}: a parameter lists the same value twice")

    out = Path(out_dir).resolve()
    digest = hashlib.sha1(nb_path.read_bytes()).hexdigest()
    spec = _jsonable({"notebook": str(nb_path), "notebook_sha1": digest, "params": swept, "mode": mode,
                      "fixed": fixed, "kernel_name": kernel_name, "runs": names})
    _check_spec(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", spec)

    kernel_cwd = str(Path(cwd).resolve() if cwd else nb_path.parent)
    records: dict[str, dict[str, Any] | None] = {}
    todo = []
    for name, combo in zip(names, combos):
        rec = _read_record(out / name / "run.json")
        same = rec is not None and rec.get("params") == _jsonable(combo) and rec.get("fixed") == spec["fixed"] \
            and rec.get("notebook_sha1") == digest  # else the run is stale: parameters or notebook changed
        if same and (rec["status"] == "ok" or (rec["status"] == "failed" and not retry_failed)):
            records[name] = rec
            continue
        records[name] = None
        run_params = {**fixed, **combo}
        if "out_dir" in defaults:
            run_params["out_dir"] = str(out / name / "out")
        pm_job = {"notebook": str(nb_path), "output": str(out / name / f"{nb_path.stem}.ipynb"),
                  "parameters": _jsonable(run_params), "kernel_name": kernel_name, "cwd": kernel_cwd,
                  "timeout": execution_timeout}
        todo.append({"name": name, "params": _jsonable(combo), "fixed": spec["fixed"], "sha1": digest,
                     "papermill": pm_job})

    def result() -> SweepResult:
        rows = [_row(n, c, records[n], out / n) for n, c in zip(names, combos)]
        return SweepResult(notebook=nb_path, out_dir=out, params=swept, rows=rows, mode=mode)

    def write_results() -> SweepResult:
        res = result()
        atomic_write_text(out / "results.csv", res.to_csv())
        head = (f"Sweep of `{nb_path.name}` ({mode}, {len(res.rows)} runs: {len(res.ok)} ok, "
                f"{len(res.failed)} failed)")
        atomic_write_text(out / "results.md", f"{head}\n\n{res.to_markdown()}\n")
        return res

    from tqdm import tqdm

    cores = os.cpu_count() or 1
    try:  # a caller that limits its own threads (the book build: 1 per lesson) limits its kernels too
        cores = min(cores, int(os.environ.get("OMP_NUM_THREADS", cores)))
    except ValueError:
        pass
    threads = max(1, cores // jobs)
    bar = tqdm(total=len(names), initial=len(names) - len(todo), desc=f"sweep {nb_path.stem}", unit="run",
               disable=not progress)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_execute, job, out / job["name"], threads): job["name"] for job in todo}
            try:
                for fut in as_completed(futures):
                    records[futures[fut]] = fut.result()
                    write_results()
                    bar.set_postfix(failed=sum(1 for r in records.values() if r and r["status"] == "failed"),
                                    refresh=False)
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()
    return write_results()


# ---------------------------------------------------------------------------------------------------- plot
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def plot(result: SweepResult, metric: str | Sequence[str], param: str, path: str | os.PathLike | None = None,
         *, title: str | None = None, ylabel: str | None = None):
    """A ``matplotlib.figure.Figure`` of ``metric`` (one name or several) against the swept ``param``, one line per
    combination of the other swept parameters; saved as PNG to ``path`` (atomically) when given."""
    from matplotlib.figure import Figure

    metrics = [metric] if isinstance(metric, str) else list(metric)
    if param not in result.params:
        swept = ", ".join(result.params) or "none"
        raise PlanLiteError(f"plot: {param!r} is not a swept parameter; swept: {swept}")
    ok = result.ok
    for m in metrics:
        if not any(_number(r.get(m)) for r in ok):
            numeric = [k for k in result.metric_names if any(_number(r.get(k)) for r in ok)]
            raise PlanLiteError(f"plot: no successful run has a numeric metric {m!r}; numeric metrics: "
                                f"{', '.join(numeric) or 'none'}")
    values = result.params[param]
    numeric_x = all(_number(v) for v in values)
    others = [p for p in result.params if p != param]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(", ".join(f"{p}={_fmt(r[p])}" for p in others), []).append(r)

    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    for m in metrics:
        for label, rows in groups.items():
            pts = sorted((r[param] if numeric_x else values.index(r[param]), r[m])
                         for r in rows if _number(r.get(m)))
            name = ", ".join(x for x in ((m if len(metrics) > 1 else ""), label) if x) or m
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if not numeric_x:
        ax.set_xticks(range(len(values)), [_fmt(v) for v in values])
    elif all(isinstance(v, int) for v in values) and len(values) <= 12:
        ax.set_xticks(sorted(values))
    ax.set(xlabel=param, ylabel=ylabel or (metrics[0] if len(metrics) == 1 else "value"),
           title=title or f"{result.notebook.stem}: {', '.join(metrics)} vs {param}")
    if len(metrics) > 1 or len(groups) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if path is not None:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return fig
