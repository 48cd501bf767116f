"""The standing physician phantom and the interventional room scene."""

import functools

import numpy as np
import pytest

import physdose as pd
from physdose import phantoms

LEAD_G_CM3 = 11.35
ICRP89 = {"male": (176.0, 73.0), "female": (163.0, 60.0)}  # reference height (cm), mass (kg)
SHIELDS = ("apron", "thyroid_collar", "lead_glasses")


@functools.cache
def _doc(spacing_mm=10.0, **kwargs):
    return phantoms.physician(spacing_mm=spacing_mm, **kwargs)


@functools.cache
def _room(spacing_mm=10.0, **kwargs):
    doc = _doc(spacing_mm, apron_mm_pb=0.35, thyroid_collar=True, lead_glasses=True)
    return phantoms.ir_room(physician=doc, spacing_mm=spacing_mm, **kwargs)


def _centroid_mm(ph, organ):
    idx = np.argwhere(np.asarray(ph.mask(organ)))
    assert len(idx) > 0, organ
    return np.asarray(ph.grid.to_world(idx.mean(axis=0)))


def _name_at(ph, p_mm):
    """Organ name of the voxel containing world point `p_mm` ("air" for label 0)."""
    i = tuple(np.round(np.asarray(ph.grid.to_index(np.asarray(p_mm)))).astype(int))
    value = int(np.asarray(ph.organ_labels)[i])
    return {v: k for k, v in ph.organs.items()}.get(value, "air")


def _inside_outside(ph, point):
    pos, normal = (np.asarray(v) for v in ph.points[point])
    half = 0.5 * ph.grid.spacing_mm[0]
    return _name_at(ph, pos - half * normal), _name_at(ph, pos + half * normal)


def _body_mass_kg(ph):
    return sum(m for k, m in ph.organ_masses_g().items() if k not in SHIELDS) / 1e3


# ------------------------------------------------------------------ physician


def test_physician_contract():
    p = _doc(10.0, apron_mm_pb=0.5, thyroid_collar=True, lead_glasses=True)
    assert isinstance(p, pd.Phantom) and p.grid.spacing_mm == (10.0, 10.0, 10.0)
    organs = {"body", "skin", "brain", "lungs", "thyroid", "breasts", "gonads", "left_eye_lens", "right_eye_lens"}
    assert organs | set(SHIELDS) == set(p.organs)
    assert all(v > 0 for v in p.organ_volumes_ml().values())  # every organ keeps a voxel at 10 mm
    assert set(p.points) == {"chest_over_apron", "chest_under_apron", "collar", "left_eye", "right_eye"}
    assert np.all(np.isfinite(np.asarray(p.density_g_cm3)))
    # soles at z = 0 on a voxel face; x = 0, y = 0 are voxel centres
    body = np.asarray(p.organ_labels) > 0
    z_lowest = np.asarray(p.grid.axes_mm()[0])[np.flatnonzero(body.any(axis=(1, 2)))[0]]
    assert z_lowest - 5.0 == pytest.approx(0.0, abs=1e-6)
    assert [float(a[np.argmin(np.abs(a))]) for a in (np.asarray(v) for v in p.grid.axes_mm()[1:])] == [0.0, 0.0]


@pytest.mark.parametrize("sex", ["male", "female"])
def test_organs_are_where_anatomy_puts_them(sex):
    p = _doc(8.0, sex=sex)
    eye_l, eye_r = _centroid_mm(p, "left_eye_lens"), _centroid_mm(p, "right_eye_lens")
    thyroid, gonads, brain = _centroid_mm(p, "thyroid"), _centroid_mm(p, "gonads"), _centroid_mm(p, "brain")
    lungs, breast = _centroid_mm(p, "lungs"), _centroid_mm(p, "breasts")
    # (z, y, x): up, posterior, body left
    assert eye_l[0] > thyroid[0] > lungs[0] > gonads[0] > 0
    assert brain[0] > thyroid[0]
    assert eye_l[2] > 0 > eye_r[2] and eye_l[0] == eye_r[0]  # the body's left is +x
    assert eye_l[1] < brain[1] and thyroid[1] < 0 and breast[1] < lungs[1]  # the body faces -y
    # eye lenses are on the face: a voxel in front of them is air
    for organ in ("left_eye_lens", "right_eye_lens"):
        (i,) = np.argwhere(np.asarray(p.mask(organ)))
        assert int(np.asarray(p.organ_labels)[i[0], i[1] - 1, i[2]]) == 0
    masses = p.organ_masses_g()
    assert 900 < masses["brain"] < 1800 and 700 < masses["lungs"] < 1800  # ICRP 89: 1.45 kg, 1.2 kg (male)
    assert (masses["breasts"] > 200) == (sex == "female")


