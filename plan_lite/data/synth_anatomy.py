"""Synthetic abdomen in millimetres: analytic shapes with smooth random deformation, rasterised on any grid.

A subject is drawn once (``draw_anatomy``) as shapes in world mm, (z, y, x) = (superior, anterior, patient-right)
(NIfTI RAS+ with a diagonal affine), centred on the liver region; ``rasterize_anatomy`` evaluates it on a grid of
any spacing and shape. Nothing drawn depends on the grid, so one subject renders at 5 x 2.5 x 2.5 mm and at
5 x 0.7 x 0.7 mm alike. Anatomy and hard-negative findings follow facts §1 (tissues) and §3 of the data card
``data_cards/synthetic_liver_ct.md`` (steatosis, cirrhosis: nodular surface, caudate hypertrophy, splenomegaly, ascites).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Internal tissue codes (the image is rendered from these; the label map is separate).
TISSUES: tuple[str, ...] = (
    "air", "fat", "muscle", "bone", "cortical_bone", "csf", "liver", "bile", "portal_vein", "hepatic_vein",
    "spleen", "stomach_wall", "stomach_content", "gas", "pancreas", "aorta", "ivc", "kidney_cortex",
    "kidney_medulla", "ascites", "bowel_wall", "lesion",
)
T = {name: i for i, name in enumerate(TISSUES)}


@dataclass
class Blob:
    """Ellipsoid with a smooth random radial perturbation: inside where ``level < 1``."""

    center: np.ndarray  # (3,) z, y, x mm
    axes: np.ndarray  # (3,) semi-axes mm (local frame)
    rot: np.ndarray  # (3, 3) columns: local axes in world coordinates
    freqs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    amps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def extent(self) -> float:
        return float(self.axes.max() * (1.0 + np.abs(self.amps).sum()))

    def local(self, z, y, x):
        c, r, a = self.center, self.rot, self.axes
        f32 = np.float32
        dz, dy, dx = z - f32(c[0]), y - f32(c[1]), x - f32(c[2])
        return [dz * f32(r[0, i] / a[i]) + dy * f32(r[1, i] / a[i]) + dx * f32(r[2, i] / a[i]) for i in range(3)]

    def level(self, z, y, x):
        """Normalised radius: ``|q| / (1 + delta(q))`` with ``q`` the local coordinates (1 on the outline)."""
        q = self.local(z, y, x)
        rho = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
        if len(self.amps) == 0:
            return rho
        # The perturbation only moves the outline: evaluate it in a band around rho = 1 (cheaper, same mask).
        f32 = np.float32
        band = np.abs(rho - f32(1.0)) < f32(0.4)
        if rho.ndim == 0 or band.all():
            qb, rb = q, rho
        else:
            qb, rb = [c[band] for c in q], rho[band]
        delta = None
        for f, amp, ph in zip(self.freqs, self.amps, self.phases):
            arg = qb[0] * f32(np.pi * f[0]) + qb[1] * f32(np.pi * f[1]) + qb[2] * f32(np.pi * f[2])
            arg += f32(ph)
            term = np.cos(arg, out=arg)
            term *= f32(amp)
            delta = term if delta is None else np.add(delta, term, out=delta)
        delta += f32(1.0)
        if qb is q:
            return rho / delta
        rho[band] = rb / delta
        return rho

    def points_level(self, pts: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(pts)
        return self.level(pts[:, 0], pts[:, 1], pts[:, 2])


@dataclass
class Tube:
    """Polyline tube with linearly varying radius: inside where ``level < 1``."""

    points: np.ndarray  # (P, 3) mm
    radii: np.ndarray  # (P,) mm

    def level(self, z, y, x):
        out = None
        for i in range(len(self.points) - 1):
            a, b = self.points[i], self.points[i + 1]
            ab = b - a
            den = float(ab @ ab) + 1e-9
            t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / den
            t = np.clip(t, 0.0, 1.0)
            d2 = (z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2
            r = self.radii[i] + t * (self.radii[i + 1] - self.radii[i])
            lv = np.sqrt(d2) / r
            out = lv if out is None else np.minimum(out, lv)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        m = float(self.radii.max())
        return self.points.min(0) - m, self.points.max(0) + m


def rot_zyx(yaw: float, tilt: float = 0.0) -> np.ndarray:
    """Rotation in the axial plane by ``yaw`` then about x by ``tilt`` (radians); columns are local axes."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    r1 = np.array([[1, 0, 0], [0, cy, -sy], [0, sy, cy]])  # (z, y, x): rotate y-x plane
    ct, st = np.cos(tilt), np.sin(tilt)
    r2 = np.array([[ct, -st, 0], [st, ct, 0], [0, 0, 1]])  # tilt z-y
    return r2 @ r1


