"""Efficiency of scatter splitting (`physdose.mc.ScatterSplitting`) for staff dose.

An interventional room (stand-in patient on the table, physician with a 0.35 mm Pb apron
and thyroid collar beside it, 10 mm voxels), a posterior-anterior 80 kVp C-arm exposure
(under-table tube, 250 mm field). The same photons are run analog and with splitting
toward a sphere around the physician's head and chest; for each physician region the
script prints the mean energy imparted per source photon, its relative uncertainty, the
agreement of the two runs, and the efficiency gain (sigma^2 x time, analog over split).

    python benchmarks/mc_variance_reduction.py [--photons 2000000]
"""

import argparse
import time

import jax
import numpy as np
from _machine import describe

import physdose as pd

REGIONS = ("physician/left_eye_lens", "physician/thyroid", "physician/brain", "physician/lungs", "physician/body")


def run(room, source, n, splitting):
    kw = dict(n_photons=n, lanes=16384, n_batches=10, splitting=splitting)
    pd.mc.simulate(room, source, key=jax.random.key(99), **{**kw, "n_photons": 16384, "n_batches": 1})  # compile
    t0 = time.perf_counter()
    result = pd.mc.simulate(room, source, key=jax.random.key(1), **kw)
    return result, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--photons", type=int, default=2_000_000)
    args = parser.parse_args()
    print(describe(physdose=pd.__version__))

    physician = pd.phantoms.physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35, thyroid_collar=True)
    room = pd.phantoms.ir_room(physician=physician, spacing_mm=10.0)
    source = pd.sources.CArm(pd.Spectrum.from_tube(80.0, {"Al": 3.5}), field_mm=(250.0, 250.0))
    eyes = np.mean([room.points[f"physician/{s}_eye"][0] for s in ("left", "right")], axis=0)
    chest = np.asarray(room.points["physician/chest_over_apron"][0])
    center = 0.5 * (eyes + chest)
    radius = 0.5 * float(np.linalg.norm(eyes - chest)) + 150.0
    splitting = pd.mc.ScatterSplitting(tuple(center), radius)
    print(
        f"\nroom {room.grid.shape} voxels of 10 mm; target sphere centre {np.round(center)} mm, radius {radius:.0f} mm"
    )

    analog, t_analog = run(room, source, args.photons, None)
    split, t_split = run(room, source, args.photons, splitting)
    print(f"{args.photons:.1e} photons: analog {t_analog:.1f} s, split {t_split:.1f} s\n")
    print(f"{'region':<26}{'analog keV':>12}{'sigma %':>9}{'split keV':>12}{'sigma %':>9}{'diff/sig':>9}{'gain':>8}")
    for name in REGIONS:
        a, b = analog.organ_energy_kev[name], split.organ_energy_kev[name]
        sa, sb = analog.organ_rel_sigma[name], split.organ_rel_sigma[name]
        diff = (b - a) / np.hypot(a * sa, b * sb)
        gain = (sa**2 * t_analog) / (sb**2 * t_split)
        print(f"{name:<26}{a:12.3e}{100 * sa:9.2f}{b:12.3e}{100 * sb:9.2f}{diff:9.2f}{gain:8.1f}")


if __name__ == "__main__":
    main()
