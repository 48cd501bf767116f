"""High-statistics Monte Carlo reference doses for calibrating and evaluating the physics prior.

Eleven scenarios (CT organ dose in synthetic patients and the TG-195 Case 5 torso; staff dose
in the interventional room), each `name -> (phantom, source, mc_kwargs)` with a role
("calibration": the prior's free parameters may be fitted to it; "evaluation": held out) and
a photon count. Doses are per source photon, as `physdose.mc.simulate` returns them.

Each scenario is simulated as `runs` independent `simulate` calls (n_photons / runs photons
each, key `fold_in(key(seed), run)`, one batch each); the runs are the statistical batches:
voxel, organ and Hp uncertainties are the standard error of the photon-weighted mean over
the runs (the batch method of `simulate`, with the runs as batches). Because the spread is
taken of each run's Hp(d) value itself, the Hp uncertainty carries the correlations between
the voxels the dosimeter disk averages (unlike the fully-correlated bound from the voxel
sigmas, which is stored too, as `hp*_rel_sigma_voxel_bound`). Partial sums are saved after
every run (`<name>.partial.npz`), so an interrupted scenario resumes where it stopped with
the same result.

Output, one file per scenario, written atomically and skipped if present:
`benchmarks/.cache/prior_mc/<name>.npz` with

* ``dose_gy``, ``rel_sigma``, ``energy_kev``, ``density_g_cm3`` (float32, the phantom grid
  shape; rel_sigma inf where nothing was deposited), ``grid_shape``, ``grid_spacing_mm``,
  ``grid_origin_mm``;
* ``organ_names``, ``organ_energy_kev``, ``organ_rel_sigma``, ``organ_mass_g``,
  ``organ_dose_gy`` (= organ energy / organ mass, masses from `Phantom.organ_masses_g`);
* ``n_photons``, ``runs``, ``seconds`` (simulation wall time, summed over resumed sessions),
  ``seed``, ``role``, ``incident_kev``, ``escaped_kev``, ``medium_kev``, ``info`` (JSON of the
  scenario parameters);
* staff scenes: ``hp_sites`` (the room's ``physician/...`` points) and, for d = 10, 3 and
  0.07 mm, ``hp{10,3,007}_sv`` (per source photon, read from the mean dose by
  `physdose.dosimetry.hp`, 10 mm disk), ``hp*_rel_sigma`` (spread over the runs, see above)
  and ``hp*_rel_sigma_voxel_bound`` (hp's fully-correlated bound from the voxel sigmas);
  ``air_sites`` (the sites on a shield, `AIR_KERMA_SITES`), ``air_kerma_gy`` and
  ``air_kerma_rel_sigma``: the air kerma per source photon arriving at a dosimeter worn
  there, scored by a `DiskScorer` (`AIR_DISK_MM`: 1 mm in front of the shield, 20 mm
  radius, track-crossing estimator, both directions of flight).

    python benchmarks/prior_scenarios.py [--only NAME ...] [--scale 1.0] [--out DIR] [--runs N]

Other scripts in this folder: ``from prior_scenarios import build, load_reference, SCENARIOS``.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import physdose as pd
from physdose._atomic import atomic_path
from physdose.units import KEV_TO_J

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "prior_mc"
CASE5_PATH = HERE.parents[1] / "shared" / "reference" / "tg195_case5_phantom.tar.gz"
SPACING_MM = 8.0
HP_DEPTHS = {"hp10": 10.0, "hp3": 3.0, "hp007": 0.07}
#: Staff sites on a shield: a dosimeter there reads the air kerma arriving at it, scored by a disk
#: AIR_DISK_MM = (gap, radius) in front of the shield (see `physdose.dosimetry.air_kerma`).
AIR_KERMA_SITES = ("physician/chest_over_apron", "physician/collar")
AIR_DISK_MM = (1.0, 20.0)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    role: str  # "calibration" or "evaluation"
    n_photons: int
    seed: int
    builder: Callable[[], tuple]  # () -> (phantom, source, mc_kwargs, info)
    lanes: int = 16384
    runs: int = 20

    @property
    def staff(self) -> bool:
        return self.name.startswith("staff")


# --------------------------------------------------------------------------------------------
# Scene builders
# --------------------------------------------------------------------------------------------


def organ_z_center_mm(phantom, organ: str) -> float:
    """Voxel-count-weighted mean z (mm) of an organ."""
    z = np.asarray(phantom.grid.axes_mm()[0], np.float64)
    per_slice = np.asarray(phantom.mask(organ)).sum(axis=(1, 2))
    return float(np.average(z, weights=per_slice))


def _helical_ct(key: int, sex: str, kvp: float, organs: tuple[str, ...], length_mm: float):
    phantom = pd.phantoms.synthetic_patient(key=jax.random.key(key), sex=sex, spacing_mm=SPACING_MM)
    centers = {o: round(organ_z_center_mm(phantom, o), 1) for o in organs}
    zc = round(float(np.mean(list(centers.values()))), 1)
    spectrum = pd.Spectrum.from_tube(kvp, {"Al": 2.5})
    source = pd.sources.CTScan(
        spectrum,
        start_z_mm=zc - length_mm / 2,
        end_z_mm=zc + length_mm / 2,
        helical=True,
        pitch=1.0,
        collimation_mm=40.0,
        views_per_rotation=36,
        bowtie=pd.sources.Bowtie.body(),
    )
    lo, hi = phantom.grid.bounds_mm
    info = {
        "phantom": f"synthetic_patient(key={key}, sex={sex!r}, spacing_mm={SPACING_MM})",
        "grid_shape": list(phantom.grid.shape),
        "phantom_z_mm": [lo[0], hi[0]],
        "source": "helical CTScan, pitch 1, 40 mm collimation, 36 views/rotation, body bowtie, 600 mm SID-iso",
        "kvp": kvp,
        "filtration": {"Al": 2.5},
        "centred_on": centers,
        "scan_z_center_mm": zc,
        "source_z_mm": [round(zc - length_mm / 2, 1), round(zc + length_mm / 2, 1)],
        "irradiated_z_mm": [round(zc - length_mm / 2 - 20.0, 1), round(zc + length_mm / 2 + 20.0, 1)],
        "num_views": source.num_views,
    }
    return phantom, source, {}, info


def _tg195_torso():
    phantom = pd.phantoms.tg195_case5(CASE5_PATH).resample((SPACING_MM,) * 3)  # resample(8.0) wants a triple
    grid = phantom.grid
    zs, ys, xs = (np.asarray(a, np.float64) for a in grid.axes_mm())
    body = np.asarray(phantom.organ_labels) > 0  # organs 3-19: the torso without the table and foam
    iz, iy, ix = (np.flatnonzero(body.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    half = np.asarray(grid.spacing_mm) / 2
    z_lo, z_hi = zs[iz[0]] - half[0], zs[iz[-1]] + half[0]
    y_c = 0.5 * (ys[iy[0]] + ys[iy[-1]])
    x_c = 0.5 * (xs[ix[0]] + xs[ix[-1]])
    z_c = float(0.5 * (z_lo + z_hi))
    source = pd.sources.CTScan(
        pd.Spectrum.from_tube(120.0, {"Al": 2.5}),
        start_z_mm=z_c,
        end_z_mm=z_c,
        helical=False,
        pitch=1.0,
        collimation_mm=40.0,
        views_per_rotation=36,
        isocenter_yx_mm=(float(y_c), float(x_c)),
        bowtie=pd.sources.Bowtie.body(),
    )
    # geometry checks: the whole torso inside the 500 mm field of view, the grid inside the source orbit
    yy, xx = np.meshgrid(ys - y_c, xs - x_c, indexing="ij")
    r_body = float(np.hypot(yy, xx)[body.any(axis=0)].max() + np.hypot(*half[1:]))
    lo, hi = grid.bounds_mm
    r_grid = float(max(np.hypot(y - y_c, x - x_c) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])))
    if not r_body < source.fov_mm / 2 or not r_grid < source.source_isocenter_mm:
        raise ValueError(
            f"TG-195 torso does not fit the CT: body radius {r_body:.0f} mm (fov/2 {source.fov_mm / 2}),"
            f" grid corner {r_grid:.0f} mm (source at {source.source_isocenter_mm})"
        )
    info = {
        "phantom": f"tg195_case5({CASE5_PATH.name}).resample(({SPACING_MM},) * 3)",
        "grid_shape": list(grid.shape),
        "phantom_z_mm": [lo[0], hi[0]],
        "torso_z_mm": [float(z_lo), float(z_hi)],
        "source": "axial CTScan, one rotation, 40 mm collimation, 36 views, body bowtie, 600 mm source-iso",
        "kvp": 120.0,
        "filtration": {"Al": 2.5},
        "scan_z_center_mm": float(z_c),
        "irradiated_z_mm": [float(z_c) - 20.0, float(z_c) + 20.0],
        "isocenter_yx_mm": [float(y_c), float(x_c)],
        "torso_max_radius_mm": r_body,
        "grid_corner_radius_mm": r_grid,
        "num_views": source.num_views,
    }
    return phantom, source, {}, info


def _room_splitting(room) -> tuple:
    """ScatterSplitting toward the physician's eyes and chest, as in mc_variance_reduction.py."""
    eyes = np.mean([room.points[f"physician/{s}_eye"][0] for s in ("left", "right")], axis=0)
    chest = np.asarray(room.points["physician/chest_over_apron"][0])
    center = 0.5 * (eyes + chest)
    radius = 0.5 * float(np.linalg.norm(eyes - chest)) + 150.0
    return pd.mc.ScatterSplitting(tuple(center), radius), center, radius


