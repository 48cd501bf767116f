"""Reference phantoms: TG-195 Case 2/4/5 geometries, ICRU slab and sphere, water and CTDI cylinders.

All phantoms are built in NumPy in the patient frame (z, y, x) of `Grid`: +x patient left,
+y posterior, +z superior, lengths in mm, and are centred on the world origin.

Voxelisation of the analytic phantoms: every voxel whose centre lies within half a voxel
diagonal of a surface is split into 3 x 3 x 3 sub-voxels, each sub-voxel centre is
classified, and the voxel takes the majority material and the majority region label
(other voxels are classified by their centre). Each voxel then holds its material's
nominal density. Volumes and masses of large bodies are thus within the boundary
quantisation error (about one sub-voxel layer on the surface), and small features such as
13.1 mm CTDI holes are not lost or doubled as plain centre sampling may do. Where an
object's size is a whole number of voxels, its faces fall on voxel faces exactly (the
grid puts whole voxels of margin around it).
"""

import math
import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._checks import check_triple
from ..geometry._grid import Grid
from ..materials._table import MaterialTable
from ._phantom import Phantom

# --------------------------------------------------------------------------------------
# TG-195 Case 5 voxel phantom
# --------------------------------------------------------------------------------------

#: Case 5 materials by index (the row order of the TG-195 Case 5 material list).
TG195_CASE5_MATERIALS = (
    "air",
    "cushion_foam",
    "carbon_fiber",
    "soft_tissue",
    "heart",
    "lung",
    "liver",
    "gallbladder",
    "spleen",
    "stomach",
    "large_intestine",
    "pancreas",
    "adrenal",
    "thyroid",
    "thymus",
    "small_intestine",
    "esophagus",
    "skin",
    "breast",
    "cortical_bone",
)
_CASE5_SHAPE = (260, 320, 500)  # (z, y, x), x fastest in the file
_CASE5_MEMBER = "case5world.bin"
_CASE5_FIRST_ORGAN = 3  # indices 3-19 are the scored organ materials

_TG195 = "AAPM Report 195 (TG-195, Sechopoulos et al. 2015, Med Phys 42(10):5679-5691)"


def tg195_case5(path: str | os.PathLike, *, spacing_mm=None) -> Phantom:
    """The TG-195 Case 5 voxelised female torso on its carbon-fibre table.

    Reads ``case5world.bin`` (uint8 material indices, 260 x 320 x 500 voxels in (z, y, x)
    order with x fastest, 1 mm voxels) either from the TG-195 tarball (streamed from the
    archive, nothing is extracted to disk) or from the extracted ``.bin`` file. The data
    are not shipped with physdose.

    Frame: the volume centre is the isocentre at the world origin, axes run along the
    array axes; z is superior, y posterior (toward the table), x patient left (the 500 mm
    axis). Projection k of the TG-195 Case 5 CT geometry (angle t = 45 k degrees) has its
    source at (z, y, x) = (0, -600 cos t, -600 sin t) mm aimed at the isocentre, with a fan
    500 mm wide and 10 mm thick at the isocentre.

    Material ids are the Case 5 indices (0 air, 1 cushion foam, 2 carbon fibre, 3 soft
    tissue, ..., 19 cortical bone; `TG195_CASE5_MATERIALS`), with the shipped materials
    ``tg195_case5_<name>``; densities are the nominal material densities. Organs are the
    scored organ materials 3-19, named as in `TG195_CASE5_MATERIALS` (``"soft_tissue"``,
    ``"heart"``, ``"lung"``, ...) with label = material index.

    Args:
        path: ``tg195_case5_phantom.tar.gz`` (any tar archive holding ``case5world.bin``)
            or the raw ``case5world.bin``.
        spacing_mm: if given, voxel size (mm; a number or a (z, y, x) triple) to resample to
            with `Phantom.resample` (nearest neighbour, organ and material masses kept).
            The full-resolution phantom needs about 0.5 GB while it is built.

    Returns:
        The phantom, on a 260 x 320 x 500 grid of 1 mm voxels unless resampled.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not 260 * 320 * 500 bytes, the archive holds no
            ``case5world.bin``, an index exceeds 19, or `spacing_mm` is not positive.
    """
    if spacing_mm is not None:
        _spacing(spacing_mm)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not a file (expected the TG-195 Case 5 tarball or .bin)")
    raw = _read_case5_bytes(path)
    ids = np.frombuffer(raw, dtype=np.uint8).reshape(_CASE5_SHAPE)
    top = int(ids.max())
    if top >= len(TG195_CASE5_MATERIALS):
        raise ValueError(f"path {str(path)!r} holds material index {top}; Case 5 has indices 0-19")
    names = tuple("tg195_case5_" + m for m in TG195_CASE5_MATERIALS)
    table = MaterialTable.from_materials(names)
    rho_lut = np.asarray([m.density_g_cm3 for m in table.materials], dtype=np.float32)
    grid = Grid.centered(_CASE5_SHAPE, (1.0, 1.0, 1.0))
    organs = {name: i for i, name in enumerate(TG195_CASE5_MATERIALS) if i >= _CASE5_FIRST_ORGAN}
    labels = np.where(ids >= _CASE5_FIRST_ORGAN, ids, 0).astype(np.int32)
    info = {
        "name": "tg195_case5",
        "source": f"{_TG195}, Case 5 voxel phantom (case5world.bin)",
        "frame": "isocentre at the volume centre (world origin); +z superior, +y posterior (table), +x patient left",
        "isocenter_mm": (0.0, 0.0, 0.0),
        "source_distance_mm": 600.0,
        "fan_width_mm": 500.0,
        "fan_thickness_mm": 10.0,
        "projection_angles_deg": tuple(45.0 * k for k in range(8)),
        "source_position": "(z, y, x) = (0, -600 cos t, -600 sin t) mm for angle t",
    }
    phantom = Phantom(grid, ids.astype(np.int32), rho_lut[ids], table, labels, organs, info=info)
    del ids, labels, raw
    if spacing_mm is not None:
        phantom = phantom.resample(_spacing(spacing_mm))
    return phantom


