"""X-ray spectra: relative photon fluence per energy bin, with HVL, kerma and filtration."""

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_nonnegative, check_positive, is_concrete
from ..materials._material import Material, get
from ..materials._xraylib import ENERGY_MAX_KEV, ENERGY_MIN_KEV
from ..units import MM2_PER_CM2, kerma_gy

BIN_WIDTH_KEV = 0.5
BIN_CENTERS_KEV = np.arange(ENERGY_MIN_KEV + BIN_WIDTH_KEV / 2, ENERGY_MAX_KEV, BIN_WIDTH_KEV)
"""Centres (keV) of the library's spectrum bins: 0.5 keV bins from 1 to 150 keV."""

KVP_RANGE = (20.0, 150.0)


def _material(name: str | Material, arg: str) -> Material:
    try:
        return get(name)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{arg}: {err}") from None


class Spectrum(eqx.Module):
    """A photon spectrum: energies (keV) and relative fluence per energy (sums to 1).

    Tube spectra live on the library's 0.5 keV bins (`BIN_CENTERS_KEV`); tables and
    monoenergetic beams keep their own energies. `fluence` is an array leaf, so doses are
    differentiable with respect to spectrum weights.

    Attributes:
        energy_kev: photon energies (keV), shape (n,), within 1-150 keV.
        fluence: relative photon fluence of each energy, shape (n,), sums to 1.
        output_photons_per_mas_mm2: photons per mAs per mm^2 at 1 m from the focal spot
            (SpekPy tube output, after filtration), or None when unknown.
    """

    energy_kev: Float[Array, " n"]
    fluence: Float[Array, " n"]
    output_photons_per_mas_mm2: Float[Array, ""] | None = None

    def __check_init__(self):
        if self.energy_kev.ndim != 1 or self.energy_kev.shape != self.fluence.shape:
            raise ValueError(
                f"energy_kev and fluence must be 1-D of equal length,"
                f" got shapes {self.energy_kev.shape} and {self.fluence.shape}"
            )
        if is_concrete(self.energy_kev):
            e = np.asarray(self.energy_kev)
            if np.any(e < ENERGY_MIN_KEV) or np.any(e > ENERGY_MAX_KEV):
                raise ValueError(
                    f"energy_kev must lie in {ENERGY_MIN_KEV}-{ENERGY_MAX_KEV} keV, got {e.min()}-{e.max()}"
                )
        check_nonnegative("fluence", self.fluence)

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def monoenergetic(cls, e_kev: float) -> "Spectrum":
        """A single energy `e_kev` (keV)."""
        check_positive("e_kev", e_kev)
        return cls(jnp.asarray([float(e_kev)]), jnp.ones(1))

    @classmethod
    def from_table(cls, e_kev: Float[ArrayLike, " n"], fluence: Float[ArrayLike, " n"]) -> "Spectrum":
        """A tabulated spectrum; `fluence` (any positive scale) is normalised to sum 1."""
        e = jnp.asarray(e_kev, dtype=jnp.result_type(float))
        f = jnp.asarray(fluence, dtype=e.dtype)
        if e.shape != f.shape or e.ndim != 1:
            raise ValueError(f"e_kev and fluence must be 1-D of equal length, got {e.shape} and {f.shape}")
        check_nonnegative("fluence", f)
        if is_concrete(f) and not float(jnp.sum(f)) > 0:
            raise ValueError("fluence must not be all zero")
        return cls(e, f / jnp.sum(f))

    @classmethod
    def from_tube(
        cls,
        kvp: float,
        filtration_mm: Mapping[str, float] | None = None,
        anode_angle_deg: float = 12.0,
        *,
        target: str = "W",
        hvl_mm_al: float | None = None,
    ) -> "Spectrum":
        """Tube spectrum from SpekPy (Poludniowski et al. 2021, Med. Phys. 48:3630).

        SpekPy gives the unfiltered spectrum and tube output at 1 m; filtration is applied
        with physdose's own cross sections so that HVLs agree with the transport physics.

        Args:
            kvp: tube voltage (kV), 20-150.
            filtration_mm: filter material (element symbol or library name) -> thickness (mm).
            anode_angle_deg: anode angle (degrees).
            target: anode material, "W", "Mo" or "Rh".
            hvl_mm_al: if given, add the aluminium that makes the first HVL equal this (mm Al).

        Raises:
            ValueError: kVp out of range, unknown filter material, negative thickness,
                unknown target, or an unreachable `hvl_mm_al`.
        """
        import spekpy

        if not KVP_RANGE[0] <= float(kvp) <= KVP_RANGE[1]:
            raise ValueError(f"kvp must lie in {KVP_RANGE[0]:g}-{KVP_RANGE[1]:g} kV, got {kvp!r}")
        if target not in ("W", "Mo", "Rh"):
            raise ValueError(f"target must be 'W', 'Mo' or 'Rh', got {target!r}")
        if not 0 < float(anode_angle_deg) < 90:
            raise ValueError(f"anode_angle_deg must lie in (0, 90), got {anode_angle_deg!r}")
        spek = spekpy.Spek(kvp=float(kvp), th=float(anode_angle_deg), dk=BIN_WIDTH_KEV, targ=target)
        k, per_kev = spek.get_spectrum()  # photons / keV / cm^2 / mAs at 1 m
        per_bin = np.zeros_like(BIN_CENTERS_KEV)
        idx = np.round((np.asarray(k) - BIN_CENTERS_KEV[0]) / BIN_WIDTH_KEV).astype(int)
        ok = (idx >= 0) & (idx < len(per_bin))
        per_bin[idx[ok]] = np.asarray(per_kev)[ok] * BIN_WIDTH_KEV
        total = per_bin.sum()
        unfiltered = cls(jnp.asarray(BIN_CENTERS_KEV), jnp.asarray(per_bin / total), jnp.asarray(total / MM2_PER_CM2))
        spectrum = unfiltered.filtered(filtration_mm or {})
        if hvl_mm_al is not None:
            spectrum = spectrum.filtered({"Al": _added_al_for_hvl(spectrum, float(hvl_mm_al))})
        return spectrum

    # -- filtration and transmission -------------------------------------------------------
    def transmission(self, material: str | Material, thickness_mm) -> Float[Array, " n"]:
        """Narrow-beam transmission exp(-mu t) of each energy through `thickness_mm` of `material`."""
        m = _material(material, "material")
        return jnp.exp(-m.mu_per_mm(self.energy_kev) * thickness_mm)

    def filtered(self, filtration_mm: Mapping[str, float]) -> "Spectrum":
        """The spectrum behind the filters `filtration_mm` (material -> mm); tube output scales too."""
        if not isinstance(filtration_mm, Mapping):
            raise TypeError(f"filtration_mm must be a mapping material -> mm, got {filtration_mm!r}")
        t = jnp.ones_like(self.fluence)
        for name, thickness in filtration_mm.items():
            m = _material(name, "filtration_mm")
            check_nonnegative(f"filtration_mm[{name!r}]", thickness)
            t = t * jnp.exp(-m.mu_per_mm(self.energy_kev) * thickness)
        passed = self.fluence * t
        kept = jnp.sum(passed)
        output = None if self.output_photons_per_mas_mm2 is None else self.output_photons_per_mas_mm2 * kept
        return Spectrum(self.energy_kev, passed / kept, output)

    # -- derived quantities -----------------------------------------------------------------
    @property
    def mean_energy_kev(self) -> Float[Array, ""]:
        """Fluence-weighted mean energy (keV)."""
        return jnp.sum(self.fluence * self.energy_kev) / jnp.sum(self.fluence)

    @property
    def air_kerma_per_fluence_gy_mm2(self) -> Float[Array, ""]:
        """Air kerma per unit photon fluence (Gy mm^2), K/Phi = sum p_i E_i (mu_en/rho)_air,i."""
        mu_en = get("air").mu_en_cm2_g(self.energy_kev)
        return jnp.sum(kerma_gy(self.fluence, self.energy_kev, mu_en))

    def attenuation_thickness_mm(self, material: str | Material = "Al", fraction=0.5) -> Float[Array, ""]:
        """Thickness (mm) of `material` that reduces the narrow-beam air kerma to `fraction`.

        Solved by Newton's method on log K(t), which is convex and decreasing, so the
        iteration from t = 0 rises monotonically to the root; differentiable.
        """
        m = _material(material, "material")
        if is_concrete(fraction) and not 0 < float(fraction) < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
        mu = m.mu_per_mm(self.energy_kev)
        weights = self.fluence * self.energy_kev * get("air").mu_en_cm2_g(self.energy_kev)
        return _attenuation_thickness(mu, weights, jnp.asarray(fraction, weights.dtype))

    def hvl_mm(self, material: str | Material = "Al", *, order: int = 1) -> Float[Array, ""]:
        """First (`order=1`) or second (`order=2`) half-value layer (mm) in `material`."""
        if order == 1:
            return self.attenuation_thickness_mm(material, 0.5)
        if order == 2:
            return self.attenuation_thickness_mm(material, 0.25) - self.attenuation_thickness_mm(material, 0.5)
        raise ValueError(f"order must be 1 or 2, got {order!r}")


