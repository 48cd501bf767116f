"""Scattered photons: first scatter from coarse-grained sources, with a build-up factor for the rest.

Model (a point-kernel method; Shultis & Faw, *Radiation Shielding*, 2000, ch. 8):

* Sources. Primary photons scatter at rate mu_s Phi in every voxel. Summed over the
  views of a coarse cell, the scattered photons per steradian in direction Omega are,
  to second order in Legendre polynomials of the scattering angle,

      n(Omega) = [n0 + 3 Omega . n1 + 5 Omega^T Q Omega] / (4 pi),
      n1 = sum_v c1 N_v d_v,   Q = sum_v c2 N_v (3 d_v d_v^T - I) / 2,

  where N_v are the photons scattered by view v (direction d_v) and c_l the Legendre
  moments of the angular distribution (Klein-Nishina x S and Thomson x F^2, exactly as
  the Monte Carlo samples them). Thomson scattering, (1 + cos^2)/2, is represented
  exactly; Klein-Nishina's forward bias at diagnostic energies mostly so. The
  `n_sources` cells that scatter most become sources; every other cell's emission is
  added to its nearest source (moments add, the position is the emission centroid).
* Transport to each target. Uncollided scattered fluence is n(Omega) exp(-tau) / r^2
  with tau the line integral of mu at the scattered energy (the mean energy after one
  scattering) along the straight path, sampled at `path_samples` points on a coarse
  grid. 1/r^2 becomes its mean over the source's emission and the target cell, both
  taken as Gaussians with their per-axis variances (`blob_inverse_square`): a target
  gets its cell's mean, which is what interpolating to the voxels needs. The
  attenuation is averaged over the source's spread along the path likewise (its depths
  shift by the source cell's mu times a Gaussian displacement; closed form in
  `PriorParams.attenuation`), which matters at low energies and for lumped sources.
* Multiple scatter. The fluence is multiplied by a Berger build-up factor
  B = 1 + a tau_s exp(b tau_s) (Berger 1956; the form used for point-kernel build-up
  in ANSI/ANS-6.4.3) and by an overall scale kappa; a, b and kappa depend smoothly on
  the scattered energy and are the prior's calibrated parameters (`PriorParams`). The
  build-up counts the *scattering* optical depth tau_s (incoherent + coherent) of the
  path, not the total: photons absorbed by the photoelectric effect in lead, iodine or
  bone build nothing up, and in water the two nearly agree (as for the single-medium
  Berger fits, which depend on mu r with mu dominated by Compton scattering).
* Photons that left a body. The Berger factor is an infinite-medium one: it counts photons
  scattered back from matter beyond each point, which the air beside a patient lacks. A path
  that crosses an air gap (`escaped_fraction`: g = 1 - the product over its samples of each
  cell's 1 - exp(-sigma(60 keV) / 0.01 cm^-1), the mean of its logarithm read with the other
  channels) has left the body; its build-up grows more slowly, B = 1 + a tau_s exp(b tau_s -
  gamma g tau_s), gamma(E) calibrated too. A path inside the body crosses no gap and keeps
  the infinite-medium B.
* Shields thinner than a cell (a lead apron, a thyroid collar). Coarse cells smear them
  out, and interpolating fluence between cells on both sides of one leaks unshielded
  fluence behind it. With a last leg of length L, each path is attenuated on the coarse
  cells only up to L before its target (its own samples, weighted by the part of their
  stretch that lies there; a path shorter than L is carried back past its source through
  the source's matter), the cells' fluence is interpolated to the voxels, and attenuated
  by the fine matter over each voxel's own last L mm toward the mean direction of arrival.
  In uniform matter the two parts make the whole path exactly; across a shield the voxel
  behind it sees the shield at full strength. (Carrying the cells' fully attenuated fluence
  back by exp(+tau) of a separately integrated last leg, as before, disagreed with the
  transport's samples next to a lead cell: 10^6 times the fluence in front of a collar.)
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..geometry._grid import Grid
from ._primary import bilinear, cell_of, trilinear

GAP_KEV = 60.0
"""Energy at which a cell's scattering coefficient decides whether it is an air gap (keV)."""

GAP_SCATTERING_PER_CM = 0.01
"""A coarse cell with scattering coefficient sigma (1/cm, at `GAP_KEV`) is closed (holds matter rather
than an air gap) by 1 - exp(-sigma / this): air 0.02, a lung 0.99, soft tissue 1 (see `escaped_fraction`)."""

