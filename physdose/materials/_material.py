"""Materials: an elemental composition plus a nominal density, and the shipped library."""

import csv
import difflib
import functools
from importlib import resources

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..units import linear_coefficient_per_mm
from ._xraylib import _xraylib


class Material(eqx.Module):
    """A material: elements with mass fractions, and a nominal density.

    All fields are static, so a Material is hashable and free to close over in `jit`.

    Attributes:
        name: library name, e.g. ``"water"``.
        elements: atomic numbers Z.
        mass_fractions: mass fraction of each element (sums to 1).
        density_g_cm3: nominal density (g/cm^3); voxel densities may differ.
    """

    name: str = eqx.field(static=True)
    elements: tuple[int, ...] = eqx.field(static=True)
    mass_fractions: tuple[float, ...] = eqx.field(static=True)
    density_g_cm3: float = eqx.field(static=True)

    def __check_init__(self):
        if len(self.elements) == 0 or len(self.elements) != len(self.mass_fractions):
            raise ValueError(
                f"elements and mass_fractions of material {self.name!r} must be non-empty and of equal "
                f"length, got {self.elements!r} and {self.mass_fractions!r}"
            )
        if any(not 1 <= int(z) <= 98 for z in self.elements):
            raise ValueError(f"elements of material {self.name!r} must be atomic numbers 1-98, got {self.elements!r}")
        if any(w < 0 for w in self.mass_fractions) or abs(sum(self.mass_fractions) - 1.0) > 1e-3:
            raise ValueError(
                f"mass_fractions of material {self.name!r} must be >= 0 and sum to 1, got {self.mass_fractions!r}"
            )
        if not self.density_g_cm3 > 0:
            raise ValueError(f"density_g_cm3 of material {self.name!r} must be > 0, got {self.density_g_cm3!r}")

    @property
    def composition(self) -> dict[str, float]:
        """Element symbol -> mass fraction."""
        xl = _xraylib()
        return {xl.AtomicNumberToSymbol(int(z)): w for z, w in zip(self.elements, self.mass_fractions)}

    def mu_cm2_g(self, e_kev: Float[ArrayLike, "*e"]) -> Float[Array, "*e"]:
        """Total mass attenuation coefficient mu/rho (cm^2/g, coherent included) at `e_kev`."""
        return _single_table(self, jnp.dtype(jnp.result_type(float)).name).mu_cm2_g(0, e_kev)

    def mu_en_cm2_g(self, e_kev: Float[ArrayLike, "*e"]) -> Float[Array, "*e"]:
        """Mass energy-absorption coefficient mu_en/rho (cm^2/g) at `e_kev`."""
        return _single_table(self, jnp.dtype(jnp.result_type(float)).name).mu_en_cm2_g(0, e_kev)

    def mu_per_mm(self, e_kev: Float[ArrayLike, "*e"]) -> Float[Array, "*e"]:
        """Linear attenuation coefficient (1/mm) at the nominal density."""
        return linear_coefficient_per_mm(self.mu_cm2_g(e_kev), self.density_g_cm3)


@functools.lru_cache(maxsize=256)
def _single_table(material: Material, dtype_name: str):
    """The one-material table, cached per float dtype (float64 only while x64 is on)."""
    from ._table import MaterialTable

    return MaterialTable.from_materials([material])


def _normalised(name, density, composition) -> Material:
    xl = _xraylib()
    total = sum(composition.values())
    zs = tuple(xl.SymbolToAtomicNumber(s) for s in composition)
    return Material(name, zs, tuple(w / total for w in composition.values()), float(density))


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("physdose.materials").joinpath("data", filename).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@functools.lru_cache(maxsize=1)
def _library() -> dict[str, Material]:
    groups: dict[str, tuple[float, dict[str, float]]] = {}

    def add(name, density, z_or_symbol, fraction):
        xl = _xraylib()
        symbol = z_or_symbol if not z_or_symbol.isdigit() else xl.AtomicNumberToSymbol(int(z_or_symbol))
        groups.setdefault(name, (float(density), {}))[1][symbol] = float(fraction)

    for row in _read_csv("materials.csv"):
        add(row["name"], row["density_g_cm3"], row["element"], row["mass_fraction"])
    for row in _read_csv("tg195_materials.csv"):
        prefix = "tg195_case5_" if row["case_set"] == "case5" else "tg195_"
        add(prefix + row["material"].lower(), row["density_g_cm3"], row["Z"], row["weight_percent"])
    return {name: _normalised(name, d, comp) for name, (d, comp) in groups.items()}


def names() -> list[str]:
    """Names of the shipped materials (element symbols such as "Al" are also accepted by `get`)."""
    return sorted(_library())


def get(name: "str | Material") -> Material:
    """The shipped material `name` (case-insensitive), or a pure element by symbol ("Al", "Cu").

    Sources of each composition are listed in ``physdose/materials/data/*.csv``.

    Raises:
        ValueError: `name` is neither a library material nor an element symbol.
    """
    if isinstance(name, Material):
        return name
    if not isinstance(name, str):
        raise TypeError(f"material name must be a str, got {name!r}")
    library = _library()
    if name.lower() in library:
        return library[name.lower()]
    xl = _xraylib()
    try:
        z = xl.SymbolToAtomicNumber(name)
    except ValueError:
        z = 0
    if 1 <= z <= 98:
        return Material(name, (z,), (1.0,), float(xl.ElementDensity(z)))
    hint = difflib.get_close_matches(name.lower(), library, n=3)
    raise ValueError(
        f"unknown material {name!r}" + (f"; did you mean {hint}?" if hint else "; see physdose.materials.names()")
    )


def mix(materials, mass_fractions, *, name: str, density_g_cm3: float) -> Material:
    """A mixture of `materials` (names or Materials) with the given mass fractions.

    Raises:
        ValueError: lengths differ, or fractions are negative or do not sum to 1.
    """
    materials = [get(m) for m in materials]
    if len(materials) != len(mass_fractions) or not materials:
        raise ValueError(f"mass_fractions must have one entry per material, got {mass_fractions!r}")
    if any(w < 0 for w in mass_fractions) or abs(sum(mass_fractions) - 1.0) > 1e-6:
        raise ValueError(f"mass_fractions must be >= 0 and sum to 1, got {mass_fractions!r}")
    comp: dict[int, float] = {}
    for m, w in zip(materials, mass_fractions):
        for z, f in zip(m.elements, m.mass_fractions):
            comp[z] = comp.get(z, 0.0) + w * f
    total = sum(comp.values())
    return Material(name, tuple(comp), tuple(f / total for f in comp.values()), float(density_g_cm3))
