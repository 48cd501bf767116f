"""Static layout of a prior computation: sampled views, energy groups, the beam's region, grids.

Everything here runs in Python on concrete values before tracing and decides array
shapes; when the values are traced (jit over the source, vmap over scenarios) it falls
back to bounds that hold for any value.
"""

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import is_concrete
from ..geometry._grid import Grid
from ..sources._beam import Beam
from ..spectra._spectrum import Spectrum

EMPTY_GROUP = 1e-12
"""Share of the spectrum's fluence below which an energy group counts as empty."""


def sample_views(beam: Beam, max_views: int) -> Beam:
    """At most `max_views` views, evenly spaced along the trajectory.

    Each kept view carries the summed weight of the run of views nearest to it, so the
    total weight is kept. A beam with fewer views is returned unchanged.
    """
    v = beam.num_views
    if v <= max_views:
        return beam
    keep = np.round(np.linspace(0, v - 1, max_views)).astype(int)
    owner = np.abs(np.arange(v)[:, None] - keep[None]).argmin(axis=1)
    weight = jax.ops.segment_sum(beam.view_weight, jnp.asarray(owner), num_segments=max_views)
    return eqx.tree_at(
        lambda b: (b.focal_mm, b.axes, b.view_weight),
        beam,
        (beam.focal_mm[keep], beam.axes[keep], weight),
    )


def group_count(spectrum: Spectrum, group_kev: float) -> int:
    """Energy groups `group_kev` wide from 0 keV up to the spectrum's highest energy with
    fluence (up to 150 keV when the spectrum is traced)."""
    if is_concrete(spectrum.energy_kev, spectrum.fluence):  # no empty groups above the spectrum's end
        e, f = np.asarray(spectrum.energy_kev), np.asarray(spectrum.fluence)
        e_max = float(e[f > 0].max()) if np.any(f > 0) else float(e.max())
    else:
        e_max = 150.0
    return max(1, math.ceil(e_max / group_kev + 1e-9))


def group_spectrum(spectrum: Spectrum, group_kev: float, n: int) -> Spectrum:
    """The spectrum condensed to `n` energy groups `group_kev` wide (fixed edges from 0 keV;
    see `group_count`).

    Each group's weight is the sum of its bins' fluence and its energy their
    fluence-weighted mean (empty groups sit at their centre with weight 0), so doses stay
    differentiable with respect to the spectrum's weights (groups with less than
    `EMPTY_GROUP` of the fluence sit at their centre).
    """
    edges = jnp.arange(n + 1, dtype=spectrum.fluence.dtype) * group_kev
    e = spectrum.energy_kev
    member = (e[None] >= edges[:-1, None]) & (e[None] < edges[1:, None])
    member = member.at[-1].set(member[-1] | (e >= edges[-1]))
    f = jnp.where(member, spectrum.fluence[None], 0.0)
    weight = jnp.sum(f, axis=1)
    centre = 0.5 * (edges[:-1] + edges[1:])
    # a group with a vanishing share (a spectrum hardened by thick filters) sits at its centre: its
    # mean energy's gradient, 1 / weight, would overflow float32 where its dose is ~0 anyway
    present = weight > EMPTY_GROUP * jnp.sum(weight)
    safe = jnp.where(present, weight, 1.0)
    energy = jnp.where(present, jnp.sum(f * e[None], axis=1) / safe, centre)
    return Spectrum(jnp.clip(energy, 1.0, 150.0), weight)


