"""Photon interaction sampling: Klein-Nishina x S(x) and Thomson x F(x)^2, and direction rotation.

All functions work on a batch of photons (one per lane) and take explicit keys. Angular
sampling is a discrete Monte Carlo choice: no gradients flow through it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _random as rng
from .._checks import is_concrete
from .._fusion import apart
from .._vec3 import norm3
from ..materials._table import MaterialTable
from ..materials._xraylib import (
    ELECTRON_REST_ENERGY_KEV,
    ENERGY_MAX_KEV,
    ENERGY_MIN_KEV,
    MOMENTUM_TRANSFER_PER_ANGSTROM,
)

HC_KEV_ANGSTROM = 12.398419843320026
"""h c in keV Angstrom: x = sin(theta/2) / lambda = E / hc * sin(theta/2)."""

_MAX_TRIES = 64


class ScatterTables(eqx.Module):
    """Per-material tables for angular sampling, derived once from a MaterialTable.

    Attributes:
        x_nodes: momentum-transfer nodes x (1/Angstrom), shape (n_x,).
        sf_ratio: S(x) / S(infinity) per material, in [0, 1], shape (m, n_x).
        ff2_cdf: cumulative integral of F(x)^2 over q = x^2 (trapezoid), shape (m, n_x).
        log_x1, log_x_step: the nodes are 0 and then geometric, x_i = exp(log_x1 + (i - 1)
            log_x_step): a lane finds its interval by arithmetic (`x_interval`), not by a
            search, which on CPU is a loop of slow gathers.
    """

    x_nodes: Float[Array, " x"]
    sf_ratio: Float[Array, "m x"]
    ff2_cdf: Float[Array, "m x"]
    log_x1: float = eqx.field(static=True)
    log_x_step: float = eqx.field(static=True)

    @classmethod
    def from_table(cls, table: MaterialTable) -> "ScatterTables":
        x = table.momentum_transfer_per_angstrom
        sf = table.incoherent_sf
        ratio = sf / jnp.maximum(sf[:, -1:], 1e-30)
        q = x**2
        f2 = table.coherent_ff2
        steps = 0.5 * (f2[:, 1:] + f2[:, :-1]) * (q[1:] - q[:-1])[None, :]
        cdf = jnp.concatenate([jnp.zeros_like(f2[:, :1]), jnp.cumsum(steps, axis=1)], axis=1)
        # the grid's constants come from the package's node constant, so that the tables can
        # also be built inside jit (the prior does), where `x` is traced
        log_x = np.log(MOMENTUM_TRANSFER_PER_ANGSTROM[1:])
        if is_concrete(x) and not np.allclose(np.asarray(x), MOMENTUM_TRANSFER_PER_ANGSTROM, rtol=1e-6):
            raise ValueError("the table's momentum-transfer nodes are not MOMENTUM_TRANSFER_PER_ANGSTROM")
        return cls(x, jnp.clip(ratio, 0.0, 1.0), cdf, float(log_x[0]), float(np.diff(log_x).mean()))

    def x_interval(self, x: Float[Array, " n"]) -> Int[Array, " n"]:
        """Index i of the node interval [x_i, x_i+1) that holds x (clipped to the table).

        Near a node, rounding may give the neighbouring interval; interpolation clipped to
        it then returns the node's value, so the result is continuous either way."""
        safe = jnp.maximum(x, jnp.exp(jnp.asarray(self.log_x1, x.dtype)))
        i = jnp.floor((jnp.log(safe) - self.log_x1) / self.log_x_step).astype(jnp.int32) + 1
        i = jnp.where(x < self.x_nodes[1], 0, i)
        return jnp.clip(i, 0, self.x_nodes.shape[0] - 2)


