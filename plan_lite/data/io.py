"""NIfTI I/O with plan-lite's (z, y, x) array convention. The only module that touches nibabel's axis order.

Also reads MSD / nnU-Net v2 dataset folders (DESIGN.md "Data layout"): ``dataset.json`` + ``imagesTr`` (+
``labelsTr``) + optional ``imagesTs``, ``cases.csv`` and ``lesions.json``. Both the nnU-Net v2 naming
(``{case}_{XXXX}.nii.gz``, ``channel_names``, labels ``{name: id}``) and the original Medical Segmentation Decathlon
naming (``{case}.nii.gz``, ``modality``, labels ``{"id": name}``; data card ``data_cards/msd_task03.md``) are understood.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from plan_lite.errors import DatasetError, PlanLiteError
from plan_lite.labels import LESION_LABELS
from plan_lite.utils import atomic_path

NIFTI_ENDINGS = (".nii.gz", ".nii")
# MSD Task03_Liver / LiTS: 0 background, 1 liver, 2 tumour of unknown type -> 14 "other" (labels.py).
LABEL_MAPS: dict[str, dict[int, int]] = {
    "msd_task03": {0: 0, 1: 1, 2: 14},
    "lits": {0: 0, 1: 1, 2: 14},
}
# Channel names understood as a phase (lower-cased); "ct" (MSD Task03) is the single phase of a 1-channel set.
PHASE_ALIASES: dict[str, str] = {
    "nc": "nc", "non-contrast": "nc", "noncontrast": "nc", "plain": "nc", "native": "nc",
    "la": "la", "arterial": "la", "late arterial": "la", "late_arterial": "la",
    "pv": "pv", "venous": "pv", "portal": "pv", "portal venous": "pv", "portal_venous": "pv",
}
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


# --------------------------------------------------------------------------------------------------- files
def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """(z, y, x) voxel spacing in mm from a NIfTI affine (columns are the x, y, z voxel axes)."""
    sx, sy, sz = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return float(sz), float(sy), float(sx)


def affine_from_spacing(spacing: tuple[float, float, float], origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A diagonal RAS affine for a (z, y, x) spacing (file axes x, y, z)."""
    sz, sy, sx = spacing
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = origin
    return aff


def affines_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-3) -> bool:
    """True when two 4x4 affines agree to ``rtol`` relative (floor 1 mm / 1 unit, so 1e-3 absolute near 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    return bool(np.all(np.abs(a - b) <= rtol * scale))


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The raw array in file (x, y, z[, ...]) order, any dimensionality, and the affine.

    Raises ``DatasetError`` naming the file when it is unreadable or truncated (the data is decoded here).
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel/gzip/zlib raise many types for bad files
        raise DatasetError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    return data, np.asarray(img.affine, dtype=np.float64)


def read_image(path: str | os.PathLike, dtype=None) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Read a 3D NIfTI as a (D, H, W) = (z, y, x) array, its (z, y, x) spacing and its affine.

    A folder is read as one DICOM CT series (``plan_lite.data.dicom.read_dicom_series``: HU as float32, the same
    array/affine conventions, geometry from the headers per DICOM PS3.3 C.7.6.2).
    Raises ``DatasetError`` naming the file for unreadable/truncated files and non-3D images.
    """
    if Path(path).is_dir():
        from plan_lite.data.dicom import read_dicom_series

        arr, spacing, affine = read_dicom_series(path)
        return (arr if dtype is None else arr.astype(dtype, copy=False)), spacing, affine
    data, affine = read_nifti(path)
    if data.ndim != 3:
        raise DatasetError(f"{path}: expected a 3D image, got {data.ndim}D shape {data.shape}")
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr, spacing_from_affine(affine), affine


