"""DICOM CT series input (plan_lite.data.dicom): geometry per DICOM PS3.3 C.7.6.2 (Image Plane Module), HU via
Rescale Slope/Intercept, the same conventions as ``read_image`` of a NIfTI, clear errors, and ``plan-lite predict``
on a series folder."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")  # pinned in requirements-lock.txt: CI runs these tests
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from plan_lite.data.dicom import is_dicom_folder, new_ct_slice, read_dicom_series  # noqa: E402
from plan_lite.data.io import Case, load_images, read_image  # noqa: E402
from plan_lite.errors import PlanLiteError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_predict import make_checkpoint  # noqa: E402

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


OBLIQUE = _rotation(0.35, -0.2, 0.6)  # columns: row direction, column direction, slice direction (LPS)
# Flipped / permuted (coronal, rows running inferior): row dir = patient left -> right (-x), column dir = -z.
CORONAL_FLIPPED = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def write_series(folder: Path, stored: np.ndarray, *, orientation=OBLIQUE, pixel_spacing=(0.8, 0.7), step=2.5,
                 origin=(-12.5, 30.25, 101.0), slope=1.0, intercept=-1024.0, series_uid=None, seed=0,
                 modality="CT", per_slice=None) -> dict:
    """Write ``stored`` (slices, rows, cols) int16 as one file per slice in shuffled file order, positions
    ``origin + k * step * normal``; Instance Numbers run against the positions. ``per_slice(k, ds)`` may edit
    a slice. Returns the tags used, for the expected geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    row_dir, col_dir = orientation[:, 0], orientation[:, 1]
    normal = np.cross(row_dir, col_dir)
    n = stored.shape[0]
    order = list(range(n))
    random.Random(seed).shuffle(order)
    positions = [np.asarray(origin, float) + k * step * normal for k in range(n)]
    for file_no, k in enumerate(order):
        ds = new_ct_slice(pydicom)  # file meta and SOP UIDs only; the geometry below is this test's own
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.SeriesDescription = "test series"
        ds.InstanceNumber = n - k  # against the positions: the reader must sort by position
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = "5"  # deliberately not the step: the reader must use the positions
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(stored[k].astype("<i2")).tobytes()
        if per_slice is not None:
            per_slice(k, ds)
        _save(ds, folder / f"IM{file_no:04d}.dcm")
    return {"row_dir": row_dir, "col_dir": col_dir, "normal": normal, "pixel_spacing": pixel_spacing,
            "step": step, "origin": np.asarray(origin, float), "positions": positions}


def _save(ds: Dataset, path: Path) -> None:
    """File I/O only (preamble, file meta): the library's; the geometry above is this test's own."""
    from plan_lite.data.dicom import _save_dataset

    _save_dataset(pydicom, ds, path)


def expected_ras_affine(tags: dict) -> np.ndarray:
    """By hand from the tags: voxel (i = column, j = row, k = slice) lies at (PS3.3 C.7.6.2.1.1)
    ``P = IPP_0 + i * Δc * row_dir + j * Δr * col_dir + k * step * normal`` in LPS; RAS negates x and y."""
    d_row, d_col = tags["pixel_spacing"]
    lps = np.eye(4)
    lps[:3, 0] = d_col * tags["row_dir"]
    lps[:3, 1] = d_row * tags["col_dir"]
    lps[:3, 2] = tags["step"] * tags["normal"]
    lps[:3, 3] = tags["origin"]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _slice_file(folder: Path, k: int, n: int = 6) -> Path:
    """The file of slice ``k`` (position order) of a ``write_series`` folder of ``n`` slices."""
    return next(p for p in sorted(folder.iterdir()) if int(pydicom.dcmread(str(p)).InstanceNumber) == n - k)


def _stored(shape=(6, 16, 20), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2500, size=shape).astype(np.int16)


def _nifti_like(path: Path, hu_zyx: np.ndarray, affine: np.ndarray) -> Path:
    """The same volume written with nibabel directly (file axes x, y, z)."""
    nib.save(nib.Nifti1Image(np.transpose(hu_zyx, (2, 1, 0)).astype(np.float32), affine), str(path))
    return path


@pytest.mark.parametrize("orientation,slope,intercept", [(OBLIQUE, 1.0, -1024.0), (CORONAL_FLIPPED, 0.5, -1024.0),
                                                         (np.eye(3), 1.0, -1000.0)])
