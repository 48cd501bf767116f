"""DICOM in and out (pydicom): CT image series in, RT Dose in and out."""

import datetime
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..geometry._grid import Grid
from ._deps import import_pydicom
from ._orient import reorient

_UINT32_MAX = 2**32 - 1
_ORIENTATION_TOLERANCE = 1e-4  # direction cosines that differ by more are inconsistent
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_SUMMATION_TYPES = (
    "PLAN",
    "MULTI_PLAN",
    "PLAN_OVERVIEW",
    "FRACTION",
    "BEAM",
    "BRACHY",
    "FRACTION_SESSION",
    "BEAM_SESSION",
    "BRACHY_SESSION",
    "CONTROL_POINT",
    "RECORD",
)


def _read_folder(folder: Path) -> list[tuple[Path, object]]:
    """Every DICOM file directly inside `folder` (hidden and non-DICOM files are skipped)."""
    pydicom = import_pydicom()
    out = []
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            out.append((f, pydicom.dcmread(f)))
        except pydicom.errors.InvalidDicomError:
            continue
    return out


def _slice_normal(iop: np.ndarray, f: Path) -> np.ndarray:
    """Unit normal (row cosines x column cosines) of ImageOrientationPatient `iop`."""
    normal = np.cross(iop[:3], iop[3:])
    if not np.linalg.norm(normal) > 0.9:
        raise ValueError(
            f"DICOM file {str(f)!r} has ImageOrientationPatient {iop.tolist()}, "
            "which is not two orthogonal unit vectors"
        )
    return normal / np.linalg.norm(normal)


def _require(ds, f: Path, *names: str) -> None:
    missing = [n for n in names if n not in ds]
    if missing:
        raise ValueError(f"DICOM file {str(f)!r} lacks {', '.join(missing)}")


def _select_ct_series(folder: Path, series_uid: str | None) -> list[tuple[Path, object]]:
    """The slices of the one CT series in `folder` (or of `series_uid`)."""
    datasets = _read_folder(folder)
    if not datasets:
        raise ValueError(f"path {str(folder)!r} holds no DICOM files")
    series = defaultdict(list)
    for f, ds in datasets:
        if "PixelData" in ds:
            series[str(ds.get("SeriesInstanceUID", ""))].append((f, ds))
    if not series:
        raise ValueError(f"path {str(folder)!r} holds DICOM files but no images")
    if series_uid is not None:
        if series_uid not in series:
            raise ValueError(f"series_uid {series_uid!r} is not in {str(folder)!r}; it holds {sorted(series)}")
        chosen = series[series_uid]
    else:
        ct = {uid: s for uid, s in series.items() if any(ds.get("Modality") == "CT" for _, ds in s)}
        if not ct:
            found = sorted({str(ds.get("Modality", "<none>")) for s in series.values() for _, ds in s})
            raise ValueError(f"path {str(folder)!r} holds no CT images: Modality is {found}, expected 'CT'")
        if len(ct) > 1:
            raise ValueError(
                f"path {str(folder)!r} holds {len(ct)} CT series {sorted(ct)}; choose one with series_uid="
            )
        (chosen,) = ct.values()
    for f, ds in chosen:
        if ds.get("Modality") != "CT":
            raise ValueError(f"DICOM file {str(f)!r} has Modality {ds.get('Modality')!r}, expected 'CT'")
    return chosen


