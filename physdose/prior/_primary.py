"""Primary photons: polychromatic Beer-Lambert attenuation from each view, by beam's-eye-view ray tracing.

For one view with focal spot f and axes (c, u, w), a point is f + r (c + a u + b w):
rays are lines of fixed (a, b) and r is the depth along the central ray. The basis
densities are sampled on a lattice of (r, a, b), integrated along r (trapezoid, path
element sqrt(1 + a^2 + b^2) dr), turned into transmissions (per energy group, say), and
read back at every target voxel: linearly across the rays (a, b), where a voxel's photons
arrive along the rays around its centre and carry the mean of their transmissions, and
geometrically along them (r), which is exact for the exponential fall between two nodes of
one ray (linear interpolation there would overstate the transmission at a voxel centre
between nodes by up to cosh(mu step / 2): 5-13 % for 8 mm of bone at 50-40 keV; the voxel's own
depth extent is the caller's, see `_model.sinhc`). That costs O(voxels) per view instead
of O(voxels x steps) for marching a ray to each voxel; the lattice spacing `step_mm` is
the ray step, and the error falls with it (tested).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..geometry._grid import Grid
from ._geometry import box_corners

FLOOR = 1e-30
"""Transmissions below this read as this in the depth interpolation (e^-69: negligible; keeps the
logarithm's gradient finite in float32)."""

STACKED_MAX_BYTES = 2**30
"""Largest table of cell corners `trilinear(stacked=True)` builds; a bigger volume is read corner by corner."""


def cell_of(index: Array, n) -> tuple[Array, Array]:
    """Lower node (int32) and offset in [0, 1] of continuous `index` on `n` nodes (n >= 2), clamped to them."""
    i = jnp.clip(index, 0.0, n - 1.0)
    i0 = jnp.minimum(jnp.floor(i), n - 2.0)
    return i0.astype(jnp.int32), i - i0


def bilinear(table: Array, i: Array, ti: Array, j: Array, tj: Array) -> Array:
    """Bilinear read over the first two axes of `table` at cells (i, j) with offsets (ti, tj)
    (from `cell_of`, shape (*b,)); the trailing axes are kept: shape (*b, *table.shape[2:])."""
    rest = (1,) * (table.ndim - 2)
    ti, tj = ti.reshape(ti.shape + rest), tj.reshape(tj.shape + rest)
    return (1.0 - ti) * ((1.0 - tj) * table[i, j] + tj * table[i, j + 1]) + ti * (
        (1.0 - tj) * table[i + 1, j] + tj * table[i + 1, j + 1]
    )


def trilinear(
    volume: Float[Array, "z y x k"], index: Float[Array, "*b 3"], *, outside_zero: bool, stacked: bool = False
) -> Array:
    """Trilinear interpolation of the rows of `volume` at continuous voxel indices, shape (*b, k).

    `outside_zero`: beyond the outer voxel centres the volume fades to 0 over one voxel
    (matter ends at the grid); otherwise indices are clamped to the grid.
    `stacked`: read each cell's eight corners in one gather from a table of them (eight
    times the volume's memory, so only up to `STACKED_MAX_BYTES`; about twice as fast for
    a volume read many times).
    """
    if outside_zero:
        volume = jnp.pad(volume, ((1, 1), (1, 1), (1, 1), (0, 0)))
        index = index + 1.0
    else:  # an axis of one voxel: repeat it, so every axis has an interval to interpolate in
        volume = jnp.pad(volume, [(0, int(n == 1)) for n in volume.shape[:3]] + [(0, 0)], mode="edge")
    i0, t = cell_of(index, jnp.asarray(volume.shape[:3], index.dtype).reshape((1,) * (index.ndim - 1) + (3,)))
    corners = [(dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    weights = [
        (t[..., 0] if dz else 1.0 - t[..., 0])
        * (t[..., 1] if dy else 1.0 - t[..., 1])
        * (t[..., 2] if dx else 1.0 - t[..., 2])
        for dz, dy, dx in corners
    ]
    if stacked and 8 * volume.size * volume.dtype.itemsize <= STACKED_MAX_BYTES:
        z, y, x = volume.shape[:3]
        table = jnp.stack([volume[dz : z - 1 + dz, dy : y - 1 + dy, dx : x - 1 + dx] for dz, dy, dx in corners], -2)
        values = table[i0[..., 0], i0[..., 1], i0[..., 2]]  # (*b, 8, k)
        return jnp.einsum("...c,...ck->...k", jnp.stack(weights, -1), values)
    out = 0.0
    for (dz, dy, dx), weight in zip(corners, weights):
        out = out + weight[..., None] * volume[i0[..., 0] + dz, i0[..., 1] + dy, i0[..., 2] + dx]
    return out


def resample_linear(volume: Float[Array, "cz cy cx k"], source: Grid, target: Grid) -> Float[Array, "z y x k"]:
    """`trilinear(volume, source.to_index(target voxel centres), outside_zero=False)`, one axis at a time.

    On axis-aligned lattices trilinear interpolation separates into three 1-D linear
    interpolations; each reads two neighbouring slabs, so the cost is a few passes over
    the output instead of eight gathers per voxel and channel.
    """
    out = volume
    for axis in range(3):
        n = source.shape[axis]
        i = target.origin_mm[axis] + target.spacing_mm[axis] * np.arange(target.shape[axis]) - source.origin_mm[axis]
        i = np.clip(i / source.spacing_mm[axis], 0.0, n - 1.0)
        i0 = np.clip(np.floor(i), 0, max(n - 2, 0)).astype(np.int32)
        t = (i - i0 if n > 1 else np.zeros_like(i)).astype(out.dtype)
        shape = [1] * out.ndim
        shape[axis] = -1
        t = jnp.asarray(t).reshape(shape)
        lower = jnp.take(out, i0, axis=axis)
        upper = jnp.take(out, np.minimum(i0 + 1, n - 1), axis=axis)
        out = lower + t * (upper - lower)
    return out


class _Lattice(NamedTuple):
    """One view's beam's-eye-view lattice: nodes f + r (c + a u + b w) and the targets' place in it."""

    r: Float[Array, " r"]  # depth of the nodes (mm)
    a: Float[Array, " a"]  # fan tangents
    b: Float[Array, " b"]  # slice tangents
    index: Float[Array, "n 3"]  # continuous (r, a, b) node index of each target

    def integrate(self, mu: Float[Array, "r a b k"]) -> Float[Array, "r a b k"]:
        """Line integrals from the first depth node to every node (trapezoid; mu in 1/cm)."""
        dr = self.r[1] - self.r[0]
        path = jnp.sqrt(1.0 + self.a[:, None] ** 2 + self.b[None, :] ** 2)  # mm of ray per mm of depth
        steps = 0.5 * (mu[1:] + mu[:-1]) * (dr * 0.1) * path[None, :, :, None]
        # a prefix sum as a tree of additions: 5x faster than jnp.cumsum (a reduce-window) on CPU
        return jnp.concatenate([jnp.zeros_like(mu[:1]), jax.lax.associative_scan(jnp.add, steps, axis=0)], axis=0)


def _lattice(grid, focal_mm, axes, aperture_lo, aperture_hi, targets_mm, bev, step_mm, hull_mm=None) -> _Lattice:
    """The lattice over `targets_mm` (n, 3), or over `hull_mm` when given: points whose convex hull
    holds the targets, all in front of the focal spot (e.g. a box's corners: depth and tangents,
    linear and linear-fractional in position, take their extremes at the vertices)."""
    c, u, w = axes
    n_r, n_a, n_b = bev
    corners = jnp.asarray(box_corners(*grid.bounds_mm), targets_mm.dtype)
    r0 = jnp.maximum(jnp.min((corners - focal_mm[None]) @ c), 0.0)

    def depth_and_tangents(points):
        rel = points - focal_mm[None]
        depth = rel @ c
        safe = jnp.where(depth > 0, depth, 1.0)
        return depth, jnp.stack([rel @ u, rel @ w], axis=-1) / safe[:, None]

    depth_t, ab_t = depth_and_tangents(targets_mm)
    depth_h, ab_h = (depth_t, ab_t) if hull_mm is None else depth_and_tangents(hull_mm)
    r1 = jnp.maximum(jnp.max(depth_h), r0 + 1e-3)
    inside = depth_h > 0
    ab_lo = jnp.maximum(aperture_lo, jnp.min(jnp.where(inside[:, None], ab_h, jnp.inf), axis=0))
    ab_hi = jnp.minimum(aperture_hi, jnp.max(jnp.where(inside[:, None], ab_h, -jnp.inf), axis=0))
    ab_hi = jnp.maximum(ab_hi, ab_lo + 1e-6)
    # nodes step_mm apart in depth and across (at the deepest target); the counts are static bounds, so
    # a tight (concrete) and a loose (traced) layout share their nodes and give the same values
    dr = jnp.maximum(step_mm, (r1 - r0) / (n_r - 1))
    da = jnp.maximum(step_mm / r1, (ab_hi - ab_lo) / (jnp.asarray([n_a, n_b], ab_lo.dtype) - 1))
    r = r0 + dr * jnp.arange(n_r, dtype=targets_mm.dtype)
    a = ab_lo[0] + da[0] * jnp.arange(n_a, dtype=targets_mm.dtype)
    b = ab_lo[1] + da[1] * jnp.arange(n_b, dtype=targets_mm.dtype)
    index = jnp.stack([(depth_t - r0) / dr, (ab_t[:, 0] - ab_lo[0]) / da[0], (ab_t[:, 1] - ab_lo[1]) / da[1]], -1)
    return _Lattice(r, a, b, index)


def transmissions(
    grid: Grid,
    basis_density: Float[Array, "z y x k"],
    focal_mm: Float[Array, " 3"],
    axes: Float[Array, "3 3"],
    aperture_lo: Float[Array, " 2"],
    aperture_hi: Float[Array, " 2"],
    targets_mm: Float[Array, "n 3"],
    bev: tuple[int, int, int],
    step_mm: float,
    transmit: Callable[[Array, Array], Array],
) -> Float[Array, "n q"]:
    """Transmission from the focal spot to each target through the grid's matter (in-grid part).

    Args:
        grid: the phantom grid; matter outside it is not counted here.
        basis_density: basis densities on the grid (1/cm), shape (z, y, x, k).
        focal_mm, axes: the view's focal spot and (c, u, w) rows.
        aperture_lo, aperture_hi: the aperture in tangent coordinates (u, w).
        targets_mm: target points (mm), shape (n, 3).
        bev: lattice nodes (depth, u, w), static upper bounds (see `bev_shape`).
        step_mm: node spacing in depth and, at the deepest target, across the beam.
        transmit: maps the lattice's line integrals per basis function (r, a, b, k, dimensionless)
            and its fan tangents (a,) to transmissions in (0, 1] (r, a, b, q), e.g. per energy
            group through the matter and the bowtie.

    Returns:
        The transmissions read back at the targets (module docstring), shape (n, q).
    """
    lattice = _lattice(grid, focal_mm, axes, aperture_lo, aperture_hi, targets_mm, bev, step_mm)
    c, u, w = axes
    ray = c[None, None] + lattice.a[:, None, None] * u[None, None] + lattice.b[None, :, None] * w[None, None]
    points = focal_mm[None, None, None] + lattice.r[:, None, None, None] * ray[None]  # (r, a, b, 3)
    mu = trilinear(basis_density, grid.to_index(points), outside_zero=True, stacked=True)  # (r, a, b, k) 1/cm
    table = transmit(lattice.integrate(mu), lattice.a)  # (r, a, b, q)
    (ir, tr), (ia, ta), (ib, tb) = (cell_of(lattice.index[:, j], n) for j, n in enumerate(table.shape[:3]))

    def across(i):  # bilinear in (a, b) at depth node i, shape (n, q)
        def at(da, db):
            return table[i, ia + da, ib + db]

        ta_, tb_ = ta[:, None], tb[:, None]
        return (1.0 - ta_) * ((1.0 - tb_) * at(0, 0) + tb_ * at(0, 1)) + ta_ * ((1.0 - tb_) * at(1, 0) + tb_ * at(1, 1))

    return along_depth(across(ir), across(ir + 1), tr[:, None])


def along_depth(near: Array, far: Array, t: Array) -> Array:
    """Transmission a fraction `t` of the way between two depth nodes of a ray, from its values
    `near` and `far` there: near^(1 - t) far^t (elementwise; below `FLOOR` reads as `FLOOR`)."""
    # two logarithms, not log(far / near): its gradient holds near^2, which underflows in float32
    log_near, log_far = (jnp.log(jnp.maximum(v, FLOOR)) for v in (near, far))
    return jnp.exp(log_near + t * (log_far - log_near))


def axial_columns(basis_density: Float[Array, "z y x k"]) -> Float[Array, "y+2 x+2 z+2 k"]:
    """`basis_density` padded with one empty voxel on every side and stored as (y, x) columns along z."""
    return jnp.transpose(jnp.pad(basis_density, ((1, 1), (1, 1), (1, 1), (0, 0))), (1, 2, 0, 3))


def axial_transmissions(
    grid: Grid,
    columns: Float[Array, "y+2 x+2 z+2 k"],
    focal_mm: Float[Array, " 3"],
    axes: Float[Array, "3 3"],
    aperture_lo: Float[Array, " 2"],
    aperture_hi: Float[Array, " 2"],
    targets_mm: Float[Array, "tz y x 3"],
    bev: tuple[int, int, int],
    step_mm: float,
    z_start,
    z_nodes: int,
    transmit: Callable[[Array, Array], Array],
) -> Float[Array, "tz y x q"]:
    """`transmissions` for a view whose slice direction w is the grid's z axis (c, u in the (y, x)
    plane: a CT view, an untilted C-arm) and targets on a box lattice (voxel centres of a box of
    the grid), shape (tz, y, x, 3).

    Read by columns: a lattice node (r, a, b) lies at height z = f_z + r b above the point
    (y, x) that (r, a) fixes, so trilinear interpolation is bilinear in (y, x), reading one
    z column per (r, a) from `axial_columns`, then linear in z. The read-back takes each
    depth's nodes to the targets' heights, then interpolates in (r, a), which are the same
    for a whole target column (linearly in a, geometrically in r). Only the padded z rows
    [z_start, z_start + z_nodes) are read: they must hold every node a target's integral
    passes (see `_model.prepare`); nodes outside read 0.
    """
    tz, ny, nx = targets_mm.shape[:3]
    box = targets_mm[:: tz - 1 or 1, :: ny - 1 or 1, :: nx - 1 or 1].reshape(-1, 3)  # its corners
    columns_mm = targets_mm[0].reshape(-1, 3)
    lattice = _lattice(grid, focal_mm, axes, aperture_lo, aperture_hi, columns_mm, bev, step_mm, hull_mm=box)
    c, u, _ = axes
    dtype = targets_mm.dtype
    origin, spacing = (jnp.asarray(v, dtype) for v in (grid.origin_mm, grid.spacing_mm))
    n_y, n_x, n_z = (jnp.asarray(n, dtype) for n in columns.shape[:3])
    # sample: bilinear in (y, x) per (r, a) ...
    ray = c[None, 1:] + lattice.a[:, None] * u[None, 1:]  # (a, 2)
    yx = focal_mm[None, None, 1:] + lattice.r[:, None, None] * ray[None]  # (r, a, 2)
    (iy, ty), (ix, tx) = (
        cell_of((yx[..., j] - origin[j + 1]) / spacing[j + 1] + 1.0, n) for j, n in ((0, n_y), (1, n_x))
    )
    window = jax.lax.dynamic_slice_in_dim(columns, z_start, z_nodes, axis=2)
    column = bilinear(window, iy, ty, ix, tx)  # (r, a, z_nodes, k)
    # ... then linear in z at each (r, b)
    z = focal_mm[0] + lattice.r[:, None] * lattice.b[None]  # (r, b)
    iz, t = cell_of((z - origin[0]) / spacing[0] + 1.0, n_z)
    mu = jnp.einsum("rbl,ralk->rabk", _hat(iz - z_start, t, z_nodes), column)
    table = transmit(lattice.integrate(mu), lattice.a)  # (r, a, b, q)
    # read back: linear in b at each depth, to the targets' heights, then in (r, a) per target
    # column (between two depths a ray climbs step_mm x its slope, so reading both at the
    # target's height instead of along its ray differs by a small fraction of a node)
    n_r, n_a, n_b = (jnp.asarray(n, dtype) for n in table.shape[:3])
    slope = (targets_mm[None, :, 0, 0, 0] - focal_mm[0]) / lattice.r[:, None]  # (r, tz)
    ib, t = cell_of((slope - lattice.b[0]) / (lattice.b[1] - lattice.b[0]), n_b)
    at_heights = jnp.einsum("rzb,rabq->razq", _hat(ib, t, table.shape[2]), table)  # (r, a, tz, q)
    index = lattice.index.reshape(ny, nx, 3)
    (ir, tr), (ia, ta) = (cell_of(index[..., j], n) for j, n in ((0, n_r), (1, n_a)))
    ta = ta[..., None, None]
    near, far = ((1.0 - ta) * at_heights[i, ia] + ta * at_heights[i, ia + 1] for i in (ir, ir + 1))  # (y, x, tz, q)
    return jnp.moveaxis(along_depth(near, far, tr[..., None, None]), 2, 0)  # (tz, y, x, q)


def _hat(i0: Array, t: Array, n: int) -> Array:
    """Linear-interpolation weights on n nodes: (1 - t) at node i0 and t at i0 + 1, shape (*i0, n)."""
    nodes = jnp.arange(n).reshape((1,) * i0.ndim + (n,))
    return (1.0 - t)[..., None] * (nodes == i0[..., None]) + t[..., None] * (nodes == i0[..., None] + 1)


def outside_path_mm(grid: Grid, focal_mm: Float[Array, " 3"], targets_mm: Float[Array, "n 3"]) -> Float[Array, " n"]:
    """Length (mm) of each focal-spot-to-target segment that lies outside the grid box."""
    lo, hi = (jnp.asarray(b, targets_mm.dtype) for b in grid.bounds_mm)
    d = targets_mm - focal_mm[None]
    length = jnp.linalg.norm(d, axis=-1)
    safe = jnp.where(jnp.abs(d) > 1e-12, d, 1e-12)
    t0 = (lo - focal_mm)[None] / safe
    t1 = (hi - focal_mm)[None] / safe
    t_enter = jnp.clip(jnp.max(jnp.minimum(t0, t1), axis=-1), 0.0, 1.0)
    t_exit = jnp.clip(jnp.min(jnp.maximum(t0, t1), axis=-1), 0.0, 1.0)
    inside = jnp.maximum(t_exit - t_enter, 0.0)
    return length * (1.0 - inside)
