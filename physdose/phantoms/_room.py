"""The interventional-radiology room: patient on the table, physician beside it, lead shields."""

import math

import numpy as np

from .._checks import check_nonnegative, check_positive
from ..geometry._grid import Grid
from ..materials._material import get
from ..materials._table import MaterialTable
from . import _physician as _phys
from ._phantom import Phantom

_MARGIN_VOXELS = 2  # air around the scene
_TABLE_END_MM = 200.0  # table beyond the patient's head and feet
_TABLE_PAST_PHYSICIAN_MM = 400.0  # table beyond the physician on either side
_CURTAIN_HALF_WIDTH_MM = 400.0
_CURTAIN_LENGTH_MM = 700.0  # hangs this far below the table surface
_SHIELD_SIZE_MM = (600.0, 600.0)  # (along z, vertical)
_SHIELD_GAP_MM = 20.0  # lower edge above the patient's anterior surface
_STAND_IN = {"semi_mm": (100.0, 150.0), "length_mm": 600.0}  # (y, x) semi-axes; along z


def ir_room(
    patient: Phantom | None = None,
    physician: Phantom | None = None,
    *,
    physician_position_mm: tuple[float, float] | None = None,
    spacing_mm: float = 8.0,
    table: bool = True,
    ceiling_shield: bool = False,
    table_curtain: bool = False,
    table_height_mm: float = 900.0,
    table_width_mm: float = 500.0,
    mattress_mm: float = 40.0,
    table_top_mm: float = 3.0,
    shield_mm_pb: float = 0.5,
    curtain_mm_pb: float = 0.5,
) -> Phantom:
    """An interventional room: supine patient on the table, physician standing beside it, shields.

    Everything is composed into one Phantom on one world grid of cubic `spacing_mm` voxels
    whose frame is the patient frame: (z, y, x) in mm, +z toward the patient's head, +y
    posterior (down toward the floor, the patient lies supine), +x the patient's left. The
    patient phantom keeps its own coordinates, so with the isocentre at the origin (the
    default of `physdose.sources.CArm`, and the centre of the stand-in patient) a C-arm
    exposure can be used on the room directly.

    Composition: every part is brought onto the room's voxel lattice (identity or a
    sub-voxel shift when its spacing already matches, else `Phantom.resample`: nearest
    neighbour for ids and labels, region masses kept) and its matter voxels (density
    > 0.01 g/cm^3 or a label) are painted in order: patient, mattress and tabletop,
    curtain, ceiling shield, physician. Materials are merged by name into one
    MaterialTable (id 0 is air). Labels keep their names with a prefix ("patient/lungs",
    "physician/left_eye_lens", "physician/apron"); matter without a label becomes
    "patient/body" or "physician/body"; the room adds "mattress", "table",
    "table_curtain" and "ceiling_shield". The physician's `points` are carried over as
    "physician/<name>" (positions moved, normals rotated), the patient's as "patient/<name>".

    Table: a cushion-foam mattress (`mattress_mm`, whole voxels) directly under the
    patient's lowest (most posterior) voxel, on a carbon-fibre tabletop of one voxel whose
    density keeps the areal density of `table_top_mm` of carbon fibre (1.2 g/cm^3),
    `table_width_mm` wide, running the patient's length plus 200 mm at each end (and at
    least 400 mm past the physician). The floor lies `table_height_mm` (rounded to whole
    voxels) below the tabletop's upper surface, i.e. at larger y; it is where the
    physician's soles are and holds no material. Without `table` the floor is placed as if
    the table were there.

    Physician: stands with the soles on the floor at `physician_position_mm` = (z, x) of
    the body axis (rounded to the nearest voxel centre), facing the table. The physician
    phantom is taken in its own standing frame (as built by `physician`: head +z', faces
    -y', left +x', body axis at x' = y' = 0, soles at its lowest voxel) and rotated so that

    - the head points up, toward -y: y = y_floor - (z' - z'_soles);
    - on the patient's right (x < 0) the face looks toward +x: x = x_c - y', and the
      physician's left points to the patient's head: z = z_c + x';
    - on the patient's left (x > 0) the face looks toward -x: x = x_c + y', z = z_c - x'.

    Both are proper rotations (no mirroring). The physician must clear the patient, table,
    curtain and shield by at least one voxel of air, and is built with
    `physician(spacing_mm=spacing_mm)` (no lead) when not given.

    Shields, each one voxel layer of lead with the density that keeps the areal density of
    its lead equivalent (see `physician`):

    - `ceiling_shield`: a ceiling-suspended lead-acrylic plate (`shield_mm_pb`, default
      0.5 mm Pb), vertical, 600 mm along z centred halfway between the isocentre (z = 0)
      and the physician, 600 mm tall with its lower edge 20 mm above the patient's
      anterior surface, in the voxel plane halfway between the table edge and the
      physician's front: it sits between the patient's torso and the physician's head.
    - `table_curtain`: a lead curtain (`curtain_mm_pb`, default 0.5 mm Pb) hanging from the
      tabletop on the physician's side, in the voxel plane just outside the table edge,
      700 mm long and 800 mm wide centred on the physician.

    When `patient` is None a documented stand-in is built: a soft-tissue (ICRU-44)
    elliptic-cylinder trunk 300 mm wide (x), 200 mm deep (y) and 600 mm long (z), centred
    at the origin, with two lung ellipsoids in its upper half ("left_lung" at +x,
    "right_lung"). Any Phantom in the patient frame is accepted instead.

    Args:
        patient: the patient, supine, in patient coordinates; default the stand-in.
        physician: the physician in its own standing frame; default `physician(spacing_mm=spacing_mm)`.
        physician_position_mm: (z, x) of the physician's body axis on the floor (mm);
            default (-200, -(table_width_mm / 2 + 250)): on the patient's right, 200 mm
            toward the feet from the isocentre.
        spacing_mm: isotropic voxel size of the room (mm), 0 < spacing_mm <= 20.
        table: add the mattress and tabletop.
        ceiling_shield: add the ceiling-suspended shield.
        table_curtain: add the table-side lead curtain.
        table_height_mm: floor to tabletop upper surface (mm), 500-1300.
        table_width_mm: tabletop width (mm).
        mattress_mm: mattress thickness (mm, >= 0).
        table_top_mm: solid carbon-fibre thickness of the tabletop's areal density (mm).
        shield_mm_pb, curtain_mm_pb: lead equivalents (mm Pb), in (0, 2].

    Returns:
        The room Phantom; `info` records the geometry (floor, tabletop surface, physician
        position and side, shields) in room coordinates.

    Raises:
        TypeError: `patient` or `physician` is not a Phantom.
        ValueError: a bad parameter, or a physician position that overlaps (or touches)
            the patient, table, curtain or shield; the message names the argument and value.

    Examples:
        >>> room = ir_room(spacing_mm=10.0, table_curtain=True)
        >>> room.points["physician/left_eye"][1]  # the eyes look at the table (+x)
        (0.0, 0.0, 1.0)
    """
    s = _check_room_args(
        spacing_mm, table_height_mm, table_width_mm, mattress_mm, table_top_mm, shield_mm_pb, curtain_mm_pb
    )
    for name, value in (("patient", patient), ("physician", physician)):
        if value is not None and not isinstance(value, Phantom):
            raise TypeError(f"{name} must be a physdose Phantom or None, got {type(value).__name__}")
    if physician_position_mm is None:
        physician_position_mm = (-200.0, -(table_width_mm / 2 + 250.0))
    pos = _check_position(physician_position_mm)

    # ---- the lattice: the patient's own when it already has cubic voxels of `spacing_mm`
    if patient is None:
        patient = _stand_in_patient(s)
    if patient.grid.spacing_mm == (s, s, s):
        offset = tuple(o % s for o in patient.grid.origin_mm)
    else:
        offset = (0.0, 0.0, 0.0)
    lattice = _Lattice(s, offset)
    patient = lattice.place(patient)
    patient_matter = _matter(patient)
    if not patient_matter.any():
        raise ValueError("patient has no voxel denser than 0.01 g/cm^3 and no labelled voxel")
    p_lo, p_hi = _matter_bounds(patient, patient_matter)

    # ---- table and floor (y grows toward the floor)
    y_back = p_hi[1]  # the patient's most posterior voxel face
    n_mattress = max(1, round(mattress_mm / s)) if mattress_mm > 0 else 0
    y_table_surface = y_back + n_mattress * s  # the tabletop's upper surface (mattress underside)
    y_top_row = y_table_surface + s / 2  # centre of the one-voxel tabletop row
    y_floor = y_table_surface + round(table_height_mm / s) * s

    # ---- physician in the room frame
    z_c, x_c = (lattice.snap_center(v, axis) for v, axis in zip(pos, (0, 2)))
    side = 1.0 if x_c > 0 else -1.0
    if physician is None:
        physician = _phys.physician(spacing_mm=s)
    doc = _stand(physician, z_c, y_floor, x_c, side)
    doc = lattice.place(doc)
    doc_matter = _matter(doc)

    # ---- room parts as boxes (mm, voxel-centre tests)
    half_w = table_width_mm / 2
    table_z = (
        min(p_lo[0] - _TABLE_END_MM, z_c - _TABLE_PAST_PHYSICIAN_MM),
        max(p_hi[0] + _TABLE_END_MM, z_c + _TABLE_PAST_PHYSICIAN_MM),
    )
    boxes = {}  # label -> (box, material, density g/cm^3)
    if table:
        if n_mattress:
            boxes["mattress"] = (
                _phys._Box((table_z[0], y_back, -half_w), (table_z[1], y_table_surface, half_w)),
                "cushion_foam",
                get("cushion_foam").density_g_cm3,
            )
        boxes["table"] = (
            _phys._Box((table_z[0], y_top_row - s / 2, -half_w), (table_z[1], y_top_row + s / 2, half_w)),
            "carbon_fibre",
            table_top_mm * get("carbon_fibre").density_g_cm3 / s,
        )
    edge_x = lattice.snap_center(side * half_w, 2)
    if side * edge_x > half_w:  # the outermost table column lies inside the width
        edge_x -= side * s
    if table_curtain:
        x = edge_x + side * s
        boxes["table_curtain"] = (
            _phys._Box(
                (max(z_c - _CURTAIN_HALF_WIDTH_MM, table_z[0]), y_top_row - s / 2, x - s / 4),
                (min(z_c + _CURTAIN_HALF_WIDTH_MM, table_z[1]), y_table_surface + _CURTAIN_LENGTH_MM, x + s / 4),
            ),
            "lead",
            _phys.lead_layer_density_g_cm3(curtain_mm_pb, s),
        )
    if ceiling_shield:
        above_table = doc_matter & (_phys._axes(doc.grid)[1] < y_table_surface)[None, :, None]
        xs = _phys._axes(doc.grid)[2][above_table.any(axis=(0, 1))]
        front_x = xs.max() if side < 0 else xs.min()
        x = lattice.snap_center((side * half_w + front_x) / 2, 2)
        y_low = p_lo[1] - _SHIELD_GAP_MM
        z_mid = z_c / 2
        boxes["ceiling_shield"] = (
            _phys._Box(
                (z_mid - _SHIELD_SIZE_MM[0] / 2, y_low - _SHIELD_SIZE_MM[1], x - s / 4),
                (z_mid + _SHIELD_SIZE_MM[0] / 2, y_low, x + s / 4),
            ),
            "lead",
            _phys.lead_layer_density_g_cm3(shield_mm_pb, s),
        )

    # ---- the room grid: everything plus a margin of air
    parts = [patient.grid.bounds_mm, doc.grid.bounds_mm] + [(b.lo, b.hi) for b, _, _ in boxes.values()]
    lo = np.min([p[0] for p in parts], axis=0) - _MARGIN_VOXELS * s
    hi = np.max([p[1] for p in parts], axis=0) + _MARGIN_VOXELS * s
    grid = lattice.grid(lo, hi)

    # ---- materials and labels
    mat_names, materials = ["air"], {"air": get("air")}

    def material_id(m):
        m = get(m)
        if m.name in materials and materials[m.name] != m:
            raise ValueError(f"two different materials are both named {m.name!r}; rename one")
        if m.name not in materials:
            materials[m.name] = m
            mat_names.append(m.name)
        return mat_names.index(m.name)

    organs: dict[str, int] = {}

    def label(name):
        return organs.setdefault(name, len(organs) + 1)

    ids = np.zeros(grid.shape, np.int32)
    rho = np.full(grid.shape, get("air").density_g_cm3, np.float64)
    labels = np.zeros(grid.shape, np.int32)

    def paint_phantom(ph, matter, prefix):
        mlut = np.array([material_id(m) for m in ph.materials.materials], np.int32)
        by_value = {v: k for k, v in ph.organs.items()}
        ph_labels = np.asarray(ph.organ_labels)
        llut = np.zeros(max(by_value, default=0) + 1, np.int32)
        for v in sorted(set(np.unique(ph_labels[matter]).tolist()) - {0}):
            llut[v] = label(f"{prefix}/{by_value[v]}")
        if (matter & (ph_labels == 0)).any():
            llut[0] = label(f"{prefix}/body")
        sl = _slices(grid, ph.grid)
        ids[sl][matter] = mlut[np.asarray(ph.material_ids)[matter]]
        rho[sl][matter] = np.asarray(ph.density_g_cm3, np.float64)[matter]
        labels[sl][matter] = llut[ph_labels[matter]]

    paint_phantom(patient, patient_matter, "patient")
    axes = _phys._axes(grid)
    for name, (box, material, density) in boxes.items():
        m = _phys._mask(box, axes) & (labels == 0)
        ids[m], rho[m], labels[m] = material_id(material), density, label(name)

    # ---- the physician clears everything by a voxel of air
    doc_room = np.zeros(grid.shape, bool)
    doc_room[_slices(grid, doc.grid)] = doc_matter
    hit = np.unique(labels[_phys._dilate(doc_room) & (labels > 0)])
    if hit.size:
        names = sorted({k.split("/")[0] for k, v in organs.items() if v in hit.tolist()})
        raise ValueError(
            f"physician_position_mm={tuple(physician_position_mm)} puts the physician in contact with "
            f"{names}; leave at least one voxel ({s:g} mm) of air (the table edge is at x = {side * half_w:g} mm)"
        )
    paint_phantom(doc, doc_matter, "physician")

    points = {f"patient/{k}": v for k, v in patient.points.items()}
    points.update({f"physician/{k}": v for k, v in doc.points.items()})
    info = {
        "kind": "ir_room",
        "frame": "patient frame: +x patient left, +y posterior (toward the floor), +z head",
        "spacing_mm": s,
        "physician_position_mm": (float(z_c), float(x_c)),
        "physician_side": "patient_left" if side > 0 else "patient_right",
        "floor_y_mm": float(y_floor),
        "table_surface_y_mm": float(y_table_surface),
        "table_height_mm": float(y_floor - y_table_surface),
        "table": bool(table),
        "table_width_mm": float(table_width_mm),
        "table_top_mm": float(table_top_mm),
        "mattress_mm": float(n_mattress * s),
        "ceiling_shield_mm_pb": float(shield_mm_pb) if ceiling_shield else None,
        "table_curtain_mm_pb": float(curtain_mm_pb) if table_curtain else None,
        "patient": dict(patient.info).get("kind", "phantom"),
        "physician": dict(physician.info),
    }
    table_ = MaterialTable.from_materials([materials[n] for n in mat_names])
    return Phantom(grid, ids, rho, table_, labels, organs, points, info)


