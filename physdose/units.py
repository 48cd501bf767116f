"""Canonical units of physdose and the few conversions between them.

Lengths are mm, photon energies keV, densities g/cm^3, mass coefficients cm^2/g (as
tabulated), doses Gy. Every conversion between those lives here.
"""

KEV_TO_J = 1.602176634e-16
"""Joules per keV."""

CM2_PER_G_TO_MM2_PER_KG = 1.0e5
"""(cm^2/g) -> (mm^2/kg)."""

MM2_PER_CM2 = 100.0
"""mm^2 per cm^2."""

REFERENCE_DISTANCE_MM = 1000.0
"""Distance at which tube output is quoted (1 m)."""


def linear_coefficient_per_mm(mu_cm2_g, density_g_cm3):
    """Linear attenuation coefficient in 1/mm from a mass coefficient (cm^2/g) and density (g/cm^3)."""
    return mu_cm2_g * density_g_cm3 * 0.1


def kerma_gy(fluence_per_mm2, energy_kev, mu_en_cm2_g):
    """Collision kerma (Gy) of photons of `energy_kev` with fluence `fluence_per_mm2` (1/mm^2).

    K = fluence * E * mu_en/rho; broadcasts elementwise.
    """
    return fluence_per_mm2 * energy_kev * KEV_TO_J * mu_en_cm2_g * CM2_PER_G_TO_MM2_PER_KG
