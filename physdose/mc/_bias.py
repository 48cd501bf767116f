"""Variance reduction for regions that little scatter reaches: scatter splitting toward a target.

Staff dose comes from photons scattered in the patient toward the physician, a small solid
angle of all scatterings. With `ScatterSplitting`, every scattering outside a target sphere
(while the lane's one-photon bank is free) also sends a copy of the photon into the cone
the sphere subtends:

* the copy's direction is uniform in the cone (solid angle Omega), its weight is
  w p(Omega_s) Omega, with p the physical angular density, so it is an importance-sampled
  estimate of everything scattered into the cone;
* the photon itself scatters as usual, but if its new direction falls in the cone it is
  dropped, because the copy already accounts for that part.

Together they have the expectation of the analog scattering (a splitting/forced-direction
scheme in the spirit of MCNP's DXTRAN; Kahn 1956 for the expected-value idea), and no weight
ever grows, so doses away from the target do not get noisier. The copy waits in the bank
while the photon's angle is drawn, then runs first; the photon runs when the copy is done.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .. import _random as rng
from .._checks import check_positive
from .._vec3 import dot3, norm3
from ._interactions import ScatterDensity, ScatterTables, rotate


class ScatterSplitting(eqx.Module):
    """Split scattered photons toward a target sphere (unbiased; weights never grow).

    Attributes:
        center_mm: target sphere centre (z, y, x) in mm (e.g. the physician's chest and eyes).
        radius_mm: target sphere radius (mm); scatterings inside it are not split.
    """

    center_mm: tuple[float, float, float] = eqx.field(static=True, converter=lambda v: tuple(float(x) for x in v))
    radius_mm: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        if len(self.center_mm) != 3 or not np.all(np.isfinite(self.center_mm)):
            raise ValueError(f"center_mm must be a finite (z, y, x) point, got {self.center_mm}")
        check_positive("radius_mm", self.radius_mm)


class Steering(eqx.Module):
    """ScatterSplitting as arrays for transport, with the angular densities it needs."""

    center_mm: Float[Array, " 3"]
    radius_mm: Float[Array, ""]
    density: ScatterDensity

    @classmethod
    def build(cls, splitting: ScatterSplitting, tables: ScatterTables) -> "Steering":
        dtype = tables.x_nodes.dtype
        return cls(
            jnp.asarray(splitting.center_mm, dtype),
            jnp.asarray(splitting.radius_mm, dtype),
            ScatterDensity.from_tables(tables),
        )

    def cone(self, pos_mm: Float[Array, "n 3"]):
        """Per lane: (unit axis toward the centre, cos of the cone half-angle, outside the sphere)."""
        to_center = self.center_mm[None] - pos_mm
        distance = norm3(to_center)
        outside = distance > self.radius_mm
        safe = jnp.where(outside, distance, 1.0)
        cos_alpha = jnp.sqrt(1.0 - jnp.where(outside, (self.radius_mm / safe) ** 2, 1.0))
        return to_center / safe[:, None], cos_alpha, outside

    def copy(
        self,
        key,
        incoming: Float[Array, "n 3"],
        energy_kev: Float[Array, " n"],
        material: Int[Array, " n"],
        incoherent: Bool[Array, " n"],
        axis: Float[Array, "n 3"],
        cos_alpha: Float[Array, " n"],
    ):
        """Copies scattered into the cones: (direction, cos theta, weight factor p Omega)."""
        r1, r2 = rng.uniform(key, (2,) + cos_alpha.shape, dtype=cos_alpha.dtype)
        direction = rotate(axis, 1.0 - r1 * (1.0 - cos_alpha), 2.0 * jnp.pi * r2)
        cos = jnp.clip(dot3(incoming, direction), -1.0, 1.0)
        p_cos = jnp.where(
            incoherent,
            self.density.incoherent(cos, energy_kev, material),
            self.density.coherent(cos, energy_kev, material),
        )
        # p(Omega) = p(cos) / (2 pi) (uniform azimuth); cone solid angle 2 pi (1 - cos alpha)
        return direction, cos, p_cos * (1.0 - cos_alpha)

    @staticmethod
    def in_cone(direction: Float[Array, "n 3"], axis: Float[Array, "n 3"], cos_alpha: Float[Array, " n"]):
        return dot3(direction, axis) >= cos_alpha