def random_blob(rng, center, axes, yaw=0.0, tilt=0.0, bump=0.05, k=4, fmax=2.0) -> Blob:
    freqs = rng.uniform(-fmax, fmax, size=(k, 3))
    amps = rng.uniform(0.3, 1.0, size=k) * bump / np.sqrt(k)
    return Blob(np.asarray(center, float), np.asarray(axes, float), rot_zyx(yaw, tilt), freqs, amps,
                rng.uniform(0, 2 * np.pi, size=k))


@dataclass
class Anatomy:
    """A subject in world mm. ``liver`` is a union of blobs (right lobe, left lobe, caudate)."""

    body_axes: tuple[float, float]  # (y, x) semi-axes of the skin outline
    body_center_y: float
    fat_mm: float
    muscle_mm: float
    liver: list[Blob]
    gallbladder: Blob
    spleen: Blob
    stomach: Blob
    kidneys: list[Blob]
    pancreas: Tube
    aorta: Tube
    ivc: Tube
    portal: list[Tube]
    hepatic: list[Tube]
    bowel: list[Blob]
    spine_y: float
    warp: np.ndarray  # (6, 3): amplitude, wavenumber (rad/mm), phase for 6 separable warp terms
    ascites_mm: float = 0.0
    findings: list[str] = field(default_factory=list)
    liver_scale: float = 1.0

    def liver_level(self, z, y, x):
        out = None
        for b in self.liver:
            lv = b.level(z, y, x)
            out = lv if out is None else np.minimum(out, lv)
        return out

    def liver_level_grid(self, grid, sl) -> np.ndarray:
        """``liver_level`` on the window ``sl`` of ``grid``, each lobe evaluated in its own sub-window."""
        out = np.full(tuple(s.stop - s.start for s in sl), np.inf, np.float32)
        for b in self.liver:
            w = grid.window(b.center - b.extent(), b.center + b.extent())
            if w is None:
                continue
            w = tuple(slice(max(a.start, c.start), min(a.stop, c.stop)) for a, c in zip(w, sl))
            if any(s.stop <= s.start for s in w):
                continue
            loc = tuple(slice(a.start - c.start, a.stop - c.start) for a, c in zip(w, sl))
            np.minimum(out[loc], b.level(*grid.coords(w)), out=out[loc])
        return out

    def liver_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([b.center - b.extent() for b in self.liver], axis=0)
        hi = np.max([b.center + b.extent() for b in self.liver], axis=0)
        return lo, hi


