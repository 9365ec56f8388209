"""DICOM CT series as input: a folder holding one series of single-frame CT slices -> (z, y, x) HU volume.

Returns exactly what ``plan_lite.data.io.read_image`` returns for a NIfTI of the same data: a (D, H, W) =
(z, y, x) float32 array, its (z, y, x) spacing in mm and a NIfTI-style RAS affine whose columns are the x, y, z
voxel axes (x = DICOM column index, y = DICOM row index, z = slice index in the sorted stack).

Geometry follows DICOM PS3.3 C.7.6.2 (Image Plane Module). For a slice with Image Position (Patient)
``IPP`` (0020,0032), Image Orientation (Patient) ``IOP`` (0020,0037) = row direction cosines ``X`` (the
direction of increasing column index) then column direction cosines ``Y`` (increasing row index), and Pixel
Spacing (0028,0030) = ``(Δr, Δc)`` (distance between rows, then between columns), the pixel at row ``r`` and
column ``c`` lies at (C.7.6.2.1.1)::

    P = IPP + c * Δc * X + r * Δr * Y          (patient coordinates, LPS: +x left, +y posterior, +z superior)

Slices are sorted by their position along the slice normal ``n = X × Y`` (``IPP · n``), not by file name or
Instance Number; the slice axis of the affine is the mean step between consecutive sorted positions (``Slice
Thickness`` is ignored: it is the reconstructed slab width, not the spacing). The LPS affine is turned into RAS
by negating its first two rows (``diag(-1, -1, 1, 1) @ A_lps``), as nibabel and dcm2niix do. Stored values
become HU through Rescale Slope / Intercept (0028,1053 / 0028,1052; PS3.3 C.11.1, CT Image Module C.8.2.1),
per slice.

Faults raise ``DatasetError`` (a ``PlanLiteError``) naming the folder and the fault: no DICOM files, several
series, missing slices, inconsistent pixel spacing / orientation / size, non-uniform slice steps, tilted
(sheared) stacks, multi-frame or non-CT objects. pydicom is imported lazily (the ``dicom`` extra).

``write_dicom_series`` is the inverse: a (z, y, x) HU volume and its RAS affine -> one CT Image Storage file per
slice (PS3.3 C.7.6.2, C.8.2.1), e.g. to hand a scan to a DICOM-only tool.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from plan_lite.errors import DatasetError, PlanLiteError
from plan_lite.utils import atomic_dir

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Tolerances: header values are decimal strings (DS, up to 16 characters), so allow rounding noise.
_DIR_TOL = 1e-4  # direction cosines
_MM_TOL = 1e-3  # mm, pixel spacing / positions
_STEP_RTOL = 1e-2  # relative deviation of one slice step from the median step
_GAP_FACTOR = 1.5  # a step larger than this times the median step = missing slice(s)
_NON_IMAGE_SOP = {"1.2.840.10008.1.3.10"}  # Media Storage Directory (DICOMDIR)


def _pydicom(folder):
    try:
        import pydicom
    except ImportError:
        raise PlanLiteError(f'{folder}: reading a DICOM series needs pydicom: pip install "plan-lite[dicom]"') from None
    return pydicom


def _has_preamble(path: Path) -> bool:
    """DICOM PS3.10 file: 128-byte preamble followed by ``DICM``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _candidates(folder: Path) -> list[Path]:
    """Files of ``folder`` (not recursive, hidden files skipped) that look like DICOM: a PS3.10 preamble, or a
    ``.dcm`` / ``.dicom`` / ``.ima`` name (raw data sets without preamble)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if not p.name.startswith(".") and p.is_file()
            and (_has_preamble(p) or p.suffix.lower() in DICOM_SUFFIXES)]


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True for a folder that holds DICOM files and is not an MSD / nnU-Net dataset folder (``dataset.json``,
    ``imagesTr``, ``imagesTs``). Reads at most 132 bytes per file; does not need pydicom."""
    p = Path(path)
    if not p.is_dir() or any((p / n).exists() for n in ("dataset.json", "imagesTr", "imagesTs")):
        return False
    return bool(_candidates(p))


