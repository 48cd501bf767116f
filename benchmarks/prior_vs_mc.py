"""The physics prior against the Monte Carlo: speed (one run, ratio) and accuracy (held-out scenarios).

speed     A 4 mm synthetic patient, helical 120 kVp chest CT with a body bowtie (the
          `mc_throughput.py` scene), then the 8 mm ct_chest_m4 of the accuracy set: the
          prior's steady-state time (jit-compiled, warm) against an MC run of 1e7 photons
          (`--mc-photons`; other counts are scaled to 1e7).
speed128  A 128^3 CT dose, warm, on the default device (the issue's GPU goal: <= 50 ms on an H100).
accuracy  Calibrates `physdose.prior` on the patient's dose and the air around it in the
          "calibration" scenarios of `prior_scenarios.py` (or `--fit-on`; the physician's
          organs are left out, see `_near_field`) and compares it with the MC on the others:
          organ doses of organs inside the scan range (at least half their mass in the
          irradiated z range), the gamma pass rate (3 %/3 mm, global, 10 % cutoff, within
          the body: voxels denser than 0.1 g/cm^3, normalised to the 99.9th percentile of
          the MC dose there), and Hp(10) at the physician's dosimeter sites.
orders    Where the prior's error comes from (not run by default; an MC run of `--order-photons`
          per scenario, cached): organ doses of the MC split by scatter order (unscattered,
          scattered once, more often) against the prior's primary, its first scatter alone
          (scale 1, no build-up) and the calibrated scattered dose, for `--only` scenarios
          (default ct_chest_f1, 120 kVp, and ct_chest_m4, 80 kVp).
noise     The references' own noise (not run by default; one more MC reference per scenario,
          cached in .cache/prior_mc/twin): an independent MC run of each CT scenario (`--only`;
          default the held-out ones), another seed, scored against its reference as the prior
          is. A perfect model cannot do better than this on the gamma pass rate.
inverse   Recovers a tube's added aluminium filtration from MC measurements: the transmission
          through an aluminium step wedge (HVL-style) and a depth-dose curve in water.

Needs the MC references: `python benchmarks/prior_scenarios.py` (about half an hour on 2 cores).

    python benchmarks/prior_vs_mc.py [speed] [speed128] [accuracy] [orders] [noise] [inverse]
        [--save PRIOR.json | --load PRIOR.json] [--fit-on NAME ...] [--only NAME ...] [--order-photons N]
"""

import argparse
import datetime
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _machine import describe
from prior_scenarios import (
    AIR_DISK_MM,
    CACHE,
    SCENARIOS,
    build,
    describe as describe_scenario,
    generate,
    load_reference,
)

import physdose as pd

OPTIONS = dict(max_views=48, group_kev=10.0, cell_mm=(16.0, 32.0, 32.0), n_sources=256, path_samples=16)


def timed(fn, repeat=3):
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def _chest_ct(start_z_mm: float, end_z_mm: float):
    """The 4 mm female synthetic patient and a helical 120 kVp body-bowtie CT scan over [start, end]."""
    patient = pd.phantoms.synthetic_patient(key=jax.random.key(0), sex="female", spacing_mm=4.0)
    scan = pd.sources.CTScan(
        pd.Spectrum.from_tube(120.0, {"Al": 2.5}), start_z_mm=start_z_mm, end_z_mm=end_z_mm, collimation_mm=40.0,
        views_per_rotation=36, bowtie=pd.sources.Bowtie.body(),
    )  # fmt: skip
    return patient, scan


def _prior_seconds(phantom, scan, repeat: int = 3) -> tuple[float, float]:
    """(warm time, first call with compilation) of the jit-compiled prior dose (s)."""
    prior = eqx.filter_jit(lambda p: pd.prior.dose(p, scan, **OPTIONS).total)
    t0 = time.perf_counter()
    jax.block_until_ready(prior(phantom))
    compile_s = time.perf_counter() - t0
    return timed(lambda: prior(phantom), repeat=repeat), compile_s


