"""The `physdose` command."""

import argparse
import sys
from pathlib import Path


def _parse_filtration(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--filter expects MATERIAL=MM (e.g. Al=2.5), got {item!r}")
    return out


def _spectrum_row(label, s) -> str:
    kerma_ugy = float(s.air_kerma_per_fluence_gy_mm2 * s.output_photons_per_mas_mm2) * 1e6
    return (
        f"  {label:<22} {float(s.hvl_mm('Al')):6.2f} {float(s.hvl_mm('Al', order=2)):6.2f} "
        f"{float(s.hvl_mm('Cu')):7.3f} {float(s.mean_energy_kev):7.1f} {kerma_ugy:9.1f}"
    )


_SPECTRUM_HEADER = (
    "  quality                HVL1Al HVL2Al  HVL1Cu  mean  uGy/mAs@1m\n"
    "                           (mm)   (mm)    (mm) (keV)"
)


def demo(out: Path) -> None:
    """Build spectra, materials, sources and phantoms, print a summary and save pictures."""
    import jax.numpy as jnp

    import physdose as pd

    print("physdose demo: what the library can do so far\n")
    print("Tube spectra (SpekPy, W anode, 12 deg, filtration in mm Al):")
    print(_SPECTRUM_HEADER)
    spectra = {}
    for kvp, al in ((80, 2.5), (100, 2.5), (120, 2.5)):
        s = pd.Spectrum.from_tube(kvp, {"Al": al}, 12.0)
        spectra[f"{kvp} kVp + {al} mm Al"] = s
        print(_spectrum_row(f"{kvp} kVp + {al} mm Al", s))
    rqr9 = pd.Spectrum.from_tube(120, anode_angle_deg=11.0, hvl_mm_al=5.01)
    spectra["120 kVp, HVL 5.01 mm Al"] = rqr9
    print(_spectrum_row("120 kVp, HVL 5.01 Al", rqr9))

    print("\nMaterials: mu/rho and mu_en/rho (cm^2/g) from xraylib")
    energies = jnp.asarray([30.0, 60.0, 100.0])
    print(f"  {'material':<20}" + "".join(f"{f'mu@{e:g}':>10}{f'mu_en@{e:g}':>11}" for e in energies.tolist()))
    for name in ("water", "soft_tissue_icru44", "cortical_bone", "lung", "pmma", "lead"):
        m = pd.materials.get(name)
        mu, mu_en = m.mu_cm2_g(energies), m.mu_en_cm2_g(energies)
        print(f"  {name:<20}" + "".join(f"{a:10.4f}{b:11.4f}" for a, b in zip(mu.tolist(), mu_en.tolist())))

    cal = pd.materials.HUCalibration.default()
    hu = jnp.asarray([-1000.0, -700.0, -90.0, 40.0, 400.0, 1400.0])
    ids, rho = cal(hu)
    print("\nHU calibration (Schneider-style default):")
    for h, i, r in zip(hu.tolist(), ids.tolist(), rho.tolist()):
        print(f"  {h:7.0f} HU -> {cal.materials[i].name:<18} {r:6.3f} g/cm^3")

    s120 = spectra["120 kVp + 2.5 mm Al"]
    ct = pd.sources.CTScan(
        s120,
        start_z_mm=-100.0,
        end_z_mm=100.0,
        pitch=1.0,
        collimation_mm=40.0,
        views_per_rotation=36,
        tube_current_ma=200.0,
        rotation_time_s=0.5,
        bowtie=pd.sources.Bowtie.body(),
    )
    beam = ct.beam()
    kerma_iso = float(beam.air_kerma_per_photon_gy(jnp.zeros(3)) * ct.source_photons()) * 1e3
    print("\nCT scan: helical, 120 kVp, 40 mm collimation, pitch 1, 200 mA, 0.5 s, body bowtie, z -100..100 mm")
    print(f"  views {beam.num_views}, mAs {float(ct.mas):.1f}, source photons {float(ct.source_photons()):.3e}")
    print(f"  free-in-air kerma at the isocentre over the scan: {kerma_iso:.2f} mGy")

    carm = pd.sources.CArm(s120, lao_deg=30.0, cra_deg=20.0)
    focal = carm.focal_mm()
    irp = focal + 600.0 * carm.central_ray()  # interventional reference point, 15 cm before the isocentre
    k_irp = float(carm.beam().air_kerma_per_photon_gy(irp) * carm.beam().photons_per_mas()) * 1e3
    print("\nC-arm: LAO 30 CRA 20, under-table tube, SID 1100 mm, SOD 750 mm, 250 mm field")
    print(f"  focal spot (z, y, x) mm: {[round(v, 1) for v in focal.tolist()]}")
    print(f"  air kerma at the interventional reference point: {k_irp:.3f} mGy/mAs")

    import jax

    patient = pd.phantoms.synthetic_patient(key=jax.random.key(0), sex="female", spacing_mm=6.0)
    masses = patient.organ_masses_g()
    print(
        f"\nSynthetic patient (female, key 0, 6 mm): height {patient.info['height_cm']:.1f} cm, "
        f"mass {float(patient.voxel_mass_g().sum()) / 1000:.1f} kg, grid {patient.grid.shape}"
    )
    print("  organ masses (g): " + ", ".join(f"{k} {masses[k]:.0f}" for k in ("liver", "lungs", "heart", "thyroid")))
    room = pd.phantoms.ir_room(
        physician=pd.phantoms.physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35, thyroid_collar=True),
        spacing_mm=10.0,
        ceiling_shield=True,
        table_curtain=True,
    )
    print(f"IR room (10 mm): {room.grid.shape} voxels, regions: {', '.join(n for n in room.organs if '/' not in n)}")

    paths = [
        pd.plot.spectra(spectra, out / "spectra.png", title="physdose demo: tube spectra"),
        pd.plot.slices(patient, out / "synthetic_patient.png", point_mm=(450.0, 0.0, 0.0), title="synthetic patient"),
        pd.plot.slices(
            room,
            out / "ir_room.png",
            point_mm=room.points["physician/left_eye"][0],
            organs=[n for n in room.organs if not n.startswith("patient/")],
            title="interventional room: patient, table, physician with apron and shields",
        ),
    ]
    print("\nSaved " + ", ".join(str(p) for p in paths))


