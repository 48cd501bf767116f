"""`simulate`: Monte Carlo dose in a phantom from a source, with batch statistics."""

import collections
import dataclasses
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._checks import is_concrete
from .._frozen import FrozenDict
from ..geometry._grid import Grid
from ..phantoms._phantom import Phantom
from ..sources._source import AbstractSource
from ..units import KEV_TO_J
from ._bias import ScatterSplitting, Steering
from ._scorers import Disks, DiskScorer
from ._transport import World, enter_grid, run_chunk

#: organ sums are split this many ways by voxel index (see `_segments`)
_INTERLEAVE = 8


class MCResult(eqx.Module):
    """Monte Carlo result, normalised per source photon (one photon emitted into the beam aperture).

    Multiply by the number of source photons (`CTScan.source_photons()`,
    `Beam.photons_per_mas() * mAs`, ...) for absolute values; `scaled` does that.

    Attributes:
        grid: the phantom grid.
        energy_imparted_kev: energy imparted per voxel per source photon (keV), shape grid.shape.
        dose_gy: absorbed dose per voxel per source photon (Gy), shape grid.shape.
        rel_sigma: relative standard uncertainty of each voxel's value (batch method; inf
            where nothing was deposited), shape grid.shape.
        organ_energy_kev: organ name -> energy imparted per source photon (keV).
        organ_rel_sigma: organ name -> relative standard uncertainty.
        escaped_kev: energy leaving the world per source photon (keV).
        medium_kev: energy imparted to the world medium outside the grid per source photon (keV).
        incident_kev: energy emitted per source photon (keV; the mean weighted photon energy).
        disks: per DiskScorer, (fluence 1/mm^2, primary fluence, air kerma Gy, primary air kerma)
            per source photon, shape (p, 4); with `disks_rel_sigma` likewise.
        n_photons: source photons simulated; n_batches: statistical batches.
        steps: lane-steps taken (a step of one lane, busy or idle: up to 8 Woodcock flights
            and an interaction; summed over chunks), a measure of the work; flights: Woodcock
            flights of all photons (tentative collisions and stops at boundaries); interactions:
            real collisions.
        dose_by_order_gy: with `simulate(..., by_scatter_order=True)`, `dose_gy` split by
            the photons that imparted it: unscattered, scattered once, scattered twice or
            more (coherent scatterings count), shape (3, z, y, x), summing to `dose_gy`;
            otherwise None.
    """

    grid: Grid
    energy_imparted_kev: Float[Array, "z y x"]
    dose_gy: Float[Array, "z y x"]
    rel_sigma: Float[Array, "z y x"]
    organ_energy_kev: FrozenDict = eqx.field(static=True)
    organ_rel_sigma: FrozenDict = eqx.field(static=True)
    escaped_kev: float = eqx.field(static=True)
    medium_kev: float = eqx.field(static=True)
    incident_kev: float = eqx.field(static=True)
    disks: Float[Array, "p 4"]
    disks_rel_sigma: Float[Array, "p 4"]
    n_photons: int = eqx.field(static=True)
    n_batches: int = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    flights: int = eqx.field(static=True)
    interactions: int = eqx.field(static=True)
    dose_by_order_gy: Float[Array, "3 z y x"] | None = None

    @property
    def sigma_gy(self) -> Float[Array, "z y x"]:
        """Standard uncertainty of `dose_gy` per voxel (Gy; 0 where nothing was deposited)."""
        return jnp.where(self.dose_gy > 0, self.dose_gy * self.rel_sigma, 0.0)

    @property
    def deposited_kev(self) -> float:
        """Total energy imparted in the grid per source photon (keV)."""
        return float(np.sum(np.asarray(self.energy_imparted_kev, dtype=np.float64)))

    def scaled(self, source_photons) -> "MCResult":
        """Dose and energies for `source_photons` source photons instead of one."""
        k = float(source_photons)
        return dataclasses.replace(
            self,
            energy_imparted_kev=self.energy_imparted_kev * k,
            dose_gy=self.dose_gy * k,
            organ_energy_kev=FrozenDict({name: v * k for name, v in self.organ_energy_kev.items()}),
            escaped_kev=self.escaped_kev * k,
            medium_kev=self.medium_kev * k,
            incident_kev=self.incident_kev * k,
            disks=self.disks * k,
            dose_by_order_gy=None if self.dose_by_order_gy is None else self.dose_by_order_gy * k,
        )


