"""ICRU operational quantities by Monte Carlo: Hp(10, 0) / Ka and Hp(0.07, 0) / Ka in the ICRU slab and
H*(10) / Ka in the ICRU sphere, for monoenergetic broad parallel beams (ICRU Report 57 geometry).

Each quantity is the absorbed dose in ICRU tissue at the reference depth (photons: radiation
weighting factor 1) divided by the air kerma free in air, Ka, at the reference point without
the phantom. Ka per source photon is the beam's own normalisation: a parallel beam of field
area A has fluence 1/A per source photon, so Ka = (E mu_en/rho of air) / A
(`Beam.air_kerma_per_photon_gy`). Phantoms stand in vacuum (no air attenuation of the beam).

Reading the dose (kerma approximation, no electron transport: electrons deposit where they
are set in motion, adequate below 150 keV at 10 mm; at 0.07 mm it misses the few-10-um
electron build-up, an effect of a few per cent at the highest energies here):

* Each (z, x) voxel column's surface is the front face of its first tissue voxel along the
  beam (+y), so depths are measured from the voxelised surface the transport saw.
* Columns whose centres lie within `scoring_radius_mm` of the beam axis are pooled: energy and
  mass per depth voxel, giving a depth-dose profile D(t) at voxel centres t.
* D at depth d is a least-squares quadratic in t fitted to D(t) over a window around d
  (6-14 mm for d = 10 mm, 0-3 mm for d = 0.07 mm), evaluated at d: this pools several thin
  voxels for statistics without the bias of a plain window average in a steep profile, and,
  being linear in the voxel doses, without a noise bias. Its standard uncertainty is the
  spread of the readings of independent sub-runs (which keeps the correlations between the
  voxels of one photon history that per-voxel sigmas would miss).

Geometry choices: the slab is voxelised with 0.25 mm in depth (y), so the 0.07 mm point lies
in the first voxel layer (a thin surface layer is what Hp(0.07) needs; the slab's faces fall
on voxel faces), and 30 mm laterally; the 12 columns within 50 mm of the axis are scored,
where the lateral dose is flat to about 1 % (at 100 keV, scoring out to 80 mm loses 2 % to the
slab's edges). The sphere is voxelised with 1 mm in depth and 10 mm laterally, scoring the
columns within 20 mm of the axis (their surface tilt, at most 8 deg, changes the depth along
the beam by < 1 %).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..dosimetry._hp import conversion_coefficient
from ..dosimetry._inputs import tissue_mask
from ..mc._simulate import replicate
from ..phantoms._reference import icru_slab, icru_sphere
from ..sources._simple import ParallelBeam
from ..spectra._spectrum import Spectrum
from ..units import KEV_TO_J

QUANTITIES = ("hp10", "hp007", "hstar10")
"""Quantities of `icru`: Hp(10,0)/Ka (slab), Hp(0.07,0)/Ka (slab), H*(10)/Ka (sphere)."""

DEFAULT_ENERGIES_KEV = (15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0)

_DEPTH_MM = {"hp10": 10.0, "hp007": 0.07, "hstar10": 10.0}
_WINDOW_MM = {"hp10": (6.0, 14.0), "hp007": (0.0, 3.0), "hstar10": (6.0, 14.0)}
_LABEL = {"hp10": "Hp(10,0)/Ka ICRU slab", "hp007": "Hp(0.07,0)/Ka ICRU slab", "hstar10": "H*(10)/Ka ICRU sphere"}


def depth_profile(result, phantom, *, scoring_radius_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth-dose profile along +y pooled over the (z, x) columns within `scoring_radius_mm` of the y axis.

    Depth t of a voxel centre is measured from the front face of its column's first tissue
    voxel. Returns (t_mm, dose_gy, sigma_gy) per depth voxel, dose and sigma per source photon.
    """
    grid = phantom.grid
    tissue = np.asarray(tissue_mask(phantom))
    energy = np.asarray(result.energy_imparted_kev, np.float64)
    rel = np.asarray(result.rel_sigma, np.float64)
    mass = np.asarray(phantom.voxel_mass_g(), np.float64) * 1e-3
    z, _, x = (np.asarray(a, np.float64) for a in grid.axes_mm())
    columns = np.hypot(z[:, None], x[None, :]) <= scoring_radius_mm
    has_tissue = tissue.any(axis=1)
    columns &= has_tissue
    if not columns.any():
        raise ValueError(f"no tissue column within scoring_radius_mm={scoring_radius_mm} of the beam axis")
    first = np.argmax(tissue, axis=1)  # (nz, nx): index of the first tissue voxel along y
    ny = grid.shape[1]
    e_sum, m_sum, var_sum = np.zeros(ny), np.zeros(ny), np.zeros(ny)
    for iz, ix in zip(*np.nonzero(columns)):
        k0 = first[iz, ix]
        col_t = tissue[iz, k0:, ix]
        n = int(np.argmin(col_t)) if not col_t.all() else len(col_t)  # contiguous tissue from the surface
        e = energy[iz, k0 : k0 + n, ix]
        s = np.where(e > 0, rel[iz, k0 : k0 + n, ix], 0.0) * e
        e_sum[:n] += e
        m_sum[:n] += mass[iz, k0 : k0 + n, ix]
        var_sum[:n] += s**2
    keep = m_sum > 0
    dy = grid.spacing_mm[1]
    t = (np.arange(ny) + 0.5) * dy
    dose = np.where(keep, e_sum * KEV_TO_J / np.where(keep, m_sum, 1.0), 0.0)
    sigma = np.where(keep, np.sqrt(var_sum) * KEV_TO_J / np.where(keep, m_sum, 1.0), 0.0)
    return t[keep], dose[keep], sigma[keep]


