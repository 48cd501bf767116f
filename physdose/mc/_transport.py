"""Woodcock (delta) tracking of photon lanes through a voxel phantom, one chunk of photons per call.

The world is the phantom's grid; outside it is vacuum. Photons fly straight to the grid,
are tracked inside it with a majorant attenuation coefficient (Woodcock, Murphy, Hemmings
& Longworthy 1965), and leave when they step out of it. Each lane holds one photon; a lane
whose photon died takes the next source photon until the chunk's budget is spent, so the
lanes stay busy. Energy is deposited where the photon interacts (kerma approximation):
all of it in photoelectric absorption, E - E' in incoherent scattering, and what is left
when the photon falls below the energy cut-off.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..geometry._grid import Grid
from ..materials._table import MaterialTable
from ..materials._xraylib import ENERGY_MIN_KEV, ENERGY_NODES_KEV, ENERGY_STEP_KEV
from ..sources._beam import Beam
from ._interactions import ScatterTables, coherent_trial, incoherent_trial, rotate
from ._scorers import Disks

_NUDGE_MM = 1e-3


class PhotonState(eqx.Module):
    """One photon per lane: position (mm), unit direction, energy (keV), weight, alive flag,
    number of scatterings, and a pending scattering (0 none, 1 incoherent, 2 coherent) whose
    angle is still being drawn by rejection: such a lane stays put and retries next step,
    so no lane waits for the slowest rejection loop."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    energy_kev: Float[Array, " n"]
    weight: Float[Array, " n"]
    alive: Bool[Array, " n"]
    interactions: Int[Array, " n"]
    pending: Int[Array, " n"]


class World(eqx.Module):
    """What transport needs of a phantom: flat materials and densities, tables and the majorant."""

    grid: Grid
    material_ids: Int[Array, " v"]
    density_g_cm3: Float[Array, " v"]
    table: MaterialTable
    scatter: ScatterTables
    majorant_per_mm: Float[Array, " i"]  # per energy interval of the cross-section nodes

    @classmethod
    def from_phantom(cls, phantom) -> "World":
        ids = jnp.ravel(phantom.material_ids)
        rho = jnp.ravel(phantom.density_g_cm3)
        table = phantom.materials
        rho_max = np.zeros(len(table))
        np.maximum.at(rho_max, np.asarray(ids), np.asarray(rho, dtype=np.float64))
        return cls(phantom.grid, ids, rho, table, ScatterTables.from_table(table), _majorant(table, rho_max))


def _majorant(table: MaterialTable, rho_max: np.ndarray) -> Float[Array, " i"]:
    """max over materials and over each node interval (edges included) of mu(E) rho_max, in 1/mm."""
    m = jnp.arange(len(table))[:, None]
    nodes = jnp.asarray(ENERGY_NODES_KEV, dtype=table.log_photoelectric.dtype)[None, :]
    at_nodes = table.mu_cm2_g(m, nodes)
    above_edge = table.mu_cm2_g(m, table.edge_kev * (1 + 1e-6))
    per_interval = jnp.maximum(jnp.maximum(at_nodes[:, :-1], at_nodes[:, 1:]), above_edge)
    mu = per_interval * jnp.asarray(rho_max, per_interval.dtype)[:, None] * 0.1
    return jnp.max(mu, axis=0) * 1.0001


def energy_interval(e_kev: Float[Array, " n"]) -> Int[Array, " n"]:
    i = jnp.floor((e_kev - ENERGY_MIN_KEV) / ENERGY_STEP_KEV).astype(jnp.int32)
    return jnp.clip(i, 0, len(ENERGY_NODES_KEV) - 2)


def _box(grid: Grid, dtype):
    lo, hi = grid.bounds_mm
    return jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)


def enter_grid(grid: Grid, pos: Float[Array, "n 3"], direction: Float[Array, "n 3"]):
    """Move photons straight to where they enter the grid (slab method); returns (pos, hits)."""
    lo, hi = _box(grid, pos.dtype)
    safe = jnp.where(jnp.abs(direction) > 1e-12, direction, 1e-12)
    t1 = (lo[None] - pos) / safe
    t2 = (hi[None] - pos) / safe
    t_near = jnp.max(jnp.minimum(t1, t2), axis=-1)
    t_far = jnp.min(jnp.maximum(t1, t2), axis=-1)
    t_in = jnp.maximum(t_near, 0.0)
    hits = t_far > t_in + _NUDGE_MM
    return pos + (t_in + _NUDGE_MM)[:, None] * direction, hits


