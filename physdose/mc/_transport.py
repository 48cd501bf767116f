"""Woodcock (delta) tracking of photon lanes through a voxel phantom, one chunk of photons per call.

The world is the phantom's grid inside a box of air (or vacuum) that holds the source and
scorers. Photons are tracked exactly through the box and, inside the grid, with majorant
attenuation coefficients (Woodcock, Murphy, Hemmings & Longworthy 1965), one for the grid or
one per block of voxels; they leave when they step out of the box. Each lane holds one photon; a lane
whose photon died takes the next source photon until the chunk's budget is spent, so the
lanes stay busy; a step passes over up to 8 virtual collisions before the costly interaction
part. Energy is deposited where the photon interacts (kerma approximation):
all of it in photoelectric absorption, E - E' in incoherent scattering, and what is left
when the photon falls below the energy cut-off.
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, UInt

from .. import _random as rng
from .._fusion import apart
from .._vec3 import all3, max3, min3
from ..geometry._grid import Grid
from ..materials._material import get
from ..materials._table import MaterialTable
from ..materials._xraylib import ELECTRON_REST_ENERGY_KEV, ENERGY_MIN_KEV, ENERGY_NODES_KEV, ENERGY_STEP_KEV
from ..sources._beam import Beam
from ._bias import Steering
from ._interactions import ScatterTables, coherent_trial, incoherent_trial, rotate
from ._scorers import Disks

_NUDGE_MM = 1e-3


class PhotonState(eqx.Module):
    """One photon per lane: position (mm), unit direction, energy (keV), weight, alive flag,
    number of scatterings, a pending scattering (0 none, 1 incoherent, 2 coherent) whose
    angle is still being drawn by rejection (such a lane stays put and retries next step,
    so no lane waits for the slowest rejection loop), whether it is in the grid (kept
    as state, not recomputed from the position, so grazing photons cannot stall on a face),
    and whether that pending scattering is being split. The same structure holds each lane's
    bank of one waiting photon (`alive`: the bank is full) for ScatterSplitting."""

    pos_mm: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    energy_kev: Float[Array, " n"]
    weight: Float[Array, " n"]
    alive: Bool[Array, " n"]
    interactions: Int[Array, " n"]
    pending: Int[Array, " n"]
    in_grid: Bool[Array, " n"]
    split: Bool[Array, " n"]  # the pending scattering was split (ScatterSplitting): its copy waits in the bank


class World(eqx.Module):
    """What transport needs: the voxel grid and its flat densities and materials (packed in
    one word per voxel, so a flight reads its voxel at once), the surrounding box of air (or
    vacuum) that holds the source and scorers, cross-section tables and the majorants.

    Each voxel's word is its density's float bits rounded to leave the lowest `id_bits`
    mantissa bits free, with its material id in them: ids are exact, densities keep
    24 - `id_bits` significant bits in float32 (13 materials: 4 bits, relative error
    <= 2^-20 ~ 1e-6), and the majorants are those of the rounded densities. XLA on CPU
    gathers one 32-bit word per lane about 10x faster than a pair of floats.

    Majorants are per block of voxels and per energy band. With one block (the whole grid)
    and one band per cross-section node interval this is plain Woodcock tracking with a
    global majorant. With blocks of a few voxels (e.g. a room whose thin lead aprons would
    make the global majorant a hundred times that of air), flights stop at the block's
    faces, so each block is crossed with its own majorant.
    """

    grid: Grid
    voxels: UInt[Array, " v"]  # per voxel (flat): density (g/cm^3) float bits, material id in the low `id_bits`
    table: MaterialTable  # the phantom's materials, then the world medium (last)
    scatter: ScatterTables
    majorant_per_mm: Float[Array, "b k"]  # per block and energy band, 1/mm
    overall_majorant_per_mm: Float[Array, " k"]  # the largest of the blocks', per energy band
    band_of_interval: Int[Array, " i"]  # energy band of each cross-section node interval
    box_lo_mm: Float[Array, " 3"]
    box_hi_mm: Float[Array, " 3"]
    medium_density_g_cm3: float = eqx.field(static=True)
    block_voxels: tuple[int, int, int] = eqx.field(static=True)
    id_bits: int = eqx.field(static=True)

    @classmethod
    def build(cls, phantom, points_mm: np.ndarray, medium: str | None, block_voxels: int | None = None) -> "World":
        """World around `phantom` that contains `points_mm` (sources, scorers), filled with `medium`.

        `block_voxels`: edge of the majorant blocks in voxels; 0 for one global majorant,
        None to choose between 8-voxel blocks and a global majorant by the expected number
        of flight steps.
        """
        materials = phantom.materials.materials
        names = [m.name for m in materials]
        air = get(medium) if medium is not None else get("air")
        table = MaterialTable.from_materials(
            materials + (air,) if air.name not in names else materials + (_renamed(air),)
        )
        grid = phantom.grid
        id_bits = max(1, (len(table) - 1).bit_length())
        ids_np = np.asarray(phantom.material_ids).reshape(grid.shape)
        words = _pack(np.asarray(phantom.density_g_cm3).ravel(), ids_np.ravel(), id_bits)
        rho_np = _unpack(words, id_bits)[1].reshape(grid.shape)  # the densities transport sees
        mu_mass = np.asarray(_interval_maxima(table), np.float64)  # (m, i) cm^2/g
        if block_voxels is None:
            densest = _densest(ids_np, rho_np, _block_shape(grid, 8), len(table))
            block_voxels = 8 if _blocks_pay(grid, densest, mu_mass, 8) else 0
            densest = densest if block_voxels == 8 else densest.max(axis=0, keepdims=True)
        else:
            densest = _densest(ids_np, rho_np, _block_shape(grid, block_voxels), len(table))
        blocks = _block_shape(grid, block_voxels)
        bands = np.arange(mu_mass.shape[1]) if block_voxels == 0 else _log_bands()
        majorant = _block_majorants(densest, _band_maxima(mu_mass, bands))
        lo, hi = (np.asarray(b) for b in grid.bounds_mm)
        pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        lo = np.minimum(lo, pts.min(axis=0)) - 10.0
        hi = np.maximum(hi, pts.max(axis=0)) + 10.0
        dtype = rho_np.dtype
        return cls(
            grid,
            jnp.asarray(words),
            table,
            ScatterTables.from_table(table),
            jnp.asarray(majorant, dtype),
            jnp.asarray(majorant.max(axis=0), dtype),
            jnp.asarray(bands, jnp.int32),
            jnp.asarray(lo, dtype),
            jnp.asarray(hi, dtype),
            0.0 if medium is None else air.density_g_cm3,
            blocks,
            id_bits,
        )

    def at(self, flat: Int[Array, " n"]) -> tuple[Int[Array, " n"], Float[Array, " n"]]:
        """(material id, density g/cm^3) of flat voxel indices (in range), read at once."""
        return _unpack(self.voxels.at[flat].get(mode="promise_in_bounds"), self.id_bits)

    @property
    def dtype(self):
        """The float type of densities and of transport."""
        return self.box_lo_mm.dtype

    @property
    def num_voxels(self) -> int:
        return self.voxels.shape[0]

    @property
    def medium_id(self) -> int:
        return len(self.table) - 1

    @property
    def n_blocks(self) -> tuple[int, int, int]:
        return tuple(-(-n // b) for n, b in zip(self.grid.shape, self.block_voxels))


def _pack(rho, ids, id_bits: int):
    """One unsigned word per voxel: `rho`'s float bits rounded to the nearest multiple of
    2^id_bits (densities >= 0), the material id in the freed low bits (NumPy)."""
    uint = np.uint32 if rho.dtype == np.float32 else np.uint64
    bits = rho.view(uint)
    half, mask = uint(1 << (id_bits - 1)), uint((1 << id_bits) - 1)
    return ((bits + half) & ~mask) | ids.astype(uint)


def _unpack(words, id_bits: int):
    """(material id int32, density) of packed words (NumPy or jax arrays)."""
    xp = np if isinstance(words, np.ndarray) else jnp
    mask = words.dtype.type((1 << id_bits) - 1)
    float_type = xp.float32 if words.dtype == xp.uint32 else xp.float64
    ids = (words & mask).astype(xp.int32)
    rho = words & ~mask
    rho = rho.view(float_type) if xp is np else jax.lax.bitcast_convert_type(rho, float_type)
    return ids, rho


def _renamed(material):
    return dataclasses.replace(material, name=material.name + "_world")


def _interval_maxima(table: MaterialTable) -> Float[Array, "m i"]:
    """max of mu/rho (cm^2/g) over each cross-section node interval (absorption edges included)."""
    m = jnp.arange(len(table))[:, None]
    nodes = jnp.asarray(ENERGY_NODES_KEV, dtype=table.log_photoelectric.dtype)[None, :]
    at_nodes = table.mu_cm2_g(m, nodes)
    edge = jnp.exp(table.log_edge_kev.T)
    beside_edge = jnp.maximum(table.mu_cm2_g(m, edge * (1 - 1e-6)), table.mu_cm2_g(m, edge * (1 + 1e-6)))
    return jnp.maximum(jnp.maximum(at_nodes[:, :-1], at_nodes[:, 1:]), beside_edge)


def _log_bands(ratio: float = 1.04) -> np.ndarray:
    """Band index of each node interval: bands at most `ratio` wide in energy (or one interval)."""
    lower = np.asarray(ENERGY_NODES_KEV[:-1], np.float64)
    raw = np.floor(np.log(lower / ENERGY_MIN_KEV) / np.log(ratio)).astype(np.int64)
    return np.unique(raw, return_inverse=True)[1].astype(np.int32)


def _block_shape(grid: Grid, block_voxels: int) -> tuple[int, int, int]:
    """Majorant blocks of `block_voxels` per edge (0: the whole grid as one block)."""
    return tuple(int(n if block_voxels == 0 else min(block_voxels, n)) for n in grid.shape)


def _densest(ids: np.ndarray, rho: np.ndarray, blocks: tuple[int, int, int], n_materials: int) -> np.ndarray:
    """(blocks, m): the highest density (g/cm^3) of each material in each block of `blocks`
    voxels (0 where it is absent), blocks in flat C order, edge blocks partial. One pass."""
    nb = [-(-n // b) for n, b in zip(ids.shape, blocks)]
    dtype = np.int32 if math.prod(nb) * n_materials < 2**31 else np.int64
    z, y, x = ((np.arange(n, dtype=dtype) // b) for n, b in zip(ids.shape, blocks))
    key = ((z[:, None, None] * nb[1] + y[None, :, None]) * nb[2] + x[None, None, :]) * n_materials + ids
    out = np.zeros(math.prod(nb) * n_materials, rho.dtype)  # maximum.at is fast with matching dtypes
    np.maximum.at(out, key.ravel(), rho.ravel())
    return out.reshape(-1, n_materials).astype(np.float64)


def _band_maxima(mu_mass: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """(m, k): max of (m, i) interval values over the intervals of each band."""
    return np.stack([mu_mass[:, bands == b].max(axis=1) for b in range(int(bands.max()) + 1)], axis=1)


def _block_majorants(densest: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(blocks, k): max over each block's materials of density x mu/rho (`densest` (blocks, m),
    `mass` (m, k) in cm^2/g), in 1/mm, with a 0.01 % margin."""
    out = np.zeros((densest.shape[0], mass.shape[1]))
    for m in np.flatnonzero(densest.max(axis=0) > 0):
        out = np.maximum(out, densest[:, m, None] * mass[None, m, :])
    return out * 0.1 * 1.0001