class Window(eqx.Module):
    """A box of voxels [start, stop) of a grid, padded up to whole cells of `cell` voxels."""

    start: tuple[int, int, int] = eqx.field(static=True)
    stop: tuple[int, int, int] = eqx.field(static=True)
    cell: tuple[int, int, int] = eqx.field(static=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def cells(self) -> tuple[int, int, int]:
        return tuple(n // c for n, c in zip(self.shape, self.cell))

    def cell_rank(self, grid: Grid) -> np.ndarray:
        """Each cell's flat index among the whole grid's cells, scaled to [0, 1), shape (cells,)."""
        total = [math.ceil(n / c) for n, c in zip(grid.shape, self.cell)]
        first = [a // c for a, c in zip(self.start, self.cell)]
        idx = np.stack(np.meshgrid(*[f + np.arange(n) for f, n in zip(first, self.cells)], indexing="ij"), -1)
        return np.ravel_multi_index(tuple(idx.reshape(-1, 3).T), total, mode="clip") / math.prod(total)

    def centers_mm(self, grid: Grid) -> Float[Array, "z y x 3"]:
        """World positions of the window's voxel centres (mm), padding included."""
        axes = [o + d * jnp.arange(a, b) for o, d, a, b in zip(grid.origin_mm, grid.spacing_mm, self.start, self.stop)]
        return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)

    def take(self, volume: Array, fill=0) -> Array:
        """The window of `volume` (grid-shaped, maybe with trailing axes), padded with `fill`."""
        n = volume.shape[:3]
        lo = [max(a, 0) for a in self.start]
        hi = [min(b, m) for b, m in zip(self.stop, n)]
        out = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        pad = [(lo_ - a, b - hi_) for a, b, lo_, hi_ in zip(self.start, self.stop, lo, hi)]
        pad += [(0, 0)] * (volume.ndim - 3)
        return jnp.pad(out, pad, constant_values=fill)

    def put(self, values: Array, grid: Grid) -> Array:
        """A grid-shaped array holding `values` (window-shaped) in the window and 0 elsewhere."""
        lo = [max(a, 0) for a in self.start]
        hi = [min(b, m) for b, m in zip(self.stop, grid.shape)]
        inner = values[tuple(slice(lo_ - a, h - a) for a, lo_, h in zip(self.start, lo, hi))]
        pad = [(lo_, m - h) for lo_, h, m in zip(lo, hi, grid.shape)]
        return jnp.pad(inner, pad)


def cell_voxels(grid: Grid, cell_mm: float | Sequence[float]) -> tuple[int, int, int]:
    """Voxels per coarse cell along each axis, for cells about `cell_mm` wide (one size, or (z, y, x))."""
    sizes = (cell_mm,) * 3 if np.ndim(cell_mm) == 0 else tuple(cell_mm)
    if len(sizes) != 3:
        raise ValueError(f"cell_mm must be one size or three (z, y, x), got {cell_mm!r}")
    return tuple(max(1, round(c / d)) for c, d in zip(sizes, grid.spacing_mm))


def whole_grid(grid: Grid, cell: tuple[int, int, int]) -> Window:
    """The whole grid, padded at the far end to whole cells."""
    return Window((0, 0, 0), tuple(math.ceil(n / c) * c for n, c in zip(grid.shape, cell)), cell)


def view_extents(grid: Grid, beam: Beam) -> np.ndarray | None:
    """First and last voxel (z, y, x) inside each view's aperture, shape (views, 2, 3); a view that
    reaches no voxel has first > last. None for a traced beam.

    Voxel centres are tested on a lattice of every second voxel (callers add a margin for the
    voxels between); the lattice's coordinates separate per axis, so each view costs a few
    passes over it.
    """
    if not _concrete_beam(beam):
        return None
    axes = [o + d * np.arange(0, n, 2) for o, d, n in zip(grid.origin_mm, grid.spacing_mm, grid.shape)]
    half = np.asarray(beam.tan_half, np.float64)
    centre = np.asarray(beam.aperture_center, np.float64)
    extents = np.zeros((beam.num_views, 2, 3), np.int64)
    extents[:, 0] = 1  # first > last: no voxel
    for v, (f, (c, u, w)) in enumerate(zip(np.asarray(beam.focal_mm, np.float64), np.asarray(beam.axes, np.float64))):
        z, y, x = (a - fa for a, fa in zip(axes, f))

        def along(e):  # (voxel - focal spot) . e on the lattice
            return z[:, None, None] * e[0] + y[None, :, None] * e[1] + x[None, None, :] * e[2]  # noqa: B023

        depth = along(c)
        ok = depth > 0
        safe = np.where(ok, depth, 1.0)
        hit = ok & (np.abs(along(u) / safe - centre[0]) <= half[0] + 1e-9)
        hit &= np.abs(along(w) / safe - centre[1]) <= half[1] + 1e-9
        for a in range(3):
            rows = np.flatnonzero(hit.any(axis=tuple(b for b in range(3) if b != a)))
            if rows.size:
                extents[v, :, a] = 2 * rows[0], 2 * rows[-1]
    return extents


def _concrete_beam(beam: Beam) -> bool:
    return is_concrete(beam.focal_mm, beam.axes, beam.tan_half, beam.aperture_center)


def beam_window(grid: Grid, extents: np.ndarray | None, cell: tuple[int, int, int], margin_voxels: int = 2) -> Window:
    """Voxels that some view's aperture reaches (`view_extents`: their bounding box plus a margin), in
    whole cells aligned with those of `whole_grid`. With a traced beam (None) the whole grid is used."""
    if extents is None:
        return whole_grid(grid, cell)
    reached = extents[:, 0, 0] <= extents[:, 1, 0]
    if not reached.any():
        raise ValueError("the source's field does not reach the phantom grid")
    lo = np.maximum(extents[reached, 0].min(axis=0) - margin_voxels, 0) // cell * cell  # aligned with whole_grid's
    hi = np.minimum(extents[reached, 1].max(axis=0) + margin_voxels + 1, grid.shape)
    stop = [a + math.ceil((b - a) / c) * c for a, b, c in zip(lo, hi, cell)]
    return Window(tuple(int(a) for a in lo), tuple(int(b) for b in stop), cell)


def view_slabs(
    window: Window, extents: np.ndarray | None, num_views: int, margin_voxels: int = 2
) -> tuple[int, np.ndarray]:
    """The z-slab of `window` that each view's aperture reaches (`view_extents`), in whole cells of equal count.

    A helical scan's views each cover a few centimetres of a long window; computing each
    view on its slab only costs the slab's voxels, not the window's.

    Returns:
        (cells per slab, first cell of each view's slab within the window, shape (views,)).
        A traced beam (None) gets the whole window for every view.
    """
    cells_z, cz = window.cells[0], window.cell[0]
    if extents is None:
        return cells_z, np.zeros(num_views, np.int32)
    reached = extents[:, 0, 0] <= extents[:, 1, 0]
    z = np.where(reached[:, None], extents[:, :, 0], window.start[0]) - window.start[0]  # a miss: the first row
    first = np.maximum(z[:, 0] - margin_voxels, 0) // cz
    last = np.minimum(z[:, 1] + margin_voxels, window.shape[0] - 1) // cz
    size = int(np.max(last - first)) + 1
    return size, np.minimum(first, cells_z - size).astype(np.int32)


NEAR_ROWS = 4
"""Rows of coarse cells on each side of the irradiated ones where the scattered fluence is computed in
every row (`scatter_rows`)."""


def scatter_rows(n_rows: int, first: int, last: int, growth: float) -> tuple[int, ...] | None:
    """The z rows of coarse cells whose scattered fluence is computed; the others are interpolated between.

    Every row within `NEAR_ROWS` of the irradiated rows [first, last], then, away from them, rows
    spaced at most `growth` times their distance from those rows (at least one row apart),
    and the grid's first and last row. None: every row (`growth` 0, or no row left out).
    """
    if growth <= 0:
        return None
    keep = set(range(max(first - NEAR_ROWS, 0), min(last + NEAR_ROWS, n_rows - 1) + 1)) | {0, n_rows - 1}
    for z, edge, end, sign in ((first - NEAR_ROWS, first, 0, -1), (last + NEAR_ROWS, last, n_rows - 1, 1)):
        while sign * (end - z) > 0:
            z += sign * max(1, int(growth * sign * (z - edge)))
            keep.add(min(max(z, 0), n_rows - 1))
    return None if len(keep) == n_rows else tuple(sorted(keep))


def row_brackets(n_rows: int, rows: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row z of `n_rows`: the positions in `rows` of the computed rows below and above it and
    its fraction t of the way between them (0 for a computed row, which is its own lower row), shape (n_rows,)."""
    z = np.arange(n_rows)
    if rows is None:
        return z, z, np.zeros(n_rows)
    r = np.asarray(rows)
    lo = np.searchsorted(r, z, side="right") - 1
    hi = np.minimum(lo + 1, len(r) - 1)
    t = np.where(r[lo] == z, 0.0, (z - r[lo]) / np.maximum(r[hi] - r[lo], 1))
    return lo, np.where(t > 0, hi, lo), t


def axial_layout(
    grid: Grid, beam: Beam, window: Window, slab: int, first_cells: np.ndarray, step_mm: float
) -> tuple[int, np.ndarray] | None:
    """The z rows each view's `axial_transmissions` reads, or None where that fast path does not apply.

    It applies to a concrete beam whose views all have the slice direction w along the
    grid's z axis (c and u in the (y, x) plane), their focal spots at least `step_mm`
    outside the grid and within reach of their z-slab. A target's line integral then
    passes only nodes between the focal spot's and the target's heights, widened by at
    most `step_mm (|aperture centre w| + tan_half w + 4)` (node spacing and interpolation
    reach): `m` voxels, and each view reads its slab widened by 2 m (padded rows).

    Returns:
        (rows read per view, first padded z row of each view, shape (views,)).
    """
    if not _concrete_beam(beam):
        return None
    axes = np.asarray(beam.axes, np.float64)
    focal = np.asarray(beam.focal_mm, np.float64)
    if not (np.allclose(axes[:, 2], [1.0, 0.0, 0.0], atol=1e-6) and np.allclose(axes[:, :2, 0], 0.0, atol=1e-6)):
        return None
    corners = box_corners(*(np.asarray(b, np.float64) for b in grid.bounds_mm))
    r0 = np.min(np.einsum("vpi,vi->vp", corners[None] - focal[:, None], axes[:, 0]), axis=1)
    if np.any(r0 < step_mm):
        return None
    dz = grid.spacing_mm[0]
    reach = step_mm * (abs(float(np.asarray(beam.aperture_center)[1])) + float(np.asarray(beam.tan_half)[1]) + 4.0)
    m = math.ceil(reach / dz) + 2
    lo = window.start[0] + np.asarray(first_cells) * window.cell[0]  # first z voxel of each view's slab
    f_z = (focal[:, 0] - grid.origin_mm[0]) / dz
    if np.any(f_z < lo - m) or np.any(f_z > lo + slab - 1 + m):
        return None
    rows = min(slab + 4 * m, grid.shape[0] + 2)
    return rows, np.clip(lo + 1 - 2 * m, 0, grid.shape[0] + 2 - rows).astype(np.int32)


def bev_shape(grid: Grid, window: Window, beam: Beam, step_mm: float) -> tuple[int, int, int]:
    """Samples (depth, fan u, slice w) of the beam's-eye-view lattice for a ray step of `step_mm`.

    Depth runs from where rays enter the grid to the deepest window voxel; across the
    beam, rays are `step_mm` apart at that depth. Bounds from the grid when traced.
    """
    lo, hi = (np.asarray(b, np.float64) for b in grid.bounds_mm)
    diag = float(np.linalg.norm(hi - lo))
    if not is_concrete(beam.focal_mm, beam.axes, beam.tan_half):
        n = math.ceil(diag / step_mm) + 2
        return n, n, n
    corners = box_corners(*_window_bounds(grid, window))
    grid_corners = box_corners(lo, hi)
    n_r = n_a = n_b = 2
    half = np.asarray(beam.tan_half, np.float64)
    for f, c in zip(np.asarray(beam.focal_mm, np.float64), np.asarray(beam.axes, np.float64)[:, 0]):
        r0 = max(float(((grid_corners - f) @ c).min()), 0.0)
        r1 = float(((corners - f) @ c).max())
        n_r = max(n_r, math.ceil(max(r1 - r0, 0.0) / step_mm) + 2)
        width = 2 * half * max(r1, 0.0)
        n_a = max(n_a, math.ceil(width[0] / step_mm) + 2)
        n_b = max(n_b, math.ceil(width[1] / step_mm) + 2)
    n_a, n_b = min(n_a, math.ceil(diag / step_mm) + 2), min(n_b, math.ceil(diag / step_mm) + 2)
    return n_r, n_a, n_b


def _window_bounds(grid: Grid, window: Window):
    d = np.asarray(grid.spacing_mm)
    o = np.asarray(grid.origin_mm)
    return o + (np.asarray(window.start) - 0.5) * d, o + (np.asarray(window.stop) - 0.5) * d


def box_corners(lo, hi) -> np.ndarray:
    """The 8 corners (z, y, x) of the axis-aligned box [lo, hi] (mm), shape (8, 3)."""
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
