"""Dataset splits and the preprocessed training cases (paper Sec. 3).

The train split (``cases.csv``; every case when there is no ``cases.csv``) is preprocessed with
``plan_lite.data.preprocess.Preprocessor`` (intensity statistics fitted on the train split only) and kept in memory
as ``TrainCase`` objects for ``PatchSampler``.

Data flows once, in the spirit of nnU-Net's preprocessed folder: the resampled and normalised arrays and the
statistics are written to ``DATASET/preprocessed/<fingerprint>/`` (one ``.npz`` per case and ``stats.json``), and
every later run, DDP rank or experiment variant with the same fingerprint reads them instead of preprocessing
again. The fingerprint hashes what the arrays depend on: the train case ids with the size and modification time
of their files, ``cfg.data`` (phases, spacing, clip percentiles) and the preprocessing code version. A dataset
folder that is not writable is preprocessed in memory, as before. ``plan-lite preprocess`` fills the folder ahead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from plan_lite.engine.sampler import TrainCase, make_train_case
from plan_lite.errors import DatasetError


def split_ids(dataset_dir, split, all_ids: list[str]) -> list[str]:
    """Case ids of ``split`` from ``cases.csv`` (``None`` or no ``cases.csv``: all ids for train, none otherwise).

    ``split`` is one name or several (``("val", "test")``: the cases of both, in the order of ``cases.csv``).
    """
    path = Path(dataset_dir) / "cases.csv"
    if split is None:
        return list(all_ids)
    wanted = {split} if isinstance(split, str) else set(split)
    if not path.exists():
        return list(all_ids) if wanted == {"train"} else []
    from plan_lite.data.io import read_cases_csv

    known = set(all_ids)
    ids = [r["case"] for r in read_cases_csv(path) if r.get("split") in wanted]
    missing = [c for c in ids if c not in known]
    if missing:
        raise DatasetError(f"{path}: case {missing[0]} of split {split!r} has no images in {dataset_dir}")
    return ids


class _Subset:
    """A view of an ``MSDDataset`` restricted to some case ids (for ``Preprocessor.fit`` on the train split)."""

    def __init__(self, dataset, case_ids):
        self._ds = dataset
        self.case_ids = list(case_ids)

    def load(self, case_id):
        return self._ds.load(case_id)

    def __len__(self):
        return len(self.case_ids)

    def __iter__(self):
        return (self._ds.load(c) for c in self.case_ids)

    def __getattr__(self, name):
        return getattr(self._ds, name)


def make_preprocessor(cfg, stats=None):
    """The ``Preprocessor`` of a config. ``crop=False``: training and single-pass inference see whole volumes.

    The official sampler centres patches on lesion or liver voxels (book page "Paper vs code"), and prediction
    slides over the whole volume (book/design_decisions.md#dd-inference); training on liver crops padded with zeros
    would show the network a context it never meets at inference. The liver crop (``cfg.data.liver_crop_margin_mm``)
    is used by two-pass prediction (``Predictor(two_pass=True)``), around the first pass's liver.
    """
    from plan_lite.data.preprocess import Preprocessor

    return Preprocessor(spacing=tuple(cfg.data.spacing), clip_percentiles=tuple(cfg.data.clip_percentiles),
                        crop_margin_mm=cfg.data.liver_crop_margin_mm, stats=stats, crop=False)


PREPROCESS_VERSION = 1  # bump when the preprocessing changes what it writes


def preprocess_fingerprint(ds, train_ids: list[str], cfg) -> str:
    """16 hex digits of what the preprocessed train arrays depend on (see the module docstring)."""
    files = []
    for cid in train_ids:
        for p in [*ds.image_paths(cid), ds.label_path(cid)]:
            if p is not None:
                st = Path(p).stat()
                files.append([cid, Path(p).name, st.st_size, st.st_mtime_ns])
    d = cfg.data
    key = {"version": PREPROCESS_VERSION, "files": files, "phases": list(d.phases), "spacing": list(d.spacing),
           "clip_percentiles": list(d.clip_percentiles), "label_map": ds.label_map_note}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _cache_dir(dataset_dir, fingerprint: str) -> Path | None:
    root = Path(dataset_dir) / "preprocessed"
    try:
        (root / fingerprint).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only dataset: preprocess in memory
    return root / fingerprint if os.access(root / fingerprint, os.W_OK) else None


def _save_npz(path: Path, **arrays) -> None:
    from plan_lite.utils import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_train_cases(dataset_dir, cfg, stats=None, progress: bool = False, cache: bool = True
                     ) -> tuple[list[TrainCase], dict, list[str]]:
    """(preprocessed train cases, preprocessing stats, val case ids); ``cache``: use / fill the preprocessed
    folder (module docstring)."""
    from plan_lite.data.io import MSDDataset
    from plan_lite.utils import atomic_write_json

    ds = MSDDataset(dataset_dir, phases=tuple(cfg.data.phases))
    train_ids = split_ids(dataset_dir, "train", ds.case_ids)
    val_ids = split_ids(dataset_dir, "val", ds.case_ids)
    if not train_ids:
        raise DatasetError(f"{dataset_dir}: no training cases (split 'train' in cases.csv is empty)")
    folder = _cache_dir(dataset_dir, preprocess_fingerprint(ds, train_ids, cfg)) if cache else None
    if folder is not None and (folder / "stats.json").exists():
        cached = json.loads((folder / "stats.json").read_text())
        if stats is None:
            stats = cached
        elif json.dumps(_stats_of(make_preprocessor(cfg, stats)), sort_keys=True) != json.dumps(cached, sort_keys=True):
            folder = None  # a checkpoint's own statistics differ from the cached ones: do not mix them
    pre = make_preprocessor(cfg, stats)
    if stats is None:
        pre.fit(_Subset(ds, train_ids))
    if folder is not None and not (folder / "stats.json").exists():
        atomic_write_json(folder / "stats.json", _stats_of(pre))
    ids = train_ids
    if progress:
        from tqdm.auto import tqdm

        ids = tqdm(train_ids, desc="preprocess", unit="case")
    cases = []
    for i, cid in enumerate(ids):
        npz = folder / f"{cid}.npz" if folder is not None else None
        if npz is not None and npz.exists():
            with np.load(npz) as z:
                image, label = z["image"], z["label"]
        else:
            case = ds.load(cid)
            if case.label is None:
                raise DatasetError(f"{dataset_dir}: training case {cid} has no label file")
            prep = pre(case)
            image, label = prep.image, prep.label
            if npz is not None:
                _save_npz(npz, image=np.asarray(image, np.float32), label=np.asarray(label, np.uint8))
        cases.append(make_train_case(cid, image, label, cfg.train.patch_size,
                                     cfg.voxels(cfg.data.min_lesion_volume_mm3), seed=cfg.train.seed + i))
    return cases, _stats_of(pre), val_ids


def _stats_of(pre) -> dict:
    from plan_lite.engine.checkpoint import to_primitive

    return to_primitive(pre.stats)


__all__ = ["split_ids", "load_train_cases", "make_preprocessor", "preprocess_fingerprint", "PREPROCESS_VERSION"]