def _read_case5_bytes(path: Path) -> bytes:
    expected = math.prod(_CASE5_SHAPE)
    if path.suffix.lower() != ".bin" and tarfile.is_tarfile(path):
        with tarfile.open(path, mode="r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            found = [m for m in members if Path(m.name).name == _CASE5_MEMBER]
            if not found:
                raise ValueError(
                    f"path {str(path)!r} is an archive without {_CASE5_MEMBER}; it holds {[m.name for m in members]}"
                )
            member = found[0]
            if member.size != expected:
                raise ValueError(
                    f"{_CASE5_MEMBER} in {str(path)!r} has {member.size} bytes; expected 260*320*500 = {expected}"
                )
            stream = archive.extractfile(member)
            raw = stream.read()
    else:
        size = path.stat().st_size
        if size != expected:
            raise ValueError(f"path {str(path)!r} has {size} bytes; expected 260*320*500 = {expected}")
        raw = path.read_bytes()
    if len(raw) != expected:
        raise ValueError(f"read {len(raw)} bytes from {str(path)!r}; expected 260*320*500 = {expected}")
    return raw


# --------------------------------------------------------------------------------------
# Analytic phantoms
# --------------------------------------------------------------------------------------

_SUPERSAMPLE = 3  # sub-voxels per axis for boundary voxels (odd: no two-way ties)
_CHUNK_POINTS = 1 << 21  # sub-voxel points classified at a time (bounded memory)

SignedDistance = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class _Shape(NamedTuple):
    """A solid painted into the phantom: where `sdf` < 0 the voxel gets `material`/`label`.

    `sdf` (z, y, x -> mm, broadcasting) must be negative inside and bound the distance to
    the surface from below in magnitude (exact distances, and max() of them, qualify).
    A None material or label leaves that property as painted before.
    """

    sdf: SignedDistance
    material: int | None
    label: int | None


def _box(center, half) -> SignedDistance:
    (cz, cy, cx), (hz, hy, hx) = center, half
    return lambda z, y, x: np.maximum(np.maximum(np.abs(z - cz) - hz, np.abs(y - cy) - hy), np.abs(x - cx) - hx)


def _cylinder_z(center, radius: float, half_length: float) -> SignedDistance:
    """Cylinder with its axis along z through (cz, cy, cx)."""
    cz, cy, cx = center
    return lambda z, y, x: np.maximum(np.hypot(y - cy, x - cx) - radius, np.abs(z - cz) - half_length)


def _sphere(center, radius: float) -> SignedDistance:
    cz, cy, cx = center
    return lambda z, y, x: np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) - radius