class ScatterDensity(eqx.Module):
    """Normalised angular densities p(cos theta) of exactly what `incoherent_trial` and
    `coherent_trial` sample (repeated until accepted), for importance weights p / g when
    directions are drawn from another density g (angular biasing, `ScatterBias`).

    Attributes:
        tables: the sampling tables.
        log_energy_nodes: log of the (log-spaced) energies of the normalisation tables, shape (k,).
        log_incoherent_norm: log of the integral over cos theta of KN x S/S(inf) per material, shape (m, k).
        log_coherent_norm: log of the integral over q of (1 + cos^2)/2 x the sampled F^2 density, shape (m, k).
    """

    tables: ScatterTables
    log_energy_nodes: Float[Array, " k"]
    log_incoherent_norm: Float[Array, "m k"]
    log_coherent_norm: Float[Array, "m k"]

    @classmethod
    def from_tables(cls, tables: ScatterTables, *, n_energies: int = 600) -> "ScatterDensity":
        dtype = tables.x_nodes.dtype
        e = jnp.geomspace(ENERGY_MIN_KEV, ENERGY_MAX_KEV, n_energies, dtype=dtype)
        m = jnp.arange(tables.sf_ratio.shape[0])
        # incoherent: cos = 1 - 2 u^2 with u = sin(theta/2), d cos = 4 u du; Simpson on a fine u grid
        u = jnp.linspace(0.0, 1.0, 4097, dtype=dtype)
        simpson = jnp.ones_like(u).at[1:-1:2].set(4.0).at[2:-1:2].set(2.0) * (u[1] - u[0]) / 3
        cos = 1.0 - 2.0 * u**2

        def incoherent(e_kev):
            kn = _klein_nishina(cos, e_kev)
            s = _interp_rows(e_kev / HC_KEV_ANGSTROM * u[None], tables.x_nodes, tables.sf_ratio, m[:, None])
            return jnp.sum(s * (kn * 4.0 * u * simpson)[None], axis=-1)

        # coherent: q is drawn from the piecewise-constant density f_i = dcdf_i / dq_i, then
        # accepted with (1 + cos^2)/2; integrate that polynomial in q exactly over each interval
        q = tables.x_nodes**2
        f = jnp.diff(tables.ff2_cdf, axis=1) / jnp.diff(q)[None]

        def coherent(e_kev):
            q_max = (e_kev / HC_KEV_ANGSTROM) ** 2
            s = 1.0 - 2.0 * jnp.minimum(q, q_max) / q_max
            antiderivative = -(q_max / 4.0) * (s + s**3 / 3.0)
            return jnp.sum(f * jnp.diff(antiderivative)[None], axis=-1)

        norms = (jax.vmap(incoherent, out_axes=1)(e), jax.vmap(coherent, out_axes=1)(e))
        return cls(tables, jnp.log(e), *(jnp.log(jnp.maximum(n, 1e-30)) for n in norms))

    def _norm(self, log_rows, energy_kev, material):
        """Normalisation at `energy_kev`, log-log interpolated (both vary like powers of E)."""
        return jnp.exp(_interp_rows(jnp.log(energy_kev), self.log_energy_nodes, log_rows, material))

    def incoherent(self, cos_theta, energy_kev, material):
        """p(cos theta) of incoherent scattering (per unit cos theta) for photons of `energy_kev`."""
        x = energy_kev / HC_KEV_ANGSTROM * jnp.sqrt(jnp.clip(0.5 * (1.0 - cos_theta), 0.0, 1.0))
        s = _interp_rows(x, self.tables.x_nodes, self.tables.sf_ratio, material)
        return _klein_nishina(cos_theta, energy_kev) * s / self._norm(self.log_incoherent_norm, energy_kev, material)

    def coherent(self, cos_theta, energy_kev, material):
        """p(cos theta) of coherent scattering (per unit cos theta) for photons of `energy_kev`."""
        q_max = (energy_kev / HC_KEV_ANGSTROM) ** 2
        q_nodes = self.tables.x_nodes**2
        q = jnp.clip(0.5 * (1.0 - cos_theta), 0.0, 1.0) * q_max
        i = jnp.clip(jnp.searchsorted(q_nodes, q, side="right") - 1, 0, q_nodes.shape[0] - 2)
        cdf = self.tables.ff2_cdf
        f = (cdf[material, i + 1] - cdf[material, i]) / (q_nodes[i + 1] - q_nodes[i])
        norm = self._norm(self.log_coherent_norm, energy_kev, material)
        return 0.5 * (1.0 + cos_theta**2) * f * (0.5 * q_max) / norm


