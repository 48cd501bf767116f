"""The one representation every source produces, consumed by the Monte Carlo and the prior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .. import _random as rng
from .._checks import check_nonnegative, is_concrete
from .._vec3 import norm3
from ..materials._material import Material, get
from ..spectra._spectrum import Spectrum
from ..units import REFERENCE_DISTANCE_MM, kerma_gy


class Bowtie(eqx.Module):
    """A bowtie filter: thickness of `material` along each ray versus fan position tan(gamma).

    Attributes:
        material: filter material.
        tan_fan: fan-coordinate knots tan(gamma), increasing, shape (k,).
        thickness_mm: filter path length of the ray at each knot (mm), shape (k,).
    """

    material: Material = eqx.field(static=True)
    tan_fan: Float[Array, " k"]
    thickness_mm: Float[Array, " k"]

    def __check_init__(self):
        if self.tan_fan.shape != self.thickness_mm.shape or self.tan_fan.ndim != 1:
            raise ValueError(
                f"tan_fan and thickness_mm must be 1-D of equal length,"
                f" got {self.tan_fan.shape}, {self.thickness_mm.shape}"
            )
        check_nonnegative("thickness_mm", self.thickness_mm)

    @classmethod
    def water_equalising(
        cls,
        radius_mm: float,
        source_isocenter_mm: float,
        *,
        material: str = "aluminium",
        center_mm: float = 1.0,
        max_mm: float = 30.0,
        effective_energy_kev: float = 60.0,
        max_fan_deg: float = 35.0,
    ) -> "Bowtie":
        """A bowtie that equalises a centred water cylinder of `radius_mm`.

        Along fan angle gamma, the filter adds the material thickness that compensates the
        shorter water chord 2 sqrt(R^2 - (D sin gamma)^2) at `effective_energy_kev`,
        capped at `max_mm` (the usual design principle of bowtie filters; e.g. Boone 2010,
        Med. Phys. 37:40, models real bowties as such equivalent thicknesses).
        """
        m = get(material)
        ratio = float(get("water").mu_per_mm(effective_energy_kev) / m.mu_per_mm(effective_energy_kev))
        gamma = np.radians(np.linspace(-max_fan_deg, max_fan_deg, 257))
        chord = 2 * np.sqrt(np.clip(radius_mm**2 - (source_isocenter_mm * np.sin(gamma)) ** 2, 0, None))
        thickness = np.minimum(center_mm + ratio * (2 * radius_mm - chord), max_mm)
        return cls(m, jnp.asarray(np.tan(gamma)), jnp.asarray(thickness))

    @classmethod
    def body(cls, source_isocenter_mm: float = 600.0) -> "Bowtie":
        """Generic body bowtie: aluminium equalising a 320 mm water cylinder, at most 30 mm."""
        return cls.water_equalising(160.0, source_isocenter_mm)

    @classmethod
    def head(cls, source_isocenter_mm: float = 600.0) -> "Bowtie":
        """Generic head bowtie: aluminium equalising a 160 mm water cylinder, at most 30 mm."""
        return cls.water_equalising(80.0, source_isocenter_mm)

    def path_mm(self, tan_fan: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """Filter path length (mm) at fan position `tan_fan` (clamped to the knots)."""
        return jnp.interp(tan_fan, self.tan_fan, self.thickness_mm)

    def transmission(self, tan_fan: Float[ArrayLike, "*b"], e_kev: Float[ArrayLike, " n"]) -> Float[Array, "*b n"]:
        """Transmission exp(-mu(E) t(tan_fan)) for each energy, shape (*b, n)."""
        t = self.path_mm(tan_fan)[..., None]
        return jnp.exp(-_trailing(self.material.mu_per_mm(jnp.asarray(e_kev)), t) * t)


class PhotonBatch(eqx.Module):
    """Primary photons leaving a source: positions (mm), unit directions, energies (keV), weights."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    energy_kev: Float[Array, " n"]
    weight: Float[Array, " n"]
    view: Int[Array, " n"]