def test_series_matches_nifti_conventions(tmp_path, orientation, slope, intercept):
    stored = _stored()
    tags = write_series(tmp_path / "series", stored, orientation=orientation, slope=slope, intercept=intercept)
    assert is_dicom_folder(tmp_path / "series")
    arr, spacing, affine = read_dicom_series(tmp_path / "series")
    hu = stored.astype(np.float64) * slope + intercept
    assert arr.dtype == np.float32 and arr.shape == (6, 16, 20)
    assert np.array_equal(arr, hu.astype(np.float32))
    want = expected_ras_affine(tags)
    assert np.allclose(affine, want, atol=1e-5)
    assert spacing == pytest.approx((2.5, 0.8, 0.7), abs=1e-5)  # (z, y, x), from the positions, not SliceThickness
    # each slice's own IPP (LPS -> RAS) is where the affine puts voxel (0, 0, k)
    for k, ipp in enumerate(tags["positions"]):
        assert np.allclose(affine @ [0, 0, k, 1], [-ipp[0], -ipp[1], ipp[2], 1], atol=1e-5)
    # the same data as NIfTI: read_image gives the same array, spacing and affine
    nii = _nifti_like(tmp_path / "same.nii.gz", hu, want)
    arr2, spacing2, affine2 = read_image(nii)
    assert np.array_equal(arr, arr2)
    assert spacing == pytest.approx(spacing2, abs=1e-5)
    assert np.allclose(affine, affine2, atol=1e-5)
    # read_image dispatches on a folder
    arr3, _, affine3 = read_image(tmp_path / "series")
    assert np.array_equal(arr3, arr) and np.allclose(affine3, affine)


def test_axial_series_is_lps_in_ras_terms(tmp_path):
    """Identity IOP (rows run to the patient's left, columns posterior): RAS axis codes L, P, S with the first two
    affine rows negated, translation = (-x0, -y0, z0)."""
    tags = write_series(tmp_path / "ax", _stored(), orientation=np.eye(3), origin=(10.0, -20.0, 30.0))
    _, _, affine = read_dicom_series(tmp_path / "ax")
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    assert np.allclose(affine, [[-0.7, 0, 0, -10.0], [0, -0.8, 0, 20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]], atol=1e-6)
    assert np.allclose(affine, expected_ras_affine(tags), atol=1e-6)


def test_in_plane_geometry_agrees_with_nibabel_nicom(tmp_path):
    """nibabel's own DICOM wrapper (LPS affine of one slice) agrees on the in-plane columns and the origin."""
    dicomwrappers = pytest.importorskip("nibabel.nicom.dicomwrappers")
    write_series(tmp_path / "s", _stored(), orientation=OBLIQUE)
    _, _, affine = read_dicom_series(tmp_path / "s")
    w = dicomwrappers.wrapper_from_data(pydicom.dcmread(str(_slice_file(tmp_path / "s", 0))))
    # nibabel's wrapper indexes (row, column); plan-lite's NIfTI axes are (column, row): swap the first two columns
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(w.affine)
    assert np.allclose(affine[:3, 0], ras[:3, 1], atol=1e-5) and np.allclose(affine[:3, 1], ras[:3, 0], atol=1e-5)
    assert np.allclose(affine[:3, 3], ras[:3, 3], atol=1e-5)


def test_load_images_accepts_a_series_folder(tmp_path):
    write_series(tmp_path / "patient_7", _stored())
    case = load_images([tmp_path / "patient_7"], phases=("nc",))
    assert case.case_id == "patient_7" and case.image.shape == (1, 6, 16, 20)
    assert not is_dicom_folder(tmp_path)  # the parent holds no DICOM files


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    assert not is_dicom_folder(tmp_path / "empty")
    with pytest.raises(PlanLiteError, match=r"empty: no DICOM files"):
        read_dicom_series(tmp_path / "empty")


def test_two_series(tmp_path):
    a, b = generate_uid(), generate_uid()
    write_series(tmp_path / "mixed", _stored(), series_uid=a)
    write_series(tmp_path / "other", _stored(), series_uid=b, seed=3)
    for i, p in enumerate(sorted((tmp_path / "other").iterdir())):
        p.rename(tmp_path / "mixed" / f"B{i}.dcm")
    with pytest.raises(PlanLiteError) as exc:
        read_dicom_series(tmp_path / "mixed")
    msg = str(exc.value)
    assert "mixed" in msg and "2 DICOM series" in msg and a in msg and b in msg and "\n" not in msg


