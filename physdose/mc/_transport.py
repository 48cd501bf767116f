"""Woodcock (delta) tracking of photon lanes through a voxel phantom, one chunk of photons per call.

The world is the phantom's grid; outside it is vacuum. Photons fly straight to the grid,
are tracked inside it with a majorant attenuation coefficient (Woodcock, Murphy, Hemmings
& Longworthy 1965), and leave when they step out of it. Each lane holds one photon; a lane
whose photon died takes the next source photon until the chunk's budget is spent, so the
lanes stay busy. Energy is deposited where the photon interacts (kerma approximation):
all of it in photoelectric absorption, E - E' in incoherent scattering, and what is left
when the photon falls below the energy cut-off.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..geometry._grid import Grid
from ..materials._material import get
from ..materials._table import MaterialTable
from ..materials._xraylib import ENERGY_MIN_KEV, ENERGY_NODES_KEV, ENERGY_STEP_KEV
from ..sources._beam import Beam
from ._interactions import ScatterTables, coherent_trial, incoherent_trial, rotate
from ._scorers import Disks

_NUDGE_MM = 1e-3


class PhotonState(eqx.Module):
    """One photon per lane: position (mm), unit direction, energy (keV), weight, alive flag,
    number of scatterings, a pending scattering (0 none, 1 incoherent, 2 coherent) whose
    angle is still being drawn by rejection (such a lane stays put and retries next step,
    so no lane waits for the slowest rejection loop), and whether it is in the grid (kept
    as state, not recomputed from the position, so grazing photons cannot stall on a face)."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    energy_kev: Float[Array, " n"]
    weight: Float[Array, " n"]
    alive: Bool[Array, " n"]
    interactions: Int[Array, " n"]
    pending: Int[Array, " n"]
    in_grid: Bool[Array, " n"]


class World(eqx.Module):
    """What transport needs: the voxel grid and its flat materials and densities, the
    surrounding box of air (or vacuum) that holds the source and scorers, cross-section
    tables and the grid's majorant."""

    grid: Grid
    material_ids: Int[Array, " v"]
    density_g_cm3: Float[Array, " v"]
    table: MaterialTable  # the phantom's materials, then the world medium (last)
    scatter: ScatterTables
    majorant_per_mm: Float[Array, " i"]  # in the grid, per energy interval of the cross-section nodes
    box_lo_mm: Float[Array, " 3"]
    box_hi_mm: Float[Array, " 3"]
    medium_density_g_cm3: float = eqx.field(static=True)

    @classmethod
    def build(cls, phantom, points_mm: np.ndarray, medium: str | None) -> "World":
        """World around `phantom` that contains `points_mm` (sources, scorers), filled with `medium`."""
        ids = jnp.ravel(phantom.material_ids)
        rho = jnp.ravel(phantom.density_g_cm3)
        materials = phantom.materials.materials
        names = [m.name for m in materials]
        air = get(medium) if medium is not None else get("air")
        table = MaterialTable.from_materials(
            materials + (air,) if air.name not in names else materials + (_renamed(air),)
        )
        rho_max = np.zeros(len(table))
        np.maximum.at(rho_max, np.asarray(ids), np.asarray(rho, dtype=np.float64))
        lo, hi = (np.asarray(b) for b in phantom.grid.bounds_mm)
        pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        lo = np.minimum(lo, pts.min(axis=0)) - 10.0
        hi = np.maximum(hi, pts.max(axis=0)) + 10.0
        dtype = rho.dtype
        return cls(
            phantom.grid,
            ids,
            rho,
            table,
            ScatterTables.from_table(table),
            _majorant(table, rho_max),
            jnp.asarray(lo, dtype),
            jnp.asarray(hi, dtype),
            0.0 if medium is None else air.density_g_cm3,
        )

    @property
    def medium_id(self) -> int:
        return len(self.table) - 1


def _renamed(material):
    return dataclasses.replace(material, name=material.name + "_world")


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


def ray_box(lo, hi, pos: Float[Array, "n 3"], direction: Float[Array, "n 3"]):
    """Distances (t_near, t_far) along rays to the box faces (slab method; t_far < t_near: miss)."""
    safe = jnp.where(jnp.abs(direction) > 1e-12, direction, 1e-12)
    t1 = (lo[None] - pos) / safe
    t2 = (hi[None] - pos) / safe
    return jnp.max(jnp.minimum(t1, t2), axis=-1), jnp.min(jnp.maximum(t1, t2), axis=-1)