@pytest.mark.parametrize("sex", ["male", "female"])
@pytest.mark.parametrize("height_cm", [150.0, 176.0, 200.0])
def test_body_mass_follows_the_reference_for_the_height(sex, height_cm):
    ref_height, ref_mass = ICRP89[sex]
    expected = ref_mass * (height_cm / ref_height) ** 2  # reference body-mass index
    p = _doc(10.0, sex=sex) if height_cm == 176.0 else phantoms.physician(height_cm, spacing_mm=10.0, sex=sex)
    assert _body_mass_kg(p) == pytest.approx(expected, rel=0.15)
    heads = np.flatnonzero(np.asarray(p.organ_labels).any(axis=(1, 2)))
    assert (heads[-1] - heads[0] + 1) * 10.0 == pytest.approx(height_cm * 10, abs=15.0)  # standing height


def test_mass_kg_sets_the_girth():
    light = phantoms.physician(180.0, spacing_mm=10.0, mass_kg=65.0)
    heavy = phantoms.physician(180.0, spacing_mm=10.0, mass_kg=100.0)
    assert _body_mass_kg(light) == pytest.approx(65.0, rel=0.15)
    assert _body_mass_kg(heavy) == pytest.approx(100.0, rel=0.15)
    assert heavy.grid.shape[0] == light.grid.shape[0] and heavy.grid.shape[2] > light.grid.shape[2]


@pytest.mark.parametrize("spacing_mm", [8.0, 10.0])
@pytest.mark.parametrize("apron_mm_pb", [0.25, 0.35, 0.5])
def test_lead_layers_keep_the_areal_density(spacing_mm, apron_mm_pb):
    p = _doc(spacing_mm, apron_mm_pb=apron_mm_pb, thyroid_collar=True, lead_glasses=True)
    rho = np.asarray(p.density_g_cm3, np.float64)
    labels = np.asarray(p.organ_labels)
    lead = p.materials.index("lead")
    assert np.all(np.isin(labels[np.asarray(p.material_ids) == lead], [p.organs[s] for s in SHIELDS]))

    def areal_density_g_cm2(point, shield):
        """Mass thickness of the `shield` layer crossed from the point inward along -normal."""
        pos, normal = (np.asarray(v) for v in p.points[point])
        i = np.round(np.asarray(p.grid.to_index(pos - 0.5 * spacing_mm * normal))).astype(int)
        step = -np.round(normal).astype(int)
        total = 0.0
        while labels[tuple(i)] == p.organs[shield]:
            total += rho[tuple(i)] * spacing_mm / 10.0
            i = i + step
        return total

    assert p.points["chest_over_apron"][1] == (0.0, -1.0, 0.0)
    assert areal_density_g_cm2("chest_over_apron", "apron") == pytest.approx(apron_mm_pb * LEAD_G_CM3 / 10, rel=1e-5)
    assert areal_density_g_cm2("collar", "thyroid_collar") == pytest.approx(0.5 * LEAD_G_CM3 / 10, rel=1e-5)
    # the glasses: everything in front of the eye along its outward normal
    pos, normal = (np.asarray(v) for v in p.points["left_eye"])
    iz, iy, ix = np.round(np.asarray(p.grid.to_index(pos - 0.5 * spacing_mm * normal))).astype(int)  # the lens
    glasses = labels[iz, :iy, ix] == p.organs["lead_glasses"]
    assert glasses.sum() == 1 and not labels[iz, iy - 1, ix]  # one lead voxel, one air voxel off the face
    mass_thickness = float(np.sum(rho[iz, :iy, ix][glasses]) * spacing_mm / 10.0)
    assert mass_thickness == pytest.approx(0.75 * LEAD_G_CM3 / 10, rel=1e-5)
    # the apron is one voxel layer in front of the skin: its outer face is one voxel ahead
    over, under = (np.asarray(p.points[k][0]) for k in ("chest_over_apron", "chest_under_apron"))
    np.testing.assert_allclose(under - over, (0.0, spacing_mm, 0.0))


