"""What the prior needs from a phantom: composition, a low-rank attenuation basis, scattering data.

Attenuation along a ray is sum_m (integral of rho_m ds) mu_m(E): one line integral per
material. Tissue-like materials share a few spectral shapes (photoelectric, Compton, and
the K edges of heavy elements), so the (materials x energies) matrix of mass attenuation
coefficients has low numerical rank. `AttenuationBasis` keeps its leading singular
vectors: a handful of "basis densities" are ray-traced instead of one per material, and
mu(E) is rebuilt exactly up to a stated tolerance (Alvarez & Macovski 1976 use the same
idea with two physical basis functions).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import is_concrete
from ..materials._table import MaterialTable
from ..materials._xraylib import ELECTRON_REST_ENERGY_KEV, ENERGY_NODES_KEV
from ..mc._interactions import ScatterDensity, ScatterTables
from ..phantoms._phantom import Phantom

BASIS_MIN_KEV = 5.0
"""Lowest energy the attenuation basis represents (keV); tube spectra start above it."""


class AttenuationBasis(eqx.Module):
    """mu_m(E) ~= sum_k weight[m, k] basis_k(E) on the library's energy nodes (cm^2/g).

    Attributes:
        weight: per material and basis function, shape (m, k).
        log_energy_nodes: log of the node energies (keV), shape (n,).
        nodes: basis functions at the nodes, shape (k, n).
        max_rel_error: largest relative error of the rebuilt coefficients at the nodes (static).
    """

    weight: Float[Array, "m k"]
    log_energy_nodes: Float[Array, " n"]
    nodes: Float[Array, "k n"]
    max_rel_error: float = eqx.field(static=True)

    @classmethod
    def from_table(cls, table: MaterialTable, *, rtol: float = 3e-3, scattering: bool = False) -> "AttenuationBasis":
        """Smallest rank whose rebuilt coefficients are within `rtol` of every tabulated value (5-150 keV).

        The coefficients are the total mass attenuation coefficients, or with `scattering`
        the scattering ones (incoherent + coherent). The SVD runs on rows scaled to unit
        norm, so light and heavy materials are rebuilt to the same relative accuracy. A
        traced table (e.g. under vmap) keeps one basis function per material, which is exact.
        """
        e = ENERGY_NODES_KEV[ENERGY_NODES_KEV >= BASIS_MIN_KEV]
        m = jnp.arange(len(table))[:, None]
        e_j = jnp.asarray(e, table.log_incoherent.dtype)[None]
        if scattering:
            mu = table.incoherent_cm2_g(m, e_j) + table.coherent_cm2_g(m, e_j)
        else:
            mu = table.mu_cm2_g(m, e_j)
        log_e = jnp.log(jnp.asarray(e, mu.dtype))
        if not is_concrete(mu):
            return cls(jnp.eye(len(table), dtype=mu.dtype), log_e, mu, 0.0)
        a = np.asarray(mu, np.float64)
        scale = np.linalg.norm(a, axis=1, keepdims=True)
        u, s, vt = np.linalg.svd(a / scale, full_matrices=False)
        for k in range(1, len(s) + 1):
            rebuilt = (u[:, :k] * s[:k]) @ vt[:k] * scale
            err = float(np.max(np.abs(rebuilt - a) / a))
            if err <= rtol:
                break
        weight = u[:, :k] * s[:k] * scale
        return cls(jnp.asarray(weight, mu.dtype), log_e, jnp.asarray(vt[:k], mu.dtype), err)

    @property
    def rank(self) -> int:
        return self.nodes.shape[0]

    def at(self, e_kev: Float[Array, "*b"]) -> Float[Array, "*b k"]:
        """Basis functions at `e_kev`, linear in log E between nodes, shape (*b, k)."""
        x = jnp.log(jnp.clip(e_kev, jnp.exp(self.log_energy_nodes[0]), jnp.exp(self.log_energy_nodes[-1])))
        return jax.vmap(lambda row: jnp.interp(x, self.log_energy_nodes, row), out_axes=-1)(self.nodes)


class Composition(eqx.Module):
    """Per-voxel matter: density and either one material id or material mass fractions.

    Attributes:
        density_g_cm3: shape (*v,), usually (z, y, x).
        material_ids: shape (*v,), or None when `fractions` is given.
        fractions: mass fraction of each table material, shape (*v, m), or None.
    """

    density_g_cm3: Float[Array, "*v"]
    material_ids: Int[Array, "*v"] | None
    fractions: Float[Array, "*v m"] | None

    @classmethod
    def of(cls, phantom: Phantom, material_fractions=None) -> "Composition":
        if material_fractions is None:
            return cls(phantom.density_g_cm3, phantom.material_ids, None)
        f = jnp.asarray(material_fractions, phantom.density_g_cm3.dtype)
        expected = phantom.grid.shape + (len(phantom.materials),)
        if f.shape != expected:
            raise ValueError(f"material_fractions must have shape {expected} (grid, materials), got {f.shape}")
        if is_concrete(f) and (not np.all(np.isfinite(np.asarray(f))) or float(jnp.min(f)) < 0):
            raise ValueError("material_fractions must be finite and >= 0")
        return cls(phantom.density_g_cm3, None, f)

    def mix(self, per_material: Array) -> Array:
        """Mass-fraction-weighted value of a per-material quantity (m, ...) in every voxel: (*v, ...).

        `per_material` is computed once, not per voxel: XLA on CPU fuses the table lookups
        that produce it into the gather and repeats them in every voxel (0.3 s of a 4 mm chest
        CT); `optimization_barrier` does not stop that there, a product with the identity does.
        """
        if self.fractions is None:
            flat = per_material.reshape(per_material.shape[0], -1)
            once = jnp.eye(flat.shape[0], dtype=flat.dtype) @ flat
            return once.reshape(per_material.shape)[self.material_ids]
        return jnp.tensordot(self.fractions, per_material, axes=1)

    def select(self, values: Float[Array, "*v m"]) -> Float[Array, "*v"]:
        """Mass-fraction-weighted value of per-voxel, per-material `values` (each voxel's own material)."""
        if self.fractions is None:
            return jnp.take_along_axis(values, self.material_ids[..., None], axis=-1)[..., 0]
        return jnp.sum(self.fractions * values, axis=-1)

    def at(self, index: Int[Array, "n 3"]) -> "Composition":
        """The composition of the voxels at integer `index` (z, y, x), shape (n,)."""
        z, y, x = index[:, 0], index[:, 1], index[:, 2]
        return Composition(
            self.density_g_cm3[z, y, x],
            None if self.material_ids is None else self.material_ids[z, y, x],
            None if self.fractions is None else self.fractions[z, y, x],
        )


def basis_density(composition: Composition, basis: AttenuationBasis) -> Float[Array, "z y x k"]:
    """rho(x) sum_m f_m weight[m, k]: mu(x, E) = sum_k this x basis_k(E) (1/cm)."""
    return composition.density_g_cm3[..., None] * composition.mix(basis.weight)


class ScatterData(eqx.Module):
    """First-scatter data per material, tabulated on log-spaced energies, for the scatter model.

    For each material m and primary energy E: sigma_s = incoherent + coherent mass
    coefficient (cm^2/g); the Legendre moments c_l = integral of p(cos) P_l(cos) d cos
    (l = 1, 2) of the normalised angular density p of one scattering (either kind, weighted
    by its cross section; the densities are exactly those the Monte Carlo samples); and
    the mean photon energy after scattering (keV; Compton kinematics for incoherent,
    unchanged for coherent).

    Attributes:
        log_energy_nodes: log of the tabulation energies (keV), shape (n,).
        log_sigma_s, c1, c2, mean_energy_ratio: shape (m, n); the last is E'/E.
    """

    log_energy_nodes: Float[Array, " n"]
    log_sigma_s: Float[Array, "m n"]
    c1: Float[Array, "m n"]
    c2: Float[Array, "m n"]
    mean_energy_ratio: Float[Array, "m n"]

    @classmethod
    def from_table(cls, table: MaterialTable, *, n_energies: int = 64, n_angles: int = 96) -> "ScatterData":
        dtype = table.log_incoherent.dtype
        e = jnp.geomspace(BASIS_MIN_KEV, float(ENERGY_NODES_KEV[-1]), n_energies, dtype=dtype)
        density = ScatterDensity.from_tables(ScatterTables.from_table(table), n_energies=200)
        x, w = np.polynomial.legendre.leggauss(n_angles)
        cos, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)[None, None]
        m = jnp.arange(len(table))
        mm, ee, cc = m[:, None, None], e[None, :, None], cos[None, None, :]
        p_inc = density.incoherent(cc, ee, mm)
        p_coh = density.coherent(cc, ee, mm)
        inc = table.incoherent_cm2_g(m[:, None], e[None])
        coh = table.coherent_cm2_g(m[:, None], e[None])
        p = (inc[..., None] * p_inc + coh[..., None] * p_coh) / (inc + coh)[..., None]
        p = p / jnp.sum(p * w, axis=-1, keepdims=True)  # exact normalisation on the quadrature
        ratio_inc = 1.0 / (1.0 + ee / ELECTRON_REST_ENERGY_KEV * (1.0 - cc))
        mean_inc = jnp.sum(p_inc * ratio_inc * w, axis=-1) / jnp.sum(p_inc * w, axis=-1)
        return cls(
            jnp.log(e),
            jnp.log(inc + coh),
            jnp.sum(p * cc * w, axis=-1),
            jnp.sum(p * 0.5 * (3 * cc**2 - 1) * w, axis=-1),
            (inc * mean_inc + coh) / (inc + coh),
        )

    def at(self, e_kev: Float[Array, " g"]) -> tuple[Array, Array, Array, Array]:
        """(sigma_s cm^2/g, c1, c2, E'/E) of every material at energies `e_kev`, each shape (m, g)."""
        x = jnp.log(jnp.clip(e_kev, jnp.exp(self.log_energy_nodes[0]), jnp.exp(self.log_energy_nodes[-1])))

        def interp(rows):
            return jax.vmap(lambda row: jnp.interp(x, self.log_energy_nodes, row))(rows)

        return jnp.exp(interp(self.log_sigma_s)), interp(self.c1), interp(self.c2), interp(self.mean_energy_ratio)