def enter_grid(grid: Grid, pos: Float[Array, "n 3"], direction: Float[Array, "n 3"]):
    """Move photons straight to where they enter the grid; returns (pos, hits)."""
    lo, hi = _box(grid, pos.dtype)
    t_near, t_far = ray_box(lo, hi, pos, direction)
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
    medium_kev: Float[Array, ""]  # energy imparted in the world medium outside the grid
    escaped_kev: Float[Array, ""]
    incident_kev: Float[Array, ""]
    started: Int[Array, ""]
    steps: Int[Array, ""]
    interactions: Int[Array, ""]
    plane: Float[Array, "p 4"]  # per disk: fluence, primary fluence, air kerma, primary air kerma


class Segment(eqx.Module):
    """Straight flights that scorers see: start, direction, length (inf: leaves the world), energy, weight."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    length_mm: Float[Array, " n"]
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
    zeros = jnp.zeros(lanes, dtype)
    state = PhotonState(
        jnp.zeros((lanes, 3), dtype),
        jnp.zeros((lanes, 3), dtype).at[:, 0].set(1.0),
        jnp.ones(lanes, dtype),
        zeros,
        jnp.zeros(lanes, bool),
        jnp.zeros(lanes, jnp.int32),
        jnp.zeros(lanes, jnp.int32),
        jnp.zeros(lanes, bool),
    )
    scalar = jnp.zeros((), dtype)
    count = jnp.zeros((), jnp.int32)
    n_planes = 0 if disks is None else len(disks)
    tally = ChunkTally(
        jnp.zeros(world.material_ids.shape, dtype),
        scalar,
        scalar,
        scalar,
        count,
        count,
        count,
        jnp.zeros((n_planes, 4), dtype),
    )

    def cond(carry):
        state, tally, remaining, step = carry
        return ((remaining > 0) | jnp.any(state.alive)) & (step < max_steps)

    def body(carry):
        state, tally, remaining, step = carry
        k_src, k_step = jr.split(jr.fold_in(key, step))
        # refill only once enough lanes are free (or the last photons are waiting): drawing
        # source photons costs as much as a flight step, so not every step pays for it
        n_dead = jnp.sum((~state.alive).astype(jnp.int32))
        due = (remaining > 0) & (n_dead >= jnp.minimum(remaining, max(1, lanes // 8)))
        state, tally, remaining = jax.lax.cond(
            due,
            lambda args: _refill(world, beam, *args, k_src),
            lambda args: args,
            (state, tally, remaining),
        )
        state, tally = _step(world, state, tally, k_step, cutoff_kev, disks)
        tally = eqx.tree_at(lambda t: t.steps, tally, tally.steps + 1)
        return state, tally, remaining, step + 1

    init = (state, tally, jnp.asarray(budget, jnp.int32), jnp.zeros((), jnp.int32))
    _, tally, _, _ = jax.lax.while_loop(cond, body, init)
    return tally


def _refill(world, beam, state, tally, remaining, key):
    lanes = state.energy_kev.shape[0]
    dead = ~state.alive
    rank = jnp.cumsum(dead.astype(jnp.int32))
    start = dead & (rank <= remaining)
    n_start = jnp.sum(start.astype(jnp.int32))
    fresh = beam.sample(lanes, key=key)
    _, fresh_in_grid = voxel_index(world.grid, fresh.pos_mm)

    def pick(new, old):
        mask = start.reshape(start.shape + (1,) * (new.ndim - 1))
        return jnp.where(mask, new, old)

    state = PhotonState(
        pick(fresh.pos_mm, state.pos_mm),
        pick(fresh.direction, state.direction),
        pick(fresh.energy_kev, state.energy_kev),
        pick(fresh.weight, state.weight),
        state.alive | start,
        jnp.where(start, 0, state.interactions),
        jnp.where(start, 0, state.pending),
        jnp.where(start, fresh_in_grid, state.in_grid),
    )
    incident = jnp.sum(jnp.where(start, fresh.energy_kev * fresh.weight, 0.0))
    tally = eqx.tree_at(
        lambda t: (t.incident_kev, t.started), tally, (tally.incident_kev + incident, tally.started + n_start)
    )
    return state, tally, remaining - n_start


def _step(world: World, state: PhotonState, tally: ChunkTally, key, cutoff_kev, disks):
    """One flight-and-interaction step of every lane.

    In the grid, flights use the grid majorant (Woodcock) and end at a tentative collision
    or at the grid boundary; in the world medium, flights use its exact attenuation and end
    at a collision, at the grid entry or at the world boundary (escape). Exponential flights
    are memoryless, so restarting them at boundaries is exact.
    """
    k_free, k_real, k_kind, k_inc, k_coh, k_phi = jr.split(key, 6)
    e = state.energy_kev
    n = e.shape[0]
    dtype = e.dtype
    moving = state.alive & (state.pending == 0)
    in_grid = state.in_grid
    lo, hi = _box(world.grid, dtype)
    t_near, t_far = ray_box(lo, hi, state.pos_mm, state.direction)
    _, t_world = ray_box(world.box_lo_mm, world.box_hi_mm, state.pos_mm, state.direction)
    enters = t_far > jnp.maximum(t_near, 0.0)
    t_entry = jnp.where(enters, jnp.maximum(t_near, 0.0), jnp.inf)
    medium = jnp.full((n,), world.medium_id, jnp.int32)
    mu_medium = world.table.mu_cm2_g(medium, e) * (0.1 * world.medium_density_g_cm3)
    mu_flight = jnp.where(in_grid, world.majorant_per_mm[energy_interval(e)], mu_medium)
    u = jr.uniform(k_free, (n,), dtype=dtype, minval=1e-12, maxval=1.0)
    free_path = jnp.where(mu_flight > 0, -jnp.log(u) / jnp.where(mu_flight > 0, mu_flight, 1.0), jnp.inf)
    boundary = jnp.where(in_grid, t_far, jnp.minimum(t_entry, t_world))
    collide = moving & (free_path < boundary)
    escaped = moving & ~collide & ~in_grid & (t_world <= t_entry)
    crossing = moving & ~collide & ~escaped
    travel = jnp.where(collide, free_path, jnp.where(crossing, boundary + _NUDGE_MM, 0.0))
    pos = state.pos_mm + travel[:, None] * state.direction
    primary = state.interactions == 0
    if disks is not None:
        length = jnp.where(escaped, jnp.inf, travel)
        seg = Segment(state.pos_mm, state.direction, length, e, state.weight, primary, moving)
        tally = eqx.tree_at(lambda t: t.plane, tally, tally.plane + disks.score(seg))
    esc = jnp.sum(jnp.where(escaped, e * state.weight, 0.0))
    alive = state.alive & ~escaped

    flat, _ = voxel_index(world.grid, pos)
    inside = jnp.where(crossing, ~in_grid, in_grid)
    m = jnp.where(inside, world.material_ids[flat], world.medium_id)
    rho = jnp.where(inside, world.density_g_cm3[flat], world.medium_density_g_cm3) * 0.1  # x (cm^2/g) -> 1/mm
    mu_pe = world.table.photoelectric_cm2_g(m, e) * rho
    mu_inc = world.table.incoherent_cm2_g(m, e) * rho
    mu_coh = world.table.coherent_cm2_g(m, e) * rho
    mu_tot = mu_pe + mu_inc + mu_coh
    # in the grid a tentative collision is real with probability mu / majorant; in the medium always
    real = collide & (~in_grid | (jr.uniform(k_real, (n,), dtype=dtype) * mu_flight < mu_tot))
    r = jr.uniform(k_kind, (n,), dtype=dtype) * mu_tot
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
    deposits = photo | do_inc
    energy = tally.energy_kev.at[flat].add(jnp.where(deposits & inside, deposit, 0.0))
    in_medium = jnp.sum(jnp.where(deposits & ~inside, deposit, 0.0))
    scatter = (do_inc | do_coh) & ~below
    phi = jr.uniform(k_phi, (n,), dtype=dtype, maxval=2 * jnp.pi)
    turned = rotate(state.direction, jnp.where(do_inc, cos_inc, cos_coh), phi)
    state = PhotonState(
        pos,
        jnp.where(scatter[:, None], turned, state.direction),
        e_new,
        state.weight,
        alive & ~absorbed,
        state.interactions + scatter.astype(jnp.int32),
        pending,
        inside,
    )
    tally = eqx.tree_at(
        lambda t: (t.energy_kev, t.medium_kev, t.escaped_kev, t.interactions),
        tally,
        (
            energy,
            tally.medium_kev + in_medium,
            tally.escaped_kev + esc,
            tally.interactions + jnp.sum(real.astype(jnp.int32)),
        ),
    )
    return state, tally
