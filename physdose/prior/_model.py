"""`dose`: the physics prior, primary plus scattered dose on the phantom grid, differentiable end to end."""

import functools
import json
import math
from importlib import resources
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_positive, is_concrete
from ..geometry._grid import Grid
from ..materials._material import get
from ..materials._table import MaterialTable
from ..phantoms._phantom import Phantom
from ..sources._beam import Beam
from ..sources._source import AbstractSource
from ..units import kerma_gy
from ._geometry import (
    Window,
    axial_layout,
    beam_window,
    bev_shape,
    cell_voxels,
    group_count,
    group_spectrum,
    row_brackets,
    sample_views,
    scatter_rows,
    view_extents,
    view_slabs,
    whole_grid,
)
from ._medium import AttenuationBasis, Composition, basis_density, medium_data
from ._primary import axial_columns, axial_transmissions, outside_path_mm, resample_linear, transmissions
from ._scatter import MAX_LAST_LEG_TAU, last_leg_tau, scattered_fluence

NEGLIGIBLE = 1e-15
"""Scattered photons per source photon below which a source or group counts as empty (mean
positions and energies of fewer would put 1/n^2 underflows into float32 gradients)."""

TINY = 1e-30
"""Scattered fluence (1/mm^2 per source photon) below which a cell's mean scattered energy is not
formed (1 / fluence must stay finite in float32 gradients)."""

MIN_SHIELDING_X = -1.0
"""Lower bound of the self-shielding argument x (factor (e - 1) = 1.72 at most; see `self_shielding`)."""

FAR_ROWS = 0.15
"""`prepare`'s default `far_rows`. In the 80 kVp chest on 8 mm voxels (59 of 113 rows computed) it moves organ
doses by at most 0.64 % (the gonads, 500 mm from the scan) and the scattered dose per voxel by at most 3.4 %
within 300 mm of the scan; every voxel it moves by more than 5 % (up to 31 %) holds under 1.4e-4 of the maximum
dose. `Scene.dose` takes 0.30 s instead of 0.57 s there."""

REFERENCE_ENERGY_KEV = 60.0
"""Energy at which the calibrated parameters' energy dependence is anchored (keV)."""


class PriorParams(eqx.Module):
    """The prior's free parameters, each a function of the scattered photon energy E:

        p(E) = p[0] + p[1] ln(E / 60 keV)

    Attributes:
        log_scale: ln of the scatter scale kappa(E).
        log_buildup_a: ln of the Berger coefficient a(E).
        buildup_b: the Berger exponent b(E) (capped at 0.9 so B exp(-tau) decays).
        escape: gamma(E), the build-up's growth lost per unit of scattering optical depth
            of a path that crosses an air gap (photons that left one body toward another
            point: the room's staff, the air beside the patient); 0: the infinite-medium build-up.

    The build-up factor counts the scattering optical depth of a path (see
    `physdose.prior._scatter`).
    """

    log_scale: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)
    log_buildup_a: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)
    buildup_b: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)
    escape: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)

    def __check_init__(self):
        for name in ("log_scale", "log_buildup_a", "buildup_b", "escape"):
            if getattr(self, name).shape != (2,):
                raise ValueError(f"{name} must have shape (2,), got {getattr(self, name).shape}")

    def attenuation(
        self,
        tau: Array,
        tau_s: Array,
        energy_kev: Array,
        sd_tau: Array | float = 0.0,
        sd_tau_s: Array | float = 0.0,
        tau_escaped: Array | float = 0.0,
    ) -> Array:
        """kappa(E) B exp(-tau) = kappa exp(-tau) (1 + a tau_s exp(b tau_s - gamma tau_escaped)), elementwise,
        averaged over the depths (tau - sd_tau x, tau_s - sd_tau_s x), x ~ N(0, 1): a source spread
        along the path (zero spreads: the kernel itself).

        tau is the path's total optical depth, tau_s its scattering part (<= tau), tau_escaped the
        part of tau_s counted as escaped (a path across an air gap has left a body; the
        infinite-medium build-up counts backscatter from matter that is not there). In closed
        form, E[exp(-tau + sd x)] = exp(-tau + sd^2 / 2) and, with l = sd_tau - b sd_tau_s,
        E[(tau_s - sd_s x) exp(l x)] = (tau_s - sd_s l) exp(l^2 / 2).
        """
        x = jnp.log(jnp.maximum(energy_kev, 1.0) / REFERENCE_ENERGY_KEV)

        def at(p):
            return p[0] + p[1] * x

        b = jnp.minimum(at(self.buildup_b), 0.9)
        slope = sd_tau - b * sd_tau_s
        spread_tau_s = jnp.maximum(tau_s - sd_tau_s * slope, 0.0)
        growth = b * tau_s - at(self.escape) * tau_escaped - tau + 0.5 * slope**2
        buildup = jnp.exp(at(self.log_buildup_a)) * spread_tau_s * jnp.exp(growth)
        return jnp.exp(at(self.log_scale)) * (jnp.exp(0.5 * jnp.square(sd_tau) - tau) + buildup)


CALIBRATION = ("physdose.prior", "data", "calibrated.json")
"""Where physdose keeps its own calibration of the prior (written by benchmarks/prior_vs_mc.py --save)."""