SHIELD_MU_CM2_G = 1.0
"""Mass attenuation coefficient at 60 keV (cm^2/g) above which a material counts as shielding:
lead 5.0, tungsten 3.7, iodine 6.6; cortical bone 0.3, soft tissue 0.2."""


class MediumData(eqx.Module):
    """Everything the prior derives from a material table (see `medium_data`).

    Attributes:
        basis: the attenuation basis (total mass attenuation coefficients).
        scattering_basis: the same for the scattering coefficients (incoherent + coherent).
        scatter: the first-scatter data.
        shielding: whether some material attenuates like a shield (`SHIELD_MU_CM2_G`).
    """

    basis: AttenuationBasis
    scattering_basis: AttenuationBasis
    scatter: ScatterData
    shielding: bool = eqx.field(static=True)


@functools.lru_cache(maxsize=32)
def medium_data(materials: tuple, dtype_name: str) -> MediumData:
    """Attenuation basis and scatter data of `materials`, built once, concrete even inside a trace.

    Keyed by the (static) materials of a MaterialTable, so jit, vmap and grad over phantoms
    reuse it; the prior does not differentiate with respect to cross sections.
    """
    with jax.ensure_compile_time_eval():
        table = MaterialTable.from_materials(materials)
        table = jax.tree.map(lambda a: a.astype(dtype_name) if jnp.issubdtype(a.dtype, jnp.floating) else a, table)
        bases = AttenuationBasis.from_table(table), AttenuationBasis.from_table(table, scattering=True)
        shielding = bool(np.any(shields(table)))
    # compiled as one program and run on the concrete table, even inside a trace (evaluated at
    # compile time instead, its few hundred operations would each be compiled: 4-5 s)
    scatter = jax.jit(ScatterData.from_table).lower(table).compile()(table)
    return MediumData(*bases, scatter, shielding)


def shields(table: MaterialTable) -> np.ndarray:
    """Which of the table's materials attenuate like a shield (`SHIELD_MU_CM2_G`), shape (m,) bool."""
    with jax.ensure_compile_time_eval():
        mu_60 = table.mu_cm2_g(jnp.arange(len(table)), jnp.full(len(table), 60.0))
    return np.asarray(mu_60) > SHIELD_MU_CM2_G
