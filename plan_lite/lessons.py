"""Helpers shared by the lesson notebooks (``scripts/lessons/0X_*.py`` -> ``notebooks/*.ipynb``).

Parameter checks (``need``, ``is_int``), figure output (``show``) and the synthetic-dataset fallback
(``ensure_dataset``) that every lesson uses. Plotting and IPython are imported lazily, so importing this
module costs nothing outside a notebook.
"""

from __future__ import annotations

from pathlib import Path


def need(ok: bool, message: str) -> None:
    """Raise ``ValueError("invalid parameter: <message>")`` unless ``ok`` (validation of notebook parameters)."""
    if not ok:
        raise ValueError(f"invalid parameter: {message}")


def is_int(v) -> bool:
    """True for a real ``int`` (``bool`` is not accepted, although it is an ``int`` subclass)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_common(data_dir, out_dir, seed, n_cases, min_cases: int = 1, preset=None) -> None:
    """Validate the parameters every lesson has (``need`` on each); ``preset`` is checked when given."""
    from plan_lite.config import PRESETS

    need(isinstance(data_dir, str) and data_dir, f"data_dir must be a non-empty str, got {data_dir!r}")
    need(isinstance(out_dir, str) and out_dir, f"out_dir must be a non-empty str, got {out_dir!r}")
    need(is_int(seed) and seed >= 0, f"seed must be an int >= 0, got {seed!r}")
    need(is_int(n_cases) and n_cases >= min_cases, f"n_cases must be an int >= {min_cases}, got {n_cases!r}")
    if preset is not None:
        need(preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")


def show(fig, out_path, name: str, dpi: int = 80) -> None:
    """Save ``fig`` as ``out_path/<name>.png`` (next to metrics.json), display that PNG, close ``fig``.

    The notebook output is the saved PNG itself (an ``image/png`` output), not the figure object: how a Figure
    is rendered by ``display(fig)`` depends on the matplotlib / matplotlib-inline / IPython versions and on the
    backend, and some combinations emit only the text ``<Figure size ... with N Axes>``. Returns None, so that a
    cell ending in ``show(...)`` prints nothing more.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    from plan_lite.utils import atomic_path

    path = Path(out_path) / f"{name}.png"
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)  # also keeps the inline backend from showing it a second time
    display(Image(data=path.read_bytes(), format="png"))


def ensure_dataset(data_dir, out_path, n_cases: int, seed: int, **generate_kwargs) -> Path:
    """Return ``data_dir`` if it holds a dataset (``dataset.json``), else a synthetic fallback dataset.

    The fallback is ``out_path/"data"``; it is generated with ``generate_dataset(..., n_cases, seed,
    **generate_kwargs)`` only when it does not exist yet, so re-running a notebook reuses it.
    """
    from plan_lite.data.synthetic import generate_dataset

    data_path = Path(data_dir)
    if (data_path / "dataset.json").exists():
        return data_path
    fallback = Path(out_path) / "data"
    if not (fallback / "dataset.json").exists():
        print(f"No dataset at {data_path}: generating {n_cases} synthetic cases into {fallback} "
              "(`make data` writes the full datasets)")
        generate_kwargs = {"overwrite": True, "progress": False, **generate_kwargs}
        generate_dataset(fallback, n_cases=n_cases, seed=seed, **generate_kwargs)
    return fallback
