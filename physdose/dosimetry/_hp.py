"""Personal dose equivalents Hp(d): read from a 3D dose map at dosimeter sites, or from air kerma
with monoenergetic conversion coefficients."""

import csv
import functools
import math
from importlib import resources

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_nonnegative, check_positive, is_concrete
from ..geometry._grid import Grid
from ..materials._material import get
from ..mc._simulate import MCResult
from ..phantoms._phantom import Phantom
from ..spectra._spectrum import Spectrum
from ._inputs import air_mask, check_phantom, dose_and_sigma, tissue_mask

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


class PersonalDose(eqx.Module):
    """A personal dose equivalent read from a dose map.

    Attributes:
        hp_sv: Hp(d) (Sv; for photons the absorbed dose in Gy, radiation weighting factor 1),
            shape (); the mean over prediction samples when samples were given.
        sigma_sv: its standard uncertainty (Sv), shape (); NaN where unknown.
        site: the dosimeter site (static).
        depth_mm: the depth d below the surface (mm) (static).
        point_mm: the point at depth d below the site (z, y, x) (mm), shape (3,).
    """

    hp_sv: Float[Array, ""]
    sigma_sv: Float[Array, ""]
    site: str = eqx.field(static=True)
    depth_mm: float = eqx.field(static=True)
    point_mm: Float[Array, " 3"]


def _disk_offsets(radius_mm: float, step_mm: float) -> np.ndarray:
    """Equal-area sample points of a disk of `radius_mm` in its own plane, (n, 2) (mm).

    A Vogel (sunflower) spiral: point k at radius R sqrt((k + 1/2) / n) and angle k x the golden
    angle, with n (16-4096) chosen so that neighbouring points lie about `step_mm` apart.
    """
    if radius_mm == 0:
        return np.zeros((1, 2))
    n = int(min(4096, max(16, math.ceil(math.pi * radius_mm**2 / step_mm**2))))
    k = np.arange(n)
    r = radius_mm * np.sqrt((k + 0.5) / n)
    a = k * _GOLDEN_ANGLE
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=-1)