class _Lattice:
    """Voxel centres at offset + k * s along each axis (mm)."""

    def __init__(self, s: float, offset):
        self.s, self.offset = s, tuple(offset)

    def snap_center(self, v: float, axis: int) -> float:
        o = self.offset[axis]
        return o + round((v - o) / self.s) * self.s

    def grid(self, lo, hi) -> Grid:
        """Smallest lattice grid whose voxel centres cover [lo, hi] (mm, z y x)."""
        k0 = [math.floor((lo_ - o) / self.s) for lo_, o in zip(lo, self.offset)]
        k1 = [math.ceil((hi_ - o) / self.s) for hi_, o in zip(hi, self.offset)]
        shape = tuple(b - a + 1 for a, b in zip(k0, k1))
        return Grid(shape, (self.s,) * 3, tuple(o + k * self.s for o, k in zip(self.offset, k0)))

    def place(self, ph: Phantom) -> Phantom:
        """`ph` on this lattice: shifted by under half a voxel if its voxels match, else resampled."""
        s = self.s
        if ph.grid.spacing_mm == (s, s, s):
            delta = [self.snap_center(o, a) - o for a, o in enumerate(ph.grid.origin_mm)]
            if not any(delta):
                return ph
            grid = Grid(ph.grid.shape, ph.grid.spacing_mm, tuple(o + d for o, d in zip(ph.grid.origin_mm, delta)))
            points = {k: (tuple(p + d for p, d in zip(pos, delta)), n) for k, (pos, n) in ph.points.items()}
            return Phantom(
                grid, ph.material_ids, ph.density_g_cm3, ph.materials, ph.organ_labels, ph.organs, points, ph.info
            )
        lo, hi = ph.grid.bounds_mm
        return ph.resample(grid=self.grid(np.add(lo, s / 2), np.subtract(hi, s / 2)))


