"""CT number (HU) -> (material, density) conversion in the style of Schneider et al. (2000)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._material import Material, get, mix
from ._table import MaterialTable

_MARROW_HU, _BONE_HU = 30.0, 1600.0


def _bone_mixture(hu: float) -> Material:
    """Red marrow / cortical bone mixture for CT number `hu` (Schneider et al. 2000, eq. 20)."""
    marrow, bone = get("red_marrow"), get("cortical_bone")
    r1, r2, h1, h2 = marrow.density_g_cm3, bone.density_g_cm3, _MARROW_HU, _BONE_HU
    w_marrow = r1 * (h2 - hu) / ((r1 * h2 - r2 * h1) + (r2 - r1) * hu)
    density = float(np.interp(hu, [h1, h2], [r1, r2]))
    return mix([marrow, bone], [w_marrow, 1.0 - w_marrow], name=f"bone_{int(hu)}hu", density_g_cm3=density)


class HUCalibration(eqx.Module):
    """Piecewise HU -> (material id, density) calibration.

    Material ``k`` covers ``thresholds_hu[k-1] <= HU < thresholds_hu[k]``; density follows
    the piecewise-linear curve through (`hu_points`, `density_points`), clamped at its ends.
    The scheme follows Schneider, Bortfeld & Schlegel (2000), Phys. Med. Biol. 45:459:
    tissue bins by HU, and in bone, mixtures of red marrow and cortical bone whose mass
    fractions follow from the CT number (their two-component formula).

    `default()` bins: air < -950 <= lung < -150 <= adipose < -20 <= soft tissue (ICRU-44)
    < 120 <= four marrow/bone mixtures (at 210, 400, 650, 1000 HU) < 1200 <= cortical bone.
    Default density curve: (-1000, 0.001205), (0, 1.0), (100, 1.07), (1600, 1.92),
    (3000, 2.71) g/cm^3, a generic bilinear scanner calibration: measure your scanner's
    curve (e.g. with a Gammex/CIRS phantom) and pass it here for clinical use.
    """

    materials: tuple[Material, ...] = eqx.field(static=True)
    thresholds_hu: tuple[float, ...] = eqx.field(static=True)
    hu_points: tuple[float, ...] = eqx.field(static=True)
    density_points: tuple[float, ...] = eqx.field(static=True)

    def __check_init__(self):
        if len(self.thresholds_hu) != len(self.materials) - 1:
            raise ValueError(
                f"thresholds_hu needs len(materials) - 1 = {len(self.materials) - 1} entries,"
                f" got {self.thresholds_hu!r}"
            )
        if any(b <= a for a, b in zip(self.thresholds_hu, self.thresholds_hu[1:])):
            raise ValueError(f"thresholds_hu must increase strictly, got {self.thresholds_hu!r}")
        if len(self.hu_points) != len(self.density_points) or len(self.hu_points) < 2:
            raise ValueError(
                f"hu_points and density_points must have equal length >= 2,"
                f" got {self.hu_points!r}, {self.density_points!r}"
            )
        if any(b <= a for a, b in zip(self.hu_points, self.hu_points[1:])):
            raise ValueError(f"hu_points must increase strictly, got {self.hu_points!r}")
        if any(not d > 0 for d in self.density_points):
            raise ValueError(f"density_points must be > 0, got {self.density_points!r}")

    @classmethod
    def default(cls) -> "HUCalibration":
        """The documented default calibration (see the class docstring)."""
        materials = (
            get("air"),
            get("lung"),
            get("adipose"),
            get("soft_tissue_icru44"),
            *(_bone_mixture(h) for h in (210.0, 400.0, 650.0, 1000.0)),
            get("cortical_bone"),
        )
        return cls(
            materials=materials,
            thresholds_hu=(-950.0, -150.0, -20.0, 120.0, 300.0, 500.0, 800.0, 1200.0),
            hu_points=(-1000.0, 0.0, 100.0, 1600.0, 3000.0),
            density_points=(0.001205, 1.0, 1.07, 1.92, 2.71),
        )

    def __call__(self, hu: Float[ArrayLike, "*s"]) -> tuple[Int[Array, "*s"], Float[Array, "*s"]]:
        """Material ids (int32) and densities (g/cm^3) for CT numbers `hu`."""
        hu = jnp.asarray(hu, dtype=jnp.result_type(float))
        ids = jnp.searchsorted(jnp.asarray(self.thresholds_hu, hu.dtype), hu, side="right").astype(jnp.int32)
        density = jnp.interp(hu, jnp.asarray(self.hu_points, hu.dtype), jnp.asarray(self.density_points, hu.dtype))
        return ids, density

    def material_table(self) -> MaterialTable:
        """Cross-section table whose ids match `__call__`."""
        return MaterialTable.from_materials(self.materials)