def _spacing(spacing_mm) -> tuple[float, float, float]:
    """`spacing_mm` (a number or a (z, y, x) triple) as a positive float triple."""
    if np.ndim(spacing_mm) == 0:
        try:
            spacing_mm = (float(spacing_mm),) * 3
        except (TypeError, ValueError) as err:
            raise ValueError(f"spacing_mm must be a positive number or (z, y, x) triple, got {spacing_mm!r}") from err
    spacing = check_triple("spacing_mm", spacing_mm)
    if min(spacing) <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
    return spacing


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a positive number, got {value!r}") from err
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return v


def _margin(margin_mm) -> float:
    try:
        v = float(margin_mm)
    except (TypeError, ValueError) as err:
        raise ValueError(f"margin_mm must be a non-negative number, got {margin_mm!r}") from err
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"margin_mm must be finite and >= 0, got {margin_mm!r}")
    return v


def _object_grid(size_mm, spacing, margin_mm: float) -> Grid:
    """Grid centred on the origin covering an object of `size_mm` (z, y, x) plus whole voxels of margin."""
    shape = []
    for s, d in zip(size_mm, spacing):
        inner = max(1, math.ceil(s / d - 1e-9))
        shape.append(inner + 2 * math.ceil(margin_mm / d - 1e-9))
    return Grid.centered(shape, spacing)