def voxel_index(grid: Grid, pos: Float[Array, "n 3"]):
    """(flat voxel index, inside) of points; flat index is clipped into range when outside."""
    lo, _ = _box(grid, pos.dtype)
    spacing = jnp.asarray(grid.spacing_mm, pos.dtype)
    ijk = jnp.floor((pos - lo[None]) / spacing[None]).astype(jnp.int32)
    shape = jnp.asarray(grid.shape, jnp.int32)
    inside = jnp.all((ijk >= 0) & (ijk < shape[None]), axis=-1)
    ijk = jnp.clip(ijk, 0, shape[None] - 1)
    flat = (ijk[:, 0] * grid.shape[1] + ijk[:, 1]) * grid.shape[2] + ijk[:, 2]
    return flat, inside


class ChunkTally(eqx.Module):
    """What one chunk of source photons leaves behind (sums over its photons)."""

    energy_kev: Float[Array, " v"]  # energy imparted per voxel
    escaped_kev: Float[Array, ""]
    incident_kev: Float[Array, ""]
    started: Int[Array, ""]
    steps: Int[Array, ""]
    interactions: Int[Array, ""]
    plane: Float[Array, "p 4"]  # per disk: fluence, primary fluence, air kerma, primary air kerma


class Escape(eqx.Module):
    """Escaping photons that scorers see: position, direction, energy, weight, primary flag, mask."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    energy_kev: Float[Array, " n"]
    weight: Float[Array, " n"]
    primary: Bool[Array, " n"]
    mask: Bool[Array, " n"]


def run_chunk(
    world: World,
    beam: Beam,
    budget: Int[Array, ""],
    key: PRNGKeyArray,
    *,
    lanes: int,
    cutoff_kev: float,
    max_steps: int,
    disks: Disks | None,
) -> ChunkTally:
    """Transport `budget` source photons from `beam` through `world` with `lanes` lanes."""
    dtype = world.density_g_cm3.dtype
    state = PhotonState(
        jnp.zeros((lanes, 3), dtype),
        jnp.zeros((lanes, 3), dtype).at[:, 0].set(1.0),
        jnp.ones(lanes, dtype),
        jnp.zeros(lanes, dtype),
        jnp.zeros(lanes, bool),
        jnp.zeros(lanes, jnp.int32),
        jnp.zeros(lanes, jnp.int32),
    )
    n_planes = 0 if disks is None else len(disks)
    tally = ChunkTally(
        jnp.zeros(world.material_ids.shape, dtype),
        jnp.zeros((), dtype),
        jnp.zeros((), dtype),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((n_planes, 4), dtype),
    )

    def escape_score(esc: Escape, tally: ChunkTally) -> ChunkTally:
        escaped = jnp.sum(jnp.where(esc.mask, esc.energy_kev * esc.weight, 0.0))
        tally = eqx.tree_at(lambda t: t.escaped_kev, tally, tally.escaped_kev + escaped)
        if disks is not None:
            tally = eqx.tree_at(lambda t: t.plane, tally, tally.plane + disks.score(esc))
        return tally

    def cond(carry):
        state, tally, remaining, step = carry
        return ((remaining > 0) | jnp.any(state.alive)) & (step < max_steps)

    def body(carry):
        state, tally, remaining, step = carry
        k_src, k_step = jr.split(jr.fold_in(key, step))
        state, tally, remaining = _refill(world, beam, state, tally, remaining, k_src, escape_score)
        state, tally = _step(world, state, tally, k_step, cutoff_kev, escape_score)
        tally = eqx.tree_at(lambda t: t.steps, tally, tally.steps + 1)
        return state, tally, remaining, step + 1

    _, tally, _, _ = jax.lax.while_loop(
        cond, body, (state, tally, jnp.asarray(budget, jnp.int32), jnp.zeros((), jnp.int32))
    )
    return tally


def _refill(world, beam, state, tally, remaining, key, escape_score):
    lanes = state.energy_kev.shape[0]
    dead = ~state.alive
    rank = jnp.cumsum(dead.astype(jnp.int32))
    start = dead & (rank <= remaining)
    n_start = jnp.sum(start.astype(jnp.int32))
    fresh = beam.sample(lanes, key=key)
    pos, hits = enter_grid(world.grid, fresh.pos_mm, fresh.direction)
    incident = jnp.sum(jnp.where(start, fresh.energy_kev * fresh.weight, 0.0))
    missed = start & ~hits
    tally = escape_score(
        Escape(fresh.pos_mm, fresh.direction, fresh.energy_kev, fresh.weight, jnp.ones(lanes, bool), missed), tally
    )
    take = start & hits

    def pick(new, old):
        mask = take.reshape(take.shape + (1,) * (new.ndim - 1))
        return jnp.where(mask, new, old)

    state = PhotonState(
        pick(pos, state.pos_mm),
        pick(fresh.direction, state.direction),
        pick(fresh.energy_kev, state.energy_kev),
        pick(fresh.weight, state.weight),
        state.alive | take,
        jnp.where(take, 0, state.interactions),
        jnp.where(take, 0, state.pending),
    )
    tally = eqx.tree_at(
        lambda t: (t.incident_kev, t.started), tally, (tally.incident_kev + incident, tally.started + n_start)
    )
    return state, tally, remaining - n_start


def _step(world: World, state: PhotonState, tally: ChunkTally, key, cutoff_kev, escape_score):
    k_free, k_real, k_kind, k_inc, k_coh, k_phi = jr.split(key, 6)
    e = state.energy_kev
    n = e.shape[0]
    mu_maj = world.majorant_per_mm[energy_interval(e)]
    moving = state.alive & (state.pending == 0)
    u = jr.uniform(k_free, (n,), dtype=e.dtype, minval=1e-12, maxval=1.0)
    far = 2.0 * sum(world.grid.size_mm)  # beyond the grid: an empty (vacuum) world
    free_path = jnp.where(mu_maj > 0, -jnp.log(u) / jnp.where(mu_maj > 0, mu_maj, 1.0), far)
    pos = jnp.where(
        moving[:, None], state.pos_mm + jnp.minimum(free_path, far)[:, None] * state.direction, state.pos_mm
    )
    flat, inside = voxel_index(world.grid, pos)
    escaped = moving & ~inside
    # escaping photons are scored from their last position inside the grid (straight flight after it)
    tally = escape_score(
        Escape(state.pos_mm, state.direction, e, state.weight, state.interactions == 0, escaped), tally
    )
    alive = state.alive & ~escaped
    m = world.material_ids[flat]
    rho = world.density_g_cm3[flat] * 0.1  # (g/cm^3) * (cm^2/g) -> 1/cm; x 0.1 -> 1/mm
    mu_pe = world.table.photoelectric_cm2_g(m, e) * rho
    mu_inc = world.table.incoherent_cm2_g(m, e) * rho
    mu_coh = world.table.coherent_cm2_g(m, e) * rho
    mu_tot = mu_pe + mu_inc + mu_coh
    real = moving & inside & (jr.uniform(k_real, (n,), dtype=e.dtype) * mu_maj < mu_tot)
    r = jr.uniform(k_kind, (n,), dtype=e.dtype) * mu_tot
    photo = real & (r < mu_pe)
    want_inc = (real & ~photo & (r < mu_pe + mu_inc)) | (alive & (state.pending == 1))
    want_coh = (real & ~photo & (r >= mu_pe + mu_inc)) | (alive & (state.pending == 2))
    cos_inc, eps, ok_inc = incoherent_trial(k_inc, e, m, world.scatter)
    cos_coh, ok_coh = coherent_trial(k_coh, e, m, world.scatter)
    do_inc = want_inc & ok_inc
    do_coh = want_coh & ok_coh
    pending = jnp.where(want_inc & ~ok_inc, 1, jnp.where(want_coh & ~ok_coh, 2, 0))
    e_new = jnp.where(do_inc, eps * e, e)
    below = do_inc & (e_new < cutoff_kev)
    absorbed = photo | below
    deposit = jnp.where(absorbed, e, jnp.where(do_inc, e - e_new, 0.0)) * state.weight
    energy = tally.energy_kev.at[flat].add(jnp.where(photo | do_inc, deposit, 0.0))
    scatter = (do_inc | do_coh) & ~below
    phi = jr.uniform(k_phi, (n,), dtype=e.dtype, maxval=2 * jnp.pi)
    turned = rotate(state.direction, jnp.where(do_inc, cos_inc, cos_coh), phi)
    state = PhotonState(
        pos,
        jnp.where(scatter[:, None], turned, state.direction),
        e_new,
        state.weight,
        alive & ~absorbed,
        state.interactions + scatter.astype(jnp.int32),
        pending,
    )
    tally = eqx.tree_at(
        lambda t: (t.energy_kev, t.interactions), tally, (energy, tally.interactions + jnp.sum(real.astype(jnp.int32)))
    )
    return state, tally
