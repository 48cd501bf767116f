"""Cumulative dose-volume histograms, exact voxel by voxel, with D_x and V_x."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import check_dose_values, is_concrete
from ._checks import as_float_array, check_mask, check_threshold


class DVH(eqx.Module):
    """Cumulative dose-volume histogram of one structure.

    Built by `dvh`. It keeps every voxel, sorted, so D_x and V_x are exact rather than read
    off a binned curve; voxels outside the structure sit at the end with zero volume.

    Attributes:
        dose_gy: voxel doses (Gy), shape (n,), descending over the structure's voxels.
        cumulative_volume_mm3: volume (mm^3) of the voxels with index <= i, shape (n,), so
            the volume receiving at least `dose_gy[i]` once ties are counted.
        total_volume_mm3: volume of the structure (mm^3).
    """

    dose_gy: Float[Array, " n"]
    cumulative_volume_mm3: Float[Array, " n"]
    total_volume_mm3: Float[Array, ""]

    @property
    def max_gy(self) -> Array:
        """Highest voxel dose in the structure (Gy)."""
        return self.dose_gy[0]

    @property
    def mean_gy(self) -> Array:
        """Volume-weighted mean dose of the structure (Gy)."""
        return _mean(self.dose_gy, self.cumulative_volume_mm3)

    def dose_at_volume(self, volume_percent: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """D_x: the minimum dose (Gy) of the hottest `volume_percent` % of the structure.

        Counting voxels from the hottest, D_x is the dose of the voxel at which the
        counted volume first reaches x % of the structure: D_0 is the maximum dose and
        D_100 the minimum.
        """
        x = jnp.asarray(volume_percent, self.dose_gy.dtype)
        if is_concrete(x) and np.any((np.asarray(x) < 0) | (np.asarray(x) > 100) | ~np.isfinite(np.asarray(x))):
            raise ValueError(f"volume_percent must lie in [0, 100], got {volume_percent!r}")
        return _dose_at_volume(self.dose_gy, self.cumulative_volume_mm3, x)

    def volume_at_dose(self, dose_gy: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """V_x: the fraction (0-1) of the structure's volume receiving at least `dose_gy` (Gy)."""
        return _volume_at_dose(self.dose_gy, self.cumulative_volume_mm3, jnp.asarray(dose_gy, self.dose_gy.dtype))

    def volume_at_percent(self, dose_percent: Float[ArrayLike, "*b"], prescription_gy: float) -> Float[Array, "*b"]:
        """V_x%: the fraction (0-1) of the volume receiving at least `dose_percent` % of `prescription_gy`."""
        prescription = check_threshold("prescription_gy", prescription_gy)
        if prescription == 0:
            raise ValueError("prescription_gy must be positive, got 0")
        return self.volume_at_dose(jnp.asarray(dose_percent, self.dose_gy.dtype) / 100.0 * prescription)

    def curve(self, n_points: int = 200) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
        """(dose (Gy), volume fraction) at `n_points` doses from 0 to the maximum, for plotting."""
        dose = jnp.linspace(0.0, self.max_gy, n_points)
        return dose, self.volume_at_dose(dose)


def dvh(
    dose: Float[ArrayLike, "*spatial"],
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    *,
    voxel_volume_mm3: float | Float[ArrayLike, "*spatial"] = 1.0,
) -> DVH:
    """Cumulative dose-volume histogram of the voxels in `mask`.

    Args:
        dose: dose per voxel, any shape, Gy.
        mask: boolean structure (e.g. `phantom.organ_labels == phantom.organs["liver"]`),
            same shape; every voxel by default.
        voxel_volume_mm3: volume of a voxel (mm^3; e.g. `grid.voxel_volume_mm3`), or one
            volume per voxel (same shape as `dose`, e.g. partial-volume weights); 1 by
            default, so that volumes count voxels.

    Returns:
        DVH, with `dose_at_volume` (D_x), `volume_at_dose` (V_x) and `curve()`.

    Raises:
        ValueError: the dose is negative or not finite, the mask or voxel volumes do not
            match the dose's shape, a voxel volume is not positive, or the mask is empty.

    Examples:
        >>> import jax.numpy as jnp
        >>> import physdose as pd
        >>> h = pd.metrics.dvh(jnp.arange(1.0, 101.0))  # 100 voxels from 1 to 100 Gy
        >>> float(h.dose_at_volume(10.0)), round(float(h.volume_at_dose(91.0)), 6)
        (91.0, 0.1)
    """
    d = as_float_array("dose", dose)
    check_dose_values("dose", d)
    inside = jnp.ones(d.shape, bool) if mask is None else check_mask(mask, d.shape)
    if is_concrete(inside) and not bool(np.any(np.asarray(inside))):
        raise ValueError("mask selects no voxel; a DVH needs at least one")
    volume = jnp.asarray(voxel_volume_mm3, d.dtype)
    if volume.shape not in ((), d.shape):
        raise ValueError(f"voxel_volume_mm3 must be a scalar or have the dose's shape {d.shape}, got {volume.shape}")
    if is_concrete(volume) and not bool(np.all((np.asarray(volume) > 0) & np.isfinite(np.asarray(volume)))):
        raise ValueError("voxel_volume_mm3 must be finite and positive")
    return _build(d, inside, volume)


@jax.jit
def _build(dose, inside, volume):
    volume = jnp.broadcast_to(volume, dose.shape).reshape(-1)
    flat = dose.reshape(-1)
    inside = inside.reshape(-1)
    key = jnp.where(inside, flat, -jnp.inf)  # voxels outside go last
    order = jnp.argsort(-key, stable=True)
    sorted_dose = jnp.where(inside[order], flat[order], 0.0)
    cumulative = jnp.cumsum(jnp.where(inside[order], volume[order], 0.0))
    return DVH(dose_gy=sorted_dose, cumulative_volume_mm3=cumulative, total_volume_mm3=cumulative[-1])


@jax.jit
def _dose_at_volume(dose, cumulative, percent):
    total = cumulative[-1]
    # the relative slack keeps rounding in the cumulative sum from skipping a voxel
    index = jnp.searchsorted(cumulative, percent / 100.0 * total * (1.0 - 1e-6), side="left")
    last = jnp.searchsorted(cumulative, total * (1.0 - 1e-6), side="left")
    return dose[jnp.minimum(index, last)]


@jax.jit
def _volume_at_dose(dose, cumulative, dose_gy):
    # voxels with dose >= dose_gy are a prefix of the descending order
    count = jnp.searchsorted(-dose, -dose_gy, side="right")
    volume = jnp.where(count > 0, cumulative[jnp.maximum(count - 1, 0)], 0.0)
    return volume / cumulative[-1]


@jax.jit
def _mean(dose, cumulative):
    volume = jnp.diff(cumulative, prepend=0.0)
    return jnp.sum(jnp.where(volume > 0, dose, 0.0) * volume) / cumulative[-1]