def _voxelise(grid: Grid, shapes: Sequence[_Shape]) -> tuple[np.ndarray, np.ndarray]:
    """Paint `shapes` in order onto `grid` (background material 0, label 0).

    Returns:
        (material ids, region labels), int32 arrays of shape grid.shape.
    """
    z, y, x = (
        np.asarray(o + d * np.arange(n), np.float64).reshape([-1 if a == i else 1 for a in range(3)])
        for i, (o, d, n) in enumerate(zip(grid.origin_mm, grid.spacing_mm, grid.shape))
    )
    ids = np.zeros(grid.shape, np.int32)
    labels = np.zeros(grid.shape, np.int32)
    boundary = np.zeros(grid.shape, bool)
    reach = 0.5 * math.sqrt(sum(d * d for d in grid.spacing_mm))  # half a voxel diagonal
    for shape in shapes:
        d = np.broadcast_to(shape.sdf(z, y, x), grid.shape)
        inside = d < 0
        if shape.material is not None:
            ids[inside] = shape.material
        if shape.label is not None:
            labels[inside] = shape.label
        boundary |= np.abs(d) <= reach
        del d, inside
    index = np.nonzero(boundary)
    if len(index[0]) == 0:
        return ids, labels
    # sub-voxel offsets (k + 1/2) / s - 1/2 of a voxel along each axis
    s = _SUPERSAMPLE
    frac = (np.arange(s) + 0.5) / s - 0.5
    oz, oy, ox = (g.ravel() for g in np.meshgrid(frac, frac, frac, indexing="ij"))
    n_mat = 1 + max([sh.material for sh in shapes if sh.material is not None], default=0)
    n_lab = 1 + max([sh.label for sh in shapes if sh.label is not None], default=0)
    chunk = max(1, _CHUNK_POINTS // s**3)
    for start in range(0, len(index[0]), chunk):
        iz, iy, ix = (i[start : start + chunk] for i in index)
        pz = grid.origin_mm[0] + grid.spacing_mm[0] * (iz[:, None] + oz[None])
        py = grid.origin_mm[1] + grid.spacing_mm[1] * (iy[:, None] + oy[None])
        px = grid.origin_mm[2] + grid.spacing_mm[2] * (ix[:, None] + ox[None])
        sub_ids = np.zeros(pz.shape, np.int64)
        sub_labels = np.zeros(pz.shape, np.int64)
        for shape in shapes:
            inside = shape.sdf(pz, py, px) < 0
            if shape.material is not None:
                sub_ids[inside] = shape.material
            if shape.label is not None:
                sub_labels[inside] = shape.label
        ids[iz, iy, ix] = _majority(sub_ids, n_mat)
        labels[iz, iy, ix] = _majority(sub_labels, n_lab)
    return ids, labels


def _majority(values: np.ndarray, n_classes: int) -> np.ndarray:
    """Most frequent class per row of `values` (rows, samples); ties go to the lower class."""
    rows = values.shape[0]
    counts = np.bincount((np.arange(rows)[:, None] * n_classes + values).ravel(), minlength=rows * n_classes)
    return counts.reshape(rows, n_classes).argmax(axis=1).astype(np.int32)


def _build(
    grid: Grid,
    materials: Sequence[str],
    shapes: Sequence[_Shape],
    organs: dict[str, int],
    *,
    points=None,
    info=None,
) -> Phantom:
    ids, labels = _voxelise(grid, shapes)
    table = MaterialTable.from_materials(materials)
    rho = np.asarray([m.density_g_cm3 for m in table.materials], np.float32)[ids]
    info = dict(info or {})
    info["voxelisation"] = f"majority of {_SUPERSAMPLE}^3 sub-voxels at surfaces, voxel centres elsewhere"
    return Phantom(grid, ids, rho, table, labels, organs, points or {}, info)


def icru_slab(*, spacing_mm=5.0, margin_mm: float = 20.0) -> Phantom:
    """The ICRU slab: 300 x 300 x 150 mm of ICRU four-component tissue in air.

    The slab is centred on the origin with its 150 mm thickness along y (anterior-posterior):
    it spans z, x in [-150, 150] mm and y in [-75, 75] mm, so a beam travelling along +y
    (from anterior) enters through the front face y = -75 mm, as for a dosemeter worn on the
    chest. The named point ``"front_face_center"`` at (0, -75, 0) mm with outward normal
    (0, -1, 0) is where Hp(d) is read, at depth d along the inward normal. Region
    ``"slab"`` (label 1) is the tissue.

    Args:
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the slab on every side (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``air``, ``soft_tissue_icru4c``).

    Raises:
        ValueError: `spacing_mm` not positive or `margin_mm` negative.
    """
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    size = (300.0, 150.0, 300.0)
    grid = _object_grid(size, spacing, margin)
    slab = _Shape(_box((0.0, 0.0, 0.0), tuple(s / 2 for s in size)), 1, 1)
    return _build(
        grid,
        ("air", "soft_tissue_icru4c"),
        [slab],
        {"slab": 1},
        points={"front_face_center": ((0.0, -75.0, 0.0), (0.0, -1.0, 0.0))},
        info={
            "name": "icru_slab",
            "source": "ICRU Report 39/47/57: 30 x 30 x 15 cm slab of ICRU four-component tissue",
            "size_mm": size,
            "thickness_axis": "y",
            "front_face_y_mm": -75.0,
        },
    )


def icru_sphere(*, spacing_mm=5.0, margin_mm: float = 20.0) -> Phantom:
    """The ICRU sphere: 300 mm diameter ICRU four-component tissue, centred on the origin, in air.

    Region ``"sphere"`` (label 1) is the tissue. The named point ``"front_surface"`` at
    (0, -150, 0) mm with outward normal (0, -1, 0) faces a beam travelling along +y; the
    ambient dose equivalent H*(d) is read at depth d along the inward normal.

    Args:
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the sphere (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``air``, ``soft_tissue_icru4c``).

    Raises:
        ValueError: `spacing_mm` not positive or `margin_mm` negative.
    """
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    radius = 150.0
    grid = _object_grid((2 * radius,) * 3, spacing, margin)
    return _build(
        grid,
        ("air", "soft_tissue_icru4c"),
        [_Shape(_sphere((0.0, 0.0, 0.0), radius), 1, 1)],
        {"sphere": 1},
        points={"front_surface": ((0.0, -radius, 0.0), (0.0, -1.0, 0.0))},
        info={
            "name": "icru_sphere",
            "source": "ICRU Report 33/39: 30 cm diameter sphere of ICRU four-component tissue",
            "diameter_mm": 2 * radius,
        },
    )


def water_cylinder(
    diameter_mm: float = 320.0, length_mm: float = 150.0, *, spacing_mm=2.0, margin_mm: float = 10.0
) -> Phantom:
    """A water cylinder in air, its axis along z through the origin.

    Region ``"cylinder"`` (label 1) is the water.

    Args:
        diameter_mm: cylinder diameter (mm).
        length_mm: cylinder length along z (mm).
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the cylinder (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``air``, ``water``).

    Raises:
        ValueError: a size or `spacing_mm` not positive, or `margin_mm` negative.

    Examples:
        >>> p = water_cylinder(320.0, 150.0, spacing_mm=5.0)
        >>> round(p.organ_masses_g()["cylinder"] / 1000, 1)  # pi * 16^2 * 15 cm^3 of water
        12.1
    """
    diameter, length = _positive("diameter_mm", diameter_mm), _positive("length_mm", length_mm)
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    grid = _object_grid((length, diameter, diameter), spacing, margin)
    return _build(
        grid,
        ("air", "water"),
        [_Shape(_cylinder_z((0.0, 0.0, 0.0), diameter / 2, length / 2), 1, 1)],
        {"cylinder": 1},
        info={"name": "water_cylinder", "diameter_mm": diameter, "length_mm": length},
    )


#: CTDI phantom hole layout: hole name -> clock position (o'clock) of its centre; 0 = centre.
CTDI_HOLES = {"center_hole": None, "hole_12": 12, "hole_3": 3, "hole_6": 6, "hole_9": 9}


def ctdi(diameter_mm: float, *, spacing_mm=2.0, margin_mm: float = 10.0) -> Phantom:
    """A CTDI dosimetry phantom: PMMA cylinder 150 mm long, axis along z, with five air-filled holes.

    The head (160 mm) or body (320 mm) phantom of IEC 60601-2-44 / AAPM Report 96: holes
    of 13.1 mm diameter running the full length, one on the axis and four with their
    centres 10 mm inside the surface at 12, 3, 6 and 9 o'clock. Clock positions are as on
    an axial image in radiological view (from the feet, patient supine): 12 o'clock is
    anterior (-y), 3 o'clock patient left (+x), 6 posterior (+y), 9 patient right (-x).
    The holes are the regions ``"center_hole"``, ``"hole_12"``, ``"hole_3"``, ``"hole_6"``,
    ``"hole_9"`` (labels 1-5, in that order). For CTDI100, average the dose over a region
    and |z| <= 50 mm (the 100 mm chamber, centred on the phantom); the hole centres
    (y, x) are in ``info["hole_centers_mm"]``.

    Args:
        diameter_mm: 160 (head) or 320 (body).
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the phantom (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``air``, ``pmma``).

    Raises:
        ValueError: `diameter_mm` not 160 or 320, `spacing_mm` not positive, or `margin_mm`
            negative.

    Examples:
        >>> p = ctdi(160, spacing_mm=4.0)
        >>> list(p.organs)
        ['center_hole', 'hole_12', 'hole_3', 'hole_6', 'hole_9']
        >>> p.info["hole_centers_mm"]["hole_3"]  # (y, x): 10 mm inside the surface, patient left
        (0.0, 70.0)
    """
    if diameter_mm not in (160, 320):
        raise ValueError(f"diameter_mm must be 160 (head) or 320 (body), got {diameter_mm!r}")
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    radius, length, hole_radius, depth = float(diameter_mm) / 2, 150.0, 13.1 / 2, 10.0
    off = radius - depth
    clock = {None: (0.0, 0.0), 12: (-off, 0.0), 3: (0.0, off), 6: (off, 0.0), 9: (0.0, -off)}
    centers = {name: clock[c] for name, c in CTDI_HOLES.items()}
    grid = _object_grid((length, 2 * radius, 2 * radius), spacing, margin)
    shapes = [_Shape(_cylinder_z((0.0, 0.0, 0.0), radius, length / 2), 1, None)]
    organs = {}
    for label, (name, (cy, cx)) in enumerate(centers.items(), start=1):
        shapes.append(_Shape(_cylinder_z((0.0, cy, cx), hole_radius, length / 2), 0, label))
        organs[name] = label
    return _build(
        grid,
        ("air", "pmma"),
        shapes,
        organs,
        info={
            "name": "ctdi",
            "source": "IEC 60601-2-44 / AAPM Report 96 CTDI phantom",
            "diameter_mm": float(diameter_mm),
            "length_mm": length,
            "hole_diameter_mm": 2 * hole_radius,
            "hole_depth_mm": depth,
            "hole_centers_mm": {name: c for name, c in centers.items()},
            "chamber_length_mm": 100.0,
            "clock": "radiological view: 12 anterior (-y), 3 patient left (+x), 6 posterior (+y), 9 patient right (-x)",
        },
    )


def tg195_case2_box(*, spacing_mm=5.0, margin_mm: float = 10.0) -> Phantom:
    """The TG-195 Case 2 (radiography / tomosynthesis) 39 x 39 x 20 cm soft-tissue box in air.

    Frame (XRayMClib's Case 2 frame mapped to the patient frame): the box is centred on the
    origin; the beam travels along +y (anterior to posterior) through the 200 mm thickness,
    so the box spans y in [-100, 100] mm (entrance face y = -100) and z, x in
    [-195, 195] mm. The point source is at (z, y, x) = (0, -1650, 0) mm (155 cm before the
    entrance face), the imaging plane at y = +150 mm (180 cm from the source) and the
    field is collimated to the 390 mm box at that plane. For tomosynthesis the source is
    moved (not rotated) to z = -1800 tan 15 deg = -482.3 mm.

    The nine 30 x 30 x 30 mm VOIs are regions ``"voi_1"`` ... ``"voi_9"`` (label = VOI
    number), centred at VOI3 (0, 0, 0); VOI8 / VOI9 3 and 6 cm deeper (y = +30, +60 mm);
    VOI7 / VOI6 3 and 6 cm shallower (y = -30, -60 mm); VOI1 / VOI5 at z = -150 / +150 mm;
    VOI2 / VOI4 at x = -150 / +150 mm. The whole box ("Total body") is the voxels of
    material ``tg195_soft_tissue``. With the default 5 mm voxels the grid matches the
    78 x 78 x 40 scoring grid of the reference implementation and the VOIs are exactly
    6 x 6 x 6 voxels.

    Args:
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the box (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``tg195_air_dry``, ``tg195_soft_tissue``).

    Raises:
        ValueError: `spacing_mm` not positive or `margin_mm` negative.
    """
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    size = (390.0, 200.0, 390.0)
    grid = _object_grid(size, spacing, margin)
    centers = {
        1: (-150.0, 0.0, 0.0),
        2: (0.0, 0.0, -150.0),
        3: (0.0, 0.0, 0.0),
        4: (0.0, 0.0, 150.0),
        5: (150.0, 0.0, 0.0),
        6: (0.0, -60.0, 0.0),
        7: (0.0, -30.0, 0.0),
        8: (0.0, 30.0, 0.0),
        9: (0.0, 60.0, 0.0),
    }
    shapes = [_Shape(_box((0.0, 0.0, 0.0), tuple(s / 2 for s in size)), 1, None)]
    shapes += [_Shape(_box(c, (15.0, 15.0, 15.0)), None, k) for k, c in centers.items()]
    return _build(
        grid,
        ("tg195_air_dry", "tg195_soft_tissue"),
        shapes,
        {f"voi_{k}": k for k in centers},
        info={
            "name": "tg195_case2_box",
            "source": f"{_TG195}, Case 2; geometry as implemented in XRayMClib validation.cpp",
            "frame": "box centred on the origin, beam along +y, entrance face y = -100 mm",
            "size_mm": size,
            "voi_centers_mm": {f"voi_{k}": c for k, c in centers.items()},
            "voi_size_mm": 30.0,
            "source_mm": (0.0, -1650.0, 0.0),
            "tomosynthesis_source_mm": (-1800.0 * math.tan(math.radians(15.0)), -1650.0, 0.0),
            "imaging_plane_y_mm": 150.0,
            "field_at_imaging_plane_mm": 390.0,
        },
    )


def tg195_case4_cylinder(
    *, subcase: str = "4.2", length_mm: float = 600.0, spacing_mm=(5.0, 2.0, 2.0), margin_mm: float = 10.0
) -> Phantom:
    """The TG-195 Case 4 (CT) PMMA cylinder, 320 mm diameter, axis along z, centred on the origin.

    CT geometry (XRayMClib's frame, which is the patient frame here): the source is 600 mm
    from the axis in the central plane, at (z, y, x) = (0, 0, -600) mm for projection
    angle 0 and at (0, -600 sin a, -600 cos a) for angle a; the fan covers the 320 mm
    diameter at the axis, and is 10 mm or 80 mm thick (along z) there.

    Scoring regions (labels):

    * ``subcase="4.1"`` (single projection): ``"voi_1"`` ... ``"voi_4"``, full cross
      sections 10 mm thick centred at z = 0, 10, 20, 30 mm.
    * ``subcase="4.2"`` (36 projections every 10 deg, or a continuous rotation):
      ``"center"``, a 10 mm diameter, 100 mm long cylinder on the axis, and
      ``"periphery"``, the same with its axis 10 mm inside the surface at x = -150 mm
      (facing the source at angle 0).

    The reference codes model the cylinder effectively infinitely long (3-6 m in
    XRayMClib); the voxel phantom is `length_mm` long, so scatter from beyond |z| =
    length_mm / 2 is missing. The default (5, 2, 2) mm voxels put the Case 4.1 slice faces
    on voxel faces and resolve the 10 mm scoring cylinders.

    Args:
        subcase: ``"4.1"`` or ``"4.2"``, which scoring regions to label.
        length_mm: cylinder length (mm).
        spacing_mm: voxel size (mm), a number or a (z, y, x) triple.
        margin_mm: air around the cylinder (mm), rounded up to whole voxels.

    Returns:
        The phantom (materials ``tg195_air_dry``, ``tg195_pmma``).

    Raises:
        ValueError: unknown `subcase`, `length_mm` shorter than the scoring regions,
            `spacing_mm` not positive, or `margin_mm` negative.
    """
    if subcase not in ("4.1", "4.2"):
        raise ValueError(f'subcase must be "4.1" or "4.2", got {subcase!r}')
    length = _positive("length_mm", length_mm)
    if length < 100.0:
        raise ValueError(f"length_mm must be >= 100 mm to hold the scoring regions, got {length_mm!r}")
    spacing, margin = _spacing(spacing_mm), _margin(margin_mm)
    radius = 160.0
    grid = _object_grid((length, 2 * radius, 2 * radius), spacing, margin)
    shapes = [_Shape(_cylinder_z((0.0, 0.0, 0.0), radius, length / 2), 1, None)]
    if subcase == "4.1":
        regions = {f"voi_{k + 1}": (10.0 * k, 0.0, 0.0) for k in range(4)}
        for label, (_, c) in enumerate(regions.items(), start=1):
            shapes.append(_Shape(_cylinder_z(c, radius, 5.0), None, label))
        extra = {"voi_z_mm": tuple(c[0] for c in regions.values()), "voi_thickness_mm": 10.0}
    else:
        regions = {"center": (0.0, 0.0, 0.0), "periphery": (0.0, 0.0, -(radius - 10.0))}
        for label, (_, c) in enumerate(regions.items(), start=1):
            shapes.append(_Shape(_cylinder_z(c, 5.0, 50.0), None, label))
        extra = {
            "scoring_cylinder_centers_mm": regions,
            "scoring_cylinder_diameter_mm": 10.0,
            "scoring_cylinder_length_mm": 100.0,
            "projection_angles_deg": tuple(10.0 * k for k in range(36)),
        }
    return _build(
        grid,
        ("tg195_air_dry", "tg195_pmma"),
        shapes,
        {name: k for k, name in enumerate(regions, start=1)},
        info={
            "name": "tg195_case4_cylinder",
            "subcase": subcase,
            "source": f"{_TG195}, Case {subcase}; geometry as implemented in XRayMClib validation.cpp",
            "diameter_mm": 2 * radius,
            "length_mm": length,
            "source_distance_mm": 600.0,
            "source_position": "(z, y, x) = (0, -600 sin a, -600 cos a) mm for angle a",
            "fan_thickness_mm": (10.0, 80.0),
            **extra,
        },
    )
