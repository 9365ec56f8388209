"""References a reader can open: no citation of files outside the repository, and every citation of the book page
"Design decisions" (``book/design_decisions.md#dd-<target>``) names a target that exists on that page.

The convention is stated at the top of ``book/design_decisions.md``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "design_decisions.md"
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt", ".ipynb"}

# Reference notes that live outside this repository. Built from pieces so that this file does not cite them.
FORBIDDEN = tuple(a + b for a, b in (("plan_", "reference"), ("synthetic_ct_", "facts"), ("notebook_", "stack"),
                                     ("learning_", "study"), ("shared/", "reference")))
FORBIDDEN_RE = re.compile("|".join(re.escape(f) for f in FORBIDDEN))
TARGET_RE = re.compile(r"^\((dd-[a-z0-9][a-z0-9-]*)\)=\s*$", re.M)  # a MyST target line on the page
# A citation: the path with "#dd-<target>", or only "#dd-<target>" after a first one on the same line. The
# placeholder "dd-<target>" itself is not a citation.
CITE_RE = re.compile(r"#(dd-[a-z0-9][a-z0-9-]*)")
PAGE_ANCHOR_RE = re.compile(r"design_decisions\.md#(?!dd-<)([A-Za-z0-9_-]+)")  # any anchor of the page, dd- or not


def repo_text_files() -> list[Path]:
    """Tracked files plus new files git does not ignore, limited to the text kinds that can hold a citation."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout (git ls-files failed)")
    files = []
    for name in sorted(set(filter(None, out.split("\0")))):
        path = ROOT / name
        if (path.suffix in TEXT_SUFFIXES or path.name == "Makefile") and path.is_file():
            files.append(path)
    return files


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def page_targets() -> set[str]:
    return set(TARGET_RE.findall(read(PAGE)))


def test_no_citation_of_files_outside_the_repository():
    offenders = []
    for path in repo_text_files():
        for n, line in enumerate(read(path).splitlines(), start=1):
            if FORBIDDEN_RE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:160]}")
    assert not offenders, ("files outside the repository are cited (point to the paper, book/design_decisions.md "
                           "or a data card instead):\n" + "\n".join(offenders))


def test_design_decisions_targets_are_unique_and_head_a_section():
    text = read(PAGE)
    names = TARGET_RE.findall(text)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = TARGET_RE.match(line)
        if m:
            assert i + 1 < len(lines) and lines[i + 1].startswith("#"), f"target {m.group(1)} is not above a heading"
    for required in ("dd-conventions", *(f"dd-d{i}" for i in range(1, 7)), "dd-pitfalls", "dd-stack"):
        assert required in names, required


def test_every_design_decisions_citation_resolves():
    targets = page_targets()
    missing, count_plan_lite = [], 0
    files = set(repo_text_files()) | set((ROOT / "plan_lite").rglob("*.py"))
    for path in sorted(files):
        rel = path.relative_to(ROOT)
        for n, line in enumerate(read(path).splitlines(), start=1):
            names = set(CITE_RE.findall(line)) | set(PAGE_ANCHOR_RE.findall(line))
            for name in sorted(names):
                if rel.parts[0] == "plan_lite":
                    count_plan_lite += 1
                if name not in targets:
                    missing.append(f"{rel}:{n}: #{name}")
    assert not missing, "citations of targets that book/design_decisions.md does not have:\n" + "\n".join(missing)
    assert count_plan_lite >= 20, f"only {count_plan_lite} citations of the page found in plan_lite/"


def test_design_decisions_roles_resolve():
    """``{ref}`` roles on the page name its own targets; ``{doc}`` roles name existing book pages."""
    text = read(PAGE)
    targets = page_targets()
    refs = re.findall(r"\{ref\}`([^`<]+?)`", text)
    assert refs and all(r in targets for r in refs), sorted(set(refs) - targets)
    for doc in re.findall(r"\{doc\}`([^`<]+?)`", text):
        assert (PAGE.parent / f"{doc}.md").is_file() or (PAGE.parent / f"{doc}.ipynb").is_file(), doc
    toc = read(ROOT / "book" / "_toc.yml")
    assert re.search(r"^\s*- file: design_decisions\s*$", toc, re.M), "design_decisions is not in book/_toc.yml"
