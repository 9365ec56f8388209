"""Synthetic liver lesions of the 8 PLAN types: sizes, counts, placement (mm) and per-phase HU patterns.

Phase patterns and HU priors follow facts §2a/§2b of the data card ``data_cards/synthetic_liver_ct.md`` ("Fact
topics"); sizes and multiplicity follow §4 (equivalent radius 1.4-96 mm, 4.27 lesions per tumour patient,
type-dependent multiplicity). Each lesion's pattern (rim, texture, nodules, scar, calcifications) is zero-mean over
its rasterised interior voxels (mask eroded by one in-plane voxel, the data card's (meas) convention), so the
lesion's interior mean HU per phase is exactly its drawn mean (``LESION_VARIANTS[...].hu`` + jitter) before noise
and blur: the data card's per-type table and ``tests/test_synthetic.py`` check this on written images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from plan_lite.data.synth_anatomy import Anatomy, Blob, Grid, T, Tube, random_blob
from plan_lite.labels import LABEL_NAMES


@dataclass(frozen=True)
class Variant:
    """A lesion appearance (facts §2a). ``hu``: mean over the lesion (NC, LA, PV); ``rim``: rim minus centre;
    ``tex``: texture amplitude; ``bump``: outline irregularity; ``enhancing``: follows the subject's contrast timing."""

    label: int
    hu: tuple[float, float, float]
    rim: tuple[float, float, float]
    tex: tuple[float, float, float]
    bump: float
    enhancing: bool = True


LESION_VARIANTS: dict[str, Variant] = {
    # HCC: APHE 100-140, washout 75-100 in PV, mosaic; capsule in 29 % (facts §2a, R38-R42).
    "hcc": Variant(7, (42, 115, 88), (0, 0, 0), (4, 14, 10), 0.06),
    "hcc_hypovascular": Variant(7, (40, 65, 80), (0, 0, 0), (4, 8, 8), 0.06),
    # ICC: hypodense, thin rim in LA, progressive centripetal gain to PV, lobulated (R24-R26).
    "icc": Variant(8, (38, 62, 80), (0, 35, 20), (3, 6, 8), 0.14),
    # Metastasis: colorectal type hypovascular with rim/target; hypervascular type (NET/RCC) (R34-R36).
    "metastasis": Variant(9, (38, 58, 72), (0, 20, 35), (3, 5, 6), 0.08),
    "metastasis_hypervascular": Variant(9, (42, 118, 92), (0, 10, 10), (4, 10, 8), 0.06),
    # Hepatoblastoma: large heterogeneous, calcifications, hypo to liver (R27-R30).
    "hepatoblastoma": Variant(10, (40, 78, 80), (0, 0, 0), (12, 18, 18), 0.10),
    # Hemangioma: ~blood pool NC, peripheral nodules in LA, centripetal fill-in in PV (R16-R18).
    "hemangioma": Variant(11, (40, 90, 130), (0, 0, 0), (2, 0, 0), 0.10),
    # FNH: intense homogeneous arterial, iso in PV, central scar in ~47 % (R19-R23).
    "fnh": Variant(12, (50, 140, 110), (0, 0, 0), (2, 5, 4), 0.05),
    # Simple cyst: water, no enhancement (< 10 HU change), sharp margin (R15, R31-R33).
    "cyst": Variant(13, (5, 5, 5), (0, 0, 0), (0, 0, 0), 0.02, enhancing=False),
    # Other: abscess (fluid centre + enhancing rim) or adenoma (hyper LA, iso/hypo PV) (R61b).
    "other_abscess": Variant(14, (25, 45, 55), (0, 45, 50), (3, 3, 3), 0.10),
    "other_adenoma": Variant(14, (48, 105, 100), (0, 0, 0), (4, 8, 6), 0.05),
}

# Primary-type mix of tumour patients (est; PLAN's cohort mix is not public, facts §8) and lognormal radius
# priors (median mm, sigma) for the main lesion and for further lesions of the same type (facts §4).
TYPE_PRIOR: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    "hcc": (0.24, (16.0, 0.7), (6.0, 0.7)),
    "icc": (0.08, (28.0, 0.4), (5.0, 0.5)),
    "metastasis": (0.20, (10.0, 0.7), (5.5, 0.8)),
    "hepatoblastoma": (0.04, (42.0, 0.25), (6.0, 0.5)),
    "hemangioma": (0.14, (10.0, 0.8), (5.0, 0.7)),
    "fnh": (0.08, (14.0, 0.45), (8.0, 0.5)),
    "cyst": (0.16, (7.0, 0.8), (4.0, 0.8)),
    "other": (0.06, (13.0, 0.6), (6.0, 0.6)),
}
MIN_RADIUS_MM, MAX_RADIUS_MM = 1.4, 96.0