def test_missing_slice(tmp_path):
    write_series(tmp_path / "gap", _stored())
    _slice_file(tmp_path / "gap", 3).unlink()  # an inner slice
    with pytest.raises(PlanLiteError, match=r"gap: missing slices: gap of 5\.000 mm .*median step 2\.500 mm"):
        read_dicom_series(tmp_path / "gap")


def test_inconsistent_pixel_spacing(tmp_path):
    def edit(k, ds):
        if k == 2:
            ds.PixelSpacing = ["0.9", "0.7"]

    write_series(tmp_path / "px", _stored(), per_slice=edit)
    with pytest.raises(PlanLiteError, match=r"px: inconsistent PixelSpacing between slices"):
        read_dicom_series(tmp_path / "px")


def test_other_faults(tmp_path, monkeypatch):
    write_series(tmp_path / "mr", _stored(), modality="MR")
    with pytest.raises(PlanLiteError, match=r"mr: modality MR"):
        read_dicom_series(tmp_path / "mr")

    def shift(k, ds):  # steps 2.5, 2.5, 2.9, ... : non-uniform but no gap
        if k >= 3:
            ds.ImagePositionPatient = [f"{float(v) + 0.4 * float(n):.6f}" for v, n in
                                       zip(ds.ImagePositionPatient, OBLIQUE[:, 2])]

    write_series(tmp_path / "steps", _stored(), per_slice=shift)
    with pytest.raises(PlanLiteError, match=r"steps: non-uniform slice steps"):
        read_dicom_series(tmp_path / "steps")

    def swap_iop(k, ds):
        if k == 4:
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*OBLIQUE[:, 1], *OBLIQUE[:, 0])]

    write_series(tmp_path / "iop", _stored(), per_slice=swap_iop)
    with pytest.raises(PlanLiteError, match=r"iop: inconsistent ImageOrientationPatient"):
        read_dicom_series(tmp_path / "iop")

    def frames(k, ds):
        ds.NumberOfFrames = 2

    write_series(tmp_path / "mf", _stored(), per_slice=frames)
    with pytest.raises(PlanLiteError, match=r"mf: .*multi-frame"):
        read_dicom_series(tmp_path / "mf")

    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(PlanLiteError, match=r'mr: .*pip install "plan-lite\[dicom\]"'):
        read_dicom_series(tmp_path / "mr")


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def series_and_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom_cli")
    stored = _stored(shape=(8, 30, 34), seed=5)
    tags = write_series(d / "ct_series", stored, pixel_spacing=(2.0, 1.8), step=3.0)
    img, spacing, affine = read_dicom_series(d / "ct_series")
    case = Case(img[None], (img > 0).astype(np.uint8), spacing, affine, "ct_series")
    ckpt = make_checkpoint(d / "nc.pt", preset="tiny_nc", cases=[case])
    return d, tags, ckpt


