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
from jaxtyping import Array, Float

from ..geometry._grid import Grid


def trilinear(volume: Float[Array, "z y x k"], index: Float[Array, "*b 3"], *, outside_zero: bool) -> Array:
    """Trilinear interpolation of the rows of `volume` at continuous voxel indices, shape (*b, k).

    `outside_zero`: beyond the outer voxel centres the volume fades to 0 over one voxel
    (matter ends at the grid); otherwise indices are clamped to the grid.
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
    out = 0.0
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                weight = (t[..., 0] if dz else 1.0 - t[..., 0]) * (t[..., 1] if dy else 1.0 - t[..., 1])
                weight = weight * (t[..., 2] if dx else 1.0 - t[..., 2])
                out = out + weight[..., None] * volume[i0[..., 0] + dz, i0[..., 1] + dy, i0[..., 2] + dx]
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
    mu = trilinear(basis_density, grid.to_index(points), outside_zero=True)  # (r, a, b, k) 1/cm
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
    return trilinear(tau, index, outside_zero=False)


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
