import io
import math
import tarfile

import numpy as np
import pytest

import physdose as pd
from physdose.phantoms import (
    TG195_CASE5_MATERIALS,
    ctdi,
    icru_slab,
    icru_sphere,
    tg195_case2_box,
    tg195_case4_cylinder,
    tg195_case5,
    water_cylinder,
)

from .helpers import REFERENCE

CASE5 = REFERENCE / "tg195_case5_phantom.tar.gz"


def _centroid_mm(phantom, mask) -> np.ndarray:
    idx = np.argwhere(np.asarray(mask))
    assert len(idx), "empty mask"
    return np.asarray(phantom.grid.to_world(idx.mean(axis=0)))


def _mass_g(phantom, material: str) -> float:
    ids = np.asarray(phantom.material_ids)
    return float(np.asarray(phantom.voxel_mass_g())[ids == phantom.materials.index(material)].sum())


def _check_contract(phantom):
    assert isinstance(phantom, pd.Phantom)
    assert phantom.material_ids.shape == phantom.grid.shape
    ids = np.asarray(phantom.material_ids)
    nominal = np.asarray([m.density_g_cm3 for m in phantom.materials.materials])
    np.testing.assert_allclose(np.asarray(phantom.density_g_cm3), nominal[ids], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(phantom.density_g_cm3)))
    assert phantom.info["name"]
    hash(phantom.info)  # static field must be hashable


# ------------------------------------------------------------------------------------------
# TG-195 Case 5
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case5():
    if not CASE5.exists():
        pytest.skip(f"reference data {CASE5} not available")
    return tg195_case5(CASE5)


@pytest.fixture(scope="module")
def case5_8mm(tmp_path_factory):
    """Case 5 read from the extracted .bin (the other input form), resampled to 8 mm."""
    if not CASE5.exists():
        pytest.skip(f"reference data {CASE5} not available")
    with tarfile.open(CASE5) as archive:
        raw = archive.extractfile("case5world.bin").read()
    path = tmp_path_factory.mktemp("case5") / "case5world.bin"
    path.write_bytes(raw)
    return tg195_case5(path, spacing_mm=8.0)


def test_case5_grid_and_materials(case5):
    g = case5.grid
    assert g.shape == (260, 320, 500)
    assert g.spacing_mm == (1.0, 1.0, 1.0)
    assert g.center_mm == pytest.approx((0.0, 0.0, 0.0))
    assert g.size_mm == (260.0, 320.0, 500.0)  # 500 mm along x, the array's fastest axis
    assert case5.materials.names == tuple("tg195_case5_" + m for m in TG195_CASE5_MATERIALS)
    assert dict(case5.organs) == {name: i for i, name in enumerate(TG195_CASE5_MATERIALS) if i >= 3}
    assert "heart" in case5.organs and case5.organs["cortical_bone"] == 19
    ids = np.asarray(case5.material_ids)
    labels = np.asarray(case5.organ_labels)
    np.testing.assert_array_equal(labels, np.where(ids >= 3, ids, 0))
    rho = np.asarray(case5.density_g_cm3)
    for name, expected in [("lung", 0.26), ("heart", 1.05), ("cortical_bone", 1.92), ("air", 0.001205)]:
        values = np.unique(rho[ids == TG195_CASE5_MATERIALS.index(name)])
        np.testing.assert_allclose(values, [expected], rtol=1e-6)


def test_case5_anatomy_orientation(case5):
    ids = np.asarray(case5.material_ids)

    def centroid(name):
        return _centroid_mm(case5, ids == TG195_CASE5_MATERIALS.index(name))

    heart, liver, spleen, thyroid = centroid("heart"), centroid("liver"), centroid("spleen"), centroid("thyroid")
    table, body, breast = centroid("carbon_fiber"), centroid("soft_tissue"), centroid("breast")
    assert thyroid[0] > heart[0] > liver[0]  # +z superior
    assert spleen[2] > liver[2]  # spleen on the patient's left (+x), liver on the right
    assert heart[2] > 0  # heart slightly left of the midline
    assert table[1] > body[1] > breast[1]  # table posterior (+y), breasts anterior
    y_table = np.nonzero(ids == TG195_CASE5_MATERIALS.index("carbon_fiber"))[1]
    y_skin = np.nonzero(ids == TG195_CASE5_MATERIALS.index("skin"))[1]
    assert np.median(y_table) > np.median(y_skin)
    # the heart lies between the lungs: lung tissue on both sides of it in its central slice
    iz = int(round(float(case5.grid.to_index(heart)[0])))
    lung_x = np.nonzero(ids[iz] == TG195_CASE5_MATERIALS.index("lung"))[1]
    heart_ix = float(case5.grid.to_index(heart)[2])
    assert lung_x.min() < heart_ix < lung_x.max()
    assert (lung_x < heart_ix - 50).any() and (lung_x > heart_ix + 50).any()