MIN_LOG_CLOSED = -10.0
"""Lower bound of ln(closed) per cell (vacuum would be -inf)."""

MAX_LAST_LEG_TAU = 50.0
"""Largest optical depth a last leg counts (each way: exp(+50) and exp(-50) stay finite in float32)."""

DAWSON_OVER_Z = ((0.13730038, 0.02979734, 0.01509082), (0.79571331, 0.33054256, 0.04172102))
"""D(z) / z ~ (1 + p1 t + p2 t^2 + p3 t^3) / (1 + q1 t + q2 t^2 + q3 t^3 + 2 p3 t^4), t = z^2: least
squares in relative error against scipy.special.dawsn on t in [0, 1e5] (max 7.4e-4, tested)."""


def blob_inverse_square(
    r2: Float[Array, "*b"], omega: Float[Array, "*b 3"], variance_mm2: Float[Array, "*b 3"]
) -> Float[Array, "*b"]:
    """Mean of 1 / |x|^2 for x Gaussian about a point at distance sqrt(r2) in direction omega,
    with per-axis variance `variance_mm2` (1/mm^2): a point source's 1/r^2 spread over an
    emitting blob and a target cell.

    With v the mean variance, the isotropic Gaussian gives exactly D(z) / (z v), z^2 = r^2 / 2v
    (D: Dawson's integral; 1/v at r = 0, (1 + v/r^2) / r^2 far away), here by a rational
    function of z^2 fitted to it (`DAWSON_OVER_Z`, within 8e-4 everywhere, with D's far-field
    limit 1 / 2z^2 built in; a fraction of the cost of `jax.scipy.special.dawsn`). Anisotropy adds
    4 (omega^T V omega - v) r^2 / (r^2 + 1.5 v)^3: far away the exact second-order term (spread
    along the line of sight raises the mean, spread across it lowers it), nothing at r = 0 and
    for an isotropic blob. Against the exact 1-D integral: within 13 % for variances in the
    ratio 1 : 1.75 (a (16, 32, 32) mm cell), within 45 % for 1 : 20 (tested).
    """
    v = jnp.mean(variance_mm2, axis=-1)
    t = r2 / (2.0 * v)
    (p1, p2, p3), (q1, q2, q3) = DAWSON_OVER_Z
    isotropic = (1.0 + t * (p1 + t * (p2 + t * p3))) / (v * (1.0 + t * (q1 + t * (q2 + t * (q3 + t * 2.0 * p3)))))
    along = jnp.sum(omega**2 * variance_mm2, axis=-1)
    return isotropic + 4.0 * (along - v) * r2 / (r2 + 1.5 * v) ** 3


