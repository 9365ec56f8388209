"""``plan-lite demo DATASET --out DIR [--case ID]``: montage PNG of one case with all phases and its labels.

The quick smoke check of an installation (``make demo``): reads a dataset in the MSD / nnU-Net v2 layout
(DESIGN.md), draws :func:`plan_lite.viz.montage` through the case's lesions and prints the PNG path.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset folder (dataset.json, imagesTr/, labelsTr/)")
    p.add_argument("--out", required=True, help="output folder for montage_<case>.png")
    p.add_argument("--case", help="case id (default: the first case with lesions)")
    p.add_argument("--slices", type=int, default=6, help="number of slices (columns)")
    p.add_argument("--window", default="liver", help="liver (W150/L60), abdomen (W400/L40) or bone (W1500/L300)")


def _pick_case(root, case_ids: list[str]) -> str:
    """The first case with at least one lesion per lesions.json (or cases.csv), else the first case."""
    import csv
    import json

    lesions = root / "lesions.json"
    if lesions.exists():
        try:
            table = json.loads(lesions.read_text())
            for cid in case_ids:
                if table.get(cid):
                    return cid
        except (json.JSONDecodeError, AttributeError):
            pass
    cases = root / "cases.csv"
    if cases.exists():
        with cases.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("case") in case_ids and str(row.get("num_lesions", "0")) not in ("", "0"):
                    return row["case"]
    return case_ids[0]


def load_case(root, case: str | None = None):
    """``(case_id, image (C,D,H,W), label (D,H,W) or None, spacing, phase names, lesions or None)``.

    Uses ``plan_lite.data.io.MSDDataset`` when available, else reads the files named by ``dataset.json``.
    """
    import json
    from pathlib import Path

    import numpy as np

    from plan_lite.data import io
    from plan_lite.errors import DatasetError

    root = Path(root)
    meta_path = root / "dataset.json"
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if not meta_path.exists():
        raise DatasetError(f"{meta_path}: missing (not an MSD / nnU-Net v2 dataset folder)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    channels = meta.get("channel_names") or {"0": "ct"}
    names = [str(channels[k]) for k in sorted(channels, key=int)]
    ending = meta.get("file_ending", ".nii.gz")
    images_dir = root / "imagesTr"
    case_ids = sorted({p.name[: -len(ending) - 5] for p in images_dir.glob(f"*_0000{ending}")})
    if not case_ids:
        raise DatasetError(f"{images_dir}: no *_0000{ending} images")
    if case is not None and case not in case_ids:
        raise DatasetError(f"{root}: no case {case!r} (have {case_ids[0]} ... {case_ids[-1]})")
    cid = case or _pick_case(root, case_ids)
    dataset_cls = getattr(io, "MSDDataset", None)
    if dataset_cls is not None:
        loaded = dataset_cls(root).load(cid)
        image, label, spacing = loaded.image, loaded.label, tuple(loaded.spacing)
    else:
        vols = []
        spacing = None
        for i in range(len(names)):
            arr, spacing, _ = io.read_image(images_dir / f"{cid}_{i:04d}{ending}", dtype=np.float32)
            vols.append(arr)
        shapes = {v.shape for v in vols}
        if len(shapes) != 1:
            raise DatasetError(f"{images_dir}: phases of {cid} have different shapes {sorted(shapes)}")
        image = np.stack(vols)
        label_path = root / "labelsTr" / f"{cid}{ending}"
        label = io.read_image(label_path, dtype=np.uint8)[0] if label_path.exists() else None
    lesions = None
    les_path = root / "lesions.json"
    if les_path.exists():
        try:
            lesions = json.loads(les_path.read_text()).get(cid) or None
        except (json.JSONDecodeError, AttributeError):
            lesions = None
    return cid, image, label, spacing, names, lesions


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from plan_lite.utils import atomic_path
    from plan_lite.viz import montage

    cid, image, label, spacing, names, lesions = load_case(args.dataset, args.case)
    if label is not None and lesions is not None:
        lesions = None  # ids from the label's connected components match what is drawn
    fig = montage(image, label, n=args.slices, phases=names, window=args.window, spacing=spacing,
                  title=f"{Path(args.dataset).name} / {cid}  (spacing z,y,x = "
                        f"{', '.join(f'{s:g}' for s in spacing)} mm)")
    out = Path(args.out) / f"montage_{cid}.png"
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    print(out)
    return 0