@functools.lru_cache(maxsize=1)
def calibration_record() -> dict | None:
    """The shipped calibration (JSON record of `Prior.save`), or None if there is none."""
    package, *parts = CALIBRATION
    path = resources.files(package).joinpath(*parts)
    return json.loads(path.read_text()) if path.is_file() else None


def default_params() -> PriorParams:
    """The shipped calibrated parameters, or the uncalibrated `PriorParams()` without them."""
    record = calibration_record()
    return PriorParams() if record is None else PriorParams(**record["params"])


class PriorDose(eqx.Module):
    """Prior dose per source photon (Gy), on the phantom grid, shape (z, y, x) each.

    Attributes:
        primary: dose from unscattered photons (kerma approximation).
        scatter: dose from scattered photons.
        total: primary + scatter.
    """

    primary: Float[Array, "z y x"]
    scatter: Float[Array, "z y x"]
    total: Float[Array, "z y x"]


class Scene(eqx.Module):
    """The part of the prior that does not depend on `PriorParams`, for one phantom and source.

    `prepare` builds it (the primary dose and the scatter sources); `Scene.dose` and
    `Scene.dose_at` add the scattered dose for given parameters, so calibration computes
    the expensive part once.

    Attributes:
        grid: the phantom grid.
        composition: the phantom's matter.
        table: the phantom's cross sections.
        basis, scattering_basis: attenuation and scattering bases of the phantom's materials.
        primary: primary dose per source photon (Gy), shape (z, y, x).
        coarse_grid, coarse_mu, coarse_sigma: coarse cells and their attenuation and
            scattering basis densities (1/cm), for the paths of scattered photons.
        source_mm: scatter source positions (emission centroids), shape (s, 3).
        n0, n1, q: angular moments of the scattered photons per source and group.
        scattered_kev: mean scattered photon energy per source and group, shape (s, g).
        source_var_mm2: variance of each source's emission about its centroid per axis (mm^2),
            shape (s, 3).
        path_samples: attenuation samples per scattered path.
        last_leg_mm: final stretch of the scattered paths attenuated on the fine grid (mm;
            0: none), see `physdose.prior._scatter`.
        scatter_rows: the z rows of coarse cells whose scattered fluence is computed, the others
            interpolated between them (`prepare`'s `far_rows`); None: every row.
    """

    grid: Grid
    composition: Composition
    table: MaterialTable
    basis: AttenuationBasis
    scattering_basis: AttenuationBasis
    primary: Float[Array, "z y x"]
    coarse_grid: Grid
    coarse_mu: Float[Array, "cz cy cx k"]
    coarse_sigma: Float[Array, "cz cy cx j"]
    source_mm: Float[Array, "s 3"]
    n0: Float[Array, "s g"]
    n1: Float[Array, "s g 3"]
    q: Float[Array, "s g 3 3"]
    scattered_kev: Float[Array, "s g"]
    source_var_mm2: Float[Array, "s 3"]
    path_samples: int = eqx.field(static=True)
    last_leg_mm: float = eqx.field(static=True, default=0.0)
    scatter_rows: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def _fluence(self, params: PriorParams, targets_mm: Array | None) -> tuple[Array, Array, Array]:
        return scattered_fluence(
            self.coarse_grid,
            self.coarse_mu,
            self.coarse_sigma,
            targets_mm,
            self.source_mm,
            self.n0,
            self.n1,
            self.q,
            self.scattered_kev,
            self.basis.at,
            self.scattering_basis.at,
            params.attenuation,
            self.source_var_mm2,
            self.path_samples,
            self.last_leg_mm,
            z_rows=self.scatter_rows,
        )

    def _group_kev(self) -> Float[Array, " g"]:
        """Mean scattered photon energy of each group over all sources (keV), shape (g,)."""
        total = jnp.sum(self.n0, axis=0)
        mean = jnp.sum(self.n0 * self.scattered_kev, axis=0) / jnp.where(total > NEGLIGIBLE, total, 1.0)
        return jnp.where(total > NEGLIGIBLE, mean, jnp.max(self.scattered_kev, axis=0))

    def _kerma(self, phi: Array, psi: Array, composition: Composition | None = None) -> Array:
        """Dose (Gy) from scattered fluence and energy fluence per group, shape (*v, g) -> (*v,)
        in the voxels' matter, or (*v, m) in each of the table's materials (`composition` None).

        mu_en at each point's mean energy psi / phi is taken log-log linear about the group's
        mean energy E_g (value and slope of the tables at E_g): a few operations per point
        instead of a table search, exact within the table's segment around E_g.
        """
        e_g = self._group_kev()
        m = jnp.arange(len(self.table))[:, None]
        mu, dmu = jax.jvp(lambda e: self.table.mu_en_cm2_g(m, e), (e_g[None],), (e_g[None],))  # (m, g): mu, E dmu/dE
        log_mu, slope = jnp.log(mu), dmu / mu
        ok, log_mean = _log_mean_energy(phi, psi, 0.0)
        lead = (1,) * (phi.ndim - 1)
        log_e_g = jnp.log(e_g).reshape(lead + (-1,))
        x = jnp.where(ok, log_mean - log_e_g, 0.0)
        if composition is not None and composition.fractions is None:
            ids = composition.material_ids
            return jnp.sum(kerma_gy(psi, 1.0, jnp.exp(log_mu[ids] + slope[ids] * x)), axis=-1)
        log_mu, slope = log_mu.reshape(lead + log_mu.shape), slope.reshape(lead + slope.shape)
        per_material = jnp.sum(kerma_gy(psi[..., None, :], 1.0, jnp.exp(log_mu + slope * x[..., None, :])), axis=-1)
        return per_material if composition is None else composition.select(per_material)

    def _last_leg(self, points_mm: Array, toward: Array) -> Array:
        """Optical depth per group of the last leg ending at each point, arriving along `toward`, through
        the phantom's own voxels, (*b, g)."""
        scale = jnp.max(jnp.abs(toward), axis=-1, keepdims=True)  # no underflow in |toward|^2
        unit = toward / jnp.where(scale > 0, scale, 1.0)
        norm = jnp.sqrt(jnp.maximum(jnp.sum(unit**2, axis=-1, keepdims=True), 1e-12))
        direction = jnp.where(
            scale > 0, unit / norm, jnp.broadcast_to(jnp.asarray([0.0, 0.0, 1.0], unit.dtype), unit.shape)
        )
        density = basis_density(self.composition, self.basis)
        tau = last_leg_tau(self.grid, density, points_mm, direction, self.last_leg_mm)
        return jnp.minimum(tau @ self.basis.at(self._group_kev()).T, MAX_LAST_LEG_TAU)

    def _at_cells(self, params: PriorParams, cells: np.ndarray | None) -> Array:
        """Scattered (phi, psi) per group, attenuated up to the start of the last leg, the arrival
        direction, and the cells' own attenuation basis densities (1/cm), at coarse cells `cells`
        (integer (z, y, x), concrete, shape (c, 3); None: all cells in C order): shape (c, 2 g + 3 + k).

        Cells in rows left out of `scatter_rows` get their value between the computed rows below
        and above them: phi and psi geometrically (exact for an exponential fall along z), the
        arrival direction linearly.
        """
        cz, cy, cx = self.coarse_grid.shape
        lo, hi, t = row_brackets(cz, self.scatter_rows)
        if cells is None:  # every cell, in the grid's order; the computed rows' cells come in that order too
            values = jnp.concatenate(self._fluence(params, None), axis=-1)
            own = self.coarse_mu.reshape(-1, self.coarse_mu.shape[-1])
            if self.scatter_rows is None:
                return jnp.concatenate([values, own], axis=-1)
            values = values.reshape((-1, cy * cx, values.shape[-1]))
            below, above = (values[i].reshape(-1, values.shape[-1]) for i in (lo, hi))
            t = np.repeat(t, cy * cx)
        else:
            cells = np.asarray(cells, np.int64)
            rows = np.arange(cz) if self.scatter_rows is None else np.asarray(self.scatter_rows)
            ends = [np.concatenate([rows[i[cells[:, 0]], None], cells[:, 1:]], -1) for i in (lo, hi)]
            needed, inverse = np.unique(np.concatenate(ends), axis=0, return_inverse=True)
            world = jnp.asarray(_world(self.coarse_grid, needed), self.primary.dtype)
            values = jnp.concatenate(self._fluence(params, world), axis=-1)
            inverse = inverse.reshape(2, -1)
            below, above, t = values[inverse[0]], values[inverse[1]], t[cells[:, 0]]
            own = self.coarse_mu[cells[:, 0], cells[:, 1], cells[:, 2]]
            if not np.any(t):  # every cell in a computed row
                return jnp.concatenate([below, own], axis=-1)
        g = self.n0.shape[1]
        t = jnp.asarray(t, values.dtype)[:, None]
        fluences = _geometric_between(below[:, : 2 * g], above[:, : 2 * g], t)
        toward = (1.0 - t) * below[:, 2 * g :] + t * above[:, 2 * g :]
        return jnp.concatenate([fluences, toward, own], axis=-1)

    def _scatter_dose(self, cells: Array, interpolate, points_mm: Array, composition: Composition) -> Array:
        """Scattered dose (Gy) at points from `_at_cells` values (c, 2 g + 3 + k), where
        `interpolate` maps per-cell values (c, n) to the points (*v, n).

        Without a last leg the dose in each material is computed at the cells and interpolated
        (fewer values to move than the fluence per group), then scaled by each voxel's
        self-shielding (`self_shielding`); with one, the fluence is interpolated, attenuated over
        each point's last leg on the fine grid (through the voxel itself too), then converted.
        """
        k = self.coarse_mu.shape[-1]
        g = (cells.shape[-1] - 3 - k) // 2
        phi, psi = cells[..., :g], cells[..., g : 2 * g]
        if self.last_leg_mm > 0:
            values = interpolate(cells[..., : 2 * g + 3])
            phi, psi, toward = values[..., :g], values[..., g : 2 * g], values[..., 2 * g :]
            drop = jnp.exp(-self._last_leg(points_mm, toward))
            return self._kerma(phi * drop, psi * drop, composition)
        # the basis functions at each cell's mean scattered energy, and the cell's own attenuation there
        phi_all, psi_all = jnp.sum(phi, axis=-1), jnp.sum(psi, axis=-1)
        ok, log_mean = _log_mean_energy(phi_all, psi_all, TINY)
        mean_kev = jnp.where(ok, jnp.exp(log_mean), REFERENCE_ENERGY_KEV)
        basis = self.basis.at(mean_kev)  # (c, k)
        around = jnp.sum(cells[..., 2 * g + 3 :] * basis, axis=-1, keepdims=True)  # (c, 1) 1/cm
        m = len(self.table)
        values = interpolate(jnp.concatenate([self._kerma(phi, psi), basis, around], axis=-1))
        own = jnp.sum(basis_density(composition, self.basis) * values[..., m : m + k], axis=-1)  # 1/cm
        return composition.select(values[..., :m]) * self_shielding(own - values[..., -1], self.grid.spacing_mm)

    @eqx.filter_jit
    def dose(self, params: PriorParams) -> PriorDose:
        """Primary and scattered dose on the whole grid; the scattered part is computed per
        coarse cell and interpolated trilinearly to the voxels (see `_scatter_dose`). Compiled
        once per scene layout."""

        def interpolate(values):
            return resample_linear(values.reshape(self.coarse_grid.shape + (-1,)), self.coarse_grid, self.grid)

        cells = self._at_cells(params, None)
        scatter = self._scatter_dose(cells, interpolate, self.grid.voxel_centers_mm(), self.composition)
        return PriorDose(self.primary, scatter, self.primary + scatter)

    def dose_at(self, params: PriorParams, index) -> PriorDose:
        """`dose(params)` at voxels `index` (z, y, x) only, shape (n,) each; `index` must be concrete.

        Computes the scattered fluence only at the coarse cells the voxels interpolate from.
        """
        index = np.asarray(index, np.int64).reshape(-1, 3)
        points = _world(self.grid, index)
        cells, corner, weight = _stencil(self.coarse_grid, points)
        weight = jnp.asarray(weight, self.primary.dtype)

        def interpolate(values):
            return jnp.sum(weight[..., None] * values[corner], axis=1)

        values = self._at_cells(params, cells)
        idx = jnp.asarray(index, jnp.int32)
        points = jnp.asarray(points, self.primary.dtype)
        scatter = self._scatter_dose(values, interpolate, points, self.composition.at(idx))
        primary = self.primary[idx[:, 0], idx[:, 1], idx[:, 2]]
        return PriorDose(primary, scatter, primary + scatter)


