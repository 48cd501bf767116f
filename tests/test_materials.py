import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import physdose as pd
from physdose.materials import HUCalibration, MaterialTable
from physdose.materials._xraylib import ENERGY_NODES_KEV, atomic_weight, element_table

from .helpers import reference

NIST_TO_LIBRARY = {
    "water": "water",
    "soft_tissue_icru44": "soft_tissue_icru44",
    "bone_cortical_icru44": "cortical_bone",
    "lung_icru44": "lung_icru44",
    "pmma": "pmma",
    "air_dry": "air",
    "aluminium": "aluminium",
    "lead": "lead",
}


def _nist_rows_away_from_edges():
    nist = reference("nist_hubbell_seltzer_mu_muen_full.csv")
    nist["energy_kev"] = nist["energy_MeV"] * 1000
    edges = nist.loc[nist["edge"].notna(), ["material", "energy_kev"]]
    rows = nist[(nist.energy_kev >= 20) & (nist.energy_kev <= 150)]
    near = rows.apply(
        lambda r: bool((abs(edges[edges.material == r.material].energy_kev - r.energy_kev) < 1.0).any()), axis=1
    )
    return rows[~near]


@pytest.mark.parametrize("nist_name", sorted(NIST_TO_LIBRARY))
def test_mu_and_mu_en_agree_with_nist(nist_name):
    rows = _nist_rows_away_from_edges()
    rows = rows[rows.material == nist_name]
    assert len(rows) >= 8
    m = pd.materials.get(NIST_TO_LIBRARY[nist_name])
    e = jnp.asarray(rows.energy_kev.values)
    mu = np.asarray(m.mu_cm2_g(e))
    mu_en = np.asarray(m.mu_en_cm2_g(e))
    np.testing.assert_allclose(mu, rows.mu_over_rho_cm2_g.values, rtol=0.02)
    np.testing.assert_allclose(mu_en, rows.mu_en_over_rho_cm2_g.values, rtol=0.02)


def test_water_partial_cross_sections_agree_with_xcom():
    xcom = reference("nist_xcom_water_partial_cross_sections.csv")
    xcom = xcom[(xcom.energy_MeV >= 0.01) & (xcom.energy_MeV <= 0.15)]
    table = MaterialTable.from_materials(["water"])
    e = jnp.asarray(xcom.energy_MeV.values * 1000)
    np.testing.assert_allclose(table.photoelectric_cm2_g(0, e), xcom.photoelectric_cm2_g, rtol=0.03)
    np.testing.assert_allclose(table.incoherent_cm2_g(0, e), xcom.incoherent_cm2_g, rtol=0.02)
    np.testing.assert_allclose(table.coherent_cm2_g(0, e), xcom.coherent_cm2_g, rtol=0.03)


def test_every_library_material_is_physical():
    e = jnp.asarray([15.0, 30.0, 60.0, 100.0, 150.0])
    for name in pd.materials.names():
        m = pd.materials.get(name)
        assert abs(sum(m.mass_fractions) - 1) < 1e-6
        mu, mu_en = np.asarray(m.mu_cm2_g(e)), np.asarray(m.mu_en_cm2_g(e))
        assert np.all(np.isfinite(mu)) and np.all(mu > 0), name
        # energy absorption never exceeds attenuation
        assert np.all(mu_en < mu), name


def test_tg195_materials_are_shipped_with_their_compositions():
    tg = reference("tg195_materials.csv")
    for (case_set, material), rows in tg.groupby(["case_set", "material"]):
        prefix = "tg195_case5_" if case_set == "case5" else "tg195_"
        m = pd.materials.get(prefix + material.lower())
        assert m.density_g_cm3 == pytest.approx(rows.density_g_cm3.iloc[0])
        expected = dict(zip(rows.Z, rows.weight_percent / rows.weight_percent.sum()))
        assert dict(zip(m.elements, m.mass_fractions)) == pytest.approx(expected)


def test_table_interpolation_is_exact_at_nodes_and_powerlaw_between():
    table = MaterialTable.from_materials(["Pb"])
    raw = element_table(82)
    i = np.arange(100, 400, 37)
    np.testing.assert_allclose(table.incoherent_cm2_g(0, ENERGY_NODES_KEV[i]), raw["incoherent"][i], rtol=1e-5)
    # log-log interpolation between two nodes reproduces the power law through them
    e0, e1 = ENERGY_NODES_KEV[200], ENERGY_NODES_KEV[201]
    v0, v1 = raw["photoelectric"][200], raw["photoelectric"][201]
    mid = np.sqrt(e0 * e1)
    np.testing.assert_allclose(table.photoelectric_cm2_g(0, mid), np.sqrt(v0 * v1), rtol=1e-5)