def test_cli_predict_on_a_series_folder(series_and_checkpoint, tmp_path, capsys):
    from plan_lite.cli import main

    d, tags, ckpt = series_and_checkpoint
    rc = main(["predict", str(ckpt), str(d / "ct_series"), "--out", str(tmp_path / "out"), "--no-progress",
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "out" / "ct_series.nii.gz"
    assert out.exists() and (tmp_path / "out" / "ct_series_patient.json").exists()
    img = nib.load(str(out))
    assert img.shape == (34, 30, 8)  # file axes (x, y, z) = (columns, rows, slices)
    assert np.allclose(img.affine, expected_ras_affine(tags), atol=1e-4)
    lab, _, aff = read_image(out)
    assert lab.shape == (8, 30, 34) and np.allclose(aff, read_dicom_series(d / "ct_series")[2], atol=1e-4)


def test_cli_predict_error_is_one_line(series_and_checkpoint, tmp_path, capsys):
    from plan_lite.cli import main

    _, _, ckpt = series_and_checkpoint
    write_series(tmp_path / "broken", _stored())
    _slice_file(tmp_path / "broken", 3).unlink()
    rc = main(["predict", str(ckpt), str(tmp_path / "broken"), "--out", str(tmp_path / "out"), "--no-progress",
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("plan-lite: error: ") and "broken" in err and "missing slices" in err
    (tmp_path / "nothing").mkdir()
    rc = main(["predict", str(ckpt), str(tmp_path / "nothing"), "--out", str(tmp_path / "out2"), "--no-progress",
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing" in err and "DICOM" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- write_dicom_series
def _ras_affine(rotation_lps: np.ndarray, spacing_xyz, origin_lps) -> np.ndarray:
    """RAS affine of a grid whose voxel axes x, y, z run along the columns of ``rotation_lps`` (LPS) with
    ``spacing_xyz`` mm, voxel (0, 0, 0) at ``origin_lps``."""
    lps = np.eye(4)
    lps[:3, :3] = rotation_lps * np.asarray(spacing_xyz, float)
    lps[:3, 3] = origin_lps
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_write_series_round_trips_the_real_ct(tmp_path):
    from plan_lite.data.dicom import write_dicom_series
    from plan_lite.sample_data import real_ct

    hu, spacing, affine = read_image(real_ct("example_ct_sm.nii.gz"))
    assert hu.dtype == np.int16 and hu.shape[0] == 30  # integer HU, well inside int16 after the -1024 intercept
    out = write_dicom_series(hu, affine, tmp_path / "series")
    assert out == tmp_path / "series" and is_dicom_folder(out)
    assert sorted(p.name for p in out.iterdir()) == [f"slice_{k:04d}.dcm" for k in range(30)]
    assert [p.name for p in tmp_path.iterdir()] == ["series"]  # no temporary sibling left behind
    arr, spacing2, affine2 = read_dicom_series(out)
    assert arr.dtype == np.float32 and np.array_equal(arr, hu.astype(np.float32))
    assert spacing2 == pytest.approx(spacing, abs=1e-4)
    assert np.allclose(affine2, affine, atol=1e-4)


@pytest.mark.parametrize("handed", ["right", "left"])
def test_write_series_round_trips_an_oblique_grid(tmp_path, handed):
    """Oblique, anisotropic, slope 0.5: HU back to within half a stored step. A left-handed grid (slice axis
    against row x column) is written correctly but read back in reverse slice order, the same image in space."""
    from plan_lite.data.dicom import write_dicom_series

    rot = OBLIQUE.copy()
    if handed == "left":
        rot[:, 2] *= -1
    affine = _ras_affine(rot, (0.7, 0.8, 2.5), (-12.5, 30.25, 101.0))
    hu = np.random.default_rng(2).uniform(-1000, 1500, size=(5, 12, 14)).astype(np.float32)
    write_dicom_series(hu, affine, tmp_path / "obl", rescale_slope=0.5, series_description="oblique test")
    arr, spacing, affine2 = read_dicom_series(tmp_path / "obl")
    assert spacing == pytest.approx((2.5, 0.8, 0.7), abs=1e-5)
    if handed == "left":
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1.0, hu.shape[0] - 1  # voxel k of the read volume = voxel n-1-k of ours
        hu, affine = hu[::-1], affine @ flip
    assert np.allclose(affine2, affine, atol=1e-4)
    assert np.max(np.abs(arr - hu)) <= 0.25 + 1e-3  # rounding to the nearest multiple of the slope


def test_write_series_clips_to_int16(tmp_path):
    from plan_lite.data.dicom import write_dicom_series

    hu = np.zeros((2, 3, 4), np.float32)
    hu[0, 0, 0], hu[1, 2, 3] = 40000.0, -40000.0
    write_dicom_series(hu, np.diag([1.0, 1.0, 2.0, 1.0]), tmp_path / "clip")
    arr, _, _ = read_dicom_series(tmp_path / "clip")
    assert arr[0, 0, 0] == 32767 - 1024 and arr[1, 2, 3] == -32768 - 1024 and arr[0, 1, 1] == 0


def test_write_series_refuses_non_empty_folder_and_shear(tmp_path):
    from plan_lite.data.dicom import write_dicom_series

    hu = _stored(shape=(3, 8, 9)).astype(np.float32) - 1024
    affine = _ras_affine(OBLIQUE, (0.7, 0.8, 2.5), (0.0, 0.0, 0.0))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(PlanLiteError, match=r"busy: exists and is not empty; pass overwrite=True") as exc:
        write_dicom_series(hu, affine, tmp_path / "busy")
    assert "\n" not in str(exc.value)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    write_dicom_series(hu, affine, tmp_path / "busy", overwrite=True)  # replaced only once complete
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["slice_0000.dcm", "slice_0001.dcm",
                                                                      "slice_0002.dcm"]
    (tmp_path / "empty").mkdir()  # an existing empty folder is fine
    write_dicom_series(hu, affine, tmp_path / "empty")
    assert np.array_equal(read_dicom_series(tmp_path / "empty")[0], hu)

    sheared = affine.copy()
    sheared[:3, 2] += 0.3 * sheared[:3, 0]  # slice axis leans along the rows (gantry-tilt-like)
    with pytest.raises(PlanLiteError, match=r"tilt: affine is sheared .*x/z") as exc:
        write_dicom_series(hu, sheared, tmp_path / "tilt")
    assert "\n" not in str(exc.value) and not (tmp_path / "tilt").exists()
    skew = affine.copy()
    skew[:3, 1] += 0.1 * skew[:3, 0]  # in-plane skew: IOP cannot hold it
    with pytest.raises(PlanLiteError, match=r"skew: affine is sheared .*x/y"):
        write_dicom_series(hu, skew, tmp_path / "skew")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]  # nothing half-written


def test_written_series_is_sane_dicom(tmp_path):
    """Read the files with pydicom alone: CT Image Storage, one series, Instance Numbers 1..n, and IPP of slice k
    = the LPS position of voxel (0, 0, k) computed here from the affine."""
    from plan_lite.data.dicom import write_dicom_series

    n = 4
    affine = _ras_affine(OBLIQUE, (0.7, 0.8, 2.5), (-12.5, 30.25, 101.0))
    hu = _stored(shape=(n, 10, 11)).astype(np.float32) - 1024
    write_dicom_series(hu, affine, tmp_path / "s", patient_id="P-7")
    files = sorted((tmp_path / "s").iterdir())
    datasets = [pydicom.dcmread(str(p)) for p in files]
    assert len(datasets) == n
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in datasets} == {ExplicitVRLittleEndian}
    assert {str(ds.file_meta.MediaStorageSOPClassUID) for ds in datasets} == {CT_IMAGE_STORAGE}
    assert all(str(ds.SOPClassUID) == CT_IMAGE_STORAGE and ds.Modality == "CT" for ds in datasets)
    assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID for ds in datasets)
    assert len({ds.SOPInstanceUID for ds in datasets}) == n
    for keyword in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds.get(keyword)) for ds in datasets}) == 1, keyword
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, n + 1))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    for k, ds in enumerate(datasets):
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], (lps @ [0, 0, k, 1])[:3], atol=1e-6)
        assert np.allclose([float(v) for v in ds.ImageOrientationPatient], [*OBLIQUE[:, 0], *OBLIQUE[:, 1]],
                           atol=1e-8)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.8, 0.7])  # (row spacing, column spacing)
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation) == (10, 11, 16, 1)
        assert (float(ds.RescaleIntercept), float(ds.RescaleSlope), ds.RescaleType) == (-1024.0, 1.0, "HU")
        assert ds.PatientID == "P-7"
        px = ds.pixel_array
        assert px.dtype == np.int16 and np.array_equal(px, (hu[k] + 1024).astype(np.int16))


def test_written_series_geometry_agrees_with_nibabel_nicom(tmp_path):
    """nibabel's DICOM wrapper reads the written slice 0 at the place the affine puts voxel (0, 0, 0)."""
    dicomwrappers = pytest.importorskip("nibabel.nicom.dicomwrappers")
    from plan_lite.data.dicom import write_dicom_series

    affine = _ras_affine(OBLIQUE, (0.7, 0.8, 2.5), (-12.5, 30.25, 101.0))
    write_dicom_series(np.zeros((3, 6, 7), np.float32), affine, tmp_path / "s")
    w = dicomwrappers.wrapper_from_data(pydicom.dcmread(str(tmp_path / "s" / "slice_0000.dcm")))
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(w.affine)  # wrapper axes (row, column): swap back
    assert np.allclose(affine[:3, 0], ras[:3, 1], atol=1e-5) and np.allclose(affine[:3, 1], ras[:3, 0], atol=1e-5)
    assert np.allclose(affine[:3, 3], ras[:3, 3], atol=1e-5)
