"""Safe checkpoints: only tensors and primitive containers, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict::

    {"format": "plan-lite-checkpoint", "version": 1,
     "model": state_dict, "optimizer": state_dict, "scheduler": {...}, "scaler": {...},
     "rng": {"python", "numpy", "torch", "cuda", "sampler", "augment"},
     "step": int, "stage": int, "config": PlanConfig.to_dict(), "preprocess": preprocessing stats, "extra": {...}}

Everything numpy is converted to lists / python scalars before saving (``to_primitive``) so the file carries no
pickled code. ``load_checkpoint`` refuses anything else with a one-line ``CheckpointError`` naming the file.
Files are written atomically (temp file + ``os.replace``, ``plan_lite.utils.atomic_path``), so a run killed while
saving never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plan_lite.errors import CheckpointError
from plan_lite.utils import atomic_path

FORMAT = "plan-lite-checkpoint"
VERSION = 1


def to_primitive(obj: Any) -> Any:
    """Recursively convert numpy arrays/scalars, paths and dataclass-like tuples to weights_only-safe values."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int)) else str(k)): to_primitive(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_primitive(v) for v in obj)
    if isinstance(obj, list):
        return [to_primitive(v) for v in obj]
    raise CheckpointError(f"checkpoint: cannot store a value of type {type(obj).__name__} safely")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (made primitive by ``to_primitive``) atomically to ``path``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **to_primitive(state)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a plan-lite checkpoint with ``weights_only=True``; refuse pickled code/objects (``CheckpointError``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refusing to load: contains pickled code/objects "
                              "(only tensors and primitive containers are allowed)") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                              ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a plan-lite checkpoint (missing format tag)")
    if "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: checkpoint lacks the model weights or the config")
    return state


# ----------------------------------------------------------------------------------------------------------- RNG
def generator_state(gen: np.random.Generator) -> dict[str, Any]:
    """State of a numpy ``Generator`` as primitive values (python ints, possibly > 64 bit, are safe)."""
    return to_primitive(gen.bit_generator.state)


def set_generator_state(gen: np.random.Generator, state: dict[str, Any]) -> None:
    gen.bit_generator.state = dict(state)


def capture_rng_state(generators: dict[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Python, numpy (legacy global), torch (CPU and CUDA) and named numpy generators (sampler, augmentation)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    for key, gen in (generators or {}).items():
        out[key] = generator_state(gen)
    return out


def restore_rng_state(state: dict[str, Any], generators: dict[str, np.random.Generator] | None = None) -> None:
    """Inverse of ``capture_rng_state``."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu() if isinstance(state["torch"], torch.Tensor) else state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for key, gen in (generators or {}).items():
        if key in state:
            set_generator_state(gen, state[key])


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (used to compare DDP ranks and resumed runs)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


__all__ = ["save_checkpoint", "load_checkpoint", "to_primitive", "capture_rng_state", "restore_rng_state",
           "generator_state", "set_generator_state", "state_dict_digest"]
