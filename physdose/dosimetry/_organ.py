"""Organ doses: the mass-weighted mean absorbed dose of every organ, with its uncertainty."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..geometry._grid import Grid
from ..mc._simulate import MCResult
from ..phantoms._phantom import Phantom
from ..units import KEV_TO_J
from ._inputs import check_grid, check_phantom, dose_and_sigma


class OrganDoses(eqx.Module):
    """Mean absorbed dose of each organ of a phantom.

    Attributes:
        names: organ names, in the phantom's order (static).
        dose_gy: mass-weighted mean absorbed dose of each organ (Gy), shape (o,); NaN for an
            organ without voxels.
        sigma_gy: standard uncertainty of each organ dose (Gy), shape (o,); NaN where unknown
            (no sigma and no samples given).
        mass_g: organ masses (g), shape (o,).
        samples_gy: organ doses of each prediction sample (Gy), shape (s, o), when computed
            from samples; else None.
        sex: the phantom's sex (``info["sex"]``: "male" or "female"), or None (static).

    Examples:
        >>> import physdose as pd
        >>> p = pd.phantoms.water_cylinder(100.0, 50.0, spacing_mm=10.0)
        >>> doses = pd.dosimetry.organ_doses(jnp.full(p.grid.shape, 2e-3), p)
        >>> round(float(doses["cylinder"]), 6)
        0.002
    """

    names: tuple[str, ...] = eqx.field(static=True)
    dose_gy: Float[Array, " o"]
    sigma_gy: Float[Array, " o"]
    mass_g: Float[Array, " o"]
    samples_gy: Float[Array, "s o"] | None = None
    sex: str | None = eqx.field(static=True, default=None)

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown organ {name!r}; these organ doses have {list(self.names)}")
        return self.names.index(name)

    def __getitem__(self, name: str) -> Float[Array, ""]:
        """Mean absorbed dose of organ `name` (Gy)."""
        return self.dose_gy[self._index(name)]

    def sigma(self, name: str) -> Float[Array, ""]:
        """Standard uncertainty of organ `name`'s dose (Gy)."""
        return self.sigma_gy[self._index(name)]

    def as_dict(self) -> dict[str, float]:
        """Organ name -> mean absorbed dose (Gy), as Python floats."""
        return {n: float(v) for n, v in zip(self.names, np.asarray(self.dose_gy))}