def spectrum(args) -> None:
    import physdose as pd

    s = pd.Spectrum.from_tube(
        args.kvp, _parse_filtration(args.filter), args.anode_angle, target=args.target, hvl_mm_al=args.hvl
    )
    print(_SPECTRUM_HEADER)
    print(_spectrum_row(f"{args.kvp:g} kVp {args.target}", s))
    if args.plot:
        print(f"Saved {pd.plot.spectra({f'{args.kvp:g} kVp': s}, args.plot)}")


def materials(args) -> None:
    import jax.numpy as jnp

    import physdose as pd

    if not args.name:
        for name in pd.materials.names():
            m = pd.materials.get(name)
            print(f"{name:<28} {m.density_g_cm3:8.4g} g/cm^3  {len(m.elements)} elements")
        return
    m = pd.materials.get(args.name)
    print(f"{m.name}: density {m.density_g_cm3:g} g/cm^3")
    print("  composition (mass fractions): " + ", ".join(f"{k} {v:.4f}" for k, v in m.composition.items()))
    e = jnp.asarray([float(v) for v in args.energies.split(",")])
    print(f"  {'E (keV)':>8} {'mu/rho':>10} {'mu_en/rho':>10}  (cm^2/g)")
    for ek, mu, mu_en in zip(e.tolist(), m.mu_cm2_g(e).tolist(), m.mu_en_cm2_g(e).tolist()):
        print(f"  {ek:8.1f} {mu:10.4f} {mu_en:10.4f}")


