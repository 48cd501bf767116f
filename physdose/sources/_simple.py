"""Simple beams for benchmarks and reference geometries (TG-195 cases, ICRU slab)."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive
from ..spectra._spectrum import Spectrum
from ._beam import Beam, Bowtie, orthonormal_frame
from ._source import AbstractSource, check_spectrum

_Z_AXIS = (1.0, 0.0, 0.0)


def _vec3(name, value) -> Float[Array, " 3"]:
    v = jnp.asarray(value, dtype=jnp.result_type(float))
    if v.shape != (3,):
        raise ValueError(f"{name} must be a (z, y, x) vector, got shape {v.shape}")
    return v


def _focal_beam(spectrum, focal_mm, aim_mm, field_u_mm, field_w_mm, slice_axis, bowtie=None, offset_mm=None) -> Beam:
    """Beam from a focal spot aimed at `aim_mm`, collimated to a field (u, w) at the aim point,
    centred `offset_mm` (u, w) away from it in the plane normal to the central ray."""
    axis = aim_mm - focal_mm
    distance = jnp.linalg.norm(axis)
    frame = orthonormal_frame(axis, slice_axis)
    tan_half = jnp.stack([field_u_mm, field_w_mm]) / (2 * distance)
    center = jnp.zeros(2) if offset_mm is None else offset_mm / distance
    return Beam(spectrum, focal_mm[None], frame[None], jnp.ones(1), tan_half, jnp.zeros(2), bowtie, center)


class ConeBeam(AbstractSource):
    """A point source aimed at `aim_mm`, collimated to a rectangular field at the aim point.

    Attributes:
        spectrum: photon spectrum.
        focal_mm: focal spot (z, y, x) (mm).
        aim_mm: point on the central ray where the field is specified (mm).
        field_mm: field size (u, w) at `aim_mm` (mm); w is the part of `slice_axis`
            perpendicular to the central ray, u completes the frame.
        slice_axis: direction defining w (default the z axis).
        field_offset_mm: centre of the field relative to `aim_mm`, (u, w) in the plane normal
            to the central ray (mm); non-zero for off-axis fields, e.g. a tomosynthesis
            source whose field stays on the detector.
    """

    spectrum: Spectrum
    focal_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("focal_mm", v))
    aim_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("aim_mm", v))
    field_mm: Float[Array, " 2"] = eqx.field(converter=jnp.asarray)
    slice_axis: tuple[float, float, float] = eqx.field(static=True, default=_Z_AXIS)
    field_offset_mm: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)

    def __check_init__(self):
        check_spectrum(self.spectrum)
        check_positive("field_mm", self.field_mm)

    def beam(self) -> Beam:
        f = self.field_mm
        return _focal_beam(
            self.spectrum, self.focal_mm, self.aim_mm, f[0], f[1], self.slice_axis, offset_mm=self.field_offset_mm
        )


class FanBeam(AbstractSource):
    """A thin fan from a point source: `width_mm` along u and `thickness_mm` along w at the aim point.

    Attributes:
        spectrum, focal_mm, aim_mm, slice_axis: as for ConeBeam.
        width_mm: fan width at `aim_mm` (mm).
        thickness_mm: fan thickness (slice direction) at `aim_mm` (mm).
        bowtie: optional bowtie filter.
    """

    spectrum: Spectrum
    focal_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("focal_mm", v))
    aim_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("aim_mm", v))
    width_mm: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    thickness_mm: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    slice_axis: tuple[float, float, float] = eqx.field(static=True, default=_Z_AXIS)
    bowtie: Bowtie | None = None

    def __check_init__(self):
        check_spectrum(self.spectrum)
        check_positive("width_mm", self.width_mm)
        check_positive("thickness_mm", self.thickness_mm)

    def beam(self) -> Beam:
        return _focal_beam(
            self.spectrum, self.focal_mm, self.aim_mm, self.width_mm, self.thickness_mm, self.slice_axis, self.bowtie
        )


class PencilBeam(AbstractSource):
    """An infinitely thin beam from `origin_mm` along `direction` (MC only; the prior needs area)."""

    spectrum: Spectrum
    origin_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("origin_mm", v))
    direction: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("direction", v))

    def __check_init__(self):
        check_spectrum(self.spectrum)

    def beam(self) -> Beam:
        frame = orthonormal_frame(self.direction, _perpendicular_hint(self.direction))
        return Beam(self.spectrum, self.origin_mm[None], frame[None], jnp.ones(1), jnp.zeros(2), jnp.zeros(2))


class ParallelBeam(AbstractSource):
    """A broad parallel beam: a `field_mm` (u, w) rectangle centred on `center_mm` emitting along `direction`.

    The field is uniform: fluence per source photon is 1/area inside it (e.g. the ICRU
    slab irradiated by a broad parallel beam for Hp(10) conversion coefficients).
    """

    spectrum: Spectrum
    center_mm: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("center_mm", v))
    direction: Float[Array, " 3"] = eqx.field(converter=lambda v: _vec3("direction", v))
    field_mm: Float[Array, " 2"] = eqx.field(converter=jnp.asarray)
    slice_axis: tuple[float, float, float] = eqx.field(static=True, default=_Z_AXIS)

    def __check_init__(self):
        check_spectrum(self.spectrum)
        check_positive("field_mm", self.field_mm)

    def beam(self) -> Beam:
        frame = orthonormal_frame(self.direction, self.slice_axis)
        return Beam(self.spectrum, self.center_mm[None], frame[None], jnp.ones(1), jnp.zeros(2), self.field_mm / 2)


def _perpendicular_hint(direction):
    """An axis not parallel to `direction` (z unless the beam runs along z)."""
    d = jnp.abs(direction) / jnp.linalg.norm(direction)
    return jnp.where(d[0] > 0.9, jnp.array([0.0, 1.0, 0.0]), jnp.array(_Z_AXIS))
