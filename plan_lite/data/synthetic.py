"""Synthetic multi-phase (NC / LA / PV) liver CT with labelled organs and 8 lesion types.

Label map: book/design_decisions.md#dd-d3.

Subjects are drawn in millimetres (``synth_anatomy``: analytic shapes + smooth random deformation; ``synth_lesions``:
lesion types, sizes, counts and phase patterns) and rasterised at any spacing/shape. Tissue HU per phase are the
generator defaults of facts §1 (drawn per subject; "facts §N" and [Rn] are explained in the data card
``data_cards/synthetic_liver_ct.md``), lesion patterns §2, hard negatives §3,
sizes/counts §4, noise/artefacts §5. Output follows the MSD / nnU-Net v2 layout of DESIGN.md.

Determinism: case ``i`` of ``generate_dataset(seed=s)`` uses ``SeedSequence([s, i])``, so a case never depends on
how many cases are generated; ``generate_case(case_seed)`` draws the whole subject before touching the grid.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from plan_lite.data.synth_anatomy import TISSUES, Grid, T, draw_anatomy, random_blob
from plan_lite.data.synth_lesions import (
    _CROSS,
    LESION_VARIANTS,
    draw_lesion_types,
    lesion_target,
    lesion_values,
    place_lesions,
    rasterize_lesions,
)
from plan_lite.errors import PlanLiteError
from plan_lite.labels import (
    BENIGN_LABELS,
    LABEL_NAMES,
    LESION_LABELS,
    MALIGNANT_LABELS,
    PHASES,
    patient_labels_from_label_counts,
    patient_output_names,
)

GENERATOR_VERSION = "1.1"  # 1.1: noise SD scaled by voxel volume (noise_sd_factor)
GROUPS = ("tumor", "normal", "hard")
SPLITS = ("train", "val", "test")
PHASE_INDEX = {p: i for i, p in enumerate(PHASES)}

# Tissue HU per phase: (mean NC, LA, PV), per-subject SD (NC, LA, PV), shared = one draw for all phases.
# Facts §1 "generator defaults for a normal subject" where given; the rest (est) as marked in the data card.
TISSUE_HU: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], bool, str]] = {
    "air": ((-1000, -1000, -1000), (0, 0, 0), True, "facts §1 (meas −999)"),
    "fat": ((-100, -100, -100), (10, 10, 10), True, "facts §1 defaults; R9"),
    "muscle": ((45, 55, 60), (5, 5, 5), False, "est (fixture 26–29 with partial volume, facts §1)"),
    "bone": ((250, 250, 250), (40, 40, 40), True, "est (trabecular)"),
    "cortical_bone": ((700, 700, 700), (80, 80, 80), True, "est"),
    "csf": ((15, 15, 15), (4, 4, 4), True, "est"),
    "liver": ((55, 80, 110), (6, 8, 10), False, "facts §1 defaults; R1 R6 R7 R9"),
    "bile": ((5, 5, 5), (5, 5, 5), True, "facts §1 defaults; R14"),
    "portal_vein": ((40, 140, 170), (4, 20, 20), False, "facts §1 defaults; R6 R7"),
    "hepatic_vein": ((40, 60, 150), (4, 8, 15), False, "facts §1 defaults; R1 R7"),
    "spleen": ((45, 140, 120), (5, 15, 10), False, "facts §1 defaults; R7 R9"),
    "stomach_wall": ((40, 90, 85), (5, 10, 10), False, "est"),
    "stomach_content": ((15, 15, 15), (8, 8, 8), True, "est (fluid)"),
    "gas": ((-1000, -1000, -1000), (0, 0, 0), True, "facts §1 (meas −999)"),
    "pancreas": ((40, 110, 90), (5, 12, 10), False, "est (pancreatic-phase peak)"),
    "aorta": ((40, 320, 160), (4, 40, 20), False, "facts §1 defaults; R6 R7"),
    "ivc": ((40, 80, 100), (4, 10, 10), False, "facts §1 (meas 41 / meas-CE 98); LA est"),
    "kidney_cortex": ((35, 240, 180), (4, 25, 15), False, "facts §1 defaults; R10 R11"),
    "kidney_medulla": ((30, 110, 170), (4, 15, 15), False, "est from cortex − medulla 110–140 (R11)"),
    "ascites": ((5, 5, 5), (5, 5, 5), True, "facts §1 defaults; R12 R13"),
    "bowel_wall": ((40, 80, 90), (5, 8, 8), False, "est"),
    "lesion": ((0, 0, 0), (0, 0, 0), True, "rendered per lesion (synth_lesions)"),
}
assert tuple(TISSUE_HU) == TISSUES
# Labels whose mean HU over (eroded) voxels equals a single tissue's prior: checked by tests and the card.
LABEL_TISSUE: dict[int, str] = {1: "liver", 2: "bile", 4: "spleen", 6: "pancreas"}
HARD_FINDINGS = ("steatosis", "cirrhosis", "ascites", "noise", "streaks", "fatty_sparing", "perfusion")


def expected_label_hu() -> dict[str, dict[str, float]]:
    """Declared mean HU per label (normal subjects) and per lesion variant, per phase: the data card's table."""
    out = {LABEL_NAMES[k]: dict(zip(PHASES, TISSUE_HU[t][0])) for k, t in LABEL_TISSUE.items()}
    out.update({v: dict(zip(PHASES, var.hu)) for v, var in LESION_VARIANTS.items()})
    return out