def _klein_nishina(cos_theta, energy_kev):
    """Klein-Nishina d sigma / d Omega up to a constant: eps^2 (eps + 1/eps - sin^2 theta)."""
    eps = 1.0 / (1.0 + energy_kev / ELECTRON_REST_ENERGY_KEV * (1.0 - cos_theta))
    return eps**2 * (eps + 1.0 / eps - (1.0 - cos_theta**2))


def _interp_rows(x: Float[Array, " n"], nodes: Float[Array, " k"], rows: Float[Array, "m k"], m: Int[Array, " n"]):
    """Linear interpolation of rows[m] (shared nodes) at x, per lane."""
    i = jnp.clip(jnp.searchsorted(nodes, x, side="right") - 1, 0, nodes.shape[0] - 2)
    return _interp_rows_in(i, x, nodes, rows, m)


def _interp_rows_in(i, x, nodes, rows, m):
    """Linear interpolation of rows[m] at x within the node interval i (clipped to it)."""
    x0, x1 = nodes[i], nodes[i + 1]
    t = jnp.clip((x - x0) / (x1 - x0), 0.0, 1.0)
    return rows[m, i] * (1 - t) + rows[m, i + 1] * t


def incoherent_trial(key, energy_kev, material, tables: ScatterTables):
    """One rejection trial of incoherent scattering per lane: (cos theta, E'/E, accepted).

    Klein-Nishina by the Butcher & Messel (1960) / EGS4 decomposition, accepted with
    g(eps) S(x)/Z: the incoherent scattering function in the independent-atom
    approximation, no Doppler broadening. Repeating rejected lanes samples KN x S exactly
    (up to the tabulation of S).
    """
    k = energy_kev / ELECTRON_REST_ENERGY_KEV
    eps0 = 1.0 / (1.0 + 2.0 * k)
    a1 = -jnp.log(eps0)
    a2 = 0.5 * (1.0 - eps0**2)
    r1, r2, r3 = rng.uniform(key, (3,) + energy_kev.shape, dtype=energy_kev.dtype)
    eps = jnp.where(r1 * (a1 + a2) < a1, jnp.exp(-a1 * r2), jnp.sqrt(eps0**2 + (1.0 - eps0**2) * r2))
    one_minus_cos = (1.0 - eps) / (k * eps)
    sin2 = jnp.clip(one_minus_cos * (2.0 - one_minus_cos), 0.0, 1.0)
    g = 1.0 - eps * sin2 / (1.0 + eps**2)
    x = energy_kev / HC_KEV_ANGSTROM * jnp.sqrt(jnp.clip(0.5 * one_minus_cos, 0.0, 1.0))
    s = _interp_rows_in(tables.x_interval(x), x, tables.x_nodes, tables.sf_ratio, material)
    return 1.0 - one_minus_cos, eps, r3 < g * s


def coherent_trial(key, energy_kev, material, tables: ScatterTables):
    """One rejection trial of coherent scattering per lane: (cos theta, accepted).

    PENELOPE's method: q = x^2 drawn from F^2 by inverting its cumulative integral
    (piecewise-linear in q between nodes), accepted with probability (1 + cos^2 theta)/2.
    """
    x_max = energy_kev / HC_KEV_ANGSTROM
    q_max = x_max**2
    q_nodes = tables.x_nodes**2
    cdf_max = _interp_rows_in(tables.x_interval(x_max), q_max, q_nodes, tables.ff2_cdf, material)
    r1, r2 = rng.uniform(key, (2,) + energy_kev.shape, dtype=energy_kev.dtype)
    target = r1 * cdf_max
    i = _search_rows(tables.ff2_cdf, material, target)
    c0, c1 = tables.ff2_cdf[material, i], tables.ff2_cdf[material, i + 1]
    t = jnp.clip((target - c0) / jnp.maximum(c1 - c0, 1e-30), 0.0, 1.0)
    q = q_nodes[i] + t * (q_nodes[i + 1] - q_nodes[i])
    cos = jnp.clip(1.0 - 2.0 * q / q_max, -1.0, 1.0)
    return cos, r2 * 2.0 < 1.0 + cos**2