def write_nifti(path: str | os.PathLike, array_zyx: np.ndarray, affine: np.ndarray, dtype=None) -> None:
    """Write a (z, y, x) array as NIfTI with ``affine`` (atomically: temp file + rename)."""
    arr = np.asarray(array_zyx)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))), np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(arr.dtype)
    img.set_qform(np.asarray(affine), code=1)
    img.set_sform(np.asarray(affine), code=1)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))


def write_image(path, array_zyx, affine) -> None:
    """CT image in HU as int16."""
    write_nifti(path, np.clip(np.rint(array_zyx), -32768, 32767), affine, dtype=np.int16)


def write_label(path, array_zyx, affine) -> None:
    """Label map as uint8."""
    write_nifti(path, array_zyx, affine, dtype=np.uint8)


def split_ending(name: str) -> tuple[str, str] | None:
    """``"case_0000_0001.nii.gz"`` -> ``("case_0000_0001", ".nii.gz")``; None for non-NIfTI names."""
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], ending
    return None


# ------------------------------------------------------------------------------------------ dataset.json
@dataclass
class DatasetSpec:
    """What ``dataset.json`` says, normalised: channel names by index, labels ``{id: name}``."""

    root: Path
    channel_names: tuple[str, ...]
    labels: dict[int, str]
    file_ending: str = ".nii.gz"
    num_training: int | None = None
    tumor_labels: tuple[int, ...] = LESION_LABELS
    layout: str = "nnunet"  # "nnunet" ({case}_{XXXX}) or "msd" (one {case} file, original Decathlon naming)
    raw: dict = field(default_factory=dict)


def parse_labels(obj: Any) -> dict[int, str]:
    """nnU-Net v2 ``{name: id}`` (id may be a list for regions) or MSD ``{"id": name}`` -> ``{id: name}``."""
    out: dict[int, str] = {}
    if not isinstance(obj, Mapping):
        raise ValueError("labels must be an object")
    for k, v in obj.items():
        if isinstance(v, str) and str(k).lstrip("-").isdigit():
            out[int(k)] = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[int(v)] = str(k)
        elif isinstance(v, (list, tuple)):
            out.update({int(i): str(k) for i in v})
        else:
            raise ValueError(f"label {k!r}: {v!r} is neither an id nor a name")
    return out


def read_dataset_spec(root: str | os.PathLike, data: dict | None = None) -> DatasetSpec:
    """Parse ``root/dataset.json`` (``data`` if already loaded). Raises ``DatasetError`` naming the fault."""
    root = Path(root)
    path = root / "dataset.json"
    if data is None:
        if not path.is_file():
            raise DatasetError(f"{path}: missing dataset.json")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    chans = data.get("channel_names", data.get("modality"))
    if not isinstance(chans, Mapping) or not chans:
        raise DatasetError(f"{path}: missing or empty 'channel_names'")
    try:
        idx = sorted(int(k) for k in chans)
        labels = parse_labels(data.get("labels", {}))
        tumor = tuple(int(x) for x in data.get("tumor_labels", LESION_LABELS))
        num = data.get("numTraining")
        num = None if num is None else int(num)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed dataset.json ({exc})") from None
    if idx != list(range(len(idx))):
        raise DatasetError(f"{path}: channel_names keys must be 0..{len(idx) - 1}, got {sorted(chans)}")
    layout = "msd" if "channel_names" not in data else "nnunet"
    ending = str(data.get("file_ending", ".nii.gz"))
    return DatasetSpec(root, tuple(str(chans[str(i)] if str(i) in chans else chans[i]) for i in idx), labels,
                       ending, num, tumor, layout, data)


def parse_image_name(stem: str, layout: str) -> tuple[str, int] | None:
    """(case id, channel) from an image file stem; None when it does not follow the layout."""
    if layout == "msd":
        return stem, 0
    m = _CHANNEL_RE.match(stem)
    return (m["case"], int(m["ch"])) if m else None


@dataclass
class FolderListing:
    """Files of one images/labels folder: ``files[case][channel] -> [paths]`` (> 1 path = duplicate)."""

    files: dict[str, dict[int, list[Path]]] = field(default_factory=dict)
    unknown: list[Path] = field(default_factory=list)


