"""Interventional C-arm exposures."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive, is_concrete
from ..spectra._spectrum import Spectrum
from ._beam import Beam, orthonormal_frame
from ._simple import _vec3
from ._source import AbstractSource, check_spectrum


class CArm(AbstractSource):
    """A C-arm exposure with an under-table tube.

    Angles name the position of the image receptor, as in DICOM (Positioner Primary and
    Secondary Angle): `lao_deg` > 0 is LAO, < 0 RAO; `cra_deg` > 0 is cranial, < 0 caudal.
    With a = lao_deg and c = cra_deg the central ray (source -> receptor) is

        d = (sin c, -cos a cos c, sin a cos c)      in (z, y, x)

    so at a = c = 0 the source is under the table (posterior, +y) and the beam runs
    anteriorly (PA projection); LAO 90 puts the source on the patient's right (-x) and
    the receptor on the left; CRA tilts the receptor toward the head (+z) and moves the
    source toward the feet. The focal spot is at isocenter - source_isocenter_mm * d.

    Attributes:
        spectrum: photon spectrum.
        lao_deg, cra_deg: gantry angles (degrees), array leaves (differentiable).
        source_image_mm: focal spot to image receptor distance (mm).
        source_isocenter_mm: focal spot to isocentre distance (mm).
        field_mm: collimated field (u, w) at the image receptor (mm).
        isocenter_mm: isocentre (z, y, x) in the patient frame (mm).
        table_height_mm: table displacement from its reference height (mm, + toward the
            ceiling); the patient moves with the table, so the isocentre moves by
            +table_height_mm along +y (posterior) in the patient frame.
    """

    spectrum: Spectrum
    lao_deg: Float[Array, ""] = eqx.field(default=0.0, converter=jnp.asarray)
    cra_deg: Float[Array, ""] = eqx.field(default=0.0, converter=jnp.asarray)
    source_image_mm: Float[Array, ""] = eqx.field(default=1100.0, converter=jnp.asarray)
    source_isocenter_mm: Float[Array, ""] = eqx.field(default=750.0, converter=jnp.asarray)
    field_mm: Float[Array, " 2"] = eqx.field(default=(250.0, 250.0), converter=jnp.asarray)
    isocenter_mm: Float[Array, " 3"] = eqx.field(default=(0.0, 0.0, 0.0), converter=lambda v: _vec3("isocenter_mm", v))
    table_height_mm: Float[Array, ""] = eqx.field(default=0.0, converter=jnp.asarray)

    def __check_init__(self):
        check_spectrum(self.spectrum)
        check_positive("source_image_mm", self.source_image_mm)
        check_positive("source_isocenter_mm", self.source_isocenter_mm)
        check_positive("field_mm", self.field_mm)
        if self.field_mm.shape != (2,):
            raise ValueError(f"field_mm must be (u, w), got shape {self.field_mm.shape}")
        if is_concrete(self.source_image_mm, self.source_isocenter_mm) and not (
            float(self.source_isocenter_mm) < float(self.source_image_mm)
        ):
            raise ValueError(
                f"source_isocenter_mm={float(self.source_isocenter_mm)} must be less than "
                f"source_image_mm={float(self.source_image_mm)}"
            )
        if is_concrete(self.cra_deg) and not abs(float(self.cra_deg)) < 90:
            raise ValueError(f"cra_deg must lie in (-90, 90), got {float(self.cra_deg)}")

    def central_ray(self) -> Float[Array, " 3"]:
        """Unit vector from the focal spot to the receptor (z, y, x)."""
        a, c = jnp.radians(self.lao_deg), jnp.radians(self.cra_deg)
        return jnp.stack([jnp.sin(c), -jnp.cos(a) * jnp.cos(c), jnp.sin(a) * jnp.cos(c)])

    def focal_mm(self) -> Float[Array, " 3"]:
        """Focal spot position in the patient frame (mm)."""
        iso = self.isocenter_mm + jnp.stack([0.0, self.table_height_mm, 0.0])
        return iso - self.source_isocenter_mm * self.central_ray()

    def beam(self) -> Beam:
        d = self.central_ray()
        frame = orthonormal_frame(d, (1.0, 0.0, 0.0))
        tan_half = self.field_mm / (2 * self.source_image_mm)
        return Beam(self.spectrum, self.focal_mm()[None], frame[None], jnp.ones(1), tan_half, jnp.zeros(2))
