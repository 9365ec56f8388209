"""Dataset checks for MSD / nnU-Net v2 folders (DESIGN.md "Data layout"): report every fault, one line each.

``validate_dataset(root)`` lists ``Problem``s (file + fault); ``summarize_dataset(root)`` gives a one-screen summary.
Each NIfTI file is read exactly once (cases are checked in a few threads; decompression releases the GIL) and
nothing is written. Checks: dataset.json keys, file naming and duplicates, missing/extra phases, missing labels,
numTraining, cases.csv / lesions.json coverage, 3D arrays, NaN/inf, absurd HU ranges, phase and label shapes,
spacings and affines (1e-3 relative), label values (integers, declared in dataset.json), and group consistency
(``tumor`` cases need tumour voxels, ``normal``/``hard`` cases must have none; tumour labels from dataset.json
``tumor_labels``, default 7..14).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plan_lite.data.io import (
    DatasetSpec,
    FolderListing,
    affines_close,
    list_folder,
    read_cases_csv,
    read_dataset_spec,
    read_nifti,
    spacing_from_affine,
    split_ending,
)
from plan_lite.errors import DatasetError
from plan_lite.labels import LESION_LABELS

REQUIRED_KEYS = ("channel_names", "labels", "file_ending", "numTraining")
HU_RANGE = (-2000.0, 5000.0)
GROUPS = ("tumor", "normal", "hard")


@dataclass(frozen=True)
class Problem:
    """One fault: the file (or folder) it concerns and what is wrong. ``str(p)`` is one line."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CaseInfo:
    case_id: str
    subset: str
    shape: tuple[int, ...] | None = None  # (D, H, W)
    spacing: tuple[float, float, float] | None = None  # (z, y, x)
    label_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class _Scan:
    root: Path
    spec: DatasetSpec | None = None
    problems: list[Problem] = field(default_factory=list)
    cases: list[CaseInfo] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)

    def add(self, path, message: str) -> None:
        self.problems.append(Problem(str(path), message))


def validate_dataset(root) -> list[Problem]:
    """Every fault found in the dataset folder ``root`` (empty list = valid)."""
    return scan_dataset(root).problems


def summarize_dataset(root, scan: _Scan | None = None) -> str:
    """A one-screen text summary: cases, channels, spacing and shape ranges, labels, groups and splits."""
    s = scan or scan_dataset(root)
    if s.spec is None and not s.cases:
        return f"{s.root}: no readable dataset"
    n = Counter(c.subset for c in s.cases)
    lines = [f"Dataset {s.root}: {n['train']} training cases (imagesTr), {n['test']} test cases (imagesTs)"]
    if s.spec is not None:
        chans = ", ".join(f"{i} {c}" for i, c in enumerate(s.spec.channel_names))
        lines.append(f"Channels: {chans}  (file ending {s.spec.file_ending}, layout {s.spec.layout})")
    sp = np.array([c.spacing for c in s.cases if c.spacing is not None])
    sh = np.array([c.shape for c in s.cases if c.shape is not None])
    if len(sp):
        lines.append(f"Spacing (z, y, x) mm: min {_fmt(sp.min(0))}  median {_fmt(np.median(sp, 0))}  "
                     f"max {_fmt(sp.max(0))}")
        lines.append(f"Shape (D, H, W): min {tuple(int(x) for x in sh.min(0))}  "
                     f"max {tuple(int(x) for x in sh.max(0))}")
    cases_with, voxels = Counter(), Counter()
    for c in s.cases:
        for k, v in c.label_counts.items():
            cases_with[k] += 1
            voxels[k] += v
    names = s.spec.labels if s.spec is not None else {}
    if cases_with:
        lines.append("Labels (cases with it / voxels):")
        lines += [f"  {k:3d} {names.get(k, '?'):<16} {cases_with[k]:5d} / {voxels[k]}" for k in sorted(cases_with)]
    if s.spec is not None:
        from plan_lite.data.io import describe_label_map, guess_label_map

        lines.append("Label map: " + describe_label_map(s.spec, guess_label_map(s.spec)))
    if s.groups:
        lines.append("Groups: " + ", ".join(f"{g} {k}" for g, k in sorted(Counter(s.groups.values()).items())))
    if s.splits:
        lines.append("Splits: " + ", ".join(f"{g} {k}" for g, k in sorted(Counter(s.splits.values()).items())))
    lines.append(f"Problems: {len(s.problems)}")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "(" + ", ".join(f"{float(x):.2f}" for x in v) + ")"