def scattered_fluence(
    coarse_grid: Grid,
    coarse_mu: Float[Array, "z y x k"],
    coarse_sigma: Float[Array, "z y x j"],
    targets_mm: Float[Array, "t 3"] | None,
    source_mm: Float[Array, "s 3"],
    n0: Float[Array, "s g"],
    n1: Float[Array, "s g 3"],
    q: Float[Array, "s g 3 3"],
    energy_kev: Float[Array, "s g"],
    basis_at,
    scattering_basis_at,
    attenuation,
    source_var_mm2: Float[Array, "s 3"],
    path_samples: int,
    last_leg_mm: float = 0.0,
    block: int = 512,
    z_rows: tuple[int, ...] | None = None,
) -> tuple[Float[Array, "t g"], Float[Array, "t g"], Float[Array, "t 3"]]:
    """Scattered photon fluence and energy fluence at each target (per mm^2, keV per mm^2), and
    the energy-fluence-weighted sum of the unit vectors from each target toward the sources.

    Args:
        coarse_grid, coarse_mu, coarse_sigma: the grid and its basis densities (1/cm per
            unit basis) of attenuation and of scattering, along scattered paths.
        targets_mm: target points, shape (t, 3); None: the centres of all cells of
            `coarse_grid` in C order (the same values, read separably, see `_lattice_path_mean`).
        source_mm: source points, shape (s, 3).
        n0, n1, q: source angular moments per energy group (photons, see module docstring).
        energy_kev: scattered photon energy per source and group, shape (s, g).
        basis_at, scattering_basis_at: energy (keV) -> basis values (..., k) and (..., j).
        attenuation: (tau, tau_s, energy_kev, sd_tau, sd_tau_s) -> kappa B(tau_s) exp(-tau) averaged
            over the depths' spreads, elementwise (`PriorParams.attenuation`).
        source_var_mm2: per-axis variance of each source's emission about it (mm^2); each
            target is spread over its coarse cell likewise (see `blob_inverse_square`), and
            the attenuation is averaged over the source's spread along each path.
        path_samples: attenuation samples per path (midpoint rule).
        last_leg_mm: the exponential attenuation stops this far before each target (the
            build-up still counts the whole path), which the caller applies on a finer grid;
            a path shorter than it is carried back past its source through the source's own
            matter, so in uniform matter the two parts make the whole path exactly.
        block: targets per vectorised block.
        z_rows: with `targets_mm` None, the cells of these z indices only (all: None), in C order.
    """
    basis = jnp.concatenate([basis_at(energy_kev), scattering_basis_at(energy_kev)], -1)  # (s, g, k + j)
    k = coarse_mu.shape[-1]
    dtype = source_mm.dtype
    c = coarse_mu.shape[-1] + coarse_sigma.shape[-1]
    # channels: attenuation and scattering basis densities, and ln(closed) of each cell (`escaped_fraction`;
    # outside the grid it reads 0, matter, but the paths between points of the grid stay inside it)
    sigma_gap = (coarse_sigma @ scattering_basis_at(jnp.asarray(GAP_KEV, dtype)))[..., None]  # 1/cm
    closed = -jnp.expm1(-jnp.maximum(sigma_gap, 1e-30) / GAP_SCATTERING_PER_CM)
    coarse = jnp.concatenate([coarse_mu, coarse_sigma, jnp.maximum(jnp.log(closed), MIN_LOG_CLOSED)], -1)
    frac = (jnp.arange(path_samples, dtype=dtype) + 0.5) / path_samples
    # Legendre features of the direction, [1, Omega, Omega Omega^T], against the moments [n0, 3 n1, 5 Q]
    variance = (source_var_mm2 + (jnp.asarray(coarse_grid.spacing_mm, dtype) ** 2 / 12.0)[None])[:, None]  # (s, 1, 3)
    moments = jnp.concatenate([n0[..., None], 3.0 * n1, 5.0 * q.reshape(q.shape[:2] + (9,))], -1) / (4.0 * math.pi)
    # squared attenuation and scattering coefficients (1/mm^2) of each source's own matter, (2, s, g)
    at_source = 0.1 * trilinear(coarse, coarse_grid.to_index(source_mm), outside_zero=True)[:, :c]  # (s, k + j) 1/mm
    per_basis = at_source[:, None, :] * basis  # (s, g, k + j)
    source_mu2 = jnp.stack([jnp.sum(per_basis[..., :k], -1), jnp.sum(per_basis[..., k:], -1)]) ** 2

    def transport(t, mean_mu):  # targets (b, 3), mean basis densities along each path (s, b, k + j + 1 [+ k])
        # arrays run (source, group, target): the dots' own output order, so nothing is transposed
        rel = t[None] - source_mm[:, None]  # (s, b, 3)
        r2 = jnp.sum(rel**2, axis=-1)
        r = jnp.sqrt(r2 + 1e-6)
        omega = rel / r[..., None]
        tau_k = mean_mu * (r * 0.1)[..., None]
        tau = jnp.einsum("sgk,sbk->sgb", basis[..., :k], tau_k[..., :k])
        tau_s = jnp.einsum("sgk,sbk->sgb", basis[..., k:c], tau_k[..., k:c])
        tau_escaped = tau_s * escaped_fraction(mean_mu[..., c], path_samples)[:, None]
        # exp(-tau) only up to the last leg (past the source through its own matter when shorter); the
        # build-up and the source's spread still count the whole path
        if last_leg_mm > 0:
            beyond = jnp.maximum(last_leg_mm - r, 0.0)[..., None] * at_source[:, None, :k]
            tau_before = jnp.einsum("sgk,sbk->sgb", basis[..., :k], tau_k[..., c + 1 :] - beyond)
        features = jnp.concatenate(
            [jnp.ones_like(r)[..., None], omega, (omega[..., :, None] * omega[..., None, :]).reshape(r.shape + (9,))],
            -1,
        )
        angular = jnp.maximum(jnp.einsum("sgm,sbm->sgb", moments, features), 0.0)
        # the optical depths' standard deviations over the source's emission along the path, at most
        # sqrt(depth) (the Gaussian tilt moves the dominant depth to tau - sd^2, which must stay >= 0)
        along = jnp.sum(omega**2 * source_var_mm2[:, None], axis=-1)[:, None]  # (s, 1, b) mm^2
        sd_tau = _sqrt(jnp.minimum(along * source_mu2[0][..., None], tau))
        sd_tau_s = _sqrt(jnp.minimum(along * source_mu2[1][..., None], tau_s))
        mean_attenuation = attenuation(tau, tau_s, energy_kev[..., None], sd_tau, sd_tau_s, tau_escaped)
        if last_leg_mm > 0:  # the last leg's attenuation given back (B exp(-tau) itself stays bounded)
            mean_attenuation = mean_attenuation * jnp.exp(jnp.minimum(tau - tau_before, MAX_LAST_LEG_TAU))
        kernel = angular * mean_attenuation * blob_inverse_square(r2, omega, variance)[:, None]
        energy = kernel * energy_kev[..., None]
        toward = -jnp.einsum("sb,sbi->bi", jnp.sum(energy, axis=1), omega)
        return jnp.sum(kernel, axis=0).T, jnp.sum(energy, axis=0).T, toward

    if targets_mm is None:  # blocks of (z, y) rows of cells, each row all of x
        cz, cy, cx = coarse_grid.shape
        rows = max(1, block // cx)
        z_index = jnp.arange(cz) if z_rows is None else jnp.asarray(z_rows)
        zy = jnp.stack(jnp.meshgrid(z_index, jnp.arange(cy), indexing="ij"), -1).reshape(-1, 2)
        zy = jnp.pad(zy, ((0, -zy.shape[0] % rows), (0, 0))).reshape(-1, rows, 2).astype(dtype)
        padded = jnp.pad(coarse, ((1, 1), (1, 1), (1, 1), (0, 0)))  # matter ends at the grid, as in `trilinear`
        source_index = coarse_grid.to_index(source_mm)
        spacing = jnp.asarray(coarse_grid.spacing_mm, dtype)
        x = jnp.arange(cx, dtype=dtype)

        def one_block(zy):
            index = jnp.concatenate(
                [jnp.broadcast_to(zy[:, None, :], (rows, cx, 2)), jnp.broadcast_to(x[None, :, None], (rows, cx, 1))],
                -1,
            ).reshape(-1, 3)
            mean_mu = jax.vmap(lambda i: _lattice_path_mean(padded, zy, i, frac, spacing, last_leg_mm, k))(
                source_index
            )  # (s, rows, x, c + 1 [+ k])
            return transport(coarse_grid.to_world(index), mean_mu.reshape((mean_mu.shape[0], rows * cx, -1)))

        blocks = zy
        n = z_index.shape[0] * cy * cx
    else:

        def one_block(t):
            points = source_mm[None, :, None] + frac[:, None, None, None] * (t[None] - source_mm[:, None])[None]
            mu = trilinear(coarse, coarse_grid.to_index(points), outside_zero=True, stacked=True)  # (p, s, b, c + 1)
            mean = jnp.mean(mu, axis=0)
            if last_leg_mm > 0:
                r = jnp.linalg.norm(t[None] - source_mm[:, None], axis=-1)  # (s, b)
                w = before_last_leg(frac, r, last_leg_mm)  # (p, s, b)
                mean = jnp.concatenate([mean, jnp.mean(w[..., None] * mu[..., :k], axis=0)], -1)
            return transport(t, mean)

        n = targets_mm.shape[0]
        blocks = jnp.pad(targets_mm, ((0, -n % block), (0, 0))).reshape(-1, block, 3)
    phi, psi, toward = jax.lax.map(one_block, blocks)
    g = n0.shape[1]
    return phi.reshape(-1, g)[:n], psi.reshape(-1, g)[:n], toward.reshape(-1, 3)[:n]


def _sqrt(x: Array) -> Array:
    """sqrt(x) for x >= 0 with a finite (zero) gradient at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def before_last_leg(frac: Float[Array, " p"], r_mm: Array, last_leg_mm: float) -> Array:
    """Weight of each midpoint sample `frac` of a path of length `r_mm` that lies before its last
    `last_leg_mm`: the part of the sample's stretch [f - 1/2p, f + 1/2p] r there, shape (p, *r)."""
    p = frac.shape[0]
    kept = (1.0 - last_leg_mm / jnp.maximum(r_mm, 1e-6)) * p  # samples' worth of path before the last leg
    return jnp.clip(kept[None] - (frac.reshape((p,) + (1,) * r_mm.ndim) * p - 0.5), 0.0, 1.0)


def _lattice_path_mean(
    padded: Float[Array, "z+2 y+2 x+2 c"],
    rows: Float[Array, "r 2"],
    source_index: Float[Array, " 3"],
    frac,
    spacing_mm: Float[Array, " 3"],
    last_leg_mm: float = 0.0,
    k: int = 0,
) -> Float[Array, "r x c"]:
    """Mean of `trilinear(volume, ...)` (outside zero) over the points `source + f (target - source)`, f in
    `frac`, for targets at the cell centres (z, y, x) of each (z, y) row and every x; `padded` is the
    volume with one zero cell on every side, indices are the volume's own. With `last_leg_mm` > 0 the
    first `k` channels are also averaged over the samples before each path's last leg only
    (`before_last_leg`), appended: shape (r, x, c + k).

    The points of one f form a scaled copy of the cell lattice, so trilinear interpolation
    separates: bilinear in (z, y) per row (four whole x rows read), then linear along x.
    The same values as `trilinear`, at a fraction of its gathers.
    """
    n = jnp.asarray(padded.shape[:3], source_index.dtype)
    x = jnp.arange(padded.shape[2] - 2, dtype=source_index.dtype)
    cut = last_leg_mm > 0
    if cut:
        dz, dy = ((rows[:, a] - source_index[a]) * spacing_mm[a] for a in (0, 1))
        dx = (x - source_index[2]) * spacing_mm[2]
        r = jnp.sqrt(dz[:, None] ** 2 + dy[:, None] ** 2 + dx[None, :] ** 2)  # (r, x) mm
        weights = before_last_leg(frac, r, last_leg_mm)[..., None]  # (p, r, x, 1)
    else:
        weights = jnp.zeros((frac.shape[0],))

    def one_fraction(totals, f_w):
        f, w = f_w
        (iz, tz), (iy, ty) = (cell_of((1.0 - f) * source_index[a] + f * rows[:, a] + 1.0, n[a]) for a in (0, 1))
        plane = bilinear(padded, iz, tz, iy, ty)  # (r, x + 2, c)
        ix, tx = cell_of((1.0 - f) * source_index[2] + f * x + 1.0, n[2])
        tx = tx[None, :, None]
        value = (1.0 - tx) * plane[:, ix] + tx * plane[:, ix + 1]
        total, total_cut = totals
        return (total + value, total_cut + w * value[..., :k] if cut else total_cut), None

    shape = (rows.shape[0], x.shape[0])
    init = (jnp.zeros(shape + (padded.shape[3],), padded.dtype), jnp.zeros(shape + (k if cut else 0,), padded.dtype))
    (total, total_cut), _ = jax.lax.scan(one_fraction, init, (frac, weights))
    return jnp.concatenate([total, total_cut], -1) / frac.shape[0]


def escaped_fraction(mean_log_closed: Array, path_samples: int) -> Array:
    """Whether a path crosses an air gap, 1 - prod over its samples of closed = 1 - exp(p x mean ln closed),
    elementwise, from the mean over its `path_samples` samples of ln(closed) (`GAP_SCATTERING_PER_CM`): 0.98
    across one sample of air, 0.03 along five of lung, 0 in tissue. Photons that crossed one have left the
    body that scattered them; their scattering depth counts as escaped (`PriorParams.attenuation`).
    """
    return -jnp.expm1(path_samples * mean_log_closed)


def last_leg_tau(
    grid: Grid,
    basis_density: Float[Array, "z y x k"],
    points_mm: Float[Array, "*b 3"],
    direction: Float[Array, "*b 3"],
    length_mm: float,
) -> Float[Array, "*b k"]:
    """Integral of the basis densities (1/cm) over `length_mm` from each point along `direction`.

    Midpoint rule with one sample per smallest voxel spacing of `grid` (for a trilinearly
    interpolated field, exact along a grid axis whatever the offset: the interpolation
    weights of points one voxel apart sum to one).
    """
    samples = max(2, math.ceil(length_mm / min(grid.spacing_mm)))
    step = length_mm / samples
    tau = 0.0
    for j in range(samples):  # a loop, not a vmap: one (*b, k) array alive at a time
        at = points_mm + ((j + 0.5) * step) * direction
        tau = tau + trilinear(basis_density, grid.to_index(at), outside_zero=True)
    return tau * (step * 0.1)
