"""Shared input handling of the dosimetry functions: dose maps, their uncertainties, grids."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import check_dose_values
from ..geometry._grid import Grid
from ..mc._simulate import MCResult
from ..phantoms._phantom import Phantom


def check_phantom(phantom) -> Phantom:
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a physdose.Phantom, got {type(phantom).__name__}")
    return phantom


def check_grid(name: str, grid, phantom: Phantom) -> None:
    """Raise ValueError naming `name` unless `grid` is the phantom's grid (shape, spacing and origin)."""
    if grid is None:
        return
    if not isinstance(grid, Grid):
        raise TypeError(f"{name} must be a physdose.Grid, got {type(grid).__name__}")
    ref = phantom.grid
    for field in ("shape", "spacing_mm", "origin_mm"):
        a, b = getattr(grid, field), getattr(ref, field)
        if not np.allclose(a, b, rtol=1e-6, atol=1e-6):
            raise ValueError(
                f"{name}.{field} is {a} but phantom.grid.{field} is {b}; the dose must lie on the phantom grid"
            )


def check_volume(name: str, value, phantom: Phantom, *, samples: bool) -> Array:
    """`value` as an array of shape grid.shape, or (s, *grid.shape) when `samples`; finite and >= 0."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    shape = phantom.grid.shape
    ok = arr.shape == shape or (samples and arr.ndim == 4 and arr.shape[1:] == shape and arr.shape[0] >= 1)
    if not ok:
        expected = f"{shape} or (samples, *{shape})" if samples else f"{shape}"
        raise ValueError(f"{name} has shape {tuple(arr.shape)} but the phantom grid needs {expected}")
    check_dose_values(name, arr)
    return arr


def dose_and_sigma(dose, phantom: Phantom, sigma, grid) -> tuple[Array, Array | None]:
    """Dose volume(s) and per-voxel sigma from an array, prediction samples or an MCResult.

    An MCResult gives `dose_gy` and sigma = `rel_sigma` x `dose_gy` (zero where no energy
    was deposited) and must lie on the phantom grid.
    """
    if isinstance(dose, MCResult):
        check_grid("dose.grid", dose.grid, phantom)
        if sigma is not None:
            raise ValueError("sigma must be None when dose is an MCResult (its batch uncertainties are used)")
        return dose.dose_gy, dose.sigma_gy
    check_grid("grid", grid, phantom)
    d = check_volume("dose", dose, phantom, samples=True)
    if sigma is None:
        return d, None
    if d.ndim == 4:
        raise ValueError("give either prediction samples (dose with a leading sample axis) or sigma, not both")
    return d, check_volume("sigma", sigma, phantom, samples=False)


AIR_MAX_DENSITY_G_CM3 = 0.05
"""Nominal density (g/cm^3) up to which a material counts as air (or vacuum)."""


def air_mask(phantom: Phantom) -> Array:
    """Voxels of air (or vacuum): materials with a nominal density of at most `AIR_MAX_DENSITY_G_CM3`."""
    return _materials_where(phantom, lambda m: m.density_g_cm3 <= AIR_MAX_DENSITY_G_CM3)


def tissue_mask(phantom: Phantom) -> Array:
    """Voxels of body tissue: materials denser than air (`AIR_MAX_DENSITY_G_CM3`) that are less than
    half elements heavier than calcium (not lead or other metal shields)."""

    def tissue(m) -> bool:
        heavy = sum(w for z, w in zip(m.elements, m.mass_fractions) if z > 20)
        return m.density_g_cm3 > AIR_MAX_DENSITY_G_CM3 and heavy < 0.5

    return _materials_where(phantom, tissue)


def _materials_where(phantom: Phantom, predicate) -> Array:
    """Voxels whose material satisfies `predicate(material)`, bool, shape grid.shape."""
    keep = np.asarray([predicate(m) for m in phantom.materials.materials], bool)
    return jnp.asarray(keep)[phantom.material_ids]