def scan_dataset(root, workers: int = 4) -> _Scan:
    """Check everything once; the result carries both the problems and the summary statistics."""
    s = _Scan(Path(root))
    if not s.root.is_dir():
        s.add(s.root, "dataset folder not found")
        return s
    s.spec = _check_json(s)
    layout = s.spec.layout if s.spec else "nnunet"
    tr = list_folder(s.root / "imagesTr", layout)
    ts = list_folder(s.root / "imagesTs", layout)
    lab = list_folder(s.root / "labelsTr", layout, labels=True)
    if not (s.root / "imagesTr").is_dir():
        s.add(s.root / "imagesTr", "missing folder")
    elif not (s.root / "labelsTr").is_dir():
        s.add(s.root / "labelsTr", "missing folder")
    n_chan = len(s.spec.channel_names) if s.spec else 1 + max(
        (ch for chans in tr.files.values() for ch in chans), default=0)
    ending = s.spec.file_ending if s.spec else ".nii.gz"
    jobs = []
    for folder, listing, subset in (("imagesTr", tr, "train"), ("imagesTs", ts, "test")):
        _check_names(s, listing, folder, layout, ending)
        for case, chans in sorted(listing.files.items()):
            phases = _check_phases(s, folder, case, chans, n_chan, layout, ending)
            label = None
            if subset == "train":
                label = lab.files.get(case, {}).get(0, [None])[0]
                if label is None and (s.root / "labelsTr").is_dir():
                    s.add(s.root / "labelsTr" / f"{case}{ending}", f"missing label file for case {case}")
            jobs.append((case, subset, phases, label))
    _check_names(s, lab, "labelsTr", layout, ending)
    for case in sorted(set(lab.files) - set(tr.files)):
        s.add(lab.files[case][0][0], f"label file without image files in imagesTr (case {case})")
    if s.spec and s.spec.num_training is not None and s.spec.num_training != len(tr.files):
        s.add(s.root / "dataset.json", f"numTraining is {s.spec.num_training} but imagesTr holds {len(tr.files)} cases")
    _check_tables(s, set(tr.files) | set(ts.files))
    tumor = tuple(s.spec.tumor_labels) if s.spec else LESION_LABELS
    allowed = set(s.spec.labels) if s.spec and s.spec.labels else None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda j: _check_case(*j, allowed, tumor, s.groups.get(j[0])), jobs))
    for info, probs in results:
        s.cases.append(info)
        s.problems.extend(probs)
    return s