def sample_incoherent(
    key: PRNGKeyArray, energy_kev: Float[Array, " n"], material: Int[Array, " n"], tables: ScatterTables
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Sample incoherent scattering (Klein-Nishina x S(x)): returns (cos theta, E' in keV)."""

    def trial(key):
        cos, eps, ok = incoherent_trial(key, energy_kev, material, tables)
        return cos, eps, ok

    cos, eps = _rejection_loop(key, trial, energy_kev)
    return cos, eps * energy_kev


def sample_coherent(
    key: PRNGKeyArray, energy_kev: Float[Array, " n"], material: Int[Array, " n"], tables: ScatterTables
) -> Float[Array, " n"]:
    """Sample coherent scattering cos theta from Thomson x F(x)^2."""

    def trial(key):
        cos, ok = coherent_trial(key, energy_kev, material, tables)
        return cos, cos, ok

    cos, _ = _rejection_loop(key, trial, energy_kev)
    return cos


def _search_rows(rows: Float[Array, "m k"], m: Int[Array, " n"], target: Float[Array, " n"]) -> Int[Array, " n"]:
    """Index i with rows[m, i] <= target < rows[m, i + 1], by bisection over the shared columns."""
    k = rows.shape[1]
    lo = jnp.zeros(target.shape, jnp.int32)
    hi = jnp.full(target.shape, k - 1, jnp.int32)
    for _ in range(max(1, (k - 1).bit_length())):
        mid = (lo + hi) // 2
        go_right = rows[m, mid] <= target
        lo = jnp.where(go_right, mid, lo)
        hi = jnp.where(go_right, hi, mid)
    return jnp.clip(lo, 0, k - 2)


def _rejection_loop(key, trial, like):
    """Repeat `trial(key) -> (value, aux, accepted)` per lane until every lane accepted."""
    value0 = jnp.zeros_like(like)

    def cond(carry):
        _, _, _, done, i = carry
        return (~jnp.all(done)) & (i < _MAX_TRIES)

    def body(carry):
        key, value, aux, done, i = carry
        key, sub = rng.split(key)
        v, a, ok = trial(sub)
        take = ok & ~done
        return key, jnp.where(take, v, value), jnp.where(take, a, aux), done | ok, i + 1

    _, value, aux, _, _ = jax.lax.while_loop(cond, body, (key, value0, value0, jnp.zeros(like.shape, bool), 0))
    return value, aux


def rotate(
    direction: Float[Array, "n 3"], cos_theta: Float[Array, " n"], phi: Float[Array, " n"]
) -> Float[Array, "n 3"]:
    """Turn unit vectors `direction` by polar angle theta and azimuth phi about themselves."""
    a, b, c = direction[:, 0], direction[:, 1], direction[:, 2]

    def trig(cos_theta, phi):  # computed once (XLA would compute it again in each component's fusion)
        return jnp.sqrt(jnp.clip(1.0 - cos_theta**2, 0.0, 1.0)), jnp.cos(phi), jnp.sin(phi)

    sin_theta, cphi, sphi = apart(trig, cos_theta, phi)
    rho2 = 1.0 - c**2
    ok = rho2 > 1e-10
    rho = jnp.sqrt(jnp.where(ok, rho2, 1.0))
    a_new = jnp.where(ok, sin_theta * (a * c * cphi - b * sphi) / rho + a * cos_theta, sin_theta * cphi)
    b_new = jnp.where(ok, sin_theta * (b * c * cphi + a * sphi) / rho + b * cos_theta, sin_theta * sphi)
    c_new = jnp.where(ok, -sin_theta * cphi * rho + c * cos_theta, jnp.sign(c) * cos_theta)
    out = jnp.stack([a_new, b_new, c_new], axis=-1)
    return out / norm3(out)[:, None]