def _floats(ds, keyword: str, n: int, where: Path) -> np.ndarray:
    value = ds.get(keyword)
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = None
    if out is None or out.shape != (n,) or not np.all(np.isfinite(out)):
        fault = "missing" if value is None else f"malformed ({value!r})"
        raise DatasetError(f"{where}: {keyword} {fault}; a CT slice needs it (PS3.3 C.7.6.2 Image Plane Module)")
    return out


def _fmt(v) -> str:
    return "\\".join(f"{x:g}" for x in np.atleast_1d(v))


def _series_summary(groups: dict[str, list]) -> str:
    parts = []
    for uid, items in groups.items():
        ds = items[0][1]
        desc = str(ds.get("SeriesDescription", "") or "").strip()
        parts.append(f"{uid} ({len(items)} file(s), {ds.get('Modality', '?')}" + (f", {desc!r})" if desc else ")"))
    return "; ".join(parts)


def _read_datasets(folder: Path, pydicom) -> list[tuple[Path, object]]:
    files = _candidates(folder)
    if not files:
        raise DatasetError(f"{folder}: no DICOM files found (expected one CT series, one .dcm file per slice)")
    out = []
    for p in files:
        try:
            ds = pydicom.dcmread(str(p), force=not _has_preamble(p))
        except Exception as exc:  # pydicom raises many types for bad files
            raise DatasetError(f"{folder}: {p.name} is not readable DICOM ({type(exc).__name__}: {exc})") from None
        sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if "PixelData" not in ds or sop in _NON_IMAGE_SOP:
            continue  # DICOMDIR, structured reports, presentation states: not slices
        out.append((p, ds))
    if not out:
        raise DatasetError(f"{folder}: no DICOM image slices ({len(files)} DICOM file(s), none with pixel data)")
    return out