def speed(mc_photons: int):
    """The prior against the MC on the 4 mm chest scan, then on an 8 mm held-out scan of the accuracy set."""
    patient, scan = _chest_ct(350.0, 600.0)
    _speed_row("4 mm synthetic chest", patient, scan, mc_photons)
    phantom, source, _ = build("ct_chest_m4")
    _speed_row("ct_chest_m4 (8 mm, 80 kVp)", phantom, source, mc_photons)


def _speed_row(label: str, phantom, scan, mc_photons: int) -> None:
    prior_s, compile_s = _prior_seconds(phantom, scan)
    lanes = 16384  # the MC's fastest lane count on this CPU (benchmarks/RESULTS.md, mc_throughput.py)
    pd.mc.simulate(phantom, scan, n_photons=lanes, key=jax.random.key(1), lanes=lanes, n_batches=1)  # compile
    t0 = time.perf_counter()
    pd.mc.simulate(phantom, scan, n_photons=mc_photons, key=jax.random.key(2), lanes=lanes, n_batches=4)
    mc_s = (time.perf_counter() - t0) * 1e7 / mc_photons
    beam = scan.beam()
    print(f"\nspeed, {label}: {phantom.grid.shape} voxels, {beam.num_views} views (prior keeps {OPTIONS['max_views']})")
    print(f"  prior   {prior_s:8.2f} s  (first call with compilation {compile_s:.1f} s)")
    scaled = "" if mc_photons == 10_000_000 else f" (measured on {mc_photons:.0e} photons, scaled)"
    print(f"  MC 1e7  {mc_s:8.1f} s{scaled}")
    print(f"  ratio   {mc_s / prior_s:8.0f} x")


def speed_128():
    """A 128^3 CT dose: the synthetic patient's chest on 128^3 voxels of 2.8 mm, a helical 120 kVp
    scan over it; warm, jit-compiled, on the default device (the goal: <= 50 ms on an H100)."""
    patient, scan = _chest_ct(440.0, 560.0)
    g = patient.grid
    centre = np.asarray(g.origin_mm) + (np.asarray(g.shape) - 1) / 2 * np.asarray(g.spacing_mm)
    phantom = patient.resample(grid=pd.Grid.centered((128,) * 3, (2.8,) * 3, (500.0, centre[1], centre[2])))
    seconds, compile_s = _prior_seconds(phantom, scan, repeat=5)
    print(f"\nspeed, 128^3 CT dose ({scan.num_views} views, prior keeps {OPTIONS['max_views']}) on {jax.devices()[0]}:")
    print(f"  {seconds * 1e3:.0f} ms warm (first call with compilation {compile_s:.1f} s; goal on an H100: 50 ms)")


def in_scan_organs(phantom, ref) -> list[str]:
    z_range = ref["info"].get("irradiated_z_mm")
    labels = np.asarray(phantom.organ_labels)
    mass = np.asarray(phantom.voxel_mass_g())
    z = np.asarray(phantom.grid.axes_mm()[0])[:, None, None]
    out = []
    for name, label in phantom.organs.items():
        m = np.where(labels == label, mass, 0.0)
        inside = m if z_range is None else np.where((z >= z_range[0]) & (z <= z_range[1]), m, 0.0)
        if m.sum() > 0 and inside.sum() >= 0.5 * m.sum():
            out.append(name)
    return out


def organ_doses(dose, phantom) -> dict[str, float]:
    organs = pd.dosimetry.organ_doses(jnp.asarray(dose), phantom)
    return dict(zip(organs.names, np.asarray(organs.dose_gy, np.float64).tolist()))


def percentiles(values) -> str:
    v = np.asarray(values)
    p90, worst = np.percentile(np.abs(v), 90), np.abs(v).max()
    return f"median {np.median(v):+.1f} %, 90th pct |err| {p90:.1f} %, max |err| {worst:.1f} %"