def dose_at_depth(t_mm, dose, sigma, depth_mm: float, window_mm: tuple[float, float]) -> tuple[float, float]:
    """Dose at `depth_mm` from a least-squares quadratic in depth fitted to the profile within
    `window_mm`, and its standard uncertainty.

    The fit is linear in the voxel doses with equal weights, so MC noise does not bias it (a fit
    of log dose, or one weighted by noisy per-voxel variances, would), and the quadratic term
    removes the curvature bias of a window average (about (mu h)^2 / 6 for a half-width h).
    Its uncertainty propagates the per-voxel sigmas (independent voxels). With fewer than
    three voxels in the window, the nearest voxel's value.
    """
    lo, hi = window_mm
    sel = (t_mm >= lo) & (t_mm <= hi)
    if sel.sum() < 3:
        i = int(np.argmin(np.abs(t_mm - depth_mm)))
        return float(dose[i]), float(sigma[i])
    t = t_mm[sel] - depth_mm
    x = np.stack([np.ones_like(t), t, t**2], axis=1)
    c = np.linalg.pinv(x)[0]  # the intercept (value at depth_mm) as weights on the voxel doses
    return float(c @ dose[sel]), float(np.sqrt(np.sum((c * sigma[sel]) ** 2)))


def _readings(phantom, reference_mm, energy_kev, quantities, *, n_photons, key, n_batches, lanes, progress, radius):
    """Per quantity, (value, rel_sigma) of H / Ka from `n_batches` // 2 independent sub-runs of 2 batches.

    Each sub-run gives its own depth profile and reading; the photon-weighted mean of the
    readings is the reading of the pooled profile (the fit is linear in the doses), and their
    spread gives the uncertainty with every correlation between voxels and depths kept.
    """
    front = phantom.grid.bounds_mm[0][1] - 1.0
    source = ParallelBeam(Spectrum.monoenergetic(energy_kev), (0.0, front, 0.0), (0.0, 1.0, 0.0), (300.0, 300.0))
    ka = float(source.beam().air_kerma_per_photon_gy(jnp.asarray(reference_mm)))

    def readings(r):
        t, dose, sigma = depth_profile(r, phantom, scoring_radius_mm=radius)
        return [dose_at_depth(t, dose, sigma, _DEPTH_MM[q], _WINDOW_MM[q])[0] / ka for q in quantities]

    mean, rel, _ = replicate(
        readings,
        phantom,
        source,
        n_photons=n_photons,
        key=key,
        runs=n_batches // 2,
        n_batches=2,
        lanes=lanes,
        world_medium=None,
        progress=progress,
    )
    return {q: (float(m), float(s)) for q, m, s in zip(quantities, mean, rel)}