def _staff(kvp: float, lao_deg: float, cra_deg: float):
    physician = pd.phantoms.physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35, thyroid_collar=True)
    room = pd.phantoms.ir_room(physician=physician, spacing_mm=10.0)
    source = pd.sources.CArm(
        pd.Spectrum.from_tube(kvp, {"Al": 3.5}), lao_deg=lao_deg, cra_deg=cra_deg, field_mm=(250.0, 250.0)
    )
    splitting, center, radius = _room_splitting(room)
    info = {
        "phantom": "ir_room(physician=physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35, thyroid_collar=True),"
        " spacing_mm=10.0)",
        "grid_shape": list(room.grid.shape),
        "source": f"CArm {kvp} kVp + 3.5 mm Al, lao {lao_deg} deg, cra {cra_deg} deg, 250 x 250 mm field",
        "kvp": kvp,
        "filtration": {"Al": 3.5},
        "lao_deg": lao_deg,
        "cra_deg": cra_deg,
        "splitting_center_mm": [float(v) for v in center],
        "splitting_radius_mm": radius,
    }
    return room, source, {"splitting": splitting}, info


# Rates measured on the 2-core CPU: CT on 8 mm grids 2.6-3.5e5 photons/s (16384 lanes), so 4e7 photons
# per CT scenario in 2-2.6 min; the room with ScatterSplitting 2.4-2.8e4 photons/s, 1.28e7 per staff
# scene in 8-9 min. At 4e7 photons the voxels that the gamma test evaluates have a median sigma of
# 3.6-3.7 %, near its 3 % criterion (at 1e7, 7.3-7.5 %: `prior_vs_mc.py noise` scores what that
# allows); at 1.28e7 the eyes' Hp(10) has 4.6-7.9 % (at 3.2e6, 8-17 %).
CT_PHOTONS = 40_000_000
STAFF_PHOTONS = 12_800_000

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "ct_chest_f1", "calibration", CT_PHOTONS, 101, lambda: _helical_ct(1, "female", 120.0, ("lungs",), 120)
        ),
        Scenario(
            "ct_abdomen_m2",
            "calibration",
            CT_PHOTONS,
            102,
            lambda: _helical_ct(2, "male", 100.0, ("liver", "kidneys"), 120),
        ),
        Scenario(
            "ct_abdomen_m7",
            "calibration",
            CT_PHOTONS,
            110,
            lambda: _helical_ct(7, "male", 80.0, ("liver", "kidneys"), 120),
        ),
        Scenario("staff_rao20_100", "evaluation", STAFF_PHOTONS, 111, lambda: _staff(100.0, -20.0, -15.0)),
        Scenario("staff_pa80", "evaluation", STAFF_PHOTONS, 105, lambda: _staff(80.0, 0.0, 0.0)),
        Scenario(
            "ct_abdomen_f3",
            "evaluation",
            CT_PHOTONS,
            103,
            lambda: _helical_ct(3, "female", 120.0, ("kidneys", "stomach"), 160),
        ),
        Scenario("ct_chest_m4", "evaluation", CT_PHOTONS, 104, lambda: _helical_ct(4, "male", 80.0, ("lungs",), 120)),
        Scenario(
            "ct_abdomen_f5", "evaluation", CT_PHOTONS, 108, lambda: _helical_ct(5, "female", 80.0, ("liver",), 120)
        ),
        Scenario("ct_chest_f6", "evaluation", CT_PHOTONS, 109, lambda: _helical_ct(6, "female", 80.0, ("lungs",), 120)),
        Scenario("ct_tg195_torso", "evaluation", CT_PHOTONS, 106, _tg195_torso),
        Scenario("staff_lao30_90", "evaluation", STAFF_PHOTONS, 107, lambda: _staff(90.0, 30.0, 10.0)),
    )
}
#: calibration scenarios first
ORDER = [n for n, s in SCENARIOS.items() if s.role == "calibration"] + [
    n for n, s in SCENARIOS.items() if s.role == "evaluation"
]


