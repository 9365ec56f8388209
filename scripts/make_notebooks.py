"""Generate the lesson notebooks ``notebooks/0X_*.ipynb`` from the Python sources in ``scripts/lessons/``.

The committed artefacts are the ``.ipynb`` files, written without outputs and without execution counts, with
deterministic cell ids (so regenerating an unchanged lesson gives a byte-identical file).

Usage::

    python scripts/make_notebooks.py            # write notebooks/*.ipynb
    python scripts/make_notebooks.py --check    # exit 1 if a notebook differs from its source (CI drift check)

Lesson source format (``scripts/lessons/0X_name.py``): cells separated by lines ``# %% [markdown]``,
``# %%`` (code) or ``# %% [parameters]`` (the papermill parameters cell); markdown cells are written as
``# ``-prefixed comment lines, exactly like jupytext's percent format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "scripts" / "lessons"
NOTEBOOKS = ROOT / "notebooks"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (plan-lite)", "language": "python"}


def parse_cells(text: str) -> list[tuple[str, str]]:
    """[(kind, source)] with kind in ``markdown``, ``code``, ``parameters``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            tag = line[4:].strip()
            kind = {"[markdown]": "markdown", "[parameters]": "parameters", "": "code"}.get(tag)
            if kind is None:
                raise ValueError(f"unknown cell marker {line!r}")
            cells.append((kind, []))
            continue
        if not cells:
            continue  # module header before the first cell (the source file's own docstring)
        cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in lines]
        src = "\n".join(lines).strip("\n")
        if src:
            out.append((kind, src))
    return out


def build_notebook(path: Path) -> nbformat.NotebookNode:
    stem = path.stem
    nb = new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(parse_cells(path.read_text())):
        cell = new_markdown_cell(src) if kind == "markdown" else new_code_cell(src)
        cell["id"] = f"{stem[:2]}-{i:03d}"
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare, write nothing")
    ap.add_argument("names", nargs="*", help="lesson stems to build (default: all)")
    args = ap.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [s for s in sources if s.stem in args.names or s.stem[:2] in args.names]
    stale = []
    for src in sources:
        text = render(build_notebook(src))
        dst = NOTEBOOKS / f"{src.stem}.ipynb"
        if args.check:
            if not dst.exists() or dst.read_text() != text:
                stale.append(dst.name)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.read_text() != text:
            dst.write_text(text)
            print(f"wrote {dst.relative_to(ROOT)}")
    if stale:
        print("out of date (run scripts/make_notebooks.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