def accuracy(save: str | None, load: str | None, only: list[str] | None = None, fit_on: list[str] | None = None):
    calibration = fit_on or [n for n, s in SCENARIOS.items() if s.role == "calibration"]
    evaluation = [n for n in SCENARIOS if n not in calibration]
    if load:
        prior = pd.prior.Prior.load(load)
        print(f"\nprior loaded from {load}: {dict(prior.info)}")
    else:
        prior = calibrate(calibration, save)
    for names, role in ((calibration, "calibration (fitted)"), (evaluation, "evaluation (held out)")):
        print(f"\n{role}")
        for name in names:
            if only and name not in only:
                continue
            try:
                ref = load_reference(name)
            except FileNotFoundError as e:
                print(f"  {name}: {e}")
                continue
            phantom, source, _ = build(name)
            t0 = time.perf_counter()
            out = prior.dose(phantom, source)
            total = np.asarray(jax.block_until_ready(out.total))
            seconds = time.perf_counter() - t0
            report(name, phantom, ref, total, np.asarray(out.scatter), seconds)


def by_order(names: list[str], n_photons: int, prior) -> None:
    """MC dose by scatter order against the prior's parts, per organ inside the scan range."""
    for name in names:
        phantom, source, kwargs = build(name)
        path = CACHE / f"orders_{name}_{n_photons:.0e}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            r = pd.mc.simulate(
                phantom,
                source,
                n_photons=n_photons,
                key=jax.random.key(7),
                by_scatter_order=True,
                lanes=32768,
                **kwargs,
            )
            np.savez(path, dose_by_order_gy=np.asarray(r.dose_by_order_gy), seconds=time.perf_counter() - t0)
        mc = [organ_doses(d, phantom) for d in np.load(path)["dose_by_order_gy"]]
        scene = pd.prior.prepare(phantom, source, **prior.options)
        calibrated = scene.dose(prior.params)
        first = scene.dose(pd.prior.PriorParams(log_buildup_a=(-60.0, 0.0)))  # exp(-60): no build-up
        primary, once, scatter = (
            organ_doses(a, phantom) for a in (calibrated.primary, first.scatter, calibrated.scatter)
        )
        print(f"\n{name} ({n_photons:.0e} MC photons): MC shares by scatter order and prior / MC per part")
        print(
            f"  {'organ':12s} {'MC 0':>6s} {'MC 1':>6s} {'MC 2+':>6s} {'primary':>8s} {'1st sc.':>8s} {'scatter':>8s}"
        )
        for organ in in_scan_organs(phantom, load_reference(name)):
            m0, m1, m2 = (m[organ] for m in mc)
            total = m0 + m1 + m2
            print(f"  {organ:12s} {m0 / total:6.2f} {m1 / total:6.2f} {m2 / total:6.2f} {primary[organ] / m0:8.3f}"
                  f" {once[organ] / m1:8.3f} {scatter[organ] / (m1 + m2):8.3f}")  # fmt: skip


def _near_field(ref: dict) -> dict:
    """`ref` without the physician's organs as organ terms: the physician's dose (~85 % multiply
    scattered photons escaping the patient, see RESULTS.md) is what the staff scenes test."""
    keep = [not str(n).startswith("physician/") for n in ref["organ_names"]]
    return {**ref, **{k: np.asarray(ref[k])[keep] for k in ("organ_names", "organ_dose_gy", "organ_rel_sigma")}}