@dataclass
class SyntheticCase:
    """One rendered subject: ``images[phase]`` int16 (D, H, W) HU, ``label`` uint8, ``affine`` for the (x, y, z)
    file, ``lesions`` (lesions.json entries), ``patient_labels`` (11, paper groups). ``tissue``: internal tissue
    codes (``synth_anatomy.TISSUES``), for tests and teaching."""

    images: dict[str, np.ndarray]
    label: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    lesions: list[dict]
    group: str
    patient_labels: list[float]
    findings: list[str] = field(default_factory=list)
    tissue: np.ndarray | None = None


def _affine(spacing, shape) -> np.ndarray:
    from plan_lite.data.io import affine_from_spacing

    sz, sy, sx = spacing
    D, H, W = shape
    return affine_from_spacing(spacing, origin=(-(W - 1) / 2 * sx, -(H - 1) / 2 * sy, -(D - 1) / 2 * sz))


def _draw_hu(rng, findings) -> dict[str, np.ndarray]:
    hu = {}
    for name, (mean, sd, shared, _) in TISSUE_HU.items():
        z = rng.normal(size=3)
        if shared:
            z[:] = z[0]
        hu[name] = np.asarray(mean, float) + np.asarray(sd, float) * z
    if "steatosis" in findings:  # facts §3: lower liver HU by 10-40 in all phases, spleen unchanged
        hu["liver"] = hu["liver"] - rng.uniform(10, 40)
    return hu


