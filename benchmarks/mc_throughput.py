"""Monte Carlo throughput (source photons per second) in two CT geometries.

1. TG-195 Case 5: the voxelised female torso at 1 mm (260 x 320 x 500), one 120 kVp fan
   beam projection (500 x 10 mm at the isocentre), in air.
2. A 4 mm synthetic patient (female, key 0) in a helical 120 kVp CT scan of the chest
   (40 mm collimation, pitch 1, body bowtie).

Compile time is measured separately (first call) from the steady-state rate (best of a few
repeats of a run with `--photons` photons). Prints the machine and versions. Peers for
context: MC-GPU (Badal & Badano 2009) reported 1-13 million X-rays/s on a GTX 770.
Goals (issue 4): >= 1e6 photons/s on the 2-core CPU; >= 1e9 photons/s on one H100.

    python benchmarks/mc_throughput.py [--photons 2000000] [--case5 PATH]
"""

import argparse
import time
from pathlib import Path

import jax
from _machine import describe

import physdose as pd


def measure(name, phantom, source, n, lanes, repeat=2):
    key = jax.random.key(0)
    t0 = time.perf_counter()
    pd.mc.simulate(phantom, source, n_photons=lanes, key=key, lanes=lanes, n_batches=1)  # compile
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for r in range(repeat):
        t0 = time.perf_counter()
        result = pd.mc.simulate(phantom, source, n_photons=n, key=jax.random.key(r + 1), lanes=lanes, n_batches=4)
        best = min(best, time.perf_counter() - t0)
    print(
        f"{name:<44}{phantom.grid.num_voxels:>12,d}{compile_s:>10.1f}{best:>9.2f}"
        f"{n / best:>14.3e}{result.steps / n:>9.1f}{result.flights / n:>11.1f}"
    )
    return n / best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--photons", type=int, default=2_000_000)
    parser.add_argument("--lanes", type=int, default=16384)
    default_case5 = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tg195_case5_phantom.tar.gz"
    parser.add_argument("--case5", type=Path, default=default_case5)
    args = parser.parse_args()
    print(describe(physdose=pd.__version__))
    print(f"lanes: {args.lanes}; steps: lane-steps per photon (up to 8 flights and an interaction each)")
    header = f"{'geometry':<44}{'voxels':>12}{'compile s':>10}{'run s':>9}{'photons/s':>14}"
    print(f"\n{header}{'steps/ph':>9}{'flights/ph':>11}")

    spectrum = pd.Spectrum.from_tube(120.0, {"Al": 2.5})
    if args.case5.exists():
        torso = pd.phantoms.tg195_case5(args.case5)
        fan = pd.sources.FanBeam(spectrum, (0.0, -600.0, 0.0), (0.0, 0.0, 0.0), 500.0, 10.0)
        measure("TG-195 Case 5 torso, 1 mm, one fan projection", torso, fan, args.photons, args.lanes)
        del torso
    else:
        print(f"(TG-195 Case 5 phantom not found at {args.case5}; skipped)")
    patient = pd.phantoms.synthetic_patient(key=jax.random.key(0), sex="female", spacing_mm=4.0)
    scan = pd.sources.CTScan(
        spectrum,
        start_z_mm=350.0,
        end_z_mm=600.0,
        pitch=1.0,
        collimation_mm=40.0,
        views_per_rotation=36,
        bowtie=pd.sources.Bowtie.body(),
    )
    measure("synthetic patient 4 mm, helical chest CT", patient, scan, args.photons, args.lanes)


if __name__ == "__main__":
    main()