@jax.jit
def _attenuation_thickness(mu_per_mm, kerma_weights, fraction):
    """Root t of log sum(w exp(-mu t)) = log(fraction sum(w)) by 60 Newton steps from t = 0."""
    target = jnp.log(fraction) + jnp.log(jnp.sum(kerma_weights))

    def newton(_, t):
        k = kerma_weights * jnp.exp(-mu_per_mm * t)
        f = jnp.log(jnp.sum(k)) - target
        df = -jnp.sum(mu_per_mm * k) / jnp.sum(k)
        return t - f / df

    return jax.lax.fori_loop(0, 60, newton, jnp.zeros_like(target))


def _added_al_for_hvl(spectrum: Spectrum, hvl_mm_al: float) -> float:
    """Aluminium (mm) to add to `spectrum` so its first HVL is `hvl_mm_al` (bisection)."""
    check_positive("hvl_mm_al", hvl_mm_al)

    @jax.jit
    def hvl_after(t):
        return spectrum.filtered({"Al": t}).hvl_mm("Al")

    lo, hi = 0.0, 40.0
    if not float(hvl_after(lo)) <= hvl_mm_al <= float(hvl_after(hi)):
        raise ValueError(
            f"hvl_mm_al={hvl_mm_al} is not reachable by adding 0-{hi:g} mm Al to this tube "
            f"(HVL range {float(hvl_after(lo)):.3f}-{float(hvl_after(hi)):.3f} mm Al)"
        )
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(hvl_after(mid)) < hvl_mm_al else (lo, mid)
    return 0.5 * (lo + hi)