def list_folder(folder: Path, layout: str, labels: bool = False) -> FolderListing:
    """List a dataset folder without reading any file. Hidden files (``.DS_Store``, ``._x``) are skipped."""
    out = FolderListing()
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        se = split_ending(p.name) if p.is_file() else None
        parsed = None if se is None else ((se[0], 0) if labels else parse_image_name(se[0], layout))
        if parsed is None:
            out.unknown.append(p)
            continue
        out.files.setdefault(parsed[0], {}).setdefault(parsed[1], []).append(p)
    return out


# ------------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    """One case in HU. ``image`` (C, D, H, W) float32; ``label`` (D, H, W) uint8 or None; ``spacing`` (z, y, x)."""

    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray
    case_id: str
    paths: dict[str, Path] = field(default_factory=dict)  # channel name -> image file; "label" -> label file
    channel_names: tuple[str, ...] = ()


def canonical_phase(name: str) -> str:
    """Channel name -> phase key (``nc``/``la``/``pv``) or the lower-cased name itself."""
    n = str(name).strip().lower()
    return PHASE_ALIASES.get(n, n)


def resolve_phases(channel_names: tuple[str, ...], phases: Iterable[str] | None, where: str = "") -> list[int]:
    """Channel indices for the requested phases (in request order). A single ``CT`` channel serves one phase."""
    if phases is None:
        return list(range(len(channel_names)))
    phases = [canonical_phase(p) for p in phases]
    canon = [canonical_phase(c) for c in channel_names]
    if len(canon) == 1 and len(phases) == 1 and canon[0] in ("ct", phases[0]):
        return [0]
    out = []
    for p in phases:
        if p not in canon:
            raise PlanLiteError(f"{where}phase {p!r} not among the channels {', '.join(channel_names)}")
        out.append(canon.index(p))
    return out


def label_lookup(label_map: str | Mapping[int, int] | None) -> dict[int, int] | None:
    """``"msd_task03"`` / ``"lits"`` / a dict -> dict; None -> None (labels kept as stored)."""
    if label_map is None:
        return None
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise PlanLiteError(f"unknown label_map {label_map!r}; choose from {', '.join(LABEL_MAPS)} or give a dict")
        return dict(LABEL_MAPS[label_map])
    return {int(k): int(v) for k, v in label_map.items()}


def guess_label_map(spec: DatasetSpec) -> dict[int, int] | None:
    """The MSD Task03 / LiTS map when dataset.json labels are {0 background, 1 liver, 2 cancer/tumour}."""
    names = {k: v.lower() for k, v in spec.labels.items()}
    if set(names) == {0, 1, 2} and names[1] == "liver" and names[2] in ("cancer", "tumor", "tumour", "lesion"):
        return dict(LABEL_MAPS["msd_task03"])
    return None


def describe_label_map(spec: DatasetSpec, mapping: Mapping[int, int] | None) -> str:
    """One line saying how the dataset's labels become plan-lite labels (for logs and outputs)."""
    if mapping is None:
        return "labels used as stored (plan-lite label map)"
    from plan_lite.labels import LABEL_NAMES

    parts = [f"{k} {spec.labels.get(k, '?')} -> {v} {LABEL_NAMES.get(v, '?')}" for k, v in sorted(mapping.items())]
    return "labels remapped: " + ", ".join(parts)


