"""Reorientation of axis-aligned volumes from file order into physdose (z, y, x) LPS order.

This is the one place where physdose permutes and flips axes. A file volume is indexed
(a0, a1, a2) and placed in the world by `origin + matrix @ (a0, a1, a2)`, world points in
DICOM LPS (x, y, z): +x patient left, +y posterior, +z superior (mm).
"""

import numpy as np

from ..geometry._grid import Grid

# Largest off-axis component of a voxel axis' unit vector that still counts as axis-aligned
# (1e-4 rad: 0.05 mm of shear across a 500 mm field of view).
AXIS_TOLERANCE = 1e-4


def reorient(data: np.ndarray, matrix, origin, *, what: str) -> tuple[np.ndarray, Grid]:
    """Permute and flip a file volume so its axes are (z, y, x) and increase along +z, +y, +x.

    Args:
        data: the volume in file order (a0, a1, a2).
        matrix: (3, 3) LPS (x, y, z) displacement (mm) per unit step along each file axis
            (column j belongs to axis a_j).
        origin: (3,) LPS (x, y, z) position (mm) of the centre of file voxel (0, 0, 0).
        what: names the source in error messages.

    Returns:
        (volume of shape (nz, ny, nx), its Grid).

    Raises:
        ValueError: if an axis is oblique, two axes point along the same world axis, or an
            axis has zero length.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    if data.ndim != 3:
        raise ValueError(f"{what} must be a 3D volume, got shape {data.shape}")
    if (
        matrix.shape != (3, 3)
        or origin.shape != (3,)
        or not np.all(np.isfinite(matrix))
        or not np.all(np.isfinite(origin))
    ):
        raise ValueError(f"{what} has an invalid geometry: matrix {matrix.tolist()}, origin {origin.tolist()}")
    norms = np.linalg.norm(matrix, axis=0)
    if np.any(norms <= 0):
        raise ValueError(f"{what} has a zero voxel size along a file axis: {matrix.tolist()}")
    unit = matrix / norms
    world_axis = np.argmax(np.abs(unit), axis=0)
    off_axis = np.abs(unit)
    off_axis[world_axis, np.arange(3)] = 0.0
    if off_axis.max() > AXIS_TOLERANCE or sorted(world_axis.tolist()) != [0, 1, 2]:
        raise ValueError(
            f"{what} is oblique or not axis-aligned: its voxel axes point along "
            f"{np.round(unit.T, 6).tolist()} in LPS (x, y, z); only volumes whose axes are parallel to "
            "the patient axes are supported (resample it onto an axis-aligned grid first)"
        )
    # Output axis o (0 = z, 1 = y, 2 = x) is LPS axis 2 - o.
    perm = [int(np.flatnonzero(world_axis == 2 - o)[0]) for o in range(3)]
    out = np.transpose(data, perm)
    for o, a in enumerate(perm):
        if unit[world_axis[a], a] < 0:
            out = np.flip(out, axis=o)
            origin = origin + (data.shape[a] - 1) * matrix[:, a]
    spacing_zyx = tuple(float(norms[a]) for a in perm)
    origin_zyx = (float(origin[2]), float(origin[1]), float(origin[0]))
    return np.ascontiguousarray(out), Grid(out.shape, spacing_zyx, origin_zyx)


def check_same_grid(found: Grid, grid: Grid, *, what: str, atol_mm: float = 1e-3) -> None:
    """Raise a ValueError naming every field in which `found` differs from `grid`."""
    bad = []
    if found.shape != grid.shape:
        bad.append(f"shape {found.shape} != {grid.shape}")
    if np.any(np.abs(np.subtract(found.spacing_mm, grid.spacing_mm)) > atol_mm):
        bad.append(f"spacing_mm {found.spacing_mm} != {grid.spacing_mm}")
    if np.any(np.abs(np.subtract(found.origin_mm, grid.origin_mm)) > atol_mm):
        bad.append(f"origin_mm {found.origin_mm} != {grid.origin_mm}")
    if bad:
        raise ValueError(
            f"{what} is not on the given grid (tolerance {atol_mm} mm): " + "; ".join(bad) + ". physdose does "
            "not resample label maps silently; resample it onto the CT grid first"
        )