def generate_case(case_seed: int, spacing=(5.0, 2.5, 2.5), shape=(32, 160, 160), phases=("nc", "la", "pv"),
                  group: str | None = None, lesion_types=None, misregistration_mm: float = 1.0,
                  lesion_contrast: float = 1.0, noise_scale: float = 1.0) -> SyntheticCase:
    """Draw subject ``case_seed`` (mm) and render it on a (D, H, W) grid at ``spacing`` (z, y, x) mm.

    ``group``: ``tumor`` / ``normal`` / ``hard`` (None: drawn 60/20/20). ``lesion_types``: labels 7-14 to force one
    lesion each (tumour group). ``misregistration_mm``: max per-axis in-plane shift of non-reference phases (the
    label map is aligned to PV, or to the only phase) — facts §5 (motion), kept sub-voxel by default.

    Teaching knobs (defaults 1.0 = the data card's realistic values): ``lesion_contrast`` multiplies every
    lesion's mean HU difference to the subject's liver in each phase; ``noise_scale`` multiplies the image noise
    SD and the liver texture amplitude. The noise SDs (8-14 HU, 18-30 HU for noisy hard cases) are specified at
    0.7 x 0.7 x 5 mm and scaled to the grid by ``noise_sd_factor`` (the SD of averaged voxels). ``lesion_contrast=2, noise_scale=0.5`` gives the "easy" cohort that a
    ``tiny`` model learns in a few CPU minutes (lessons 5-7, the end-to-end test); the random draws are the same,
    so an easy case has the same anatomy and lesions as the realistic case of the same seed.
    """
    if lesion_contrast <= 0 or noise_scale < 0:
        raise PlanLiteError(f"synth: lesion_contrast must be > 0 and noise_scale >= 0, got {lesion_contrast}, "
                            f"{noise_scale}")
    phases = tuple(phases)
    if not phases or any(p not in PHASE_INDEX for p in phases):
        raise PlanLiteError(f"synth: phases must be a subset of {PHASES}, got {phases}")
    rng = np.random.default_rng(int(case_seed))
    if group is None:
        group = GROUPS[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    if group not in GROUPS:
        raise PlanLiteError(f"synth: unknown group {group!r}")
    if lesion_types is not None:
        group = "tumor"
    plan = draw_lesion_types(rng, lesion_types) if group == "tumor" else []
    findings: list[str] = []
    if group == "hard":
        k = int(rng.integers(1, 4))
        findings = sorted(rng.choice(HARD_FINDINGS, size=k, replace=False).tolist())
        if "fatty_sparing" in findings and "steatosis" not in findings:
            findings.append("steatosis")
        if "cirrhosis" in findings and rng.random() < 0.5 and "ascites" not in findings:
            findings.append("ascites")
    types = {t for t, _ in plan}
    if "hcc" in types and rng.random() < 0.6:
        findings.append("cirrhosis")  # facts §2a: HCC usually on a cirrhotic background
    child = "hepatoblastoma" in types and lesion_types is None  # paediatric habitus (facts §2a)
    big = max([r for _, r in plan], default=0.0)
    anat = draw_anatomy(rng, cirrhosis="cirrhosis" in findings, ascites="ascites" in findings, child=child,
                        hepatomegaly=float(np.clip((big + 20) / (35 if child else 50), 1.0, 1.8 if child else 1.25)))
    hu = _draw_hu(rng, findings)
    enh = hu["liver"] - np.asarray(TISSUE_HU["liver"][0])
    if "steatosis" in findings:
        enh = np.zeros(3)
    specs = place_lesions(rng, anat, plan, enh, meta_hyper=rng.random() < 0.3)
    if lesion_contrast != 1.0:  # lesion mean HU = liver + contrast x (drawn mean - liver), per phase
        for s in specs:
            drawn = np.asarray(LESION_VARIANTS[s.variant].hu, float) + s.jitter
            s.jitter = s.jitter + (lesion_contrast - 1.0) * (drawn - hu["liver"])
    liver_tex_amp = (8.0 if "cirrhosis" in findings else 3.0) * noise_scale
    tex_seed = int(rng.integers(0, 2**31 - 1))
    noise_sd = {"nc": rng.uniform(8, 12), "la": rng.uniform(10, 14), "pv": rng.uniform(8, 12)}
    if "noise" in findings:
        noise_sd = {p: rng.uniform(18, 30) for p in PHASES}
    shifts = {p: rng.uniform(-misregistration_mm, misregistration_mm, 2) for p in PHASES}
    lc = anat.liver[0].center
    sparing = random_blob(rng, lc + np.array([-30, 40, -30]) * anat.liver_scale, np.array([15, 12, 15]), bump=0.15)
    perf = random_blob(rng, lc + np.array([0, 30, 40]) * anat.liver_scale, np.array([20, 12, 15]), bump=0.15)
    streak = (rng.uniform(0, np.pi, 6), rng.uniform(30, 70, 6) * np.sign(rng.normal(size=6)), rng.uniform(2, 6, 6))

    # ---- rasterise on the grid (nothing below draws subject parameters) ----
    grid = Grid(spacing, shape, anat.warp)
    from plan_lite.data.synth_anatomy import rasterize_anatomy

    tissue, label = rasterize_anatomy(anat, grid)
    rast = rasterize_lesions(specs, grid, tissue, label)
    ref = "pv" if "pv" in phases else phases[0]
    noise_rng = np.random.default_rng(np.random.SeedSequence([int(case_seed), 1]))
    liver_m = tissue == T["liver"]
    lo, hi = anat.liver_bounds()
    sl = grid.window(lo, hi)
    liver_tex = None
    if sl is not None and liver_m[sl].any():
        from plan_lite.data.synth_lesions import _smooth_field

        zz, yy, xx = grid.coords(sl)
        liver_tex = (sl, liver_m[sl], _smooth_field(tex_seed, zz[liver_m[sl]], yy[liver_m[sl]], xx[liver_m[sl]], 25.0))
    extra_masks = {}
    for name, blob in (("fatty_sparing", sparing), ("perfusion", perf)):
        if name in findings:
            s2 = grid.window(blob.center - blob.extent(), blob.center + blob.extent())
            if s2 is not None:
                extra_masks[name] = (s2, (blob.level(*grid.coords(s2)) < 1.0) & liver_m[s2])
    images = {}
    for p in phases:
        pi = PHASE_INDEX[p]
        lut = np.array([hu[t][pi] for t in TISSUES], np.float32)
        img = np.take(lut, tissue)
        if liver_tex is not None:
            s_, m_, f_ = liver_tex
            img[s_][m_] += liver_tex_amp * f_
        if p == "la":  # arciform ("cotton wool") spleen in LA (facts §1)
            sp = np.nonzero(label == 4)
            c = [grid.axes[i][sp[i]] for i in range(3)]
            img[sp] += 25.0 * _smooth_field(tex_seed + 7, c[0], c[1], c[2], 15.0)
        if "fatty_sparing" in extra_masks:
            s2, m2 = extra_masks["fatty_sparing"]
            img[s2][m2] = TISSUE_HU["liver"][0][pi]  # spared parenchyma keeps normal attenuation
        if "perfusion" in extra_masks and p == "la":  # transient arterial hyperenhancement, iso in PV
            s2, m2 = extra_masks["perfusion"]
            img[s2][m2] += 30.0
        for r in rast:
            img[r.sl][r.mask] = lesion_values(r, pi)
        if "streaks" in findings:
            img += _streaks(grid, anat, streak)
        if p != ref and misregistration_mm > 0:
            dy, dx = shifts[p] / np.asarray(grid.spacing[1:])
            img = _shift_inplane(img, dy, dx)
        # White noise, then one in-plane Gaussian blur (0.6 px): reconstruction PSF + correlated grain; the
        # white SD is set so the blurred noise has the target SD (facts §5 recipe 1).
        offsets = [_psf_offset(img, r, pi) for r in rast]
        noise = noise_rng.standard_normal(grid.shape, dtype=np.float32)
        img += noise * np.float32(noise_scale * noise_sd[p] * noise_sd_factor(grid.spacing) / _NOISE_GAIN)
        img = ndimage.gaussian_filter(img, (0, _BLUR_SIGMA_PX, _BLUR_SIGMA_PX), truncate=_TRUNCATE)
        for r, off in zip(rast, offsets):
            img[r.sl][r.mask] += off
        images[p] = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    counts = np.bincount(label.ravel(), minlength=15)
    lesions = []
    vox = float(np.prod(grid.spacing))
    for i, r in enumerate(rast):
        n = int(r.mask.sum())
        lab = LESION_VARIANTS[r.spec.variant].label
        lesions.append({"id": i + 1, "label": lab, "type": LABEL_NAMES[lab], "variant": r.spec.variant,
                        "center_mm": [round(float(c.mean()), 2) for c in r.coords],
                        "radius_mm": round(float((3 * n * vox / (4 * np.pi)) ** (1 / 3)), 3),
                        "volume_mm3": round(n * vox, 3)})
    pl = patient_labels_from_label_counts({k: int(counts[k]) for k in LESION_LABELS}, "paper")
    return SyntheticCase(images, label, grid.spacing, _affine(grid.spacing, grid.shape), lesions, group, pl,
                         sorted(set(findings)), tissue)


def _psf_offset(img: np.ndarray, r, phase: int) -> float:
    """HU to add to a lesion after the PSF blur so that its interior mean (mask eroded by one in-plane voxel,
    as measured by ``dataset_statistics``) equals its drawn mean despite blur from rim and surroundings."""
    pad = 3
    sl = tuple(slice(s.start, s.stop) if i == 0 else slice(max(0, s.start - pad), s.stop + pad)
               for i, s in enumerate(r.sl))
    loc = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(r.sl, sl))
    blurred = ndimage.gaussian_filter(img[sl], (0, _BLUR_SIGMA_PX, _BLUR_SIGMA_PX), truncate=_TRUNCATE)[loc]
    inner = ndimage.binary_erosion(r.mask, _CROSS)
    if not inner.any():
        return 0.0
    return float(lesion_target(r, phase) - blurred[inner].mean())


