"""Calibration of predicted uncertainties: interval coverage, Gaussian NLL, reliability curves.

A prediction gives, per voxel, a mean and a standard deviation (e.g. an ensemble's spread);
the target is the reference dose (e.g. Monte Carlo). When the target has its own
statistical uncertainty, pass it as `target_std`: it is added in quadrature, so that a
well-calibrated prediction covers a noisy target at the nominal rate.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import check_finite_array, is_concrete
from ._checks import as_float_array, check_mask, check_same_shape
from ._errors import masked_mean

_DEFAULT_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95


class ReliabilityCurve(eqx.Module):
    """Observed against nominal coverage of central prediction intervals.

    Attributes:
        expected: nominal probability of each central interval, shape (q,).
        observed: fraction of targets inside each interval, shape (q,).
    """

    expected: Float[Array, " q"]
    observed: Float[Array, " q"]

    @property
    def calibration_error(self) -> Array:
        """Mean |observed - expected| over the levels (0 for perfect calibration)."""
        return jnp.mean(jnp.abs(self.observed - self.expected))


def coverage(
    mean: Float[ArrayLike, "*spatial"],
    std: Float[ArrayLike, "*spatial"],
    target: Float[ArrayLike, "*spatial"],
    *,
    k: float = 2.0,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    target_std: Float[ArrayLike, "*spatial"] | None = None,
) -> Float[Array, ""]:
    """Fraction of voxels whose target lies within mean +- k std (k = 2 is the k=2 expanded uncertainty).

    For Gaussian errors the nominal values are 0.683 (k = 1), 0.954 (k = 2), 0.997 (k = 3).

    Args:
        mean: predicted mean, any shape (Gy).
        std: predicted standard deviation, same shape (Gy), >= 0.
        target: reference values, same shape (Gy).
        k: coverage factor, > 0.
        mask: boolean selection of voxels, same shape; all voxels by default.
        target_std: standard deviation of the target itself (Gy), added in quadrature.

    Returns:
        Scalar fraction in [0, 1]; NaN when no voxel is selected.

    Raises:
        ValueError: shapes differ, a value is not finite, `std` is negative, or `k` <= 0.

    Examples:
        >>> import jax, physdose as pd
        >>> t = jax.random.normal(jax.random.key(0), (100_000,))
        >>> round(float(pd.metrics.coverage(0.0 * t, 1.0 + 0.0 * t, t, k=2.0)), 2)
        0.95
    """
    k = float(k)
    if not np.isfinite(k) or k <= 0:
        raise ValueError(f"k must be a finite positive number, got {k!r}")
    m, s, t, region = _prepare(mean, std, target, mask, target_std, positive_std=False)
    return _coverage(m, s, t, region, k)


def gaussian_nll(
    mean: Float[ArrayLike, "*spatial"],
    std: Float[ArrayLike, "*spatial"],
    target: Float[ArrayLike, "*spatial"],
    *,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    target_std: Float[ArrayLike, "*spatial"] | None = None,
) -> Float[Array, ""]:
    """Mean Gaussian negative log-likelihood 0.5 log(2 pi std^2) + (target - mean)^2 / (2 std^2) (nats per voxel).

    Arguments as for `coverage`; `std` (with `target_std` added) must be > 0 everywhere.
    Lower is better; for targets drawn from N(mean, std^2) the expectation is
    0.5 log(2 pi e std^2).

    Returns:
        Scalar; NaN when no voxel is selected.
    """
    m, s, t, region = _prepare(mean, std, target, mask, target_std, positive_std=True)
    return _nll(m, s, t, region)


def reliability_curve(
    mean: Float[ArrayLike, "*spatial"],
    std: Float[ArrayLike, "*spatial"],
    target: Float[ArrayLike, "*spatial"],
    *,
    levels: Float[ArrayLike, " q"] = _DEFAULT_LEVELS,
    mask: Bool[ArrayLike, "*spatial"] | None = None,
    target_std: Float[ArrayLike, "*spatial"] | None = None,
) -> ReliabilityCurve:
    """Observed coverage of the central Gaussian intervals of nominal probability `levels`.

    The interval of level p is mean +- z std with z = Phi^-1((1 + p) / 2). A calibrated
    prediction has observed close to expected at every level; observed below expected
    means the uncertainty is underestimated.

    Args:
        mean, std, target, mask, target_std: as for `coverage`.
        levels: nominal probabilities in (0, 1), shape (q,); 0.05, 0.10, ..., 0.95 by default.

    Returns:
        ReliabilityCurve(expected=levels, observed).
    """
    m, s, t, region = _prepare(mean, std, target, mask, target_std, positive_std=False)
    p = jnp.asarray(levels, m.dtype)
    if p.ndim != 1 or (is_concrete(p) and not bool(np.all((np.asarray(p) > 0) & (np.asarray(p) < 1)))):
        raise ValueError(f"levels must be a 1-D sequence of probabilities in (0, 1), got {levels!r}")
    return ReliabilityCurve(expected=p, observed=_observed(m, s, t, region, p))


@jax.jit
def _coverage(m, s, t, region, k):
    return masked_mean((jnp.abs(t - m) <= k * s).astype(m.dtype), region)


@jax.jit
def _nll(m, s, t, region):
    safe = jnp.where(region, s, 1.0)
    return masked_mean(0.5 * jnp.log(2.0 * jnp.pi * safe**2) + 0.5 * ((t - m) / safe) ** 2, region)


@jax.jit
def _observed(m, s, t, region, levels):
    z = jsp.ndtri((1.0 + levels) / 2.0)  # (q,)
    error = jnp.where(region, jnp.abs(t - m), jnp.inf).reshape(-1)
    scale = s.reshape(-1)
    n = jnp.sum(region)
    observed = jax.lax.map(lambda zi: jnp.sum(error <= zi * scale), z) / jnp.maximum(n, 1)
    return jnp.where(n > 0, observed, jnp.nan).astype(m.dtype)


def _prepare(mean, std, target, mask, target_std, *, positive_std):
    m = as_float_array("mean", mean)
    s = as_float_array("std", std)
    t = as_float_array("target", target)
    check_same_shape(("mean", "std"), m, s)
    check_same_shape(("mean", "target"), m, t)
    for name, arr in (("mean", m), ("std", s), ("target", t)):
        check_finite_array(name, arr)
    if target_std is not None:
        ts = as_float_array("target_std", target_std)
        check_same_shape(("mean", "target_std"), m, ts)
        check_finite_array("target_std", ts)
        _check_std("target_std", ts, positive=False)
        s = jnp.sqrt(s**2 + ts**2)
    _check_std("std", s, positive=positive_std)
    region = jnp.ones(m.shape, bool) if mask is None else check_mask(mask, m.shape)
    dtype = jnp.result_type(m.dtype, s.dtype, t.dtype)
    return m.astype(dtype), s.astype(dtype), t.astype(dtype), region


def _check_std(name, s, *, positive):
    if not is_concrete(s):
        return
    low = float(np.min(np.asarray(s))) if s.size else 1.0
    if low < 0 or (positive and low == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got a minimum of {low!r}")