def _geometric_between(below: Array, above: Array, t: Array) -> Array:
    """below^(1 - t) above^t elementwise (`below` itself where t = 0; linear where either is below `TINY`)."""
    ok = (below > TINY) & (above > TINY)
    log_below, log_above = (jnp.log(jnp.where(ok, a, 1.0)) for a in (below, above))
    between = jnp.where(ok, jnp.exp((1.0 - t) * log_below + t * log_above), (1.0 - t) * below + t * above)
    return jnp.where(t > 0, between, below)


def _world(grid: Grid, index: np.ndarray) -> np.ndarray:
    """`grid.to_world` in NumPy (stays concrete under tracing)."""
    return np.asarray(grid.origin_mm) + np.asarray(index, float) * np.asarray(grid.spacing_mm)


def _stencil(grid: Grid, points_mm: np.ndarray):
    """Trilinear stencil of `points_mm` on `grid` (clamped, as `trilinear(outside_zero=False)`).

    Returns (cells (u, 3) integer indices, corner (n, 8) rows into cells, weight (n, 8)).
    """
    n = np.asarray(grid.shape)
    i = np.clip((points_mm - np.asarray(grid.origin_mm)) / np.asarray(grid.spacing_mm), 0, n - 1)
    i0 = np.clip(np.floor(i), 0, np.maximum(n - 2, 0)).astype(np.int64)
    t = np.where(n > 1, i - i0, 0.0)
    corners, weights = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                d = np.array([dz, dy, dx])
                corners.append(np.minimum(i0 + d, n - 1))
                weights.append(np.prod(np.where(d == 1, t, 1.0 - t), axis=-1))
    corners = np.stack(corners, axis=1)  # (n, 8, 3)
    cells, inverse = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    return cells, inverse.reshape(-1, 8), np.stack(weights, axis=1)