def test_case5_organ_masses_plausible(case5):
    masses_kg = {k: v / 1000 for k, v in case5.organ_masses_g().items()}
    ranges = {  # adult female, generous bounds (ICRP 89 reference values lie inside)
        "liver": (1.0, 2.5),
        "lung": (0.4, 1.5),
        "heart": (0.3, 1.5),
        "spleen": (0.05, 0.4),
        "thyroid": (0.005, 0.04),
        "stomach": (0.1, 0.6),
        "cortical_bone": (1.0, 5.0),
    }
    for organ, (lo, hi) in ranges.items():
        assert lo < masses_kg[organ] < hi, (organ, masses_kg[organ])
    volumes = case5.organ_volumes_ml()
    assert masses_kg["lung"] * 1000 == pytest.approx(0.26 * volumes["lung"], rel=1e-5)


def test_case5_resampled_keeps_organ_masses(case5, case5_8mm):
    assert case5_8mm.grid.spacing_mm == (8.0, 8.0, 8.0)
    assert case5_8mm.grid.center_mm == pytest.approx((0.0, 0.0, 0.0))
    full, coarse = case5.organ_masses_g(), case5_8mm.organ_masses_g()
    for organ in ("liver", "lung", "heart", "soft_tissue", "cortical_bone"):
        assert coarse[organ] == pytest.approx(full[organ], rel=1e-3)
    assert case5_8mm.info == case5.info


def test_case5_from_bin_matches_tarball(case5, case5_8mm):
    # case5_8mm was read from the raw .bin; resampling the tarball's phantom gives the same
    coarse = case5.resample((8.0, 8.0, 8.0))
    assert coarse.grid == case5_8mm.grid
    np.testing.assert_array_equal(np.asarray(coarse.material_ids), np.asarray(case5_8mm.material_ids))
    np.testing.assert_array_equal(np.asarray(coarse.organ_labels), np.asarray(case5_8mm.organ_labels))