def _scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {list(SCENARIOS)}")
    return SCENARIOS[name]


def build(name: str) -> tuple:
    """(phantom, source, mc_kwargs) of scenario `name` (mc_kwargs: extra kwargs of `pd.mc.simulate`)."""
    phantom, source, kwargs, _ = _scenario(name).builder()
    return phantom, source, kwargs


def describe(name: str) -> dict:
    """The scenario's parameters (role, photons, geometry choices) as a dict."""
    s = _scenario(name)
    *_, info = s.builder()
    return {"name": name, "role": s.role, "n_photons": s.n_photons, "seed": s.seed, **info}


def reference_path(name: str, out: str | os.PathLike = CACHE) -> Path:
    return Path(out) / f"{name}.npz"


def load_reference(name: str, out: str | os.PathLike = CACHE) -> dict:
    """The stored MC reference of scenario `name` as a dict of numpy arrays (``info`` parsed from JSON)."""
    path = reference_path(_scenario(name).name, out)
    if not path.exists():
        raise FileNotFoundError(f"no MC reference for {name!r} at {path}; run benchmarks/prior_scenarios.py")
    with np.load(path, allow_pickle=False) as f:
        ref = {k: f[k] for k in f.files}
    ref["info"] = json.loads(str(ref["info"]))
    ref["role"] = str(ref["role"])
    ref["organ_names"] = [str(n) for n in ref["organ_names"]]
    for sites in ("hp_sites", "air_sites"):
        if sites in ref:
            ref[sites] = [str(n) for n in ref[sites]]
    return ref


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _save_atomic(path: Path, compress: bool = False, **arrays) -> None:
    with atomic_path(path) as tmp:  # tmp keeps the .npz suffix, so savez writes exactly there
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
        os.chmod(tmp, 0o644)


