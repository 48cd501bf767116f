"""Throughput of the building blocks the Monte Carlo and the prior call in their inner loops.

Compares, in one run: (1) jitted JAX cross-section lookups for a batch of (material, energy)
pairs against xraylib evaluated directly per pair (the obvious alternative), and (2)
source-photon sampling from a CT beam. Prints the machine and versions, and checks the
lookups agree with xraylib's own partial cross sections (a quality band).

    python benchmarks/cross_sections_and_sources.py [--n 1000000]
"""

import argparse
import timeit

import jax
import jax.numpy as jnp
import numpy as np
import xraylib
from _machine import describe

import physdose as pd


def best_of(fn, repeat=5):
    return min(timeit.repeat(lambda: jax.block_until_ready(fn()), number=1, repeat=repeat))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000, help="lookups / photons per call")
    args = parser.parse_args()
    n = args.n
    print(describe(xraylib=xraylib.__version__))

    names = ["water", "soft_tissue_icru44", "cortical_bone", "lung", "adipose", "lead"]
    table = pd.materials.MaterialTable.from_materials(names)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, len(names), n), dtype=jnp.int32)
    energies = jnp.asarray(rng.uniform(10.0, 150.0, n), dtype=jnp.float32)
    lookup = jax.jit(lambda t, i, e: t.mu_cm2_g(i, e))
    t_compile = min(timeit.repeat(lambda: lookup.lower(table, ids, energies).compile(), number=1, repeat=1))
    t_jax = best_of(lambda: lookup(table, ids, energies))

    # xraylib per pair, on a subsample (it is slow), scaled to n
    m = 20_000
    comps = [table.materials[k] for k in range(len(names))]

    def xraylib_mu(k, e):
        mat = comps[k]
        return sum(
            w * (xraylib.CS_Photo(z, e) + xraylib.CS_Compt(z, e) + xraylib.CS_Rayl(z, e))
            for z, w in zip(mat.elements, mat.mass_fractions)
        )

    ids_np, e_np = np.asarray(ids[:m]), np.asarray(energies[:m], dtype=float)
    t_xl = min(timeit.repeat(lambda: [xraylib_mu(int(k), float(e)) for k, e in zip(ids_np, e_np)], number=1, repeat=2))
    t_xl *= n / m
    ref = np.array([xraylib_mu(int(k), float(e)) for k, e in zip(ids_np[:2000], e_np[:2000])])
    ours = np.asarray(lookup(table, ids[:2000], energies[:2000]))
    worst = float(np.max(np.abs(ours / ref - 1)))

    ct = pd.sources.CTScan(
        pd.Spectrum.from_tube(120.0, {"Al": 2.5}), start_z_mm=-100.0, end_z_mm=100.0, bowtie=pd.sources.Bowtie.body()
    )
    beam = ct.beam()
    key = jax.random.key(0)
    beam.sample(n, key=key)  # compile
    t_sample = best_of(lambda: beam.sample(n, key=key).weight)

    print(f"\n{'what':<44}{'time (s)':>10}{'per second':>14}")
    print(f"{'cross sections, JAX jit (compile ' + f'{t_compile:.2f} s)':<44}{t_jax:10.4f}{n / t_jax:14.3e}")
    print(f"{'cross sections, xraylib per pair (scaled)':<44}{t_xl:10.4f}{n / t_xl:14.3e}")
    print(f"{'CT source photons sampled (bowtie)':<44}{t_sample:10.4f}{n / t_sample:14.3e}")
    print(f"\nspeed-up of JAX lookups over xraylib: {t_xl / t_jax:.0f}x")
    print(f"largest relative difference to xraylib (edge-aware log-log interpolation, 0.25 keV nodes): {worst:.2e}")
    assert worst < 1e-3, "interpolated cross sections drifted from xraylib"


if __name__ == "__main__":
    main()