def test_case5_bad_files(tmp_path):
    short = tmp_path / "case5world.bin"
    short.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="260\\*320\\*500"):
        tg195_case5(short)
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("readme.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ValueError, match="case5world.bin"):
        tg195_case5(archive)
    wrong_size = tmp_path / "small.tar"
    with tarfile.open(wrong_size, "w") as tf:
        info = tarfile.TarInfo("case5world.bin")
        info.size = 10
        tf.addfile(info, io.BytesIO(b"\x00" * 10))
    with pytest.raises(ValueError, match="260\\*320\\*500"):
        tg195_case5(wrong_size)
    bad_index = tmp_path / "bad.bin"
    data = np.zeros(260 * 320 * 500, np.uint8)
    data[12345] = 20
    bad_index.write_bytes(data.tobytes())
    with pytest.raises(ValueError, match="index 20"):
        tg195_case5(bad_index)
    with pytest.raises(FileNotFoundError, match="no_such_file"):
        tg195_case5(tmp_path / "no_such_file.tar.gz")
    with pytest.raises(ValueError, match="spacing_mm"):
        tg195_case5(tmp_path / "no_such_file.tar.gz", spacing_mm=0.0)


# ------------------------------------------------------------------------------------------
# ICRU slab and sphere
# ------------------------------------------------------------------------------------------


def test_icru_slab_geometry():
    p = icru_slab(spacing_mm=(10.0, 1.0, 10.0))
    _check_contract(p)
    assert p.materials.names == ("air", "soft_tissue_icru4c")
    tissue = np.asarray(p.material_ids) == 1
    # thickness along y: 150 voxels of 1 mm through the centre; 30 x 30 cm in z and x
    iz, iy, ix = (n // 2 for n in p.grid.shape)
    assert tissue[iz, :, ix].sum() == 150
    assert tissue[:, iy, ix].sum() * 10.0 == 300.0
    assert tissue[iz, iy, :].sum() * 10.0 == 300.0
    assert _mass_g(p, "soft_tissue_icru4c") == pytest.approx(1.0 * 30 * 30 * 15, rel=1e-6)
    assert p.organ_volumes_ml()["slab"] == pytest.approx(30 * 30 * 15, rel=1e-6)
    # Hp point: centre of the front face (y = -75 mm), outward normal -y; air before it, tissue behind
    pos, normal = p.points["front_face_center"]
    assert pos == (0.0, -75.0, 0.0) and normal == (0.0, -1.0, 0.0)
    before = np.round(np.asarray(p.grid.to_index(np.array([0.0, -75.5, 0.0])))).astype(int)
    after = np.round(np.asarray(p.grid.to_index(np.array([0.0, -74.5, 0.0])))).astype(int)
    assert not tissue[tuple(before)] and tissue[tuple(after)]
    assert p.grid.contains(np.asarray(pos))
    # margin of air on all sides
    assert not tissue[0].any() and not tissue[:, 0].any() and not tissue[:, :, -1].any()


def test_icru_sphere_mass():
    p = icru_sphere(spacing_mm=6.0)
    _check_contract(p)
    analytic_g = 1.0 * 4 / 3 * math.pi * 15.0**3
    assert p.organ_masses_g()["sphere"] == pytest.approx(analytic_g, rel=0.01)
    assert _centroid_mm(p, p.mask("sphere")) == pytest.approx([0, 0, 0], abs=1e-6)
    pos, normal = p.points["front_surface"]
    assert pos == (0.0, -150.0, 0.0) and normal == (0.0, -1.0, 0.0)


# ------------------------------------------------------------------------------------------
# Cylinders
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("diameter", "length", "spacing"), [(320.0, 150.0, 5.0), (200.0, 100.0, (4.0, 3.0, 3.0))])
def test_water_cylinder_mass(diameter, length, spacing):
    p = water_cylinder(diameter, length, spacing_mm=spacing)
    _check_contract(p)
    analytic_g = 1.0 * math.pi * (diameter / 20) ** 2 * (length / 10)
    assert p.organ_masses_g()["cylinder"] == pytest.approx(analytic_g, rel=0.02)
    assert _mass_g(p, "water") == pytest.approx(p.organ_masses_g()["cylinder"])
    # axis along z: the water spans the length in z
    iz, iy, ix = (n // 2 for n in p.grid.shape)
    spacing_z = p.grid.spacing_mm[0]
    assert np.asarray(p.mask("cylinder"))[:, iy, ix].sum() * spacing_z == pytest.approx(length, abs=spacing_z)


@pytest.mark.parametrize("diameter", [160, 320])
def test_ctdi_holes_and_mass(diameter):
    p = ctdi(diameter, spacing_mm=(5.0, 1.5, 1.5))
    _check_contract(p)
    assert p.materials.names == ("air", "pmma")
    assert set(p.organs) == {"center_hole", "hole_12", "hole_3", "hole_6", "hole_9"}
    r_hole = 13.1 / 2
    off = diameter / 2 - 10.0
    expected = {
        "center_hole": (0.0, 0.0),
        "hole_12": (-off, 0.0),  # anterior
        "hole_3": (0.0, off),  # patient left
        "hole_6": (off, 0.0),  # posterior
        "hole_9": (0.0, -off),  # patient right
    }
    ids = np.asarray(p.material_ids)
    hole_volume = math.pi * (r_hole / 10) ** 2 * 15.0
    for name, (cy, cx) in expected.items():
        mask = np.asarray(p.mask(name))
        c = _centroid_mm(p, mask)
        assert c == pytest.approx([0.0, cy, cx], abs=0.4), name  # within a quarter voxel
        assert p.info["hole_centers_mm"][name] == pytest.approx((cy, cx))
        assert np.all(ids[mask] == 0)  # filled with air
        assert p.organ_volumes_ml()[name] == pytest.approx(hole_volume, rel=0.05)
        assert mask.sum(axis=(1, 2)).astype(bool).sum() * 5.0 == 150.0  # holes run the full length
    analytic_g = 1.19 * (math.pi * (diameter / 20) ** 2 - 5 * math.pi * (r_hole / 10) ** 2) * 15.0
    assert _mass_g(p, "pmma") == pytest.approx(analytic_g, rel=0.01)
    # a 100 mm chamber average is a mask restricted to |z| <= 50 mm
    z = np.asarray(p.grid.axes_mm()[0])
    chamber = np.asarray(p.mask("center_hole")) & (np.abs(z) <= 50)[:, None, None]
    assert chamber.sum(axis=(1, 2)).astype(bool).sum() == 20


def test_ctdi_default_spacing_is_fast_and_sane():
    p = ctdi(160)
    assert p.grid.spacing_mm == (2.0, 2.0, 2.0)
    assert p.organ_volumes_ml()["center_hole"] == pytest.approx(math.pi * 0.655**2 * 15, rel=0.1)


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="diameter_mm"):
        ctdi(200)
    with pytest.raises(ValueError, match="diameter_mm"):
        water_cylinder(0.0)
    with pytest.raises(ValueError, match="length_mm"):
        water_cylinder(320.0, -1.0)
    for bad in (0.0, -2.0, (1.0, 0.0, 1.0), (1.0, 2.0), "abc", float("nan")):
        with pytest.raises(ValueError, match="spacing_mm"):
            water_cylinder(spacing_mm=bad)
    with pytest.raises(ValueError, match="spacing_mm"):
        ctdi(160, spacing_mm=-1.0)
    with pytest.raises(ValueError, match="spacing_mm"):
        icru_slab(spacing_mm=0)
    with pytest.raises(ValueError, match="spacing_mm"):
        icru_sphere(spacing_mm=0)
    with pytest.raises(ValueError, match="spacing_mm"):
        tg195_case2_box(spacing_mm=0)
    with pytest.raises(ValueError, match="spacing_mm"):
        tg195_case4_cylinder(spacing_mm=0)
    with pytest.raises(ValueError, match="margin_mm"):
        icru_slab(margin_mm=-1.0)
    with pytest.raises(ValueError, match="subcase"):
        tg195_case4_cylinder(subcase="4.3")
    with pytest.raises(ValueError, match="length_mm"):
        tg195_case4_cylinder(length_mm=50.0)


# ------------------------------------------------------------------------------------------
# TG-195 Cases 2 and 4
# ------------------------------------------------------------------------------------------


def test_tg195_case2_box_vois():
    p = tg195_case2_box()
    _check_contract(p)
    assert p.grid.spacing_mm == (5.0, 5.0, 5.0)
    assert p.materials.names == ("tg195_air_dry", "tg195_soft_tissue")
    # 39 x 39 x 20 cm box, 20 cm along the beam (y); mass exact on the 5 mm grid
    tissue = np.asarray(p.material_ids) == 1
    assert tissue.sum() == 78 * 40 * 78
    assert _mass_g(p, "tg195_soft_tissue") == pytest.approx(1.03 * 39 * 39 * 20, rel=1e-6)
    iz, iy, ix = (n // 2 for n in p.grid.shape)
    assert tissue[iz, :, ix].sum() * 5.0 == 200.0
    expected = {  # (z, y, x) mm; y = depth from the box centre along the beam
        "voi_1": (-150, 0, 0),
        "voi_2": (0, 0, -150),
        "voi_3": (0, 0, 0),
        "voi_4": (0, 0, 150),
        "voi_5": (150, 0, 0),
        "voi_6": (0, -60, 0),
        "voi_7": (0, -30, 0),
        "voi_8": (0, 30, 0),
        "voi_9": (0, 60, 0),
    }
    assert set(p.organs) == set(expected)
    for name, c in expected.items():
        mask = np.asarray(p.mask(name))
        assert mask.sum() == 6 * 6 * 6, name  # exactly 3 x 3 x 3 cm
        assert _centroid_mm(p, mask) == pytest.approx(c, abs=1e-6), name
        assert p.info["voi_centers_mm"][name] == pytest.approx(c)
        assert np.all(tissue[mask])
    # the source is in front of the entrance face y = -100 mm, 155 cm away
    assert p.info["source_mm"] == (0.0, -1650.0, 0.0)


def test_tg195_case2_box_other_spacing():
    p = tg195_case2_box(spacing_mm=3.0)
    for name, v in p.organ_volumes_ml().items():
        assert v == pytest.approx(27.0, rel=0.15), name


def test_tg195_case4_cylinder_42():
    p = tg195_case4_cylinder(length_mm=200.0)
    _check_contract(p)
    assert p.grid.spacing_mm == (5.0, 2.0, 2.0)
    assert set(p.organs) == {"center", "periphery"}
    assert _centroid_mm(p, p.mask("center")) == pytest.approx([0, 0, 0], abs=1e-6)
    assert _centroid_mm(p, p.mask("periphery")) == pytest.approx([0, 0, -150], abs=0.2)
    for name in ("center", "periphery"):
        mask = np.asarray(p.mask(name))
        assert mask.sum(axis=(1, 2)).astype(bool).sum() * 5.0 == 100.0  # 10 cm long
        # 10 mm diameter at 2 mm in-plane voxels: the area is coarse (64-80 mm^2 vs 78.5)
        assert p.organ_volumes_ml()[name] == pytest.approx(math.pi * 0.5**2 * 10.0, rel=0.2)
    pmma = _mass_g(p, "tg195_pmma")
    assert pmma == pytest.approx(1.19 * math.pi * 16.0**2 * 20.0, rel=0.01)


def test_tg195_case4_cylinder_41():
    p = tg195_case4_cylinder(subcase="4.1", length_mm=120.0, spacing_mm=(5.0, 4.0, 4.0))
    _check_contract(p)
    assert list(p.organs) == ["voi_1", "voi_2", "voi_3", "voi_4"]
    for k, name in enumerate(p.organs):
        c = _centroid_mm(p, p.mask(name))
        assert c[0] == pytest.approx(10.0 * k, abs=1e-6)
        assert p.organ_volumes_ml()[name] == pytest.approx(math.pi * 16.0**2 * 1.0, rel=0.02)