def _mean_rel_sigma(total: np.ndarray, squares: np.ndarray, counts: list[int]):
    """Photon-weighted mean over runs and its relative standard error (batch method, runs as batches)."""
    n = float(sum(counts))
    mean = total / n
    if len(counts) < 2:
        return mean, np.full_like(mean, np.inf)
    var_batch = np.maximum(squares / n - mean**2, 0.0)
    var_mean = var_batch * (sum(c * c for c in counts) / n**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean, np.where(mean > 0, np.sqrt(var_mean) / mean, np.inf)


def _hp_values(dose, phantom, sites) -> np.ndarray:
    """(quantity, site) Hp(d) per source photon read from `dose`; NaN where it cannot be read."""
    out = np.full((len(HP_DEPTHS), len(sites)), np.nan)
    for i, depth in enumerate(HP_DEPTHS.values()):
        for j, site in enumerate(sites):
            try:
                out[i, j] = float(pd.dosimetry.hp(dose, phantom, site, depth).hp_sv)
            except ValueError:
                pass
    return out


def generate(
    name: str, *, scale: float = 1.0, out: str | os.PathLike = CACHE, runs: int | None = None, seed: int | None = None
) -> Path:
    """Simulate scenario `name` and write its reference file (skipped if it exists); resumable.

    `seed`: instead of the scenario's own, for an independent twin of its reference.
    """
    s = _scenario(name)
    s = s if seed is None else dataclasses.replace(s, seed=seed)
    path = reference_path(name, out)
    if path.exists():
        print(f"[{name}] exists: {path}", flush=True)
        return path
    runs = runs or s.runs
    n_total = max(runs, int(round(s.n_photons * scale)))
    counts = [n_total // runs + (1 if i < n_total % runs else 0) for i in range(runs)]
    phantom, source, kwargs, info = s.builder()
    sites = [k for k in phantom.points if k.startswith("physician/")] if s.staff else []
    air_sites = [k for k in AIR_KERMA_SITES if k in phantom.points] if s.staff else []
    gap, radius = AIR_DISK_MM
    disks = tuple(
        pd.mc.DiskScorer(np.add(p, gap * np.asarray(n)), n, radius) for p, n in (phantom.points[k] for k in air_sites)
    )
    organs = list(phantom.organs)
    shape = phantom.grid.shape
    fingerprint = json.dumps(
        {"n": n_total, "runs": runs, "seed": s.seed, "lanes": s.lanes, "shape": list(shape), "air": air_sites}
    )

    partial = Path(out) / f"{name}.partial.npz"
    acc = {
        "dose": np.zeros(shape),
        "dose_sq": np.zeros(shape),
        "energy": np.zeros(shape),
        "organ": np.zeros(len(organs)),
        "organ_sq": np.zeros(len(organs)),
        "hp": np.zeros((len(HP_DEPTHS), len(sites))),
        "hp_sq": np.zeros((len(HP_DEPTHS), len(sites))),
        "air": np.zeros(len(air_sites)),
        "air_sq": np.zeros(len(air_sites)),
        "totals": np.zeros(3),  # incident, escaped, medium (keV, photon-weighted sums)
    }
    done, seconds = 0, 0.0
    if partial.exists():
        with np.load(partial, allow_pickle=False) as f:
            if str(f["fingerprint"]) == fingerprint:
                acc = {k: f[k] for k in acc}
                done, seconds = int(f["done"]), float(f["seconds"])
                print(f"[{name}] resuming after run {done}/{runs} ({seconds:.0f} s so far)", flush=True)
            else:
                print(f"[{name}] ignoring {partial.name} (other settings)", flush=True)

    print(
        f"[{name}] {s.role}: {n_total:.3g} photons in {runs} runs, grid {shape}; "
        + json.dumps({k: v for k, v in info.items() if k not in ("phantom", "source")}),
        flush=True,
    )
    from tqdm import tqdm

    bar = tqdm(
        total=n_total,
        initial=sum(counts[:done]),
        desc=name,
        unit="ph",
        unit_scale=True,
        mininterval=5.0,
        file=sys.stderr,
    )
    key = jax.random.key(s.seed)
    for i in range(done, runs):
        t0 = time.perf_counter()
        r = pd.mc.simulate(
            phantom,
            source,
            n_photons=counts[i],
            key=jax.random.fold_in(key, i),
            n_batches=1,
            lanes=s.lanes,
            disks=disks,
            **kwargs,
        )
        c = counts[i]
        d = np.asarray(r.dose_gy, np.float64)
        acc["dose"] += c * d
        acc["dose_sq"] += c * d**2
        acc["energy"] += c * np.asarray(r.energy_imparted_kev, np.float64)
        o = np.asarray([r.organ_energy_kev[k] for k in organs])
        acc["organ"] += c * o
        acc["organ_sq"] += c * o**2
        if sites:
            h = np.nan_to_num(_hp_values(r.dose_gy, phantom, sites))
            acc["hp"] += c * h
            acc["hp_sq"] += c * h**2
        if disks:
            k = np.asarray(r.disks[:, 2], np.float64)
            acc["air"] += c * k
            acc["air_sq"] += c * k**2
        acc["totals"] += c * np.asarray([r.incident_kev, r.escaped_kev, r.medium_kev])
        seconds += time.perf_counter() - t0
        _save_atomic(partial, fingerprint=fingerprint, done=i + 1, seconds=seconds, **acc)
        bar.update(c)
    bar.close()

    dose, rel = _mean_rel_sigma(acc["dose"], acc["dose_sq"], counts)
    organ_e, organ_rel = _mean_rel_sigma(acc["organ"], acc["organ_sq"], counts)
    masses = phantom.organ_masses_g()
    mass = np.asarray([masses[k] for k in organs])
    with np.errstate(divide="ignore", invalid="ignore"):
        organ_dose = np.where(mass > 0, organ_e * KEV_TO_J / (mass * 1e-3), 0.0)
    result = {
        "dose_gy": dose.astype(np.float32),
        "rel_sigma": rel.astype(np.float32),
        "energy_kev": (acc["energy"] / n_total).astype(np.float32),
        "density_g_cm3": np.asarray(phantom.density_g_cm3, np.float32),
        "grid_shape": np.asarray(shape),
        "grid_spacing_mm": np.asarray(phantom.grid.spacing_mm),
        "grid_origin_mm": np.asarray(phantom.grid.origin_mm),
        "organ_names": np.asarray(organs),
        "organ_energy_kev": organ_e,
        "organ_rel_sigma": organ_rel,
        "organ_mass_g": mass,
        "organ_dose_gy": organ_dose,
        "n_photons": np.asarray(n_total),
        "runs": np.asarray(runs),
        "seconds": np.asarray(seconds),
        "seed": np.asarray(s.seed),
        "role": np.asarray(s.role),
        "incident_kev": np.asarray(acc["totals"][0] / n_total),
        "escaped_kev": np.asarray(acc["totals"][1] / n_total),
        "medium_kev": np.asarray(acc["totals"][2] / n_total),
        "info": np.asarray(json.dumps({"name": name, "role": s.role, "lanes": s.lanes, **info})),
    }
    if sites:
        result["hp_sites"] = np.asarray(sites)
        _, hp_rel = _mean_rel_sigma(acc["hp"], acc["hp_sq"], counts)
        with np.errstate(invalid="ignore"):
            sigma = np.where(dose > 0, dose * rel, 0.0).astype(np.float32)
        for i, (q, depth) in enumerate(HP_DEPTHS.items()):
            value = np.full(len(sites), np.nan)
            bound = np.full(len(sites), np.nan)
            for j, site in enumerate(sites):
                try:
                    p = pd.dosimetry.hp(dose.astype(np.float32), phantom, site, depth, sigma=sigma)
                except ValueError:
                    continue
                value[j] = float(p.hp_sv)
                bound[j] = float(p.sigma_sv) / float(p.hp_sv) if float(p.hp_sv) > 0 else np.inf
            result[f"{q}_sv"] = value
            result[f"{q}_rel_sigma"] = np.where(np.isnan(value), np.nan, hp_rel[i])
            result[f"{q}_rel_sigma_voxel_bound"] = bound
    if air_sites:
        result["air_sites"] = np.asarray(air_sites)
        result["air_kerma_gy"], result["air_kerma_rel_sigma"] = _mean_rel_sigma(acc["air"], acc["air_sq"], counts)
    _save_atomic(path, compress=True, **result)
    partial.unlink(missing_ok=True)
    print(f"[{name}] wrote {path} ({seconds:.0f} s, {n_total / seconds:.3g} photons/s)", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def summary_row(name: str, out: str | os.PathLike = CACHE) -> str:
    ref = load_reference(name, out)
    dose, rel = ref["dose_gy"], ref["rel_sigma"]
    od, orel = ref["organ_dose_gy"], ref["organ_rel_sigma"]
    # in-field organs: mean dose >= 10 % of the highest organ dose
    in_field = od >= 0.1 * od.max()
    max_organ = float(np.max(orel[in_field]))
    # voxels of matter (not air: a rare deposit in a 1 mg air voxel makes a huge, noisy dose)
    matter = ref["density_g_cm3"] > 0.1
    high = matter & (dose > 0.1 * dose[matter].max())
    med_voxel = float(np.median(rel[high]))
    n, sec = int(ref["n_photons"]), float(ref["seconds"])
    extra = ""
    if "hp_sites" in ref:
        phys = [i for i, k in enumerate(ref["organ_names"]) if k.startswith("physician/")]
        extra = f"  physician organs max {100 * np.max(orel[phys]):.1f} %; Hp(10) rel sigma " + ", ".join(
            f"{s.split('/')[1]} {100 * v:.1f} %" for s, v in zip(ref["hp_sites"], ref["hp10_rel_sigma"])
        )
    return (
        f"{name:<16}{ref['role']:<13}{n:>11.3g}{sec:>9.0f}{n / sec:>11.3g}"
        f"{100 * max_organ:>9.2f} ({int(in_field.sum())}){100 * med_voxel:>10.2f}{extra}"
    )


def print_summary(names, out: str | os.PathLike = CACHE) -> None:
    print(
        f"\n{'scenario':<16}{'role':<13}{'photons':>11}{'seconds':>9}{'photons/s':>11}{'organ %':>9} (n){'voxel %':>10}"
    )
    print("(organ %: max rel sigma over in-field organs, those with >= 10 % of the top organ dose, n of them;")
    print(" voxel %: median rel sigma of the voxels above 10 % of the maximum dose, both over voxels > 0.1 g/cm3)")
    for name in names:
        if reference_path(name, out).exists():
            print(summary_row(name, out))
        else:
            print(f"{name:<16}(missing)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="scenarios to generate (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every scenario's photon count")
    parser.add_argument("--out", type=Path, default=CACHE, help=f"output folder (default {CACHE})")
    parser.add_argument("--runs", type=int, default=None, help="independent runs per scenario (default 20)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of what exists")
    args = parser.parse_args(argv)
    names = [n for n in ORDER if args.only is None or n in args.only]
    print(f"physdose {pd.__version__}, jax {jax.__version__}, devices {jax.devices()}, out {args.out}", flush=True)
    if not args.summary:
        for name in names:
            generate(name, scale=args.scale, out=args.out, runs=args.runs)
    print_summary(names, args.out)


if __name__ == "__main__":
    main()
