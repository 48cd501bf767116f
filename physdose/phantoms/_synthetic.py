"""Synthetic computational patients: stylised adult anatomy with sampled body and organ sizes."""

import math
from dataclasses import dataclass

import equinox as eqx
import jax.random as jr
import numpy as np
from jaxtyping import PRNGKeyArray

from ..geometry._grid import Grid
from ..materials._table import MaterialTable
from ._phantom import Phantom

# ICRP Publication 89 (2002) adult reference values: height (cm), mass (kg), and organ masses (g).
REFERENCE = {
    "male": {"height_cm": 176.0, "mass_kg": 73.0},
    "female": {"height_cm": 163.0, "mass_kg": 60.0},
}
ORGAN_MASS_G = {  # ICRP 89 Table 2.8 (organs with contents / blood where the organ is a container)
    "lungs": (1200.0, 950.0),
    "heart": (840.0, 620.0),
    "liver": (1800.0, 1400.0),
    "stomach": (400.0, 370.0),
    "spleen": (150.0, 130.0),
    "pancreas": (140.0, 120.0),
    "kidneys": (310.0, 275.0),
    "adrenals": (14.0, 13.0),
    "bladder": (250.0, 240.0),
    "colon": (670.0, 640.0),
    "small_intestine": (1000.0, 880.0),
    "oesophagus": (40.0, 35.0),
    "thyroid": (20.0, 17.0),
    "brain": (1450.0, 1300.0),
    "breasts": (25.0, 500.0),
    "gonads": (35.0, 11.0),
}
_MATERIALS = (
    "air",
    "soft_tissue_icru44",
    "adipose",
    "skin",
    "lung",
    "blood",
    "brain",
    "thyroid",
    "breast",
    "testes",
    "cortical_bone",
    "red_marrow",
)


