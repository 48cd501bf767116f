"""Cross sections of a set of materials on one energy grid, interpolated in JAX."""

import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._material import Material, get
from ._xraylib import (
    ENERGY_MAX_KEV,
    ENERGY_MIN_KEV,
    ENERGY_NODES_KEV,
    ENERGY_STEP_KEV,
    MOMENTUM_TRANSFER_PER_ANGSTROM,
    atomic_weight,
    element_table,
)

_TINY = 1e-30


class MaterialTable(eqx.Module):
    """Photon cross sections of several materials, indexed by material id.

    The Monte Carlo engine and the analytic prior both read their physics data from here.
    Coefficients are tabulated at ENERGY_NODES_KEV (1-150 keV, 0.25 keV) from xraylib
    and interpolated log-log; energies outside 1-150 keV are clamped to the range.
    Mixtures follow the independent-atom (Bragg additivity) approximation.

    Attributes:
        materials: the materials, in id order.
        log_photoelectric, log_incoherent, log_coherent, log_mu_en: natural logs of the mass
            coefficients (cm^2/g), shape (n_e, m).
        log_edge_kev: per node interval (n_e - 1, m), the log of the energy (keV) of the
            absorption edge inside it (the largest photoelectric jump), or of the interval's
            upper node if it has none.
        log_photoelectric_edge, log_mu_en_edge: log coefficients just below ([0]) and just
            above ([1]) that edge, shape (2, n_e - 1, m). Interpolation never straddles an edge.
        log_total, log_total_edge: the same for the total photoelectric + incoherent +
            coherent coefficient, interpolated as one curve (`mu_cm2_g`): one interpolation
            where the three would cost three, within 1e-4 of their sum between nodes (tested)
            and equal to it at the nodes and beside the edges.

    The tables run energy first: every material's values at one node are one contiguous row,
    which the Monte Carlo reads for each photon at every step (`mu_every_cm2_g`).
        momentum_transfer_per_angstrom: x = sin(theta/2)/lambda nodes (1/Angstrom), shape (n_x,).
        incoherent_sf: sum_i w_i S_i(x) / A_i (mol/g), shape (m, n_x).
        coherent_ff2: sum_i w_i F_i(x)^2 / A_i (mol/g), shape (m, n_x).
        density_g_cm3: nominal densities, shape (m,).
    """

    materials: tuple[Material, ...] = eqx.field(static=True)
    log_photoelectric: Float[Array, "e m"]
    log_incoherent: Float[Array, "e m"]
    log_coherent: Float[Array, "e m"]
    log_mu_en: Float[Array, "e m"]
    log_edge_kev: Float[Array, "i m"]
    log_photoelectric_edge: Float[Array, "2 i m"]
    log_mu_en_edge: Float[Array, "2 i m"]
    log_total: Float[Array, "e m"]
    log_total_edge: Float[Array, "2 i m"]
    momentum_transfer_per_angstrom: Float[Array, " x"]
    incoherent_sf: Float[Array, "m x"]
    coherent_ff2: Float[Array, "m x"]
    density_g_cm3: Float[Array, " m"]

    @classmethod
    def from_materials(cls, materials: Sequence[Material | str]) -> "MaterialTable":
        """Build the table for `materials` (Materials or library names), in that order.

        Built once per set of materials and float dtype, then reused (tables are immutable;
        building one takes ~40 ms of Python for a patient's 13 materials)."""
        materials = tuple(get(m) for m in materials)
        if not materials:
            raise ValueError("materials must not be empty")
        names = [m.name for m in materials]
        if len(set(names)) != len(names):
            raise ValueError(f"materials must have distinct names, got {names}")
        return _built(cls, materials, jnp.dtype(jnp.result_type(float)).name)

    @classmethod
    def _build(cls, materials: tuple[Material, ...]) -> "MaterialTable":
        fields = {k: [] for k in ("photoelectric", "incoherent", "coherent", "mu_en", "sf", "ff2")}
        for m in materials:
            acc = {k: 0.0 for k in fields}
            for z, w in zip(m.elements, m.mass_fractions):
                t = element_table(z)
                for k in ("photoelectric", "incoherent", "coherent", "mu_en"):
                    acc[k] = acc[k] + w * t[k]
                acc["sf"] = acc["sf"] + w * t["incoherent_sf"] / atomic_weight(z)
                acc["ff2"] = acc["ff2"] + w * t["coherent_ff"] ** 2 / atomic_weight(z)
            for k in fields:
                fields[k].append(acc[k])

        def log(values):  # (m, ...) -> log, energy first
            return jnp.asarray(np.moveaxis(np.log(np.maximum(np.stack(values), _TINY)), 0, -1))

        edges = [_edge_intervals(m, fields["photoelectric"][i], fields["mu_en"][i]) for i, m in enumerate(materials)]
        scatter = [fields["incoherent"][i] + fields["coherent"][i] for i in range(len(materials))]
        total = [fields["photoelectric"][i] + scatter[i] for i in range(len(materials))]
        # beside each edge: the photoelectric values there plus the (smooth) scattering at the edge
        total_edge = [e[1].T + _loglog_intervals(scatter[i], e[0])[None] for i, e in enumerate(edges)]

        # concrete arrays even when first built inside a trace, so cached tables never leak tracers
        with jax.ensure_compile_time_eval():
            return cls(
                materials=materials,
                log_photoelectric=log(fields["photoelectric"]),
                log_incoherent=log(fields["incoherent"]),
                log_coherent=log(fields["coherent"]),
                log_mu_en=log(fields["mu_en"]),
                log_edge_kev=log([e[0] for e in edges]),
                log_photoelectric_edge=log([e[1].T for e in edges]),
                log_mu_en_edge=log([e[2].T for e in edges]),
                log_total=log(total),
                log_total_edge=log(total_edge),
                momentum_transfer_per_angstrom=jnp.asarray(MOMENTUM_TRANSFER_PER_ANGSTROM),
                incoherent_sf=jnp.asarray(np.stack(fields["sf"])),
                coherent_ff2=jnp.asarray(np.stack(fields["ff2"])),
                density_g_cm3=jnp.asarray([m.density_g_cm3 for m in materials]),
            )

    def __len__(self) -> int:
        return len(self.materials)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.materials)

    def index(self, name: str) -> int:
        """Material id of `name`; ValueError naming it if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"material {name!r} is not in this table {self.names}") from None

    def photoelectric_cm2_g(
        self, material_id: Int[ArrayLike, "*b"], e_kev: Float[ArrayLike, "*b"]
    ) -> Float[Array, "*b"]:
        """Photoelectric mass attenuation coefficient (cm^2/g); ids and energies broadcast."""
        edges = (self.log_edge_kev, self.log_photoelectric_edge)
        return _interp_loglog(self.log_photoelectric, material_id, e_kev, *edges)

    def incoherent_cm2_g(self, material_id: Int[ArrayLike, "*b"], e_kev: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """Incoherent (bound Compton) mass attenuation coefficient (cm^2/g)."""
        return _interp_loglog(self.log_incoherent, material_id, e_kev)

    def coherent_cm2_g(self, material_id: Int[ArrayLike, "*b"], e_kev: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """Coherent (Rayleigh) mass attenuation coefficient (cm^2/g)."""
        return _interp_loglog(self.log_coherent, material_id, e_kev)

    def mu_cm2_g(self, material_id: Int[ArrayLike, "*b"], e_kev: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """Total mass attenuation coefficient (cm^2/g): photoelectric + incoherent + coherent,
        tabulated as their sum and interpolated as one curve (see the class docstring)."""
        return _interp_loglog(self.log_total, material_id, e_kev, self.log_edge_kev, self.log_total_edge)

    def mu_every_cm2_g(self, e_kev: Float[ArrayLike, "*b"]) -> Float[Array, "*b m"]:
        """Total mass attenuation coefficient (cm^2/g) of every material at each energy, shape (*b, m):
        `mu_cm2_g(arange(m), e_kev[..., None])`, each energy's values read as one row of the table."""
        return _interp_loglog(self.log_total, None, e_kev, self.log_edge_kev, self.log_total_edge)

    def mu_en_cm2_g(self, material_id: Int[ArrayLike, "*b"], e_kev: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
        """Mass energy-absorption coefficient (cm^2/g)."""
        return _interp_loglog(self.log_mu_en, material_id, e_kev, self.log_edge_kev, self.log_mu_en_edge)


@functools.lru_cache(maxsize=64)
def _built(cls, materials: tuple[Material, ...], dtype_name: str) -> MaterialTable:
    """`cls._build(materials)`, cached per float dtype (float64 only while x64 is on)."""
    return cls._build(materials)


def _edge_intervals(material: Material, photo_nodes: np.ndarray, mu_en_nodes: np.ndarray):
    """Per node interval: edge energy and the mixture's coefficients just below/above it.

    Returns (edge_kev (i,), photoelectric (i, 2), mu_en (i, 2)); intervals without an edge
    get their upper node and its values, so interpolation there is the plain one.
    """
    nodes = ENERGY_NODES_KEV
    edge = nodes[1:].copy()
    photo = np.stack([photo_nodes[1:], photo_nodes[1:]], axis=-1)
    mu_en = np.stack([mu_en_nodes[1:], mu_en_nodes[1:]], axis=-1)
    jump = np.zeros(len(edge))
    tables = {z: element_table(z) for z in material.elements}
    for z, w in zip(material.elements, material.mass_fractions):
        t = tables[z]
        for k, e in enumerate(t["edge_kev"]):
            i = min(int((e - ENERGY_MIN_KEV) // ENERGY_STEP_KEV), len(edge) - 1)
            size = w * (t["photoelectric_above"][k] - t["photoelectric_below"][k])
            if size <= jump[i]:
                continue
            jump[i] = size
            edge[i] = e
            # the edge element exactly on each side; the others interpolated (smooth there)
            for side, suffix in ((0, "below"), (1, "above")):
                photo[i, side] = sum(
                    wb
                    * (
                        tables[zb][f"photoelectric_{suffix}"][k]
                        if zb == z
                        else _loglog_np(tables[zb]["photoelectric"], e)
                    )
                    for zb, wb in zip(material.elements, material.mass_fractions)
                )
                mu_en[i, side] = sum(
                    wb * (tables[zb][f"mu_en_{suffix}"][k] if zb == z else _loglog_np(tables[zb]["mu_en"], e))
                    for zb, wb in zip(material.elements, material.mass_fractions)
                )
    return edge, photo, mu_en


def _loglog_intervals(values: np.ndarray, e_kev: np.ndarray) -> np.ndarray:
    """`values` at nodes interpolated log-log at one energy per node interval, `e_kev` (i,)."""
    nodes = np.log(ENERGY_NODES_KEV)
    v = np.log(np.maximum(values, _TINY))
    t = (np.log(e_kev) - nodes[:-1]) / (nodes[1:] - nodes[:-1])
    return np.exp(v[:-1] + t * (v[1:] - v[:-1]))


def _loglog_np(values: np.ndarray, e: float) -> float:
    return float(np.exp(np.interp(np.log(e), np.log(ENERGY_NODES_KEV), np.log(np.maximum(values, _TINY)))))


@jax.jit
def _interp_loglog(log_values, material_id, e_kev, log_edge_kev=None, log_edge_values=None):
    """Log-log interpolation of `log_values[:, material_id]` (energy first) at `e_kev` on the uniform node grid.

    With `log_edge_kev` and `log_edge_values`, each node interval is split at its absorption
    edge: below it the curve runs from the lower node to the value just below the edge,
    above it from the value just above the edge to the upper node.

    `material_id` None: every material at each energy, shape (*e_kev.shape, m), each
    energy's values read as one row of each table.
    """
    every = material_id is None
    if every:
        e_kev = jnp.asarray(e_kev, dtype=log_values.dtype)[..., None]
    else:
        material_id, e_kev = jnp.broadcast_arrays(jnp.asarray(material_id), jnp.asarray(e_kev, log_values.dtype))
    e = jnp.clip(e_kev, ENERGY_MIN_KEV, ENERGY_MAX_KEV)
    n = len(ENERGY_NODES_KEV)
    i = jnp.clip(jnp.floor((e - ENERGY_MIN_KEV) / ENERGY_STEP_KEV), 0, n - 2).astype(jnp.int32)

    def at(table, node):  # table (nodes, m) at (node, material)
        return table[node[..., 0]] if every else table[node, material_id]

    log_e0 = jnp.log(ENERGY_MIN_KEV + ENERGY_STEP_KEV * i)
    log_e1 = jnp.log(ENERGY_MIN_KEV + ENERGY_STEP_KEV * (i + 1))
    v0 = at(log_values, i)
    v1 = at(log_values, i + 1)
    log_e = jnp.log(e)
    if log_edge_kev is None:
        return jnp.exp(v0 + (log_e - log_e0) / (log_e1 - log_e0) * (v1 - v0))
    log_edge = at(log_edge_kev, i)
    below, above = at(log_edge_values[0], i), at(log_edge_values[1], i)
    left = v0 + (log_e - log_e0) / (log_edge - log_e0) * (below - v0)
    span = log_e1 - log_edge
    safe_span = jnp.where(span > 0, span, 1.0)
    right = above + jnp.where(span > 0, (log_e - log_edge) / safe_span, 0.0) * (v1 - above)
    return jnp.exp(jnp.where(log_e <= log_edge, left, right))