def organ_doses(
    dose: Float[ArrayLike, "*s z y x"] | MCResult,
    phantom: Phantom,
    sigma: Float[ArrayLike, "z y x"] | None = None,
    *,
    voxel_correlation: float = 1.0,
    grid: Grid | None = None,
) -> OrganDoses:
    """Mean absorbed dose of every organ of `phantom`: D_T = sum_i m_i D_i / sum_i m_i over its voxels.

    Works on any dose on the phantom grid: a Monte Carlo result, the physics prior, a
    surrogate prediction or its samples. Jit-able and differentiable in `dose`.

    Uncertainty:

    * an `MCResult`: its per-organ batch uncertainty (``organ_rel_sigma``; the spread of the
      organ's energy imparted between independent batches, so every correlation between
      voxels is accounted for). The organ dose is the organ's energy imparted over its mass,
      which equals the mass-weighted mean of ``dose_gy``.
    * per-voxel `sigma` (Gy): with a_i = m_i sigma_i / M, the organ's variance is
      (1 - rho) sum a_i^2 + rho (sum a_i)^2 for a uniform correlation rho =
      `voxel_correlation` between the voxels of an organ. The default rho = 1 (fully
      correlated: sigma_T = mass-weighted mean of sigma_i) is a conservative bound and the
      right model for a surrogate whose errors are spatially smooth; rho = 0 (independent
      voxels) suits statistically independent voxel noise.
    * prediction samples (`dose` with a leading sample axis): the organ dose is the sample
      mean of the per-sample organ doses and sigma their standard deviation (ddof = 1), which
      keeps every correlation the samples carry.

    Args:
        dose: absorbed dose (Gy) on the phantom grid, shape (z, y, x); or samples of it,
            shape (s, z, y, x); or an `MCResult` of a run on this phantom.
        phantom: the phantom (organ labels and voxel masses).
        sigma: per-voxel standard uncertainty (Gy), shape (z, y, x), or None.
        voxel_correlation: correlation rho in [0, 1] assumed between voxel errors within an organ.
        grid: the grid of `dose`, checked against the phantom's (shape, spacing and origin).

    Returns:
        OrganDoses, one entry per organ of the phantom.

    Raises:
        ValueError: `dose` or `sigma` not on the phantom grid, negative or not finite; both
            samples and sigma given; sigma given with an MCResult; `voxel_correlation`
            outside [0, 1].
    """
    check_phantom(phantom)
    if not 0.0 <= float(voxel_correlation) <= 1.0:
        raise ValueError(f"voxel_correlation must lie in [0, 1], got {voxel_correlation!r}")
    names = tuple(phantom.organs)
    sex = phantom.info.get("sex") if phantom.info.get("sex") in ("male", "female") else None
    labels = phantom.organ_labels.ravel()
    n_seg = max(phantom.organs.values(), default=0) + 1
    index = jnp.asarray([phantom.organs[n] for n in names], jnp.int32)
    mass_g = phantom.voxel_mass_g().ravel()

    def per_organ(values):
        return jax.ops.segment_sum(values, labels, num_segments=n_seg)[index]

    mass = per_organ(mass_g)
    has_mass = mass > 0
    safe_mass = jnp.where(has_mass, mass, 1.0)

    def mean_dose(d):
        return jnp.where(has_mass, per_organ(mass_g * d.ravel()) / safe_mass, jnp.nan)

    if isinstance(dose, MCResult):
        _check_result_grid(dose, phantom)
        if sigma is not None:
            raise ValueError("sigma must be None when dose is an MCResult (its batch uncertainties are used)")
        missing = [n for n in names if n not in dose.organ_energy_kev]
        if missing:
            raise ValueError(f"dose (an MCResult) has no organ energies for {missing}; was it run on this phantom?")
        energy_j = jnp.asarray([dose.organ_energy_kev[n] for n in names], mass.dtype) * KEV_TO_J
        rel = jnp.asarray([dose.organ_rel_sigma[n] for n in names], mass.dtype)
        d = jnp.where(has_mass, energy_j / (safe_mass * 1e-3), jnp.nan)
        s = jnp.where(d > 0, rel * d, jnp.where(has_mass, 0.0, jnp.nan))
        return OrganDoses(names, d, s, mass, None, sex)

    d, s = dose_and_sigma(dose, phantom, sigma, grid)
    if d.ndim == 4:
        samples = jax.vmap(mean_dose)(d)
        mean = jnp.mean(samples, axis=0)
        n = samples.shape[0]
        spread = jnp.std(samples, axis=0, ddof=1) if n > 1 else jnp.full_like(mean, jnp.nan)
        return OrganDoses(names, mean, spread, mass, samples, sex)
    mean = mean_dose(d)
    if s is None:
        return OrganDoses(names, mean, jnp.full_like(mean, jnp.nan), mass, None, sex)
    a_sum = per_organ(mass_g * s.ravel()) / safe_mass
    a_sq = per_organ((mass_g * s.ravel()) ** 2) / safe_mass**2
    rho = jnp.asarray(voxel_correlation, mean.dtype)
    var = (1.0 - rho) * a_sq + rho * a_sum**2
    return OrganDoses(names, mean, jnp.where(has_mass, jnp.sqrt(var), jnp.nan), mass, None, sex)


def _check_result_grid(result: MCResult, phantom: Phantom) -> None:
    """The result's grid is the phantom's, or a coarsening of it (dose_grid_factor: same outer faces)."""
    if result.grid.shape == phantom.grid.shape:
        check_grid("dose.grid", result.grid, phantom)
        return
    lo, hi = result.grid.bounds_mm
    plo, phi = phantom.grid.bounds_mm
    if not (np.allclose(lo, plo, atol=1e-4) and np.allclose(hi, phi, atol=1e-4)):
        raise ValueError(
            f"dose.grid {result.grid} does not cover the phantom grid {phantom.grid}; was the MCResult run on it?"
        )