class PatientDistribution(eqx.Module):
    """Spread of the sampled body and organ sizes around the ICRP 89 reference adult.

    Attributes:
        height_sd_cm: standard deviation of height (cm).
        mass_sd_fraction: log-normal spread of body mass at fixed BMI-for-height.
        organ_sd_fraction: log-normal spread of each organ's mass (independent organs).
        deformation_mm: amplitude of the smooth random deformation of the whole anatomy.
    """

    height_sd_cm: float = eqx.field(static=True, default=7.0)
    mass_sd_fraction: float = eqx.field(static=True, default=0.15)
    organ_sd_fraction: float = eqx.field(static=True, default=0.10)
    deformation_mm: float = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        for name in ("height_sd_cm", "mass_sd_fraction", "organ_sd_fraction", "deformation_mm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.deformation_mm > 15:
            raise ValueError(f"deformation_mm must be <= 15 (keeps the warp invertible), got {self.deformation_mm}")


@dataclass(frozen=True)
class _Body:
    """Sampled body dimensions (cm) in the model frame: z from the trunk base, x left, y posterior."""

    sex: str
    height_cm: float
    mass_kg: float
    length_scale: float  # z scale relative to the reference
    width_scale: float  # lean x, y scale
    fat_cm: float  # subcutaneous fat thickness


def synthetic_patient(
    *,
    key: PRNGKeyArray,
    sex: str = "female",
    spacing_mm: float = 4.0,
    distribution: PatientDistribution | None = None,
    height_cm: float | None = None,
    mass_kg: float | None = None,
    arms: bool = False,
) -> Phantom:
    """A voxelised adult in the spirit of the stylised MIRD / ORNL phantoms (Cristy & Eckerman 1987).

    Anatomy: legs, trunk, neck and head (optional arms at the sides), skin (the outermost
    voxel layer), subcutaneous fat, lungs, heart, liver, stomach, spleen, pancreas,
    kidneys, adrenals, bladder, colon, small intestine, oesophagus, thyroid, brain,
    breasts (female; a small male breast region otherwise), gonads (testes or ovaries),
    and the skeleton: spine, ribs, pelvis and skull in cortical bone, with red marrow in
    the spine and pelvis. Organs are ellipsoids, cylinders and shells placed after the
    Cristy-Eckerman phantoms; a smooth random warp deforms all of them together.

    Sizes: height and mass are drawn around the ICRP 89 reference adult of `sex` (unless
    given); lengths scale with height, lean widths with sqrt(height ratio), and extra mass
    goes into subcutaneous fat. Each organ's mass is drawn log-normally around its ICRP 89
    value scaled by (height ratio)^2; organ sizes are then adjusted on the voxel grid so
    the voxelised masses meet those targets (organs a few voxels across excepted).

    Frame: patient coordinates (z superior, y posterior, x patient left), supine; the
    trunk centre at x = y = 0, z = 0 at the base of the trunk.

    Args:
        key: PRNG key; same key and arguments, same phantom.
        sex: "female" or "male".
        spacing_mm: isotropic voxel size (mm).
        distribution: spreads of the sampled body and organ sizes (default `PatientDistribution()`).
        height_cm, mass_kg: fix the body size instead of sampling it.
        arms: add arms hanging at the sides.

    Returns:
        A Phantom whose `info` records the sampled parameters (height, mass, fat
        thickness, organ target masses, deformation) and whose organs include
        "skin", "red_marrow" and "skeleton" (cortical bone of spine, ribs, pelvis, skull).
    """
    if sex not in REFERENCE:
        raise ValueError(f"sex must be 'female' or 'male', got {sex!r}")
    if not (isinstance(spacing_mm, int | float) and 1.0 <= spacing_mm <= 20.0):
        raise ValueError(f"spacing_mm must be a number in 1-20 mm, got {spacing_mm!r}")
    distribution = PatientDistribution() if distribution is None else distribution
    if not isinstance(distribution, PatientDistribution):
        raise TypeError(f"distribution must be a PatientDistribution, got {type(distribution).__name__}")
    ref = REFERENCE[sex]
    k_body, k_organs, k_warp = jr.split(key, 3)
    z_body = np.asarray(jr.normal(k_body, (2,)), dtype=np.float64)
    if height_cm is None:
        height_cm = ref["height_cm"] + distribution.height_sd_cm * z_body[0]
    if not 140.0 <= height_cm <= 210.0:
        raise ValueError(f"height_cm must lie in 140-210 cm, got {height_cm!r}")
    length_scale = height_cm / ref["height_cm"]
    if mass_kg is None:
        mass_kg = ref["mass_kg"] * length_scale**2 * math.exp(distribution.mass_sd_fraction * z_body[1])
    if not 30.0 <= mass_kg <= 200.0:
        raise ValueError(f"mass_kg must lie in 30-200 kg, got {mass_kg!r}")
    body = _sample_body(sex, height_cm, mass_kg, length_scale)
    z_org = np.asarray(jr.normal(k_organs, (len(ORGAN_MASS_G),)), dtype=np.float64)
    col = 0 if sex == "male" else 1
    target_g = {
        name: masses[col] * length_scale**2 * math.exp(distribution.organ_sd_fraction * z)
        for (name, masses), z in zip(ORGAN_MASS_G.items(), z_org)
    }
    warp = _Warp.sample(k_warp, distribution.deformation_mm / 10.0)
    return _build(body, target_g, warp, spacing_mm, arms, distribution)


def _sample_body(sex, height_cm, mass_kg, length_scale) -> _Body:
    lean_a, lean_b, fat_ref = _LEAN[sex]
    width_scale = math.sqrt(length_scale)
    a, b = lean_a * width_scale, lean_b * width_scale
    ratio = mass_kg / (REFERENCE[sex]["mass_kg"] * length_scale**2)
    # cross-section area (and so mass) grows with the fat layer: (a + t)(b + t) = ratio (a + t0)(b + t0)
    target = ratio * (a + fat_ref) * (b + fat_ref)
    fat = (-(a + b) + math.sqrt((a - b) ** 2 + 4 * target)) / 2
    return _Body(sex, float(height_cm), float(mass_kg), length_scale, width_scale, float(max(fat, 0.3)))


# lean trunk semi-axes (cm) and reference subcutaneous fat (cm), tuned so the reference
# phantoms weigh close to the ICRP 89 reference masses
_LEAN = {"male": (16.5, 8.4, 1.5), "female": (14.0, 7.6, 2.0)}
# reference z layout (cm) of the male model: legs -80..0, trunk 0..70, neck 70..78, head 78..100
_Z = {"legs": 80.0, "trunk": 70.0, "neck": 8.0, "head": 22.0}
_MODEL_HEIGHT = sum(_Z.values())


@dataclass(frozen=True)
class _Warp:
    """Smooth random displacement d(p) = sum_k a_k sin(w_k . p + phi_k) per axis (cm)."""

    amplitude: np.ndarray  # (3, k)
    wavevector: np.ndarray  # (3, k, 3) 1/cm
    phase: np.ndarray  # (3, k)

    @classmethod
    def sample(cls, key, amplitude_cm: float, k: int = 3) -> "_Warp":
        ka, kw, kp = jr.split(key, 3)
        amp = amplitude_cm / k * np.asarray(jr.uniform(ka, (3, k), minval=0.5, maxval=1.0), dtype=np.float64)
        wavelength = 25.0  # cm; gradient of the warp < 3 * (a/k) * 2 pi / 25 < 1, so it is invertible
        direction = np.asarray(jr.normal(kw, (3, k, 3)), dtype=np.float64)
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        phase = np.asarray(jr.uniform(kp, (3, k), maxval=2 * np.pi), dtype=np.float64)
        return cls(amp, direction * 2 * np.pi / wavelength, phase)

    def __call__(self, x, y, z):
        p = np.stack([x, y, z], axis=-1)
        out = []
        for axis, v in enumerate((x, y, z)):
            d = np.zeros_like(v)
            for j in range(self.amplitude.shape[1]):
                d += self.amplitude[axis, j] * np.sin(p @ self.wavevector[axis, j] + self.phase[axis, j])
            out.append(v + d)
        return out


def _ellipsoid(x, y, z, c, s):
    return ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 <= 1


def _elliptic_cylinder(x, y, z, c, s, z0, z1):
    return (((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 <= 1) & (z >= z0) & (z <= z1)


class _Anatomy:
    """Shapes of the model in cm, for one sampled body; organ sizes multiplied by `scale[name]`."""

    def __init__(self, body: _Body, arms: bool):
        self.b = body
        self.arms = arms
        lean_a, lean_b, _ = _LEAN[body.sex]
        w, L = body.width_scale, body.length_scale * REFERENCE[body.sex]["height_cm"] / _MODEL_HEIGHT
        self.w, self.L = w, L
        self.a, self.bb = lean_a * w, lean_b * w
        self.t = body.fat_cm
        self.trunk_top = _Z["trunk"] * L
        self.neck_top = self.trunk_top + _Z["neck"] * L
        self.head_top = self.neck_top + _Z["head"] * L
        self.leg_bottom = -_Z["legs"] * L

    def p(self, x, y, z):
        """A reference-male position (cm) scaled to this body."""
        return (x * self.w, y * self.w, z * self.L)

    def s(self, a, b, c, scale=1.0):
        """Reference semi-axes scaled to this body and by an organ size factor."""
        return (a * self.w * scale, b * self.w * scale, c * self.L * scale)

    # -- outline --------------------------------------------------------------------------
    def body(self, x, y, z, fat: bool):
        t = self.t if fat else 0.0
        a, b = self.a + t, self.bb + t
        inside = _elliptic_cylinder(x, y, z, (0, 0), (a, b), 0.0, self.trunk_top)
        leg_r = (0.42 * self.a + t, 0.65 * self.bb + t)
        for side in (-1, 1):
            inside |= _elliptic_cylinder(x, y, z, (side * 0.5 * self.a, 0), leg_r, self.leg_bottom, 0.0)
        neck_r = 5.5 * self.w
        inside |= _elliptic_cylinder(x, y, z, (0, 0), (neck_r, neck_r), self.trunk_top, self.neck_top)
        head_c = (0, -0.5 * self.w, self.neck_top + 0.45 * (self.head_top - self.neck_top))
        inside |= _ellipsoid(x, y, z, head_c, (7.5 * self.w, 9.5 * self.w, 0.55 * (self.head_top - self.neck_top)))
        if self.arms:
            arm_r = (3.6 * self.w + t, 4.0 * self.w + t)
            for side in (-1, 1):
                c = (side * (a + arm_r[0] + 0.5), 0)
                inside |= _elliptic_cylinder(
                    x, y, z, c, arm_r, self.trunk_top - 65 * self.L, self.trunk_top - 3 * self.L
                )
        return inside

    def breasts(self, x, y, z, scale):
        if self.b.sex != "female":
            return self.organ_region("breasts_male", x, y, z, scale)
        out = np.zeros(np.broadcast(x, y, z).shape, bool)
        for side in (-1, 1):
            c = (side * 0.45 * self.a, -(self.bb + self.t), 50 * self.L)
            out |= _ellipsoid(x, y, z, c, (5.5 * scale, 4.5 * scale, 5.5 * scale)) & (y < -(self.bb + self.t) + 1.0)
        return out

    # -- organs -----------------------------------------------------------------------------
    def organ_region(self, name, x, y, z, k):
        p, s = self.p, self.s
        if name == "lungs":
            out = np.zeros(np.broadcast(x, y, z).shape, bool)
            for side in (-1, 1):
                c = p(side * 8.0, 0.5, 43.0)
                out |= _ellipsoid(x, y, z, c, s(4.8, 7.2, 23.0, k)) & (z >= c[2])
            return out
        if name == "heart":
            return _ellipsoid(x, y, z, p(1.5, -2.5, 50.0), s(4.5, 4.0, 6.0, k))
        if name == "liver":
            return _ellipsoid(x, y, z, p(-6.0, 0.0, 36.0), s(10.0, 6.5, 7.5, k)) & (z <= 43.0 * self.L)
        if name == "stomach":
            return _ellipsoid(x, y, z, p(8.0, -3.0, 35.0), s(4.0, 3.0, 7.0, k))
        if name == "spleen":
            return _ellipsoid(x, y, z, p(11.0, 3.0, 37.0), s(3.0, 2.0, 5.5, k))
        if name == "pancreas":
            return _ellipsoid(x, y, z, p(2.0, 1.5, 32.0), s(7.0, 1.3, 2.2, k))
        if name == "kidneys":
            return _ellipsoid(x, y, z, p(-6.0, 5.0, 29.0), s(3.0, 1.6, 5.5, k)) | _ellipsoid(
                x, y, z, p(6.0, 5.0, 29.0), s(3.0, 1.6, 5.5, k)
            )
        if name == "adrenals":
            return _ellipsoid(x, y, z, p(-4.0, 5.0, 36.5), s(1.2, 0.6, 2.0, k)) | _ellipsoid(
                x, y, z, p(4.0, 5.0, 36.5), s(1.2, 0.6, 2.0, k)
            )
        if name == "bladder":
            return _ellipsoid(x, y, z, p(0.0, -4.5, 8.0), s(4.5, 3.2, 3.6, k))
        if name == "colon":
            r = 2.3 * k
            out = _elliptic_cylinder(x, y, z, p(-9.0, -1.0, 0)[:2], s(r, r, 1)[:2], 13 * self.L, 26 * self.L)
            out |= _elliptic_cylinder(x, y, z, p(9.0, 0.5, 0)[:2], s(r, r, 1)[:2], 12 * self.L, 26 * self.L)
            out |= _ellipsoid(x, y, z, p(0.0, -3.0, 27.0), s(10.5, r, r))
            out |= _ellipsoid(x, y, z, p(3.5, 0.0, 11.0), s(5.0, r, r))
            return out
        if name == "small_intestine":
            return _elliptic_cylinder(
                x, y, z, p(0.0, -2.0, 0)[:2], s(8.0 * k, 4.0 * k, 1)[:2], 14 * self.L, 25 * self.L
            )
        if name == "oesophagus":
            r = 0.8 * k
            return _elliptic_cylinder(x, y, z, p(0.0, 3.0, 0)[:2], s(r, r, 1)[:2], 40 * self.L, self.trunk_top)
        if name == "thyroid":
            zc = self.trunk_top + 2.5 * self.L
            return _ellipsoid(x, y, z, (-1.4 * self.w, -2.8 * self.w, zc), s(0.9, 0.8, 2.6, k)) | _ellipsoid(
                x, y, z, (1.4 * self.w, -2.8 * self.w, zc), s(0.9, 0.8, 2.6, k)
            )
        if name == "brain":
            c = (0, -0.5 * self.w, self.neck_top + 0.5 * (self.head_top - self.neck_top))
            return _ellipsoid(
                x, y, z, c, (6.0 * self.w * k, 8.0 * self.w * k, 0.4 * (self.head_top - self.neck_top) * k)
            )
        if name == "breasts_male":
            out = np.zeros(np.broadcast(x, y, z).shape, bool)
            for side in (-1, 1):
                c = (side * 0.5 * self.a, -(self.bb + self.t) + 1.0 * k, 50 * self.L)
                out |= _ellipsoid(x, y, z, c, (2.5 * k, 1.0 * k, 2.5 * k))
            return out
        if name == "gonads":
            if self.b.sex == "male":
                return _ellipsoid(x, y, z, p(-1.3, -7.0, -3.0), s(1.3, 1.5, 2.3, k)) | _ellipsoid(
                    x, y, z, p(1.3, -7.0, -3.0), s(1.3, 1.5, 2.3, k)
                )
            return _ellipsoid(x, y, z, p(-6.0, 0.5, 9.0), s(1.0, 0.6, 2.0, k)) | _ellipsoid(
                x, y, z, p(6.0, 0.5, 9.0), s(1.0, 0.6, 2.0, k)
            )
        raise KeyError(name)

    def scrotum(self, x, y, z):
        if self.b.sex != "male":
            return np.zeros(np.broadcast(x, y, z).shape, bool)
        return _ellipsoid(x, y, z, self.p(0.0, -7.0, -3.0), self.s(3.6, 2.6, 3.6))

    # -- skeleton ---------------------------------------------------------------------------
    def skeleton(self, x, y, z):
        """(cortical bone, red marrow) masks."""
        p, s = self.p, self.s
        spine_outer = _elliptic_cylinder(x, y, z, p(0, 5.8, 0)[:2], s(1.9, 2.2, 1)[:2], 10 * self.L, self.neck_top)
        spine_inner = _elliptic_cylinder(x, y, z, p(0, 5.8, 0)[:2], s(1.1, 1.4, 1)[:2], 10 * self.L, self.neck_top)
        pel_c = p(0, 2.5, 0)[:2]
        pel_outer = _elliptic_cylinder(
            x, y, z, pel_c, (self.a - 3.5 * self.w, self.bb - 0.8 * self.w), 0.0, 18 * self.L
        )
        pel_inner = _elliptic_cylinder(
            x, y, z, pel_c, (self.a - 5.5 * self.w, self.bb - 2.6 * self.w), 0.0, 18 * self.L
        )
        pelvis = pel_outer & ~pel_inner & (y > -1.0 * self.w)
        pelvis_marrow = (
            pelvis
            & _elliptic_cylinder(
                x, y, z, pel_c, (self.a - 4.3 * self.w, self.bb - 1.5 * self.w), 1.0 * self.L, 17 * self.L
            )
            & ~_elliptic_cylinder(x, y, z, pel_c, (self.a - 4.8 * self.w, self.bb - 2.0 * self.w), 0.0, 18 * self.L)
        )
        ribs = np.zeros(np.broadcast(x, y, z).shape, bool)
        ra, rb = self.a - 1.0 * self.w, self.bb - 0.6 * self.w
        for i in range(10):
            zc = (36.0 + 2.6 * i) * self.L
            ring = _elliptic_cylinder(x, y, z, (0, 0), (ra, rb), zc - 0.5, zc + 0.5)
            ring &= ~_elliptic_cylinder(x, y, z, (0, 0), (ra - 1.0, rb - 1.0), zc - 1, zc + 1)
            ribs |= ring
        head_c = (0, -0.5 * self.w, self.neck_top + 0.45 * (self.head_top - self.neck_top))
        hz = 0.55 * (self.head_top - self.neck_top)
        skull = (
            _ellipsoid(x, y, z, head_c, (6.9 * self.w, 8.9 * self.w, hz - 0.6))
            & ~_ellipsoid(x, y, z, head_c, (6.2 * self.w, 8.2 * self.w, hz - 1.3))
            & (z > self.neck_top + 0.05 * (self.head_top - self.neck_top))
        )
        marrow = spine_inner | pelvis_marrow
        cortical = (spine_outer & ~spine_inner) | (pelvis & ~pelvis_marrow) | ribs | skull
        return cortical & ~marrow, marrow


# organ -> (label, material); painted in this order into free soft tissue
_ORGANS = {
    "brain": (1, "brain"),
    "thyroid": (2, "thyroid"),
    "oesophagus": (3, "soft_tissue_icru44"),
    "adrenals": (4, "soft_tissue_icru44"),
    "kidneys": (5, "soft_tissue_icru44"),
    "pancreas": (6, "soft_tissue_icru44"),
    "spleen": (7, "soft_tissue_icru44"),
    "stomach": (8, "soft_tissue_icru44"),
    "heart": (9, "blood"),
    "liver": (10, "soft_tissue_icru44"),
    "bladder": (11, "soft_tissue_icru44"),
    "gonads": (12, None),
    "colon": (13, "soft_tissue_icru44"),
    "small_intestine": (14, "soft_tissue_icru44"),
    "lungs": (15, "lung"),
    "breasts": (16, "breast"),
}
_SKIN, _SKELETON, _MARROW = 17, 18, 19


def _build(body: _Body, target_g, warp: _Warp, spacing_mm, arms, distribution) -> Phantom:
    anat = _Anatomy(body, arms)
    table = MaterialTable.from_materials(_MATERIALS)
    mid = {name: i for i, name in enumerate(_MATERIALS)}
    margin = 1.0 + 2 * float(warp.amplitude.sum(axis=1).max())
    half_x = anat.a + anat.t + (2 * (3.6 * anat.w + anat.t) + 1.0 if arms else 0.0) + margin
    half_y = anat.bb + anat.t + (6.0 if body.sex == "female" else 1.0) + margin
    lo_z, hi_z = anat.leg_bottom - margin, anat.head_top + margin
    d = spacing_mm / 10.0
    shape = (int(math.ceil((hi_z - lo_z) / d)), int(math.ceil(2 * half_y / d)), int(math.ceil(2 * half_x / d)))
    grid = Grid.centered(shape, (spacing_mm,) * 3, (10 * (lo_z + hi_z) / 2, 0.0, 0.0))
    zz, yy, xx = (np.asarray(a, dtype=np.float64) / 10.0 for a in grid.axes_mm())
    z, y, x = np.meshgrid(zz, yy, xx, indexing="ij")
    x, y, z = warp(x, y, z)

    base_outline = anat.body(x, y, z, fat=True) | anat.scrotum(x, y, z)
    lean = anat.body(x, y, z, fat=False)
    cortical, marrow = anat.skeleton(x, y, z)
    cortical &= base_outline
    marrow &= base_outline
    voxel_cm3 = d**3
    density = np.asarray(table.density_g_cm3)
    organ_material = dict(_ORGANS)
    organ_material["gonads"] = (12, "testes" if body.sex == "male" else "soft_tissue_icru44")
    scale = {name: 1.0 for name in _ORGANS}
    for _ in range(4):  # fit organ sizes so voxelised masses meet their targets
        outline = base_outline
        if body.sex == "female":  # breasts grow with their size, under one layer of skin
            outline = outline | _dilated(anat.breasts(x, y, z, scale["breasts"]))
        skin = outline & ~_eroded(outline)
        ids = np.where(outline, np.where(lean, mid["soft_tissue_icru44"], mid["adipose"]), mid["air"])
        labels = np.zeros(shape, np.int32)
        labels[cortical], ids[cortical] = _SKELETON, mid["cortical_bone"]
        labels[marrow], ids[marrow] = _MARROW, mid["red_marrow"]
        realised = {}
        for name, (label, material) in organ_material.items():
            k = scale[name]
            region = anat.breasts(x, y, z, k) if name == "breasts" else anat.organ_region(name, x, y, z, k)
            free = region & (labels == 0) & outline & ~skin
            labels[free], ids[free] = label, mid[material]
            realised[name] = float(free.sum()) * voxel_cm3 * float(density[mid[material]])
        for name, m in realised.items():
            scale[name] *= (target_g[name] / max(m, 0.5 * voxel_cm3)) ** (1 / 3)
    labels[skin], ids[skin] = _SKIN, mid["skin"]
    rho = density[ids]
    organs = {name: label for name, (label, _) in organ_material.items()}
    organs.update(skin=_SKIN, skeleton=_SKELETON, red_marrow=_MARROW)
    info = {
        "model": "physdose.synthetic_patient",
        "sex": body.sex,
        "height_cm": round(body.height_cm, 2),
        "mass_kg_target": round(body.mass_kg, 2),
        "fat_thickness_cm": round(body.fat_cm, 3),
        "organ_mass_target_g": {k: round(v, 2) for k, v in target_g.items()},
        "spacing_mm": spacing_mm,
        "arms": arms,
        "distribution": (
            distribution.height_sd_cm,
            distribution.mass_sd_fraction,
            distribution.organ_sd_fraction,
            distribution.deformation_mm,
        ),
    }
    return Phantom(grid, ids, rho, table, labels, organs, info=info)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """6-connected binary erosion (voxels outside the array count as outside)."""
    out = mask.copy()
    for axis in range(3):
        for shift in (1, -1):
            out &= _shifted(mask, axis, shift)
    return out


def _dilated(mask: np.ndarray) -> np.ndarray:
    """6-connected binary dilation (nothing enters from outside the array)."""
    out = mask.copy()
    for axis in range(3):
        for shift in (1, -1):
            out |= _shifted(mask, axis, shift)
    return out


def _shifted(mask: np.ndarray, axis: int, shift: int) -> np.ndarray:
    """`mask` moved one voxel along `axis`, filled with False where it wraps."""
    rolled = np.roll(mask, shift, axis=axis)
    edge = [slice(None)] * 3
    edge[axis] = 0 if shift == 1 else -1
    rolled[tuple(edge)] = False
    return rolled