def simulate(
    phantom: Phantom,
    source: AbstractSource,
    *,
    n_photons: int,
    key: PRNGKeyArray,
    n_batches: int = 10,
    lanes: int = 16384,
    energy_cutoff_kev: float = 5.0,
    disks: tuple[DiskScorer, ...] = (),
    world_medium: str | None = "air",
    dose_grid_factor: tuple[int, int, int] | None = None,
    splitting: ScatterSplitting | None = None,
    majorant_block_voxels: int | None = None,
    progress: bool = False,
    by_scatter_order: bool = False,
    max_steps_per_chunk: int = 10_000_000,
    parallel_batches: int | None = None,
) -> MCResult:
    """Monte Carlo photon transport of `n_photons` source photons through `phantom`.

    Woodcock tracking in the voxel grid (vacuum outside it), photoelectric absorption,
    incoherent scattering (Klein-Nishina x S(x)) and coherent scattering (Thomson x F^2),
    kerma approximation (electrons deposit where they are set in motion), photons below
    `energy_cutoff_kev` deposit locally. Around the grid is a box of `world_medium` (dry
    air by default, None for vacuum) that holds the source and the scorers; photons
    are tracked through it exactly and leave the simulation at its boundary. Photons run
    in `lanes` parallel lanes refilled from the source; the run is split into `n_batches`
    chunks of equal size, one jit-compiled call each (compiled once per grid shape and
    lane count; `parallel_batches` of them run at once), whose spread gives the
    uncertainties. Memory does not grow with `n_photons`.

    Args:
        phantom: the voxel phantom.
        source: any physdose source (its `beam()` is sampled).
        n_photons: source photons to simulate (> 0).
        key: PRNG key; same key, same result.
        n_batches: statistical batches (>= 2 for uncertainties).
        lanes: photons in flight at once.
        energy_cutoff_kev: photons below this energy deposit locally.
        disks: DiskScorers for fluence and air kerma (thin, non-perturbing).
        world_medium: material around the grid, or None for vacuum.
        dose_grid_factor: score on a coarser grid, (fz, fy, fx) transport voxels per scoring
            voxel (each must divide the grid shape); energies and masses are summed.
        splitting: variance reduction for a region that little scatter reaches (e.g. the
            physician in a staff-dose scene): scatterings send weighted copies toward its
            sphere, keeping every tally unbiased (see `ScatterSplitting`).
        majorant_block_voxels: Woodcock majorants per block of this many voxels (edge), with
            flights stopping at block faces; 0 for one majorant over the grid; None (default)
            chooses 8-voxel blocks where they are expected to save flight steps (thin lead
            layers in a room) and a global majorant otherwise.
        progress: show a progress bar over batches.
        by_scatter_order: also return the dose split by scatter order (`MCResult.dose_by_order_gy`;
            triples the tally's memory).
        parallel_batches: batches transported at once, each from a thread of its own (each
            holds a dose tally of the grid's size); None: one per CPU core on a CPU (XLA runs a
            batch of 16384 lanes on about one core), one per device on accelerators. The
            result does not depend on it.

    Returns:
        MCResult per source photon.

    Raises:
        ValueError: bad `n_photons`/`n_batches`/`lanes`, a phantom with NaN or negative
            density, or a source whose photons miss the grid.
    """
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a physdose.Phantom, got {type(phantom).__name__}")
    if not isinstance(source, AbstractSource):
        raise TypeError(f"source must be a physdose source, got {type(source).__name__}")
    if not isinstance(n_photons, int | np.integer) or n_photons <= 0:
        raise ValueError(f"n_photons must be a positive int, got {n_photons!r}")
    if not isinstance(n_batches, int) or n_batches < 1 or n_batches > n_photons:
        raise ValueError(f"n_batches must be an int in 1..n_photons, got {n_batches!r}")
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive int, got {lanes!r}")
    if parallel_batches is not None and (not isinstance(parallel_batches, int) or parallel_batches < 1):
        raise ValueError(f"parallel_batches must be None or a positive int, got {parallel_batches!r}")
    if not 1.0 <= energy_cutoff_kev < 150.0:
        raise ValueError(f"energy_cutoff_kev must lie in 1-150 keV, got {energy_cutoff_kev!r}")
    factor = _check_factor(dose_grid_factor, phantom.grid)
    rho = np.asarray(phantom.density_g_cm3)
    if not np.all(np.isfinite(rho)) or rho.min() < 0:
        raise ValueError("phantom density_g_cm3 must be finite and >= 0")
    beam = source.beam()
    _check_aim(phantom.grid, beam)
    stack = Disks.stack(disks) if disks else None
    if majorant_block_voxels is not None and (not isinstance(majorant_block_voxels, int) or majorant_block_voxels < 0):
        raise ValueError(f"majorant_block_voxels must be None or an int >= 0, got {majorant_block_voxels!r}")
    world = World.build(phantom, _world_points(beam, disks), world_medium, majorant_block_voxels)
    if splitting is not None and not isinstance(splitting, ScatterSplitting):
        raise TypeError(f"splitting must be a physdose.mc.ScatterSplitting, got {type(splitting).__name__}")
    steering = None if splitting is None else Steering.build(splitting, world.scatter)
    chunk = math.ceil(n_photons / n_batches)
    lanes = min(lanes, chunk)
    run = eqx.filter_jit(run_chunk)

    organ_names = list(phantom.organs)
    organ_index = np.zeros(int(jnp.max(phantom.organ_labels, initial=0)) + 1, np.int32)
    for i, name in enumerate(organ_names):
        organ_index[phantom.organs[name]] = i + 1
    shape = phantom.grid.shape
    n_organs = len(organ_names) + 1
    segment = _segments(phantom.organ_labels, jnp.asarray(organ_index), n_organs=n_organs)
    orders = 3 if by_scatter_order else 1
    devices = jax.local_devices()
    placed = [jax.device_put((world, beam, stack, steering, segment), d) for d in devices]
    static = dict(lanes=lanes, cutoff_kev=float(energy_cutoff_kev), max_steps=max_steps_per_chunk, orders=orders)
    budgets = [min(chunk, n_photons - b * chunk) for b in range(n_batches)]
    budgets = [n for n in budgets if n > 0]
    at_once = _parallel_batches(parallel_batches, devices, len(budgets))
    for w, bm, dk, st, _ in placed[: min(len(devices), len(budgets))]:  # compiled here, not by racing threads
        run.lower(w, bm, jnp.asarray(chunk), key, disks=dk, steering=st, **static).compile()

    def transport(b):
        w, bm, dk, st, seg = placed[b % len(devices)]
        t = run(w, bm, jnp.asarray(budgets[b]), jax.random.fold_in(key, b), disks=dk, steering=st, **static)
        summary = _summarise(t.energy_kev, t.plane, seg, shape=shape, factor=factor, n_organs=n_organs)
        return jax.block_until_ready((dataclasses.replace(t, energy_kev=None), summary))  # the grid's tally freed

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(budgets), desc="mc.simulate", unit="batch")
    # each batch runs in a thread of its own (a CPU call runs where it is made, on about one
    # core at 16384 lanes) and is reduced there, `at_once` at a time, while this thread adds
    # the finished ones to the sums in batch order (the same sums for a key); at most
    # at_once + 1 batches' summaries are alive at once
    sums, tallies = None, []  # _Sums on the first device; per batch its ChunkTally without the grid
    pool = ThreadPoolExecutor(at_once, thread_name_prefix="mc.simulate")
    try:
        ahead = at_once + 1  # batches submitted and not yet summed
        pending = collections.deque(pool.submit(transport, b) for b in range(min(ahead, len(budgets))))
        for b in range(len(budgets)):
            tally, summary = pending.popleft().result()
            if b + ahead < len(budgets):
                pending.append(pool.submit(transport, b + ahead))
            if int(tally.started) != budgets[b]:
                raise RuntimeError(
                    f"batch {b} started {int(tally.started)} of {budgets[b]} photons (max_steps_per_chunk reached?)"
                )
            summary = jax.device_put(summary, devices[0])
            sums = _add_batch(sums, summary, jnp.asarray(budgets[b], summary.voxels.dtype))
            tallies.append(tally)
            del tally, summary
            if bar is not None:
                bar.update(1)
    finally:
        pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    done = sum(budgets)

    def summed(name):  # over the batches' tallies (counts are whole numbers in any float type)
        return sum(float(getattr(t, name)) for t in tallies)

    weight = sum(n**2 for n in budgets) / done**2 if len(budgets) > 1 else np.inf  # batches of (nearly) equal size
    density = jax.device_put(phantom.density_g_cm3, devices[0])
    out = _finish(sums, density, float(done), weight, voxel_mm3=phantom.grid.voxel_volume_mm3, factor=factor)
    organ, organ_rel = (np.asarray(v, np.float64) for v in out.organs)
    return MCResult(
        _coarse_grid(phantom.grid, factor),
        out.energy_kev,
        out.dose_gy,
        out.rel_sigma,
        FrozenDict({name: float(organ[i + 1]) for i, name in enumerate(organ_names)}),
        FrozenDict({name: float(organ_rel[i + 1]) for i, name in enumerate(organ_names)}),
        summed("escaped_kev") / done,
        summed("medium_kev") / done,
        summed("incident_kev") / done,
        out.disks[0],
        out.disks[1],
        int(done),
        len(budgets),
        round(summed("steps")),
        round(summed("flights")),
        round(summed("interactions")),
        out.dose_by_order_gy,
    )