def _blocks_pay(grid, densest, mu_mass, block_voxels) -> bool:
    """Whether majorant blocks are expected to need far fewer flight steps than one majorant.

    Crossing a block of edge a costs about (2a/3) mu steps (mean chord) plus ~1.5 for
    stopping at its faces; compared at 30, 50 and 80 keV. `densest`: (blocks, m) of
    `_densest` for blocks of `block_voxels`.
    """
    blocks = _block_shape(grid, block_voxels)
    i = np.searchsorted(np.asarray(ENERGY_NODES_KEV), [30.0, 50.0, 80.0]) - 1
    majorant = _block_majorants(densest, mu_mass[:, i])
    chord = 2.0 / 3.0 * float(np.mean(np.asarray(grid.spacing_mm) * np.asarray(blocks)))
    global_steps = majorant.shape[0] * chord * majorant.max(axis=0)
    block_steps = np.sum(chord * majorant + 1.5, axis=0)
    return bool(np.mean(block_steps / np.maximum(global_steps, 1e-30)) < 0.6)


def energy_interval(e_kev: Float[Array, " n"]) -> Int[Array, " n"]:
    i = jnp.floor((e_kev - ENERGY_MIN_KEV) / ENERGY_STEP_KEV).astype(jnp.int32)
    return jnp.clip(i, 0, len(ENERGY_NODES_KEV) - 2)