def _frame(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane normal to `normal`."""
    hint = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, hint)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def hp(
    dose: Float[ArrayLike, "*s z y x"] | MCResult,
    phantom: Phantom,
    site: str,
    depth_mm: float,
    *,
    sigma: Float[ArrayLike, "z y x"] | None = None,
    radius_mm: float = 10.0,
    grid: Grid | None = None,
) -> PersonalDose:
    """Personal dose equivalent Hp(d) at a dosimeter site of `phantom`, read from a dose map.

    Hp(d) (ICRU 51) is the dose equivalent in soft tissue at depth d below a specified point
    on the body: d = 10 mm (whole body), 3 mm (eye lens) or 0.07 mm (skin, extremities). For
    photons it equals the absorbed dose (radiation weighting factor 1).

    How it is read:

    * the site `phantom.points[site]` = (position, outward unit normal n) lies on the body
      surface (the physdose phantoms put their sites on the outer voxel face of the skin);
      the depth is measured inward from it, along -n: the reading point is
      position - d n;
    * the dose is averaged over a dosimeter-sized disk of `radius_mm` centred on that point
      and normal to n (equal-area sample points about half a voxel apart);
    * each sample is the trilinear interpolation of the dose over the *tissue* voxels around
      it (air and lead-shield voxels get zero weight and the rest are renormalised, so a
      point less than half a voxel deep takes the value of the surface voxels: no
      extrapolation of the depth gradient below the voxel scale). Depths finer than the voxel
      size (Hp(0.07) in 5 mm voxels) thus read the surface voxels' mean dose; resolve them
      with thin voxels near the surface if it matters;
    * samples with no tissue around them (the disk reaching past the body's edge) are left out.

    A site on a shield (``"chest_over_apron"`` or ``"collar"`` of a physician wearing them)
    reads the tissue dose *under* the lead; a dosimeter worn there reads the air kerma
    arriving at it times a conversion coefficient: `air_kerma` then `hp_from_air_kerma`.
    The reading point must lie inside the grid.

    Uncertainty: from `sigma` (or an MCResult's rel_sigma) by the same weights, assuming fully
    correlated voxel errors (a conservative bound); from the spread of prediction samples
    (leading sample axis of `dose`) otherwise; NaN when neither is given.

    Args:
        dose: absorbed dose (Gy) on the phantom grid, shape (z, y, x); samples of it, shape
            (s, z, y, x); or an MCResult of a run on this phantom.
        phantom: the phantom with the dosimeter sites in `points`.
        site: a key of `phantom.points`, e.g. "chest_under_apron", "left_eye".
        depth_mm: depth d below the surface (mm), e.g. 10, 3 or 0.07.
        sigma: per-voxel standard uncertainty (Gy), shape (z, y, x), or None.
        radius_mm: radius of the dosimeter area (mm); 0 reads a single point.
        grid: the grid of `dose`, checked against the phantom's.

    Returns:
        PersonalDose.

    Raises:
        ValueError: unknown `site`; negative `depth_mm` or `radius_mm`; `dose`/`sigma` off the
            phantom grid, negative or not finite; the reading point outside the grid or with no
            tissue around it.
    """
    position, normal = _site(phantom, site)
    check_nonnegative("depth_mm", depth_mm)
    check_nonnegative("radius_mm", radius_mm)
    d, s = dose_and_sigma(dose, phantom, sigma, grid)
    point = position - float(depth_mm) * normal
    where = f"the point {depth_mm} mm below site {site!r}"
    value, spread = _read_disk(d, s, phantom, point, normal, float(radius_mm), tissue_mask(phantom), where, "tissue")
    return PersonalDose(value, spread, site, float(depth_mm), jnp.asarray(point, d.dtype))


class SiteAirKerma(eqx.Module):
    """Air kerma in front of a dosimeter site, read from a dose map.

    Attributes:
        kerma_gy: air kerma (Gy), shape (); the mean over prediction samples when samples were given.
        sigma_gy: its standard uncertainty (Gy), shape (); NaN where unknown.
        site: the dosimeter site (static).
        point_mm: the disk centre (z, y, x) (mm), shape (3,).
    """

    kerma_gy: Float[Array, ""]
    sigma_gy: Float[Array, ""]
    site: str = eqx.field(static=True)
    point_mm: Float[Array, " 3"]


def air_kerma(
    dose: Float[ArrayLike, "*s z y x"] | MCResult,
    phantom: Phantom,
    site: str,
    *,
    sigma: Float[ArrayLike, "z y x"] | None = None,
    radius_mm: float = 10.0,
    grid: Grid | None = None,
) -> SiteAirKerma:
    """Air kerma just in front of a dosimeter site, read from the *air* voxels of a dose map.

    For a dosimeter worn on a shield (``"chest_over_apron"``, ``"collar"``): its reading is the
    air kerma arriving at it times a conversion coefficient, Hp(10) = `hp_from_air_kerma`
    (spectrum, air kerma, "hp10"), not the tissue dose under the lead that `hp` reads. The
    dose in an air voxel is the air kerma there (kerma approximation): the physics prior
    computes it directly; a Monte Carlo map holds a noisy collision estimate of it (a
    `physdose.mc.DiskScorer` at the site scores it far more efficiently).

    Read like `hp` at depth 0, with air in place of tissue: the disk of `radius_mm` centred on
    the site, normal to its outward normal n, sampled about half a voxel apart; each sample is
    the trilinear interpolation over the air voxels around it (other voxels get zero weight
    and the rest are renormalised), so a site on a voxel face reads the air voxels in front.

    Args:
        dose: absorbed dose (Gy) on the phantom grid, shape (z, y, x); samples of it, shape
            (s, z, y, x); or an MCResult of a run on this phantom.
        phantom: the phantom with the dosimeter sites in `points`.
        site: a key of `phantom.points`.
        sigma: per-voxel standard uncertainty (Gy), shape (z, y, x), or None.
        radius_mm: radius of the disk (mm); 0 reads a single point.
        grid: the grid of `dose`, checked against the phantom's.

    Returns:
        SiteAirKerma.

    Raises:
        ValueError: unknown `site`; negative `radius_mm`; `dose`/`sigma` off the phantom grid,
            negative or not finite; the site outside the grid or with no air in front of it.
    """
    point, normal = _site(phantom, site)
    check_nonnegative("radius_mm", radius_mm)
    d, s = dose_and_sigma(dose, phantom, sigma, grid)
    value, spread = _read_disk(
        d, s, phantom, point, normal, float(radius_mm), air_mask(phantom), f"site {site!r}", "air"
    )
    return SiteAirKerma(value, spread, site, jnp.asarray(point, d.dtype))


def _site(phantom: Phantom, site: str) -> tuple[np.ndarray, np.ndarray]:
    """(position, outward normal) of dosimeter `site` of `phantom`, float64."""
    check_phantom(phantom)
    if site not in phantom.points:
        raise ValueError(f"unknown site {site!r}; this phantom has dosimeter sites {sorted(phantom.points)}")
    return tuple(np.asarray(v, np.float64) for v in phantom.points[site])


def _read_disk(d, s, phantom, point, normal, radius_mm, mask, where: str, what: str):
    """Mean of `d` (and of `s`, or the spread over `d`'s samples) over the disk of `radius_mm` at `point`
    normal to `normal`, each sample interpolated over the voxels of `mask` only (see `hp`)."""
    if not bool(phantom.grid.contains(jnp.asarray(point))):
        raise ValueError(f"{where}, {point.round(3).tolist()} mm, lies outside the phantom grid")
    u, w = _frame(normal)
    spacing = np.asarray(phantom.grid.spacing_mm)
    # half the in-plane voxel size: the distance along u (or w) that crosses one voxel
    step = 0.5 * min(1.0 / np.linalg.norm(u / spacing), 1.0 / np.linalg.norm(w / spacing))
    offsets = _disk_offsets(radius_mm, step)
    points = point[None] + offsets[:, :1] * u[None] + offsets[:, 1:] * w[None]
    coords = tuple(jnp.moveaxis(phantom.grid.to_index(jnp.asarray(points, d.dtype)), -1, 0))
    mask = mask.astype(d.dtype)

    def interp(volume):
        return jax.scipy.ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)

    support = interp(mask)
    valid = support > 1e-6
    if is_concrete(support) and not bool(np.any(np.asarray(valid))):
        raise ValueError(f"no {what} voxel around {where}")
    n_valid = jnp.maximum(jnp.sum(valid), 1)
    safe = jnp.where(valid, support, 1.0)

    def read(volume):
        return jnp.sum(jnp.where(valid, interp(mask * volume) / safe, 0.0)) / n_valid

    if d.ndim == 4:
        values = jax.vmap(read)(d)
        spread = jnp.std(values, ddof=1) if values.shape[0] > 1 else jnp.asarray(jnp.nan, d.dtype)
        return jnp.mean(values), spread
    return read(d), (read(s) if s is not None else jnp.asarray(jnp.nan, d.dtype))


# --------------------------------------------------------------------------------------------
# Conversion coefficients
# --------------------------------------------------------------------------------------------

#: Quantities of `hp_from_air_kerma`: name -> (description, phantom).
QUANTITIES = {
    "hp10": "Hp(10, alpha) in the ICRU slab",
    "hp3": "Hp(3, alpha) in the cylinder phantom",
    "hp007": "Hp(0.07, alpha) in the ICRU slab",
    "hstar10": "H*(10) in the ICRU sphere",
}


@functools.cache
def conversion_table() -> dict[str, dict[float, tuple[np.ndarray, np.ndarray]]]:
    """The shipped conversion coefficients: quantity -> angle (deg) -> (energy keV, h_K Sv/Gy).

    From ``physdose/dosimetry/data/operational_conversion_coefficients.csv``, whose header
    gives the source (the MetPyX 'CMI 2025' tables, uncertain provenance, within 0.7 % of
    ICRU 57 at 30-40 keV and 3.5 % low at 15 keV for Hp(10)).
    """
    text = resources.files("physdose.dosimetry").joinpath("data", "operational_conversion_coefficients.csv")
    lines = [line for line in text.read_text().splitlines() if line and not line.startswith("#")]
    table: dict[str, dict[float, list]] = {}
    for row in csv.DictReader(lines):
        per_angle = table.setdefault(row["quantity"], {})
        per_angle.setdefault(float(row["angle_deg"]), []).append((float(row["energy_kev"]), float(row["hk_sv_per_gy"])))
    out = {}
    for q, per_angle in table.items():
        out[q] = {}
        for angle, rows in sorted(per_angle.items()):
            rows.sort()
            out[q][angle] = (np.asarray([r[0] for r in rows]), np.asarray([r[1] for r in rows]))
    return out


def conversion_coefficient(
    energy_kev: Float[ArrayLike, "*e"], quantity: str = "hp10", angle_deg: float = 0.0
) -> Float[Array, "*e"]:
    """Monoenergetic conversion coefficient h_K = H / Ka (Sv/Gy) from air kerma free in air.

    Linear interpolation in energy on the shipped 1-2 keV grid (5-25 keV steps above 100 keV)
    and linear in angle between the tabulated angles (0, 15, ..., 75 deg; 90 deg for hp3;
    0 only for hstar10).

    Args:
        energy_kev: photon energies (keV), 2-300.
        quantity: "hp10", "hp3", "hp007" or "hstar10" (see `QUANTITIES`).
        angle_deg: angle of incidence from the phantom normal (degrees).

    Returns:
        h_K (Sv/Gy), the shape of `energy_kev`.

    Raises:
        ValueError: unknown quantity, an angle outside the table, an energy outside 2-300 keV.

    Examples:
        >>> round(float(conversion_coefficient(30.0, "hp10")), 4)
        1.1195
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; known: {list(QUANTITIES)}")
    table = conversion_table()[quantity]
    angles = np.asarray(sorted(table))
    a = float(angle_deg)
    if not angles[0] <= a <= angles[-1]:
        raise ValueError(f"angle_deg for {quantity} must lie in {angles[0]:g}-{angles[-1]:g} deg, got {angle_deg!r}")
    e = jnp.asarray(energy_kev, dtype=jnp.result_type(float))
    e_lo, e_hi = table[angles[0]][0][0], table[angles[0]][0][-1]
    if is_concrete(e) and e.size and (float(jnp.min(e)) < e_lo or float(jnp.max(e)) > e_hi):
        raise ValueError(f"energy_kev must lie in {e_lo:g}-{e_hi:g} keV (the table), got {np.asarray(e)}")
    i = int(np.clip(np.searchsorted(angles, a, side="right") - 1, 0, len(angles) - 1))
    j = min(i + 1, len(angles) - 1)
    t = 0.0 if j == i else (a - angles[i]) / (angles[j] - angles[i])

    def at(angle):
        energies, values = table[angle]
        return jnp.interp(e, jnp.asarray(energies, e.dtype), jnp.asarray(values, e.dtype))

    return at(angles[i]) if t == 0.0 else (1.0 - t) * at(angles[i]) + t * at(angles[j])


def hp_from_air_kerma(
    spectrum_or_energies: Spectrum | Float[ArrayLike, "*e"],
    air_kerma_gy: Float[ArrayLike, "*b"],
    quantity: str = "hp10",
    angle_deg: float = 0.0,
) -> Float[Array, "*b"]:
    """Personal (or ambient) dose equivalent from air kerma free in air and conversion coefficients.

    For a dosimeter site without a body dose map: H = Ka x h_K, with the monoenergetic
    coefficients h_K(E) (`conversion_coefficient`, shipped table) averaged over the spectrum
    weighted by each energy's share of the air kerma:
    h_K = sum_i Phi_i E_i (mu_en/rho)_air,i h_K(E_i) / sum_i Phi_i E_i (mu_en/rho)_air,i.
    Energies of the spectrum below the table (2 keV) carry no kerma worth counting in a
    filtered beam and get h_K = 0.

    Args:
        spectrum_or_energies: a Spectrum (at the site), or monoenergetic photon energies (keV),
            each then taken as a separate beam.
        air_kerma_gy: air kerma free in air at the site (Gy); broadcasts against the energies.
        quantity: "hp10", "hp3", "hp007" or "hstar10".
        angle_deg: angle of incidence from the phantom normal (degrees).

    Returns:
        The dose equivalent (Sv).

    Raises:
        ValueError: unknown quantity or angle, negative air kerma, energies outside 2-300 keV.

    Examples:
        >>> round(float(hp_from_air_kerma(30.0, 1e-3, "hp10")), 7)  # 1 mGy of 30 keV photons
        0.0011195
    """
    check_nonnegative("air_kerma_gy", air_kerma_gy)
    kerma = jnp.asarray(air_kerma_gy, dtype=jnp.result_type(float))
    if isinstance(spectrum_or_energies, Spectrum):
        s = spectrum_or_energies
        e = s.energy_kev
        weights = s.fluence * e * get("air").mu_en_cm2_g(e)
        in_table = e >= 2.0
        h = conversion_coefficient(jnp.where(in_table, e, 2.0), quantity, angle_deg)
        h_mean = jnp.sum(jnp.where(in_table, weights * h, 0.0)) / jnp.sum(weights)
        return kerma * h_mean
    check_positive("spectrum_or_energies", spectrum_or_energies)
    return kerma * conversion_coefficient(spectrum_or_energies, quantity, angle_deg)
