"""CT dose indices: CTDI100 / CTDIw / CTDIvol by Monte Carlo in the CTDI phantoms, DLP, water-equivalent
diameter (AAPM Report 220) and size-specific dose estimates (AAPM Report 204)."""

import dataclasses
import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_nonnegative, check_positive
from ..materials._material import get
from ..mc._scorers import DiskScorer
from ..mc._simulate import replicate
from ..phantoms._phantom import Phantom
from ..phantoms._reference import CTDI_HOLES, ctdi
from ..sources._ct import CTScan
from ._inputs import check_phantom

CHAMBER_LENGTH_MM = 100.0
"""Length of the CTDI100 pencil chamber (mm), centred on the phantom."""

_DISK_RADIUS_MM = 6.0  # scoring disks inside the 13.1 mm (6.55 mm radius) holes

#: AAPM Report 204 (2011), exponential fits of the size-specific conversion factor
#: f = a exp(-b Dw), Dw in cm, to the pooled data of its four groups, for CTDIvol measured in
#: the 32 cm (body) and 16 cm (head) PMMA phantoms. The same coefficients appear in AAPM 204's
#: equations and in independent SSDE implementations (e.g. DICOMwaterequivalent's README,
#: which gives them per mm: 3.704369 exp(-0.003671937 Dw[mm])). AAPM Report 220 (2014)
#: replaces the 'effective diameter' of Report 204 by the water-equivalent diameter Dw.
SSDE_FIT = {320: (3.704369, 0.03671937), 160: (1.874799, 0.03871313)}


class CTDI(eqx.Module):
    """CT dose indices of a scan, from Monte Carlo in a CTDI phantom.

    CTDI100 of a hole = (1 / N T) x integral over the 100 mm chamber of the air kerma in the
    hole, for one axial rotation, N T = the nominal beam width (`collimation_mm`). CTDIw =
    CTDI100(centre) / 3 + 2/3 x mean CTDI100 of the four peripheral holes; CTDIvol =
    CTDIw / pitch (pitch = table feed per rotation / N T, helical or axial alike).

    Attributes:
        holes: hole names (`CTDI_HOLES` order: centre, 12, 3, 6, 9 o'clock) (static).
        ctdi100_per_photon_mgy: CTDI100 of each hole per source photon of one rotation (mGy), shape (5,).
        ctdi100_rel_sigma: their relative standard uncertainties, shape (5,).
        ctdi_w_per_photon_mgy: CTDIw per source photon of one rotation (mGy), shape ().
        ctdi_vol_per_photon_mgy: CTDIvol per source photon of the whole scan (mGy), shape ();
            what `CTScan.source_photons_for_ctdi_vol` takes.
        rel_sigma: relative standard uncertainty of CTDIw and CTDIvol, shape ().
        ctdi_w_per_mas_mgy: CTDIw per mAs of one rotation, nCTDIw (mGy/mAs), shape (); NaN
            when the spectrum has no tube output.
        ctdi_vol_mgy: CTDIvol of the scan at its mAs (mGy), shape (); NaN without tube output.
        diameter_mm, pitch, collimation_mm: the phantom diameter and the scan's pitch and
            nominal beam width (static).
        n_photons: source photons simulated (static).
    """

    holes: tuple[str, ...] = eqx.field(static=True)
    ctdi100_per_photon_mgy: Float[Array, " 5"]
    ctdi100_rel_sigma: Float[Array, " 5"]
    ctdi_w_per_photon_mgy: Float[Array, ""]
    ctdi_vol_per_photon_mgy: Float[Array, ""]
    rel_sigma: Float[Array, ""]
    ctdi_w_per_mas_mgy: Float[Array, ""]
    ctdi_vol_mgy: Float[Array, ""]
    diameter_mm: float = eqx.field(static=True)
    pitch: float = eqx.field(static=True)
    collimation_mm: float = eqx.field(static=True)
    n_photons: int = eqx.field(static=True)