def test_material_table_broadcasts_ids_and_energies():
    table = MaterialTable.from_materials(["water", "lead", "air"])
    ids = jnp.asarray([[0, 1, 2]])
    e = jnp.asarray([[60.0], [100.0]])
    out = table.mu_cm2_g(ids, e)
    assert out.shape == (2, 3)
    assert float(out[1, 1]) == pytest.approx(float(pd.materials.get("lead").mu_cm2_g(100.0)), rel=1e-6)
    assert table.index("lead") == 1
    with pytest.raises(ValueError, match="bone"):
        table.index("bone")


def test_every_material_at_once_equals_each_material_read_alone():
    table = MaterialTable.from_materials(["water", "cortical_bone", "lead", "air", "tin", "tungsten"])
    # energies between nodes, on nodes, just below and above the K edges of tin (29.2), tungsten (69.5)
    # and lead (88.0), and clamped outside 1-150 keV
    e = jnp.asarray([0.5, 1.0, 17.3, 20.0, 29.1, 29.3, 45.678, 69.4, 69.6, 87.9, 88.1, 149.99, 200.0])
    every = table.mu_every_cm2_g(e)
    assert every.shape == (e.shape[0], len(table))
    alone = table.mu_cm2_g(jnp.arange(len(table))[None, :], e[:, None])
    np.testing.assert_array_equal(every, alone)
    assert table.mu_every_cm2_g(e.reshape(13, 1)).shape == (13, 1, len(table))


def test_total_attenuation_interpolated_as_one_curve_stays_the_sum_of_its_parts():
    names = ["water", "cortical_bone", "lung", "adipose", "lead", "tin", "tungsten"]
    table = MaterialTable.from_materials(names)
    rng = np.random.default_rng(0)
    e = jnp.asarray(np.exp(rng.uniform(np.log(1.0), np.log(150.0), 200_000)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, len(names), e.shape[0]))
    parts = table.photoelectric_cm2_g(ids, e) + table.incoherent_cm2_g(ids, e) + table.coherent_cm2_g(ids, e)
    rel = np.abs(np.asarray(table.mu_cm2_g(ids, e) / parts) - 1.0)
    above_5 = np.asarray(e) >= 5.0
    assert rel[above_5].max() < 1e-4  # tissues and the K and L edges of tin, tungsten and lead
    assert rel.max() < 1e-3  # tungsten's M edges (1.8-2.8 keV), below the transport cut-off
    # equal at the nodes and on both sides of each interval's edge
    nodes = jnp.asarray(ENERGY_NODES_KEV, jnp.float32)
    for i in range(len(names)):
        edge = jnp.exp(table.log_edge_kev[:, i])
        at = jnp.concatenate([nodes, edge * (1 - 1e-6), edge * (1 + 1e-6)])
        parts = table.photoelectric_cm2_g(i, at) + table.incoherent_cm2_g(i, at) + table.coherent_cm2_g(i, at)
        np.testing.assert_allclose(table.mu_cm2_g(i, at), parts, rtol=1e-5)


def test_mass_coefficients_are_differentiable_in_energy():
    with jax.enable_x64(True):
        table = MaterialTable.from_materials(["water", "cortical_bone"])
        check_grads(lambda e: table.mu_cm2_g(jnp.asarray([0, 1]), e), (jnp.asarray([35.1, 72.3]),), order=1)
        slope = jax.vmap(jax.grad(lambda e: table.mu_cm2_g(0, e)))(jnp.linspace(20.0, 150.0, 27))
        assert np.all(np.asarray(slope) < 0)  # water attenuation falls with energy


def test_jit_matches_eager():
    table = MaterialTable.from_materials(["water", "lead"])
    ids, e = jnp.asarray([0, 1, 1]), jnp.asarray([20.0, 88.5, 140.0])
    jitted = jax.jit(lambda t, i, en: t.mu_en_cm2_g(i, en))(table, ids, e)
    np.testing.assert_allclose(jitted, table.mu_en_cm2_g(ids, e), rtol=1e-6)


def test_scattering_functions_have_their_limits():
    table = MaterialTable.from_materials(["water"])
    water = pd.materials.get("water")
    z_over_a = sum(w * z / atomic_weight(z) for z, w in zip(water.elements, water.mass_fractions))
    z2_over_a = sum(w * z**2 / atomic_weight(z) for z, w in zip(water.elements, water.mass_fractions))
    assert float(table.incoherent_sf[0, 0]) == 0.0  # S(0) = 0
    assert float(table.incoherent_sf[0, -1]) == pytest.approx(z_over_a, rel=1e-3)  # S(inf) = Z
    assert float(table.coherent_ff2[0, 0]) == pytest.approx(z2_over_a, rel=1e-3)  # F(0) = Z
    assert np.all(np.diff(np.asarray(table.coherent_ff2[0])) <= 1e-9)