def remap_labels(label: np.ndarray, mapping: dict[int, int] | None, path: str = "") -> np.ndarray:
    """Integer-round a label array and apply ``mapping`` (every stored value must be mapped) -> uint8."""
    lab = np.rint(label) if np.issubdtype(label.dtype, np.floating) else label
    if lab.size and (lab.min() < 0 or lab.max() > 255):
        raise DatasetError(f"{path}: label values outside 0..255 ({lab.min()}..{lab.max()})")
    lab = lab.astype(np.uint8, copy=False)
    if mapping is None:
        return lab
    lut = np.arange(256, dtype=np.int32)
    mapped = np.zeros(256, dtype=bool)
    for k, v in mapping.items():
        if 0 <= k < 256:
            lut[k], mapped[k] = v, True
    present = np.flatnonzero(np.bincount(lab.ravel(), minlength=256))
    missing = [int(v) for v in present if not mapped[v]]
    if missing:
        raise DatasetError(f"{path}: label values {missing} not in the label map {mapping}")
    return lut[lab].astype(np.uint8)


def _case_id_from_path(path: Path) -> str:
    if path.is_dir():  # a DICOM series folder: its name
        return path.resolve().name
    se = split_ending(path.name)
    stem = se[0] if se else path.stem
    m = _CHANNEL_RE.match(stem)
    return m["case"] if m else stem


def _stack_phases(paths: list[Path], names: list[str], case_id: str) -> Case:
    arrays, ref = [], None
    for p in paths:
        arr, spacing, affine = read_image(p)
        if ref is None:
            ref = (arr.shape, spacing, affine, p)
        elif arr.shape != ref[0]:
            raise DatasetError(f"{p}: shape {arr.shape} differs from {ref[3].name} {ref[0]}")
        elif not affines_close(affine, ref[2]):
            raise DatasetError(f"{p}: affine/spacing differs from {ref[3].name}")
        arrays.append(arr.astype(np.float32, copy=False))
    return Case(np.stack(arrays), None, ref[1], ref[2], case_id, dict(zip(names, paths)), tuple(names))


