"""Generate the lesson notebooks ``notebooks/0X_*.ipynb`` from the Python sources in ``scripts/lessons/``.

The committed artefacts are the ``.ipynb`` files, written without outputs and without execution counts, with
deterministic cell ids (so regenerating an unchanged lesson gives a byte-identical file).

Usage::

    python scripts/make_notebooks.py            # write notebooks/*.ipynb
    python scripts/make_notebooks.py --check    # exit 1 if a notebook differs from its source (CI drift check)

Lesson sources (``scripts/lessons/0X_name.py``) are jupytext percent-format notebooks: ``# %% [markdown]`` and
``# %%`` cells, the papermill parameters cell marked ``# %% tags=["parameters"]``. jupytext reads them; this
script only fixes what must be identical on every machine (kernelspec, cell ids, no jupytext metadata). In
JupyterLab (with jupytext) a source opens as a notebook and can be paired with its ``.ipynb``.
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


def build_notebook(path: Path) -> nbformat.NotebookNode:
    """The lesson notebook of one percent-format source, without outputs and with deterministic cell ids."""
    import jupytext

    stem = path.stem
    src = jupytext.reads(path.read_text(), fmt="py:percent")
    nb = new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(c for c in src.cells if c.source.strip()):
        new = new_markdown_cell(cell.source) if cell.cell_type == "markdown" else new_code_cell(cell.source)
        new["id"] = f"{stem[:2]}-{i:03d}"
        tags = list(cell.metadata.get("tags", []))
        if tags:
            new.metadata["tags"] = tags
        nb.cells.append(new)
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