def _stand(ph: Phantom, z_c: float, y_floor: float, x_c: float, side: float) -> Phantom:
    """Rotate a standing phantom (own frame z' up, facing -y', left +x') into the room.

    Room (z, y, x) = (z_c - side x', y_floor - (z' - z'_soles), x_c + side y'), side = -1
    on the patient's right (faces +x), +1 on the patient's left (faces -x). The arrays are
    transposed (own x', z', y' become room z, y, x) and flipped; nothing is resampled.
    """
    matter = _matter(ph)
    if not matter.any():
        raise ValueError("physician has no voxel denser than 0.01 g/cm^3 and no labelled voxel")
    az, ay, ax = _phys._axes(ph.grid)
    sz, sy, sx = ph.grid.spacing_mm
    z_soles = az[np.flatnonzero(matter.any(axis=(1, 2)))[0]] - sz / 2

    def move(a):
        b = np.transpose(np.asarray(a), (2, 0, 1))[:, ::-1, :]
        return b[::-1] if side > 0 else b[:, :, ::-1]

    origin = (
        z_c - side * (ax[-1] if side > 0 else ax[0]),
        y_floor - (az[-1] - z_soles),
        x_c + side * (ay[0] if side > 0 else ay[-1]),
    )
    grid = Grid((ph.grid.shape[2], ph.grid.shape[0], ph.grid.shape[1]), (sx, sz, sy), origin)

    def to_room(p):
        z, y, x = p
        return (z_c - side * x, y_floor - (z - z_soles), x_c + side * y)

    def rotate(n):
        z, y, x = n
        return (-side * x + 0.0, -z + 0.0, side * y + 0.0)  # + 0.0: no signed zeros

    points = {k: (to_room(p), rotate(n)) for k, (p, n) in ph.points.items()}
    return Phantom(
        grid,
        move(ph.material_ids),
        move(ph.density_g_cm3),
        ph.materials,
        move(ph.organ_labels),
        ph.organs,
        points,
        ph.info,
    )