CONFIGS = [
    {},
    {"apron_mm_pb": 0.35, "thyroid_collar": True, "lead_glasses": True},
    {"apron_mm_pb": 0.5, "apron_wrap": True, "sex": "female"},
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=["bare", "shielded", "wrap-female"])
def test_dosimeter_points_lie_on_surfaces(kwargs):
    p = _doc(8.0, **kwargs)
    apron = "apron_mm_pb" in kwargs
    assert _inside_outside(p, "left_eye") == ("left_eye_lens", "air")
    assert _inside_outside(p, "right_eye") == ("right_eye_lens", "air")
    assert _inside_outside(p, "collar") == ("thyroid_collar" if kwargs.get("thyroid_collar") else "skin", "air")
    assert _inside_outside(p, "chest_over_apron") == ("apron" if apron else "skin", "air")
    assert _inside_outside(p, "chest_under_apron") == ("skin", "apron" if apron else "air")
    for _, normal in p.points.values():
        assert normal == (0.0, -1.0, 0.0)


def test_front_apron_leaves_the_back_open_and_wrap_closes_it():
    def lead_behind(p):
        y = np.asarray(p.grid.axes_mm()[1])
        return bool((np.asarray(p.mask("apron")) & (y > 0)[None, :, None]).any())

    front, wrap = _doc(10.0, apron_mm_pb=0.5), _doc(10.0, apron_mm_pb=0.5, apron_wrap=True)
    assert not lead_behind(front) and lead_behind(wrap)
    assert wrap.organ_masses_g()["apron"] > 1.5 * front.organ_masses_g()["apron"]
    # the apron covers the trunk and thighs but not the head, neck, or lower legs
    z_apron = _centroid_mm(front, "apron")[0]
    assert _centroid_mm(front, "gonads")[0] < z_apron < _centroid_mm(front, "thyroid")[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"apron_mm_pb": 0.3}, r"apron_mm_pb.*0\.3"),
        ({"apron_mm_pb": "0.5"}, "apron_mm_pb"),
        ({"height_cm": 139.0}, "height_cm.*139"),
        ({"height_cm": 211.0}, "height_cm.*211"),
        ({"sex": "other"}, "sex.*other"),
        ({"spacing_mm": 0.0}, "spacing_mm"),
        ({"spacing_mm": 25.0}, "spacing_mm.*25"),
        ({"mass_kg": 300.0}, "mass_kg.*300"),
        ({"collar_mm_pb": -0.5}, "collar_mm_pb"),
    ],
)
def test_physician_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        phantoms.physician(**kwargs)


# ------------------------------------------------------------------ room


def _physician_mask(room):
    ids = [v for k, v in room.organs.items() if k.startswith("physician/")]
    return np.isin(np.asarray(room.organ_labels), ids)