class _BatchSums(eqx.Module):
    """Sums over batches of per-batch totals x_b (batch b of n_b photons; any PyTree of
    arrays): with the first batch's values per photon r, sum y_b and sum y_b^2 / n_b of
    y_b = x_b - n_b r (shifted, so float32 sums keep the variance free of cancellation);
    then the batch method's mean per photon and its relative standard uncertainty."""

    ref: PyTree[Array]
    total: PyTree[Array]
    squares: PyTree[Array]

    @classmethod
    def first(cls, x: PyTree[Array], n) -> "_BatchSums":
        """The sums after one batch's totals `x` of `n` photons."""
        zeros = jax.tree.map(jnp.zeros_like, x)
        return cls(jax.tree.map(lambda v: v / n, x), zeros, zeros)

    def add(self, x: PyTree[Array], n) -> "_BatchSums":
        """The sums with one more batch's totals `x` (the same structure each batch) of `n` photons."""
        y = jax.tree.map(lambda v, r: v - n * r, x, self.ref)
        total = jax.tree.map(jnp.add, self.total, y)
        return _BatchSums(self.ref, total, jax.tree.map(lambda s, v: s + v * v / n, self.squares, y))

    def finish(self, done, weight) -> tuple[PyTree[Array], PyTree[Array]]:
        """Mean per photon and its relative standard uncertainty (inf where the mean is 0):
        `done` photons in all, `weight` = sum n_b^2 / done^2 (inf with a single batch)."""

        mean = jax.tree.map(lambda r, t: r + t / done, self.ref, self.total)

        def rel(mean, total, squares):
            # weighted batch variance of the per-photon mean: (sum x^2/n - (sum x)^2/N) / N, shifted
            var = jnp.maximum(squares - total * total / done, 0.0) / done * weight
            ok = (mean > 0) & jnp.isfinite(var)
            return jnp.where(ok, jnp.sqrt(var) / jnp.where(mean > 0, mean, 1.0), jnp.inf)

        return mean, jax.tree.map(rel, mean, self.total, self.squares)


