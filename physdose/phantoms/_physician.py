"""A standing physician: a stylised voxel body with organs, lead shields and dosimeter sites.

The body is built from ellipsoids and elliptic frustums (in the spirit of the MIRD /
Cristy-Eckerman stylised phantoms), point-sampled at voxel centres with numpy. The
module also holds the small geometry helpers the IR room (`_room.py`) reuses.
"""

import math
from dataclasses import dataclass

import numpy as np

from .._checks import check_positive
from ..geometry._grid import Grid
from ..materials._material import get
from ..materials._table import MaterialTable
from ._phantom import Phantom

LEAD_DENSITY_G_CM3 = 11.35
"""Nominal density of lead (g/cm^3); lead layers are scaled against it."""

APRON_MM_PB = (0.25, 0.35, 0.5)
"""Lead-equivalent thicknesses (mm Pb) of the aprons on offer (IEC 61331-3 classes)."""

HEIGHT_RANGE_CM = (140.0, 210.0)

REFERENCE_BODY = {"male": (176.0, 73.0), "female": (163.0, 60.0)}
"""ICRP Publication 89 reference adult height (cm) and mass (kg) by sex."""

# Transverse / longitudinal factors that turn the reference-male template into the
# reference female: lengths scale by 163/176, girths so the volume scales by 60/73.
_FEMALE_LENGTH = 163.0 / 176.0
_FEMALE_GIRTH = math.sqrt((60.0 / 73.0) / _FEMALE_LENGTH)

_AIR_DENSITY_THRESHOLD_G_CM3 = 0.01  # denser voxels count as matter when composing scenes


# --------------------------------------------------------------------------------------
# geometry helpers (numpy; positions (z, y, x) in mm)


