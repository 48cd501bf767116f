"""Input checks shared by the metrics: errors name the argument and the value."""

import numpy as np
from jax import numpy as jnp

from .._checks import check_dose_values, check_nonnegative, check_positive, is_concrete


def as_float_array(name: str, value):
    """`value` as a floating JAX array (integers become float32); ValueError naming `name` if it is not numeric."""
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}") from err
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise ValueError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float32)
    return arr


def check_same_shape(names: tuple[str, str], a, b) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; they must match")


def check_dose_pair(reference, evaluated, names=("reference", "evaluated"), *, zero_reference_ok=False):
    """Two doses on the same grid, as float arrays of a common dtype; checked when concrete.

    Raises:
        ValueError: shapes differ, a dose is negative or not finite, or the reference is
            zero everywhere (unless `zero_reference_ok`).
    """
    ref = as_float_array(names[0], reference)
    ev = as_float_array(names[1], evaluated)
    check_same_shape(names, ref, ev)
    if ref.size == 0:
        raise ValueError(f"{names[0]} is empty (shape {ref.shape})")
    check_dose_values(names[0], ref)
    check_dose_values(names[1], ev)
    if not zero_reference_ok and is_concrete(ref) and not bool(np.any(np.asarray(ref) > 0)):
        raise ValueError(f"{names[0]} is zero everywhere; there is nothing to normalise to")
    dtype = jnp.result_type(ref.dtype, ev.dtype)
    return ref.astype(dtype), ev.astype(dtype)


def check_spacing(spacing_mm, ndim: int) -> tuple[float, ...]:
    """`spacing_mm` as a tuple of `ndim` positive floats, or ValueError naming it."""
    if np.ndim(spacing_mm) != 1:
        raise ValueError(f"spacing_mm must be a sequence of {ndim} spacings (mm), one per axis, got {spacing_mm!r}")
    out = tuple(float(s) for s in np.asarray(spacing_mm, dtype=float))
    if len(out) != ndim:
        raise ValueError(f"spacing_mm must have {ndim} entries (one per axis of the dose), got {spacing_mm!r}")
    check_positive("spacing_mm", out)
    return out


def check_mask(mask, shape, name: str = "mask"):
    """`mask` as a boolean JAX array of `shape`, or ValueError naming it."""
    arr = jnp.asarray(mask)
    if arr.dtype != jnp.bool_:
        raise ValueError(f"{name} must be a boolean array, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape} but the dose has shape {tuple(shape)}; they must match")
    return arr


def check_threshold(name: str, value) -> float:
    """`value` as a finite float >= 0, or ValueError naming `name`."""
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from err
    check_nonnegative(name, out)
    return out
