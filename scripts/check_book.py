#!/usr/bin/env python
"""Check a built book in headless Chromium: screenshots, rendered math, figures, tables, broken internal links.

    python scripts/check_book.py book/_build/html --artifacts build/test-artifacts

Every lesson page is checked against the executed notebook it was built from (``book/notebooks/<name>.ipynb``):
it must show at least as many images in its cell outputs as the notebook has ``image/png`` outputs, a ``<table>``
for every Markdown table the notebook displayed, and no figure placeholder text (``<Figure size ... with N Axes>``,
what a figure becomes when only its ``text/plain`` representation was recorded).

Offline by construction: Chromium runs with networking features off and pages load from ``file://``; the book
serves MathJax from ``_static/mathjax`` (``make mathjax``). Chromium comes from ``make browser-deps`` (Debian
``chromium``). Exit code 1 lists every problem found. ``tests/test_book.py`` uses the same functions.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--allow-file-access-from-files", "--hide-scrollbars")
WEBGL_FLAGS = ("--headless=new", "--enable-unsafe-swiftshader", "--use-gl=angle", "--use-angle=swiftshader")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: int, webgl: bool = False) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (make browser-deps)")
    base = [f for f in BASE_FLAGS if f not in ("--headless", "--disable-gpu")] if webgl else list(BASE_FLAGS)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *base, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1280, 900), budget_ms: int | None = None,
               webgl: bool = False, timeout: int = 180) -> Path:
    """PNG screenshot of a local HTML page after ``budget_ms`` of virtual time (MathJax has typeset by then).

    ``webgl=True`` (k3d snapshots) adds the SwiftShader flags and a 60 s budget by default: k3d decodes its data in
    web workers, which virtual time does not wait for, so a short budget gives a blank page on a busy machine.
    """
    if budget_ms is None:
        budget_ms = 60000 if webgl else 5000
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    args = [*(WEBGL_FLAGS + ("--run-all-compositor-stages-before-draw",) if webgl else ()), f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}", f"--screenshot={png.resolve()}", page.resolve().as_uri()]
    res = _run(args, timeout, webgl)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {page} (exit {res.returncode}): {res.stderr[-500:]}")
    return png


def dump_dom(page: Path, budget_ms: int = 5000, timeout: int = 120) -> str:
    """The DOM after scripts ran (``--dump-dom``), i.e. with MathJax output in place."""
    res = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()], timeout)
    if res.returncode != 0 or "<html" not in res.stdout.lower():
        raise RuntimeError(f"chromium --dump-dom failed for {page} (exit {res.returncode}): {res.stderr[-500:]}")
    return res.stdout


class _PageParser(HTMLParser):
    """Collects hrefs, img srcs, custom elements and the visible text outside code/script/math output; counts the
    images and tables inside notebook cell outputs (myst-nb's ``div.cell_output``)."""

    SKIP = {"script", "style", "pre", "code", "mjx-container", "math", "textarea", "noscript"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.output_imgs: list[str] = []
        self.output_tables = 0
        self._skip = 0
        self._stack: list[tuple[str, bool]] = []  # open elements, True = a cell output starts here

    def _in_output(self) -> bool:
        return any(is_out for _, is_out in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"] or "")
            if self._in_output():
                self.output_imgs.append(a["src"] or "")
        if tag == "table" and self._in_output():
            self.output_tables += 1
        if tag in self.SKIP:
            self._skip += 1
        if tag not in self.VOID:
            self._stack.append((tag, "cell_output" in (a.get("class") or "").split()))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self._stack and self._stack[-1][0] == tag:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if any(t == tag for t, _ in self._stack):
            while self._stack and self._stack.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def parse(page_html: str) -> _PageParser:
    p = _PageParser()
    p.feed(page_html)
    return p


def is_internal(href: str) -> bool:
    parts = urlsplit(href)
    return not parts.scheme and not parts.netloc and not href.startswith(("#", "//"))


def broken_links(html_dir: Path) -> list[tuple[str, str]]:
    """(page, href) for every relative ``a[href]`` / ``img[src]`` of every built page whose target is missing."""
    html_dir = Path(html_dir)
    bad = []
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:  # third-party snapshots, MathJax, theme files
            continue
        p = parse(page.read_text(errors="replace"))
        for href in [*p.hrefs, *p.imgs]:
            if not is_internal(href):
                continue
            path = unquote(urlsplit(href).path)
            if not path:
                continue
            target = (page.parent / path).resolve()
            if not target.exists():
                bad.append((str(page.relative_to(html_dir)), href))
    return bad


def math_problems(dom: str) -> list[str]:
    """Raw TeX left in visible text, or math expected but no MathJax output."""
    p = parse(dom)
    text = " ".join(p.text)
    problems = []
    for token in ("$$", "\\(", "\\[", "\\begin{"):
        if token in text:
            i = text.index(token)
            problems.append(f"raw {token!r} in text: ...{text[max(0, i - 40):i + 40]!r}")
    if p.tags.get("mjx-container", 0) == 0:
        problems.append("no MathJax output (mjx-container) on the page")
    return problems


FIGURE_PLACEHOLDER = re.compile(r"<Figure size [\d.]+x[\d.]+ with \d+ Axes>")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def notebook_outputs(nb_path: Path) -> dict[str, int]:
    """What an executed notebook shows: ``images`` (image/png outputs), ``tables`` (Markdown tables in text/markdown
    outputs, one per header rule) and ``placeholders`` (outputs whose only figure is placeholder text)."""
    nb = json.loads(Path(nb_path).read_text())
    counts = {"images": 0, "tables": 0, "placeholders": 0}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                counts["images"] += 1
            elif FIGURE_PLACEHOLDER.search(_text(data.get("text/plain", ""))):
                counts["placeholders"] += 1
            md = _text(data.get("text/markdown", ""))
            counts["tables"] += sum(1 for line in md.splitlines() if TABLE_RULE.match(line))
    return counts


def lesson_page_problems(dom: str, executed_nb: Path | None) -> list[str]:
    """A lesson page against the executed notebook it was built from (images, tables, figure placeholders)."""
    p = parse(dom)
    problems = []
    hit = FIGURE_PLACEHOLDER.search(html.unescape(dom))
    if hit:
        problems.append(f"figure placeholder text {hit.group(0)!r} instead of an image")
    if executed_nb is None or not Path(executed_nb).exists():
        return problems + ["no executed notebook to compare with"]
    want = notebook_outputs(executed_nb)
    if want["placeholders"]:
        problems.append(f"{Path(executed_nb).name}: {want['placeholders']} figure output(s) without image/png")
    if len(p.output_imgs) < want["images"]:
        problems.append(f"{len(p.output_imgs)} image(s) in cell outputs, the notebook has {want['images']} "
                        "image/png output(s)")
    if p.output_tables < want["tables"]:
        problems.append(f"{p.output_tables} <table> in cell outputs, the notebook displays {want['tables']} "
                        "Markdown table(s) (nb_render_markdown_format must allow tables)")
    return problems


def lesson_pages(html_dir: Path) -> list[Path]:
    """The built lesson pages ``notebooks/0*.html``."""
    return sorted((Path(html_dir) / "notebooks").glob("0*.html"))


def check_book(html_dir: Path, artifacts: Path, lesson: str | None = None,
               executed_dir: Path | None = None) -> tuple[list[str], dict[str, Path]]:
    """Screenshots of ``index.html``, of every lesson page (``lesson_<name>.png``; ``lesson.png`` is the first, or
    the evaluation page when no lesson is built), DOM checks (figures, math), the lesson checks of
    :func:`lesson_page_problems` against the executed notebooks in ``executed_dir`` (default: the book's
    ``notebooks/`` folder next to ``_build``) and the link check. Returns (problems, screenshots)."""
    html_dir = Path(html_dir)
    problems: list[str] = []
    index = html_dir / "index.html"
    if not index.exists():
        return [f"{index}: missing"], {}
    # index.html is a redirect to the root page; screenshot the page it points to
    root = html_dir / "intro.html"
    if lesson is None:
        notebooks = sorted((html_dir / "notebooks").glob("0*.html"))
        lesson = str(notebooks[0].relative_to(html_dir)) if notebooks else "evaluation.html"
    shots = {"index": screenshot(index, artifacts / "index.png"),
             "lesson": screenshot(html_dir / lesson, artifacts / "lesson.png")}
    for page, need_img in ((root, True), (html_dir / lesson, lesson.startswith("notebooks/")),
                           (html_dir / "evaluation.html", False)):
        if not page.exists():
            problems.append(f"{page.name}: not built")
            continue
        dom = dump_dom(page)
        (artifacts / f"{page.stem}.dom.html").write_text(dom)
        p = parse(dom)
        if need_img and not p.imgs:
            problems.append(f"{page.name}: no <img> (figures missing)")
        problems += [f"{page.name}: {m}" for m in math_problems(dom)]
    if executed_dir is None:
        executed_dir = html_dir.parent.parent / "notebooks"
    for page in lesson_pages(html_dir):
        shots[f"lesson_{page.stem}"] = screenshot(page, artifacts / f"lesson_{page.stem}.png")
        dom = dump_dom(page)
        (artifacts / f"lesson_{page.stem}.dom.html").write_text(dom)
        problems += [f"notebooks/{page.name}: {m}"
                     for m in lesson_page_problems(dom, Path(executed_dir) / f"{page.stem}.ipynb")]
    problems += [f"{page}: broken link {href}" for page, href in broken_links(html_dir)]
    return problems, shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", type=Path, nargs="?", default=Path("book/_build/html"))
    ap.add_argument("--artifacts", type=Path, default=Path("build/test-artifacts"))
    ap.add_argument("--lesson", help="page to screenshot as lesson.png (default: first notebook)")
    ap.add_argument("--executed", type=Path, help="executed notebooks the lesson pages were built from "
                    "(default: <html_dir>/../../notebooks, i.e. book/notebooks for book/_build/html)")
    args = ap.parse_args(argv)
    if find_chromium() is None:
        print("check_book: chromium not found (run `make browser-deps`)", file=sys.stderr)
        return 2
    problems, shots = check_book(args.html_dir, args.artifacts, args.lesson, args.executed)
    for name, path in shots.items():
        print(f"screenshot {name}: {path}")
    for msg in problems:
        print(f"problem: {msg}")
    print("check_book: ok" if not problems else f"check_book: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