def _check_json(s: _Scan) -> DatasetSpec | None:
    path = s.root / "dataset.json"
    if not path.is_file():
        s.add(path, "missing dataset.json")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        s.add(path, f"not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        s.add(path, "expected a JSON object")
        return None
    msd = "channel_names" not in data and "modality" in data  # original Decathlon naming
    for key in REQUIRED_KEYS:
        if key not in data and not (msd and key in ("channel_names", "file_ending")):
            s.add(path, f"missing required key '{key}'")
    if "channel_names" not in data and not msd:
        return None
    try:
        return read_dataset_spec(s.root, data)
    except DatasetError as exc:
        s.add(path, str(exc).split(": ", 1)[-1])
        return None


def _check_names(s: _Scan, listing: FolderListing, folder: str, layout: str, ending: str) -> None:
    expected = "{case}" + ("" if layout == "msd" or folder == "labelsTr" else "_XXXX") + ending
    for p in listing.unknown:
        s.add(p, f"unexpected file in {folder} (expected {expected})")
    for chans in listing.files.values():
        for paths in chans.values():
            if len(paths) > 1:
                s.add(paths[0], f"duplicate case id: {' and '.join(p.name for p in paths)} both present")
            elif split_ending(paths[0].name)[1] != ending:
                s.add(paths[0], f"file ending differs from dataset.json file_ending {ending!r}")


def _check_phases(s, folder, case, chans, n_chan, layout, ending) -> list[Path | None]:
    present = sorted(chans)
    for ch in present:
        if ch >= n_chan:
            s.add(chans[ch][0], f"channel {ch:04d} not in channel_names: case {case} has {len(present)} phase "
                                f"files, channel_names lists {n_chan}")
    out = []
    for ch in range(n_chan):
        if ch in chans:
            out.append(chans[ch][0])
            continue
        name = case + ("" if layout == "msd" else f"_{ch:04d}") + ending
        phase = s.spec.channel_names[ch] if s.spec else str(ch)
        s.add(s.root / folder / name, f"missing phase file ({phase}): case {case} has "
                                      f"{sum(c < n_chan for c in present)} of {n_chan} phases")
        out.append(None)
    return out


def _check_tables(s: _Scan, image_cases: set[str]) -> None:
    csv_path = s.root / "cases.csv"
    if csv_path.is_file():
        try:
            rows = read_cases_csv(csv_path)
        except DatasetError as exc:
            s.add(csv_path, str(exc).split(": ", 1)[-1])
            rows = []
        seen = Counter(str(r.get("case")) for r in rows)
        for case, k in sorted(seen.items()):
            if k > 1:
                s.add(csv_path, f"case {case} appears in {k} rows")
        for r in rows:
            case = str(r.get("case"))
            if case not in image_cases:
                s.add(csv_path, f"row for case {case} has no image files")
            group = r.get("group")
            if group not in (None, "") and group not in GROUPS:
                s.add(csv_path, f"case {case}: unknown group {group!r} (expected {', '.join(GROUPS)})")
            elif group:
                s.groups[case] = group
            if r.get("split"):
                s.splits[case] = str(r["split"])
        if rows:
            for case in sorted(image_cases - set(seen)):
                s.add(csv_path, f"case {case} has images but no row in cases.csv")
    les_path = s.root / "lesions.json"
    if les_path.is_file():
        try:
            data = json.loads(les_path.read_text())
            extra = sorted(set(data) - image_cases) if isinstance(data, dict) else None
        except (OSError, ValueError) as exc:
            s.add(les_path, f"cannot read lesions.json ({exc})")
            return
        if extra is None:
            s.add(les_path, "expected {case: [lesion, ...]}")
        for case in extra or []:
            s.add(les_path, f"lesions listed for case {case} which has no image files")


def _read(path: Path, probs: list[Problem]):
    try:
        data, affine = read_nifti(path)
    except DatasetError as exc:
        probs.append(Problem(str(path), str(exc).split(": ", 1)[-1]))
        return None, None
    if data.ndim != 3:
        probs.append(Problem(str(path), f"expected a 3D array, got {data.ndim}D shape {data.shape}"))
        return None, None
    return data, affine


def _check_case(case, subset, phases, label_path, allowed, tumor, group) -> tuple[CaseInfo, list[Problem]]:
    info, probs = CaseInfo(case, subset), []
    ref = None  # (shape, affine, name) of the first readable phase, file (x, y, z) order
    for p in phases:
        if p is None:
            continue
        data, affine = _read(p, probs)
        if data is None:
            continue
        _check_intensities(p, data, probs)
        if ref is None:
            ref = (data.shape, affine, p.name)
            info.shape, info.spacing = tuple(int(x) for x in data.shape[::-1]), spacing_from_affine(affine)
        else:
            _check_geometry(p, data.shape, affine, ref, probs)
        del data
    if label_path is None:
        return info, probs
    lab, affine = _read(label_path, probs)
    if lab is None:
        return info, probs
    if ref is not None:
        _check_geometry(label_path, lab.shape, affine, ref, probs, what="label")
    if np.issubdtype(lab.dtype, np.floating):
        bad = ~np.isfinite(lab) | (lab != np.rint(lab))
        if bad.any():
            probs.append(Problem(str(label_path), f"non-integer label values ({int(bad.sum())} voxels, "
                                                  f"e.g. {float(lab[bad].flat[0]):g})"))
            return info, probs
        lab = lab.astype(np.int64)
    lo, hi = int(lab.min()), int(lab.max())
    if lo >= 0 and hi < 65536:
        counts = np.bincount(lab.ravel().astype(np.int64, copy=False), minlength=hi + 1)
        info.label_counts = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}
    else:
        vals, cnt = np.unique(lab, return_counts=True)
        info.label_counts = {int(k): int(c) for k, c in zip(vals, cnt)}
    if allowed is not None:
        bad_vals = sorted(set(info.label_counts) - allowed)
        if bad_vals:
            probs.append(Problem(str(label_path), f"label values {bad_vals} not in dataset.json labels"))
    n_tumor = sum(v for k, v in info.label_counts.items() if k in tumor)
    if group == "tumor" and n_tumor == 0:
        probs.append(Problem(str(label_path), f"case {case} is in group 'tumor' (cases.csv) but has no tumour "
                                              f"voxels (labels {list(tumor)})"))
    elif group in ("normal", "hard") and n_tumor > 0:
        probs.append(Problem(str(label_path), f"case {case} is in group '{group}' (cases.csv) but has "
                                              f"{n_tumor} tumour voxels"))
    return info, probs


