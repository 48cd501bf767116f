"""NIfTI-1/2 volumes in and out (nibabel), in physdose (z, y, x) LPS order."""

import gzip
from pathlib import Path

import numpy as np

from ..geometry._grid import Grid
from ._deps import import_nibabel
from ._orient import reorient

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def is_nifti(path: Path) -> bool:
    """Whether `path` names a NIfTI file by its extension (.nii or .nii.gz)."""
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _float32_decimal(values: np.ndarray) -> np.ndarray:
    """Each value as the shortest decimal that rounds to the same float32.

    NIfTI-1 headers store the affine in float32, so 0.7 is read back as 0.699999988...;
    this recovers 0.7 and makes NIfTI round trips of grids exact.
    """
    return np.vectorize(lambda v: float(str(np.float32(v))), otypes=[np.float64])(values)


def read_nifti(path: Path, *, labels: bool = False) -> tuple[np.ndarray, Grid]:
    """A NIfTI volume in (z, y, x) order and its Grid.

    Args:
        path: a .nii or .nii.gz file.
        labels: return the stored values (integer label maps) instead of float64.

    Returns:
        (volume, grid): float64 values (scaled by scl_slope/scl_inter), or the stored values
        when `labels`, shape grid.shape.
    """
    nib = import_nibabel()
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, ValueError, EOFError) as err:
        raise ValueError(f"path {str(path)!r} is not a readable NIfTI file: {err}") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"path {str(path)!r} is not a NIfTI image, got {type(img).__name__}")
    header = img.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise ValueError(
            f"NIfTI file {str(path)!r} has sform_code = qform_code = 0, so its position and orientation "
            "in the patient are unknown"
        )
    data = np.asarray(img.dataobj) if labels else img.get_fdata(dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"NIfTI file {str(path)!r} must hold a 3D volume, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if isinstance(img, nib.Nifti1Image) and not isinstance(img, nib.Nifti2Image):
        affine = _float32_decimal(affine)
    lps = _RAS_TO_LPS @ affine[:3, :]
    return reorient(data, lps[:, :3], lps[:, 3], what=f"NIfTI file {str(path)!r}")


def nifti_bytes(volume: np.ndarray, grid: Grid, *, compressed: bool, description: str = "") -> bytes:
    """A (z, y, x) volume on `grid` encoded as a NIfTI-1 file (gzip-compressed if `compressed`).

    The file is indexed (x, y, z); its RAS affine is diag(-dx, -dy, dz) with the position of
    voxel (0, 0, 0), stored as both sform and qform (code 1, scanner). `read_nifti` reads it
    back unchanged. The data keep `volume`'s dtype.
    """
    nib = import_nibabel()
    dz, dy, dx = grid.spacing_mm
    oz, oy, ox = grid.origin_mm
    affine = np.array(
        [[-dx, 0.0, 0.0, -ox], [0.0, -dy, 0.0, -oy], [0.0, 0.0, dz, oz], [0.0, 0.0, 0.0, 1.0]], dtype=np.float64
    )
    img = nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), affine, dtype=volume.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = description.encode("ascii", "replace")[:79]
    data = img.to_bytes()
    return gzip.compress(data, mtime=0) if compressed else data