def dose(
    phantom: Phantom,
    source: AbstractSource | Beam,
    params: PriorParams | None = None,
    **options,
) -> PriorDose:
    """Analytic dose of `source` in `phantom`, per source photon, as the Monte Carlo normalises it.

    Primary: for every (sampled) view, photons per steradian from the beam (spectrum,
    aperture, bowtie) times 1/r^2 times polychromatic Beer-Lambert attenuation through
    the grid (and `world_medium` between the focal spot and the grid), converted to dose
    with mu_en of each voxel. Scatter: first scatter from coarse-grained sources with
    Klein-Nishina x S / Thomson x F^2 angular weighting, attenuated to each target, times
    a calibrated build-up factor (see `physdose.prior._scatter`).

    Pure JAX: compiled once per layout (grid, views, options) and reused by later calls
    with the same layout; jit it with other work (`equinox.filter_jit`, the keyword
    options static), vmap over scenarios, and differentiate with respect to densities,
    `material_fractions`, spectrum weights, source geometry and `params`.

    Args:
        phantom: the voxel phantom.
        source: a focal-spot source (CT, C-arm, cone or fan beam) or its `Beam`.
        params: the prior's parameters (default: physdose's own calibration against MC,
            `Prior.default()`, fitted with the default options).
        **options: keyword options of `prepare` (ray step, views, energy groups, cells...).

    Returns:
        PriorDose (Gy per source photon).
    """
    params = default_params() if params is None else params
    if not isinstance(params, PriorParams):
        raise TypeError(f"params must be PriorParams, got {type(params).__name__}")
    return prepare(phantom, source, **options).dose(params)