def _box(grid: Grid, dtype):
    lo, hi = grid.bounds_mm
    return jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)


def ray_box(lo, hi, pos: Float[Array, "n 3"], direction: Float[Array, "n 3"]):
    """Distances (t_near, t_far) along rays to the box faces (slab method; t_far < t_near: miss)."""
    safe = jnp.where(jnp.abs(direction) > 1e-12, direction, 1e-12)
    t1 = (jnp.broadcast_to(lo, pos.shape) - pos) / safe  # lo, hi: (3,) or one box per ray (n, 3)
    t2 = (jnp.broadcast_to(hi, pos.shape) - pos) / safe
    return max3(jnp.minimum(t1, t2)), min3(jnp.maximum(t1, t2))


def enter_grid(grid: Grid, pos: Float[Array, "n 3"], direction: Float[Array, "n 3"]):
    """Move photons straight to where they enter the grid; returns (pos, hits)."""
    lo, hi = _box(grid, pos.dtype)
    t_near, t_far = ray_box(lo, hi, pos, direction)
    t_in = jnp.maximum(t_near, 0.0)
    hits = t_far > t_in + _NUDGE_MM
    return pos + (t_in + _NUDGE_MM)[:, None] * direction, hits


def voxel_index(grid: Grid, pos: Float[Array, "n 3"]):
    """(flat voxel index, inside) of points; flat index is clipped into range when outside.

    Computed on its own (`apart`): the gathers that read these indices run 4-5x faster on
    CPU when the index is not fused into them."""

    def index(pos):
        lo, _ = _box(grid, pos.dtype)
        spacing = jnp.asarray(grid.spacing_mm, pos.dtype)
        ijk = jnp.floor((pos - lo[None]) / spacing[None]).astype(jnp.int32)
        shape = jnp.asarray(grid.shape, jnp.int32)
        inside = all3((ijk >= 0) & (ijk < shape[None]))
        ijk = jnp.clip(ijk, 0, shape[None] - 1)
        return (ijk[:, 0] * grid.shape[1] + ijk[:, 1]) * grid.shape[2] + ijk[:, 2], inside

    return apart(index, pos)


