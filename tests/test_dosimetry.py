"""physdose.dosimetry: organ and effective dose, Hp(d), conversion coefficients, CTDI, Dw, SSDE, DLP."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physdose as pd
from physdose.dosimetry import (
    ORGAN_ALIASES,
    REMAINDER_TISSUES,
    TISSUE_WEIGHTS,
    air_kerma,
    conversion_coefficient,
    dlp,
    dlp_to_effective_dose,
    effective_dose,
    hp,
    hp_from_air_kerma,
    organ_doses,
    ssde,
    ssde_conversion_factor,
    water_equivalent_diameter,
)
from physdose.materials import MaterialTable

from .helpers import reference


def _two_organ_phantom() -> pd.Phantom:
    """An odd-sized (5, 6, 7) phantom: air, water and bone with varying density; organs "a" and "b"."""
    grid = pd.Grid((5, 6, 7), (2.0, 3.0, 4.0), (0.0, 0.0, 0.0))
    table = MaterialTable.from_materials(["air", "water", "cortical_bone"])
    ids = np.ones(grid.shape, np.int32)
    ids[:, :, 0] = 0
    ids[:, :, 5:] = 2
    rho = np.asarray(table.density_g_cm3)[ids] * (1.0 + 0.1 * np.arange(7))[None, None, :]
    labels = np.zeros(grid.shape, np.int32)
    labels[:, :3, 1:] = 1
    labels[:, 3:, 3:] = 2
    return pd.Phantom(grid, ids, rho, table, labels, {"a": 1, "b": 2}, info={"sex": "female"})


# --------------------------------------------------------------------------------------------
# organ doses
# --------------------------------------------------------------------------------------------


def test_organ_dose_of_a_uniform_dose_is_that_dose():
    p = _two_organ_phantom()
    doses = organ_doses(jnp.full(p.grid.shape, 3e-3), p)
    assert doses.names == ("a", "b") and doses.sex == "female"
    np.testing.assert_allclose(doses.dose_gy, [3e-3, 3e-3], rtol=1e-6)
    assert np.all(np.isnan(doses.sigma_gy))  # no sigma given: unknown
    np.testing.assert_allclose(doses.mass_g, [p.organ_masses_g()["a"], p.organ_masses_g()["b"]], rtol=1e-5)


def test_organ_dose_is_the_mass_weighted_mean_and_jit_matches_eager(getkey):
    p = _two_organ_phantom()
    d = jax.random.uniform(getkey(), p.grid.shape)
    m = np.asarray(p.voxel_mass_g())
    labels = np.asarray(p.organ_labels)
    expected = [np.sum((m * d)[labels == k]) / np.sum(m[labels == k]) for k in (1, 2)]
    unweighted = [float(np.mean(np.asarray(d)[labels == k])) for k in (1, 2)]
    got = organ_doses(d, p).dose_gy
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.allclose(got, unweighted, rtol=1e-3)  # the densities vary: mass weighting matters
    np.testing.assert_allclose(jax.jit(lambda x: organ_doses(x, p).dose_gy)(d), got, rtol=1e-6)
    grad = jax.grad(lambda x: organ_doses(x, p).dose_gy[0])(d)
    np.testing.assert_allclose(np.asarray(grad)[labels == 1].sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_organ_sigma_propagation_matches_the_closed_form(getkey, rho):
    p = _two_organ_phantom()
    d = jax.random.uniform(getkey(), p.grid.shape) + 1.0
    s = jax.random.uniform(getkey(), p.grid.shape) * 0.1
    got = organ_doses(d, p, sigma=s, voxel_correlation=rho).sigma_gy
    m, labels, sv = np.asarray(p.voxel_mass_g(), np.float64), np.asarray(p.organ_labels), np.asarray(s, np.float64)
    for i, k in enumerate((1, 2)):
        a = m[labels == k] * sv[labels == k] / m[labels == k].sum()
        expected = math.sqrt((1 - rho) * np.sum(a**2) + rho * np.sum(a) ** 2)
        assert float(got[i]) == pytest.approx(expected, rel=1e-4)


def test_organ_doses_from_samples_are_sample_mean_and_spread(getkey):
    p = _two_organ_phantom()
    samples = jax.random.uniform(getkey(), (4, *p.grid.shape))
    doses = organ_doses(samples, p)
    per_sample = np.stack([np.asarray(organ_doses(x, p).dose_gy) for x in samples])
    np.testing.assert_allclose(doses.dose_gy, per_sample.mean(0), rtol=1e-5)
    np.testing.assert_allclose(doses.sigma_gy, per_sample.std(0, ddof=1), rtol=1e-4)
    assert doses.samples_gy.shape == (4, 2)


def test_organ_doses_from_an_mc_result_use_its_batch_uncertainty(getkey):
    # the ICRU validation's slab, beam and lanes (tests/test_icru.py): one compilation for both
    slab = pd.phantoms.icru_slab(spacing_mm=(30.0, 0.25, 30.0), margin_mm=1.0)
    front = slab.grid.bounds_mm[0][1] - 1.0
    beam = pd.sources.ParallelBeam(pd.Spectrum.monoenergetic(30.0), (0.0, front, 0.0), (0.0, 1.0, 0.0), (300.0, 300.0))
    r = pd.mc.simulate(slab, beam, n_photons=16_384, key=getkey(), lanes=8192, n_batches=2, world_medium=None)
    doses = organ_doses(r, slab)
    from_map = organ_doses(r.dose_gy, slab)
    assert float(doses["slab"]) == pytest.approx(float(from_map["slab"]), rel=1e-4)
    assert float(doses.sigma("slab")) == pytest.approx(r.organ_rel_sigma["slab"] * float(doses["slab"]), rel=1e-5)
    surface = hp(r, slab, "front_face_center", 0.07, radius_mm=50.0)
    deep = hp(r, slab, "front_face_center", 10.0, radius_mm=50.0)
    assert 0 < float(surface.sigma_sv) < float(surface.hp_sv)
    assert 0 < float(deep.sigma_sv) < float(deep.hp_sv)
    # at 30 keV the dose falls with depth (ICRU 57 slab: Hp(0.07)/Hp(10) = 1.22 / 1.112); the thin surface
    # layer holds few interactions at this statistics, so compare within the uncertainties
    assert float(surface.hp_sv) + 3 * float(np.hypot(surface.sigma_sv, deep.sigma_sv)) > float(deep.hp_sv)
    with pytest.raises(ValueError, match="sigma"):
        organ_doses(r, slab, sigma=jnp.zeros(slab.grid.shape))


def test_organ_doses_reject_bad_input():
    p = _two_organ_phantom()
    with pytest.raises(ValueError, match="dose has shape"):
        organ_doses(jnp.ones((5, 6, 6)), p)
    with pytest.raises(ValueError, match="non-negative"):
        organ_doses(-jnp.ones(p.grid.shape), p)
    with pytest.raises(ValueError, match="finite"):
        organ_doses(jnp.full(p.grid.shape, jnp.nan), p)
    with pytest.raises(ValueError, match="spacing_mm"):
        organ_doses(jnp.ones(p.grid.shape), p, grid=pd.Grid(p.grid.shape, (1.0, 3.0, 4.0)))
    with pytest.raises(ValueError, match="sigma"):
        organ_doses(jnp.ones((2, *p.grid.shape)), p, sigma=jnp.ones(p.grid.shape))
    with pytest.raises(ValueError, match="voxel_correlation"):
        organ_doses(jnp.ones(p.grid.shape), p, voxel_correlation=1.5)
    with pytest.raises(ValueError, match="unknown organ 'liver'"):
        organ_doses(jnp.ones(p.grid.shape), p)["liver"]


# --------------------------------------------------------------------------------------------
# effective dose
# --------------------------------------------------------------------------------------------


def _all_tissues(dose_gy: float, sex=None) -> dict[str, float]:
    out = {names[0]: dose_gy for tissue, names in ORGAN_ALIASES.items()}
    if sex == "male":
        out.pop("uterus")
    if sex == "female":
        out.pop("prostate")
    return out


def test_icrp103_weights_sum_to_one_and_the_remainder_has_13_tissues_per_sex():
    assert sum(TISSUE_WEIGHTS.values()) == pytest.approx(1.0)
    assert len(TISSUE_WEIGHTS) == 15 and TISSUE_WEIGHTS["remainder"] == 0.12 and TISSUE_WEIGHTS["gonads"] == 0.08
    assert len(REMAINDER_TISSUES) == 14
    assert len([t for t in REMAINDER_TISSUES if t != "uterus"]) == 13


def test_effective_dose_of_a_uniform_whole_body_dose_equals_it():
    e = effective_dose(_all_tissues(0.02, "male"), sex="male")
    assert float(e.effective_dose_sv) == pytest.approx(0.02, rel=1e-6)
    assert e.missing == () and float(jnp.sum(e.weights)) == pytest.approx(1.0)
    assert e.organs["lung"]["male"] == "lungs" and e.organs["gonads"]["male"] == "gonads"


def test_effective_dose_weights_each_tissue_and_averages_the_remainder():
    doses = _all_tissues(0.0, "female")
    doses["thyroid"] = 1.0  # w = 0.04
    doses["heart"] = 13.0  # one of 13 remainder tissues: remainder dose 1.0, w = 0.12
    e = effective_dose(doses, sex="female")
    assert float(e.effective_dose_sv) == pytest.approx(0.04 + 0.12, rel=1e-6)


def test_effective_dose_sex_averages_male_and_female(getkey):
    male, female = _all_tissues(0.0, "male"), _all_tissues(0.0, "female")
    male.pop("gonads")
    female.pop("gonads")
    male["testes"], female["ovaries"] = 2.0, 4.0  # gonads: (2 + 4) / 2 = 3, w = 0.08
    male["prostate"] = 13.0  # male remainder 1.0; female remainder 0 -> 0.5, w = 0.12
    female["breasts"] = 1.0  # female 1, male 0 -> 0.5, w = 0.12
    e = effective_dose(male, female)
    assert float(e.effective_dose_sv) == pytest.approx(0.08 * 3 + 0.12 * 0.5 + 0.12 * 0.5, rel=1e-6)
    assert e.organs["gonads"] == {"male": "testes", "female": "ovaries"}
    singles = [float(effective_dose(d, sex=s).effective_dose_sv) for d, s in ((male, "male"), (female, "female"))]
    assert float(e.effective_dose_sv) == pytest.approx(sum(singles) / 2, rel=1e-6)


def test_effective_dose_warns_about_missing_organs_and_renormalises():
    # the organs of physdose's synthetic patient: no salivary glands, no muscle, ...
    names = [*pd.phantoms._synthetic._ORGANS, "skin", "skeleton", "red_marrow"]
    with pytest.warns(UserWarning, match="salivary_glands") as record:
        e = effective_dose(dict.fromkeys(names, 5e-3), sex="male")
    message = str(record[0].message)
    assert "muscle" in message and "prostate" in message and "lung" not in message
    assert float(e.effective_dose_sv) == pytest.approx(5e-3, rel=1e-6)  # uniform dose stays uniform
    assert e.organs["bone_surface"]["male"] == "skeleton"


def test_effective_dose_uncertainty_from_organ_doses_and_samples(getkey):
    p = _two_organ_phantom()
    aliases = {"a": "lung", "b": "stomach"}
    d = jnp.full(p.grid.shape, 1.0)
    with pytest.warns(UserWarning):
        e = effective_dose(organ_doses(d, p, sigma=0.1 * d), aliases=aliases)
    assert float(e.effective_dose_sv) == pytest.approx(1.0, rel=1e-6)
    assert float(e.sigma_sv) == pytest.approx(0.1, rel=1e-5)  # fully correlated organs
    samples = jnp.stack([d, 2 * d, 3 * d])
    with pytest.warns(UserWarning):
        e = effective_dose(organ_doses(samples, p), aliases=aliases)
    assert float(e.effective_dose_sv) == pytest.approx(2.0, rel=1e-6)
    assert float(e.sigma_sv) == pytest.approx(1.0, rel=1e-5)


def test_effective_dose_rejects_bad_input():
    with pytest.raises(ValueError, match="sex"):
        effective_dose({"lungs": 1.0}, sex="other")
    with pytest.raises(ValueError, match="no organ"):
        effective_dose({"elbow": 1.0})
    with pytest.raises(ValueError, match="aliases"):
        effective_dose({"lungs": 1.0}, aliases={"lungs": "lungz"})
    with pytest.raises(ValueError, match="non-negative"):
        effective_dose({"lungs": -1.0})


def test_dlp_k_factors():
    assert float(dlp_to_effective_dose(500.0, "chest")) == pytest.approx(7.0)
    assert float(dlp_to_effective_dose(1000.0, "head")) == pytest.approx(2.1)
    np.testing.assert_allclose(dlp_to_effective_dose(jnp.asarray([100.0, 200.0]), "abdomen_and_pelvis"), [1.5, 3.0])
    assert float(dlp(12.0, 300.0)) == pytest.approx(360.0)  # mGy cm
    with pytest.raises(ValueError, match="unknown region 'knee'"):
        dlp_to_effective_dose(100.0, "knee")


# --------------------------------------------------------------------------------------------
# Hp(d)
# --------------------------------------------------------------------------------------------


def _slab_with_exponential_dose(mu_per_mm=0.05, air_dose=7.0):
    slab = pd.phantoms.icru_slab(spacing_mm=(30.0, 0.5, 30.0), margin_mm=1.0)
    y = np.asarray(slab.grid.axes_mm()[1])
    depth = y + 75.0  # below the front face y = -75
    profile = np.where(depth > 0, np.exp(-mu_per_mm * depth), air_dose)  # air dose must not leak in
    return slab, jnp.asarray(np.broadcast_to(profile[None, :, None], slab.grid.shape), jnp.float32)


def test_hp_of_an_exponential_depth_dose_is_the_closed_form():
    mu = 0.05
    slab, dose = _slab_with_exponential_dose(mu)
    for depth in (10.0, 3.0):
        r = hp(dose, slab, "front_face_center", depth)
        assert float(r.hp_sv) == pytest.approx(math.exp(-mu * depth), rel=2e-4)
        np.testing.assert_allclose(r.point_mm, [0.0, -75.0 + depth, 0.0], atol=1e-4)
    # 0.07 mm lies within the first 0.5 mm voxel: the surface voxels' value (centre 0.25 mm), not the air's
    assert float(hp(dose, slab, "front_face_center", 0.07).hp_sv) == pytest.approx(math.exp(-mu * 0.25), rel=1e-4)
    r = hp(dose, slab, "front_face_center", 10.0, sigma=0.1 * dose, radius_mm=5.0)
    assert float(r.sigma_sv) == pytest.approx(0.1 * math.exp(-mu * 10.0), rel=2e-4)
    samples = hp(jnp.stack([dose, 3 * dose]), slab, "front_face_center", 10.0)
    assert float(samples.hp_sv) == pytest.approx(2 * math.exp(-mu * 10.0), rel=2e-4)
    assert float(samples.sigma_sv) == pytest.approx(math.sqrt(2) * math.exp(-mu * 10.0), rel=2e-4)


def test_hp_averages_over_the_dosimeter_disk():
    slab, dose = _slab_with_exponential_dose(0.0, air_dose=0.0)
    x = np.asarray(slab.grid.axes_mm()[2])
    lateral = jnp.asarray(np.broadcast_to((1.0 + x / 1000.0)[None, None, :], slab.grid.shape), jnp.float32) * dose
    # a dose linear across the disk averages to its centre value
    assert float(hp(lateral, slab, "front_face_center", 10.0, radius_mm=20.0).hp_sv) == pytest.approx(1.0, rel=1e-3)


def test_hp_at_physician_sites_and_bad_sites():
    doc = pd.phantoms.physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35)
    dose = jnp.full(doc.grid.shape, 2e-6)
    for site in ("chest_under_apron", "left_eye", "collar"):
        assert float(hp(dose, doc, site, 10.0).hp_sv) == pytest.approx(2e-6, rel=1e-5)
    with pytest.raises(ValueError, match="unknown site 'belt'.*chest_over_apron"):
        hp(dose, doc, "belt", 10.0)
    with pytest.raises(ValueError, match="depth_mm"):
        hp(dose, doc, "left_eye", -1.0)
    with pytest.raises(ValueError, match="no tissue"):  # 0.07 mm into the apron's lead: no tissue there
        hp(dose, doc, "chest_over_apron", 0.07)
    with pytest.raises(ValueError, match="dose has shape"):
        hp(dose[1:], doc, "left_eye", 3.0)


def test_air_kerma_reads_the_air_in_front_of_a_shielded_site():
    doc = pd.phantoms.physician(175.0, spacing_mm=10.0, apron_mm_pb=0.35, thyroid_collar=True)
    air = np.asarray(doc.material_ids) == 0
    y = np.asarray(doc.grid.axes_mm()[1])[None, :, None]
    # air kerma falling off away from the body (-y is anterior) over matter with a far larger dose
    kerma = 3e-6 * (1.0 + 1e-3 * y)
    dose = jnp.asarray(np.where(air, kerma, 1.0), jnp.float32)
    for site in ("chest_over_apron", "collar"):
        point = np.asarray(doc.points[site][0])
        r = air_kerma(dose, doc, site, radius_mm=20.0)
        # the air voxels in front of the site face, half a voxel out: nothing of the lead or tissue
        assert float(r.kerma_gy) == pytest.approx(3e-6 * (1.0 + 1e-3 * (point[1] - 5.0)), rel=1e-5)
        np.testing.assert_allclose(r.point_mm, point, atol=1e-4)
        # the tissue dose under the shield is another quantity
        assert float(hp(dose, doc, site, 10.0).hp_sv) == pytest.approx(1.0)
    sampled = air_kerma(jnp.stack([dose, 2 * dose]), doc, "collar")
    assert float(sampled.sigma_gy) == pytest.approx(float(sampled.kerma_gy) / 1.5 / math.sqrt(2), rel=1e-5)
    with pytest.raises(ValueError, match="unknown site 'belt'"):
        air_kerma(dose, doc, "belt")
    with pytest.raises(ValueError, match="radius_mm"):
        air_kerma(dose, doc, "collar", radius_mm=-1.0)
    inside = dataclasses.replace(_two_organ_phantom(), points={"in_bone": ((4.0, 7.0, 22.0), (0.0, -1.0, 0.0))})
    with pytest.raises(ValueError, match="no air voxel around site 'in_bone'"):
        air_kerma(jnp.ones(inside.grid.shape), inside, "in_bone", radius_mm=0.0)


def test_conversion_coefficient_hp_of_a_monoenergetic_beam_is_the_table_value():
    assert float(hp_from_air_kerma(pd.Spectrum.monoenergetic(30.0), 2e-3, "hp10")) == pytest.approx(2e-3 * 1.11953)
    assert float(conversion_coefficient(60.0, "hp007")) == pytest.approx(1.71697, rel=1e-5)
    assert float(conversion_coefficient(60.0, "hp3", angle_deg=90.0)) < float(conversion_coefficient(60.0, "hp3"))
    # angle interpolation lies between the tabulated angles
    h0, h15, h7 = (float(conversion_coefficient(40.0, "hp10", a)) for a in (0.0, 15.0, 7.5))
    assert h7 == pytest.approx((h0 + h15) / 2, rel=1e-6)
    # a two-line spectrum takes the kerma-weighted mean coefficient
    spectrum = pd.Spectrum.from_table([30.0, 80.0], [1.0, 1.0])
    mu_en = pd.materials.get("air").mu_en_cm2_g(jnp.asarray([30.0, 80.0]))
    w = np.asarray(mu_en) * np.asarray([30.0, 80.0])
    h = np.asarray(conversion_coefficient(jnp.asarray([30.0, 80.0]), "hp10"))
    assert float(hp_from_air_kerma(spectrum, 1.0)) == pytest.approx(float(np.sum(w * h) / np.sum(w)), rel=1e-5)
    with pytest.raises(ValueError, match="unknown quantity"):
        hp_from_air_kerma(30.0, 1.0, "hp5")
    with pytest.raises(ValueError, match="angle_deg"):
        conversion_coefficient(30.0, "hstar10", angle_deg=30.0)
    with pytest.raises(ValueError, match="air_kerma_gy"):
        hp_from_air_kerma(30.0, -1.0)


def test_shipped_hp10_coefficients_agree_with_the_icru57_anchor_values():
    ref = reference("hp10_slab_0deg_per_air_kerma_anchor_values.csv")
    for e_mev, h in zip(ref["energy_MeV"], ref["hp10_0deg_over_ka_Sv_per_Gy"]):
        if e_mev * 1000 <= 300:
            assert float(conversion_coefficient(e_mev * 1000, "hp10")) == pytest.approx(h, rel=0.04)


# --------------------------------------------------------------------------------------------
# CT: Dw, SSDE, CTDI
# --------------------------------------------------------------------------------------------


def test_water_equivalent_diameter_of_water_and_pmma_cylinders():
    water = pd.phantoms.water_cylinder(200.0, 20.0, spacing_mm=2.0)
    assert float(water_equivalent_diameter(water, 0.0)) == pytest.approx(200.0, rel=0.01)
    assert water_equivalent_diameter(water).shape == (water.grid.shape[0],)
    pmma = pd.phantoms.ctdi(160, spacing_mm=2.0)
    ratio = float(pd.materials.get("pmma").mu_per_mm(70.0) / pd.materials.get("water").mu_per_mm(70.0))
    holes = 5 * math.pi * 6.55**2
    expected = 2 * math.sqrt((ratio * (math.pi * 80.0**2 - holes)) / math.pi)  # air holes count ~0
    assert float(water_equivalent_diameter(pmma, 0.0)) == pytest.approx(expected, rel=0.01)
    with pytest.raises(ValueError, match="z_mm"):
        water_equivalent_diameter(water, 500.0)


def test_ssde_conversion_factors_follow_the_aapm204_fits():
    # AAPM 204: f = a exp(-b Dw[cm]); 32 cm: a = 3.704369, b = 0.03671937; 16 cm: 1.874799, 0.03871313
    for dw_cm in (10.0, 20.0, 32.0, 40.0):
        f = float(ssde_conversion_factor(10 * dw_cm, 320))
        assert f == pytest.approx(3.704369 * math.exp(-0.03671937 * dw_cm), rel=1e-6)
    assert float(ssde_conversion_factor(160.0, 160)) == pytest.approx(1.0, abs=0.01)  # 16 cm head: ~1
    assert float(ssde_conversion_factor(320.0, 320)) == pytest.approx(1.144, abs=0.001)  # 32 cm body: 1.14
    assert float(ssde_conversion_factor(357.0, 320)) == pytest.approx(1.0, abs=0.01)  # f = 1 near 36 cm
    f = np.asarray(ssde_conversion_factor(jnp.linspace(80.0, 450.0, 20), 320))
    assert np.all(np.diff(f) < 0)
    water = pd.phantoms.water_cylinder(250.0, 20.0, spacing_mm=2.5)
    expected = 10.0 * float(ssde_conversion_factor(water_equivalent_diameter(water, 0.0), 320))
    assert float(ssde(10.0, water, z_mm=0.0)) == pytest.approx(expected, rel=1e-6)
    assert float(ssde(10.0, water)) == pytest.approx(expected, rel=1e-3)  # mean over the body slices
    with pytest.raises(ValueError, match="phantom_diameter_mm"):
        ssde(10.0, 300.0, 200)
    with pytest.raises(ValueError, match="ctdi_vol_mgy"):
        ssde(-1.0, 300.0)


def _scan(pitch=1.0, spectrum=None):
    spectrum = spectrum if spectrum is not None else pd.Spectrum.from_tube(120.0, {"Al": 6.0})
    return pd.sources.CTScan(
        spectrum,
        start_z_mm=-100.0,
        end_z_mm=100.0,
        pitch=pitch,
        collimation_mm=40.0,
        views_per_rotation=12,
        tube_current_ma=200.0,
        rotation_time_s=0.5,
    )


def test_ctdi_body_centre_below_periphery_head_above_body_and_pitch_scaling(getkey):
    kw = {"n_photons": 20_000, "spacing_mm": (12.5, 5.0, 5.0), "cell_mm": 12.5, "n_batches": 4, "lanes": 8192}
    scan = _scan(1.0)
    body = pd.dosimetry.ctdi_vol(scan, 320, key=getkey(), **kw)
    # the head phantom on the body phantom's grid (wider air margin): one compilation for both
    key = getkey()
    head = pd.dosimetry.ctdi_vol(scan, 160, key=key, margin_mm=90.0, **kw)
    c, periphery = float(body.ctdi100_per_photon_mgy[0]), np.asarray(body.ctdi100_per_photon_mgy[1:])
    assert c < 0.8 * periphery.mean(), (c, periphery)
    assert float(head.ctdi_w_per_photon_mgy) > 1.1 * float(body.ctdi_w_per_photon_mgy)  # about 1.5
    w = c / 3 + 2 / 3 * periphery.mean()
    assert float(body.ctdi_w_per_photon_mgy) == pytest.approx(w, rel=1e-5)
    assert 0 < float(body.rel_sigma) < 0.3 and np.all(np.asarray(body.ctdi100_rel_sigma) > 0)
    # per scan photon, per mAs and absolute normalisations agree
    rotations = scan.num_views / scan.views_per_rotation
    assert float(body.ctdi_vol_per_photon_mgy) == pytest.approx(w / rotations, rel=1e-5)
    absolute = float(body.ctdi_vol_per_photon_mgy * scan.source_photons())
    assert float(body.ctdi_vol_mgy) == pytest.approx(absolute, rel=1e-4)
    assert 2.0 < float(body.ctdi_vol_mgy) < 50.0  # a plausible 120 kVp, 100 mAs body CTDIvol (mGy)
    # same photons (same key), pitch 2: CTDIw unchanged, CTDIvol halves
    double = pd.dosimetry.ctdi_vol(_scan(2.0), 160, key=key, margin_mm=90.0, **kw)
    assert float(double.ctdi_w_per_photon_mgy) == pytest.approx(float(head.ctdi_w_per_photon_mgy), rel=1e-6)
    assert float(double.ctdi_vol_mgy) == pytest.approx(float(head.ctdi_vol_mgy) / 2, rel=1e-5)
    with pytest.raises(TypeError, match="CTScan"):
        pd.dosimetry.ctdi_vol(object(), key=getkey())
    with pytest.raises(ValueError, match="n_batches"):
        pd.dosimetry.ctdi_vol(scan, key=getkey(), n_batches=2)


def test_chamber_cells_put_the_beam_edges_on_cell_boundaries():
    mids, widths = pd.dosimetry.chamber_cells(40.0)
    assert widths.sum() == pytest.approx(100.0) and widths.max() <= 5.0 + 1e-9
    edges = np.concatenate([mids - widths / 2, mids + widths / 2])
    assert np.any(np.isclose(edges, 20.0)) and np.any(np.isclose(edges, -20.0))
    mids, widths = pd.dosimetry.chamber_cells(7.0)
    assert np.any(np.isclose(mids - widths / 2, 3.5)) and widths.sum() == pytest.approx(100.0)
