"""Fitting the prior to Monte Carlo: `calibrate`, the generic `fit`, and `Prior` (save/load)."""

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree
from scipy import ndimage
from tqdm.auto import tqdm

from .._atomic import atomic_path
from .._frozen import FrozenDict
from ..mc._simulate import MCResult
from ..phantoms._phantom import Phantom
from ._medium import shields
from ._model import PriorDose, PriorParams, Scene, calibration_record, dose, prepare

FORMAT = "physdose.prior/1"

AIR_BANDS_MM = (25.0, 50.0, 100.0, 200.0)
"""Where the bands of distance from the body begin (mm) in which `calibrate` compares the air's mean dose
(the air nearer than 25 mm reads cells that straddle the body's surface)."""

AIR_POINTS = 64
"""Voxels per air band at which `calibrate` evaluates the prior."""


class Prior(eqx.Module):
    """A (calibrated) prior: its parameters and the options they were fitted with.

    Attributes:
        params: the fitted parameters.
        options: keyword options of `prepare` used in calibration, reused by `dose` (static).
        info: how it was calibrated: scenario names, loss before and after, steps (static).
    """

    params: PriorParams = PriorParams()
    options: FrozenDict = eqx.field(static=True, default=FrozenDict(), converter=lambda d: FrozenDict(dict(d)))
    info: FrozenDict = eqx.field(static=True, default=FrozenDict(), converter=lambda d: FrozenDict(dict(d)))

    @classmethod
    def default(cls) -> "Prior":
        """physdose's own calibration against MC (see its `info`), or an uncalibrated Prior without one."""
        record = calibration_record()
        return cls() if record is None else cls._from_record(record)

    @classmethod
    def _from_record(cls, record: dict) -> "Prior":
        return cls(PriorParams(**record["params"]), record["options"], record["info"])

    def dose(self, phantom: Phantom, source, **overrides) -> PriorDose:
        """`physdose.prior.dose` with these parameters and options (`overrides` replace options)."""
        return dose(phantom, source, self.params, **{**self.options, **overrides})

    def save(self, path: str | os.PathLike) -> None:
        """Write the prior as JSON (atomically)."""
        record = {
            "format": FORMAT,
            "params": {k: np.asarray(v).tolist() for k, v in vars(self.params).items()},
            "options": dict(self.options),
            "info": dict(self.info),
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Prior":
        """Read a prior written by `save`."""
        record = json.loads(Path(path).read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"{path} is not a physdose prior file (format {record.get('format')!r})")
        return cls._from_record(record)


def fit(
    loss: Callable[[PyTree], Array],
    init: PyTree,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    progress: bool = True,
    description: str = "fit",
) -> tuple[PyTree, np.ndarray]:
    """Minimise `loss(params)` over the array leaves of `init` with Adam; the best iterate is returned.

    The machinery behind `calibrate`, and for small inverse problems with the prior (e.g.
    recover the added filtration of a tube from a measured depth-dose profile).

    Returns:
        (best parameters, loss history of shape (steps,)).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    optimiser = optax.adam(learning_rate)
    params, static = eqx.partition(init, eqx.is_inexact_array)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(lambda p: loss(eqx.combine(p, static)))(params)
        updates, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state = optimiser.init(params)
    history = np.empty(steps)
    best, best_value = params, np.inf
    for i in tqdm(range(steps), desc=description, disable=not progress):
        new, state, value = step(params, state)
        history[i] = float(value)
        if not np.isfinite(history[i]):
            raise FloatingPointError(f"loss became {history[i]} at step {i}; lower learning_rate")
        if history[i] < best_value:  # `value` belongs to `params`, before this update
            best, best_value = params, history[i]
        params = new
    return eqx.combine(best, static), history


def calibrate(
    scenarios: Sequence[tuple[Phantom, object]],
    mc_results: Sequence[MCResult | Mapping],
    params: PriorParams | None = None,
    *,
    key: PRNGKeyArray,
    steps: int = 200,
    learning_rate: float = 0.05,
    points: int = 1024,
    organ_points: int = 32,
    noise_floor: float = 0.03,
    max_rel_sigma: float = 0.2,
    organ_max_rel_sigma: float = 0.05,
    air_bands_mm: Sequence[float] = AIR_BANDS_MM,
    names: Sequence[str] | None = None,
    progress: bool = True,
    **options,
) -> Prior:
    """Fit the prior's parameters to Monte Carlo doses of several scenarios.

    Loss: for each scenario, the mean squared log ratio prior/MC over `points` voxels drawn
    from those with MC dose above 1 % of the maximum and relative uncertainty below
    `max_rel_sigma` (not in a shielding material), plus the same over the organs of the MC reference: the mass-weighted
    mean dose over up to `organ_points` voxels drawn per organ, of the prior and of the MC
    alike (a sample is not the organ's mean where the dose falls across it), where the MC's
    sample mean is known within `organ_max_rel_sigma` (organs made mostly of a shielding
    material are left out: a lead apron's own dose is no tissue dose), plus the same over the
    air outside the beam in bands of distance from the body (`air_bands_mm`; the mean dose of
    each band, known within `max_rel_sigma`: the air kerma of photons that left the body,
    which fits the prior's `escape`; a single air voxel of an MC run is mostly empty);
    each term is weighted by 1 / (sigma^2 + noise_floor^2), and scenarios count equally. The
    parameter-independent part of the prior is computed once per scenario.

    Args:
        scenarios: (phantom, source) pairs.
        mc_results: per scenario an MCResult (all the phantom's organs are fitted), or a
            mapping with "dose_gy" and "rel_sigma" arrays on the phantom grid and optionally
            the organs to fit: "organ_names", or the names that key "organ_dose_gy".
        params: starting parameters (default `PriorParams()`).
        key: PRNG key for the voxel samples.
        steps, learning_rate: Adam iterations and step size.
        points: voxels sampled per scenario.
        air_bands_mm: where the distance bands of the air term begin (mm; empty: no air term).
        names: scenario names recorded in the result.
        **options: keyword options of `prepare`, kept in the returned Prior.

    Returns:
        The calibrated Prior; `info` holds the loss before and after.
    """
    if len(scenarios) != len(mc_results) or not scenarios:
        raise ValueError(
            f"scenarios and mc_results must be non-empty and of equal length,"
            f" got {len(scenarios)} and {len(mc_results)}"
        )
    params = PriorParams() if params is None else params
    cases = []
    keys = jax.random.split(key, len(scenarios))
    samples = _Samples(points, organ_points, tuple(air_bands_mm), noise_floor, max_rel_sigma, organ_max_rel_sigma)
    for (phantom, source), mc, k in zip(scenarios, mc_results, keys):
        scene = prepare(phantom, source, **options)
        ref = _reference(mc, phantom)
        cases.append(_case(scene, phantom, ref, k, samples, params))

    def loss(p):
        return sum(_case_loss(scene, p, case) for scene, case in cases) / len(cases)

    before = float(jax.jit(loss)(params))
    best, history = fit(
        loss, params, steps=steps, learning_rate=learning_rate, progress=progress, description="calibrate"
    )
    info = {
        "scenarios": list(names) if names is not None else [f"scenario {i}" for i in range(len(scenarios))],
        "loss_before": before,
        "loss_after": float(np.min(history)),
        "steps": steps,
    }
    return Prior(best, options, info)


def _reference(mc, phantom: Phantom) -> dict:
    """The MC dose, its relative uncertainty (on the grid) and the names of the organs to fit."""
    if isinstance(mc, MCResult):
        organs = list(phantom.organs)
        return {"dose_gy": np.asarray(mc.dose_gy), "rel_sigma": np.asarray(mc.rel_sigma), "organs": organs}
    if not isinstance(mc, Mapping) or "dose_gy" not in mc or "rel_sigma" not in mc:
        raise TypeError("each of mc_results must be an MCResult or a mapping with 'dose_gy' and 'rel_sigma'")
    organs = mc["organ_dose_gy"] if isinstance(mc.get("organ_dose_gy"), Mapping) else mc.get("organ_names", [])
    out = {"dose_gy": np.asarray(mc["dose_gy"]), "rel_sigma": np.asarray(mc["rel_sigma"]), "organs": list(organs)}
    if out["dose_gy"].shape != phantom.grid.shape:
        raise ValueError(f"mc dose_gy has shape {out['dose_gy'].shape}, the phantom grid {phantom.grid.shape}")
    return out


class _Samples(NamedTuple):
    """How `calibrate` samples each scenario (see there)."""

    points: int
    organ_points: int
    air_bands_mm: tuple[float, ...]
    floor: float
    max_sigma: float
    organ_max_sigma: float


def _weighted_mean(m: np.ndarray, d: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """Weighted mean of doses `d` (weights `m`) and its relative uncertainty from the voxels' `sigma`
    (inf where the mean is 0; a voxel without MC dose has no finite sigma and adds none)."""
    value = np.sum(m * d) / np.sum(m)
    spread = m * d * np.where(d > 0, sigma, 0.0)
    return value, (np.sqrt(np.sum(spread**2)) / np.sum(m * d) if value > 0 else np.inf)


def air_bands(phantom: Phantom, primary: np.ndarray, edges_mm: Sequence[float]) -> np.ndarray:
    """Band of each voxel of air outside the beam (no primary dose) by its distance from the body
    (voxels denser than 0.1 g/cm^3): i from `edges_mm[i]` to the next edge (the last band has none),
    else -1 (also nearer than the first edge); shape (z, y, x) int."""
    rho = np.asarray(phantom.density_g_cm3)
    body = rho > 0.1
    if not body.any() or not len(edges_mm):
        return np.full(rho.shape, -1)
    distance = ndimage.distance_transform_edt(~body, sampling=phantom.grid.spacing_mm)
    outside = (rho < 0.01) & (primary <= 1e-6 * primary.max())
    return np.where(outside, np.digitize(distance, edges_mm) - 1, -1)


def _case(scene: Scene, phantom: Phantom, ref: dict, key, samples: _Samples, params: PriorParams):
    """Sample voxels, organs and air bands of one scenario for the calibration loss."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    n_pick, organ_points, floor = samples.points, samples.organ_points, samples.floor
    d, sigma = ref["dose_gy"], ref["rel_sigma"]
    rho = np.asarray(phantom.density_g_cm3)
    shield = shields(phantom.materials)[np.asarray(phantom.material_ids)]
    tissue = (rho > 0.05) & ~shield
    ok = tissue & (d > 0.01 * np.percentile(d[tissue & (d > 0)], 99.9)) & (sigma < samples.max_sigma)
    candidates = np.argwhere(ok)
    pick = candidates[rng.choice(len(candidates), min(n_pick, len(candidates)), replace=False)]
    voxel_w = 1.0 / (sigma[tuple(pick.T)] ** 2 + floor**2)
    labels = np.asarray(phantom.organ_labels)
    mass = np.asarray(phantom.voxel_mass_g())
    organ_idx, organ_w, organ_ref, organ_mass = [], [], [], []
    for name in ref["organs"]:
        if name not in phantom.organs:
            continue
        vox = np.argwhere(labels == phantom.organs[name])
        if not len(vox) or shield[tuple(vox.T)].mean() > 0.5:  # a lead apron's own dose is no tissue dose
            continue
        vox = vox[rng.choice(len(vox), min(organ_points, len(vox)), replace=False)]
        # the MC's mean over the same voxels: a sample of an organ the dose falls across is not its mean
        m = mass[tuple(vox.T)]
        value, s = _weighted_mean(m, d[tuple(vox.T)], sigma[tuple(vox.T)])
        if not s < samples.organ_max_sigma:
            continue
        organ_idx.append(np.pad(vox, ((0, organ_points - len(vox)), (0, 0)), mode="edge"))
        organ_mass.append(np.pad(m, (0, organ_points - len(m))))
        organ_ref.append(value)
        organ_w.append(1.0 / (s**2 + floor**2))
    case = {
        "index": pick,  # NumPy: voxel indices stay concrete under jit
        "ref": jnp.asarray(d[tuple(pick.T)]),
        "w": jnp.asarray(voxel_w / voxel_w.sum()),
    }
    # air: the MC's mean over each whole band against the prior's over `AIR_POINTS` of its voxels, times
    # the band's mean over that sample's mean as the starting parameters give them (the band's profile
    # hardly moves with the parameters; the whole grid at every step made a step 6 times slower)
    bands = air_bands(phantom, np.asarray(scene.primary), samples.air_bands_mm)
    air_idx, air_ref, air_w, start = [], [], [], None
    for band in range(len(samples.air_bands_mm)):
        m = bands == band
        value, s = _weighted_mean(np.ones(m.sum()), d[m], sigma[m]) if m.any() else (0.0, np.inf)
        if not s < samples.max_sigma:
            continue
        start = np.asarray(scene.dose(params).total) if start is None else start
        vox = np.argwhere(m)
        vox = vox[rng.choice(len(vox), AIR_POINTS, replace=len(vox) < AIR_POINTS)]
        air_idx.append(vox)
        air_ref.append(value * start[tuple(vox.T)].mean() / start[m].mean())
        air_w.append(1.0 / (s**2 + floor**2))
    for part, idx, masses, values, weights in (
        ("organ", organ_idx, organ_mass, organ_ref, organ_w),
        ("air", air_idx, [np.ones(AIR_POINTS)] * len(air_idx), air_ref, air_w),
    ):
        if idx:
            w = np.asarray(weights)
            case[part] = {
                "index": np.concatenate(idx),
                "mass": jnp.asarray(np.stack(masses)),
                "ref": jnp.asarray(values),
                "w": jnp.asarray(w / w.sum()),
            }
    return scene, case


def _case_loss(scene: Scene, params: PriorParams, case: dict) -> Array:
    """Weighted mean squared log ratio prior / MC over the voxels, plus that of the (mass-weighted) means
    of the organs and air bands."""
    groups = [case[part] for part in ("organ", "air") if part in case]
    total = scene.dose_at(params, np.concatenate([case["index"]] + [g["index"] for g in groups])).total
    n = case["index"].shape[0]
    loss = _log_loss(total[:n], case["ref"], case["w"])
    for g in groups:
        values = total[n : n + g["index"].shape[0]].reshape(g["mass"].shape)
        n += g["index"].shape[0]
        loss = loss + _log_loss(jnp.sum(values * g["mass"], 1) / jnp.sum(g["mass"], 1), g["ref"], g["w"])
    return loss


def _log_loss(values: Array, ref: Array, w: Array) -> Array:
    """sum w ln(values / ref)^2."""
    return jnp.sum(w * jnp.log(jnp.maximum(values, 1e-37) / ref) ** 2)