def load_images(paths: list, phases: Iterable[str] | None = None, case_id: str | None = None) -> Case:
    """A ``Case`` (label None) from plain image files, one per phase in order (for prediction).

    A folder holding one DICOM CT series stands for one phase's image file (case id: the folder name).
    All files must share shape and affine (``PlanLiteError`` naming the file otherwise).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise PlanLiteError("load_images: no image files given")
    for p in paths:
        if not (p.is_file() or p.is_dir()):
            raise PlanLiteError(f"{p}: no such file")
    names = list(phases) if phases is not None else [f"ch{i}" for i in range(len(paths))]
    if len(names) != len(paths):
        raise PlanLiteError(f"{paths[0]}: {len(paths)} image files for {len(names)} phases {tuple(names)}")
    return _stack_phases(paths, names, case_id or _case_id_from_path(paths[0]))


class MSDDataset:
    """An MSD / nnU-Net v2 dataset folder (DESIGN.md "Data layout").

    ``phases`` selects and orders channels by name (``nc``/``la``/``pv``; a single ``CT`` channel serves one
    phase); ``label_map`` is a ``LABEL_MAPS`` key, a dict ``{stored: plan-lite label}``, ``"auto"`` (the MSD
    Task03 map when dataset.json labels are background/liver/cancer, the default) or None (labels as stored);
    ``label_map_note`` says in one line which map applies. ``subset``: ``train``
    (imagesTr + labelsTr), ``test`` (imagesTs, no labels) or ``all``.
    """

    def __init__(self, root, phases=None, label_map="auto", subset: str = "train"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.spec = read_dataset_spec(self.root)
        where = f"{self.root / 'dataset.json'}: "
        self.channel_idx = resolve_phases(self.spec.channel_names, phases, where)
        self.channel_names = tuple(phases) if phases is not None else self.spec.channel_names
        self.label_map = guess_label_map(self.spec) if label_map == "auto" else label_lookup(label_map)
        self.label_map_note = describe_label_map(self.spec, self.label_map)
        if subset not in ("train", "test", "all"):
            raise PlanLiteError(f"MSDDataset: subset must be train, test or all, got {subset!r}")
        folders = {"train": ["imagesTr"], "test": ["imagesTs"], "all": ["imagesTr", "imagesTs"]}[subset]
        self._images: dict[str, dict[int, Path]] = {}
        self._labels: dict[str, Path] = {}
        for folder in folders:
            listing = list_folder(self.root / folder, self.spec.layout)
            for case, chans in listing.files.items():
                for ps in chans.values():
                    if len(ps) > 1:
                        raise DatasetError(f"{ps[0]}: duplicate case files {', '.join(p.name for p in ps)}")
                if case in self._images:
                    raise DatasetError(f"{self.root / folder}: case {case!r} also in another folder")
                self._images[case] = {ch: ps[0] for ch, ps in chans.items()}
            if folder == "imagesTr":
                lab = list_folder(self.root / "labelsTr", self.spec.layout, labels=True)
                self._labels.update({c: v[0][0] for c, v in lab.files.items()})
        self.case_ids: list[str] = sorted(self._images)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> Case:
        return self.load(self.case_ids[index])

    def __iter__(self):
        return (self.load(c) for c in self.case_ids)

    def image_paths(self, case_id: str) -> list[Path]:
        """The image file of every selected channel, in channel order (``DatasetError`` if one is missing)."""
        if case_id not in self._images:
            raise PlanLiteError(f"{self.root}: unknown case {case_id!r}")
        chans = self._images[case_id]
        out = []
        for i in self.channel_idx:
            if i not in chans:
                name = case_id + ("" if self.spec.layout == "msd" else f"_{i:04d}") + self.spec.file_ending
                raise DatasetError(f"{self.root / 'imagesTr' / name}: missing phase file "
                                   f"({self.spec.channel_names[i]})")
            out.append(chans[i])
        return out

    def label_path(self, case_id: str) -> Path | None:
        return self._labels.get(case_id)

    def load(self, case_id: str) -> Case:
        """Read one case (image in HU as float32, label remapped to plan-lite labels as uint8)."""
        case = _stack_phases(self.image_paths(case_id), list(self.channel_names), case_id)
        lp = self.label_path(case_id)
        if lp is not None:
            lab, _, laff = read_image(lp)
            if lab.shape != case.image.shape[1:]:
                raise DatasetError(f"{lp}: label shape {lab.shape} differs from image {case.image.shape[1:]}")
            if not affines_close(laff, case.affine):
                raise DatasetError(f"{lp}: label affine/spacing differs from the image")
            case.label = remap_labels(lab, self.label_map, str(lp))
            case.paths["label"] = lp
        return case


# ------------------------------------------------------------------------------------- tables and lists
_TEXT_COLUMNS = ("case", "split", "group")


def read_cases_csv(path: str | os.PathLike, required: Iterable[str] = ("case",),
                   numeric: Iterable[str] = ()) -> list[dict]:
    """Rows of ``cases.csv`` as dicts: numeric values become int / float, ``case`` / ``split`` / ``group`` stay
    text. The one reader of the file: ``required`` columns must exist and ``numeric`` ones hold a number in
    every row (``DatasetError`` naming the file, and the line for a bad value)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            missing = [c for c in dict.fromkeys([*required, *numeric]) if c not in cols]
            if missing:
                raise DatasetError(f"{path}: cases.csv is missing column(s) {', '.join(missing)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                rec = {k: (v if k in _TEXT_COLUMNS else _number(v)) for k, v in row.items() if k is not None}
                for k in numeric:
                    if isinstance(rec[k], bool) or not isinstance(rec[k], (int, float)):
                        raise DatasetError(f"{path}:{line}: column {k} is not a number: {row[k]!r}")
                    rec[k] = float(rec[k])
                rows.append(rec)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return rows


def _number(v: str | None):
    if v is None or v == "":
        return v
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def read_lesions_json(path: str | os.PathLike) -> dict[str, list[dict]]:
    """``lesions.json``: ``{case: [{"id", "label", "type", "center_mm", "radius_mm", "volume_mm3"}, ...]}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read lesions.json ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DatasetError(f"{path}: expected {{case: [lesion, ...]}}")
    return data