class _Summary(eqx.Module):
    """One batch's energy imparted (keV): per voxel of the scoring grid (flat), by scatter
    order (orders, v) when tallied so (else None), per organ (index 0: no organ); and its
    disk tallies (`ChunkTally.plane`)."""

    voxels: Float[Array, " v"]
    by_order: Float[Array, "o v"] | None
    organs: Float[Array, " k"]
    disks: Float[Array, "p 4"]


@functools.partial(jax.jit, static_argnames=("shape", "factor", "n_organs"))
def _summarise(energy_kev, plane, segment, *, shape, factor, n_organs) -> _Summary:
    """`ChunkTally.energy_kev` (orders * voxels) summed over orders, over scoring voxels of
    `factor` transport voxels and over organs (`segment`: see `_segments`)."""
    by_order = energy_kev.reshape((-1,) + shape)
    total = by_order.sum(axis=0)
    per_slice = jax.ops.segment_sum(total.ravel(), segment, num_segments=shape[0] * n_organs * _INTERLEAVE)
    organs = per_slice.reshape(shape[0], n_organs, _INTERLEAVE).sum(axis=(0, 2))
    split = jax.vmap(lambda v: _coarsen(v, factor).ravel())(by_order) if by_order.shape[0] > 1 else None
    return _Summary(_coarsen(total, factor).ravel(), split, organs, plane)