@dataclass
class LesionSpec:
    variant: str
    blob: Blob
    radius: float  # nominal equivalent radius (mm)
    jitter: np.ndarray  # (3,) per-phase HU offsets
    capsule: bool = False
    scar: bool = False
    duct: Tube | None = None
    calcs: np.ndarray | None = None  # (K, 4): z, y, x, radius mm
    nodules: np.ndarray | None = None  # (K, 3) unit directions
    fill: float = 1.0
    seed: int = 0


def _variant_for(rng, t: str, patient_meta_hyper: bool) -> str:
    if t == "hcc":
        return "hcc" if rng.random() < 0.87 else "hcc_hypovascular"
    if t == "metastasis":
        return "metastasis_hypervascular" if patient_meta_hyper else "metastasis"
    if t == "other":
        return "other_abscess" if rng.random() < 0.5 else "other_adenoma"
    return t


def _count(rng, t: str) -> int:
    """Lesions of the primary type (facts §4 multiplicity)."""
    if t == "hcc":
        return 1 + int(rng.poisson(2.5))
    if t == "icc":
        return 1 + (int(rng.integers(1, 4)) if rng.random() < 0.32 else 0)
    if t == "metastasis":
        return 1 + int(min(rng.poisson(6.0), 14))
    if t == "hemangioma":
        return 1 if rng.random() < 0.75 else int(rng.integers(2, 5))
    if t == "fnh":
        return 1 if rng.random() < 0.88 else int(rng.integers(2, 4))
    if t == "cyst":
        return 1 + int(min(rng.poisson(3.5), 9))
    if t == "other":
        return 1 + int(rng.poisson(0.7))
    return 1


def draw_lesion_types(rng, lesion_types=None) -> list[tuple[str, float]]:
    """(type, nominal radius mm) for one tumour patient, largest first. ``lesion_types``: force one main lesion
    per listed label (7-14) instead of drawing."""
    names = list(TYPE_PRIOR)
    out: list[tuple[str, float]] = []
    if lesion_types is not None:
        for lab in lesion_types:
            t = LABEL_NAMES[int(lab)]
            med, sig = TYPE_PRIOR[t][1]
            out.append((t, float(np.clip(med * np.exp(0.3 * rng.normal()), 8.0, 16.0))))
        return out
    p = np.array([TYPE_PRIOR[n][0] for n in names])
    t = names[int(rng.choice(len(names), p=p / p.sum()))]
    n = _count(rng, t)
    for i in range(n):
        med, sig = TYPE_PRIOR[t][1] if i == 0 else TYPE_PRIOR[t][2]
        out.append((t, float(med * np.exp(sig * rng.normal()))))
    if t != "cyst" and rng.random() < 0.4:  # incidental cysts (facts §4: benign lesions in 15 %)
        for _ in range(int(rng.integers(1, 5))):
            out.append(("cyst", float(4.0 * np.exp(0.8 * rng.normal()))))
    if t not in ("hemangioma", "hepatoblastoma") and rng.random() < 0.1:
        out.append(("hemangioma", float(6.0 * np.exp(0.6 * rng.normal()))))
    out = [(k, float(np.clip(r, MIN_RADIUS_MM, MAX_RADIUS_MM))) for k, r in out]
    return sorted(out, key=lambda kr: -kr[1])


_DIRS = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)],
                 float)
_DIRS /= np.linalg.norm(_DIRS, axis=1, keepdims=True)


