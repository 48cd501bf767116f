"""Voxel phantoms: materials, densities, organ labels and named points on a grid."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import is_concrete
from .._frozen import FrozenDict
from ..geometry._grid import Grid, resample
from ..materials._table import MaterialTable
from ..units import linear_coefficient_per_mm


def _frozen(value) -> FrozenDict:
    return value if isinstance(value, FrozenDict) else FrozenDict(value or {})


def _points(value) -> FrozenDict:
    """name -> (position_mm (z, y, x), outward unit normal (z, y, x)), as float tuples."""
    out = {}
    for name, (pos, normal) in dict(value or {}).items():
        n = np.asarray(normal, dtype=float)
        if n.shape != (3,) or not np.linalg.norm(n) > 0:
            raise ValueError(f"points[{name!r}] needs a non-zero (z, y, x) normal, got {normal!r}")
        p = np.asarray(pos, dtype=float)
        if p.shape != (3,):
            raise ValueError(f"points[{name!r}] needs a (z, y, x) position, got {pos!r}")
        out[name] = (tuple(p.tolist()), tuple((n / np.linalg.norm(n)).tolist()))
    return FrozenDict(out)


class Phantom(eqx.Module):
    """A voxel phantom.

    Attributes:
        grid: the voxel grid.
        material_ids: index into `materials` per voxel, int32, shape grid.shape.
        density_g_cm3: mass density per voxel (g/cm^3), shape grid.shape.
        materials: cross-section table of the materials the ids refer to.
        organ_labels: organ label per voxel, int32, 0 where no organ, shape grid.shape.
        organs: organ name -> label value (static).
        points: named points, name -> (position_mm, outward unit normal), e.g. dosimeter
            sites (static).
        info: parameters the phantom was built from (static).
    """

    grid: Grid
    material_ids: Int[Array, "z y x"] = eqx.field(converter=lambda a: jnp.asarray(a, dtype=jnp.int32))
    density_g_cm3: Float[Array, "z y x"] = eqx.field(converter=lambda a: jnp.asarray(a, dtype=jnp.result_type(float)))
    materials: MaterialTable
    organ_labels: Int[Array, "z y x"] = eqx.field(converter=lambda a: jnp.asarray(a, dtype=jnp.int32))
    organs: FrozenDict = eqx.field(static=True, converter=_frozen)
    points: FrozenDict = eqx.field(static=True, default=FrozenDict(), converter=_points)
    info: FrozenDict = eqx.field(static=True, default=FrozenDict(), converter=_frozen)

    def __check_init__(self):
        if not isinstance(self.grid, Grid):
            raise TypeError(f"grid must be a physdose.Grid, got {type(self.grid).__name__}")
        if not isinstance(self.materials, MaterialTable):
            raise TypeError(f"materials must be a MaterialTable, got {type(self.materials).__name__}")
        for name in ("material_ids", "density_g_cm3", "organ_labels"):
            shape = tuple(getattr(self, name).shape)
            if shape != self.grid.shape:
                raise ValueError(f"{name} has shape {shape} but grid.shape is {self.grid.shape}")
        if any(not isinstance(v, int | np.integer) or v <= 0 for v in self.organs.values()):
            raise ValueError(f"organs must map names to positive int labels, got {dict(self.organs)}")
        if len(set(self.organs.values())) != len(self.organs):
            raise ValueError(f"organs must have distinct labels, got {dict(self.organs)}")
        if is_concrete(self.material_ids, self.density_g_cm3, self.organ_labels):
            ids = np.asarray(self.material_ids)
            if ids.min() < 0 or ids.max() >= len(self.materials):
                raise ValueError(
                    f"material_ids must lie in 0..{len(self.materials) - 1} (the materials table), "
                    f"got {ids.min()}..{ids.max()}"
                )
            rho = np.asarray(self.density_g_cm3)
            if not np.all(np.isfinite(rho)) or rho.min() < 0:
                raise ValueError(
                    f"density_g_cm3 must be finite and >= 0, got min {np.nanmin(rho)}, NaN {np.isnan(rho).any()}"
                )
            unknown = set(np.unique(np.asarray(self.organ_labels)).tolist()) - set(self.organs.values()) - {0}
            if unknown:
                raise ValueError(f"organ_labels holds labels {sorted(unknown)} that organs does not name")

    @property
    def organ_names(self) -> tuple[str, ...]:
        return tuple(self.organs)

    def mask(self, organ: str) -> Bool[Array, "z y x"]:
        """Voxels of `organ`."""
        if organ not in self.organs:
            raise ValueError(f"unknown organ {organ!r}; this phantom has {list(self.organs)}")
        return self.organ_labels == self.organs[organ]

    def voxel_mass_g(self) -> Float[Array, "z y x"]:
        """Mass of each voxel (g)."""
        return self.density_g_cm3 * (self.grid.voxel_volume_mm3 * 1e-3)

    def organ_masses_g(self) -> dict[str, float]:
        """Mass (g) of every organ."""
        m = np.asarray(self.voxel_mass_g())
        labels = np.asarray(self.organ_labels)
        return {name: float(m[labels == label].sum()) for name, label in self.organs.items()}

    def organ_volumes_ml(self) -> dict[str, float]:
        """Volume (ml = cm^3) of every organ."""
        labels = np.asarray(self.organ_labels)
        v = self.grid.voxel_volume_mm3 * 1e-3
        return {name: float((labels == label).sum() * v) for name, label in self.organs.items()}

    def mu_per_mm(self, e_kev: Float[ArrayLike, ""]) -> Float[Array, "z y x"]:
        """Linear attenuation coefficient (1/mm) of every voxel at one energy."""
        return linear_coefficient_per_mm(self.materials.mu_cm2_g(self.material_ids, e_kev), self.density_g_cm3)

    def resample(self, spacing_mm=None, *, grid: Grid | None = None) -> "Phantom":
        """This phantom on a grid of another spacing (same centre) or on `grid`.

        Material ids and organ labels are resampled by nearest neighbour; densities are
        then rescaled region by region (each organ, and each material outside organs) so
        every region keeps its mass. Named points are kept.
        """
        if (spacing_mm is None) == (grid is None):
            raise ValueError("give exactly one of spacing_mm and grid")
        new = grid if grid is not None else self.grid.with_spacing(spacing_mm)
        ids = resample(self.material_ids, self.grid, new, nearest=True, fill_value=0)
        labels = resample(self.organ_labels, self.grid, new, nearest=True, fill_value=0)
        rho = np.asarray(resample(self.density_g_cm3, self.grid, new, nearest=True, fill_value=0.0), dtype=np.float64)
        offset = max(self.organs.values(), default=0) + 1
        old_region = _regions(np.asarray(self.organ_labels), np.asarray(self.material_ids), offset)
        new_region = _regions(np.asarray(labels), np.asarray(ids), offset)
        old_mass = np.bincount(old_region.ravel(), np.asarray(self.voxel_mass_g(), np.float64).ravel())
        v = new.voxel_volume_mm3 * 1e-3
        new_mass = np.bincount(new_region.ravel(), (rho * v).ravel(), minlength=len(old_mass))
        old_mass = np.pad(old_mass, (0, max(0, len(new_mass) - len(old_mass))))
        ok = new_mass > 0
        scale = np.where(ok, old_mass[: len(new_mass)] / np.where(ok, new_mass, 1.0), 1.0)
        rho = rho * scale[new_region]
        return Phantom(
            new,
            ids,
            jnp.asarray(rho, self.density_g_cm3.dtype),
            self.materials,
            labels,
            self.organs,
            self.points,
            self.info,
        )


def _regions(labels: np.ndarray, ids: np.ndarray, offset: int) -> np.ndarray:
    """Region index: organ label for organ voxels, else offset + material id."""
    return np.where(labels > 0, labels, offset + ids).astype(np.int64)