def prepare(
    phantom: Phantom,
    source: AbstractSource | Beam,
    *,
    material_fractions: Float[ArrayLike, "z y x m"] | None = None,
    step_mm: float | None = None,
    max_views: int = 48,
    group_kev: float = 10.0,
    cell_mm: float | tuple[float, float, float] = (16.0, 32.0, 32.0),
    n_sources: int = 256,
    path_samples: int = 16,
    last_leg_mm: float | None = None,
    far_rows: float | None = None,
    world_medium: str | None = "air",
) -> Scene:
    """The parameter-independent part of the prior: primary dose and scatter sources.

    Args:
        phantom: the voxel phantom.
        source: a focal-spot source (CT, C-arm, cone or fan beam) or its `Beam`.
        material_fractions: mass fraction of each of the phantom's materials per voxel,
            shape (z, y, x, m), replacing the material ids (e.g. to differentiate).
        step_mm: ray step of the primary (default: the smallest voxel spacing).
        max_views: views kept from the trajectory (evenly spaced, weights kept).
        group_kev: width of the energy groups the spectrum is condensed to (keV).
        cell_mm: size of the coarse cells for scatter sources and targets (mm), one for
            all axes or (z, y, x); the default is finer along z, across which CT beams are
            narrow (a 40 mm axial beam's scatter is smeared by 32 mm cells).
        n_sources: scatter sources: the cells that scatter most, each also carrying the
            emission of the other cells nearest to it (nothing is dropped).
        path_samples: attenuation samples along each scattered path.
        last_leg_mm: final stretch of each scattered path attenuated on the fine grid, so
            shields thinner than a cell (lead aprons, collars) are not smeared out (mm; 0:
            none; default: one cell when the phantom holds a shielding material, see
            `physdose.prior._medium.SHIELD_MU_CM2_G`, else 0).
        far_rows: beyond 4 rows of cells on each side of the irradiated ones (along z), the scattered
            fluence is computed on rows spaced at most this fraction of their distance from those
            and interpolated geometrically between them (0: every row; default 0.15, or 0 where the
            phantom holds a shield: the staff's shields change the fluence from one row to the next).
        world_medium: material between the focal spot and the grid (None: vacuum).
    """
    with jax.ensure_compile_time_eval():  # a source closed over by jit keeps a concrete beam, hence a tight layout
        beam = source if isinstance(source, Beam) else getattr(source, "beam", lambda: None)()
        if not isinstance(beam, Beam):
            raise TypeError(f"source must be a physdose source or Beam, got {type(source).__name__}")
        beam = sample_views(beam, max_views)
        if is_concrete(beam.tan_half) and not float(beam.solid_angle_sr) > 0:
            raise ValueError("the prior needs a focal-spot source (cone, fan, CT, C-arm), not pencil or parallel")
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a physdose Phantom, got {type(phantom).__name__}")
    grid = phantom.grid
    step_mm = min(grid.spacing_mm) if step_mm is None else step_mm
    for name, value in (("step_mm", step_mm), ("group_kev", group_kev), ("cell_mm", cell_mm)):
        check_positive(name, value)
    for name, value in (("last_leg_mm", last_leg_mm), ("far_rows", far_rows)):
        if value is not None and not (isinstance(value, int | float) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    for name, value in (("max_views", max_views), ("n_sources", n_sources), ("path_samples", path_samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    composition = Composition.of(phantom, material_fractions)
    cell = cell_voxels(grid, cell_mm)
    shielding = medium_data(phantom.materials.materials, jnp.dtype(phantom.density_g_cm3.dtype).name).shielding
    if last_leg_mm is None:  # one cell where the phantom holds a shield
        last_leg_mm = max(_coarse_grid(grid, whole_grid(grid, cell)).spacing_mm) if shielding else 0.0
    if far_rows is None:
        far_rows = 0.0 if shielding else FAR_ROWS
    extents = view_extents(grid, beam)
    window = beam_window(grid, extents, cell)
    slab_cells, slab_starts = view_slabs(window, extents, beam.num_views)
    axial = axial_layout(grid, beam, window, slab_cells * cell[0], slab_starts, step_mm)
    layout = _Layout(
        window=window,
        bev=bev_shape(grid, window, beam, step_mm),
        step_mm=float(step_mm),
        groups=group_count(beam.spectrum, group_kev),
        group_kev=float(group_kev),
        slab_cells=slab_cells,
        axial_rows=None if axial is None else axial[0],
        n_sources=n_sources,
        path_samples=path_samples,
        last_leg_mm=float(last_leg_mm),
        scatter_rows=scatter_rows(
            whole_grid(grid, cell).cells[0], window.start[0] // cell[0], window.stop[0] // cell[0] - 1, far_rows
        ),
        world_medium=world_medium,
    )
    z_rows = np.zeros(beam.num_views, np.int32) if axial is None else axial[1]
    return _scene(phantom, composition, beam, slab_starts, z_rows, layout)


class _Layout(NamedTuple):
    """The static choices of `prepare` (array shapes, options), made on concrete values before tracing."""

    window: Window
    bev: tuple[int, int, int]
    step_mm: float
    groups: int
    group_kev: float
    slab_cells: int
    axial_rows: int | None  # z rows each view reads on the column path; None: the general path
    n_sources: int
    path_samples: int
    last_leg_mm: float
    scatter_rows: tuple[int, ...] | None
    world_medium: str | None


@eqx.filter_jit
def _scene(
    phantom: Phantom, composition: Composition, beam: Beam, slab_starts: Array, z_rows: Array, layout: _Layout
) -> Scene:
    """The arrays of `prepare`, compiled once per layout (eager, each call would compile its loops again).

    `slab_starts`, `z_rows`: first cell of each view's z-slab and first padded z row it reads, shape (views,).
    """
    grid = phantom.grid
    window, bev, step_mm, cell = layout.window, layout.bev, layout.step_mm, layout.window.cell
    dtype = phantom.density_g_cm3.dtype
    data = medium_data(phantom.materials.materials, jnp.dtype(dtype).name)
    table = phantom.materials
    spectrum = group_spectrum(beam.spectrum, layout.group_kev, layout.groups)
    beam = eqx.tree_at(lambda b: b.spectrum, beam, spectrum)
    energy = spectrum.energy_kev  # (g,)
    g = energy.shape[0]

    rho_basis = basis_density(composition, data.basis)  # (z, y, x, k) 1/cm per unit basis
    basis_e = data.basis.at(energy)  # (g, k)
    m = jnp.arange(len(table))
    sigma_s, c1, c2, ratio = data.scatter.at(energy)  # (m, g) each
    per_material = jnp.stack(
        [table.mu_en_cm2_g(m[:, None], energy[None]), sigma_s, sigma_s * c1, sigma_s * c2, sigma_s * ratio], -1
    )  # (m, g, 5)
    local = _take(composition, window).mix(per_material)  # (wz, wy, wx, g, 5)
    # Each voxel's mean fluence: the value at its centre times the mean of exp(mu s) over its
    # chord, s uniform in [-l/2, l/2]: sinh(mu l / 2) / (mu l / 2), with l^2 = sum h^2 / 3 the mean
    # over directions of the chord's squared extent sum h_i^2 u_i^2 (exact for cubic voxels).
    # Past mu l / 2 = 20 the fluence at the centre is below e^-20 anyway.
    chord_mm = math.sqrt(sum(h * h for h in grid.spacing_mm) / 3.0)
    own_mu = window.take(rho_basis) @ basis_e.T  # (wz, wy, wx, g) 1/cm
    voxel_mean = sinhc(jnp.minimum(0.05 * chord_mm * own_mu, 20.0))
    mu_en = local[..., 0] * voxel_mean  # cm^2/g, per unit fluence at the centre
    rho = window.take(composition.density_g_cm3)
    # photons scattered per unit fluence: [n0, (E'/E) n0] and [c1 n0, c2 n0], shape (wz, wy, wx, g, 2) each
    scattering = local[..., 1:] * (voxel_mean * rho[..., None] * 0.1 * grid.voxel_volume_mm3)[..., None]
    isotropic, directional = scattering[..., (0, 3)], scattering[..., 1:3]
    points = window.centers_mm(grid)  # (wz, wy, wx, 3)
    cell_points = _pool(points, cell) / math.prod(cell)  # (cz, cy, cx, 3)
    mu_medium = _medium_mu_per_mm(layout.world_medium, energy)
    spacing = jnp.asarray(grid.spacing_mm, dtype)
    slab_cells = layout.slab_cells
    slab = slab_cells * cell[0]  # voxels
    axial = layout.axial_rows is not None
    columns = axial_columns(rho_basis) if axial else None

    def transmit(tau, tan_fan):
        """Line integrals per basis function (r, a, b, k) -> transmission per group (r, a, b, g), through
        the matter and the bowtie (a function of the fan tangent a only, smooth: read back with the
        rest, not computed per voxel). The rays are read back at the voxels as transmissions, not
        depths: a voxel's photons come along the rays around its centre, and they carry the mean of
        exp(-tau), more than exp of the mean tau."""
        through = jnp.exp(-(tau @ basis_e.T))
        if beam.bowtie is None:
            return through
        return through * beam.bowtie.transmission(tan_fan, energy)[None, :, None]

    def one_view(carry, view):
        v, first_cell, z_row = view
        z0 = first_cell * cell[0]
        pts_slab = jax.lax.dynamic_slice_in_dim(points, z0, slab, axis=0)
        directional_v = jax.lax.dynamic_slice_in_dim(directional, z0, slab, axis=0).reshape((-1, g, 2))
        pts = pts_slab.reshape(-1, 3)
        f = beam.focal_mm[v]
        lo, hi = beam.aperture_center - beam.tan_half, beam.aperture_center + beam.tan_half
        if axial:
            transmission = axial_transmissions(
                grid, columns, f, beam.axes[v], lo, hi, pts_slab, bev, step_mm, z_row, layout.axial_rows, transmit
            ).reshape(pts.shape[0], -1)
        else:
            transmission = transmissions(grid, rho_basis, f, beam.axes[v], lo, hi, pts, bev, step_mm, transmit)
        transmission = transmission * jnp.exp(-outside_path_mm(grid, f, pts)[:, None] * mu_medium[None])
        rel = pts - f[None]
        dist2 = jnp.sum(rel**2, axis=-1)
        safe2 = jnp.where(dist2 > 0, dist2, 1.0)
        direction = rel / jnp.sqrt(safe2)[:, None]
        per_sr = beam.photons_per_sr(v, direction, _footprint(rel, beam.axes[v], spacing), bowtie=False)  # see transmit
        fluence = per_sr / safe2[:, None] * transmission  # (n, g) 1/mm^2
        # only the moments that depend on the view's direction are pooled per view; the rest is linear in
        # the fluence summed over the views, pooled once after them
        pooled = _pool((fluence[..., None] * directional_v).reshape((slab,) + window.shape[1:] + (g, 2)), cell)
        d = jax.lax.dynamic_slice_in_dim(cell_points, first_cell, slab_cells, axis=0) - f[None, None, None]
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        outer = 1.5 * d[..., :, None] * d[..., None, :] - 0.5 * jnp.eye(3, dtype=d.dtype)[None, None, None]
        updates = (
            fluence.reshape((slab,) + window.shape[1:] + (g,)),
            pooled[..., 0, None] * d[..., None, :],
            pooled[..., 1, None, None] * outer[..., None, :, :],
        )
        starts = (z0, first_cell, first_cell)
        return tuple(_add_slab(a, u, i) for a, u, i in zip(carry, updates, starts)), None

    cells = cell_points.shape[:3]
    init = tuple(jnp.zeros(shape, dtype) for shape in (window.shape + (g,), cells + (g, 3), cells + (g, 3, 3)))
    views = (jnp.arange(beam.num_views), jnp.asarray(slab_starts, jnp.int32), jnp.asarray(z_rows, jnp.int32))
    (fluence, n1, q), _ = jax.lax.scan(one_view, init, views)
    dose_p = jnp.sum(kerma_gy(fluence, energy[None, None, None], mu_en), axis=-1)
    emitted = fluence[..., None] * isotropic  # (wz, wy, wx, g, 2)
    total = jnp.sum(emitted[..., 0], axis=-1)
    n0, n_ratio = (_pool(emitted[..., i], cell) for i in (0, 1))
    weighted_pos = _pool(total[..., None] * jnp.concatenate([points, points**2], -1), cell)  # (x, x^2) per axis
    c = math.prod(cells)
    n0, n1, q, n_ratio, weighted_pos = (a.reshape((c,) + a.shape[3:]) for a in (n0, n1, q, n_ratio, weighted_pos))
    cell_points = cell_points.reshape(-1, 3)

    # keep the n_sources strongest cells; every other cell's emission joins its nearest kept cell
    strength = jnp.sum(n0, axis=1)
    k = min(layout.n_sources, c)
    # ties resolve by position in the grid, the same way whatever the window
    tie_break = 1.0 - 1e-3 * jnp.asarray(window.cell_rank(grid), dtype)
    _, top = jax.lax.top_k(jax.lax.stop_gradient(strength) * tie_break, k)
    gap = jnp.sum((cell_points[:, None, :] - cell_points[top][None]) ** 2, axis=-1)
    gap = jax.lax.stop_gradient(gap) * (1.0 + 1e-3 * jnp.linspace(0.0, 1.0, k, dtype=dtype))[None]  # ties: stronger
    owner = jnp.argmin(gap, axis=1).at[top].set(jnp.arange(k))

    def lump(a):
        return jax.ops.segment_sum(a, owner, num_segments=k)

    n0, n1, q, n_ratio, weighted_pos = (lump(a) for a in (n0, n1, q, n_ratio, weighted_pos))
    s = jnp.sum(n0, axis=1)
    safe_s = jnp.where(s > NEGLIGIBLE, s, 1.0)[:, None]
    source_mm = jnp.where((s > NEGLIGIBLE)[:, None], weighted_pos[:, :3] / safe_s, cell_points[top])
    voxel_var = jnp.asarray(grid.spacing_mm, dtype) ** 2 / 12.0  # a uniform voxel's variance per axis
    source_var = jnp.maximum(weighted_pos[:, 3:] / safe_s - source_mm**2, 0.0) + voxel_var[None]
    scattered_kev = energy[None] * jnp.where(n0 > NEGLIGIBLE, n_ratio / jnp.where(n0 > NEGLIGIBLE, n0, 1.0), 1.0)

    target = whole_grid(grid, cell)
    coarse_grid = _coarse_grid(grid, target)
    return Scene(
        grid=grid,
        composition=composition,
        table=table,
        basis=data.basis,
        scattering_basis=data.scattering_basis,
        primary=window.put(dose_p, grid),
        coarse_grid=coarse_grid,
        coarse_mu=_pool(target.take(rho_basis), cell) / math.prod(cell),
        coarse_sigma=_pool(target.take(basis_density(composition, data.scattering_basis)), cell) / math.prod(cell),
        source_mm=source_mm,
        n0=n0,
        n1=n1,
        q=q,
        scattered_kev=scattered_kev,
        source_var_mm2=source_var,
        path_samples=layout.path_samples,
        last_leg_mm=layout.last_leg_mm,
        scatter_rows=layout.scatter_rows,
    )


def _log_mean_energy(phi: Array, psi: Array, floor: float) -> tuple[Array, Array]:
    """Where both exceed `floor`, and ln(psi / phi) there (0 elsewhere), elementwise: the log of the mean
    energy of a fluence phi with energy fluence psi, as ln psi - ln phi (no phi^2 in its gradient)."""
    ok = (phi > floor) & (psi > floor)
    return ok, jnp.where(ok, jnp.log(jnp.where(ok, psi, 1.0)) - jnp.log(jnp.where(ok, phi, 1.0)), 0.0)


def self_shielding(excess_mu: Array, spacing_mm: tuple[float, float, float]) -> Array:
    """Mean scattered fluence in a voxel over the fluence its surroundings would carry there, elementwise.

    The scattered field comes from the coarse cells' mean attenuation; a voxel that attenuates
    `excess_mu` (1/cm) more than that (bone among soft tissue; negative: lung, air) shields its
    own inside. Under isotropic incidence on a convex body the mean fluence inside is
    (1 - T) / x of the incident, T the mean transmission over its chords and x = excess_mu L,
    L = 4 V / S its mean chord; with T ~ exp(-x) (the mean-chord approximation) that is
    (1 - exp(-x)) / x: 0.81 for 8 mm of bone among soft tissue at 45 keV. A voxel that
    attenuates less (lung or air among soft tissue: x ~ -0.1) gains as much; as the voxel
    carries no more than what reaches its surface, x is held above `MIN_SHIELDING_X`.
    """
    hz, hy, hx = spacing_mm
    chord_cm = 0.1 * 2.0 * hz * hy * hx / (hz * hy + hy * hx + hz * hx)  # 4 V / S
    x = jnp.clip(excess_mu * chord_cm, MIN_SHIELDING_X, 40.0)
    small = jnp.abs(x) < 1e-3
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - x / 2.0 + x**2 / 6.0 - x**3 / 24.0, -jnp.expm1(-safe) / safe)


def sinhc(x: Array) -> Array:
    """sinh(x) / x for 0 <= x <= 40, elementwise, with finite gradients at 0.

    One transcendental per element (the voxel-mean factor of every voxel and energy group):
    with m = e^x - 1, sinh x = m (m + 2) / (2 (m + 1)), accurate down to small x, below
    which the series 1 + x^2 / 6 + x^4 / 120 is exact in float64.
    """
    small = x < 1e-3
    safe = jnp.where(small, 1.0, x)
    m = jnp.expm1(safe)
    return jnp.where(small, 1.0 + x**2 * (1.0 / 6.0 + x**2 / 120.0), m * (m + 2.0) / (2.0 * safe * (m + 1.0)))


def _footprint(rel_mm: Float[Array, "n 3"], axes: Float[Array, "3 3"], spacing_mm: Array) -> Float[Array, "n 2"]:
    """Half-widths (u, w), in tangent units, of the box with the second moments of each voxel's
    footprint in the aperture (voxel at `rel_mm` from the focal spot): the field edge then
    covers a straddling voxel by the right fraction instead of all or nothing."""
    c, u, w = axes
    depth = rel_mm @ c
    safe = jnp.where(depth > 0, depth, 1.0)[:, None]

    def half_width(e):  # d t_e / d x = (e - t_e c) / depth; a uniform voxel has variance d^2 / 12 per axis
        t_e = (rel_mm @ e)[:, None] / safe
        return 0.5 * jnp.linalg.norm((e[None] - t_e * c[None]) * spacing_mm[None], axis=-1) / safe[:, 0]

    return jnp.stack([half_width(u), half_width(w)], axis=-1)


def _take(composition: Composition, window: Window) -> Composition:
    return Composition(
        window.take(composition.density_g_cm3),
        None if composition.material_ids is None else window.take(composition.material_ids),
        None if composition.fractions is None else window.take(composition.fractions),
    )


def _add_slab(total: Array, slab: Array, start) -> Array:
    """`total` with `slab` added to its rows [start, start + len(slab)) along the first axis."""
    rows = jax.lax.dynamic_slice_in_dim(total, start, slab.shape[0], axis=0)
    return jax.lax.dynamic_update_slice_in_dim(total, rows + slab, start, axis=0)


def _pool(volume: Array, cell: tuple[int, int, int]) -> Array:
    """Sum over cells of `cell` voxels: (z, y, x, ...) -> (z/cz, y/cy, x/cx, ...)."""
    z, y, x = volume.shape[:3]
    cz, cy, cx = cell
    rest = volume.shape[3:]
    v = volume.reshape((z // cz, cz, y // cy, cy, x // cx, cx) + rest)
    return v.sum(axis=(1, 3, 5))


def _coarse_grid(grid: Grid, window: Window) -> Grid:
    """The grid of `window`'s cells (cell centres as voxel centres)."""
    spacing = tuple(d * c for d, c in zip(grid.spacing_mm, window.cell))
    origin = tuple(o + (c - 1) / 2 * d for o, c, d in zip(grid.origin_mm, window.cell, grid.spacing_mm))
    return Grid(window.cells, spacing, origin)


def _medium_mu_per_mm(world_medium: str | None, energy: Array) -> Array:
    """Linear attenuation coefficient (1/mm) of the world medium at `energy`."""
    return jnp.zeros_like(energy) if world_medium is None else get(world_medium).mu_per_mm(energy)