@functools.partial(jax.jit, static_argnames=("n_organs",))
def _segments(labels, organ_index, *, n_organs) -> Int[Array, " v"]:
    """Each voxel's segment for the organ sums of `_summarise`, flat: (z slice x n_organs + organ
    (`organ_index` of its label; 0: none)) x _INTERLEAVE + x index modulo _INTERLEAVE. Sums of at
    most a slice's voxels keep float32 precise; neighbouring voxels of one organ go to different
    sums, so the scatter-add does not wait on its own last write (5x faster on a CPU)."""
    z = jax.lax.broadcasted_iota(jnp.int32, labels.shape, 0)
    x = jax.lax.broadcasted_iota(jnp.int32, labels.shape, 2)
    return ((organ_index[labels] + n_organs * z) * _INTERLEAVE + x % _INTERLEAVE).ravel()


class _Sums(eqx.Module):
    """Batch sums of the summaries' voxels, organs and disks, and the plain sum by scatter order (or None)."""

    batches: _BatchSums
    by_order: Float[Array, "o v"] | None


@functools.partial(jax.jit, donate_argnums=(0,))
def _add_batch(sums: _Sums | None, summary: _Summary, n) -> _Sums:
    """`sums` (None before the first batch) with one more batch's summary of `n` photons."""
    x = (summary.voxels, summary.organs, summary.disks)
    if sums is None:
        return _Sums(_BatchSums.first(x, n), summary.by_order)
    by_order = None if sums.by_order is None else sums.by_order + summary.by_order
    return _Sums(sums.batches.add(x, n), by_order)


class _Arrays(eqx.Module):
    """`simulate`'s arrays per source photon: scoring grid (z, y, x) values, organ and disk
    (mean, relative uncertainty) pairs, dose by scatter order (or None)."""

    energy_kev: Float[Array, "z y x"]
    dose_gy: Float[Array, "z y x"]
    rel_sigma: Float[Array, "z y x"]
    organs: tuple[Float[Array, " k"], Float[Array, " k"]]
    disks: tuple[Float[Array, "p 4"], Float[Array, "p 4"]]
    dose_by_order_gy: Float[Array, "o z y x"] | None


@functools.partial(jax.jit, static_argnames=("voxel_mm3", "factor"))
def _finish(sums: _Sums, density_g_cm3, done, weight, *, voxel_mm3, factor) -> _Arrays:
    """Means per photon and their uncertainties from the batch sums, and dose through the
    mass of each scoring voxel (`density_g_cm3` on the transport grid, `voxel_mm3` each)."""
    (energy, organs, disks), (rel, organs_rel, disks_rel) = sums.batches.finish(done, weight)
    mass_kg = _coarsen(density_g_cm3 * (voxel_mm3 * 1e-6), factor)
    per_kg = jnp.where(mass_kg > 0, 1.0 / jnp.where(mass_kg > 0, mass_kg, 1.0), 0.0)
    shape, dtype = per_kg.shape, density_g_cm3.dtype
    energy = energy.reshape(shape)
    by_order = None
    if sums.by_order is not None:
        by_order = (sums.by_order.reshape((-1,) + shape) * (KEV_TO_J / done * per_kg)[None]).astype(dtype)
    return _Arrays(
        energy.astype(dtype),
        (energy * (KEV_TO_J * per_kg)).astype(dtype),
        rel.reshape(shape).astype(dtype),
        (organs, organs_rel),
        (disks.astype(dtype), disks_rel.astype(dtype)),
        by_order,
    )


def _parallel_batches(requested: int | None, devices, n_batches: int) -> int:
    """Batches to transport at once: `requested`, or one per device, or on a CPU one per core."""
    if requested is None:
        requested = len(devices)
        if devices[0].platform == "cpu":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            requested = max(requested, cores or 1)
    return max(1, min(requested, n_batches))


