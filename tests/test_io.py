"""physdose.io: DICOM / NIfTI CT, label maps and dose, checked against the DICOM and NIfTI
geometry equations applied by hand to the files these tests write."""

import json
import os
import sys

import numpy as np
import pytest

import physdose as pd
from physdose.io import load_ct, load_dose, load_hu, load_labels, save_dose
from physdose.materials import HUCalibration

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

# (z, y, x): odd sizes and spacings that differ per axis, so a swapped axis cannot pass.
GRID = pd.Grid((6, 7, 8), (2.5, 1.25, 0.75), (-30.0, 12.5, -4.0))
MARK = (1, 5, 2)  # (z, y, x) index of a voxel with a unique HU (cortical bone)
MARK_HU = 1500.0
# One HU per octant, one material bin each under HUCalibration.default().
OCTANT_HU = np.array([-1000.0, -700.0, -100.0, 40.0, 200.0, 450.0, 700.0, 1000.0])


def _hu_volume(shape=GRID.shape) -> np.ndarray:
    """Asymmetric integer HU volume: a distinct tissue per (uneven) octant, a ramp inside
    each octant (so densities vary voxel by voxel), and one marked voxel."""
    z, y, x = np.indices(shape)
    nz, ny, nx = shape
    octant = 4 * (z >= nz // 2) + 2 * (y >= ny // 2) + (x >= nx // 2)
    hu = OCTANT_HU[octant] + x + 2 * y + 3 * z
    hu[MARK] = MARK_HU
    return hu


HU = _hu_volume()


def _expected_materials(hu=HU):
    ids, density = HUCalibration.default()(hu)
    return np.asarray(ids), np.asarray(density)


# --- writers for test inputs (independent of physdose.io) -------------------------------


def _file_volume(volume, grid, axes_lps):
    """`volume` (z, y, x) in a file's index order whose axes point along `axes_lps`.

    axes_lps: three signed LPS unit vectors, the world direction of file axes 0, 1, 2.
    Returns (file volume, LPS (x, y, z) position of file voxel (0, 0, 0), spacing per file axis).
    """
    perm, flips = [], []
    for v in axes_lps:
        w = int(np.argmax(np.abs(v)))
        perm.append(2 - w)  # array axis (z, y, x) of LPS axis w
        flips.append(v[w] < 0)
    out = np.transpose(volume, perm)
    first = np.zeros(3)
    for i, (a, flip) in enumerate(zip(perm, flips)):
        if flip:
            out = np.flip(out, axis=i)
            first[a] = grid.shape[a] - 1
    first_zyx = np.asarray(grid.origin_mm) + first * np.asarray(grid.spacing_mm)
    return out, first_zyx[::-1], [grid.spacing_mm[a] for a in perm]


def _write_ct_series(
    folder,
    hu=HU,
    grid=GRID,
    *,
    row_cos=(1, 0, 0),
    col_cos=(0, 1, 0),
    slope=1.0,
    intercept=-1024.0,
    shuffle=False,
    modality="CT",
    series_uid=None,
    edit=None,
):
    """Write `hu` on `grid` as one DICOM CT file per slice; returns the paths in slice order.

    row_cos / col_cos: ImageOrientationPatient (direction of increasing column / row index).
    edit(k, ds): optional hook to tamper with slice k before it is written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos = np.asarray(row_cos, float), np.asarray(col_cos, float)
    normal = np.cross(row_cos, col_cos)
    vol, first, (d_slice, d_row, d_col) = _file_volume(hu, grid, [normal, col_cos, row_cos])
    study, frame = generate_uid(), generate_uid()
    series_uid = series_uid or generate_uid()
    order = np.random.default_rng(0).permutation(len(vol)) if shuffle else np.arange(len(vol))
    paths = []
    for k in range(len(vol)):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.Modality = modality
        ds.PatientID, ds.PatientName = "P123", "Test^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(v), 6) for v in first + k * d_slice * normal]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [d_row, d_col]
        ds.SliceThickness = d_slice
        ds.Rows, ds.Columns = vol.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        stored = np.rint((vol[k] - intercept) / slope)
        assert np.array_equal(stored * slope + intercept, vol[k]), "HU not representable with this slope"
        ds.PixelData = stored.astype("<i2").tobytes()
        if edit is not None:
            edit(k, ds)
        path = folder / f"IM{order[k]:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _write_nifti(path, volume, grid, *, axes_lps=((-1, 0, 0), (0, -1, 0), (0, 0, 1)), dtype=np.int16):
    """Write `volume` on `grid` as NIfTI whose file axes (i, j, k) point along `axes_lps`.

    The default is the common RAS+ layout (i towards patient right, j anterior, k superior).
    Returns the RAS affine written.
    """
    vol, first_lps, spacing = _file_volume(volume, grid, [np.asarray(v, float) for v in axes_lps])
    affine = np.eye(4)
    for i, v in enumerate(axes_lps):
        affine[:3, i] = np.asarray(v, float) * spacing[i] * [-1, -1, 1]  # LPS -> RAS
    affine[:3, 3] = first_lps * [-1, -1, 1]
    img = nib.Nifti1Image(vol.astype(dtype), affine, dtype=dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return affine


def _world_of_marked_voxel_in_dicom(paths):
    """LPS (x, y, z) of the MARK_HU pixel by the DICOM equation P = S + c Δc X + r Δr Y."""
    for path in paths:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        hits = np.argwhere(hu == MARK_HU)
        if len(hits):
            (r, c), iop = hits[0], np.asarray(ds.ImageOrientationPatient, float)
            d_row, d_col = (float(v) for v in ds.PixelSpacing)
            return np.asarray(ds.ImagePositionPatient, float) + c * d_col * iop[:3] + r * d_row * iop[3:]
    raise AssertionError("marked voxel not written")


def _assert_grid(grid, expected, atol=1e-9):
    assert grid.shape == expected.shape
    np.testing.assert_allclose(grid.spacing_mm, expected.spacing_mm, rtol=0, atol=atol)
    np.testing.assert_allclose(grid.origin_mm, expected.origin_mm, rtol=0, atol=atol)


def _marked_world_zyx(phantom):
    (index,) = np.argwhere(np.asarray(phantom.material_ids) == 8)  # cortical bone: only MARK
    return np.asarray(phantom.grid.to_world(index.astype(np.float32)))


# --- CT in ------------------------------------------------------------------------------

ORIENTATIONS = {
    "axial": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0)),
    "axial_rows_minus_y_shuffled": dict(row_cos=(1, 0, 0), col_cos=(0, -1, 0), shuffle=True),
    "axial_cols_minus_x_rows_minus_y": dict(row_cos=(-1, 0, 0), col_cos=(0, -1, 0), shuffle=True),
    "coronal_cols_minus_z": dict(row_cos=(1, 0, 0), col_cos=(0, 0, -1), shuffle=True),
    "sagittal": dict(row_cos=(0, 1, 0), col_cos=(0, 0, -1)),
    "rescale_slope_half": dict(slope=0.5, intercept=-1000.0, shuffle=True),
}


@pytest.mark.parametrize("case", sorted(ORIENTATIONS))
def test_dicom_series_loads_in_zyx_lps_with_hu_materials(tmp_path, case):
    paths = _write_ct_series(tmp_path / "ct", **ORIENTATIONS[case])
    phantom = load_ct(tmp_path / "ct")
    _assert_grid(phantom.grid, GRID)
    ids, density = _expected_materials()
    np.testing.assert_array_equal(phantom.material_ids, ids)
    np.testing.assert_array_equal(phantom.density_g_cm3, density)
    # The marked voxel sits where the DICOM equation on the written file puts it.
    world_xyz = _world_of_marked_voxel_in_dicom(paths)
    np.testing.assert_allclose(_marked_world_zyx(phantom), world_xyz[::-1], atol=1e-4)
    np.testing.assert_allclose(_marked_world_zyx(phantom), GRID.to_world(np.asarray(MARK, np.float32)), atol=1e-4)


def test_dicom_phantom_has_no_organs_and_the_calibration_materials(tmp_path):
    _write_ct_series(tmp_path / "ct")
    phantom = load_ct(tmp_path / "ct")
    assert not np.any(phantom.organ_labels) and dict(phantom.organs) == {}
    assert len(phantom.materials) == 9
    assert phantom.info["format"] == "dicom" and phantom.info["patient_id"] == "P123"
    assert pydicom.uid.UID(phantom.info["frame_of_reference_uid"]).is_valid
    hu, grid = load_hu(tmp_path / "ct")
    np.testing.assert_array_equal(hu, HU.astype(np.float32))
    _assert_grid(grid, GRID)
    # A custom calibration is used as given: two materials split at 0 HU.
    water, bone = pd.materials.get("water"), pd.materials.get("cortical_bone")
    cal = HUCalibration((water, bone), (0.0,), (-1000.0, 1000.0), (0.5, 1.5))
    custom = load_ct(tmp_path / "ct", calibration=cal)
    np.testing.assert_array_equal(custom.material_ids, (HU >= 0).astype(np.int32))
    np.testing.assert_allclose(custom.density_g_cm3, np.clip(1.0 + HU / 2000.0, 0.5, 1.5), rtol=1e-6)
    assert len(custom.materials) == 2


def test_dicom_folder_with_other_objects_and_series_choice(tmp_path):
    _write_ct_series(tmp_path / "ct", series_uid="1.2.3.4")
    (tmp_path / "ct" / "README.txt").write_text("not DICOM")
    _write_ct_series(tmp_path / "ct2", hu=HU + 10, modality="MR")
    for p in (tmp_path / "ct2").iterdir():  # an MR series beside the CT series is skipped
        p.rename(tmp_path / "ct" / ("mr_" + p.name))
    np.testing.assert_array_equal(load_hu(tmp_path / "ct")[0], HU.astype(np.float32))
    np.testing.assert_array_equal(load_hu(tmp_path / "ct", series_uid="1.2.3.4")[0], HU.astype(np.float32))
    _write_ct_series(tmp_path / "ct3", hu=HU + 5, series_uid="1.2.3.5")
    for p in (tmp_path / "ct3").iterdir():
        p.rename(tmp_path / "ct" / ("b_" + p.name))
    with pytest.raises(ValueError, match="2 CT series"):
        load_hu(tmp_path / "ct")
    np.testing.assert_array_equal(load_hu(tmp_path / "ct", series_uid="1.2.3.5")[0], (HU + 5).astype(np.float32))


def test_nifti_ct_matches_dicom_geometry_and_materials(tmp_path):
    paths = _write_ct_series(tmp_path / "ct", row_cos=(1, 0, 0), col_cos=(0, -1, 0), shuffle=True)
    affine = _write_nifti(tmp_path / "ct.nii.gz", HU, GRID)  # RAS+: i right, j anterior
    from_dicom, from_nifti = load_ct(tmp_path / "ct"), load_ct(tmp_path / "ct.nii.gz")
    _assert_grid(from_nifti.grid, from_dicom.grid)
    _assert_grid(from_nifti.grid, GRID)
    np.testing.assert_array_equal(from_nifti.material_ids, from_dicom.material_ids)
    np.testing.assert_array_equal(from_nifti.density_g_cm3, from_dicom.density_g_cm3)
    assert from_nifti.info["format"] == "nifti"
    # The marked voxel: NIfTI affine (RAS) and DICOM equation (LPS) agree on its position.
    img = nib.load(str(tmp_path / "ct.nii.gz"))
    ijk = np.argwhere(np.asarray(img.dataobj) == MARK_HU)[0]
    ras = affine @ np.append(ijk, 1.0)
    lps = ras[:3] * [-1, -1, 1]
    np.testing.assert_allclose(lps, _world_of_marked_voxel_in_dicom(paths), atol=1e-4)
    np.testing.assert_allclose(_marked_world_zyx(from_nifti), lps[::-1], atol=1e-4)


def test_nifti_ct_in_any_axis_order_and_with_scaling(tmp_path):
    # File axes (i, j, k) = (+z, -x, +y): permuted and flipped, stored as float32.
    _write_nifti(tmp_path / "ct.nii", HU, GRID, axes_lps=((0, 0, 1), (-1, 0, 0), (0, 1, 0)), dtype=np.float32)
    hu, grid = load_hu(tmp_path / "ct.nii")
    np.testing.assert_array_equal(hu, HU.astype(np.float32))
    _assert_grid(grid, GRID, atol=1e-5)
    # scl_slope / scl_inter are applied, like RescaleSlope / RescaleIntercept. nibabel resets
    # them on save, so patch the header fields (bytes 112-119 of a NIfTI-1 header).
    img = nib.load(str(tmp_path / "ct.nii"))
    raw = np.asarray(img.dataobj)
    nib.save(
        nib.Nifti1Image(((raw + 1000.0) * 2).astype(np.int16), img.affine, dtype=np.int16), str(tmp_path / "s.nii")
    )
    data = bytearray((tmp_path / "s.nii").read_bytes())
    data[112:120] = np.array([0.5, -1000.0], "<f4").tobytes()
    (tmp_path / "s.nii").write_bytes(bytes(data))
    proxy = nib.load(str(tmp_path / "s.nii")).dataobj  # nibabel moves the scaling to the data proxy
    assert (proxy.slope, proxy.inter) == (0.5, -1000.0)
    np.testing.assert_array_equal(load_hu(tmp_path / "s.nii")[0], HU.astype(np.float32))


# --- dose out ---------------------------------------------------------------------------


def _dose(grid=GRID):
    z, y, x = np.indices(grid.shape)
    return (1e-3 * (1 + z) * (2 + np.sin(y)) * (3 + x) ** 0.5).astype(np.float32)


def test_rt_dose_file_read_back_with_pydicom(tmp_path):
    dose = _dose()
    frame = generate_uid()
    out = save_dose(tmp_path / "rd.dcm", dose, GRID, frame_of_reference_uid=frame, patient_id="P123")
    assert out == tmp_path / "rd.dcm"
    ds = pydicom.dcmread(out)
    assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.RTDoseStorage == ds.SOPClassUID
    assert (ds.Modality, ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("RTDOSE", "GY", "PHYSICAL", "PLAN")
    assert ds.FrameOfReferenceUID == frame and ds.PatientID == "P123"
    for name in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert pydicom.uid.UID(getattr(ds, name)).is_valid
    assert ds.FrameIncrementPointer == pydicom.tag.Tag(0x3004, 0x000C)
    assert (int(ds.NumberOfFrames), ds.Rows, ds.Columns) == GRID.shape
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    (oz, oy, ox), (dz, dy, dx) = GRID.origin_mm, GRID.spacing_mm
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], [ox, oy, oz])  # (x, y, z)!
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [dy, dx])
    np.testing.assert_allclose([float(v) for v in ds.GridFrameOffsetVector], dz * np.arange(GRID.shape[0]))
    pixels = ds.pixel_array
    assert pixels.dtype == np.uint32 and ds.BitsAllocated == 32
    scaling = float(ds.DoseGridScaling)
    assert pixels.max() > 2**31  # the 32-bit range is used
    np.testing.assert_allclose(pixels * scaling, dose, rtol=0, atol=0.5 * scaling * (1 + 1e-6))
    # load_dose reads it back onto the same grid.
    loaded, grid = load_dose(out)
    _assert_grid(grid, GRID)
    np.testing.assert_allclose(loaded, dose, rtol=1e-6)


def test_rt_dose_of_zeros_and_of_a_flipped_external_file(tmp_path):
    save_dose(tmp_path / "zero.dcm", np.zeros(GRID.shape), GRID, summation_type="RECORD")
    ds = pydicom.dcmread(tmp_path / "zero.dcm")
    assert ds.DoseSummationType == "RECORD" and not ds.pixel_array.any()
    np.testing.assert_array_equal(load_dose(tmp_path / "zero.dcm")[0], 0.0)
    # Another writer's RT Dose: rows run -y and frames -z (relative offsets along the normal -z).
    dose = _dose()
    ds = pydicom.dcmread(save_dose(tmp_path / "rd.dcm", dose, GRID))
    (oz, oy, ox), (dz, dy, _), (nz, ny, _) = GRID.origin_mm, GRID.spacing_mm, GRID.shape
    top_z, last_y = oz + (nz - 1) * dz, oy + (ny - 1) * dy
    ds.ImagePositionPatient = [ox, last_y, top_z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, -1, 0]
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1, ::-1, :]).tobytes()
    ds.save_as(tmp_path / "flipped.dcm", enforce_file_format=True)
    loaded, grid = load_dose(tmp_path / "flipped.dcm")
    _assert_grid(grid, GRID, atol=1e-6)
    np.testing.assert_allclose(loaded, dose, rtol=1e-6)
    # ... and absolute offsets (z coordinates), allowed with ImageOrientationPatient 1\0\0\0\1\0.
    ds = pydicom.dcmread(tmp_path / "rd.dcm")
    ds.GridFrameOffsetVector = [oz + k * dz for k in range(nz)]
    ds.save_as(tmp_path / "absolute.dcm", enforce_file_format=True)
    loaded, grid = load_dose(tmp_path / "absolute.dcm")
    _assert_grid(grid, GRID, atol=1e-6)
    np.testing.assert_allclose(loaded, dose, rtol=1e-6)


@pytest.mark.parametrize("name", ["dose.nii", "dose.nii.gz"])
def test_nifti_dose_round_trip_is_exact(tmp_path, name):
    # Spacing and origin that float32 cannot hold exactly still come back exactly.
    grid = pd.Grid((5, 6, 7), (3.0, 0.7, 0.9), (-123.4, 45.6, 7.8))
    dose = _dose(grid)
    save_dose(tmp_path / name, dose, grid)
    loaded, found = load_dose(tmp_path / name)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, dose)
    assert found == grid
    # The file's own affine places voxel (i, j, k) = (x, y, z) index at the grid's world point, in RAS.
    img = nib.load(str(tmp_path / name))
    assert img.get_data_dtype() == np.float32 and img.shape == grid.shape[::-1]
    zyx = np.asarray(grid.to_world(np.asarray([4.0, 1.0, 6.0])))
    ras = img.affine @ [6, 1, 4, 1]
    np.testing.assert_allclose(ras[:3], [-zyx[2], -zyx[1], zyx[0]], atol=1e-4)
    assert img.get_fdata()[6, 1, 4] == dose[4, 1, 6]


def test_nifti_dose_matches_nifti_ct_written_by_another_tool(tmp_path):
    _write_nifti(tmp_path / "ct.nii.gz", HU, GRID)
    phantom = load_ct(tmp_path / "ct.nii.gz")
    save_dose(tmp_path / "dose.nii.gz", _dose(), phantom.grid)
    loaded, grid = load_dose(tmp_path / "dose.nii.gz")
    assert grid == phantom.grid
    np.testing.assert_array_equal(loaded, _dose())


# --- labels in --------------------------------------------------------------------------


def _labels():
    labels = np.zeros(GRID.shape, np.int16)
    labels[1:3, 0:2, 5:8] = 3  # off-centre blocks
    labels[4:6, 3:7, 0:2] = 7
    labels[MARK] = 12
    return labels


@pytest.mark.parametrize(
    "sidecar, names, expected",
    [
        (None, None, {"label_3": 3, "label_7": 7, "label_12": 12}),
        ({"3": "liver", "7": "lung", "0": "background"}, None, {"liver": 3, "lung": 7, "label_12": 12}),
        ({"liver": 3, "lung": 7, "spleen": 9}, None, {"liver": 3, "lung": 7, "spleen": 9, "label_12": 12}),
        ({"3": "ignored"}, {12: "bone", 3: "liver", 7: "lung"}, {"liver": 3, "lung": 7, "bone": 12}),
    ],
)
def test_label_map_loads_on_the_ct_grid_with_names(tmp_path, sidecar, names, expected):
    _write_ct_series(tmp_path / "ct", row_cos=(1, 0, 0), col_cos=(0, -1, 0), shuffle=True)
    phantom = load_ct(tmp_path / "ct")
    # Stored in another axis order than the CT (RAS+ with axes permuted).
    _write_nifti(tmp_path / "organs.nii.gz", _labels(), GRID, axes_lps=((0, -1, 0), (-1, 0, 0), (0, 0, 1)))
    if sidecar is not None:
        (tmp_path / "organs.json").write_text(json.dumps(sidecar))
    labels, organs = load_labels(tmp_path / "organs.nii.gz", phantom.grid, names=names)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, _labels())
    assert organs == expected and list(organs.values()) == sorted(organs.values())
    # The label of the marked voxel lands on the CT's marked (bone) voxel.
    assert int(labels[tuple(np.argwhere(np.asarray(phantom.material_ids) == 8)[0])]) == 12
    with_organs = pd.Phantom(
        phantom.grid, phantom.material_ids, phantom.density_g_cm3, phantom.materials, labels, organs
    )
    assert with_organs.organ_volumes_ml()[[k for k, v in organs.items() if v == 3][0]] == pytest.approx(
        12 * GRID.voxel_volume_mm3 * 1e-3
    )


def test_label_map_sidecar_next_to_the_full_file_name(tmp_path):
    _write_nifti(tmp_path / "seg.nii", _labels(), GRID)
    (tmp_path / "seg.nii.json").write_text(json.dumps({"7": "lung"}))
    assert load_labels(tmp_path / "seg.nii", GRID)[1] == {"label_3": 3, "lung": 7, "label_12": 12}


@pytest.mark.parametrize(
    "grid, match",
    [
        (pd.Grid((6, 7, 9), GRID.spacing_mm, GRID.origin_mm), "shape"),
        (pd.Grid(GRID.shape, (2.5, 1.25, 0.8), GRID.origin_mm), "spacing_mm"),
        (pd.Grid(GRID.shape, GRID.spacing_mm, (-30.0, 12.5, -3.99)), "origin_mm"),
    ],
)
def test_label_map_on_another_grid_is_rejected_not_resampled(tmp_path, grid, match):
    _write_nifti(tmp_path / "organs.nii.gz", _labels(), GRID)
    with pytest.raises(ValueError, match=match):
        load_labels(tmp_path / "organs.nii.gz", grid)


def test_bad_label_maps_are_rejected(tmp_path):
    _write_nifti(tmp_path / "frac.nii", _labels() + 0.5, GRID, dtype=np.float32)
    with pytest.raises(ValueError, match="non-integer"):
        load_labels(tmp_path / "frac.nii", GRID)
    _write_nifti(tmp_path / "neg.nii", -_labels(), GRID)
    with pytest.raises(ValueError, match="0\\.\\."):
        load_labels(tmp_path / "neg.nii", GRID)
    _write_nifti(tmp_path / "ok.nii", _labels(), GRID)
    with pytest.raises(ValueError, match="two labels"):
        load_labels(tmp_path / "ok.nii", GRID, names={3: "liver", 7: "liver"})
    with pytest.raises(ValueError, match="several names"):
        load_labels(tmp_path / "ok.nii", GRID, names={"liver": 3, "spleen": 3})
    with pytest.raises(TypeError, match="names"):
        load_labels(tmp_path / "ok.nii", GRID, names=["liver"])
    with pytest.raises(TypeError, match="grid"):
        load_labels(tmp_path / "ok.nii", GRID.shape)
    paths = _write_ct_series(tmp_path / "ct")
    with pytest.raises(ValueError, match="RTSTRUCT"):
        load_labels(paths[0], GRID)


# --- bad input --------------------------------------------------------------------------


def _drop_middle_slice(folder, paths):
    paths[2].unlink()


def _duplicate_a_slice(folder, paths):
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy.dcm", enforce_file_format=True)


def _edit_slice(**attrs):
    def edit(folder, paths):
        ds = pydicom.dcmread(paths[3])
        for name, value in attrs.items():
            setattr(ds, name, value)
        ds.save_as(paths[3], enforce_file_format=True)

    return edit


BAD_SERIES = {
    "missing slice": (_drop_middle_slice, "non-uniform slice spacing"),
    "duplicated slice": (_duplicate_a_slice, "duplicated slices"),
    "pixel spacing": (_edit_slice(PixelSpacing=[1.3, 0.75]), "inconsistent PixelSpacing"),
    "orientation": (_edit_slice(ImageOrientationPatient=[1, 0, 0, 0, -1, 0]), "inconsistent ImageOrientation"),
    "image size": (_edit_slice(Rows=6, PixelData=np.zeros((6, 8), "<i2").tobytes()), "inconsistent image size"),
    "shifted slice": (_edit_slice(ImagePositionPatient=[-3.0, 12.5, -22.5]), "not stacked"),
}


@pytest.mark.parametrize("case", sorted(BAD_SERIES))
def test_bad_dicom_series_raise(tmp_path, case):
    tamper, match = BAD_SERIES[case]
    paths = _write_ct_series(tmp_path / "ct")
    tamper(tmp_path / "ct", paths)
    with pytest.raises(ValueError, match=match):
        load_ct(tmp_path / "ct")


def test_oblique_non_ct_and_empty_inputs_raise(tmp_path):
    c, s = round(np.cos(np.radians(10)), 6), round(np.sin(np.radians(10)), 6)
    _write_ct_series(tmp_path / "oblique", row_cos=(c, s, 0), col_cos=(-s, c, 0))
    with pytest.raises(ValueError, match="oblique"):
        load_ct(tmp_path / "oblique")
    _write_ct_series(tmp_path / "flat", edit=lambda k, ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0] * 2))
    with pytest.raises(ValueError, match="not two orthogonal unit vectors"):
        load_ct(tmp_path / "flat")
    _write_ct_series(tmp_path / "mr", modality="MR")
    with pytest.raises(ValueError, match="Modality.*'MR'.*expected 'CT'"):
        load_ct(tmp_path / "mr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM files"):
        load_ct(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.dcm").write_text("not DICOM")
    with pytest.raises(ValueError, match="no DICOM files"):
        load_ct(tmp_path / "text")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ct(tmp_path / "nowhere")
    (tmp_path / "scan.mha").write_bytes(b"")
    with pytest.raises(ValueError, match="NIfTI"):
        load_ct(tmp_path / "scan.mha")
    with pytest.raises(TypeError, match="path"):
        load_ct(3)
    with pytest.raises(TypeError, match="calibration"):
        load_ct(tmp_path / "mr", calibration="default")


def test_oblique_or_unplaced_nifti_raises(tmp_path):
    affine = np.eye(4)
    c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
    affine[:2, :2] = [[c, -s], [s, c]]
    nib.save(nib.Nifti1Image(HU.astype(np.int16), affine, dtype=np.int16), str(tmp_path / "oblique.nii"))
    with pytest.raises(ValueError, match="oblique"):
        load_ct(tmp_path / "oblique.nii")
    img = nib.Nifti1Image(HU.astype(np.int16), np.eye(4), dtype=np.int16)
    img.set_sform(np.eye(4), code=0)
    img.set_qform(np.eye(4), code=0)
    nib.save(img, str(tmp_path / "unplaced.nii"))
    with pytest.raises(ValueError, match="sform_code"):
        load_ct(tmp_path / "unplaced.nii")
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.int16), np.eye(4), dtype=np.int16), str(tmp_path / "4d.nii"))
    with pytest.raises(ValueError, match="3D"):
        load_ct(tmp_path / "4d.nii")
    (tmp_path / "garbage.nii.gz").write_bytes(b"not a NIfTI file")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        load_ct(tmp_path / "garbage.nii.gz")


def test_single_slice_series_and_bad_dose_files(tmp_path):
    grid = pd.Grid((1, 7, 8), (3.0, 1.25, 0.75), (10.0, 12.5, -4.0))
    paths = _write_ct_series(tmp_path / "one", hu=HU[:1], grid=grid)
    hu, found = load_hu(tmp_path / "one")
    np.testing.assert_array_equal(hu, HU[:1].astype(np.float32))
    _assert_grid(found, grid)  # slice spacing from SliceThickness
    with pytest.raises(ValueError, match="Modality 'CT', expected 'RTDOSE'"):
        load_dose(paths[0])
    (tmp_path / "garbage.dcm").write_bytes(b"not DICOM")
    with pytest.raises(ValueError, match="not a DICOM file"):
        load_dose(tmp_path / "garbage.dcm")
    with pytest.raises(ValueError, match="folder"):
        load_dose(tmp_path / "one")


@pytest.mark.parametrize(
    "dose, kwargs, error, match",
    [
        (np.ones((6, 7, 9)), {}, ValueError, "shape"),
        (-_dose(), {}, ValueError, "non-negative"),
        (np.where(HU > 500, np.nan, 1.0), {}, ValueError, "finite"),
        (np.full(GRID.shape, np.inf), {}, ValueError, "finite"),
        (np.ones(GRID.shape, complex), {}, TypeError, "dose"),
        (np.ones(GRID.shape), {"frame_of_reference_uid": "not a uid"}, ValueError, "frame_of_reference_uid"),
        (np.ones(GRID.shape), {"study_instance_uid": "1.02.3"}, ValueError, "study_instance_uid"),
        (np.ones(GRID.shape), {"summation_type": "TOTAL"}, ValueError, "summation_type"),
    ],
)
@pytest.mark.parametrize("name", ["rd.dcm", "dose.nii.gz"])
def test_bad_dose_raises_and_writes_nothing(tmp_path, dose, kwargs, error, match, name):
    if kwargs and name.endswith(".gz"):
        pytest.skip("DICOM-only options")
    with pytest.raises(error, match=match):
        save_dose(tmp_path / name, dose, GRID, **kwargs)
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="grid"):
        save_dose(tmp_path / name, np.ones(GRID.shape), GRID.shape)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    save_dose(tmp_path / "rd.dcm", _dose(), GRID)
    before = (tmp_path / "rd.dcm").read_bytes()

    def crash(self, filename, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_as", crash)
    with pytest.raises(OSError, match="disk full"):
        save_dose(tmp_path / "rd.dcm", 2 * _dose(), GRID)
    assert os.listdir(tmp_path) == ["rd.dcm"] and (tmp_path / "rd.dcm").read_bytes() == before


def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch):
    _write_nifti(tmp_path / "ct.nii", HU, GRID)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=r"physdose\[io\]"):
        load_ct(tmp_path / "ct.nii")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"physdose\[io\]"):
        save_dose(tmp_path / "rd.dcm", np.ones(GRID.shape), GRID)
    assert sorted(os.listdir(tmp_path)) == ["ct.nii"]
