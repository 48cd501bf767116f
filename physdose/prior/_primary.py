"""Primary photons: polychromatic Beer-Lambert attenuation from each view, by beam's-eye-view ray tracing.

For one view with focal spot f and axes (c, u, w), a point is f + r (c + a u + b w):
rays are lines of fixed (a, b) and r is the depth along the central ray. The basis
densities are sampled on a lattice of (r, a, b), integrated along r (trapezoid, path
element sqrt(1 + a^2 + b^2) dr), and the line integrals are read back at every target
voxel by trilinear interpolation. That costs O(voxels) per view instead of
O(voxels x steps) for marching a ray to each voxel; the lattice spacing `step_mm` is the
ray step, and the error falls with it (tested).
"""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..geometry._grid import Grid

STACKED_MAX_BYTES = 2**30
"""Largest table of cell corners `trilinear(stacked=True)` builds; a bigger volume is read corner by corner."""


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
    n = jnp.asarray(volume.shape[:3], index.dtype).reshape((1,) * (index.ndim - 1) + (3,))
    i = jnp.clip(index, 0.0, n - 1.0)
    i0 = jnp.minimum(jnp.floor(i), n - 2.0)
    t = i - i0
    i0 = i0.astype(jnp.int32)
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


def line_integrals(
    grid: Grid,
    basis_density: Float[Array, "z y x k"],
    focal_mm: Float[Array, " 3"],
    axes: Float[Array, "3 3"],
    aperture_lo: Float[Array, " 2"],
    aperture_hi: Float[Array, " 2"],
    targets_mm: Float[Array, "n 3"],
    bev: tuple[int, int, int],
    step_mm: float,
) -> Float[Array, "n k"]:
    """Integral of each basis density (1/cm per unit basis) from the focal spot to each target, in-grid part.

    Args:
        grid: the phantom grid; matter outside it is not counted here.
        basis_density: basis densities on the grid (1/cm), shape (z, y, x, k).
        focal_mm, axes: the view's focal spot and (c, u, w) rows.
        aperture_lo, aperture_hi: the aperture in tangent coordinates (u, w).
        targets_mm: target points (mm), shape (n, 3).
        bev: lattice nodes (depth, u, w), static upper bounds (see `bev_shape`).
        step_mm: node spacing in depth and, at the deepest target, across the beam.

    Returns:
        Dimensionless line integrals per basis function, shape (n, k).
    """
    c, u, w = axes
    n_r, n_a, n_b = bev
    lo, hi = (jnp.asarray(b, targets_mm.dtype) for b in grid.bounds_mm)
    corners = jnp.stack(jnp.meshgrid(*[jnp.stack([lo[i], hi[i]]) for i in range(3)], indexing="ij"), -1)
    r0 = jnp.maximum(jnp.min((corners.reshape(-1, 3) - focal_mm[None]) @ c), 0.0)
    rel_t = targets_mm - focal_mm[None]
    depth_t = rel_t @ c
    r1 = jnp.maximum(jnp.max(depth_t), r0 + 1e-3)
    safe = jnp.where(depth_t > 0, depth_t, 1.0)
    ab_t = jnp.stack([rel_t @ u, rel_t @ w], axis=-1) / safe[:, None]
    inside = depth_t > 0
    ab_lo = jnp.maximum(aperture_lo, jnp.min(jnp.where(inside[:, None], ab_t, jnp.inf), axis=0))
    ab_hi = jnp.minimum(aperture_hi, jnp.max(jnp.where(inside[:, None], ab_t, -jnp.inf), axis=0))
    ab_hi = jnp.maximum(ab_hi, ab_lo + 1e-6)
    # nodes step_mm apart in depth and across (at the deepest target); the counts are static bounds, so
    # a tight (concrete) and a loose (traced) layout share their nodes and give the same values
    dr = jnp.maximum(step_mm, (r1 - r0) / (n_r - 1))
    da = jnp.maximum(step_mm / r1, (ab_hi - ab_lo) / (jnp.asarray([n_a, n_b], ab_lo.dtype) - 1))
    r = r0 + dr * jnp.arange(n_r, dtype=targets_mm.dtype)
    a = ab_lo[0] + da[0] * jnp.arange(n_a, dtype=targets_mm.dtype)
    b = ab_lo[1] + da[1] * jnp.arange(n_b, dtype=targets_mm.dtype)
    ray = c[None, None] + a[:, None, None] * u[None, None] + b[None, :, None] * w[None, None]  # (a, b, 3)
    points = focal_mm[None, None, None] + r[:, None, None, None] * ray[None]  # (r, a, b, 3)
    mu = trilinear(basis_density, grid.to_index(points), outside_zero=True, stacked=True)  # (r, a, b, k) 1/cm
    path = jnp.sqrt(1.0 + a[:, None] ** 2 + b[None, :] ** 2)  # mm of ray per mm of depth
    steps = 0.5 * (mu[1:] + mu[:-1]) * (dr * 0.1) * path[None, :, :, None]
    tau = jnp.concatenate([jnp.zeros_like(mu[:1]), jnp.cumsum(steps, axis=0)], axis=0)
    index = jnp.stack(
        [
            (depth_t - r0) / dr,
            (ab_t[:, 0] - ab_lo[0]) / da[0],
            (ab_t[:, 1] - ab_lo[1]) / da[1],
        ],
        axis=-1,
    )
    return trilinear(tau, index, outside_zero=False, stacked=True)


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