def read_ct_series(folder: Path, *, series_uid: str | None = None) -> tuple[np.ndarray, Grid, dict]:
    """A DICOM CT series as HU in (z, y, x) order, its Grid, and its DICOM identifiers.

    Slices are sorted by their position along the slice normal (ImageOrientationPatient
    row x column cosines); pixel values are converted with each slice's RescaleSlope and
    RescaleIntercept.

    Returns:
        (hu, grid, ids): float64 HU of shape grid.shape; ids holds the patient, study,
        series and frame-of-reference identifiers of the series.
    """
    slices = _select_ct_series(folder, series_uid)
    for f, ds in slices:
        _require(ds, f, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            raise ValueError(f"DICOM file {str(f)!r} is multi-frame (enhanced CT), which is not supported")
    f0, ds0 = slices[0]
    iop0 = np.asarray(ds0.ImageOrientationPatient, dtype=np.float64)
    ps0 = np.asarray(ds0.PixelSpacing, dtype=np.float64)
    size0 = (int(ds0.Rows), int(ds0.Columns))
    if iop0.shape != (6,) or ps0.shape != (2,) or np.any(ps0 <= 0):
        raise ValueError(
            f"DICOM file {str(f0)!r} has invalid ImageOrientationPatient {list(iop0)} or PixelSpacing {list(ps0)}"
        )
    for f, ds in slices[1:]:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        if iop.shape != (6,) or np.abs(iop - iop0).max() > _ORIENTATION_TOLERANCE:
            raise ValueError(
                f"inconsistent ImageOrientationPatient across slices: {str(f)!r} has {iop.tolist()}, "
                f"{str(f0)!r} has {iop0.tolist()}"
            )
        ps = np.asarray(ds.PixelSpacing, dtype=np.float64)
        if ps.shape != (2,) or np.abs(ps - ps0).max() > 1e-4 * ps0.min():
            raise ValueError(
                f"inconsistent PixelSpacing across slices: {str(f)!r} has {ps.tolist()}, {str(f0)!r} has {ps0.tolist()}"
            )
        if (int(ds.Rows), int(ds.Columns)) != size0:
            raise ValueError(
                f"inconsistent image size across slices: {str(f)!r} has Rows, Columns = "
                f"{(int(ds.Rows), int(ds.Columns))}, {str(f0)!r} has {size0}"
            )
    row_cos, col_cos = iop0[:3], iop0[3:]  # directions of increasing column and row index
    normal = _slice_normal(iop0, f0)
    positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for _, ds in slices])
    if positions.shape != (len(slices), 3):
        raise ValueError(f"ImagePositionPatient must hold 3 values per slice in {str(folder)!r}")
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    slices, positions, depth = [slices[i] for i in order], positions[order], depth[order]
    gaps = np.diff(depth)
    if np.any(gaps < 1e-3):
        i = int(np.argmax(gaps < 1e-3))
        raise ValueError(
            f"duplicated slices: {str(slices[i][0])!r} and {str(slices[i + 1][0])!r} lie at the same position "
            f"{positions[i].tolist()} mm along the slice normal"
        )
    if len(slices) > 1:
        step = (depth[-1] - depth[0]) / (len(slices) - 1)
        if np.abs(gaps - step).max() > 0.01 * step:
            raise ValueError(
                f"non-uniform slice spacing in {str(folder)!r} (missing or extra slices?): gaps between "
                f"consecutive slices are {np.round(gaps, 4).tolist()} mm"
            )
    else:
        thickness = ds0.get("SpacingBetweenSlices") or ds0.get("SliceThickness")
        if not thickness or float(thickness) <= 0:
            raise ValueError(f"single slice {str(f0)!r} has neither SpacingBetweenSlices nor SliceThickness")
        step = float(thickness)
    in_plane = positions - np.outer(depth, normal)
    shift = np.abs(in_plane - in_plane[0]).max()
    if shift > 0.01 * ps0.min():
        raise ValueError(
            f"slices in {str(folder)!r} are not stacked along the slice normal (gantry tilt?): their "
            f"in-plane ImagePositionPatient differs by up to {shift:.4g} mm"
        )
    hu = np.empty((len(slices), *size0), dtype=np.float64)
    for k, (f, ds) in enumerate(slices):
        pixels = ds.pixel_array
        if pixels.shape != size0:
            raise ValueError(f"DICOM file {str(f)!r} has pixel data of shape {pixels.shape}, expected {size0}")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        hu[k] = pixels.astype(np.float64) * slope + intercept
    matrix = np.stack([normal * step, col_cos * ps0[0], row_cos * ps0[1]], axis=1)
    hu, grid = reorient(hu, matrix, positions[0], what=f"DICOM series in {str(folder)!r}")
    ids = {
        "patient_id": str(ds0.get("PatientID", "")),
        "patient_name": str(ds0.get("PatientName", "")),
        "study_instance_uid": str(ds0.get("StudyInstanceUID", "")),
        "series_instance_uid": str(ds0.get("SeriesInstanceUID", "")),
        "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
    }
    return hu, grid, ids