def place_lesions(rng, anat: Anatomy, plan: list[tuple[str, float]], enhancement: np.ndarray,
                  meta_hyper: bool) -> list[LesionSpec]:
    """Place lesions inside the liver (mm), not in the gallbladder, apart from each other (facts §4)."""
    lo, hi = anat.liver_bounds()
    # Largest lesion that fits: about 0.8 x the smallest right-lobe semi-axis.
    r_cap = 0.8 * float(anat.liver[0].axes.min())
    placed: list[LesionSpec] = []
    for t, r in plan:
        v = _variant_for(rng, t, meta_hyper)
        var = LESION_VARIANTS[v]
        r = min(r, r_cap)
        spec = None
        for _ in range(6):
            ratios = np.exp(rng.normal(0, 0.12, 3))
            ratios /= np.prod(ratios) ** (1 / 3)
            blob = random_blob(rng, np.zeros(3), r * ratios, yaw=rng.uniform(0, np.pi), tilt=rng.uniform(-0.5, 0.5),
                               bump=var.bump, k=4, fmax=2.0)
            ext = blob.extent()
            cands = rng.uniform(lo, hi, size=(48, 3))
            reach = 0.85 if r < 15 else 0.7  # large lesions may bulge a little (clipped to the liver)
            pts = cands[:, None, :] + reach * ext * _DIRS[None] if r > 2.5 else cands[:, None, :]
            flat = pts.reshape(-1, 3)
            ok = (anat.liver_level(flat[:, 0], flat[:, 1], flat[:, 2]) < 1.0).reshape(len(cands), -1).all(1)
            ok &= anat.gallbladder.points_level(cands) > 1.0 + ext / 20.0
            for q in placed:
                ok &= np.linalg.norm(cands - q.blob.center, axis=1) > q.blob.extent() + ext + 6.0
            idx = np.flatnonzero(ok)
            if len(idx):
                blob.center = cands[idx[0]]
                spec = LesionSpec(v, blob, r, np.zeros(3))
                break
            r *= 0.8
        if spec is None:
            continue
        shared = rng.normal(0, 3.0)
        spec.jitter = np.clip(rng.normal(0, 2.0, 3) + shared, -6, 6)
        if var.enhancing:  # follow the subject's contrast timing a little (facts §1: timing varies)
            spec.jitter = spec.jitter + np.clip(0.3 * enhancement, -4, 4)
        else:
            spec.jitter = np.full(3, np.clip(shared, -6, 6))
        spec.seed = int(rng.integers(0, 2**31 - 1))
        if v.startswith("hcc"):
            spec.capsule = rng.random() < 0.29
        if v == "fnh":
            spec.scar = rng.random() < 0.47 and r > 8
        if v == "hemangioma":
            spec.nodules = rng.normal(size=(int(rng.integers(4, 8)), 3))
            spec.nodules /= np.linalg.norm(spec.nodules, axis=1, keepdims=True)
            spec.fill = rng.uniform(0.5, 1.0)
        if v == "hepatoblastoma" and rng.random() < 0.7:
            k = int(rng.integers(2, 7))
            off = rng.normal(size=(k, 3))
            off = off / np.linalg.norm(off, axis=1, keepdims=True) * rng.uniform(0, 0.7, (k, 1)) * r
            spec.calcs = np.concatenate([spec.blob.center + off, rng.uniform(1.5, 4.0, (k, 1))], axis=1)
        if v == "icc" and rng.random() < 0.52:  # upstream duct dilatation (facts §2a, 52 %)
            d = spec.blob.center - (lo + hi) / 2
            d = d / (np.linalg.norm(d) + 1e-6)
            a = spec.blob.center + d * r * 0.8
            spec.duct = Tube(np.stack([a, a + d * rng.uniform(20, 40)]), np.array([2.5, 1.8]))
        placed.append(spec)
    return placed


def _smooth_field(seed: int, z, y, x, scale: float) -> np.ndarray:
    """Zero-mean-ish smooth texture in mm (separable sine products), amplitude ~1."""
    r = np.random.default_rng(seed)
    out = 0.0
    for _ in range(3):
        k = 2 * np.pi / (scale * r.uniform(0.6, 1.6, 3))
        p = r.uniform(0, 2 * np.pi, 3)
        out = out + np.sin(k[0] * z + p[0]) * np.sin(k[1] * y + p[1]) * np.sin(k[2] * x + p[2])
    return out * (2.0 / np.sqrt(3))


@dataclass
class Rasterized:
    spec: LesionSpec
    sl: tuple[slice, slice, slice]
    mask: np.ndarray  # bool, in the window
    level: np.ndarray  # normalised radius inside the mask (1-D)
    coords: tuple[np.ndarray, np.ndarray, np.ndarray]  # world mm of the mask voxels


_S26 = np.ones((3, 3, 3), bool)
_CROSS = np.zeros((1, 3, 3), bool)
_CROSS[0, 1, :] = _CROSS[0, :, 1] = True