def chamber_cells(collimation_mm: float, max_cell_mm: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and lengths (mm) of the cells splitting the 100 mm chamber for the z integral.

    Cell boundaries include +-N T / 2 (the nominal beam edges at the isocentre), so the
    midpoint rule is exact for the step-like primary profile on the axis; cells are at most
    `max_cell_mm` long.
    """
    half = CHAMBER_LENGTH_MM / 2
    edges = {-half, half}
    if collimation_mm / 2 < half:
        edges |= {-collimation_mm / 2, collimation_mm / 2}
    edges = sorted(edges)
    mids, widths = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        n = max(1, math.ceil((b - a) / max_cell_mm - 1e-9))
        w = (b - a) / n
        mids += [a + (k + 0.5) * w for k in range(n)]
        widths += [w] * n
    return np.asarray(mids), np.asarray(widths)


def ctdi_vol(
    scan: CTScan,
    diameter_mm: int = 320,
    *,
    n_photons: int = 1_000_000,
    spacing_mm=(5.0, 2.0, 2.0),
    margin_mm: float = 10.0,
    cell_mm: float = 5.0,
    n_batches: int = 10,
    lanes: int = 16384,
    progress: bool = False,
    key: PRNGKeyArray,
) -> CTDI:
    """CTDIvol of a CT scan by Monte Carlo in the 160 mm (head) or 320 mm (body) PMMA CTDI phantom.

    The scan's beam (spectrum, bowtie, collimation, fan, source distance, views per
    rotation) makes one axial rotation centred on the 150 mm phantom (IEC 60601-2-44 / AAPM
    Report 96 geometry; every hole open, i.e. air). The 100 mm pencil chamber's reading, the
    air kerma in a hole integrated over |z| <= 50 mm, is scored with thin scoring disks
    (`physdose.mc.DiskScorer`, a track-crossing fluence estimator times air's mu_en/rho) of
    6 mm radius centred on each hole's axis, normals along x and along y, at the midpoints
    of cells of at most `cell_mm` along the chamber (`chamber_cells`); the integral is the
    midpoint rule over the cells. The energy imparted to the holes' air cannot be used
    instead: air is so thin that about 1e-6 interactions happen in a hole per source photon,
    so it would need ~1e10 photons for 1 %. Air kerma is the dose to air of a cavity in
    charged-particle equilibrium, which a chamber measures, and matches the kerma
    approximation of the transport.

    Normalisations: per source photon of one rotation; per source photon of the whole scan
    (n_rot = views / views_per_rotation rotations with, on average, equal photons); and,
    when the spectrum has a tube output (`Spectrum.from_tube`), per mAs and absolute for the
    scan's mAs (mean mA under tube current modulation).

    Uncertainty: the run is split into `n_batches` // 2 independent sub-runs (2 batches each);
    the spread of their hole and CTDIw values, which keeps every correlation between disks
    and holes, gives the standard uncertainties. Body phantom, 120 kVp, body bowtie, 4e5
    photons: about 2.5 % per peripheral hole, 12 % for the centre hole and 3 % for CTDIw. The
    centre hole is the noisiest: photons cross its disks from every direction in the axial
    plane, and grazing crossings carry large weights (1 / |cos|) in the crossing estimator.

    Args:
        scan: the CT scan (its z range, table motion and tube current modulation do not
            matter except through pitch and mAs).
        diameter_mm: 160 (head) or 320 (body).
        n_photons: source photons to simulate.
        spacing_mm: voxel size of the phantom (mm), (z, y, x); the default resolves the
            13.1 mm holes.
        margin_mm: air around the phantom inside the voxel grid (mm); photons are tracked
            through air outside the grid too, so this only sets the grid size.
        cell_mm: longest cell of the chamber's z integral (mm); the scoring cost grows with
            the number of disks, 2 x 5 x (about 100 / cell_mm).
        n_batches: statistical batches (>= 4, even).
        lanes, progress: as for `physdose.mc.simulate`.
        key: PRNG key.

    Returns:
        CTDI.

    Raises:
        TypeError: `scan` is not a CTScan.
        ValueError: `diameter_mm` not 160 or 320, `n_batches` < 4, or bad simulation settings.
    """
    if not isinstance(scan, CTScan):
        raise TypeError(f"scan must be a physdose.sources.CTScan, got {type(scan).__name__}")
    if not isinstance(n_batches, int) or n_batches < 4:
        raise ValueError(
            f"n_batches must be an int >= 4 (sub-runs of 2 batches give the uncertainty), got {n_batches!r}"
        )
    phantom = ctdi(diameter_mm, spacing_mm=spacing_mm, margin_mm=margin_mm)
    axial = dataclasses.replace(
        scan,
        start_z_mm=0.0,
        end_z_mm=0.0,
        helical=False,
        isocenter_yx_mm=(0.0, 0.0),
        tcm_z_mm=None,
        tcm_factor=None,
    )
    holes = tuple(CTDI_HOLES)
    centers = phantom.info["hole_centers_mm"]
    check_positive("cell_mm", cell_mm)
    z_mid, z_len = chamber_cells(scan.collimation_mm, cell_mm)
    normals = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    disks = tuple(
        DiskScorer((float(z), *centers[h]), n, _DISK_RADIUS_MM) for h in holes for z in z_mid for n in normals
    )

    def ctdi100(r):  # per hole, mGy per photon; then the weighted CTDI
        kerma = np.asarray(r.disks[:, 2], np.float64).reshape(len(holes), len(z_mid), len(normals)).mean(axis=2)
        per_hole = 1e3 * (kerma @ z_len) / scan.collimation_mm
        return np.append(per_hole, per_hole[0] / 3.0 + 2.0 / 3.0 * per_hole[1:].mean())

    mean, rel_all, _ = replicate(
        ctdi100,
        phantom,
        axial,
        n_photons=n_photons,
        key=key,
        runs=n_batches // 2,
        n_batches=2,
        lanes=lanes,
        disks=disks,
        progress=progress,
    )
    ctdi100, rel, ctdi_w, rel_w = mean[:-1], rel_all[:-1], float(mean[-1]), float(rel_all[-1])
    rotations = scan.num_views / scan.views_per_rotation
    per_scan_photon = ctdi_w / (scan.pitch * rotations)
    try:
        per_mas = ctdi_w * float(axial.beam().photons_per_mas())
        ctdi_vol_mgy = per_mas * float(scan.mas) / rotations / scan.pitch
    except ValueError:  # no tube output: no per-mAs normalisation
        per_mas = ctdi_vol_mgy = math.nan
    dtype = jnp.result_type(float)
    return CTDI(
        holes,
        jnp.asarray(ctdi100, dtype),
        jnp.asarray(rel, dtype),
        jnp.asarray(ctdi_w, dtype),
        jnp.asarray(per_scan_photon, dtype),
        jnp.asarray(rel_w, dtype),
        jnp.asarray(per_mas, dtype),
        jnp.asarray(ctdi_vol_mgy, dtype),
        float(diameter_mm),
        float(scan.pitch),
        float(scan.collimation_mm),
        int(n_photons),
    )


def dlp(ctdi_vol_mgy: Float[ArrayLike, "*b"], scan_length_mm: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
    """Dose-length product (mGy cm) = CTDIvol x scan length.

    Examples:
        >>> float(dlp(10.0, 250.0))
        250.0
    """
    check_nonnegative("ctdi_vol_mgy", ctdi_vol_mgy)
    check_nonnegative("scan_length_mm", scan_length_mm)
    return jnp.asarray(ctdi_vol_mgy, dtype=jnp.result_type(float)) * jnp.asarray(scan_length_mm) / 10.0


def water_equivalent_diameter(
    phantom: Phantom,
    z_mm: Float[ArrayLike, "*n"] | None = None,
    *,
    energy_kev: float = 70.0,
    min_relative_attenuation: float = 0.05,
) -> Float[Array, "*n"]:
    """Water-equivalent diameter Dw (mm) of axial slices, AAPM Report 220 (2014).

    Aw = sum over the slice's pixels of (CT / 1000 + 1) x pixel area, and Dw = 2 sqrt(Aw / pi).
    A voxel phantom has no CT numbers, so CT / 1000 + 1 = mu / mu_water is taken from the
    voxel's linear attenuation coefficient (its material at its density) relative to water,
    at an effective energy `energy_kev` (70 keV: roughly the effective energy of a 120 kVp CT
    beam behind a body bowtie). Voxels with mu / mu_water below `min_relative_attenuation`
    (air, HU < -950) are left out, as if the patient outline were the ROI; a table or other
    non-patient matter in the phantom counts.

    Args:
        phantom: the phantom; slices are its z voxel planes.
        z_mm: slice positions (mm); each picks the slice whose voxel contains it. None: every slice.
        energy_kev: effective energy (keV) for the attenuation ratio.
        min_relative_attenuation: mu / mu_water below which a voxel is air and not counted.

    Returns:
        Dw (mm), the shape of `z_mm`, or (nz,) for every slice.

    Raises:
        ValueError: a `z_mm` outside the grid, or a non-positive energy.

    Examples:
        >>> import physdose as pd
        >>> p = pd.phantoms.water_cylinder(300.0, 20.0, spacing_mm=2.0)
        >>> round(float(water_equivalent_diameter(p, 0.0)) / 10)  # cm
        30
    """
    check_phantom(phantom)
    check_positive("energy_kev", energy_kev)
    rel = phantom.mu_per_mm(energy_kev) / get("water").mu_per_mm(energy_kev)
    rel = jnp.where(rel >= min_relative_attenuation, rel, 0.0)
    _, dy, dx = phantom.grid.spacing_mm
    area_mm2 = jnp.sum(rel, axis=(1, 2)) * (dy * dx)
    dw = 2.0 * jnp.sqrt(area_mm2 / jnp.pi)
    if z_mm is None:
        return dw
    z = np.asarray(z_mm, dtype=np.float64)
    (z0, _, _), (z1, _, _) = phantom.grid.bounds_mm
    if np.any(z < z0) or np.any(z > z1):
        raise ValueError(f"z_mm must lie within the phantom grid, {z0:g}-{z1:g} mm, got {z_mm!r}")
    index = np.clip(
        np.round((z - phantom.grid.origin_mm[0]) / phantom.grid.spacing_mm[0]), 0, phantom.grid.shape[0] - 1
    )
    return dw[jnp.asarray(index.astype(np.int32))]


def ssde_conversion_factor(dw_mm: Float[ArrayLike, "*b"], phantom_diameter_mm: int = 320) -> Float[Array, "*b"]:
    """AAPM Report 204 size-specific conversion factor f = a exp(-b Dw[cm]) (see `SSDE_FIT`).

    The fits were made over 8-45 cm (AAPM 204 Tables 1-2); outside that they extrapolate.

    Args:
        dw_mm: water-equivalent diameter (mm; AAPM 204's "effective diameter").
        phantom_diameter_mm: 320 or 160, the CTDI phantom in which CTDIvol was given.

    Examples:
        >>> round(float(ssde_conversion_factor(160.0, 160)), 3)  # 16 cm head: about 1
        1.009
    """
    if phantom_diameter_mm not in SSDE_FIT:
        raise ValueError(f"phantom_diameter_mm must be 320 or 160, got {phantom_diameter_mm!r}")
    check_positive("dw_mm", dw_mm)
    a, b = SSDE_FIT[phantom_diameter_mm]
    return a * jnp.exp(-b * jnp.asarray(dw_mm, dtype=jnp.result_type(float)) / 10.0)


def ssde(
    ctdi_vol_mgy: Float[ArrayLike, "*b"],
    dw_mm_or_phantom: Float[ArrayLike, "*b"] | Phantom,
    phantom_diameter_mm: int = 320,
    *,
    z_mm: Float[ArrayLike, "*b"] | None = None,
    energy_kev: float = 70.0,
) -> Float[Array, "*b"]:
    """Size-specific dose estimate SSDE = f(Dw) x CTDIvol (mGy), AAPM Reports 204 and 220.

    Args:
        ctdi_vol_mgy: CTDIvol (mGy) in the `phantom_diameter_mm` CTDI phantom.
        dw_mm_or_phantom: water-equivalent diameter (mm), or a phantom whose Dw is taken at
            `z_mm` (`water_equivalent_diameter`); with z_mm None, the mean Dw of the slices
            holding any tissue.
        phantom_diameter_mm: 320 (body) or 160 (head).
        z_mm: slice positions (mm) when a phantom is given.
        energy_kev: effective energy (keV) for Dw of a phantom.

    Returns:
        SSDE (mGy).

    Raises:
        ValueError: a negative CTDIvol, a non-positive Dw, an unknown phantom diameter.

    Examples:
        >>> round(float(ssde(10.0, 320.0)), 2)  # a 32 cm water-equivalent patient, 32 cm phantom
        11.44
    """
    check_nonnegative("ctdi_vol_mgy", ctdi_vol_mgy)
    if isinstance(dw_mm_or_phantom, Phantom):
        dw = water_equivalent_diameter(dw_mm_or_phantom, z_mm, energy_kev=energy_kev)
        if z_mm is None:
            dw = jnp.mean(dw[dw > 0])
    else:
        if z_mm is not None:
            raise ValueError("z_mm applies only when dw_mm_or_phantom is a phantom")
        dw = dw_mm_or_phantom
    return jnp.asarray(ctdi_vol_mgy, dtype=jnp.result_type(float)) * ssde_conversion_factor(dw, phantom_diameter_mm)
