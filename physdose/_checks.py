"""Eager validation helpers: raise errors that name the argument and the value."""

import jax
import numpy as np


def is_concrete(*values) -> bool:
    """True when no value is a JAX tracer (so it can be checked eagerly)."""
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(values))


def check_positive(name: str, value) -> None:
    """Raise ValueError naming `name` unless every element of `value` is finite and > 0."""
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")


def check_nonnegative(name: str, value) -> None:
    """Raise ValueError naming `name` unless every element of `value` is finite and >= 0."""
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")


def check_triple(name: str, value) -> tuple[float, float, float]:
    """Return `value` as a (z, y, x) float triple or raise ValueError naming `name`."""
    try:
        out = tuple(float(v) for v in value)
    except TypeError as err:
        raise ValueError(f"{name} must be a (z, y, x) triple, got {value!r}") from err
    if len(out) != 3 or not all(np.isfinite(out)):
        raise ValueError(f"{name} must be a finite (z, y, x) triple, got {value!r}")
    return out


def check_finite_array(name: str, arr) -> None:
    """Raise ValueError naming `name` if a concrete `arr` holds NaN or inf (counts them, not the values)."""
    if is_concrete(arr):
        a = np.asarray(arr)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(a)))} NaN or inf values")


def check_dose_values(name: str, arr) -> None:
    """Raise ValueError naming `name` if a concrete dose array holds NaN, inf or negative values."""
    check_finite_array(name, arr)
    if is_concrete(arr):
        a = np.asarray(arr)
        if a.size and a.min() < 0:
            raise ValueError(f"{name} must be non-negative, got a minimum of {float(a.min())!r}")
