"""Tiny MSD / nnU-Net v2 datasets for tests (no dependency on the synthetic generator).

``make_case`` gives HU phases with a liver block (label 1) and, for the ``tumor`` group, a lesion block;
``make_dataset`` writes ``dataset.json``, ``imagesTr``, ``labelsTr``, ``cases.csv`` and ``lesions.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from plan_lite.data.io import affine_from_spacing, write_image, write_label
from plan_lite.labels import LABEL_NAMES, LESION_LABELS, patient_output_names

GROUPS = ("tumor", "normal", "hard")


def make_case(seed: int = 0, shape=(8, 24, 24), n_channels: int = 3, group: str = "tumor",
              tumor_label: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(C, D, H, W) int16 HU image and (D, H, W) uint8 label: body -> liver block (1) -> lesion block."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    label = np.zeros(shape, np.uint8)
    label[1:d - 1, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    if group == "tumor":
        label[d // 2 - 1: d // 2 + 1, h // 2 - 2: h // 2 + 2, w // 2 - 2: w // 2 + 2] = tumor_label
    base = np.full(shape, -1000.0)
    base[:, 2:h - 2, 2:w - 2] = 20.0
    images = []
    for c in range(n_channels):
        img = base + 40.0 * (label == 1) + (10.0 * c) * (label > 0) - 30.0 * (label >= 7)
        images.append(img + rng.normal(0, 5, shape))
    return np.stack(images).round().astype(np.int16), label


def make_dataset(root, n_cases: int = 3, shape=(8, 24, 24), spacing=(5.0, 2.0, 2.0),
                 channels=("nc", "la", "pv"), groups=None, ending: str = ".nii.gz", cases_csv: bool = True,
                 labels: dict | None = None, label_fn=None, extra_json: dict | None = None) -> Path:
    """Write a valid dataset under ``root`` and return it. ``label_fn(i, label) -> label`` can rewrite labels."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    groups = groups or [GROUPS[i % 3] for i in range(n_cases)]
    affine = affine_from_spacing(spacing, origin=(-20.0, -30.0, 40.0))
    rows, lesions = [], {}
    for i in range(n_cases):
        cid = f"case_{i:04d}"
        img, lab = make_case(i, shape, len(channels), groups[i])
        if label_fn is not None:
            lab = label_fn(i, lab)
        for c in range(len(channels)):
            write_image(root / "imagesTr" / f"{cid}_{c:04d}{ending}", img[c], affine)
        write_label(root / "labelsTr" / f"{cid}{ending}", lab, affine)
        n_les = int(groups[i] == "tumor")
        rows.append({"case": cid, "split": ("train", "val", "test")[i % 3], "group": groups[i],
                     "num_lesions": n_les, **{n: float(n_les) for n in patient_output_names()}})
        lesions[cid] = [{"id": 1, "label": 9, "type": "metastasis"}] if n_les else []
    meta = {
        "channel_names": {str(i): c for i, c in enumerate(channels)},
        "labels": labels if labels is not None else {v: k for k, v in LABEL_NAMES.items()},
        "numTraining": n_cases,
        "file_ending": ending,
        "tumor_labels": list(LESION_LABELS),
        **(extra_json or {}),
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    if cases_csv:
        with open(root / "cases.csv", "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        (root / "lesions.json").write_text(json.dumps(lesions))
    return root


def make_task03(root, n_cases: int = 2, shape=(8, 24, 24), spacing=(2.5, 0.8, 0.8)) -> Path:
    """An MSD Task03_Liver-style dataset: one ``CT`` channel, labels {0 background, 1 liver, 2 cancer}."""
    return make_dataset(root, n_cases, shape, spacing, channels=("CT",), groups=["tumor"] * n_cases,
                        cases_csv=False, labels={"background": 0, "liver": 1, "cancer": 2},
                        label_fn=lambda i, lab: np.where(lab >= 7, 2, lab).astype(np.uint8),
                        extra_json={"tumor_labels": [2]})


def snapshot(root) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under ``root`` (to prove nothing was written)."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
