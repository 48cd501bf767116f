"""CT images (a DICOM series folder or a NIfTI file) -> HU volumes and phantoms."""

import os

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..geometry._grid import Grid
from ..materials._hu import HUCalibration
from ..phantoms._phantom import Phantom
from ._dicom import read_ct_series
from ._nifti import is_nifti, read_nifti
from ._paths import existing_path


def _read_hu(path, series_uid: str | None) -> tuple[np.ndarray, Grid, dict]:
    path = existing_path("path", path)
    if path.is_dir():
        hu, grid, ids = read_ct_series(path, series_uid=series_uid)
        return hu, grid, {"format": "dicom", "path": str(path), **ids}
    if series_uid is not None:
        raise ValueError(f"series_uid applies to DICOM series folders only, got {series_uid!r} for {str(path)!r}")
    if is_nifti(path):
        hu, grid = read_nifti(path)
        return hu, grid, {"format": "nifti", "path": str(path)}
    raise ValueError(
        f"path {str(path)!r} must be a folder holding one DICOM CT series or a NIfTI file (.nii or .nii.gz)"
    )


def load_hu(path: str | os.PathLike, *, series_uid: str | None = None) -> tuple[Float[Array, "z y x"], Grid]:
    """Read a CT scan as CT numbers (HU) on its grid.

    Accepts a folder holding a DICOM CT series (one file per slice) or a NIfTI file
    (.nii / .nii.gz). The volume is reordered into physdose's (z, y, x) patient
    coordinates (DICOM LPS: +x patient left, +y posterior, +z superior), with every axis
    increasing along +z, +y, +x; `grid.origin_mm` is the world position of voxel
    (0, 0, 0)'s centre. Only axis-aligned scans are supported.

    DICOM: files that are not DICOM, and non-image objects (RTSTRUCT, RTPLAN, ...), are
    skipped; the folder must hold exactly one CT series unless `series_uid` picks one.
    Slices are sorted by position along the slice normal; the slice spacing is taken
    from their positions and must be uniform (no missing or duplicated slices);
    orientation, pixel spacing and image size must agree across slices. Pixel values are
    converted with each slice's RescaleSlope and RescaleIntercept.

    NIfTI: the RAS affine (sform, else qform) is converted to LPS; scl_slope/scl_inter
    are applied. NIfTI-1 stores the affine in float32; spacing and origin are read back
    as the shortest decimals with the same float32 value.

    Args:
        path: a DICOM series folder or a .nii/.nii.gz file.
        series_uid: SeriesInstanceUID to read when a DICOM folder holds several CT series.

    Returns:
        (hu, grid): float32 CT numbers of shape grid.shape (z, y, x), and their grid (mm).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: for an empty folder, a non-CT series, several series, missing or
            duplicated slices, inconsistent slices, oblique orientations, or a file that
            is neither a folder nor NIfTI.
        ImportError: if pydicom/nibabel are missing (pip install "physdose[io]").
    """
    hu, grid, _ = _read_hu(path, series_uid)
    return jnp.asarray(hu, dtype=jnp.float32), grid


def load_ct(
    path: str | os.PathLike, *, calibration: HUCalibration | None = None, series_uid: str | None = None
) -> Phantom:
    """Read a CT scan (DICOM series folder or NIfTI file) as a voxel phantom.

    The CT numbers (see `load_hu` for formats, orientation and checks) are converted to
    material ids and densities by `calibration`. The phantom has no organs: organ_labels
    is all zero and organs is empty (add a label map from `load_labels`). Its `info`
    records the format and path and, for DICOM, the patient, study, series and
    frame-of-reference identifiers (keys patient_id, patient_name, study_instance_uid,
    series_instance_uid, frame_of_reference_uid), which `save_dose` accepts so a dose
    can be attached to the same study.

    Args:
        path: a DICOM series folder or a .nii/.nii.gz file.
        calibration: HU -> (material, density) conversion; `HUCalibration.default()` if None.
        series_uid: SeriesInstanceUID to read when a DICOM folder holds several CT series.

    Returns:
        A Phantom on the scan's grid whose materials are `calibration.material_table()`.

    Raises:
        FileNotFoundError, ValueError, ImportError: as `load_hu`.
        TypeError: if `calibration` is not an HUCalibration.

    Examples:
        >>> phantom = load_ct("ct_folder")  # doctest: +SKIP
        >>> labels, organs = load_labels("organs.nii.gz", phantom.grid)  # doctest: +SKIP
        >>> phantom = Phantom(phantom.grid, phantom.material_ids, phantom.density_g_cm3,
        ...                   phantom.materials, labels, organs)  # doctest: +SKIP
    """
    if calibration is None:
        calibration = HUCalibration.default()
    if not isinstance(calibration, HUCalibration):
        raise TypeError(f"calibration must be an HUCalibration, got {type(calibration).__name__}")
    hu, grid, info = _read_hu(path, series_uid)
    ids, density = calibration(jnp.asarray(hu, dtype=jnp.float32))
    return Phantom(
        grid,
        ids,
        density,
        calibration.material_table(),
        jnp.zeros(grid.shape, dtype=jnp.int32),
        {},
        info=info,
    )