def _stand_in_patient(s: float) -> Phantom:
    """Soft-tissue elliptic-cylinder trunk (300 x 200 x 600 mm) with two lungs, centred at the origin."""
    (ry, rx), length = _STAND_IN["semi_mm"], _STAND_IN["length_mm"]
    n = [math.ceil((v + 2 * s) / s) for v in (length / 2, ry, rx)]
    grid = Grid(tuple(2 * k + 1 for k in n), (s,) * 3, tuple(-k * s for k in n))
    axes = _phys._axes(grid)
    trunk = _phys._mask(_phys._Frustum(-length / 2, length / 2, (0.0, 0.0), (0.0, 0.0), (ry, rx), (ry, rx)), axes)
    labels = np.where(trunk, 1, 0).astype(np.int32)
    organs = {"body": 1, "left_lung": 2, "right_lung": 3}
    for name, x in (("left_lung", 75.0), ("right_lung", -75.0)):
        labels[_phys._mask(_phys._Ellipsoid((150.0, -10.0, x), (130.0, 65.0, 50.0)), axes) & trunk] = organs[name]
    ids = np.select([labels == 1, labels > 1], [1, 2], 0).astype(np.int32)
    mats = [get("air"), get("soft_tissue_icru44"), get("lung")]
    rho = np.array([m.density_g_cm3 for m in mats])[ids]
    info = {"kind": "stand_in_patient", "trunk_mm": (length, 2 * ry, 2 * rx)}
    return Phantom(grid, ids, rho, MaterialTable.from_materials(mats), labels, organs, info=info)