class Beam(eqx.Module):
    """Emission description shared by the Monte Carlo engine and the analytic prior.

    A beam is a set of views (CT projections, or one C-arm exposure). View `v` emits from a
    rectangle of half-size `emitter_half_mm` (u, w) centred on `focal_mm[v]` (zero for a
    focal spot) into directions d = c + t_u u + t_w w with |t_u - o_u| <= tan_half[0],
    |t_w - o_w| <= tan_half[1] (o = `aperture_center`, zero unless the field is off-axis,
    as for a tomosynthesis source whose field stays on the detector), where
    (c, u, w) = `axes[v]` are orthonormal: the central ray,
    the fan direction and the slice direction. A focal spot emits isotropically per solid
    angle inside that rectangular aperture; an emitter with zero aperture emits along c only
    (pencil and parallel beams). A bowtie filter, if present, attenuates each ray according
    to its fan position t_u.

    Normalisation: one *source photon* is one photon emitted into the aperture, before the
    bowtie. `view_weight[v]` is the fraction of source photons emitted in view v.

    Attributes:
        spectrum: energy distribution of source photons.
        focal_mm: emission centre of each view (z, y, x) (mm), shape (v, 3).
        axes: per-view unit vectors (central ray, fan u, slice w), shape (v, 3, 3).
        view_weight: fraction of source photons per view, shape (v,), sums to 1.
        tan_half: aperture half-widths as tangents (u, w), shape (2,): both > 0 or both 0.
        emitter_half_mm: emitting-area half-widths (u, w) (mm), shape (2,).
        bowtie: optional bowtie filter.
        aperture_center: centre of the aperture in tangent coordinates (u, w), shape (2,).
    """

    spectrum: Spectrum
    focal_mm: Float[Array, "v 3"]
    axes: Float[Array, "v 3 3"]
    view_weight: Float[Array, " v"]
    tan_half: Float[Array, " 2"]
    emitter_half_mm: Float[Array, " 2"]
    bowtie: Bowtie | None = None
    aperture_center: Float[Array, " 2"] = eqx.field(default=(0.0, 0.0), converter=jnp.asarray)

    def __check_init__(self):
        v = self.focal_mm.shape[0]
        if self.focal_mm.shape != (v, 3) or self.axes.shape != (v, 3, 3) or self.view_weight.shape != (v,):
            raise ValueError(
                f"focal_mm (v, 3), axes (v, 3, 3) and view_weight (v,) disagree: {self.focal_mm.shape}, "
                f"{self.axes.shape}, {self.view_weight.shape}"
            )
        if v == 0:
            raise ValueError("a beam needs at least one view")
        check_nonnegative("view_weight", self.view_weight)
        check_nonnegative("tan_half", self.tan_half)
        check_nonnegative("emitter_half_mm", self.emitter_half_mm)
        if is_concrete(self.tan_half):
            t = np.asarray(self.tan_half)
            if (t[0] > 0) != (t[1] > 0):
                raise ValueError(f"tan_half must be both positive (fan/cone) or both zero (pencil/parallel), got {t}")

    @property
    def num_views(self) -> int:
        return self.focal_mm.shape[0]

    @property
    def solid_angle_sr(self) -> Float[Array, ""]:
        """Solid angle of the rectangular aperture (sr).

        By inclusion-exclusion of corner rectangles [0, x] x [0, y] at unit distance, each
        subtending atan(x y / sqrt(1 + x^2 + y^2)); 4 asin(sin a sin b) when centred.
        """
        lo = self.aperture_center - self.tan_half
        hi = self.aperture_center + self.tan_half

        def corner(x, y):
            return jnp.arctan(x * y / jnp.sqrt(1.0 + x**2 + y**2))

        return corner(hi[0], hi[1]) - corner(lo[0], hi[1]) - corner(hi[0], lo[1]) + corner(lo[0], lo[1])

    def aperture_coords(self, view: Int[ArrayLike, ""], direction: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b 2"]:
        """Aperture coordinates (t_u, t_w) of `direction` in view `view` (inf behind the source)."""
        c, u, w = self.axes[view]
        d = jnp.asarray(direction)
        along = d @ c
        safe = jnp.where(along > 0, along, 1.0)
        t = jnp.stack([d @ u, d @ w], axis=-1) / safe[..., None]
        return jnp.where((along > 0)[..., None], t, jnp.inf)

    def photons_per_sr(
        self,
        view: Int[ArrayLike, ""],
        direction: Float[ArrayLike, "*b 3"],
        blur: Float[ArrayLike, "*b 2"] | None = None,
        *,
        bowtie: bool = True,
    ) -> Float[Array, "*b n"]:
        """Source photons per steradian emitted by view `view` along `direction`, per energy.

        For a focal-spot beam; summed over the spectrum it integrates to the view weight
        times the bowtie transmission over the aperture. Shape (*b, n_energies).
        `blur`: half-widths (u, w), in tangent units, of a box the aperture is averaged
        over (e.g. a voxel's extent seen from the focal spot, so a voxel the field edge
        cuts gets the covered fraction); None: the aperture's sharp edge.
        `bowtie`: False leaves the bowtie's transmission out (for a caller that applies
        it itself, e.g. along rays).
        """
        t = self.aperture_coords(view, direction)
        offset = t - _trailing(self.aperture_center, t)
        half = _trailing(self.tan_half, t)
        if blur is None:
            inside = jnp.all(jnp.abs(offset) <= half, axis=-1)
            covered = inside.astype(t.dtype)
        else:
            blur = jnp.maximum(jnp.asarray(blur, t.dtype), 1e-12)
            offset = jnp.where(jnp.isinf(offset), 1e6, offset)  # behind the source: finite, far outside
            overlap = jnp.minimum(half, offset + blur) - jnp.maximum(-half, offset - blur)
            covered = jnp.prod(jnp.clip(overlap / (2.0 * blur), 0.0, 1.0), axis=-1)
            inside = covered > 0
        per_sr = (covered * (self.view_weight[view] / self.solid_angle_sr))[..., None]
        out = per_sr * _trailing(self.spectrum.fluence, per_sr)
        if bowtie and self.bowtie is not None:
            fan = jnp.clip(offset[..., 0], -half[..., 0], half[..., 0]) + self.aperture_center[0]
            out = out * self.bowtie.transmission(jnp.where(inside, fan, 0.0), self.spectrum.energy_kev)
        return out

    @eqx.filter_jit
    def fluence_per_photon_mm2(self, point_mm: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b n"]:
        """Unattenuated photon fluence (1/mm^2) per source photon at `point_mm`, per energy.

        Sums all views. Point sources follow the inverse-square law; parallel beams give
        1/(emitter area) inside their field; pencil beams give 0 (a line has no area).
        """
        p = jnp.asarray(point_mm)

        def one_view(v):
            r = p - _trailing(self.focal_mm[v], p)
            dist2 = jnp.sum(r**2, axis=-1)
            safe2 = jnp.where(dist2 > 0, dist2, 1.0)
            d = r / jnp.sqrt(safe2)[..., None]
            point = self.photons_per_sr(v, d) / safe2[..., None]
            c, u, w = self.axes[v]
            across = jnp.stack([r @ u, r @ w], axis=-1)
            in_field = jnp.all(jnp.abs(across) <= _trailing(self.emitter_half_mm, across), axis=-1) & (r @ c > 0)
            area = 4.0 * self.emitter_half_mm[0] * self.emitter_half_mm[1]
            parallel = jnp.where(in_field & (area > 0), self.view_weight[v] / jnp.where(area > 0, area, 1.0), 0.0)
            parallel = parallel[..., None] * _trailing(self.spectrum.fluence, point)
            is_point = self.solid_angle_sr > 0
            return jnp.where(is_point, jnp.where(dist2[..., None] > 0, point, 0.0), parallel)

        return jnp.sum(jax.vmap(one_view)(jnp.arange(self.num_views)), axis=0)

    @eqx.filter_jit
    def air_kerma_per_photon_gy(self, point_mm: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b"]:
        """Free-in-air kerma (Gy) per source photon at `point_mm` (no attenuation by air or patient)."""
        fluence = self.fluence_per_photon_mm2(point_mm)
        e = _trailing(self.spectrum.energy_kev, fluence)
        return jnp.sum(
            kerma_gy(fluence, e, _trailing(get("air").mu_en_cm2_g(self.spectrum.energy_kev), fluence)), axis=-1
        )

    def photons_per_mas(self) -> Float[Array, ""]:
        """Source photons per mAs: tube output at 1 m times the aperture area at 1 m.

        Raises:
            ValueError: the spectrum has no tube output (not from `Spectrum.from_tube`), or
                the beam has no solid angle (pencil/parallel beams).
        """
        if self.spectrum.output_photons_per_mas_mm2 is None:
            raise ValueError("spectrum has no tube output; build it with Spectrum.from_tube to normalise per mAs")
        if is_concrete(self.tan_half) and not float(self.solid_angle_sr) > 0:
            raise ValueError("per-mAs normalisation needs a focal-spot beam with a non-zero aperture")
        return self.spectrum.output_photons_per_mas_mm2 * self.solid_angle_sr * REFERENCE_DISTANCE_MM**2

    @eqx.filter_jit
    def sample(self, n: int, *, key: PRNGKeyArray) -> PhotonBatch:
        """Draw `n` source photons for Monte Carlo transport (same key, same photons).

        Views and energies are drawn from `view_weight` and the spectrum; directions are
        uniform over the aperture rectangle with weight cos^3(theta) * area / solid angle,
        which makes them isotropic per solid angle; the bowtie transmission multiplies the
        weight. The weights average to the mean bowtie transmission (1 without a bowtie).
        """
        k_view, k_energy, k_dir, k_pos = rng.split(key, 4)
        view = _sample_index(k_view, self.view_weight, n)
        energy = self.spectrum.energy_kev[_sample_index(k_energy, self.spectrum.fluence, n)]
        t = rng.uniform(k_dir, (n, 2), minval=-1.0, maxval=1.0) * self.tan_half[None] + self.aperture_center[None]
        a = rng.uniform(k_pos, (n, 2), minval=-1.0, maxval=1.0) * self.emitter_half_mm[None]
        c, u, w = (self.axes[view, i] for i in range(3))
        d = c + t[:, :1] * u + t[:, 1:] * w
        norm = norm3(d)[:, None]
        pos = self.focal_mm[view] + a[:, :1] * u + a[:, 1:] * w
        omega = self.solid_angle_sr
        area = 4.0 * self.tan_half[0] * self.tan_half[1]
        cos3 = (1.0 / norm[:, 0]) ** 3
        weight = jnp.where(omega > 0, cos3 * area / jnp.where(omega > 0, omega, 1.0), 1.0)
        if self.bowtie is not None:
            weight = weight * jnp.exp(-self.bowtie.material.mu_per_mm(energy) * self.bowtie.path_mm(t[:, 0]))
        return PhotonBatch(pos, d / norm, energy, weight, view)


def _sample_index(key: PRNGKeyArray, weights: Float[Array, " k"], n: int) -> Int[Array, " n"]:
    """`n` indices drawn with probabilities proportional to `weights`, by inverse CDF (O(n log k))."""
    cdf = jnp.cumsum(weights)
    u = rng.uniform(key, (n,), dtype=cdf.dtype) * cdf[-1]
    return jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, weights.shape[0] - 1)


def _trailing(v: Array, like: Array) -> Array:
    """`v` (k,) reshaped to broadcast along the last axis of `like` (*b, k) without rank promotion."""
    return v.reshape((1,) * (like.ndim - 1) + v.shape)


def orthonormal_frame(direction: Float[ArrayLike, " 3"], w_hint: Float[ArrayLike, " 3"]) -> Float[Array, "3 3"]:
    """Rows (c, u, w): c along `direction`, w the part of `w_hint` perpendicular to c, u = w x c.

    Raises:
        ValueError: `direction` is zero or parallel to `w_hint` (checked when concrete).
    """
    c = jnp.asarray(direction, dtype=jnp.result_type(float))
    hint = jnp.asarray(w_hint, dtype=c.dtype)
    if is_concrete(c, hint):
        if not float(jnp.linalg.norm(c)) > 0:
            raise ValueError(f"direction must be non-zero, got {np.asarray(c)}")
        cn = np.asarray(c) / np.linalg.norm(np.asarray(c))
        if np.linalg.norm(np.cross(cn, np.asarray(hint))) < 1e-6:
            raise ValueError(f"direction {np.asarray(c)} must not be parallel to the slice axis {np.asarray(hint)}")
    c = c / jnp.linalg.norm(c)
    w = hint - (hint @ c) * c
    w = w / jnp.linalg.norm(w)
    u = jnp.cross(w, c)
    return jnp.stack([c, u, w])