def read_rt_dose(path: Path) -> tuple[np.ndarray, Grid]:
    """A DICOM RT Dose file as dose (Gy, float64) in (z, y, x) order and its Grid."""
    pydicom = import_pydicom()
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as err:
        raise ValueError(f"path {str(path)!r} is not a DICOM file: {err}") from err
    if ds.get("Modality") != "RTDOSE":
        raise ValueError(f"DICOM file {str(path)!r} has Modality {ds.get('Modality')!r}, expected 'RTDOSE'")
    _require(
        ds, path, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "DoseGridScaling", "PixelData"
    )
    units = str(ds.get("DoseUnits", "GY"))
    if units != "GY":
        raise ValueError(f"DICOM file {str(path)!r} has DoseUnits {units!r}; only 'GY' is supported")
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    dose = pixels.astype(np.float64) * float(ds.DoseGridScaling)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    ps = np.asarray(ds.PixelSpacing, dtype=np.float64)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    if iop.shape != (6,) or ps.shape != (2,) or ipp.shape != (3,):
        raise ValueError(f"DICOM file {str(path)!r} has an invalid ImageOrientationPatient, PixelSpacing or position")
    row_cos, col_cos = iop[:3], iop[3:]
    normal = _slice_normal(iop, path)
    if frames > 1:
        _require(ds, path, "GridFrameOffsetVector")
        offsets = np.asarray(ds.GridFrameOffsetVector, dtype=np.float64)
        if offsets.shape != (frames,):
            raise ValueError(
                f"DICOM file {str(path)!r} has {frames} frames but GridFrameOffsetVector has {offsets.size} values"
            )
        if offsets[0] != 0:  # absolute (z) offsets, allowed for ImageOrientationPatient 1\0\0\0\1\0
            offsets = offsets - ipp @ normal
        steps = np.diff(offsets)
        step = (offsets[-1] - offsets[0]) / (frames - 1)
        if step == 0 or np.abs(steps - step).max() > 0.01 * abs(step):
            raise ValueError(
                f"DICOM file {str(path)!r} has a non-uniform GridFrameOffsetVector {np.round(offsets, 4).tolist()}"
            )
        origin = ipp + offsets[0] * normal
    else:
        step, origin = float(ds.get("SliceThickness", 1.0) or 1.0), ipp
    matrix = np.stack([normal * step, col_cos * ps[0], row_cos * ps[1]], axis=1)
    return reorient(dose, matrix, origin, what=f"RT Dose file {str(path)!r}")


def _ds(value: float) -> str:
    """A decimal string (DICOM DS, at most 16 characters) for `value`."""
    return import_pydicom().valuerep.format_number_as_ds(float(value))


def _check_uid(name: str, value: str | None) -> str:
    pydicom = import_pydicom()
    if value is None:
        return pydicom.uid.generate_uid()
    if not isinstance(value, str) or len(value) > 64 or not _UID.fullmatch(value):
        raise ValueError(f"{name} must be a valid DICOM UID (digits and dots, <= 64 chars), got {value!r}")
    return value


def rt_dose_dataset(
    dose_gy: np.ndarray,
    grid: Grid,
    *,
    frame_of_reference_uid: str | None,
    study_instance_uid: str | None,
    patient_id: str,
    patient_name: str,
    summation_type: str,
    series_description: str,
):
    """A DICOM RT Dose dataset (multi-frame, uint32 pixels with DoseGridScaling) for `dose_gy`.

    Frames are the z slices (increasing +z), rows run +y and columns +x, so
    ImageOrientationPatient is [1, 0, 0, 0, 1, 0] and ImagePositionPatient is the (x, y, z)
    centre of voxel (0, 0, 0). The pixel values are round(dose / DoseGridScaling), so the
    stored dose differs from `dose_gy` by at most DoseGridScaling / 2 = max(dose) / 2^33.
    """
    pydicom = import_pydicom()
    uid = pydicom.uid
    if summation_type not in _SUMMATION_TYPES:
        raise ValueError(f"summation_type must be one of {_SUMMATION_TYPES}, got {summation_type!r}")
    frame_uid = _check_uid("frame_of_reference_uid", frame_of_reference_uid)
    study_uid = _check_uid("study_instance_uid", study_instance_uid)
    dose = np.asarray(dose_gy, dtype=np.float64)
    peak = float(dose.max())
    scaling = float(_ds(peak / _UINT32_MAX)) if peak > 0 else 1.0
    pixels = np.clip(np.rint(dose / scaling), 0, _UINT32_MAX).astype("<u4")

    nz, ny, nx = grid.shape
    dz, dy, dx = grid.spacing_mm
    oz, oy, ox = grid.origin_mm
    sop_uid = uid.generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.RTDoseStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid.PYDICOM_IMPLEMENTATION_UID

    ds = pydicom.dataset.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = uid.RTDoseStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate, ds.StudyTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.Modality = "RTDOSE"
    ds.Manufacturer = "physdose"
    ds.SeriesDescription = series_description
    ds.ReferringPhysicianName = ""
    ds.OperatorsName = ""
    ds.AccessionNumber = ""
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid.generate_uid()
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [_ds(ox), _ds(oy), _ds(oz)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(dz)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)  # GridFrameOffsetVector
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation_type
    ds.GridFrameOffsetVector = [_ds(k * dz) for k in range(nz)]
    ds.DoseGridScaling = _ds(scaling)
    ds.PixelData = pixels.tobytes()
    return ds
