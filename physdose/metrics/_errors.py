"""Voxel-wise dose errors (MAE, RMSE, relative error) inside a region and above a dose threshold."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from ._checks import as_float_array, check_dose_pair, check_mask, check_threshold


def dose_region(
    reference: Float[ArrayLike, "*spatial"],
    *,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    threshold_gy: float | None = None,
    threshold_percent: float | None = None,
) -> Bool[Array, "*spatial"]:
    """Voxels compared by the error metrics: inside `mask`, and reference dose at or above the thresholds.

    Args:
        reference: reference dose, any shape, Gy.
        mask: boolean region, same shape (e.g. an organ); everywhere by default.
        threshold_gy: keep voxels with reference dose >= this (Gy).
        threshold_percent: keep voxels with reference dose >= this percentage of max(reference).

    Returns:
        Boolean array, shape of `reference`.
    """
    ref = as_float_array("reference", reference)
    region = None if mask is None else check_mask(mask, ref.shape)
    gy = 0.0 if threshold_gy is None else check_threshold("threshold_gy", threshold_gy)
    percent = 0.0 if threshold_percent is None else check_threshold("threshold_percent", threshold_percent)
    return _region(ref, region, gy, percent)


@jax.jit
def _region(ref, mask, threshold_gy, threshold_percent):
    region = ref >= jnp.maximum(threshold_gy, threshold_percent / 100.0 * jnp.max(ref))
    return region if mask is None else region & mask


def mae(
    reference: Float[ArrayLike, "*spatial"],
    evaluated: Float[ArrayLike, "*spatial"],
    *,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    threshold_gy: float | None = None,
    threshold_percent: float | None = None,
) -> Float[Array, ""]:
    """Mean absolute error mean(|evaluated - reference|) (Gy) over the voxels of `dose_region`.

    Args:
        reference: reference dose (e.g. Monte Carlo), any shape, Gy.
        evaluated: evaluated dose (e.g. a prediction), same shape, Gy.
        mask, threshold_gy, threshold_percent: select the voxels, see `dose_region`.

    Returns:
        Scalar (Gy); NaN when no voxel is selected.

    Raises:
        ValueError: shapes differ, a dose is negative or not finite, or `mask` is not a
            boolean array of the doses' shape.

    Examples:
        >>> import physdose as pd
        >>> float(pd.metrics.mae([1.0, 2.0, 4.0], [1.5, 2.0, 3.0]))
        0.5
    """
    ref, ev, region = _prepare(reference, evaluated, mask, threshold_gy, threshold_percent)
    return _mae(ref, ev, region)


def rmse(
    reference: Float[ArrayLike, "*spatial"],
    evaluated: Float[ArrayLike, "*spatial"],
    *,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    threshold_gy: float | None = None,
    threshold_percent: float | None = None,
) -> Float[Array, ""]:
    """Root-mean-square error sqrt(mean((evaluated - reference)^2)) (Gy) over the voxels of `dose_region`.

    Arguments, return value and errors as for `mae`.

    Examples:
        >>> import physdose as pd
        >>> float(pd.metrics.rmse([1.0, 1.0], [2.0, 0.0]))
        1.0
    """
    ref, ev, region = _prepare(reference, evaluated, mask, threshold_gy, threshold_percent)
    return _rmse(ref, ev, region)


def relative_error(
    reference: Float[ArrayLike, "*spatial"],
    evaluated: Float[ArrayLike, "*spatial"],
    *,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    threshold_gy: float | None = None,
    threshold_percent: float | None = None,
) -> Float[Array, ""]:
    """Mean relative error mean(|evaluated - reference| / reference) over the voxels of `dose_region`.

    Voxels with zero reference dose are left out. Use a threshold to keep low-dose voxels,
    where relative errors blow up, out of the mean.

    Arguments and errors as for `mae`; the reference must not be zero everywhere.

    Returns:
        Scalar, a fraction (0.05 is 5 %); NaN when no voxel is selected.

    Examples:
        >>> import physdose as pd
        >>> round(float(pd.metrics.relative_error([1.0, 2.0, 0.0], [1.1, 1.8, 0.3])), 6)
        0.1
    """
    ref, ev, region = _prepare(reference, evaluated, mask, threshold_gy, threshold_percent, zero_reference_ok=False)
    return _relative_error(ref, ev, region)


@jax.jit
def _mae(ref, ev, region):
    return masked_mean(jnp.abs(ev - ref), region)


@jax.jit
def _rmse(ref, ev, region):
    return jnp.sqrt(masked_mean((ev - ref) ** 2, region))


@jax.jit
def _relative_error(ref, ev, region):
    region = region & (ref > 0)
    return masked_mean(jnp.abs(ev - ref) / jnp.where(region, ref, 1.0), region)


def _prepare(reference, evaluated, mask, threshold_gy, threshold_percent, zero_reference_ok=True):
    ref, ev = check_dose_pair(reference, evaluated, zero_reference_ok=zero_reference_ok)
    region = dose_region(ref, mask=mask, threshold_gy=threshold_gy, threshold_percent=threshold_percent)
    return ref, ev, region


def masked_mean(values, region):
    """Mean of `values` over `region` (NaN when empty), in the dtype of `values`."""
    n = jnp.sum(region)
    total = jnp.sum(jnp.where(region, values, 0.0))
    return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan).astype(values.dtype)
