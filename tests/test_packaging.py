"""pyproject.toml and environment.yml list the same core packages; the README has the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    core = {CONDA_NAMES.get(_name(d), _name(d)) for d in deps}
    env = (ROOT / "environment.yml").read_text()
    deps_block = env.split("dependencies:", 1)[1]
    conda = {_name(m.group(1)) for m in re.finditer(r"^  - ([A-Za-z0-9_.\-]+[^\n#:]*)$", deps_block, re.M)}
    conda -= {"python", "pip", "nodejs"}
    assert core == conda, f"only in pyproject: {core - conda}; only in environment.yml: {conda - core}"
    assert "-e .[notebooks,book,dev,dicom]" in env


def test_readme_has_the_two_commands_and_ci_calls_test():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_torch_range_is_broad():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in deps if _name(d) == "torch"][0]
    assert "==" not in torch and ">=" in torch


def _lock() -> dict[str, list[tuple[str, str]]]:
    """requirements-lock.txt as {name: [(version, marker)]} (a package may have one pin per Python/platform)."""
    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;]+)\s*(?:;\s*(.*))?$", line)
        assert m, f"requirements-lock.txt: not an exact pin: {line!r}"
        pins.setdefault(m.group(1).lower().replace("_", "-"), []).append((m.group(2), m.group(3) or ""))
    return pins


def test_lock_pins_every_dependency_within_pyproject_ranges():
    """Every dependency of the installed extras is locked at a version its pyproject range admits; torch is not
    locked (the Makefile's TORCH_SPEC chooses it); the Makefile installs from the lock."""
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("notebooks", "book", "dev"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = _lock()
    assert "torch" not in pins and not any(n.startswith(("nvidia-", "triton")) for n in pins)
    env = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        if name == "torch":
            continue
        assert name in pins, f"{name} is in pyproject.toml but not in requirements-lock.txt (run `make lock`)"
        here = [v for v, marker in pins[name] if not marker or Marker(marker).evaluate(env)]
        assert len(here) == 1, f"{name}: {len(here)} pins apply on Python 3.11 / Linux"
        assert req.specifier.contains(here[0], prereleases=True), f"{name}=={here[0]} outside {req.specifier}"
    make = (ROOT / "Makefile").read_text()
    assert "-r $(LOCK)" in make and "--no-deps -e ." in make and "\nlock:" in make


def test_provenance_names_the_command_and_the_checkout_commit():
    """Every benchmark table and the reference model record where their figures come from (one helper)."""
    import subprocess

    from plan_lite.utils import provenance

    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    short = provenance("benchmarks/x.py", ["DATA", "--seeds", "0", "--note", "a long paragraph"])
    assert short["command"] == "python benchmarks/x.py DATA --seeds 0 --note ..."
    full = provenance("scripts/y.py", [], full_commit=True)
    if head:  # a git checkout (CI clones one)
        assert full["commit"] == head and head.startswith(short["commit"]) and len(short["commit"]) < len(head)
    else:
        assert full["commit"] == "unknown"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", short["date"]) and short["torch"]