def _parse_energies(text: str) -> tuple[float, ...]:
    try:
        energies = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--energies expects comma-separated keV (e.g. 15,30,60), got {text!r}"
        ) from None
    if not energies:
        raise argparse.ArgumentTypeError(f"--energies expects comma-separated keV (e.g. 15,30,60), got {text!r}")
    return energies


def validate(args) -> None:
    import json

    import jax

    import physdose.validation as validation
    from physdose._atomic import atomic_path

    if args.benchmark == "icru":
        records = validation.icru(
            _parse_energies(args.energies),
            n_photons=args.photons,
            key=jax.random.key(args.seed),
            quantities=tuple(args.quantity or validation._icru.QUANTITIES),
            progress=True,
        )
        print(validation.format_icru_table(records))
    elif args.benchmark == "tg195":
        cases = validation._tg195.CASES if args.case == "all" else (args.case,)
        records = validation.tg195(
            cases,
            n_photons=args.photons,
            key=jax.random.key(args.seed),
            case5_path=args.case5_path,
            spectra=args.spectrum,
            progress=True,
        )
        print(validation.format_table(records))
    else:
        raise ValueError(f"unknown benchmark {args.benchmark!r}; available: tg195, icru")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(records, indent=1))
        print(f"Saved {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="physdose", description="Fast X-ray dose estimation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="show what physdose can do and save pictures")
    p.add_argument("--out", type=Path, default=Path("physdose-demo"), help="output folder (default ./physdose-demo)")
    p = sub.add_parser("spectrum", help="tube spectrum properties (HVL, mean energy, kerma per mAs)")
    p.add_argument("--kvp", type=float, required=True, help="tube voltage (kV), 20-150")
    p.add_argument("--filter", action="append", metavar="MATERIAL=MM", help="added filtration, repeatable (Al=2.5)")
    p.add_argument("--anode-angle", type=float, default=12.0, help="anode angle (deg)")
    p.add_argument("--target", default="W", choices=["W", "Mo", "Rh"], help="anode material")
    p.add_argument("--hvl", type=float, default=None, help="add Al until the first HVL is this (mm Al)")
    p.add_argument("--plot", type=Path, default=None, help="save a PNG of the spectrum here")
    p = sub.add_parser("materials", help="list materials, or show one's attenuation coefficients")
    p.add_argument("name", nargs="?", help="material name (see the list) or element symbol")
    p.add_argument("--energies", default="20,30,40,60,80,100,150", help="comma-separated energies (keV)")
    p = sub.add_parser(
        "validate", help="run a published benchmark (AAPM TG-195; ICRU operational quantities) and compare"
    )
    p.add_argument("benchmark", choices=["tg195", "icru"], help="which benchmark")
    p.add_argument("--case", default="all", choices=["1", "2", "4", "5", "all"], help="TG-195 case (default all)")
    p.add_argument("--photons", type=int, default=1_000_000, help="source photons per simulation")
    p.add_argument("--out", type=Path, default=None, help="write the records as JSON here")
    p.add_argument("--case5-path", type=Path, default=None, help="tg195_case5_phantom.tar.gz (needed for case 5)")
    p.add_argument("--spectrum", action="append", default=None, help='only this beam, repeatable ("56.4 keV")')
    p.add_argument(
        "--energies",
        default="15,20,30,40,50,60,80,100,150",
        help="icru: comma-separated photon energies (keV), 5-150",
    )
    p.add_argument(
        "--quantity",
        action="append",
        default=None,
        choices=["hp10", "hp007", "hstar10"],
        help="icru: only this quantity, repeatable (default all three)",
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo(args.out)
        elif args.command == "spectrum":
            spectrum(args)
        elif args.command == "materials":
            materials(args)
        elif args.command == "validate":
            validate(args)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        print(f"physdose {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
