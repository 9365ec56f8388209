#!/usr/bin/env python
"""Build the plan-lite book offline (``make book``).

1. make sure the synthetic datasets exist (``make data`` makes them; generated here if missing): the realistic
   ``data/synthetic`` (lessons 1-4) and ``data/synthetic_cpu`` at 5 x 4 x 4 mm (lessons 5-7);
2. execute every ``notebooks/0*.ipynb`` with papermill (kernel ``python3``, cwd ``notebooks/``, default
   parameters) into ``book/notebooks/``, ``--jobs`` at a time (default 2) in separate processes; wall times go
   to ``<build>/notebook_times.json``, kernel output to ``<build>/logs/``; any failing cell stops the build with
   the notebook's name and error (the failed notebook is kept under ``<build>/failed/``);
3. write the generated pages into ``book/generated/`` (config diff, API module list, data cards, demo figure)
   and ``book/generated/_toc.yml`` (the lessons part lists the executed notebooks that exist);
4. ``jupyter-book build book/ -W -n --keep-going`` (strict).

``--skip-notebooks`` skips step 2 and builds with whatever executed notebooks already exist (used by the tests).
See ``book/design_decisions.md#dd-stack`` for why jupyter-book 1.x, papermill and a local MathJax.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plan_lite.utils import atomic_write_json, atomic_write_text  # noqa: E402

API_ROOTS = ("plan_lite.config", "plan_lite.labels", "plan_lite.model", "plan_lite.losses", "plan_lite.metrics",
             "plan_lite.data", "plan_lite.engine", "plan_lite.viz", "plan_lite.sweep")
DATA_CARDS = ("synthetic_liver_ct.md", "lits.md", "msd_task03.md")
MATHJAX = Path("_static/mathjax/es5/tex-chtml-full.js")
WIDGETS_JS = Path("_static/widgets/embed-amd.js")  # make widgets: Jupyter widgets drawn offline


def log(msg: str) -> None:
    print(f"[build_book] {msg}", flush=True)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plan_lite.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, check=check)


# ---------------------------------------------------------------------------------------------------- step 1
# The cohort of lessons 5-7 (plan_lite.config.CPU_SYNTH: the realistic generator at 5 x 4 x 4 mm).
CPU_ARGS = ("--spacing", "5", "4", "4", "--shape", "24", "96", "96")


def ensure_data(data: Path, cases: int, extra: tuple[str, ...] = ()) -> None:
    if (data / "dataset.json").exists():
        return
    log(f"{data}: no dataset, generating {cases} synthetic cases")
    res = cli("synth", str(data), "--cases", str(cases), "--seed", "0", "--overwrite", "--no-progress", *extra,
              check=False)
    if res.returncode != 0:
        raise SystemExit(f"[build_book] error: could not generate {data}: {res.stderr.strip() or res.stdout}")


# ---------------------------------------------------------------------------------------------------- step 2
def execute_notebooks(src_dir: Path, out_dir: Path, build_dir: Path, book: Path, only: list[str] | None,
                      timeout: int, jobs: int = 1) -> dict[str, float]:
    notebooks = sorted(src_dir.glob("0*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(o in nb.stem for o in only)]
    if not notebooks:
        log(f"warning: no notebooks {src_dir}/0*.ipynb to execute (the book has no lessons)")
    env = {"PLAN_LITE_STATIC_VIEWS": "1",  # no live frontend under papermill: views fall back to montages
           "PLAN_LITE_BOOK_STATIC": str((book / "_static").resolve()),  # where 3D snapshots may be written
           "MPLBACKEND": os.environ.get("MPLBACKEND", "module://matplotlib_inline.backend_inline")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernels inherit the environment
    try:
        return _execute(notebooks, src_dir, out_dir, build_dir, timeout, jobs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Lessons that read another lesson's output start only after it (lesson 6 evaluates lesson 5's checkpoint).
DEPENDS = {"06_evaluation": ("05_training",)}
# Start order when no earlier build recorded times: the longest chain (lesson 5, then 6) first.
EXPECTED_SECONDS = {"05_training": 300.0, "08_real_ct": 240.0, "07_experiments": 120.0, "06_evaluation": 60.0}


def _execute(notebooks: list[Path], src_dir: Path, out_dir: Path, build_dir: Path, timeout: int,
             jobs: int = 1) -> dict[str, float]:
    """Run papermill in ``jobs`` parallel subprocesses (each kernel gets ``cpu_count // jobs`` threads), longest
    lessons first, respecting ``DEPENDS``; the executed copy replaces ``out_dir/<name>`` only on success."""
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    times_path = build_dir / "notebook_times.json"
    if times_path.exists():
        times.update(json.loads(times_path.read_text()))
    previous = dict(times)
    # longest first (by the last build's times), so the short lessons fill the gaps at the end
    pending = sorted(notebooks, key=lambda nb: -previous.get(nb.stem, EXPECTED_SECONDS.get(nb.stem, 30.0)))
    names = {nb.stem for nb in notebooks}
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    running: dict[str, tuple[subprocess.Popen, float, Path, Path, object]] = {}
    done: set[str] = set()
    try:
        while pending or running:
            for nb in list(pending):
                if len(running) >= max(1, jobs):
                    break
                if any(d in names and d not in done for d in DEPENDS.get(nb.stem, ())):
                    continue
                pending.remove(nb)
                tmp = out_dir / f".{nb.stem}.tmp.ipynb"
                log_path = build_dir / "logs" / f"{nb.stem}.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log_path, "w")  # noqa: SIM115 - closed when the process ends
                cmd = [sys.executable, "-m", "papermill", str(nb), str(tmp), "-k", "python3", "--cwd", str(src_dir),
                       "--no-progress-bar", "--execution-timeout", str(timeout)]
                env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
                log(f"executing {nb.name} ({threads} thread(s)) ...")
                running[nb.stem] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env),
                                    time.perf_counter(), tmp, log_path, fh)
            if not running:
                raise SystemExit(f"[build_book] error: unmet lesson dependencies: {[nb.name for nb in pending]}")
            time.sleep(0.5)
            for stem, (proc, t0, tmp, log_path, fh) in list(running.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del running[stem]
                if proc.returncode != 0:
                    failed = build_dir / "failed" / f"{stem}.ipynb"
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    if tmp.exists():
                        shutil.move(str(tmp), failed)
                    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
                    err = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln),
                               lines[-1] if lines else "no output")
                    raise SystemExit(f"[build_book] error: {stem}.ipynb failed ({err.strip()}); executed copy: "
                                     f"{failed}; log: {log_path}")
                os.replace(tmp, out_dir / f"{stem}.ipynb")
                times[stem] = round(time.perf_counter() - t0, 2)
                done.add(stem)
                log(f"executed {stem}.ipynb in {times[stem]:.1f} s")
                atomic_write_json(times_path, times)
    finally:
        for proc, _, tmp, _, fh in running.values():
            proc.kill()
            proc.wait()
            fh.close()
            tmp.unlink(missing_ok=True)
    return times


# ---------------------------------------------------------------------------------------------------- step 3
def write_config_diff(gen: Path) -> None:
    res = cli("config", "--preset", "paper", "--diff", "official")
    atomic_write_text(gen / "config_diff.md", res.stdout.strip() + "\n")


def api_modules() -> list[str]:
    """Every module under ``API_ROOTS`` (packages first, then their submodules). A module that fails to import
    is a build error naming it: the API page documents the whole package or nothing."""
    found: list[str] = []
    for name in API_ROOTS:
        mod = _import_or_fail(name)
        found.append(name)
        if hasattr(mod, "__path__"):
            for info in sorted(pkgutil.iter_modules(mod.__path__), key=lambda m: m.name):
                if info.name.startswith("_"):
                    continue
                _import_or_fail(f"{name}.{info.name}")
                found.append(f"{name}.{info.name}")
    return found


def _import_or_fail(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise SystemExit(f"build_book: API module {name} does not import ({type(exc).__name__}: {exc})") from None


def write_api(gen: Path) -> list[str]:
    mods = api_modules()
    parts = []
    for name in mods:
        # packages: docstring only (their members are documented in the submodules, no duplicates)
        members = "" if hasattr(sys.modules[name], "__path__") else "\n   :members:"
        parts.append(f"## `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}{members}\n```\n")
    atomic_write_text(gen / "api_modules.md", "\n".join(parts) or "No module could be imported.\n")
    return mods


def write_data_cards(gen: Path, cards_dir: Path) -> list[str]:
    """Include every data card that exists (cards are written separately); headings go one level down."""
    present = [c for c in DATA_CARDS if (cards_dir / c).exists()]
    present += sorted(p.name for p in cards_dir.glob("*.md") if p.name not in DATA_CARDS and p.name != "README.md")
    rel = os.path.relpath(cards_dir, gen.parent)
    body = [f"```{{include}} {rel}/{c}\n:heading-offset: 1\n```\n" for c in present]
    missing = [c for c in DATA_CARDS if c not in present]
    if missing:
        log(f"data cards not written yet: {', '.join(missing)}")
        body.append("```{note}\nData cards still to come: " + ", ".join(f"`{c}`" for c in missing) + ".\n```\n")
    atomic_write_text(gen / "data_cards_body.md", "\n".join(body))
    return present


def write_demo(gen: Path, demo_dir: Path, data: Path) -> Path | None:
    """Copy the newest ``make demo`` montage (or draw one from the dataset) for the intro page."""
    pngs = sorted(demo_dir.glob("montage_*.png"), key=lambda p: p.stat().st_mtime)
    if not pngs and (data / "dataset.json").exists():
        res = cli("demo", str(data), "--out", str(demo_dir), check=False)
        pngs = [Path(res.stdout.strip())] if res.returncode == 0 and res.stdout.strip() else []
    if pngs:
        shutil.copyfile(pngs[-1], gen / "demo_montage.png")
        case = re.sub(r"^montage_", "", pngs[-1].stem)
        text = (f"```{{figure}} generated/demo_montage.png\n:alt: CT montage of {case}\n:width: 100%\n\n"
                f"`plan-lite demo` on case `{case}`: rows are the CT phases, columns slices through the lesions; "
                "ground truth as contours in the label colours, lesion ids in yellow.\n```\n")
    else:
        (gen / "demo_montage.png").unlink(missing_ok=True)
        text = "*(The montage appears here once `make demo` has run.)*\n"
    atomic_write_text(gen / "demo.md", text)
    return pngs[-1] if pngs else None


def notebook_title(path: Path) -> str:
    """First markdown heading of a notebook, without the ``#``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def executed_lessons(book: Path) -> list[str]:
    return sorted(p.stem for p in (book / "notebooks").glob("0*.ipynb"))


def write_lessons(gen: Path, src_dir: Path, executed: list[str]) -> None:
    """The intro's lesson table from the notebooks' titles; lessons in the book are linked."""
    rows = ["| | Lesson | Notebook |", "|---|---|---|"]
    for i, nb in enumerate(sorted(src_dir.glob("0*.ipynb")), start=1):
        title = re.sub(r"^Lesson \d+:\s*", "", notebook_title(nb)).replace("|", "\\|")
        link = f"{{doc}}`{title} <notebooks/{nb.stem}>`" if nb.stem in executed else f"{title} *(not built)*"
        rows.append(f"| {i} | {link} | `notebooks/{nb.name}` |")
    text = "\n".join(rows) + "\n" if len(rows) > 2 else "*(The lesson notebooks are being written.)*\n"
    atomic_write_text(gen / "lessons.md", text)


def write_toc(book: Path, gen: Path, executed: list[str]) -> None:
    """``generated/_toc.yml``: ``_toc.yml`` with the Lessons part listing the ``executed`` notebooks."""
    import yaml

    toc = yaml.safe_load((book / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        if part.get("caption") == "Lessons":
            expected = [c["file"].split("/", 1)[1] for c in part["chapters"]]
            for name in expected:
                if name not in executed:
                    log(f"lesson notebooks/{name}.ipynb not executed yet: left out of the book")
            if not executed:
                continue
            part = {**part, "chapters": [{"file": f"notebooks/{n}"} for n in executed]}
        parts.append(part)
    toc["parts"] = parts
    atomic_write_text(gen / "_toc.yml", yaml.safe_dump(toc, sort_keys=False))


# ---------------------------------------------------------------------------------------------------- step 4
def jupyter_book(book: Path, gen: Path, path_output: Path | None) -> float:
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "--toc", str(gen / "_toc.yml"),
           "-W", "-n", "--keep-going"]
    if path_output is not None:
        cmd += ["--path-output", str(path_output)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-60:])
        raise SystemExit(f"{tail}\n[build_book] error: jupyter-book build failed (exit {res.returncode})")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--book", type=Path, default=ROOT / "book")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "synthetic")
    p.add_argument("--cases", type=int, default=24, help="synthetic cases if the dataset must be generated")
    p.add_argument("--cpu-data", type=Path, default=ROOT / "data" / "synthetic_cpu",
                   help="cohort of lessons 5-7 at 5 x 4 x 4 mm (generated if missing)")
    p.add_argument("--cpu-cases", type=int, default=60, help="cases of that cohort if it must be generated")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="notebooks executed in parallel (default: 2, or 1 on a 1-core machine)")
    p.add_argument("--demo-dir", type=Path, default=ROOT / "build" / "demo")
    p.add_argument("--path-output", type=Path, help="jupyter-book --path-output (default: book/_build)")
    p.add_argument("--skip-notebooks", action="store_true", help="do not execute notebooks; use existing ones")
    p.add_argument("--no-lessons", action="store_true", help="leave the lesson notebooks out (reference pages only)")
    p.add_argument("--only", action="append", help="execute only notebooks whose name contains this")
    p.add_argument("--timeout", type=int, default=600, help="per-cell execution timeout in seconds")
    p.add_argument("--no-build", action="store_true", help="stop after writing the generated pages")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    book = args.book.resolve()
    gen = book / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    build_dir = (args.path_output.resolve() if args.path_output else book) / "_build"
    if not (book / MATHJAX).exists():
        log(f"warning: {book / MATHJAX} missing (run `make mathjax`): math will not render offline")
    if not (book / WIDGETS_JS).exists():
        log(f"warning: {book / WIDGETS_JS} missing (run `make widgets`): widgets (the lesion browser) will not "
            "render in the book")
    if not args.skip_notebooks:
        ensure_data(args.data.resolve(), args.cases)
        ensure_data(args.cpu_data.resolve(), args.cpu_cases, CPU_ARGS)
        execute_notebooks(args.notebooks.resolve(), book / "notebooks", build_dir, book, args.only, args.timeout,
                          args.jobs)
    write_config_diff(gen)
    mods = write_api(gen)
    cards = write_data_cards(gen, ROOT / "data_cards")
    write_demo(gen, args.demo_dir.resolve(), args.data.resolve())
    lessons = [] if args.no_lessons else executed_lessons(book)
    write_lessons(gen, args.notebooks.resolve(), lessons)
    write_toc(book, gen, lessons)
    log(f"generated pages: {len(mods)} API modules, {len(cards)} data cards, {len(lessons)} lessons")
    if args.no_build:
        return 0
    t_book = jupyter_book(book, gen, args.path_output.resolve() if args.path_output else None)
    html = build_dir / "html" / "index.html"
    log(f"jupyter-book build {t_book:.1f} s; total {time.perf_counter() - t_start:.1f} s; open {html}")
    build_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(build_dir / "book_build_time.json",
                      {"jupyter_book_s": round(t_book, 2), "total_s": round(time.perf_counter() - t_start, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
