"""Gamma index: physdose.metrics.gamma against pymedphys.gamma on 64^3 and 128^3 dose pairs, same run.

Both compute the same thing (3 %/3 mm global gamma, 10 % lower cutoff, max_gamma 2,
interp_fraction 10: the same search samples), on pairs of smooth 3-D doses built from
Gaussian blobs, the evaluated dose shifted by a few mm and scaled by a few per cent
(2 mm voxels). physdose is timed jit-compiled and warmed up (best of `--repeat`, with
block_until_ready; compile time apart); pymedphys after a warm-up call that compiles its
numba kernels, once. On the 128^3 pair pymedphys evaluates a random subset of
`--subset` reference points (its `random_subset`), and its time for the full grid is that
time scaled by (points evaluated by physdose) / (points in the subset); the printed gamma
agreement is over those subset points. Prints the machine and versions first.
Goal (issue 6): >= 10x faster than pymedphys on CPU; >= 100x on a GPU.

    python benchmarks/gamma_vs_pymedphys.py [--sizes 64 128] [--subset 100000] [--repeat 3]
"""

import argparse
import time
import timeit

import jax
import numpy as np
from _machine import describe

import physdose as pd

SPACING_MM = 2.0
CRITERIA = dict(dose_percent=3.0, distance_mm=3.0, lower_percent_cutoff=10.0, max_gamma=2.0, interp_fraction=10)


def dose_pair(n: int, *, shift_mm=(3.0, -2.0, 2.0), scale=1.04, seed=0, blobs=6):
    """Reference and evaluated doses on an n^3 grid of 2 mm voxels, and the centred axes (mm)."""
    rng = np.random.default_rng(seed)
    axes = tuple((np.arange(n) - (n - 1) / 2) * SPACING_MM for _ in range(3))
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    extent = n * SPACING_MM
    ref = np.zeros((n, n, n), np.float32)
    ev = np.zeros((n, n, n), np.float32)
    for _ in range(blobs):
        c = rng.uniform(-0.3, 0.3, 3) * extent
        w = rng.uniform(0.08, 0.2) * extent
        a = rng.uniform(0.3, 1.0)
        for out, s in ((ref, (0.0, 0.0, 0.0)), (ev, shift_mm)):
            r2 = (z - c[0] - s[0]) ** 2 + (y - c[1] - s[1]) ** 2 + (x - c[2] - s[2]) ** 2
            out += (a * np.exp(-r2 / (2 * w * w))).astype(np.float32)
    return ref, scale * ev, axes


def time_physdose(ref, ev, repeat):
    spacing = (SPACING_MM,) * 3
    ref_j, ev_j = jax.device_put(ref), jax.device_put(ev)
    t0 = time.perf_counter()
    out = jax.block_until_ready(pd.metrics.gamma(ref_j, ev_j, spacing, **CRITERIA))
    compile_s = time.perf_counter() - t0
    best = min(
        timeit.repeat(
            lambda: jax.block_until_ready(pd.metrics.gamma(ref_j, ev_j, spacing, **CRITERIA)), number=1, repeat=repeat
        )
    )
    return out, compile_s, best


def time_pymedphys(ref, ev, axes, subset=None):
    import pymedphys

    kwargs = dict(
        lower_percent_dose_cutoff=CRITERIA["lower_percent_cutoff"],
        interp_fraction=CRITERIA["interp_fraction"],
        max_gamma=CRITERIA["max_gamma"],
        random_subset=subset,
    )
    small = tuple(a[:12] for a in axes)
    pymedphys.gamma(small, ref[:12, :12, :12], small, ev[:12, :12, :12], 3.0, 3.0, **kwargs | {"random_subset": None})
    np.random.seed(0)  # pymedphys draws its random subset from numpy's global generator
    t0 = time.perf_counter()
    g = pymedphys.gamma(axes, ref.astype(np.float64), axes, ev.astype(np.float64), 3.0, 3.0, **kwargs)
    return g, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--subset", type=int, default=100_000, help="pymedphys reference points on grids over 64^3")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import numba
    import pymedphys

    print(describe(physdose=pd.__version__, pymedphys=pymedphys.__version__, numba=numba.__version__))
    print(
        "gamma 3 %/3 mm global, cutoff 10 %, max_gamma 2, interp_fraction 10; 2 mm voxels; "
        f"physdose best of {args.repeat} after compiling\n"
    )
    header = (
        f"{'grid':>6}{'points':>10}{'physdose s':>12}{'compile s':>11}{'pymedphys s':>13}{'pmp points':>12}"
        f"{'speed-up':>10}{'pass % pd':>11}{'pass % pmp':>12}{'max |dg|':>10}"
    )
    print(header)
    for n in args.sizes:
        ref, ev, axes = dose_pair(n)
        out, compile_s, physdose_s = time_physdose(ref, ev, args.repeat)
        points = int(out.n_evaluated)
        subset = args.subset if n > 64 and args.subset < points else None
        g, pmp_s = time_pymedphys(ref, ev, axes, subset)
        done = np.isfinite(g)
        pmp_points = int(done.sum())
        pmp_full_s = pmp_s * points / pmp_points
        mine = np.asarray(out.gamma)
        valid = g[done]
        pass_pmp = 100.0 * np.mean(valid <= 1.0)
        max_diff = float(np.max(np.abs(mine[done] - valid)))
        note = "*" if subset else ""
        print(
            f"{n:>5}^3{points:>10,d}{physdose_s:>12.3f}{compile_s:>11.1f}{pmp_full_s:>12.1f}{note:1}{pmp_points:>12,d}"
            f"{pmp_full_s / physdose_s:>9.0f}x{float(out.pass_rate):>11.2f}{pass_pmp:>12.2f}{max_diff:>10.1e}"
        )
        assert max_diff < 1e-3, "physdose and pymedphys disagree"
    print(
        "\n* pymedphys on a random subset of the reference points; its full-grid time is scaled from the subset, "
        "its pass rate and the gamma difference are over the subset."
    )


if __name__ == "__main__":
    main()