def _streaks(grid, anat, params) -> np.ndarray:
    """Beam-hardening-like streaks through the spine and aorta (facts §5), the same on every slice."""
    ang, amp, width = params
    y, x = grid.axes[1][:, None], grid.axes[2][None, :]
    out = np.zeros((len(grid.axes[1]), len(grid.axes[2])), np.float32)
    for k, (cy, cx) in enumerate(((anat.spine_y, 0.0), (anat.aorta.points[1][1], anat.aorta.points[1][2]))):
        for j in range(3):
            a = ang[3 * k + j]
            d = np.abs((y - cy) * np.cos(a) - (x - cx) * np.sin(a))
            dist = np.hypot(y - cy, x - cx)
            out += amp[3 * k + j] * np.exp(-(d / width[3 * k + j]) ** 2) * np.exp(-dist / 150.0) * (dist > 25)
    return out[None]


_BLUR_SIGMA_PX, _TRUNCATE = 0.6, 2.5


def _gain(sigma: float, truncate: float = _TRUNCATE) -> float:
    """SD of unit white noise after scipy's separable 2-D Gaussian blur (same kernel as gaussian_filter)."""
    r = int(truncate * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()
    return float((w ** 2).sum())


_NOISE_GAIN = _gain(_BLUR_SIGMA_PX)

#: Voxel (z, y, x mm) at which the noise SDs are specified (the clinical 0.7 x 0.7 x 5 mm reconstruction).
NOISE_REFERENCE_SPACING = (5.0, 0.7, 0.7)


def noise_sd_factor(spacing) -> float:
    """Noise SD at ``spacing`` relative to ``NOISE_REFERENCE_SPACING``: sqrt(reference voxel volume / voxel volume).

    Averaging n independent voxels divides the SD by sqrt(n), so a CT volume resampled (by averaging) to larger
    voxels is less noisy: at 5 x 4 x 4 mm the SD is 0.175 x that of 0.7 x 0.7 x 5 mm. Interpolating resamplers
    that do not average keep more of the noise; ``noise_scale`` restores it.
    """
    ref = float(np.prod(NOISE_REFERENCE_SPACING))
    return float(np.sqrt(ref / float(np.prod(spacing))))


def _shift_inplane(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Bilinear in-plane shift by (dy, dx) voxels with edge replication (fast ``ndimage.shift``)."""
    for axis, d in ((1, dy), (2, dx)):
        n = img.shape[axis]
        i0 = int(np.floor(d))
        a = np.float32(d - i0)
        idx = np.clip(np.arange(n) - i0, 0, n - 1)
        idx1 = np.clip(idx - 1, 0, n - 1)
        img = np.take(img, idx, axis=axis) * (1 - a) + np.take(img, idx1, axis=axis) * a
    return img


def case_seed_for(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _assign(index: int, fractions, names, offset: float, step: float) -> str:
    """Low-discrepancy assignment: balanced for any number of cases, independent of it."""
    u = (offset + index * step) % 1.0
    edges = np.cumsum(np.asarray(fractions, float) / float(sum(fractions)))
    return names[min(int(np.searchsorted(edges, u, side="right")), len(names) - 1)]


def _write_case(job):
    from plan_lite.data.io import write_image, write_label

    tmp, i, cseed, group, split, spacing, shape, phases, contrast, noise = job
    cid = f"case_{i:04d}"
    case = generate_case(cseed, spacing, shape, phases, group=group, lesion_contrast=contrast, noise_scale=noise)
    for c, p in enumerate(phases):
        write_image(tmp / "imagesTr" / f"{cid}_{c:04d}.nii.gz", case.images[p], case.affine)
    write_label(tmp / "labelsTr" / f"{cid}.nii.gz", case.label, case.affine)
    return cid, split, case.group, case.lesions, case.patient_labels, case.findings


def generate_dataset(out_dir, n_cases: int, seed: int = 0, spacing=(5.0, 2.5, 2.5), shape=(32, 160, 160),
                     phases=("nc", "la", "pv"), overwrite: bool = False, progress: bool = True,
                     split_fractions=(0.6, 0.2, 0.2), group_fractions=(0.6, 0.2, 0.2), workers: int = 1,
                     lesion_contrast: float = 1.0, noise_scale: float = 1.0) -> Path:
    """Write ``n_cases`` subjects in the MSD / nnU-Net v2 layout (DESIGN.md), atomically (utils.atomic_dir).

    ``lesion_contrast`` / ``noise_scale``: the teaching knobs of :func:`generate_case` (recorded in dataset.json).

    ``workers > 1`` renders cases in a process pool; the output is identical to ``workers=1``.
    """
    from plan_lite.utils import atomic_dir, atomic_write_json, atomic_write_text

    if n_cases < 1:
        raise PlanLiteError(f"synth: --cases must be >= 1, got {n_cases}")
    if lesion_contrast <= 0 or noise_scale < 0:
        raise PlanLiteError(f"synth: --lesion-contrast must be > 0 and --noise-scale >= 0, got {lesion_contrast}, "
                            f"{noise_scale}")
    phases = tuple(phases)
    out_dir = Path(out_dir)
    rows, all_lesions, findings = [], {}, {}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        jobs = [(tmp, i, case_seed_for(seed, i), _assign(i, group_fractions, GROUPS, 0.0, 0.6180339887),
                 _assign(i, split_fractions, SPLITS, 0.2, 0.4142135624), tuple(spacing), tuple(shape), phases,
                 float(lesion_contrast), float(noise_scale))
                for i in range(n_cases)]
        pool = None
        if workers > 1 and n_cases > 1:
            import multiprocessing as mp

            pool = mp.get_context("fork").Pool(min(workers, n_cases))
            it = pool.imap(_write_case, jobs)
        else:
            it = map(_write_case, jobs)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=n_cases, desc="synth", unit="case")
        try:
            for cid, split, group, les, pl, fnd in it:
                all_lesions[cid] = les
                rows.append([cid, split, group, len(les), *[int(v) for v in pl]])
                findings[cid] = fnd
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["case", "split", "group", "num_lesions", *patient_output_names("paper")])
        w.writerows(rows)
        atomic_write_text(tmp / "cases.csv", buf.getvalue())
        atomic_write_json(tmp / "lesions.json", all_lesions)
        atomic_write_json(tmp / "dataset.json", {
            "name": "plan-lite synthetic liver CT",
            "description": "Synthetic multi-phase liver CT (plan-lite generator); teaching and method development only.",
            "channel_names": {str(i): p for i, p in enumerate(phases)},
            "labels": {name: k for k, name in LABEL_NAMES.items()},
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
            "tumor_labels": list(LESION_LABELS),
            "malignant_labels": list(MALIGNANT_LABELS),
            "benign_labels": list(BENIGN_LABELS),
            "spacing": list(map(float, spacing)),
            "shape": list(map(int, shape)),
            "generator": "plan_lite.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "split_fractions": list(split_fractions),
            "group_fractions": list(group_fractions),
            "lesion_contrast": float(lesion_contrast),
            "noise_scale": float(noise_scale),
            "findings": findings,
        })
    return out_dir


from plan_lite.data.synth_stats import dataset_statistics, match_lesions  # noqa: E402

__all__ = ["SyntheticCase", "noise_sd_factor", "NOISE_REFERENCE_SPACING", "generate_case", "generate_dataset", "dataset_statistics", "match_lesions",
           "expected_label_hu", "TISSUE_HU", "LABEL_TISSUE", "GENERATOR_VERSION"]