def test_room_places_the_physician_standing_beside_the_table_facing_it():
    room = _room(10.0)
    assert room.info["physician_side"] == "patient_right"
    doc = _physician_mask(room)
    centres = room.grid.voxel_centers_mm()
    x = np.asarray(centres[..., 2])[doc]
    assert x.max() < -room.info["table_width_mm"] / 2  # all of the physician on the patient's right
    # head up: the eyes and brain are above (more negative y than) the gonads, all above the floor
    eye, brain, gonads = (_centroid_mm(room, f"physician/{o}") for o in ("left_eye_lens", "brain", "gonads"))
    assert eye[1] < gonads[1] and brain[1] < gonads[1]
    assert np.asarray(centres[..., 1])[doc].max() + 5.0 == pytest.approx(room.info["floor_y_mm"])  # soles on the floor
    assert gonads[1] > room.info["table_surface_y_mm"] > eye[1]  # the table top is at hip height
    # facing the table: the eye's outward normal is +x and the eyes are in front of the body axis
    pos, normal = room.points["physician/left_eye"]
    assert normal == (0.0, 0.0, 1.0)
    assert pos[2] > room.info["physician_position_mm"][1]
    # a proper rotation, no mirror image: the physician's left faces the patient's head (+z)
    assert _centroid_mm(room, "physician/left_eye_lens")[0] > _centroid_mm(room, "physician/right_eye_lens")[0]
    # the table is under the patient, the patient above it
    table, patient = _centroid_mm(room, "table"), _centroid_mm(room, "patient/body")
    assert table[1] > patient[1]
    assert _centroid_mm(room, "patient/left_lung")[2] > 0 > _centroid_mm(room, "patient/right_lung")[2]


def test_room_on_the_patients_left_mirrors_the_side_but_not_the_body():
    room = phantoms.ir_room(physician=_doc(10.0, apron_mm_pb=0.35), spacing_mm=10.0, physician_position_mm=(0.0, 520.0))
    assert room.info["physician_side"] == "patient_left"
    assert np.asarray(room.grid.voxel_centers_mm()[..., 2])[_physician_mask(room)].min() > 250.0
    assert room.points["physician/left_eye"][1] == (0.0, 0.0, -1.0)
    # facing -x, the physician's left points to the patient's feet (-z)
    assert _centroid_mm(room, "physician/left_eye_lens")[0] < _centroid_mm(room, "physician/right_eye_lens")[0]
    assert _inside_outside(room, "physician/chest_over_apron") == ("physician/apron", "air")


def test_room_keeps_bodies_apart_and_carries_masses_and_points():
    room = _room(10.0, ceiling_shield=True, table_curtain=True)
    doc = _physician_mask(room)
    grown = doc.copy()
    for axis in range(3):
        grown |= np.roll(doc, 1, axis) | np.roll(doc, -1, axis)
    others = (np.asarray(room.organ_labels) > 0) & ~doc
    assert not (grown & others).any()  # at least one voxel of air around the physician
    assert {"table", "mattress", "ceiling_shield", "table_curtain", "patient/body", "physician/apron"} <= set(
        room.organs
    )
    # nothing was resampled: organ masses are the standalone ones
    standalone = _doc(10.0, apron_mm_pb=0.35, thyroid_collar=True, lead_glasses=True).organ_masses_g()
    in_room = room.organ_masses_g()
    for organ, mass in standalone.items():
        assert in_room[f"physician/{organ}"] == pytest.approx(mass, rel=1e-5)
    # the dosimeter sites still lie on the surfaces
    assert _inside_outside(room, "physician/left_eye") == ("physician/left_eye_lens", "air")
    assert _inside_outside(room, "physician/collar") == ("physician/thyroid_collar", "air")
    assert _inside_outside(room, "physician/chest_over_apron") == ("physician/apron", "air")
    assert _inside_outside(room, "physician/chest_under_apron") == ("physician/skin", "physician/apron")
    names = room.materials.names
    assert names[0] == "air" and len(set(names)) == len(names)