def draw_anatomy(rng: np.random.Generator, cirrhosis: bool = False, ascites: bool = False,
                 child: bool = False, hepatomegaly: float = 1.0) -> Anatomy:
    """Draw one subject (facts §1 sizes: liver ≈ 1.5 L, spleen ≈ 0.2 L; §3 cirrhosis signs)."""
    u = rng.uniform
    bs = 0.62 if child else u(0.92, 1.08)  # body scale
    by, bx = u(100, 122) * bs, u(140, 168) * bs
    body_cy = -5.0 * bs
    ls = bs * u(0.95, 1.05) * hepatomegaly
    spine_y = body_cy - by * 0.62
    # Liver: right lobe, left lobe, caudate (facts §3: cirrhosis shrinks the right lobe, enlarges caudate/left).
    rl = 0.85 if cirrhosis else 1.0
    cl = 1.5 if cirrhosis else 1.0
    bump, k, fmax = 0.08, 5, 2.0
    liver = [
        random_blob(rng, np.array([u(0, 12), u(-12, 0), u(52, 62)]) * ls, np.array([u(62, 70), u(70, 80), u(55, 62)]) * ls * rl,
                    yaw=u(-0.35, -0.15), tilt=u(-0.1, 0.1), bump=bump, k=k, fmax=fmax),
        random_blob(rng, np.array([u(15, 25), u(28, 40), u(-18, -8)]) * ls, np.array([u(32, 40), u(26, 32), u(50, 60)]) * ls * (1.15 if cirrhosis else 1),
                    yaw=u(0.25, 0.45), tilt=u(-0.15, 0.0), bump=bump, k=k, fmax=fmax),
        random_blob(rng, np.array([u(5, 15), u(-22, -15), u(8, 16)]) * ls, np.array([u(26, 32), u(18, 22), u(17, 21)]) * ls * cl,
                    bump=0.05, k=3),
    ]
    if cirrhosis:  # nodular surface: high-frequency bumps (facts §3, regenerative nodules < 1 cm)
        for b in liver:
            hf = rng.uniform(-9, 9, size=(6, 3))
            b.freqs = np.concatenate([b.freqs, hf])
            b.amps = np.concatenate([b.amps, u(0.008, 0.016, 6)])
            b.phases = np.concatenate([b.phases, u(0, 2 * np.pi, 6)])
    r_c = liver[0].center
    gb = random_blob(rng, r_c + np.array([u(-42, -34), u(38, 48), u(-24, -16)]) * ls,
                     np.array([u(28, 38), u(11, 15), u(12, 16)]) * ls, yaw=u(-0.3, 0.3), tilt=u(0.2, 0.5), bump=0.03)
    sm = u(1.4, 1.7) if cirrhosis else 1.0  # splenomegaly
    spleen = random_blob(rng, np.array([u(15, 30), spine_y + u(28, 40), -u(88, 98) * bs]),
                         np.array([u(45, 55) * sm ** 0.5, u(45, 55) * sm ** 0.3, u(17, 22) * sm ** 0.2]) * bs,
                         yaw=u(0.5, 0.8), bump=0.06, k=4)
    stomach = random_blob(rng, np.array([u(10, 25), u(5, 20), -u(50, 62)]) * bs, np.array([u(45, 60), u(28, 38), u(28, 36)]) * bs,
                          yaw=u(-0.6, -0.3), tilt=u(-0.2, 0.2), bump=0.08, k=4)
    kidneys = []
    for side, dz in ((1.0, -u(12, 20)), (-1.0, 0.0)):
        kz = -u(40, 50) * bs + dz
        kidneys.append(random_blob(rng, np.array([kz, spine_y + u(8, 16), side * u(62, 72) * bs]),
                                   np.array([u(45, 55), u(24, 28), u(24, 30)]) * bs, yaw=side * u(0.3, 0.6), bump=0.04, k=3))
    z_lo, z_hi = -400.0, 400.0
    ay, ax = spine_y + u(22, 30), -u(12, 20) * bs
    aorta = Tube(np.array([[z_hi, ay, ax], [0.0, ay + u(-3, 3), ax], [z_lo, ay + u(-5, 5), ax + u(-5, 5)]]),
                 np.full(3, u(10, 13) * bs))
    iy, ix = spine_y + u(35, 45), u(20, 28) * bs
    ivc = Tube(np.array([[z_hi, iy, ix], [0.0, iy, ix], [z_lo, iy - 5, ix + 5]]), np.full(3, u(10, 12) * bs))
    head = np.array([-u(45, 55), u(-8, 2), u(22, 30)]) * bs
    pancreas = Tube(np.stack([head, np.array([-u(35, 42), u(0, 8), u(-2, 6)]) * bs,
                              np.array([-u(28, 35), u(-12, -4), -u(35, 42)]) * bs,
                              np.array([spleen.center[0] - u(30, 40), spleen.center[1] + u(5, 12), spleen.center[2] + u(18, 26)])]),
                    np.array([u(14, 17), u(10, 12), u(9, 11), u(7, 9)]) * bs)
    # Hepatic vessels (facts §1): portal vein from the pancreatic neck to the hilum, right/left branches;
    # three hepatic veins converging on the IVC at the dome.
    lc = liver[1].center
    hilum = r_c + np.array([-u(20, 28), u(10, 18), -u(30, 38)]) * ls
    pv_trunk = Tube(np.stack([pancreas.points[1] + np.array([0, -6, 0]), hilum]), np.array([7.0, 6.5]) * bs)
    portal = [pv_trunk]
    rp_end = r_c + np.array([u(-5, 5), u(-15, 5), u(25, 35)]) * ls
    lp_end = lc + np.array([u(-5, 5), u(0, 10), -u(20, 30)]) * ls
    portal.append(Tube(np.stack([hilum, (hilum + rp_end) / 2 + u(-6, 6, 3), rp_end]), np.array([5.5, 4.0, 2.5]) * ls))
    portal.append(Tube(np.stack([hilum, (hilum + lp_end) / 2 + u(-6, 6, 3), lp_end]), np.array([5.0, 3.5, 2.2]) * ls))
    for _ in range(3):
        start = rp_end * 0.5 + hilum * 0.5 if rng.random() < 0.6 else (hilum + lp_end) / 2
        end = start + rng.normal(0, 1, 3) * np.array([20, 18, 18]) * ls
        portal.append(Tube(np.stack([start, end]), np.array([3.0, 1.8]) * ls))
    entry = np.array([r_c[0] + u(45, 55) * ls, iy, ix])
    hepatic = []
    for tgt in (r_c + np.array([-u(5, 20), u(-10, 10), u(30, 40)]) * ls,
                r_c + np.array([-u(10, 25), u(35, 45), -u(25, 35)]) * ls,
                lc + np.array([u(-5, 5), u(-5, 5), -u(15, 30)]) * ls):
        hepatic.append(Tube(np.stack([entry, (entry + tgt) / 2 + u(-5, 5, 3), tgt]), np.array([6.0, 4.0, 2.2]) * ls))
    bowel = []
    for _ in range(int(rng.integers(3, 7))):
        c = np.array([-u(40, 110), u(-10, 60), u(-80, 80)]) * bs
        bowel.append(random_blob(rng, c, np.array([u(12, 25), u(10, 18), u(10, 22)]) * bs, yaw=u(0, np.pi), bump=0.08))
    warp = np.stack([u(2.0, 5.0, 6), 2 * np.pi / u(150, 300, 6), u(0, 2 * np.pi, 6)], axis=1)
    findings = (["cirrhosis"] if cirrhosis else []) + (["ascites"] if ascites else [])
    return Anatomy((by, bx), body_cy, u(8, 30) * bs, u(7, 12) * bs, liver, gb, spleen, stomach, kidneys, pancreas,
                   aorta, ivc, portal, hepatic, bowel, spine_y, warp, ascites_mm=u(8, 20) if ascites else 0.0,
                   findings=findings, liver_scale=ls)