def _check_intensities(path: Path, data: np.ndarray, probs: list[Problem]) -> None:
    """NaN/inf, constant images and values outside [-2000, 5000] HU (one padding value below -2000 is allowed)."""
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            probs.append(Problem(str(path), f"{int((~finite).sum())} NaN/inf values"))
            data = data[finite]
            if data.size == 0:
                return
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        probs.append(Problem(str(path), f"constant image (all values {lo:g}): not a CT in HU"))
        return
    if lo < HU_RANGE[0]:
        low = data[data < HU_RANGE[0]]
        if np.all(low == lo):  # a single out-of-field padding value, e.g. -3024
            lo = float(data[data >= HU_RANGE[0]].min())
    if lo < HU_RANGE[0] or hi > HU_RANGE[1]:
        probs.append(Problem(str(path), f"intensities {lo:g}..{hi:g} outside [{HU_RANGE[0]:g}, {HU_RANGE[1]:g}] "
                                        "HU: not a CT in HU?"))


def _check_geometry(path: Path, shape, affine, ref, probs: list[Problem], what: str = "phase") -> None:
    ref_shape, ref_affine, ref_name = ref
    if tuple(shape) != tuple(ref_shape):
        probs.append(Problem(str(path), f"{what} shape (D, H, W) {tuple(shape[::-1])} differs from {ref_name} "
                                        f"{tuple(ref_shape[::-1])}"))
        return
    sp, rsp = spacing_from_affine(affine), spacing_from_affine(ref_affine)
    if not np.allclose(sp, rsp, rtol=1e-3, atol=0):
        probs.append(Problem(str(path), f"{what} spacing (z, y, x) {_fmt(sp)} differs from {ref_name} {_fmt(rsp)}"))
    elif not affines_close(affine, ref_affine):
        probs.append(Problem(str(path), f"{what} affine (origin/direction) differs from {ref_name}"))


__all__ = ["Problem", "validate_dataset", "summarize_dataset", "scan_dataset"]