def _block_of(world: World, pos: Float[Array, "n 3"]):
    """(flat majorant block, block lower corner, upper corner) of points (clipped into the grid)."""
    lo, hi = _box(world.grid, pos.dtype)
    spacing = jnp.asarray(world.grid.spacing_mm, pos.dtype)
    edge = jnp.asarray(world.block_voxels, pos.dtype) * spacing
    n_blocks = world.n_blocks
    bijk = jnp.floor((pos - lo[None]) / edge[None]).astype(jnp.int32)
    bijk = jnp.clip(bijk, 0, jnp.asarray(n_blocks, jnp.int32)[None] - 1)
    flat = (bijk[:, 0] * n_blocks[1] + bijk[:, 1]) * n_blocks[2] + bijk[:, 2]
    block_lo = lo[None] + bijk.astype(pos.dtype) * edge[None]
    return flat, block_lo, jnp.minimum(block_lo + edge[None], hi[None])


class ChunkTally(eqx.Module):
    """What one chunk of source photons leaves behind (sums over its photons)."""

    energy_kev: Float[Array, " ov"]  # energy imparted per voxel; o = 1, or 3 by scatter order (0, 1, >= 2), flat
    medium_kev: Float[Array, ""]  # energy imparted in the world medium outside the grid
    escaped_kev: Float[Array, ""]
    incident_kev: Float[Array, ""]
    started: Int[Array, ""]
    steps: Float[Array, ""]  # lane-steps: loop iterations x lanes in the stage (floats: they can pass 2^31)
    flights: Float[Array, ""]  # Woodcock flights of all photons (tentative collisions and boundary stops)
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
    steering: Steering | None = None,
    orders: int = 1,
) -> ChunkTally:
    """Transport `budget` source photons from `beam` through `world` with `lanes` lanes.

    With 16384 lanes or more, once the budget is spent and few photons are left, they move
    into 8x fewer lanes, in stages down to 256 lanes (`_stage_lanes`), so the chunk's last
    photons do not keep every lane stepping.

    `orders` = 3 tallies the energy imparted separately by photons scattered 0, 1 and
    2 or more times; 1 tallies it all together.
    """
    dtype = world.dtype
    zeros = jnp.zeros(lanes, dtype)
    empty = jnp.zeros(lanes, bool)
    state = PhotonState(
        jnp.zeros((lanes, 3), dtype),
        jnp.zeros((lanes, 3), dtype).at[:, 0].set(1.0),
        jnp.ones(lanes, dtype),
        zeros,
        empty,
        jnp.zeros(lanes, jnp.int32),
        jnp.zeros(lanes, jnp.int32),
        empty,
        empty,
    )
    bank = None if steering is None else state
    scalar = jnp.zeros((), dtype)
    count = jnp.zeros((), jnp.int32)
    n_planes = 0 if disks is None else len(disks)
    tally = ChunkTally(
        jnp.zeros(orders * world.num_voxels, dtype),
        scalar,
        scalar,
        scalar,
        count,
        scalar,
        scalar,
        count,
        jnp.zeros((n_planes, 4), dtype),
    )

    def busy(state, bank):
        return jnp.sum(_busy(state, bank).astype(jnp.int32))

    def step_keys(step):
        return rng.split(rng.fold_in(key, step))  # (source, step)

    def advance(state, bank, tally, k_step):
        state, bank, tally = _step(world, state, bank, tally, k_step, cutoff_kev, disks, steering)
        return state, bank, eqx.tree_at(lambda t: t.steps, tally, tally.steps + state.alive.shape[0])

    # the chunk's last photons (often low-energy ones taking short Woodcock steps through air
    # in the grid) would keep every lane stepping: once few are left they move into fewer
    # lanes, in stages, each running until the next stage's lanes can hold what is left
    sizes = _stage_lanes(lanes)
    floors = sizes[1:] + (0,)

    def cond(carry):
        state, bank, _, remaining, step = carry
        return ((remaining > 0) | (busy(state, bank) > floors[0])) & (step < max_steps)

    def body(carry):
        state, bank, tally, remaining, step = carry
        k_src, k_step = step_keys(step)
        # refill only once an eighth of the lanes are free (or the last photons are waiting),
        # with at most a quarter of the lanes' worth of source photons: drawing them for every
        # lane cost ~0.8 ms of a ~4.5 ms step (16384 lanes), and a step frees about a sixth
        n_dead = jnp.sum((~state.alive).astype(jnp.int32))
        due = (remaining > 0) & (n_dead >= jnp.minimum(remaining, max(1, lanes // 8)))
        state, tally, remaining = jax.lax.cond(
            due,
            lambda args: _refill(world, beam, *args, k_src, max(1, lanes // 4)),
            lambda args: args,
            (state, tally, remaining),
        )
        state, bank, tally = advance(state, bank, tally, k_step)
        return state, bank, tally, remaining, step + 1

    k_first, key = rng.split(key)
    state, tally, remaining = _refill(world, beam, state, tally, jnp.asarray(budget, jnp.int32), k_first, lanes)
    init = (state, bank, tally, remaining, jnp.zeros((), jnp.int32))
    state, bank, tally, _, step = jax.lax.while_loop(cond, body, init)
    for size, floor in zip(sizes[1:], floors[1:]):
        state, bank = _compact(state, bank, size)

        def tail_cond(carry, floor=floor):
            state, bank, _, step = carry
            return (busy(state, bank) > floor) & (step < max_steps)

        def tail_body(carry):
            state, bank, tally, step = carry
            return (*advance(state, bank, tally, step_keys(step)[1]), step + 1)

        state, bank, tally, step = jax.lax.while_loop(tail_cond, tail_body, (state, bank, tally, step))
    return tally


def _stage_lanes(lanes: int, shrink: int = 8, smallest: int = 256, staged_from: int = 16384) -> tuple[int, ...]:
    """Lane counts of a chunk's stages: all lanes, then each `shrink` times fewer, down to `smallest`.

    Below `staged_from` lanes there is one stage: each stage compiles the step again (~3 s),
    which small runs (tests) would pay for more than the tail costs them.
    """
    sizes = [lanes]
    while lanes >= staged_from and sizes[-1] // shrink >= smallest:
        sizes.append(sizes[-1] // shrink)
    return tuple(sizes)


def _busy(state: PhotonState, bank: PhotonState | None) -> Bool[Array, " n"]:
    """Lanes with work left: a photon in flight, or one waiting in the lane's bank."""
    return state.alive if bank is None else state.alive | bank.alive


def _compact(state: PhotonState, bank: PhotonState | None, size: int):
    """The first `size` lanes after moving every busy lane to the front (in order)."""
    order = jnp.argsort(~_busy(state, bank), stable=True)[:size]

    def take(lanes):
        return None if lanes is None else jax.tree.map(lambda x: x[order], lanes)

    return take(state), take(bank)


def _refill(world, beam, state, tally, remaining, key, n_fresh: int):
    """Start up to `n_fresh` new source photons (at most `remaining`) in the dead lanes, in lane order."""
    dead = ~state.alive
    rank = jnp.cumsum(dead.astype(jnp.int32))
    start = dead & (rank <= jnp.minimum(remaining, n_fresh))
    n_start = jnp.sum(start.astype(jnp.int32))
    # the i-th dead lane takes the i-th photon drawn
    fresh = jax.tree.map(lambda x: x[jnp.clip(rank - 1, 0, n_fresh - 1)], beam.sample(n_fresh, key=key))
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
        state.split & ~start,
    )
    incident = jnp.sum(jnp.where(start, fresh.energy_kev * fresh.weight, 0.0))
    tally = eqx.tree_at(
        lambda t: (t.incident_kev, t.started), tally, (tally.incident_kev + incident, tally.started + n_start)
    )
    return state, tally, remaining - n_start


_FLIGHTS_PER_STEP = 8
_SEARCHING, _COLLIDED, _CROSSED, _IDLE = 0, 1, 2, 3


class Flight(eqx.Module):
    """Where each lane's flights of one step ended: after `travel_mm` along its direction, at a
    real collision (`collide`), at a boundary that ends the step (`crossing`: a majorant
    block's face, or the world's, `escaped`) or, neither, still in flight; `in_grid`: whether
    it ended in the grid; `flights`: how many flights it took."""

    travel_mm: Float[Array, " n"]
    collide: Bool[Array, " n"]
    crossing: Bool[Array, " n"]
    in_grid: Bool[Array, " n"]
    flights: Int[Array, " n"]

    @property
    def escaped(self) -> Bool[Array, " n"]:
        """Crossed the world's boundary: the only boundary outside the grid that ends a step."""
        return self.crossing & ~self.in_grid


def _fly(world: World, state: PhotonState, moving: Bool[Array, " n"], key) -> Flight:
    """One step's flights of the `moving` lanes (see `_step`).

    A flight that reaches one of the grid's faces flies on in the same step: out of the grid
    into the medium, with the medium's attenuation, to the world's boundary (the grid is a
    box, so a straight path never comes back to it), or from the medium into the grid, with
    the grid's overall majorant, to the grid's far face. A source photon then needs no step
    of its own to reach the grid, nor a photon leaving it one to escape.
    """
    e = state.energy_kev
    n = e.shape[0]
    dtype = e.dtype
    lo, hi = _box(world.grid, dtype)
    t_near, t_far = ray_box(lo, hi, state.pos_mm, state.direction)
    _, t_world = ray_box(world.box_lo_mm, world.box_hi_mm, state.pos_mm, state.direction)
    enters = t_far > jnp.maximum(t_near, 0.0)
    t_entry = jnp.where(enters, jnp.maximum(t_near, 0.0), jnp.inf)
    medium = jnp.full((n,), world.medium_id, jnp.int32)
    mu_medium = world.table.mu_cm2_g(medium, e) * (0.1 * world.medium_density_g_cm3)
    band = world.band_of_interval[energy_interval(e)]
    mu_entered = world.overall_majorant_per_mm[band]
    if world.block_voxels == world.grid.shape:  # one global majorant: the block is the grid
        mu_block, t_block = mu_entered, t_far
    else:
        block, block_lo, block_hi = _block_of(world, state.pos_mm)
        mu_block = world.majorant_per_mm[block, band]
        t_block = jnp.minimum(ray_box(block_lo, block_hi, state.pos_mm, state.direction)[1], t_far)
    in_grid = state.in_grid
    mu_flight = jnp.where(in_grid, mu_block, mu_medium)
    boundary = jnp.maximum(jnp.where(in_grid, t_block, jnp.minimum(t_entry, t_world)), 0.0)
    # whether the boundary is one of the grid's faces (a block face within rounding of a grid
    # face is the grid face), where the flight goes on in the other region
    at_face = jnp.where(in_grid, t_far <= t_block + 0.1 * _NUDGE_MM, t_entry < t_world)
    # mu/rho of every material at each lane's energy, (m, n): a tentative collision picks its
    # material's row (`_column`); rows, not columns, since the selects then read contiguously
    mu_mass = world.table.mu_every_cm2_g(e).T

    # each lane's flights end in one state: _SEARCHING (still flying), _COLLIDED (a real
    # collision), _CROSSED (a boundary that ends the step) or _IDLE (not moving this step); one
    # carry that each flight writes once (separate flags made XLA compute the collision test twice)
    def cond(carry):
        k, _, status, *_ = carry
        return (k < _FLIGHTS_PER_STEP) & jnp.any(status == _SEARCHING)

    def body(carry):
        k, travel, status, flights, in_grid, mu_flight, boundary, at_face = carry
        searching = status == _SEARCHING
        flights = flights + searching.astype(jnp.int32)
        u_free, u_real = rng.uniform(rng.fold_in(key, k), (2, n), dtype=dtype, minval=1e-12, maxval=1.0)
        safe_mu = jnp.where(mu_flight > 0, mu_flight, 1.0)
        free_path = jnp.where(mu_flight > 0, -jnp.log(u_free) / safe_mu, jnp.inf)
        hit = searching & (travel + free_path < boundary)
        cross = searching & ~hit
        travel = jnp.where(hit, travel + free_path, jnp.where(cross, boundary, travel))
        # in the grid a tentative collision is real with probability mu / majorant; in the medium always
        flat, _ = voxel_index(world.grid, state.pos_mm + travel[:, None] * state.direction)
        m, rho = world.at(flat)
        mu = _column(mu_mass, m)
        real = hit & (~in_grid | (u_real * mu_flight < mu * (0.1 * rho)))
        on = cross & at_face  # flies on in the other region
        status = jnp.where(cross & ~at_face, _CROSSED, jnp.where(real, _COLLIDED, status))
        in_grid = in_grid ^ on
        mu_flight = jnp.where(on, jnp.where(in_grid, mu_entered, mu_medium), mu_flight)
        boundary = jnp.where(on, jnp.where(in_grid, t_far, t_world), boundary)
        at_face = jnp.where(on, in_grid, at_face)
        return k + 1, travel, status, flights, in_grid, mu_flight, boundary, at_face

    status = jnp.where(moving, _SEARCHING, _IDLE).astype(jnp.int32)
    init = (jnp.zeros((), jnp.int32), jnp.zeros(n, dtype), status, jnp.zeros(n, jnp.int32))
    init = init + (in_grid, mu_flight, boundary, at_face)
    _, travel, status, flights, in_grid, *_ = jax.lax.while_loop(cond, body, init)
    collide, crossing = status == _COLLIDED, status == _CROSSED
    return Flight(travel, collide, crossing, in_grid, flights)


def _column(table: Float[Array, "m n"], m: Int[Array, " n"]) -> Float[Array, " n"]:
    """table[m[i], i] per lane, as a chain of selects over the (few) rows: it fuses into the
    code around it, where a gather on CPU costs ~7 ns a lane."""
    out = table[0]
    for j in range(1, table.shape[0]):
        out = jnp.where(m == j, table[j], out)
    return out


def _step(world: World, state: PhotonState, bank, tally: ChunkTally, key, cutoff_kev, disks, steering):
    """One flight-and-interaction step of every lane.

    Up to `_FLIGHTS_PER_STEP` flights per lane (`_fly`): in the grid with the majorant
    (Woodcock), the virtual collisions passed over; in the world medium with its exact
    attenuation. They end at a real collision, at a majorant block's face or at the world's
    boundary (escape); at the grid's own faces they fly on in the other region. Exponential
    flights are memoryless, so restarting them at boundaries is exact. Then the real
    collisions interact.
    """
    k_free, k_kind, k_inc, k_coh, k_phi, k_copy = rng.split(key, 6)
    e = state.energy_kev
    n = e.shape[0]
    dtype = e.dtype
    moving = state.alive & (state.pending == 0)
    flight = _fly(world, state, moving, k_free)
    real, escaped, travel = flight.collide, flight.escaped, flight.travel_mm
    crossing = flight.crossing & ~escaped
    # a crossing photon is pushed _NUDGE_MM further along each axis it moves along, so it
    # is clearly past the face it crossed even when it grazes it (a push along the path
    # could stay within rounding of the face and the photon would never leave it)
    push = jnp.where(crossing[:, None], _NUDGE_MM * jnp.sign(state.direction), 0.0)
    pos = state.pos_mm + travel[:, None] * state.direction + push
    primary = state.interactions == 0
    if disks is not None:
        length = jnp.where(escaped, jnp.inf, travel)
        seg = Segment(state.pos_mm, state.direction, length, e, state.weight, primary, moving)
        tally = eqx.tree_at(lambda t: t.plane, tally, tally.plane + disks.score(seg))
    esc = jnp.sum(jnp.where(escaped, e * state.weight, 0.0))
    alive = state.alive & ~escaped

    flat, _ = voxel_index(world.grid, pos)
    inside = flight.in_grid
    m, rho = world.at(flat)
    m = jnp.where(inside, m, world.medium_id)
    rho = jnp.where(inside, rho, world.medium_density_g_cm3) * 0.1  # x (cm^2/g) -> 1/mm
    mu_pe = world.table.photoelectric_cm2_g(m, e) * rho
    mu_inc = world.table.incoherent_cm2_g(m, e) * rho
    mu_coh = world.table.coherent_cm2_g(m, e) * rho
    mu_tot = mu_pe + mu_inc + mu_coh
    r = rng.uniform(k_kind, (n,), dtype=dtype) * mu_tot
    photo = real & (r < mu_pe)
    real_inc = real & ~photo & (r < mu_pe + mu_inc)
    real_coh = real & ~photo & (r >= mu_pe + mu_inc)
    want_inc = real_inc | (alive & (state.pending == 1))
    want_coh = real_coh | (alive & (state.pending == 2))
    cos_inc, eps, ok_inc = incoherent_trial(k_inc, e, m, world.scatter)
    cos_coh, ok_coh = coherent_trial(k_coh, e, m, world.scatter)
    do_inc = want_inc & ok_inc
    do_coh = want_coh & ok_coh
    pending = jnp.where(want_inc & ~ok_inc, 1, jnp.where(want_coh & ~ok_coh, 2, 0))
    phi = rng.uniform(k_phi, (n,), dtype=dtype, maxval=2 * jnp.pi)
    turned = rotate(state.direction, jnp.where(do_inc, cos_inc, cos_coh), phi)
    e_new = jnp.where(do_inc, eps * e, e)
    below = do_inc & (e_new < cutoff_kev)
    absorbed = photo | below
    deposit = jnp.where(absorbed, e, jnp.where(do_inc, e - e_new, 0.0)) * state.weight
    deposits = photo | do_inc
    if steering is not None:
        axis, cos_alpha, outside = steering.cone(pos)
        split_now = (real_inc | real_coh) & outside & ~bank.alive
        split = split_now | (alive & (state.pending > 0) & state.split)
        # the photon itself is dropped when it scatters into the cone: its copy stands for that part
        dropped = (do_inc | do_coh) & split & steering.in_cone(turned, axis, cos_alpha)
        deposits = deposits & ~dropped
        absorbed = absorbed | dropped
        copy_dir, copy_cos, factor = steering.copy(k_copy, state.direction, e, m, real_inc, axis, cos_alpha)
        copy_e = jnp.where(real_inc, e / (1.0 + e / ELECTRON_REST_ENERGY_KEV * (1.0 - copy_cos)), e)
        copy_w = state.weight * factor
        copy_below = copy_e < cutoff_kev
        deposit = jnp.where(deposits, deposit, 0.0) + jnp.where(
            split_now, jnp.where(copy_below, e, e - copy_e) * copy_w, 0.0
        )
        deposits = deposits | split_now
    slot = flat
    if tally.energy_kev.shape[0] > world.num_voxels:  # by scatter order, still one flat scatter-add
        slot = jnp.minimum(state.interactions, 2) * world.num_voxels + flat
    energy = tally.energy_kev.at[slot].add(jnp.where(deposits & inside, deposit, 0.0))
    in_medium = jnp.sum(jnp.where(deposits & ~inside, deposit, 0.0))
    scatter = (do_inc | do_coh) & ~below
    state = PhotonState(
        pos,
        jnp.where(scatter[:, None], turned, state.direction),
        e_new,
        state.weight,
        alive & ~absorbed,
        state.interactions + scatter.astype(jnp.int32),
        pending,
        inside,
        jnp.zeros(n, bool),
    )
    if steering is not None:
        state = eqx.tree_at(lambda s: s.split, state, split & (pending > 0))
        copy = PhotonState(
            pos,
            copy_dir,
            copy_e,
            copy_w,
            ~copy_below,
            state.interactions + 1,
            jnp.zeros(n, jnp.int32),
            inside,
            state.split,
        )
        bank = _where(split_now, copy, bank)
        # once the split scattering is resolved the copy runs first and the photon waits in
        # the bank; a lane whose photon died takes its banked one: no lane is ever idle with
        # a full bank
        swap = bank.alive & (((do_inc | do_coh) & split) | ~state.alive)
        state, bank = _where(swap, bank, state), _where(swap, state, bank)
    tally = eqx.tree_at(
        lambda t: (t.energy_kev, t.medium_kev, t.escaped_kev, t.flights, t.interactions),
        tally,
        (
            energy,
            tally.medium_kev + in_medium,
            tally.escaped_kev + esc,
            tally.flights + jnp.sum(flight.flights).astype(dtype),
            tally.interactions + jnp.sum(real.astype(jnp.int32)),
        ),
    )
    return state, bank, tally


def _where(mask: Bool[Array, " n"], a: PhotonState, b: PhotonState) -> PhotonState:
    """Lane-wise choice between two photon states."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)
