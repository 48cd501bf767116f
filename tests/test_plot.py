import jax.numpy as jnp
import numpy as np
import pytest

import physdose as pd
from physdose.materials import MaterialTable
from physdose.phantoms import ctdi
from physdose.plot import slices
from physdose.plot._slices import _figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def phantom():
    """Anisotropic grid; organ a at the centre, b off-centre in +x, c away from the central slices."""
    grid = pd.Grid.centered((20, 24, 28), (3.0, 2.0, 2.0))
    ids = np.zeros(grid.shape, np.int32)
    ids[2:18, 3:21, 3:25] = 1
    labels = np.zeros(grid.shape, np.int32)
    labels[8:12, 10:14, 11:17] = 1  # a: around the centre voxel (10, 12, 14)
    labels[8:12, 10:14, 19:23] = 2  # b: same z, y; larger x, so not in the central sagittal slice
    labels[3:5, 4:6, 4:6] = 3  # c: in no central slice
    table = MaterialTable.from_materials(["air", "water"])
    rho = np.asarray([0.001205, 1.0], np.float32)[ids]
    return pd.Phantom(grid, ids, rho, table, labels, {"a": 1, "b": 2, "c": 3})


def _dose(phantom):
    z, y, x = (np.asarray(a) for a in phantom.grid.axes_mm())
    return np.exp(-(x[None, None, :] ** 2 + y[None, :, None] ** 2) / 200.0) * np.ones_like(z)[:, None, None]


def test_slices_writes_png_atomically(tmp_path, phantom):
    out = tmp_path / "sub" / "slices.png"
    result = slices(phantom, out, dose=jnp.asarray(_dose(phantom)), title="test", dose_label="dose (mGy)")
    assert result == out
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["slices.png"]  # no temporary files left


def test_figure_draws_three_views_with_contours_legend_and_colorbar(phantom):
    fig, summary = _figure(phantom, dose=_dose(phantom))
    assert set(summary["axes"]) == {"axial", "coronal", "sagittal"}
    # a is cut by all three central slices, b by axial and coronal only, c by none
    assert summary["contours"] == {"axial": 2, "coronal": 2, "sagittal": 1}
    assert summary["legend"] == ["a", "b"]
    assert summary["colorbar"] is not None
    assert set(summary["dose_image"]) == {"axial", "coronal", "sagittal"}
    from matplotlib.contour import ContourSet

    for view, ax in summary["axes"].items():
        n = sum(isinstance(c, ContourSet) for c in ax.get_children())
        assert n == summary["contours"][view], view


def test_figure_geometry_and_orientation(phantom):
    _, summary = _figure(phantom, organs=["a"])
    assert summary["contours"] == {"axial": 1, "coronal": 1, "sagittal": 1}
    assert summary["colorbar"] is None
    axial, coronal, sagittal = (summary["axes"][v] for v in ("axial", "coronal", "sagittal"))
    # physical extents in mm (z, y, x sizes 60, 48, 56) and equal data aspect
    left, right = axial.get_xlim()
    bottom, top = axial.get_ylim()
    assert right - left == pytest.approx(56.0) and bottom - top == pytest.approx(48.0)
    assert right > left  # patient left (+x) on the image right
    assert bottom > top  # anterior (-y) at the top of the axial image
    assert coronal.get_ylim()[1] - coronal.get_ylim()[0] == pytest.approx(60.0)  # superior up
    assert sagittal.get_xlim()[1] - sagittal.get_xlim()[0] == pytest.approx(48.0)
    for ax in (axial, coronal, sagittal):
        assert ax.get_aspect() == 1.0
    assert "patient left" in axial.get_xlabel() and "superior" in coronal.get_ylabel()


def test_figure_point_and_empty_organ_list(phantom):
    # a slice through organ c only (z index 3, y index 4, x index 4)
    point = np.asarray(phantom.grid.to_world(jnp.array([3.0, 4.0, 4.0])))
    _, summary = _figure(phantom, point_mm=point, organs=["c"])
    assert summary["contours"] == {"axial": 1, "coronal": 1, "sagittal": 1}
    _, summary = _figure(phantom, organs=[])
    assert summary["contours"] == {"axial": 0, "coronal": 0, "sagittal": 0}
    assert summary["legend"] == []


def test_dose_below_one_percent_is_transparent(phantom):
    dose = _dose(phantom)
    _, summary = _figure(phantom, dose=dose)
    image = summary["dose_image"]["axial"].get_array()
    iz = phantom.grid.shape[0] // 2
    np.testing.assert_array_equal(np.ma.getmaskarray(image), dose[iz] < 0.01 * dose.max())
    assert np.ma.getmaskarray(image).any() and not np.ma.getmaskarray(image).all()


def test_slices_bad_input(tmp_path, phantom):
    out = tmp_path / "bad.png"
    with pytest.raises(ValueError, match="dose has shape"):
        slices(phantom, out, dose=np.zeros((20, 24, 27)))
    with pytest.raises(ValueError, match="dose must be finite"):
        slices(phantom, out, dose=np.full(phantom.grid.shape, np.nan))
    with pytest.raises(ValueError, match="unknown organ 'liver'"):
        slices(phantom, out, organs=["a", "liver"])
    with pytest.raises(ValueError, match="point_mm"):
        slices(phantom, out, point_mm=(0.0, 0.0, 500.0))
    with pytest.raises(ValueError, match="point_mm"):
        slices(phantom, out, point_mm=(0.0, 0.0))
    with pytest.raises(TypeError, match="phantom"):
        slices(np.zeros((2, 2, 2)), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_slices_of_reference_phantom(tmp_path):
    p = ctdi(160, spacing_mm=4.0)
    out = slices(p, tmp_path / "ctdi.png", point_mm=(0.0, 0.0, 0.0))
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    _, summary = _figure(p, point_mm=(0.0, 0.0, 0.0))
    assert summary["contours"]["axial"] == 5  # all five holes cut by the central axial slice