class Grid:
    """Voxel-centre world coordinates (mm) of a (D, H, W) grid centred on the origin, with the subject's warp."""

    def __init__(self, spacing, shape, warp: np.ndarray | None = None):
        self.spacing = tuple(float(s) for s in spacing)
        self.shape = tuple(int(n) for n in shape)
        self.axes = [((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32) for n, s in zip(self.shape, self.spacing)]
        z, y, x = self.axes
        Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
        self.warp_max = 0.0
        if warp is None:
            self.Z, self.Y, self.X = np.broadcast_arrays(Z, Y, X)
            return
        # Separable smooth deformation: each coordinate is displaced by sines of the other two (facts: design).
        def s(i, v):
            a, k, p = warp[i]
            return (a * np.sin(k * v + p)).astype(np.float32)

        self.Z = np.broadcast_to(Z + s(0, y)[None, :, None] + s(1, x)[None, None, :], self.shape)
        self.Y = np.broadcast_to(Y + s(2, z)[:, None, None] + s(3, x)[None, None, :], self.shape)
        self.X = np.broadcast_to(X + s(4, z)[:, None, None] + s(5, y)[None, :, None], self.shape)
        self.warp_max = float(np.abs(warp[:, 0]).sum())

    def window(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices covering the world box [lo, hi] (mm), widened by the warp; None if outside."""
        out = []
        for ax, a, b in zip(self.axes, lo, hi):
            i0 = int(np.searchsorted(ax, a - self.warp_max - 1e-3))
            i1 = int(np.searchsorted(ax, b + self.warp_max + 1e-3, side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def coords(self, sl):
        return self.Z[sl], self.Y[sl], self.X[sl]


def _paint_blob(grid, tissue, blob, code, where=None, inner=None):
    sl = grid.window(blob.center - blob.extent(), blob.center + blob.extent())
    if sl is None:
        return None, None
    lv = blob.level(*grid.coords(sl))
    m = lv < 1.0
    if where is not None:
        m &= where(tissue[sl])
    tissue[sl][m] = code
    return sl, lv


def _paint_tube(grid, tissue, tube, code, label=None):
    """Paint a tube; with ``label`` only inside the liver (label 1), where it becomes hepatic vessel (3)."""
    lo, hi = tube.bounds()
    sl = grid.window(lo, hi)
    if sl is None:
        return
    m = tube.level(*grid.coords(sl)) < 1.0
    if label is not None:
        lab = label[sl]
        m &= lab == 1
        lab[m] = 3
    tissue[sl][m] = code


def rasterize_anatomy(anat: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Tissue codes and the label map (0 bg, 1 liver, 2 gallbladder, 3 hepatic vessels, 4 spleen, 5 stomach,
    6 pancreas) on ``grid``. Kidneys, aorta, IVC, spine, muscle and fat are background in the label map."""
    D, H, W = grid.shape
    tissue = np.zeros(grid.shape, np.uint8)
    label = np.zeros(grid.shape, np.uint8)
    Y, X = grid.Y, grid.X
    by, bx = anat.body_axes
    taper = 1.0 + 0.0008 * np.clip(-grid.axes[0], 0, None)  # slightly wider towards the pelvis
    # Body outline, subcutaneous fat, abdominal wall muscle, visceral fat.
    ry = (Y - anat.body_center_y) / (by * taper[:, None, None])
    rx = X / (bx * taper[:, None, None])
    rho = np.sqrt(ry * ry + rx * rx)
    tissue[rho < 1.0] = T["fat"]
    f1 = 1.0 - anat.fat_mm / by
    tissue[(rho < f1) & (rho >= f1 - anat.muscle_mm / by)] = T["muscle"]
    # Spine: vertebral body (trabecular bone, cortical rim), canal, posterior arch; paraspinal muscles, psoas
    # (evaluated in a window around the spine).
    sy = anat.spine_y
    sw = grid.window((-1e4, sy - 80.0, -90.0), (1e4, sy + 30.0, 90.0))
    if sw is not None:
        Zs, Ys, Xs = grid.coords(sw)
        ts = tissue[sw]
        for cx in (36.0, -36.0):
            ts[((Ys - (sy - 48)) / 24.0) ** 2 + ((Xs - cx) / 30.0) ** 2 < 1.0] = T["muscle"]
        for side in (1.0, -1.0):
            rr = ((Ys - (sy + 5)) / 18.0) ** 2 + ((Xs - side * 38.0) / (16.0 * np.clip(1 + (-Zs - 30) / 80, 0.3, 1.6))) ** 2
            ts[(rr < 1.0) & (Zs < -20)] = T["muscle"]
        r_vb = np.sqrt((Ys - sy) ** 2 + Xs ** 2)
        ts[r_vb < 21.0] = T["cortical_bone"]
        ts[r_vb < 18.5] = T["bone"]
        r_c = np.sqrt((Ys - (sy - 32)) ** 2 + Xs ** 2)
        ts[(r_c < 15.0) & (r_c >= 9.0)] = T["cortical_bone"]
        ts[r_c < 9.0] = T["csf"]
        ts[(np.abs(Xs) < 4.0) & (Ys < sy - 44) & (Ys > sy - 62)] = T["cortical_bone"]
    inside = rho < f1 - anat.muscle_mm / by  # peritoneal cavity + retroperitoneum
    for b in anat.bowel:
        sl, lv = _paint_blob(grid, tissue, b, T["bowel_wall"])
        if sl is not None:
            tissue[sl][(lv < 0.75)] = T["gas"] if b.center[1] > 20 else T["stomach_content"]
    for k in anat.kidneys:
        sl, lv = _paint_blob(grid, tissue, k, T["kidney_cortex"])
        if sl is not None:
            tissue[sl][lv < 0.62] = T["kidney_medulla"]
    for tube, code in ((anat.aorta, "aorta"), (anat.pancreas, "pancreas")):
        _paint_tube(grid, tissue, tube, T[code])
    sl = grid.window(*anat.pancreas.bounds())
    if sl is not None:
        label[sl][tissue[sl] == T["pancreas"]] = 6
    # Stomach: wall, fluid content, gas in the non-dependent (anterior) part.
    st = anat.stomach
    sl, lv = _paint_blob(grid, tissue, st, T["stomach_wall"])
    if sl is not None:
        inner = lv < 0.85
        tissue[sl][inner] = T["stomach_content"]
        yy = grid.Y[sl]
        tissue[sl][inner & (yy > st.center[1] + 0.35 * st.axes[1])] = T["gas"]
        label[sl][lv < 1.0] = 5
    sl, lv = _paint_blob(grid, tissue, anat.spleen, T["spleen"])
    if sl is not None:
        label[sl][lv < 1.0] = 4
    # Liver (union of lobes), ascites around it, IVC, gallbladder, vessels.
    lo, hi = anat.liver_bounds()
    pad = anat.ascites_mm + 2.0
    sl = grid.window(lo - pad, hi + pad)
    if sl is not None:
        lv = anat.liver_level_grid(grid, sl)
        if anat.ascites_mm > 0:
            asc = (lv < 1.0 + anat.ascites_mm / 70.0) & (lv >= 1.0) & inside[sl]
            asc &= np.isin(tissue[sl], (T["fat"], T["bowel_wall"]))
            tissue[sl][asc] = T["ascites"]
        lm = lv < 1.0
        tissue[sl][lm] = T["liver"]
        label[sl][lm] = 1
    _paint_tube(grid, tissue, anat.ivc, T["ivc"])
    sl_i = grid.window(*anat.ivc.bounds())
    if sl_i is not None:
        label[sl_i][tissue[sl_i] == T["ivc"]] = 0
    sl, lv = _paint_blob(grid, tissue, anat.gallbladder, T["bile"])
    if sl is not None:
        label[sl][lv < 1.0] = 2
    _paint_tube(grid, tissue, anat.portal[0], T["portal_vein"])  # extrahepatic trunk: background label
    for tube in anat.portal:
        _paint_tube(grid, tissue, tube, T["portal_vein"], label)
    for tube in anat.hepatic:
        _paint_tube(grid, tissue, tube, T["hepatic_vein"], label)
    tissue[(rho >= 1.0)] = T["air"]
    label[(rho >= 1.0)] = 0
    return tissue, label