def read_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Read the one CT series in ``folder``: (z, y, x) float32 HU array, (z, y, x) spacing (mm), RAS affine.

    Same conventions as ``read_image`` of a NIfTI (see the module docstring for the geometry, PS3.3 C.7.6.2).
    Raises ``DatasetError`` naming the folder and the fault; ``PlanLiteError`` when pydicom is not installed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: DICOM series folder not found")
    pydicom = _pydicom(folder)
    items = _read_datasets(folder, pydicom)

    groups: dict[str, list] = {}
    for p, ds in items:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or "<no SeriesInstanceUID>"), []).append((p, ds))
    if len(groups) > 1:
        raise DatasetError(f"{folder}: {len(groups)} DICOM series in one folder (SeriesInstanceUID "
                           f"{_series_summary(groups)}); give a folder holding one series")

    first = items[0][0]
    for p, ds in items:
        modality = str(ds.get("Modality", "CT") or "CT").upper()
        if modality != "CT":
            raise DatasetError(f"{folder}: modality {modality} in {p.name}; plan-lite reads CT series only")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise DatasetError(f"{folder}: {p.name} is a multi-frame DICOM object ({frames} frames, e.g. Enhanced "
                               f"CT); only series of single-frame slices are supported")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DatasetError(f"{folder}: {p.name} has {ds.SamplesPerPixel} samples per pixel; CT is greyscale")

    # Image Plane Module (PS3.3 C.7.6.2): orientation, spacing and size must agree across slices.
    iops = [_floats(ds, "ImageOrientationPatient", 6, folder / p.name) for p, ds in items]
    spacings = [_floats(ds, "PixelSpacing", 2, folder / p.name) for p, ds in items]
    ipps = [_floats(ds, "ImagePositionPatient", 3, folder / p.name) for p, ds in items]
    sizes = [(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) for _, ds in items]
    for name, values, tol, fmt in (("ImageOrientationPatient", iops, _DIR_TOL, _fmt),
                                   ("PixelSpacing", spacings, _MM_TOL, _fmt),
                                   ("image size (Rows x Columns)", sizes, 0, lambda s: f"{s[0]}x{s[1]}")):
        for (p, _), v in zip(items, values):
            if np.max(np.abs(np.subtract(v, values[0]))) > tol:
                raise DatasetError(f"{folder}: inconsistent {name} between slices ({fmt(values[0])} in "
                                   f"{first.name}, {fmt(v)} in {p.name})")
    rows, cols = sizes[0]
    if rows < 1 or cols < 1:
        raise DatasetError(f"{folder}: Rows/Columns missing in {first.name}")
    x_dir, y_dir = iops[0][:3], iops[0][3:]
    if (abs(np.linalg.norm(x_dir) - 1) > 1e-3 or abs(np.linalg.norm(y_dir) - 1) > 1e-3
            or abs(x_dir @ y_dir) > 1e-3):
        raise DatasetError(f"{folder}: ImageOrientationPatient {_fmt(iops[0])} is not two orthogonal unit vectors")
    x_dir, y_dir = x_dir / np.linalg.norm(x_dir), y_dir / np.linalg.norm(y_dir)
    normal = np.cross(x_dir, y_dir)
    d_row, d_col = spacings[0]
    if d_row <= 0 or d_col <= 0:
        raise DatasetError(f"{folder}: PixelSpacing {_fmt(spacings[0])} must be positive")

    # Sort by position along the slice normal.
    n = len(items)
    if n < 2:
        raise DatasetError(f"{folder}: only 1 slice; a 3D CT series needs at least 2")
    dist = np.array([ipp @ normal for ipp in ipps])
    order = np.argsort(dist, kind="stable")
    dist, pos = dist[order], np.stack(ipps)[order]
    names = [items[i][0].name for i in order]
    steps = np.diff(dist)
    dup = np.flatnonzero(steps <= _MM_TOL)
    if dup.size:
        i = int(dup[0])
        raise DatasetError(f"{folder}: two slices at the same position {dist[i]:.3f} mm along the slice normal "
                           f"({names[i]}, {names[i + 1]}); duplicate slices or several acquisitions in one series")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > _GAP_FACTOR * median)
    if gaps.size:
        i = int(gaps[0])
        missing = max(1, int(round(steps[i] / median)) - 1)
        raise DatasetError(f"{folder}: missing slices: gap of {steps[i]:.3f} mm between {names[i]} and "
                           f"{names[i + 1]} (median step {median:.3f} mm; about {missing} slice(s) missing"
                           + (f", {gaps.size} gap(s) in all)" if gaps.size > 1 else ")"))
    dev = np.abs(steps - median)
    if dev.max() > max(_STEP_RTOL * median, _MM_TOL):
        i = int(np.argmax(dev))
        raise DatasetError(f"{folder}: non-uniform slice steps ({steps.min():.3f} to {steps.max():.3f} mm, median "
                           f"{median:.3f} mm; step {steps[i]:.3f} mm between {names[i]} and {names[i + 1]})")
    diffs = np.diff(pos, axis=0)
    shear = np.linalg.norm(diffs - np.outer(diffs @ normal, normal), axis=1)
    if shear.max() > max(_STEP_RTOL * median, 10 * _MM_TOL):
        raise DatasetError(f"{folder}: slices are not stacked along the slice normal (in-plane shift up to "
                           f"{shear.max():.3f} mm per slice: gantry tilt or a sheared stack); not supported")

    # LPS affine of voxel (i = column, j = row, k = slice), then RAS.
    lps = np.eye(4)
    lps[:3, 0] = x_dir * d_col
    lps[:3, 1] = y_dir * d_row
    lps[:3, 2] = (pos[-1] - pos[0]) / (n - 1)
    lps[:3, 3] = pos[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    volume = np.empty((n, rows, cols), dtype=np.float32)
    for k, i in enumerate(order):
        p, ds = items[i]
        try:
            px = ds.pixel_array
        except Exception as exc:  # missing decoder for a compressed transfer syntax, truncated data, ...
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
            raise DatasetError(f"{folder}: cannot decode the pixel data of {p.name} (transfer syntax {ts}; "
                               f"{type(exc).__name__}: {exc})") from None
        if px.shape != (rows, cols):
            raise DatasetError(f"{folder}: {p.name} pixel data shape {px.shape}, expected {rows}x{cols}")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        volume[k] = px.astype(np.float64) * slope + intercept

    from plan_lite.data.io import spacing_from_affine

    return volume, spacing_from_affine(affine), affine


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage SOP Class (PS3.4 B.5)
_ORTHO_TOL = 1e-3  # |cos| between voxel axes of a writable affine (~0.06 degrees), as the reader's IOP check
_LO_MAX = 64  # Long String (LO) value length (PS3.5 6.2)


def _ds(v: float) -> str:
    """A Decimal String (DS, at most 16 characters, PS3.5 6.2) as precise as it fits; no ``-0``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(v) + 0.0)


def _save_dataset(pydicom, ds, path: Path) -> None:
    """Write a PS3.10 file (preamble, ``DICM``, file meta) in the transfer syntax of ``ds.file_meta``."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    else:  # pydicom 2.4
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.preamble = b"\0" * 128
        ds.save_as(str(path), write_like_original=False)


def new_ct_slice(pydicom) -> object:
    """An empty CT Image Storage dataset with its file meta (explicit VR little endian) and a fresh SOP Instance
    UID (SOP Common Module, PS3.3 C.12.1); geometry and pixels are the caller's."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def write_dicom_series(hu_zyx: np.ndarray, affine: np.ndarray, folder: str | os.PathLike, *,
                       series_description: str = "plan-lite export", patient_id: str = "ANON",
                       rescale_intercept: float = -1024.0, rescale_slope: float = 1.0,
                       overwrite: bool = False) -> Path:
    """Write a (z, y, x) HU volume with its NIfTI (RAS) affine as a DICOM CT series; returns ``folder``.

    The inverse of ``read_dicom_series``: for the conventions of ``read_image`` (``hu_zyx`` indexed (slice, row,
    column), affine columns = x, y, z voxel axes in RAS mm) it writes one single-frame CT Image Storage object
    (SOP Class 1.2.840.10008.5.1.4.1.1.2) per z-slice, ``slice_0000.dcm``, ``slice_0001.dcm``, ..., Explicit VR
    Little Endian, with one generated Study / Series / Frame of Reference UID. It is meant for sending a scan (or a
    synthetic test series) to a tool that only reads DICOM; a lesson uses it to demonstrate DICOM input (the shipped
    real CT written as a series and read back). Patient and study attributes are
    placeholders (``patient_id``, empty type 2 attributes); it is not a de-identification or PACS tool.

    Geometry (PS3.3 C.7.6.2, Image Plane Module): the affine is converted to LPS (``diag(-1, -1, 1, 1) @ affine``);
    its x column gives the row direction cosines and the column spacing, its y column the column direction cosines
    and the row spacing (Image Orientation (Patient), Pixel Spacing = (row spacing, column spacing)); Image
    Position (Patient) of slice ``k`` is the LPS position of voxel (0, 0, k); Slice Thickness is the slice step.
    Oblique grids are fine as long as the three voxel axes are mutually orthogonal; a sheared affine (gantry tilt,
    or an in-plane skew) raises ``PlanLiteError``. When the slice axis points against row x column (a left-handed
    voxel grid) the files are still correct, but ``read_dicom_series`` (which orders slices along row x column)
    returns the slices reversed, with the matching affine: the same image in patient space.

    Pixels (PS3.3 C.8.2.1, CT Image Module; C.7.6.3 Image Pixel): MONOCHROME2, 16 bits allocated and stored,
    signed (Pixel Representation 1); stored = round((HU - ``rescale_intercept``) / ``rescale_slope``), clipped to
    the int16 range (-32768 .. 32767); Rescale Intercept / Slope and Rescale Type ``HU`` are written so a reader
    recovers HU. With the defaults (-1024, 1) integer HU from -33792 to 31743 round-trip exactly.

    The series is built in a temporary sibling folder and renamed into place when complete
    (``plan_lite.utils.atomic_dir``); an existing non-empty ``folder`` is refused unless ``overwrite``, and is only
    replaced once the new series is complete. Faults raise ``PlanLiteError`` naming the folder.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise PlanLiteError(f"{folder}: exists and is not empty; pass overwrite=True to replace it")
    try:
        import pydicom
        from pydicom.uid import generate_uid
    except ImportError:
        raise PlanLiteError(f'{folder}: writing a DICOM series needs pydicom: pip install "plan-lite[dicom]"') from None

    hu = np.asarray(hu_zyx)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise PlanLiteError(f"{folder}: expected a non-empty 3D (z, y, x) volume, got shape {hu.shape}")
    if hu.shape[1] > 65535 or hu.shape[2] > 65535:
        raise PlanLiteError(f"{folder}: slice size {hu.shape[1]}x{hu.shape[2]} exceeds DICOM Rows/Columns (65535)")
    if not np.issubdtype(hu.dtype, np.number) or np.issubdtype(hu.dtype, np.complexfloating):
        raise PlanLiteError(f"{folder}: HU volume has dtype {hu.dtype}; expected a real number type")
    if not np.all(np.isfinite(hu)):
        raise PlanLiteError(f"{folder}: HU volume holds NaN or infinite values")
    slope, intercept = float(rescale_slope), float(rescale_intercept)
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise PlanLiteError(f"{folder}: rescale slope {slope:g} / intercept {intercept:g}: need a finite "
                            f"non-zero slope and a finite intercept")
    for name, text in (("series_description", series_description), ("patient_id", patient_id)):
        if not isinstance(text, str) or len(text) > _LO_MAX or "\\" in text or any(c in text for c in "\r\n"):
            raise PlanLiteError(f"{folder}: {name} {text!r} must be a string of at most {_LO_MAX} characters "
                                f"without backslashes or line breaks (DICOM LO)")

    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise PlanLiteError(f"{folder}: affine must be a finite 4x4 matrix, got shape {aff.shape}")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    cols = lps[:3, :3].T  # voxel axes x, y, z (LPS, mm)
    lengths = np.linalg.norm(cols, axis=1)
    if np.any(lengths <= 1e-6):
        raise PlanLiteError(f"{folder}: affine has a zero-length voxel axis (spacing {_fmt(lengths)} mm)")
    units = cols / lengths[:, None]
    cosines = {"x/y": units[0] @ units[1], "x/z": units[0] @ units[2], "y/z": units[1] @ units[2]}
    worst = max(cosines, key=lambda k: abs(cosines[k]))
    if abs(cosines[worst]) > _ORTHO_TOL:
        angle = float(np.degrees(np.arccos(np.clip(abs(cosines[worst]), 0.0, 1.0))))
        raise PlanLiteError(f"{folder}: affine is sheared (voxel axes {worst} at {angle:.2f} degrees, not 90); "
                            f"a DICOM series needs orthogonal row, column and slice axes (PS3.3 C.7.6.2): "
                            f"resample to an orthogonal grid first")
    row_dir, col_dir = units[0], units[1]  # IOP: direction of increasing column index, then row index
    d_col, d_row, step = (float(v) for v in lengths)
    normal = np.cross(row_dir, col_dir)

    stored = np.rint((hu.astype(np.float64) - intercept) / slope)
    stored = np.clip(stored, np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype("<i2")

    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    iop = [_ds(v) for v in (*row_dir, *col_dir)]
    n, rows, columns = hu.shape
    with atomic_dir(folder, overwrite=True) as tmp:  # refusal handled above, with a message for the API
        for k in range(n):
            ipp = lps[:3, 3] + k * lps[:3, 2]
            ds = new_ct_slice(pydicom)
            ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
            # Patient (C.7.1.1) and General Study (C.7.2.1): placeholders, type 2 attributes empty
            ds.PatientName = patient_id
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = ""
            ds.StudyTime = ""
            ds.ReferringPhysicianName = ""
            ds.StudyID = ""
            ds.AccessionNumber = ""
            # General Series (C.7.3.1), Frame of Reference (C.7.4.1), General Equipment (C.7.5.1)
            ds.Modality = "CT"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = 1
            ds.SeriesDescription = series_description
            ds.PatientPosition = ""
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            ds.Manufacturer = "plan-lite"
            # General Image (C.7.6.1)
            ds.InstanceNumber = k + 1
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.DerivationDescription = "plan_lite.data.dicom.write_dicom_series"
            # Image Plane (C.7.6.2)
            ds.ImagePositionPatient = [_ds(v) for v in ipp]
            ds.ImageOrientationPatient = iop
            ds.PixelSpacing = [_ds(d_row), _ds(d_col)]
            ds.SliceThickness = _ds(step)
            ds.SliceLocation = _ds(ipp @ normal)
            # Image Pixel (C.7.6.3) and CT Image (C.8.2.1)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, columns
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept = _ds(intercept)
            ds.RescaleSlope = _ds(slope)
            ds.RescaleType = "HU"
            ds.KVP = ""
            ds.AcquisitionNumber = ""
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            _save_dataset(pydicom, ds, tmp / f"slice_{k:04d}.dcm")
    return folder


__all__ = ["CT_IMAGE_STORAGE", "DICOM_SUFFIXES", "is_dicom_folder", "read_dicom_series", "write_dicom_series"]