def _labels_on_segment(room, a_mm, b_mm, n=2000):
    """Names of the regions a straight segment from `a_mm` to `b_mm` passes through."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) * np.asarray(a_mm) + t * np.asarray(b_mm)
    idx = np.round((pts - np.asarray(room.grid.origin_mm)) / np.asarray(room.grid.spacing_mm)).astype(int)
    values = np.asarray(room.organ_labels)[tuple(idx.T)]
    names = {v: k for k, v in room.organs.items()}
    return {names.get(int(v), "air") for v in np.unique(values)}


def test_shields_sit_between_the_scatter_source_and_the_physician():
    room = _room(10.0, ceiling_shield=True, table_curtain=True)
    bare = _room(10.0)
    z_c, x_c = room.info["physician_position_mm"]
    eye = room.points["physician/left_eye"][0]
    # scatter from the irradiated torso (isocentre) to the eyes passes the ceiling shield
    assert "ceiling_shield" in _labels_on_segment(room, (0.0, 0.0, 0.0), eye)
    assert "ceiling_shield" not in _labels_on_segment(bare, (0.0, 0.0, 0.0), eye)
    # scatter from under the table to the physician's legs passes the curtain
    below = room.info["table_surface_y_mm"] + 300.0
    assert "table_curtain" in _labels_on_segment(room, (z_c, below, 0.0), (z_c, below, x_c))
    assert "table_curtain" not in _labels_on_segment(bare, (z_c, below, 0.0), (z_c, below, x_c))


def test_room_shields_and_tabletop_keep_their_areal_density():
    room = _room(10.0, ceiling_shield=True, table_curtain=True)
    rho = np.asarray(room.density_g_cm3, np.float64)
    labels = np.asarray(room.organ_labels)

    def max_areal_density(name, axis):
        m = labels == room.organs[name]
        return float(np.max(np.sum(np.where(m, rho, 0.0), axis=axis)) * 10.0 / 10.0)

    assert max_areal_density("ceiling_shield", 2) == pytest.approx(0.5 * LEAD_G_CM3 / 10, rel=1e-5)
    assert max_areal_density("table_curtain", 2) == pytest.approx(0.5 * LEAD_G_CM3 / 10, rel=1e-5)
    assert max_areal_density("table", 1) == pytest.approx(0.3 * 1.2, rel=1e-5)  # 3 mm carbon fibre


def test_room_frame_is_the_carm_frame():
    room = _room(10.0)
    carm = pd.sources.CArm(pd.Spectrum.monoenergetic(60.0))
    assert _name_at(room, np.asarray(carm.isocenter_mm)).startswith("patient/")  # isocentre in the patient
    focal = np.asarray(carm.focal_mm())
    assert bool(room.grid.contains(focal)) and _name_at(room, focal) == "air"
    assert room.info["table_surface_y_mm"] < focal[1] < room.info["floor_y_mm"]  # under-table tube
    assert "table" in _labels_on_segment(room, focal, np.asarray(carm.isocenter_mm))


def test_room_accepts_any_patient_phantom():
    grid = pd.Grid((30, 24, 36), (20.0, 10.0, 10.0), (-290.0, -115.0, -175.0))
    centres = np.asarray(grid.voxel_centers_mm())
    inside = (centres[..., 1] / 110.0) ** 2 + (centres[..., 2] / 170.0) ** 2 <= 1.0
    water = pd.materials.MaterialTable.from_materials(["air", "water"])
    patient = pd.Phantom(
        grid, inside.astype(np.int32), np.where(inside, 1.0, 0.0012), water, inside.astype(np.int32), {"trunk": 1}
    )
    room = phantoms.ir_room(patient, _doc(10.0), spacing_mm=10.0)
    assert room.organ_masses_g()["patient/trunk"] == pytest.approx(patient.organ_masses_g()["trunk"], rel=1e-4)
    assert "water" in room.materials.names
    assert _centroid_mm(room, "mattress")[1] > _centroid_mm(room, "patient/trunk")[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"physician_position_mm": (0.0, -300.0)}, ValueError, r"physician_position_mm.*-300"),
        ({"physician_position_mm": (0.0, -150.0), "table": False}, ValueError, "physician_position_mm.*patient"),
        ({"physician_position_mm": (0.0, 0.0)}, ValueError, "physician_position_mm"),
        ({"physician_position_mm": (1.0, 2.0, 3.0)}, ValueError, "physician_position_mm"),
        ({"spacing_mm": -8.0}, ValueError, "spacing_mm"),
        ({"table_height_mm": 2000.0}, ValueError, "table_height_mm.*2000"),
        ({"shield_mm_pb": 5.0}, ValueError, "shield_mm_pb"),
        ({"patient": "patient"}, TypeError, "patient"),
    ],
)
def test_room_rejects_bad_input(kwargs, error, match):
    kwargs.setdefault("physician", _doc(10.0))
    with pytest.raises(error, match=match):
        phantoms.ir_room(spacing_mm=kwargs.pop("spacing_mm", 10.0), **kwargs)