def calibrate(calibration: list[str], save: str | None):
    scenes = [build(n)[:2] for n in calibration]
    refs = [_near_field(load_reference(n)) for n in calibration]
    t0 = time.perf_counter()
    prior = pd.prior.calibrate(
        scenes,
        refs,
        key=jax.random.key(0),
        steps=50,
        learning_rate=0.15,
        points=256,
        organ_points=16,
        names=calibration,
        **OPTIONS,
    )
    print(f"\ncalibration on {calibration}: loss {prior.info['loss_before']:.4f} -> {prior.info['loss_after']:.4f}"
          f" ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    p = prior.params
    print(f"  params: log_scale {np.round(p.log_scale, 3)}, log_buildup_a {np.round(p.log_buildup_a, 3)},"
          f" buildup_b {np.round(p.buildup_b, 3)}, escape {np.round(p.escape, 3)}")  # fmt: skip
    if save:
        prior = pd.prior.Prior(prior.params, prior.options, {**prior.info, "source": _provenance(calibration)})
        prior.save(save)
        print(f"  saved to {save}")
    return prior


def _provenance(calibration: list[str]) -> str:
    """Where a saved calibration comes from, for its `info` (the shipped one must name its source)."""
    references = "; ".join(
        f"{d['name']}: {d['phantom']}, {d['source']}, {d['kvp']:g} kVp, {d['n_photons']:.1e} photons"
        for d in map(describe_scenario, calibration)
    )
    return (
        f"physdose's own fit (benchmarks/prior_vs_mc.py --save, {datetime.date.today()}, the patient's dose and the"
        f" air around it outside the beam (distance bands); the physician's organs and lead shields left out) to MC"
        f" references of benchmarks/prior_scenarios.py:"
        f" {references}"
    )


def _row(label: str, ours: float, value: float, sigma: float) -> float:
    """Print prior, MC (its sigma) and the error of one value; return the error (%)."""
    err = 100 * (ours / value - 1)
    print(f"    {label:<40} {ours:10.3e} {value:10.3e} ({100 * sigma:4.1f} %)  {err:+6.1f} %")
    return err


def report(name, phantom, ref, total, scatter, seconds):
    if "hp_sites" in ref:
        dose = jnp.asarray(total)
        print(f"  {name} ({seconds:.1f} s with compilation): Hp(10) prior / MC")
        air = zip(ref.get("air_sites", []), ref.get("air_kerma_gy", []), ref.get("air_kerma_rel_sigma", []))
        on_shield = {site: (value, sigma) for site, value, sigma in air}
        errors = []
        for site, value, sigma in zip(ref["hp_sites"], ref["hp10_sv"], ref["hp10_rel_sigma"]):
            ours = float(pd.dosimetry.hp(dose, phantom, site, 10.0).hp_sv)
            if site not in on_shield:
                errors.append(_row(site, ours, value, sigma))
                continue
            # a dosimeter on a shield reads the air kerma arriving at it (x the same h_K for both)
            _row(site + " (tissue under lead)", ours, value, sigma)
            ours = float(pd.dosimetry.air_kerma(dose, phantom, site, radius_mm=AIR_DISK_MM[1]).kerma_gy)
            errors.append(_row(site + " (air kerma)", ours, *on_shield[site]))
        print(f"    Hp(10) as worn (air kerma on shields): {percentiles(errors)}")
        ours = organ_doses(total, phantom)
        print("    physician organs with MC sigma < 10 %: prior / MC")
        for n, value, sigma in zip(ref["organ_names"], ref["organ_dose_gy"], ref["organ_rel_sigma"]):
            if n.startswith("physician/") and sigma < 0.1 and value > 0:
                _row(n, ours[n], value, sigma)
        return
    ours = organ_doses(total, phantom)
    errors = organ_errors(phantom, ref, ours)
    body = np.asarray(phantom.density_g_cm3) > 0.1
    share = float(scatter[body].sum() / total[body].sum())
    print(f"  {name} ({seconds:.1f} s with compilation): {gamma_text(phantom, ref, total)}, scatter share"
          f" {100 * share:.0f} %")  # fmt: skip
    print(f"    in-scan organs: {percentiles(list(errors.values()))}")
    theirs = dict(zip(ref["organ_names"], ref["organ_dose_gy"]))
    sig = dict(zip(ref["organ_names"], ref["organ_rel_sigma"]))
    for n in sorted(errors, key=lambda n: -abs(errors[n])):
        _row(n, ours[n], theirs[n], sig[n])


def organ_errors(phantom, ref, ours: dict[str, float]) -> dict[str, float]:
    """Organ doses `ours` (from `organ_doses`) / MC - 1 (%), for the organs inside the scan range."""
    theirs = dict(zip(ref["organ_names"], ref["organ_dose_gy"]))
    return {n: 100 * (ours[n] / theirs[n] - 1) for n in in_scan_organs(phantom, ref) if theirs.get(n, 0) > 0}


def gamma_text(phantom, ref, dose) -> str:
    """Gamma pass rate (3 %/3 mm) of `dose` against the MC in the body, over all points and where MC sigma < 3 %."""
    mc = ref["dose_gy"]
    body = np.asarray(phantom.density_g_cm3) > 0.1
    norm = float(np.percentile(mc[body], 99.9))
    evaluated = np.where(body, dose, 0.0)
    g = pd.metrics.gamma(np.where(body, mc, 0.0), evaluated, phantom.grid.spacing_mm, normalisation_gy=norm)
    # MC noise comparable to the 3 % criterion fails points by itself: also where sigma < 3 %
    quiet = body & (ref["rel_sigma"] < 0.03)
    if quiet.any():
        gq = pd.metrics.gamma(np.where(quiet, mc, 0.0), evaluated, phantom.grid.spacing_mm, normalisation_gy=norm)
        quiet_text = f"{float(gq.pass_rate):.1f} % of the {int(gq.evaluated.sum())} with MC sigma < 3 %"
    else:
        quiet_text = "no voxel with MC sigma < 3 %"
    return f"gamma 3%/3mm {float(g.pass_rate):.1f} % ({int(g.evaluated.sum())} points; {quiet_text})"


def noise_floor(names: list[str]) -> None:
    """An independent MC run of each scenario (same photons, another seed) against its reference:
    the gamma pass rate and organ differences that the references' own noise allows a perfect model."""
    twins = CACHE / "twin"
    for name in names:
        generate(name, out=twins, seed=SCENARIOS[name].seed + 1000)
        ref, twin = load_reference(name), load_reference(name, twins)
        phantom, _, _ = build(name)
        errors = organ_errors(phantom, ref, organ_doses(twin["dose_gy"], phantom))
        print(f"  {name}: independent MC against the reference: {gamma_text(phantom, ref, twin['dose_gy'])}")
        print(f"    in-scan organs: {percentiles(list(errors.values()))}")
        # a noise-free model differs from the reference by the reference's noise e1 alone; (twin - ref) / sqrt 2
        # has that spread (the twin's field stays noisy, which helps its distance search a little)
        emulated = ref["dose_gy"] + (twin["dose_gy"] - ref["dose_gy"]) / np.sqrt(2.0)
        print(f"    a noise-free model, emulated: {gamma_text(phantom, ref, emulated)}")


def _recover_al(phantom, field_mm, focal_y_mm, reading, n_photons, options):
    """MC of an 80 kVp tube with 3 mm of added Al, then the prior's added Al fitted, over ln(mm)
    from 1 mm, so that `reading(dose)` agrees: (mm, relative misfit, the MC's reading)."""

    def source(al_mm):
        tube = pd.Spectrum.from_tube(80.0, {"Al": 1.0}).filtered({"Al": al_mm})
        return pd.sources.ConeBeam(tube, (0.0, focal_y_mm, 0.0), (0.0, 0.0, 0.0), field_mm)

    mc = pd.mc.simulate(phantom, source(3.0), n_photons=n_photons, key=jax.random.key(5))
    measured = jnp.asarray(reading(np.asarray(mc.dose_gy)))
    best, history = pd.prior.fit(
        lambda log_t: jnp.mean(
            (reading(pd.prior.dose(phantom, source(jnp.exp(log_t)), **options).total) / measured - 1) ** 2
        ),
        jnp.asarray(0.0),
        steps=80,
        learning_rate=0.05,
        progress=False,
    )
    return float(jnp.exp(best)), float(np.sqrt(history.min())), measured


def inverse():
    """Added filtration (true 3 mm Al) recovered against the MC from two measurements.

    transmission  An aluminium step wedge (0-12 mm in 2 mm steps, 10 mm wide) 1 m from
                  the focal spot and a 5 mm water detector layer 45 mm behind it: the HVL-style
                  measurement, the dose behind each step relative to the open step.
    depth dose    A 10 mm field into 120 mm of water, dose along the axis relative to 10 mm depth.
    """
    n, h = 24, 5.0
    grid = pd.Grid.centered((n, n, n), (h, h, h))
    table = pd.materials.MaterialTable.from_materials(["air", "water", "aluminium"])
    # a 120 mm world: scatter cells of 15 mm (not 32) and 2 keV energy groups for the beam hardening
    options = dict(OPTIONS, cell_mm=15.0, group_kev=2.0)

    # transmission: one 5 mm Al layer whose density makes steps of 0, 2, ..., 12 mm of Al, 10 mm wide
    steps_mm = np.repeat(np.arange(0.0, 13.0, 2.0), 2)
    ids, density = np.zeros((n, n, n), np.int32), np.full((n, n, n), 1.205e-3)
    columns = np.arange(5, 5 + steps_mm.size)
    ids[:, 3, columns] = 2
    density[:, 3, columns] = 2.699 * steps_mm / h
    ids[:, 12, :], density[:, 12, :] = 1, 1.0
    wedge = pd.Phantom(grid, ids, density, table, np.zeros_like(ids), {})
    behind = np.s_[n // 2 - 1 : n // 2 + 1, 12, columns]

    def transmission(dose):
        d = dose[behind].mean(axis=0).reshape(-1, 2).mean(axis=1)
        return d / d[0]

    al, misfit, measured = _recover_al(wedge, (76.0, 10.0), -1000.0, transmission, 8_000_000, options)
    print(f"\ninverse, transmission through a 0-12 mm Al step wedge (8e6 photons): {al:.2f} mm from 1 mm")
    print(f"  (true 3.00 mm; relative misfit {misfit * 100:.1f} %; MC transmission at 12 mm {float(measured[-1]):.3f})")

    # depth dose in water
    ids = np.ones((n, n, n), np.int32)
    water = pd.Phantom(grid, ids, np.ones((n, n, n)), table, np.zeros_like(ids), {})
    axis = np.s_[n // 2 - 1 : n // 2 + 1, :, n // 2 - 1 : n // 2 + 1]

    def depth_dose(dose):
        d = dose[axis].mean(axis=(0, 2))
        return d / d[2]

    al, misfit, _ = _recover_al(water, (10.0, 10.0), -500.0, depth_dose, 2_000_000, options)
    print(f"inverse, depth dose in 120 mm of water (10 mm field, 2e6 photons): {al:.2f} mm from 1 mm")
    print(f"  (true 3.00 mm; relative misfit {misfit * 100:.1f} %)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["speed", "speed128", "accuracy", "inverse"])
    # the whole 1e7 photons (~40 s): a scaled-up shorter run would scale the MC's fixed cost per call too
    parser.add_argument("--mc-photons", type=int, default=10_000_000)
    parser.add_argument(
        "--save",
        default=None,
        help="write the calibrated prior here (physdose ships physdose/prior/data/calibrated.json)",
    )
    parser.add_argument("--load", default=None, help="evaluate this saved prior instead of calibrating")
    parser.add_argument("--only", nargs="+", default=None, help="evaluate only these scenarios")
    parser.add_argument("--fit-on", nargs="+", default=None, help="calibrate on these scenarios (default: role)")
    parser.add_argument("--order-photons", type=int, default=4_000_000, help="MC photons of the `orders` runs")
    args = parser.parse_args()
    print(describe(physdose=pd.__version__))
    if "speed" in args.parts:
        speed(args.mc_photons)
    if "accuracy" in args.parts:
        accuracy(args.save, args.load, args.only, args.fit_on)
    if "orders" in args.parts:
        prior = pd.prior.Prior.load(args.load) if args.load else pd.prior.Prior.default()
        by_order(args.only or ["ct_chest_f1", "ct_chest_m4"], args.order_photons, prior)
    if "noise" in args.parts:
        noise_floor(args.only or [n for n, s in SCENARIOS.items() if not s.staff and s.role == "evaluation"])
    if "speed128" in args.parts:
        speed_128()
    if "inverse" in args.parts:
        inverse()


if __name__ == "__main__":
    main()
