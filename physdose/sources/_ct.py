"""CT scans: axial or helical trajectories with fan/cone collimation, bowtie and modulation."""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_positive, is_concrete
from ..spectra._spectrum import Spectrum
from ._beam import Beam, Bowtie
from ._source import AbstractSource, check_spectrum


class CTScan(AbstractSource):
    """A CT acquisition: the tube rotates about the z axis while the table moves.

    Geometry (patient frame, (z, y, x), +y posterior, +x patient left): at gantry angle
    theta the focal spot sits at (z, y_iso - D cos theta, x_iso - D sin theta), D =
    `source_isocenter_mm`, so theta = 0 is an anterior source (AP projection) and
    theta = 90 deg puts the source on the patient's right. The fan spans `fov_mm` at the
    isocentre (u, in the axial plane), the slice direction spans `collimation_mm` (w = z).

    Trajectory: the table feed per rotation is `pitch * collimation_mm`.
      * helical: views every 360/`views_per_rotation` deg while the source z runs from
        `start_z_mm` to `end_z_mm` (z advances feed/views_per_rotation per view);
      * axial: full rotations centred at start_z_mm, start_z_mm + feed, ... up to end_z_mm.

    Tube current: `tube_current_ma` times an optional z modulation (linear interpolation
    of `tcm_factor` at `tcm_z_mm`, clamped). Every view lasts rotation_time_s /
    views_per_rotation, so source photons per view are proportional to its mA.

    Normalisation: `source_photons()` converts MC or prior dose per source photon to
    absolute dose for the scan's mAs; `source_photons_for_ctdi_vol(ctdi_vol_per_photon_mgy)`
    gives the source photons for which the scan delivers `ctdi_vol_mgy`.
    """

    spectrum: Spectrum
    start_z_mm: float = eqx.field(static=True)
    end_z_mm: float = eqx.field(static=True)
    helical: bool = eqx.field(static=True, default=True)
    pitch: float = eqx.field(static=True, default=1.0)
    collimation_mm: float = eqx.field(static=True, default=40.0)
    views_per_rotation: int = eqx.field(static=True, default=36)
    source_isocenter_mm: float = eqx.field(static=True, default=600.0)
    fov_mm: float = eqx.field(static=True, default=500.0)
    start_angle_deg: float = eqx.field(static=True, default=0.0)
    isocenter_yx_mm: tuple[float, float] = eqx.field(static=True, default=(0.0, 0.0))
    rotation_time_s: float = eqx.field(static=True, default=0.5)
    tube_current_ma: float = eqx.field(static=True, default=200.0)
    bowtie: Bowtie | None = None
    tcm_z_mm: Float[Array, " k"] | None = None
    tcm_factor: Float[Array, " k"] | None = None
    ctdi_vol_mgy: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_spectrum(self.spectrum)
        for name in ("pitch", "collimation_mm", "source_isocenter_mm", "fov_mm", "rotation_time_s", "tube_current_ma"):
            check_positive(name, getattr(self, name))
        if not isinstance(self.views_per_rotation, int) or self.views_per_rotation < 1:
            raise ValueError(f"views_per_rotation must be a positive int, got {self.views_per_rotation!r}")
        if self.end_z_mm < self.start_z_mm or (self.helical and self.end_z_mm == self.start_z_mm):
            raise ValueError(
                f"end_z_mm must be >= start_z_mm (> for helical scans),"
                f" got start_z_mm={self.start_z_mm}, end_z_mm={self.end_z_mm}"
            )
        if self.fov_mm / 2 >= self.source_isocenter_mm:
            raise ValueError(
                f"fov_mm={self.fov_mm} must be smaller than twice source_isocenter_mm={self.source_isocenter_mm}"
            )
        if (self.tcm_z_mm is None) != (self.tcm_factor is None):
            raise ValueError("tcm_z_mm and tcm_factor must be given together")
        if self.tcm_factor is not None:
            if self.tcm_z_mm.shape != self.tcm_factor.shape or self.tcm_z_mm.ndim != 1:
                raise ValueError(
                    f"tcm_z_mm and tcm_factor must be 1-D of equal length,"
                    f" got {self.tcm_z_mm.shape}, {self.tcm_factor.shape}"
                )
            check_positive("tcm_factor", self.tcm_factor)
            if is_concrete(self.tcm_z_mm) and np.any(np.diff(np.asarray(self.tcm_z_mm)) <= 0):
                raise ValueError("tcm_z_mm must increase strictly")
        if self.ctdi_vol_mgy is not None:
            check_positive("ctdi_vol_mgy", self.ctdi_vol_mgy)

    @property
    def feed_mm(self) -> float:
        """Table feed per rotation (mm) = pitch x collimation."""
        return self.pitch * self.collimation_mm

    @property
    def num_views(self) -> int:
        if self.helical:
            return math.floor((self.end_z_mm - self.start_z_mm) / self.feed_mm * self.views_per_rotation + 1e-9) + 1
        rotations = math.floor((self.end_z_mm - self.start_z_mm) / self.feed_mm + 1e-9) + 1
        return rotations * self.views_per_rotation

    def view_angles_deg(self) -> Float[Array, " v"]:
        """Gantry angle of each view (degrees, unwrapped)."""
        k = jnp.arange(self.num_views)
        return self.start_angle_deg + 360.0 * k / self.views_per_rotation

    def view_z_mm(self) -> Float[Array, " v"]:
        """Source (and beam-centre) z of each view (mm)."""
        k = jnp.arange(self.num_views)
        if self.helical:
            return self.start_z_mm + self.feed_mm * k / self.views_per_rotation
        return self.start_z_mm + self.feed_mm * (k // self.views_per_rotation)

    def view_current_ma(self) -> Float[Array, " v"]:
        """Tube current of each view (mA), including modulation."""
        z = self.view_z_mm()
        if self.tcm_factor is None:
            return jnp.full(z.shape, self.tube_current_ma)
        return self.tube_current_ma * jnp.interp(z, self.tcm_z_mm, self.tcm_factor)

    @property
    def mas(self) -> Float[Array, ""]:
        """Total tube current-time product of the scan (mAs)."""
        return jnp.sum(self.view_current_ma()) * self.rotation_time_s / self.views_per_rotation

    def beam(self) -> Beam:
        theta = jnp.radians(self.view_angles_deg())
        z = self.view_z_mm()
        d = self.source_isocenter_mm
        y0, x0 = self.isocenter_yx_mm
        focal = jnp.stack([z, y0 - d * jnp.cos(theta), x0 - d * jnp.sin(theta)], axis=-1)
        central = jnp.stack([jnp.zeros_like(theta), jnp.cos(theta), jnp.sin(theta)], axis=-1)
        axes = _ct_frames(central)
        current = self.view_current_ma()
        tan_half = jnp.asarray([self.fov_mm / 2, self.collimation_mm / 2]) / d
        return Beam(self.spectrum, focal, axes, current / jnp.sum(current), tan_half, jnp.zeros(2), self.bowtie)

    def source_photons(self) -> Float[Array, ""]:
        """Source photons emitted over the scan: mAs x photons per mAs (needs a tube spectrum)."""
        return self.mas * self.beam().photons_per_mas()

    def source_photons_for_ctdi_vol(self, ctdi_vol_per_photon_mgy) -> Float[Array, ""]:
        """Source photons for which the scan's CTDIvol equals `ctdi_vol_mgy`.

        Args:
            ctdi_vol_per_photon_mgy: CTDIvol of this scan per source photon (mGy), e.g. from
                an MC run in the CTDI phantom.
        """
        if self.ctdi_vol_mgy is None:
            raise ValueError("ctdi_vol_mgy is not set on this CTScan")
        check_positive("ctdi_vol_per_photon_mgy", ctdi_vol_per_photon_mgy)
        return self.ctdi_vol_mgy / jnp.asarray(ctdi_vol_per_photon_mgy)


def _ct_frames(central: Float[Array, "v 3"]) -> Float[Array, "v 3 3"]:
    """(c, u, w) per view for central rays in the axial plane: w = +z, u = w x c."""
    w = jnp.broadcast_to(jnp.asarray([1.0, 0.0, 0.0], central.dtype), central.shape)
    u = jnp.cross(w, central)
    return jnp.stack([central, u, w], axis=1)