def icru(
    energies_kev=DEFAULT_ENERGIES_KEV,
    *,
    n_photons: int,
    key,
    quantities=QUANTITIES,
    progress: bool = False,
    slab_spacing_mm=(30.0, 0.25, 30.0),
    slab_scoring_radius_mm: float = 50.0,
    sphere_spacing_mm=(10.0, 1.0, 10.0),
    sphere_scoring_radius_mm: float = 20.0,
    n_batches: int = 10,
    lanes: int = 16384,
) -> list[dict]:
    """Hp(10,0)/Ka, Hp(0.07,0)/Ka (ICRU slab) and H*(10)/Ka (ICRU sphere) by Monte Carlo.

    Monoenergetic broad parallel beams along +y, 300 x 300 mm, covering the slab's front face
    and the sphere; one slab run per energy gives both slab quantities. See the module
    docstring for how dose and air kerma are scored.

    Args:
        energies_kev: photon energies (keV), within 5-150.
        n_photons: source photons per simulation (one slab and one sphere run per energy).
        key: PRNG key.
        quantities: a subset of ("hp10", "hp007", "hstar10").
        progress: show progress bars.
        slab_spacing_mm, sphere_spacing_mm: voxel sizes (z, y, x) (mm) of the phantoms.
        slab_scoring_radius_mm, sphere_scoring_radius_mm: columns whose centres lie within this
            distance of the beam axis are scored.
        n_batches: statistical batches (>= 4): `n_batches` // 2 independent sub-runs of 2
            batches each, whose spread gives the uncertainties.
        lanes: as for `physdose.mc.simulate`.

    Returns:
        Records (one per quantity and energy) with keys quantity ("hp10", "hp007", "hstar10"),
        description, energy_kev, value_sv_per_gy, rel_sigma, and reference_sv_per_gy /
        diff_percent against the coefficients shipped in physdose.dosimetry (uncertain
        provenance: see physdose/dosimetry/data/operational_conversion_coefficients.csv).

    Raises:
        ValueError: an unknown quantity, an energy outside 5-150 keV, or `n_batches` < 4.
    """
    bad = [q for q in quantities if q not in QUANTITIES]
    if bad:
        raise ValueError(f"quantities must be among {QUANTITIES}, got {bad}")
    energies = [float(e) for e in energies_kev]
    if not energies or any(not 5.0 <= e <= 150.0 for e in energies):
        raise ValueError(f"energies_kev must lie in 5-150 keV, got {energies_kev!r}")
    if not isinstance(n_batches, int) or n_batches < 4:
        raise ValueError(
            f"n_batches must be an int >= 4 (sub-runs of 2 batches give the uncertainty), got {n_batches!r}"
        )
    mc = {"n_photons": n_photons, "n_batches": n_batches, "lanes": lanes, "progress": progress}
    slab_q = [q for q in ("hp10", "hp007") if q in quantities]
    slab = icru_slab(spacing_mm=slab_spacing_mm, margin_mm=1.0) if slab_q else None
    sphere = icru_sphere(spacing_mm=sphere_spacing_mm, margin_mm=1.0) if "hstar10" in quantities else None
    records = []
    for i, e in enumerate(energies):
        k = jax.random.fold_in(key, i)
        readings = {}
        if slab_q:
            r = slab_scoring_radius_mm
            readings |= _readings(slab, (0.0, -75.0, 0.0), e, slab_q, key=jax.random.fold_in(k, 0), radius=r, **mc)
        if sphere is not None:
            r = sphere_scoring_radius_mm
            readings |= _readings(
                sphere, (0.0, -150.0, 0.0), e, ["hstar10"], key=jax.random.fold_in(k, 1), radius=r, **mc
            )
        for q in QUANTITIES:
            if q not in quantities:
                continue
            h, rel = readings[q]
            ref = float(conversion_coefficient(e, q))
            records.append(
                {
                    "quantity": q,
                    "description": _LABEL[q],
                    "energy_kev": e,
                    "value_sv_per_gy": h,
                    "rel_sigma": rel,
                    "reference_sv_per_gy": ref,
                    "diff_percent": 100.0 * (h / ref - 1.0) if ref > 0 else math.nan,
                }
            )
    return records


def format_icru_table(records) -> str:
    """A plain-text table of `icru` records."""
    lines = [f"{'quantity':<24}{'E keV':>7}{'ours Sv/Gy':>12}{'sigma %':>9}{'table Sv/Gy':>13}{'diff %':>8}"]
    for r in records:
        lines.append(
            f"{r['description']:<24}{r['energy_kev']:>7.1f}{r['value_sv_per_gy']:>12.4f}{100 * r['rel_sigma']:>9.2f}"
            f"{r['reference_sv_per_gy']:>13.4f}{r['diff_percent']:>8.2f}"
        )
    return "\n".join(lines)
