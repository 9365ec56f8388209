"""Dataset splits and the in-memory cache of preprocessed training cases (paper Sec. 3).

The train split (``cases.csv``; every case when there is no ``cases.csv``) is preprocessed once with
``plan_lite.data.preprocess.Preprocessor`` (intensity statistics fitted on the train split only) and kept in memory
as ``TrainCase`` objects for ``PatchSampler``.
"""

from __future__ import annotations

from pathlib import Path

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
    slides over the whole volume (Sec. 3.2); training on liver crops padded with zeros would show the network a
    context it never meets at inference. The liver crop (``cfg.data.liver_crop_margin_mm``) is used by two-pass
    prediction (``Predictor(two_pass=True)``), around the first pass's liver.
    """
    from plan_lite.data.preprocess import Preprocessor

    return Preprocessor(spacing=tuple(cfg.data.spacing), clip_percentiles=tuple(cfg.data.clip_percentiles),
                        crop_margin_mm=cfg.data.liver_crop_margin_mm, stats=stats, crop=False)


def load_train_cases(dataset_dir, cfg, stats=None, progress: bool = False) -> tuple[list[TrainCase], dict, list[str]]:
    """(preprocessed train cases, preprocessing stats, val case ids)."""
    from plan_lite.data.io import MSDDataset

    ds = MSDDataset(dataset_dir, phases=tuple(cfg.data.phases))
    train_ids = split_ids(dataset_dir, "train", ds.case_ids)
    val_ids = split_ids(dataset_dir, "val", ds.case_ids)
    if not train_ids:
        raise DatasetError(f"{dataset_dir}: no training cases (split 'train' in cases.csv is empty)")
    pre = make_preprocessor(cfg, stats)
    if stats is None:
        pre.fit(_Subset(ds, train_ids))
    ids = train_ids
    if progress:
        from tqdm.auto import tqdm

        ids = tqdm(train_ids, desc="preprocess", unit="case")
    cases = []
    for i, cid in enumerate(ids):
        case = ds.load(cid)
        if case.label is None:
            raise DatasetError(f"{dataset_dir}: training case {cid} has no label file")
        prep = pre(case)
        cases.append(make_train_case(cid, prep.image, prep.label, cfg.train.patch_size,
                                     cfg.voxels(cfg.data.min_lesion_volume_mm3), seed=cfg.train.seed + i))
    return cases, _stats_of(pre), val_ids


def _stats_of(pre) -> dict:
    from plan_lite.engine.checkpoint import to_primitive

    return to_primitive(pre.stats)


__all__ = ["split_ids", "load_train_cases", "make_preprocessor"]