def _matter(ph: Phantom) -> np.ndarray:
    return (np.asarray(ph.density_g_cm3) > _phys._AIR_DENSITY_THRESHOLD_G_CM3) | (np.asarray(ph.organ_labels) > 0)


def _matter_bounds(ph: Phantom, matter: np.ndarray):
    """Outer voxel faces (lo, hi) (mm, z y x) of the `matter` voxels of `ph`."""
    axes = _phys._axes(ph.grid)
    lo, hi = [], []
    for a, (ax, d) in enumerate(zip(axes, ph.grid.spacing_mm)):
        idx = np.flatnonzero(matter.any(axis=tuple(b for b in range(3) if b != a)))
        lo.append(ax[idx[0]] - d / 2)
        hi.append(ax[idx[-1]] + d / 2)
    return np.array(lo), np.array(hi)


def _slices(grid: Grid, sub: Grid) -> tuple[slice, slice, slice]:
    """Where the lattice-aligned `sub` grid sits inside `grid`."""
    start = [round((o - g) / d) for o, g, d in zip(sub.origin_mm, grid.origin_mm, grid.spacing_mm)]
    return tuple(slice(a, a + n) for a, n in zip(start, sub.shape))


def _check_position(value) -> tuple[float, float]:
    try:
        z, x = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"physician_position_mm must be a (z, x) pair in mm, got {value!r}") from None
    if not (math.isfinite(z) and math.isfinite(x)) or x == 0:
        raise ValueError(f"physician_position_mm must be finite with x != 0 (beside the table), got {value!r}")
    return z, x


def _check_room_args(spacing_mm, table_height_mm, table_width_mm, mattress_mm, table_top_mm, shield, curtain):
    check_positive("spacing_mm", spacing_mm)
    if np.ndim(spacing_mm) != 0 or not float(spacing_mm) <= 20.0:
        raise ValueError(f"spacing_mm must be one isotropic voxel size in (0, 20] mm, got {spacing_mm!r}")
    check_positive("table_height_mm", table_height_mm)
    if not 500.0 <= float(table_height_mm) <= 1300.0:
        raise ValueError(f"table_height_mm must lie in 500-1300 mm, got {table_height_mm!r}")
    check_positive("table_width_mm", table_width_mm)
    check_nonnegative("mattress_mm", mattress_mm)
    check_positive("table_top_mm", table_top_mm)
    for name, value in (("shield_mm_pb", shield), ("curtain_mm_pb", curtain)):
        check_positive(name, value)
        if not float(value) <= 2.0:
            raise ValueError(f"{name} must lie in (0, 2] mm Pb, got {value!r}")
    return float(spacing_mm)
