"""LiTS (Liver Tumor Segmentation benchmark) folders -> the MSD / nnU-Net v2 layout every command reads.

LiTS ships its training scans as ``volume-N.nii`` (CT) and ``segmentation-N.nii`` (0 background, 1 liver,
2 tumour) in one or more folders ("Training Batch 1", "Training Batch 2"); the test scans have no segmentation.
:func:`convert_lits` writes ``dataset.json`` and links (or copies) the files as ``imagesTr/lits_N_0000.nii`` and
``labelsTr/lits_N.nii`` (scans without a segmentation go to ``imagesTs``), without rewriting a voxel, so a 50 GB
download costs no extra space. Labels stay as stored; readers apply the LiTS label map (tumour -> 14 ``other``,
type unknown; ``plan_lite.data.io.LABEL_MAPS["lits"]``, data card ``data_cards/lits.md``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from plan_lite.errors import DatasetError
from plan_lite.utils import atomic_dir

_NAME = re.compile(r"^(?P<kind>volume|segmentation)-(?P<n>\d+)(?P<ending>\.nii(\.gz)?)$")


def find_lits_files(sources: list[Path]) -> tuple[dict[int, Path], dict[int, Path]]:
    """``({N: volume path}, {N: segmentation path})`` over the source folders (searched recursively)."""
    volumes: dict[int, Path] = {}
    segs: dict[int, Path] = {}
    for src in sources:
        if not src.is_dir():
            raise DatasetError(f"{src}: not a folder")
        for p in sorted(src.rglob("*")):
            m = _NAME.match(p.name)
            if m is None or not p.is_file():
                continue
            table = volumes if m["kind"] == "volume" else segs
            n = int(m["n"])
            if n in table:
                raise DatasetError(f"{p}: {m['kind']}-{n} also at {table[n]}")
            table[n] = p
    if not volumes:
        raise DatasetError(f"{', '.join(map(str, sources))}: no LiTS files (volume-N.nii, segmentation-N.nii)")
    orphans = sorted(set(segs) - set(volumes))
    if orphans:
        raise DatasetError(f"{segs[orphans[0]]}: segmentation without volume-{orphans[0]}")
    return volumes, segs


def _place(src: Path, dst: Path, copy: bool) -> None:
    if copy:
        shutil.copy2(src, dst)
        return
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # file systems without symlinks
        shutil.copy2(src, dst)


def convert_lits(sources, out, copy: bool = False, phase: str = "CT", overwrite: bool = False) -> dict:
    """Write the MSD / nnU-Net v2 layout of LiTS ``sources`` (folders) to ``out``; returns a summary dict.

    ``phase``: the channel name (``CT`` serves the one phase of any single-phase preset, e.g. ``tiny_nc``; LiTS
    is mostly portal venous, so ``pv`` is the honest name for a PV model). The folder appears only when complete.
    """
    sources = [Path(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]
    volumes, segs = find_lits_files(sources)
    endings = {_NAME.match(p.name)["ending"] for p in list(volumes.values()) + list(segs.values())}
    if len(endings) > 1:
        raise DatasetError(f"{sources[0]}: mixed file endings {sorted(endings)}; convert them to one first")
    ending = endings.pop()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (tmp / sub).mkdir()
        for n, vol in sorted(volumes.items()):
            if n in segs:
                _place(vol, tmp / "imagesTr" / f"lits_{n}_0000{ending}", copy)
                _place(segs[n], tmp / "labelsTr" / f"lits_{n}{ending}", copy)
            else:
                _place(vol, tmp / "imagesTs" / f"lits_{n}_0000{ending}", copy)
        meta = {"name": "LiTS", "description": "Liver Tumor Segmentation benchmark, converted by plan-lite",
                "channel_names": {"0": phase}, "labels": {"background": 0, "liver": 1, "tumor": 2},
                "numTraining": len(segs), "file_ending": ending, "tumor_labels": [2],
                "source": [str(s.resolve()) for s in sources]}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"out": str(out), "training": len(segs), "test": len(volumes) - len(segs), "file_ending": ending,
            "linked": not copy}


__all__ = ["convert_lits", "find_lits_files"]