def rasterize_lesions(specs: list[LesionSpec], grid: Grid, tissue: np.ndarray, label: np.ndarray) -> list[Rasterized]:
    """Burn lesions into ``label``/``tissue`` inside the liver; each lesion is one 26-connected component that
    touches no other lesion. Lesions with no voxel on this grid are dropped (facts §4: listed = rasterised)."""
    taken = np.zeros(grid.shape, bool)
    out = []
    for spec in specs:
        if spec.duct is not None:
            lo, hi = spec.duct.bounds()
            sl = grid.window(lo, hi)
            if sl is not None:
                m = (spec.duct.level(*grid.coords(sl)) < 1.0) & (label[sl] == 1)
                tissue[sl][m] = T["bile"]
    for spec in specs:
        b = spec.blob
        e = b.extent() + 2 * max(grid.spacing)
        sl = grid.window(b.center - e, b.center + e)
        if sl is None:
            continue
        zz, yy, xx = grid.coords(sl)
        lv = b.level(zz, yy, xx)
        lab = label[sl]
        m = (lv < 1.0) & ((lab == 1) | (lab == 3))
        if not m.any():
            continue
        m &= ~ndimage.binary_dilation(taken[sl], _S26)
        cc, n = ndimage.label(m, _S26)
        if n == 0:
            continue
        if n > 1:
            m = cc == (1 + int(np.argmax(np.bincount(cc.ravel())[1:])))
        taken[sl] |= m
        lab[m] = LESION_VARIANTS[spec.variant].label
        tissue[sl][m] = T["lesion"]
        out.append(Rasterized(spec, sl, m, lv[m], (zz[m], yy[m], xx[m])))
    return out


def lesion_values(r: Rasterized, phase: int) -> np.ndarray:
    """HU of the lesion's voxels in ``phase`` (0 NC, 1 LA, 2 PV); facts §2b patterns, zero-mean modulation."""
    s, var = r.spec, LESION_VARIANTS[r.spec.variant]
    lv = np.clip(r.level, 0, 1)
    rad = max(s.radius, 1.0)
    pat = np.zeros(lv.shape, np.float32)
    if var.rim[phase]:
        t = min(0.6, 3.0 / rad)  # ~3 mm rim
        pat += var.rim[phase] * np.clip((lv - (1 - t)) / t, 0, 1)
    if var.tex[phase]:
        pat += var.tex[phase] * _smooth_field(s.seed, *r.coords, scale=max(6.0, rad / 2))
    if s.capsule and phase == 2:
        t = min(0.5, 1.5 / rad)
        pat += 25.0 * (lv > 1 - t)
    if s.scar and phase > 0:  # central stellate scar: dark in LA/PV (facts §2a FNH)
        star = 0.22 + 0.06 * _smooth_field(s.seed + 1, *r.coords, scale=rad / 3)
        pat -= (60.0 if phase == 1 else 30.0) * (lv < star)
    if s.nodules is not None and phase > 0:
        if rad < 7.5:
            pass  # flash filling: homogeneous (facts §2a: < 1.5 cm)
        elif phase == 1:  # peripheral discontinuous nodules at ~0.5-0.9 x aorta
            c = s.blob.center
            dz, dy, dx = (r.coords[0] - c[0]), (r.coords[1] - c[1]), (r.coords[2] - c[2])
            w = 0.0
            for n in s.nodules:
                pz, py, px = n * 0.8 * rad
                w = np.maximum(w, np.exp(-((dz - pz) ** 2 + (dy - py) ** 2 + (dx - px) ** 2) / (0.3 * rad) ** 2))
            pat += 150.0 * w
        else:  # centripetal fill-in; giant ones keep a central cleft
            pat += 90.0 * (lv > 1 - s.fill)
            if rad > 25:
                pat -= 60.0 * (lv < 0.25)
    if s.calcs is not None:
        for cz, cy, cx, cr in s.calcs:
            d2 = (r.coords[0] - cz) ** 2 + (r.coords[1] - cy) ** 2 + (r.coords[2] - cx) ** 2
            pat += 220.0 * (d2 < cr * cr)
    if pat.size:  # zero mean over the interior (mask eroded by one in-plane voxel, as the card measures)
        inner = ndimage.binary_erosion(r.mask, _CROSS)[r.mask]
        pat -= pat[inner].mean() if inner.any() else pat.mean()
    return lesion_target(r, phase) + pat


def lesion_target(r: Rasterized, phase: int) -> float:
    """The lesion's drawn mean HU in ``phase`` (declared table value + per-lesion jitter)."""
    return float(LESION_VARIANTS[r.spec.variant].hu[phase] + r.spec.jitter[phase])