@dataclass(frozen=True)
class _Ellipsoid:
    """Ellipsoid with `center` and `semi` axes (z, y, x) (mm), optionally cut below `z_min`."""

    center: tuple[float, float, float]
    semi: tuple[float, float, float]
    z_min: float = -math.inf

    def bounds(self):
        lo = [c - a for c, a in zip(self.center, self.semi)]
        hi = [c + a for c, a in zip(self.center, self.semi)]
        lo[0] = max(lo[0], self.z_min)
        return lo, hi

    def inside(self, z, y, x):
        (cz, cy, cx), (az, ay, ax) = self.center, self.semi
        r = ((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2
        return (r <= 1.0) & (z >= self.z_min)


@dataclass(frozen=True)
class _Frustum:
    """Elliptic frustum along z from `z0` to `z1` (mm).

    Its (y, x) centre and (y, x) semi-axes vary linearly from `center0`, `semi0` at `z0`
    to `center1`, `semi1` at `z1`; equal ends make an elliptic cylinder.
    """

    z0: float
    z1: float
    center0: tuple[float, float]
    center1: tuple[float, float]
    semi0: tuple[float, float]
    semi1: tuple[float, float]

    def bounds(self):
        lo = [self.z0] + [
            min(c0 - a0, c1 - a1) for c0, c1, a0, a1 in zip(self.center0, self.center1, self.semi0, self.semi1)
        ]
        hi = [self.z1] + [
            max(c0 + a0, c1 + a1) for c0, c1, a0, a1 in zip(self.center0, self.center1, self.semi0, self.semi1)
        ]
        return lo, hi

    def inside(self, z, y, x):
        t = np.clip((z - self.z0) / (self.z1 - self.z0), 0.0, 1.0)
        cy, cx = ((1 - t) * a + t * b for a, b in zip(self.center0, self.center1))
        ay, ax = ((1 - t) * a + t * b for a, b in zip(self.semi0, self.semi1))
        return (((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0) & (z >= self.z0) & (z <= self.z1)


@dataclass(frozen=True)
class _Box:
    """Axis-aligned box between corners `lo` and `hi` (z, y, x) (mm)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def bounds(self):
        return list(self.lo), list(self.hi)

    def inside(self, z, y, x):
        (z0, y0, x0), (z1, y1, x1) = self.lo, self.hi
        return (z >= z0) & (z <= z1) & (y >= y0) & (y <= y1) & (x >= x0) & (x <= x1)


def _axes(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm) along z, y, x, in float64."""
    return tuple(o + d * np.arange(n) for o, d, n in zip(grid.origin_mm, grid.spacing_mm, grid.shape))


def _mask(shape, axes) -> np.ndarray:
    """Voxels of the grid with centre `axes` whose centre lies inside `shape` (bool, z y x)."""
    out = np.zeros(tuple(len(a) for a in axes), dtype=bool)
    lo, hi = shape.bounds()
    sl = tuple(
        slice(np.searchsorted(a, a0, "left"), np.searchsorted(a, a1, "right")) for a, a0, a1 in zip(axes, lo, hi)
    )
    z, y, x = (a[s] for a, s in zip(axes, sl))
    out[sl] = shape.inside(z[:, None, None], y[None, :, None], x[None, None, :])
    return out


def _nearest_voxel(axes, point_mm) -> tuple[int, int, int]:
    """Index of the voxel whose centre is nearest `point_mm` (clipped to the grid)."""
    return tuple(int(np.clip(np.argmin(np.abs(a - p)), 0, len(a) - 1)) for a, p in zip(axes, point_mm))


def _shift(mask: np.ndarray, axis: int, step: int) -> np.ndarray:
    """`mask` moved by `step` (+1 / -1) voxels along `axis`, False shifted in."""
    out = np.zeros_like(mask)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    if step > 0:
        src[axis], dst[axis] = slice(None, -step), slice(step, None)
    else:
        src[axis], dst[axis] = slice(-step, None), slice(None, step)
    out[tuple(dst)] = mask[tuple(src)]
    return out


def _dilate(mask: np.ndarray, axes=(0, 1, 2)) -> np.ndarray:
    """One-voxel dilation of `mask` along `axes` (face neighbours only)."""
    out = mask.copy()
    for a in axes:
        out |= _shift(mask, a, 1) | _shift(mask, a, -1)
    return out


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of `mask` with at least one face neighbour outside it (grid edges count as outside)."""
    interior = mask.copy()
    for a in range(3):
        interior &= _shift(mask, a, 1) & _shift(mask, a, -1)
    return mask & ~interior


def lead_layer_density_g_cm3(thickness_mm_pb: float, layer_mm: float) -> float:
    """Density (g/cm^3) of a `layer_mm`-thick lead voxel layer standing for `thickness_mm_pb` of lead.

    Keeps the areal density (mass thickness) of the real sheet: rho * layer_mm / 10 =
    thickness_mm_pb * 11.35 / 10 g/cm^2. The transmission of normally incident primary
    photons, exp(-(mu/rho) * areal density), is then exact; the sheet's geometric
    thickness is inflated to one voxel.
    """
    return thickness_mm_pb * LEAD_DENSITY_G_CM3 / layer_mm


def _front_index(column: np.ndarray) -> int:
    """Index of the first True entry of a 1-d mask (-1 if none)."""
    hits = np.flatnonzero(column)
    return int(hits[0]) if hits.size else -1


# --------------------------------------------------------------------------------------
# the reference-male template (mm; z up from the soles, y posterior, x body left)

_TEMPLATE = {
    "leg_x": 100.0,
    "leg_top_z": 830.0,
    "leg_semi_bottom": 45.0,
    "leg_semi_top": 85.0,
    "trunk_z": (820.0, 1425.0),
    "trunk_semi": (110.0, 170.0),  # (y, x)
    "shoulder_cap_z": 45.0,
    "neck_z": (1400.0, 1560.0),
    "neck_semi": 55.0,
    "head_center_z": 1645.0,
    "head_semi": (115.0, 95.0, 75.0),  # (z, y, x)
    "arm_z": (700.0, 1420.0),
    "arm_x": (215.0, 225.0),  # centre at the hand, at the shoulder
    "arm_semi": (32.0, 50.0),  # at the hand, at the shoulder
    "scrotum": ((800.0, -45.0, 0.0), (30.0, 28.0, 30.0)),
    "testis": ((790.0, -50.0, 15.0), (22.0, 14.0, 12.0)),  # x of the left one
    "ovary": ((930.0, 10.0, 55.0), (16.0, 8.0, 10.0)),
    "breast_female": ((1240.0, -95.0, 90.0), (42.0, 38.0, 45.0)),
    "breast_male": ((1240.0, -90.0, 90.0), (25.0, 10.0, 25.0)),
    "lung": ((1260.0, 10.0, 85.0), (135.0, 75.0, 55.0)),
    "brain": ((1665.0, 5.0, 0.0), (65.0, 80.0, 60.0)),
    "thyroid_lobe": ((1495.0, -30.0, 15.0), (22.0, 10.0, 10.0)),
    "eye": (1660.0, 32.0),  # (z, x of the left eye)
    "chest_z": 1250.0,
    "apron_bottom_z": 528.0,  # 0.30 H: a hand above the knee
    "collar_half_height": 40.0,
    "glasses_half_width": 65.0,
    "glasses_half_height": (20.0, 25.0),  # below, above the eyes
}


def physician(
    height_cm: float = 175.0,
    *,
    spacing_mm: float = 5.0,
    sex: str = "male",
    mass_kg: float | None = None,
    apron_mm_pb: float | None = None,
    apron_wrap: bool = False,
    thyroid_collar: bool = False,
    collar_mm_pb: float = 0.5,
    lead_glasses: bool = False,
    glasses_mm_pb: float = 0.75,
) -> Phantom:
    """A standing physician: a stylised voxel body with organs, optional lead shields and dosimeter sites.

    Frame (the phantom's own, before it is placed in a room): patient-frame axes of a
    standing person, (z, y, x) in mm, z = 0 at the soles and +z up (head at +z), -y anterior
    (the body faces -y), +x the body's left; x = 0 is the mid-sagittal plane and y = 0 the
    mid-coronal plane of the trunk. Voxels are cubes of `spacing_mm`; x = 0 and y = 0 are
    voxel centres and z = 0 is a voxel face, so `ir_room` can place the body without
    resampling.

    Body (stylised, MIRD-like): legs (elliptic frustums), trunk (elliptic cylinder with a
    shoulder cap), arms hanging at the sides, neck (cylinder) and head (ellipsoid). The
    template is the ICRP Publication 89 reference adult: male 176 cm / 73 kg, female
    163 cm / 60 kg (same shapes, lengths x 163/176, girths so the volume scales 60/73).
    Lengths scale with `height_cm`; girths so that the mass is `mass_kg`, by default the
    reference body-mass index (mass = reference mass x (height / reference height)^2,
    e.g. 72.2 kg at 175 cm for a male). The voxelised mass is within a few per cent of it.

    Regions (`organs`): "body" (remaining soft tissue, ICRU-44), "skin" (the outer voxel
    layer), "brain", "lungs", "thyroid" (two lobes), "breasts" (female: protruding; male: a
    thin layer under the chest skin), "gonads" (testes in a scrotum, or ovaries),
    "left_eye_lens" and "right_eye_lens" (each the surface voxel of the face in front of
    the eye: a lens lies about 3 mm deep, less than a voxel), and the lead layers "apron",
    "thyroid_collar", "lead_glasses" where worn. Small organs always keep at least one voxel.

    Lead layers: a 0.25-0.5 mm sheet cannot be voxelised at 5 mm, so each shield is ONE
    voxel layer of lead whose density is scaled to keep the sheet's areal density:
    rho = t_mm_pb * 11.35 / spacing_mm g/cm^3, i.e. rho * spacing_mm / 10 =
    t_mm_pb * 1.135 g/cm^2 along the layer's normal (exact primary transmission at normal
    incidence; the layer is thicker than the sheet, so it sits up to a voxel off the skin).
    The apron is the layer of air voxels face-adjacent (within each horizontal slice) to
    the trunk, breasts, scrotum and thighs, from 0.30 x height up over the shoulders, on
    the anterior half (y <= 0) or all round with `apron_wrap`, plus a sheet bridging the
    gap in front of and between the thighs. The collar wraps the neck 4 cm above and below
    the thyroid; the glasses are a flat plate in front of both eyes, one air voxel off the face.

    Dosimeter sites (`points`, name -> (position_mm, outward unit normal), all normals
    (0, -1, 0), anterior): each lies on a voxel face with matter just inside (along
    -normal) and air just outside:

    - "chest_under_apron": skin of the sternum at 0.71 x height (just outside it is the
      apron's lead when one is worn, else air);
    - "chest_over_apron": the apron's outer face in front of it (the skin point without apron);
    - "collar": neck front at thyroid level, on the collar's outer face when worn;
    - "left_eye", "right_eye": the face surface in front of each eye lens (under the glasses).

    Args:
        height_cm: standing height (cm), 140-210.
        spacing_mm: isotropic voxel size (mm), 0 < spacing_mm <= 20; 5-10 mm builds in
            well under a second.
        sex: "male" or "female".
        mass_kg: body mass (kg); default the reference body-mass index for `height_cm`.
            The implied body-mass index must lie in 16-40 kg/m^2.
        apron_mm_pb: lead apron, None or its lead equivalent 0.25, 0.35 or 0.5 (mm Pb).
        apron_wrap: wrap-around apron (covers the back too) instead of a front apron.
        thyroid_collar: wear a thyroid collar of `collar_mm_pb` (mm Pb, default 0.5).
        lead_glasses: wear lead glasses of `glasses_mm_pb` (mm Pb, default 0.75, front).

    Returns:
        The Phantom (material ids, densities g/cm^3, organ labels on a (z, y, x) grid),
        with `points` as above and `info` recording the parameters, the reference mass
        (`reference_mass_kg`) and the scale factors.

    Raises:
        ValueError: a parameter outside its range (named with its value).

    Examples:
        >>> p = physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35)
        >>> sorted(p.points)
        ['chest_over_apron', 'chest_under_apron', 'collar', 'left_eye', 'right_eye']
    """
    height_cm, spacing, sex, mass_kg, apron_mm_pb = _check_physician_args(
        height_cm, spacing_mm, sex, mass_kg, apron_mm_pb, collar_mm_pb, glasses_mm_pb
    )
    ref_height, ref_mass = REFERENCE_BODY[sex]
    sex_len, sex_girth = (1.0, 1.0) if sex == "male" else (_FEMALE_LENGTH, _FEMALE_GIRTH)
    length_scale = height_cm / ref_height
    s_len = sex_len * length_scale
    s_tr = sex_girth * math.sqrt(mass_kg / ref_mass / length_scale)
    t = _TEMPLATE

    def pz(v):  # a z position / z semi-axis
        return v * s_len

    def pt(v):  # a y or x position / semi-axis
        return v * s_tr

    def ell(spec, mirror=1.0):
        (cz, cy, cx), (az, ay, ax) = spec
        return _Ellipsoid((pz(cz), pt(cy), mirror * pt(cx)), (pz(az), pt(ay), pt(ax)))

    def pair(spec):  # left (+x) and right copies
        return [ell(spec, 1.0), ell(spec, -1.0)]

    # ---- body parts
    leg_top = pz(t["leg_top_z"])
    legs = [
        _Frustum(
            0.0,
            leg_top,
            (0.0, side * pt(t["leg_x"])),
            (0.0, side * pt(t["leg_x"])),
            (pt(t["leg_semi_bottom"]),) * 2,
            (pt(t["leg_semi_top"]),) * 2,
        )
        for side in (1.0, -1.0)
    ]
    tz0, tz1 = (pz(v) for v in t["trunk_z"])
    trunk_semi = tuple(pt(v) for v in t["trunk_semi"])
    trunk = [
        _Frustum(tz0, tz1, (0.0, 0.0), (0.0, 0.0), trunk_semi, trunk_semi),
        _Ellipsoid((tz1, 0.0, 0.0), (pz(t["shoulder_cap_z"]), *trunk_semi), z_min=tz1),
    ]
    arms = [
        _Frustum(
            pz(t["arm_z"][0]),
            pz(t["arm_z"][1]),
            (0.0, side * pt(t["arm_x"][0])),
            (0.0, side * pt(t["arm_x"][1])),
            (pt(t["arm_semi"][0]),) * 2,
            (pt(t["arm_semi"][1]),) * 2,
        )
        for side in (1.0, -1.0)
    ]
    neck_r = pt(t["neck_semi"])
    neck = [_Frustum(pz(t["neck_z"][0]), pz(t["neck_z"][1]), (0.0, 0.0), (0.0, 0.0), (neck_r,) * 2, (neck_r,) * 2)]
    head_c = pz(t["head_center_z"])
    head_semi = (pz(t["head_semi"][0]), pt(t["head_semi"][1]), pt(t["head_semi"][2]))
    head = [_Ellipsoid((head_c, 0.0, 0.0), head_semi)]
    if sex == "male":
        front_parts = [ell(t["scrotum"])]
        breasts = pair(t["breast_male"])
        gonads = pair(t["testis"])
    else:
        breasts = pair(t["breast_female"])
        front_parts = list(breasts)
        gonads = pair(t["ovary"])
    parts = {"legs": legs, "trunk": trunk, "arms": arms, "neck": neck, "head": head, "front": front_parts}

    # ---- grid: cubic voxels, x = 0 and y = 0 voxel centres, z = 0 (soles) a voxel face
    lo = np.min([s.bounds()[0] for ss in parts.values() for s in ss], axis=0)
    hi = np.max([s.bounds()[1] for ss in parts.values() for s in ss], axis=0)
    margin = 4  # voxels of air around the body: apron + glasses + gaps
    ny0 = int(math.ceil(-lo[1] / spacing)) + margin
    ny1 = int(math.ceil(hi[1] / spacing)) + margin
    nx = int(math.ceil(max(-lo[2], hi[2]) / spacing)) + margin
    nz = int(math.ceil(hi[0] / spacing)) + margin
    grid = Grid((nz + 1, ny0 + ny1 + 1, 2 * nx + 1), (spacing,) * 3, (-0.5 * spacing, -ny0 * spacing, -nx * spacing))
    axes = _axes(grid)

    part_masks = {name: np.any([_mask(s, axes) for s in ss], axis=0) for name, ss in parts.items()}
    body = np.any(list(part_masks.values()), axis=0)

    # ---- organs, painted in order onto labels
    names = ["body", "skin", "brain", "lungs", "thyroid", "breasts", "gonads", "left_eye_lens", "right_eye_lens"]
    organ_material = {
        "body": "soft_tissue_icru44",
        "skin": "skin",
        "brain": "brain",
        "lungs": "lung",
        "thyroid": "thyroid",
        "breasts": "breast",
        "gonads": "testes" if sex == "male" else "soft_tissue_icru44",
        "left_eye_lens": "eye_lens",
        "right_eye_lens": "eye_lens",
    }
    lab = {n: i + 1 for i, n in enumerate(names)}
    labels = np.where(body, lab["body"], 0).astype(np.int32)

    def paint(organ, shapes, within):
        for s in shapes:
            m = _mask(s, axes) & within
            if not m.any():  # a small organ keeps at least the voxel nearest its centre
                m = np.zeros_like(m)
                m[_nearest_voxel(axes, s.center)] = True
            labels[m] = lab[organ]

    paint("brain", [ell(t["brain"])], body)
    paint("lungs", pair(t["lung"]), body)
    paint("breasts", breasts, body)
    paint("thyroid", pair(t["thyroid_lobe"]), body)
    skin = _surface(body) & np.isin(labels, (lab["body"], lab["breasts"]))
    labels[skin] = lab["skin"]
    paint("gonads", gonads, body)

    # eye lenses: the face's surface voxel in front of each eye
    eye_z, eye_x = pz(t["eye"][0]), pt(t["eye"][1])
    eye_voxels = {}
    for organ, x in (("left_eye_lens", eye_x), ("right_eye_lens", -eye_x)):
        iz, _, ix = _nearest_voxel(axes, (eye_z, 0.0, x))
        iy = _front_index(body[iz, :, ix])
        labels[iz, iy, ix] = lab[organ]
        eye_voxels[organ] = (iz, iy, ix)

    # ---- lead layers
    lead = {}  # name -> (mask, thickness mm Pb)
    occupied = body.copy()
    if apron_mm_pb is not None:
        covered = part_masks["trunk"] | part_masks["legs"] | part_masks["front"]
        shell = _dilate(covered, axes=(1, 2)) & ~body
        shell &= (axes[0] >= pz(t["apron_bottom_z"]))[:, None, None]
        if not apron_wrap:
            shell &= (axes[1] <= 0.0)[None, :, None]
        # a sheet bridging the thighs: in each slice below the crotch, the row just in
        # front of the most anterior thigh voxel, between the thigh centre lines
        leg_x = pt(t["leg_x"])
        between = np.abs(axes[2]) <= leg_x
        for iz in np.flatnonzero((axes[0] >= pz(t["apron_bottom_z"])) & (axes[0] < leg_top)):
            rows = np.flatnonzero(covered[iz].any(axis=1))
            if rows.size and rows[0] > 0:
                shell[iz, rows[0] - 1, between] = True
        shell &= ~body
        lead["apron"] = (shell, apron_mm_pb)
        occupied |= shell
    if thyroid_collar:
        zt = pz(t["thyroid_lobe"][0][0])
        ring = _dilate(part_masks["neck"], axes=(1, 2)) & ~occupied
        ring &= (np.abs(axes[0] - zt) <= pz(t["collar_half_height"]))[:, None, None]
        lead["thyroid_collar"] = (ring, collar_mm_pb)
        occupied |= ring
    if lead_glasses:
        below, above = (pz(v) for v in t["glasses_half_height"])
        zs = (axes[0] >= eye_z - below) & (axes[0] <= eye_z + above)
        xs = np.abs(axes[2]) <= pt(t["glasses_half_width"])
        region = zs[:, None, None] & xs[None, None, :] & np.ones_like(body)
        face_front = _front_index(body[zs][:, :, xs].any(axis=(0, 2)))  # most anterior row of the face
        plate = np.zeros_like(body)
        plate[:, face_front - 2, :] = True  # one air voxel between the face and the plate
        lead["lead_glasses"] = (plate & region & ~occupied, glasses_mm_pb)
        occupied |= lead["lead_glasses"][0]

    # ---- materials and densities
    mat_names = ["air", *dict.fromkeys(organ_material[n] for n in names)]
    if lead:
        mat_names.append("lead")
    mats = [get(m) for m in mat_names]
    mat_id = {m: i for i, m in enumerate(mat_names)}
    ids = np.zeros(grid.shape, np.int32)
    rho = np.full(grid.shape, get("air").density_g_cm3, np.float64)
    for n in names:
        m = labels == lab[n]
        ids[m] = mat_id[organ_material[n]]
        rho[m] = mats[mat_id[organ_material[n]]].density_g_cm3
    organs = {n: lab[n] for n in names}
    for k, (name, (m, thickness)) in enumerate(lead.items()):
        organs[name] = len(names) + 1 + k
        labels[m] = organs[name]
        ids[m] = mat_id["lead"]
        rho[m] = lead_layer_density_g_cm3(thickness, spacing)

    # ---- dosimeter sites on voxel faces, normal anterior (-y)
    def front_point(iz, ix, mask):
        iy = _front_index(mask[iz, :, ix])
        return (float(axes[0][iz]), float(axes[1][iy] - spacing / 2), float(axes[2][ix]))

    anterior = (0.0, -1.0, 0.0)
    iz_chest, _, ix0 = _nearest_voxel(axes, (pz(t["chest_z"]), 0.0, 0.0))
    iz_collar, _, _ = _nearest_voxel(axes, (pz(t["thyroid_lobe"][0][0]), 0.0, 0.0))
    points = {
        "chest_over_apron": (front_point(iz_chest, ix0, occupied), anterior),
        "chest_under_apron": (front_point(iz_chest, ix0, body), anterior),
        "collar": (front_point(iz_collar, ix0, occupied), anterior),
    }
    for site, organ in (("left_eye", "left_eye_lens"), ("right_eye", "right_eye_lens")):
        iz, iy, ix = eye_voxels[organ]
        points[site] = ((float(axes[0][iz]), float(axes[1][iy] - spacing / 2), float(axes[2][ix])), anterior)

    info = {
        "kind": "physician",
        "frame": "standing; z up from the soles (z=0), faces -y, +x body left",
        "height_cm": height_cm,
        "mass_kg": mass_kg,
        "reference_mass_kg": ref_mass * length_scale**2,
        "sex": sex,
        "spacing_mm": spacing,
        "apron_mm_pb": apron_mm_pb,
        "apron_wrap": bool(apron_wrap),
        "thyroid_collar_mm_pb": float(collar_mm_pb) if thyroid_collar else None,
        "lead_glasses_mm_pb": float(glasses_mm_pb) if lead_glasses else None,
        "length_scale": s_len,
        "girth_scale": s_tr,
    }
    return Phantom(grid, ids, rho, MaterialTable.from_materials(mats), labels, organs, points, info)


def _check_physician_args(height_cm, spacing_mm, sex, mass_kg, apron_mm_pb, collar_mm_pb, glasses_mm_pb):
    try:
        height = float(height_cm)
    except (TypeError, ValueError):
        raise ValueError(f"height_cm must be a number of centimetres, got {height_cm!r}") from None
    if not HEIGHT_RANGE_CM[0] <= height <= HEIGHT_RANGE_CM[1]:
        raise ValueError(f"height_cm must lie in {HEIGHT_RANGE_CM[0]:g}-{HEIGHT_RANGE_CM[1]:g} cm, got {height_cm!r}")
    check_positive("spacing_mm", spacing_mm)
    if np.ndim(spacing_mm) != 0 or not float(spacing_mm) <= 20.0:
        raise ValueError(f"spacing_mm must be one isotropic voxel size in (0, 20] mm, got {spacing_mm!r}")
    if sex not in REFERENCE_BODY:
        raise ValueError(f"sex must be 'male' or 'female', got {sex!r}")
    ref_height, ref_mass = REFERENCE_BODY[sex]
    if mass_kg is None:
        mass = ref_mass * (height / ref_height) ** 2
    else:
        check_positive("mass_kg", mass_kg)
        mass = float(mass_kg)
        bmi = mass / (height / 100.0) ** 2
        if not 16.0 <= bmi <= 40.0:
            raise ValueError(
                f"mass_kg={mass_kg!r} at height_cm={height_cm!r} gives a body-mass index of {bmi:.1f} kg/m^2; "
                "it must lie in 16-40"
            )
    if apron_mm_pb is not None and (
        isinstance(apron_mm_pb, bool)
        or not isinstance(apron_mm_pb, int | float | np.integer | np.floating)
        or not any(abs(float(apron_mm_pb) - a) < 1e-6 for a in APRON_MM_PB)
    ):
        raise ValueError(f"apron_mm_pb must be None or one of {APRON_MM_PB} (mm Pb), got {apron_mm_pb!r}")
    for name, value in (("collar_mm_pb", collar_mm_pb), ("glasses_mm_pb", glasses_mm_pb)):
        check_positive(name, value)
        if not float(value) <= 2.0:
            raise ValueError(f"{name} must lie in (0, 2] mm Pb, got {value!r}")
    apron = None if apron_mm_pb is None else min(APRON_MM_PB, key=lambda a: abs(a - float(apron_mm_pb)))
    return height, float(spacing_mm), sex, mass, apron