def _check_factor(factor, grid: Grid) -> tuple[int, int, int]:
    if factor is None:
        return (1, 1, 1)
    f = tuple(int(v) for v in factor)
    if len(f) != 3 or any(v < 1 or n % v for v, n in zip(f, grid.shape)):
        raise ValueError(
            f"dose_grid_factor must be three positive ints dividing the grid shape {grid.shape}, got {factor!r}"
        )
    return f


def _coarsen(volume, factor):
    """Sum blocks of `factor` voxels of a (z, y, x) jax array; `volume` itself for factor (1, 1, 1)."""
    if tuple(factor) == (1, 1, 1):
        return volume
    (nz, ny, nx), (fz, fy, fx) = volume.shape, factor
    return volume.reshape(nz // fz, fz, ny // fy, fy, nx // fx, fx).sum(axis=(1, 3, 5))


def _coarse_grid(grid: Grid, factor) -> Grid:
    if factor == (1, 1, 1):
        return grid
    spacing = tuple(d * f for d, f in zip(grid.spacing_mm, factor))
    origin = tuple(o + (f - 1) / 2 * d for o, f, d in zip(grid.origin_mm, factor, grid.spacing_mm))
    return Grid(tuple(n // f for n, f in zip(grid.shape, factor)), spacing, origin)


def _world_points(beam, disks) -> np.ndarray:
    """Points the world box must hold: the emitting areas of every view and the scoring disks."""
    c = np.asarray(beam.focal_mm, dtype=np.float64)
    axes = np.asarray(beam.axes, dtype=np.float64)
    half = np.asarray(beam.emitter_half_mm, dtype=np.float64)
    corners = [c + su * half[0] * axes[:, 1] + sw * half[1] * axes[:, 2] for su in (-1, 1) for sw in (-1, 1)]
    pts = [np.concatenate(corners)]
    for d in disks:
        pts.append(np.asarray(d.center_mm)[None] + np.array([[-1, -1, -1], [1, 1, 1]]) * d.radius_mm)
    return np.concatenate(pts)


def _check_aim(grid: Grid, beam) -> None:
    """Raise if (almost) no source photon would reach the grid."""
    probe = beam.sample(4096, key=jax.random.key(0))
    _, hits = enter_grid(grid, probe.pos_mm, probe.direction)
    if is_concrete(hits) and not bool(jnp.any(hits)):
        raise ValueError("source photons miss the phantom grid: the source is outside it and points away")


def replicate(
    reduce, phantom: Phantom, source: AbstractSource, *, n_photons: int, key: PRNGKeyArray, runs: int, **kwargs
):
    """Mean and relative standard uncertainty of `reduce(MCResult)` over `runs` independent simulations.

    For quantities that combine many voxels or scorers nonlinearly or with correlations (a
    depth-dose fit, a weighted CTDI), whose uncertainty the per-voxel batch sigmas do not
    carry: each run simulates about n_photons / runs photons (`simulate(..., **kwargs)`,
    key folded with the run index) and `reduce` turns its result into an array; the
    photon-weighted mean and the spread of the runs give the value and its uncertainty.

    Returns:
        (mean, rel_sigma, runs_values): arrays of reduce's shape, and the (runs, ...) values.
    """
    if not isinstance(runs, int) or runs < 2:
        raise ValueError(f"runs must be an int >= 2 (their spread is the uncertainty), got {runs!r}")
    if not isinstance(n_photons, int | np.integer) or n_photons < runs:
        raise ValueError(f"n_photons must be an int >= runs, got {n_photons!r}")
    counts, values = [], []
    for i in range(runs):
        n = n_photons // runs + (1 if i < n_photons % runs else 0)
        result = simulate(phantom, source, n_photons=n, key=jax.random.fold_in(key, i), **kwargs)
        counts.append(n)
        values.append(np.asarray(reduce(result), np.float64))
    v = np.stack(values)
    w = np.asarray(counts, np.float64).reshape((-1,) + (1,) * (v.ndim - 1))
    mean = np.sum(w * v, axis=0) / w.sum()
    sd = np.sqrt(np.sum(w * (v - mean) ** 2, axis=0) / w.sum() / (runs - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean, np.where(mean > 0, sd / mean, np.inf), v