def test_mixture_obeys_bragg_additivity():
    mixed = pd.materials.mix(["water", "cortical_bone"], [0.7, 0.3], name="w70b30", density_g_cm3=1.3)
    e = jnp.asarray([25.0, 60.0, 120.0])
    expected = 0.7 * pd.materials.get("water").mu_cm2_g(e) + 0.3 * pd.materials.get("cortical_bone").mu_cm2_g(e)
    np.testing.assert_allclose(mixed.mu_cm2_g(e), expected, rtol=1e-5)


def test_element_symbols_resolve_to_pure_elements():
    al = pd.materials.get("Al")
    assert al.elements == (13,) and al.density_g_cm3 == pytest.approx(2.699, rel=1e-3)


def test_bad_material_inputs_raise_errors_naming_them():
    with pytest.raises(ValueError, match="unobtanium"):
        pd.materials.get("unobtanium")
    with pytest.raises(ValueError, match="mass_fractions"):
        pd.materials.Material("bad", (1, 8), (0.5, 0.6), 1.0)
    with pytest.raises(ValueError, match="density_g_cm3"):
        pd.materials.Material("bad", (8,), (1.0,), -1.0)
    with pytest.raises(ValueError, match="mass_fractions"):
        pd.materials.mix(["water"], [0.5], name="x", density_g_cm3=1.0)
    with pytest.raises(ValueError, match="distinct"):
        MaterialTable.from_materials(["water", "water"])


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    from physdose.materials import _xraylib

    monkeypatch.setenv("PHYSDOSE_CACHE_DIR", str(tmp_path))
    _xraylib.element_table.cache_clear()
    try:
        first = _xraylib.element_table(29)
        files = list(tmp_path.rglob("*"))
        assert [f.name for f in files if f.is_file()] == ["Z029.npz"]
        _xraylib.element_table.cache_clear()
        again = _xraylib.element_table(29)
        for k in first:
            np.testing.assert_array_equal(first[k], again[k])
    finally:
        _xraylib.element_table.cache_clear()


def test_hu_calibration_default_maps_tissues():
    cal = HUCalibration.default()
    ids, rho = cal(jnp.asarray([-1000.0, -800.0, -100.0, 40.0, 250.0, 2000.0]))
    names = [cal.materials[i].name for i in np.asarray(ids)]
    assert names == ["air", "lung", "adipose", "soft_tissue_icru44", "bone_210hu", "cortical_bone"]
    assert float(rho[0]) == pytest.approx(0.001205)
    assert float(rho[3]) == pytest.approx(1.028, abs=1e-3)
    # density rises with HU; bone mixtures grow denser in calcium with HU
    hu = jnp.linspace(-1100.0, 3100.0, 200)
    assert np.all(np.diff(np.asarray(cal(hu)[1])) >= 0)
    ca = [dict(zip(m.elements, m.mass_fractions)).get(20, 0.0) for m in cal.materials[4:]]
    assert ca == sorted(ca) and 0 < ca[0] < ca[-1]
    table = cal.material_table()
    assert table.names == tuple(m.name for m in cal.materials)


def test_hu_calibration_under_jit_and_validation():
    cal = HUCalibration.default()
    hu = jnp.asarray([[-500.0, 10.0], [900.0, 1500.0]])
    np.testing.assert_array_equal(jax.jit(cal)(hu)[0], cal(hu)[0])
    with pytest.raises(ValueError, match="thresholds_hu"):
        HUCalibration((pd.materials.get("air"), pd.materials.get("water")), (0.0, 1.0), (-1000.0, 0.0), (0.001, 1.0))
    with pytest.raises(ValueError, match="hu_points"):
        HUCalibration((pd.materials.get("air"), pd.materials.get("water")), (0.0,), (0.0, -1000.0), (0.001, 1.0))


def test_first_use_inside_jit_does_not_leak_tracers():
    fresh = pd.materials.mix(["water", "lead"], [0.99, 0.01], name="leaded_water_jit", density_g_cm3=1.1)
    inside = jax.jit(lambda e: fresh.mu_cm2_g(e))(jnp.asarray(60.0))
    assert float(fresh.mu_cm2_g(60.0)) == pytest.approx(float(inside), rel=1e-6)


@pytest.mark.parametrize("edge_kev", [88.0045, 15.8608, 13.0352])
def test_absorption_edges_are_resolved_not_smeared(edge_kev):
    import xraylib

    lead = pd.materials.get("lead")
    for e in (edge_kev - 0.02, edge_kev + 0.02, edge_kev + 0.1):
        ref = xraylib.CS_Photo(82, e) + xraylib.CS_Compt(82, e) + xraylib.CS_Rayl(82, e)
        assert float(lead.mu_cm2_g(e)) == pytest.approx(ref, rel=3e-3)
    jump = float(lead.mu_en_cm2_g(edge_kev + 0.02) / lead.mu_en_cm2_g(edge_kev - 0.02))
    assert jump > 1.1  # energy absorption jumps at the edge too
