"""Dose volumes out (NIfTI or DICOM RT Dose) and back in."""

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._atomic import atomic_path
from ..geometry._grid import Grid
from ._dicom import read_rt_dose, rt_dose_dataset
from ._nifti import is_nifti, nifti_bytes, read_nifti
from ._paths import as_path, existing_path


def _check_dose(dose, grid) -> np.ndarray:
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a physdose.Grid, got {type(grid).__name__}")
    d = np.asarray(dose)
    if d.dtype.kind not in "iuf":
        raise TypeError(f"dose must be a real-valued array, got dtype {d.dtype}")
    if d.shape != grid.shape:
        raise ValueError(f"dose has shape {d.shape} but grid.shape is {grid.shape}")
    finite = np.isfinite(d)
    if not finite.all():
        raise ValueError(f"dose must be finite, got {int((~finite).sum())} NaN or infinite voxels")
    if d.size and d.min() < 0:
        raise ValueError(f"dose must be non-negative, got minimum {d.min()} Gy")
    return d


def save_dose(
    path: str | os.PathLike,
    dose: Float[ArrayLike, "z y x"],
    grid: Grid,
    *,
    frame_of_reference_uid: str | None = None,
    study_instance_uid: str | None = None,
    patient_id: str = "",
    patient_name: str = "",
    summation_type: str = "PLAN",
    series_description: str = "physdose dose",
) -> Path:
    """Write a dose volume (Gy) as NIfTI or DICOM RT Dose, atomically.

    The format follows the extension: ``.nii`` / ``.nii.gz`` write NIfTI-1 (float32, in
    Gy, RAS affine as `load_ct` reads it, so `load_dose` gives back the same float32
    values and grid); anything else writes a DICOM RT Dose file (Modality RTDOSE,
    DoseUnits GY, DoseType PHYSICAL, one frame per z slice with GridFrameOffsetVector,
    ImageOrientationPatient [1, 0, 0, 0, 1, 0], ImagePositionPatient in DICOM (x, y, z)
    order, uint32 pixels times DoseGridScaling; values are quantised to within
    max(dose) / 2^33). The file appears complete or not at all.

    To attach an RT Dose to a CT loaded with `load_ct`, pass that phantom's
    ``info["frame_of_reference_uid"]``, ``info["study_instance_uid"]``,
    ``info["patient_id"]`` and ``info["patient_name"]``.

    Args:
        path: output file.
        dose: absorbed dose (Gy), finite and >= 0, shape grid.shape (z, y, x).
        grid: the grid of `dose`.
        frame_of_reference_uid: DICOM FrameOfReferenceUID (RT Dose only); new if None.
        study_instance_uid: DICOM StudyInstanceUID (RT Dose only); new if None.
        patient_id: DICOM PatientID (RT Dose only).
        patient_name: DICOM PatientName (RT Dose only).
        summation_type: DICOM DoseSummationType (RT Dose only), e.g. "PLAN" or "RECORD".
        series_description: DICOM SeriesDescription / NIfTI description.

    Returns:
        `path` as a Path.

    Raises:
        ValueError: if `dose` has the wrong shape, is negative or not finite, or a UID or
            `summation_type` is invalid. Nothing is written.
        TypeError: if `grid` is not a Grid or `dose` is not real-valued.
        ImportError: if pydicom/nibabel are missing (pip install "physdose[io]").
    """
    out = as_path("path", path)
    d = _check_dose(dose, grid)
    if is_nifti(out):
        data = nifti_bytes(
            d.astype(np.float32),
            grid,
            compressed=out.name.lower().endswith(".gz"),
            description=f"{series_description} (Gy)",
        )
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        return out
    ds = rt_dose_dataset(
        d,
        grid,
        frame_of_reference_uid=frame_of_reference_uid,
        study_instance_uid=study_instance_uid,
        patient_id=patient_id,
        patient_name=patient_name,
        summation_type=summation_type,
        series_description=series_description,
    )
    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return out


def load_dose(path: str | os.PathLike) -> tuple[Float[Array, "z y x"], Grid]:
    """Read a dose volume (Gy) written by `save_dose`, or another NIfTI / DICOM RT Dose file.

    NIfTI files are read as `load_hu` reads them (values taken as Gy). RT Dose files must
    be axis-aligned with DoseUnits GY; pixels are multiplied by DoseGridScaling and the
    frames placed by GridFrameOffsetVector (relative or absolute).

    Args:
        path: a .nii/.nii.gz file or a DICOM RT Dose file.

    Returns:
        (dose_gy, grid): float32 dose (Gy) of shape grid.shape (z, y, x), and its grid.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not NIfTI or RT Dose, is oblique, or its frames are
            not evenly spaced.
        ImportError: if pydicom/nibabel are missing (pip install "physdose[io]").
    """
    p = existing_path("path", path)
    if p.is_dir():
        raise ValueError(f"path {str(p)!r} is a folder; load_dose reads one NIfTI or RT Dose file")
    dose, grid = read_nifti(p) if is_nifti(p) else read_rt_dose(p)
    return jnp.asarray(dose, dtype=jnp.float32), grid
