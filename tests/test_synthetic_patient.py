import jax
import numpy as np
import pytest

from physdose.phantoms import PatientDistribution, synthetic_patient
from physdose.phantoms._synthetic import ORGAN_MASS_G, REFERENCE

SPACING = 8.0


@pytest.fixture(scope="module")
def female():
    return synthetic_patient(key=jax.random.key(11), sex="female", spacing_mm=SPACING)


@pytest.fixture(scope="module")
def male():
    return synthetic_patient(key=jax.random.key(12), sex="male", spacing_mm=SPACING, arms=True)


def _centroid_mm(phantom, organ):
    idx = np.argwhere(np.asarray(phantom.mask(organ)))
    return np.asarray(phantom.grid.to_world(idx.mean(axis=0)))


@pytest.mark.parametrize("sex", ["female", "male"])
def test_organ_masses_follow_the_requested_distribution(sex):
    spread = 0.2
    dist = PatientDistribution(organ_sd_fraction=spread, deformation_mm=3.0)
    col = 0 if sex == "male" else 1
    z_scores = []
    for seed in range(4):
        p = synthetic_patient(key=jax.random.key(seed), sex=sex, spacing_mm=SPACING, distribution=dist)
        scale = (p.info["height_cm"] / REFERENCE[sex]["height_cm"]) ** 2
        masses, targets = p.organ_masses_g(), p.info["organ_mass_target_g"]
        for organ, ref in ORGAN_MASS_G.items():
            z_scores.append(np.log(targets[organ] / (ref[col] * scale)) / spread)
            if targets[organ] > 100:  # organs many voxels across meet their sampled masses
                assert masses[organ] == pytest.approx(targets[organ], rel=0.05), organ
    z_scores = np.asarray(z_scores)
    assert abs(z_scores.mean()) < 0.4 and 0.7 < z_scores.std() < 1.3


def test_reference_adults_weigh_their_icrp89_masses():
    for sex, ref in REFERENCE.items():
        p = synthetic_patient(
            key=jax.random.key(0), sex=sex, spacing_mm=SPACING, height_cm=ref["height_cm"], mass_kg=ref["mass_kg"]
        )
        assert float(p.voxel_mass_g().sum()) / 1000 == pytest.approx(ref["mass_kg"], rel=0.06)
        body = np.nonzero(np.asarray(p.material_ids) != 0)[0]
        assert (body.max() - body.min() + 1) * SPACING == pytest.approx(10 * ref["height_cm"], abs=3 * SPACING)


def test_heavier_patients_carry_more_fat():
    light = synthetic_patient(key=jax.random.key(1), sex="male", spacing_mm=SPACING, height_cm=176.0, mass_kg=60.0)
    heavy = synthetic_patient(key=jax.random.key(1), sex="male", spacing_mm=SPACING, height_cm=176.0, mass_kg=100.0)
    assert heavy.info["fat_thickness_cm"] > light.info["fat_thickness_cm"]
    ratio = float(heavy.voxel_mass_g().sum() / light.voxel_mass_g().sum())
    assert ratio == pytest.approx(100.0 / 60.0, rel=0.12)
    adipose = heavy.materials.index("adipose")
    assert int((heavy.material_ids == adipose).sum()) > int((light.material_ids == adipose).sum())


def test_organs_are_inside_the_body_and_made_of_their_materials(female, male):
    for p in (female, male):
        labels, ids = np.asarray(p.organ_labels), np.asarray(p.material_ids)
        assert np.all(ids[labels > 0] != p.materials.index("air"))
        lung = p.materials.index("lung")
        assert np.all(ids[labels == p.organs["lungs"]] == lung)
        assert np.all(labels[ids == lung] == p.organs["lungs"])  # no other organ is made of lung
        volumes = p.organ_volumes_ml()
        assert all(v > 0 for v in volumes.values()), volumes
        # skin is the outer layer: every body voxel touching air is skin
        body = ids != p.materials.index("air")
        inner = body.copy()
        for axis in range(3):
            for shift in (1, -1):
                inner &= np.roll(body, shift, axis=axis)
        outer = body & ~inner
        assert np.all(labels[outer] == p.organs["skin"])


def test_anatomical_orientation(female, male):
    for p in (female, male):
        c = {organ: _centroid_mm(p, organ) for organ in ("brain", "thyroid", "heart", "liver", "spleen", "bladder")}
        z = {k: v[0] for k, v in c.items()}
        assert z["brain"] > z["thyroid"] > z["heart"] > z["liver"] > z["bladder"]  # head first, superior +z
        assert c["liver"][2] < 0 < c["spleen"][2]  # liver on the patient's right (-x), spleen left
        assert c["heart"][2] > c["liver"][2]
        spine = np.argwhere(np.asarray(p.mask("red_marrow")))
        assert p.grid.to_world(spine.mean(0))[1] > c["heart"][1]  # spine posterior (+y) to the heart
    breasts = _centroid_mm(female, "breasts")
    assert breasts[1] < _centroid_mm(female, "lungs")[1]  # breasts anterior
    assert _centroid_mm(male, "gonads")[0] < 0 < _centroid_mm(female, "gonads")[0]  # testes below the trunk


def test_same_key_same_phantom_and_parameters_recorded():
    a = synthetic_patient(key=jax.random.key(5), sex="female", spacing_mm=10.0)
    b = synthetic_patient(key=jax.random.key(5), sex="female", spacing_mm=10.0)
    c = synthetic_patient(key=jax.random.key(6), sex="female", spacing_mm=10.0)
    np.testing.assert_array_equal(a.organ_labels, b.organ_labels)
    np.testing.assert_array_equal(a.density_g_cm3, b.density_g_cm3)
    assert a.info == b.info and a.info != c.info
    assert {"sex", "height_cm", "mass_kg_target", "organ_mass_target_g", "fat_thickness_cm"} <= set(a.info)


def test_bad_inputs_raise_errors_naming_them():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="sex"):
        synthetic_patient(key=key, sex="other")
    with pytest.raises(ValueError, match="spacing_mm"):
        synthetic_patient(key=key, spacing_mm=0.0)
    with pytest.raises(ValueError, match="height_cm"):
        synthetic_patient(key=key, height_cm=300.0)
    with pytest.raises(ValueError, match="organ_sd_fraction"):
        PatientDistribution(organ_sd_fraction=-0.1)


def test_phantom_resampling_keeps_organ_masses(male):
    coarse = male.resample((12.0, 12.0, 12.0))
    before, after = male.organ_masses_g(), coarse.organ_masses_g()
    for organ in ("liver", "lungs", "brain", "small_intestine"):
        assert after[organ] == pytest.approx(before[organ], rel=1e-4)
    assert float(coarse.voxel_mass_g().sum()) == pytest.approx(float(male.voxel_mass_g().sum()), rel=0.01)
    assert abs(coarse.organ_volumes_ml()["liver"] / male.organ_volumes_ml()["liver"] - 1) < 0.15
