import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import physdose as pd
from physdose.materials import MaterialTable
from physdose.mc import DiskScorer, sample_coherent, sample_incoherent
from physdose.mc._interactions import HC_KEV_ANGSTROM, ScatterDensity, ScatterTables
from physdose.mc._simulate import _BatchSums
from physdose.mc._transport import World, _densest, _stage_lanes, ray_box, voxel_index

MONO60 = pd.Spectrum.monoenergetic(60.0)


def _slab(thickness_mm=100.0, material="water", spacing=5.0, width=100.0, density=None):
    """A slab of `material` filling a grid, thickness along y, centred on the origin."""
    shape = (round(width / spacing), round(thickness_mm / spacing), round(width / spacing))
    grid = pd.Grid.centered(shape, (spacing,) * 3)
    table = MaterialTable.from_materials([material])
    rho = table.density_g_cm3[0] if density is None else density
    return pd.Phantom(
        grid, jnp.zeros(shape, jnp.int32), jnp.full(shape, rho), table, jnp.ones(shape, jnp.int32), {"slab": 1}
    )


def test_energy_is_conserved_to_float_precision(getkey):
    phantom = _slab(width=60.0)
    source = pd.sources.FanBeam(
        pd.Spectrum.from_tube(100.0, {"Al": 2.5}), (0.0, -300.0, 0.0), (0.0, 0.0, 0.0), 50.0, 10.0
    )
    # 16384 lanes per chunk: the chunk's last photons move into fewer lanes, in stages, and none is lost
    assert _stage_lanes(16384) == (16384, 2048, 256) and _stage_lanes(8192) == (8192,)
    r = pd.mc.simulate(phantom, source, n_photons=65_536, key=getkey(), lanes=16384, n_batches=4)
    assert r.deposited_kev + r.medium_kev + r.escaped_kev == pytest.approx(r.incident_kev, rel=1e-5)
    assert 0 < r.deposited_kev < r.incident_kev and 0 < r.medium_kev < 0.05 * r.incident_kev
    np.testing.assert_allclose(
        np.asarray(r.dose_gy), np.asarray(r.energy_imparted_kev) * 1.602176634e-16 / (1.0 * 125e-6), rtol=1e-5
    )


def test_narrow_beam_transmission_is_beer_lambert(getkey):
    t_mm = 100.0
    phantom = _slab(thickness_mm=t_mm)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    disk = DiskScorer((0.0, 300.0, 0.0), (0.0, 1.0, 0.0), 1.0)
    n = 100_000
    r = pd.mc.simulate(phantom, source, n_photons=n, key=getkey(), lanes=8192, disks=(disk,), world_medium=None)
    transmitted = float(r.disks[0, 1]) * np.pi * 1.0**2  # primary photons per source photon
    expected = np.exp(-float(pd.materials.get("water").mu_per_mm(60.0)) * t_mm)
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert transmitted == pytest.approx(expected, abs=4 * sigma)
    assert float(r.disks[0, 0]) >= float(r.disks[0, 1])  # scattered photons add to the total


def test_inverse_square_in_vacuum(getkey):
    empty = _slab(width=20.0, thickness_mm=20.0, density=0.0)
    source = pd.sources.ConeBeam(MONO60, (0.0, -100.0, 0.0), (0.0, 0.0, 0.0), (20.0, 20.0))
    near = DiskScorer((0.0, 400.0, 0.0), (0.0, 1.0, 0.0), 40.0)
    far = DiskScorer((0.0, 900.0, 0.0), (0.0, 1.0, 0.0), 40.0)
    r = pd.mc.simulate(empty, source, n_photons=200_000, key=getkey(), lanes=8192, disks=(near, far), world_medium=None)
    beam = source.beam()
    for i, y in enumerate((400.0, 900.0)):
        analytic = float(beam.fluence_per_photon_mm2(jnp.asarray([0.0, y, 0.0])).sum())
        assert float(r.disks[i, 0]) == pytest.approx(analytic, rel=4 * float(r.disks_rel_sigma[i, 0]) + 0.01)
    assert float(r.disks[0, 0] / r.disks[1, 0]) == pytest.approx((1000.0 / 500.0) ** 2, rel=0.03)
    kerma = float(MONO60.air_kerma_per_fluence_gy_mm2)
    assert float(r.disks[1, 2]) == pytest.approx(float(r.disks[1, 0]) * kerma, rel=1e-4)
    assert r.deposited_kev == 0.0
    in_air = pd.mc.simulate(empty, source, n_photons=200_000, key=getkey(), lanes=8192, disks=(near, far))
    air_mu = float(pd.materials.get("air").mu_per_mm(60.0))
    # in air the primary fluence also falls as exp(-mu d): 500 mm more air to the far disk
    ratio = float(in_air.disks[0, 1] / in_air.disks[1, 1]) / 4.0
    assert ratio == pytest.approx(np.exp(air_mu * 500.0), rel=0.03)


def _angular_pdf(e_kev, kind, n_bins=24):
    """Expected probabilities of cos theta bins for water from the tabulated S(x) and F(x)^2."""
    table = MaterialTable.from_materials(["water"])
    x_nodes = np.asarray(table.momentum_transfer_per_angstrom, dtype=float)
    cos = np.linspace(-1.0, 1.0, 20001)
    x = e_kev / HC_KEV_ANGSTROM * np.sqrt((1 - cos) / 2)
    if kind == "incoherent":
        k = e_kev / 510.99895
        ratio = 1.0 / (1.0 + k * (1.0 - cos))
        pdf = ratio**2 * (ratio + 1 / ratio - (1 - cos**2)) * np.interp(x, x_nodes, np.asarray(table.incoherent_sf[0]))
    else:
        q_nodes = x_nodes**2
        pdf = (1 + cos**2) * np.interp(x**2, q_nodes, np.asarray(table.coherent_ff2[0]))
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(cos))])
    return edges, np.diff(np.interp(edges, cos, cdf)) / cdf[-1]


@pytest.mark.parametrize(
    ("kind", "e_kev"), [("incoherent", 30.0), ("incoherent", 120.0), ("coherent", 20.0), ("coherent", 60.0)]
)
def test_sampled_scattering_angles_follow_their_cross_sections(kind, e_kev, getkey):
    tables = ScatterTables.from_table(MaterialTable.from_materials(["water"]))
    n = 200_000
    e = jnp.full(n, e_kev)
    m = jnp.zeros(n, jnp.int32)
    cos = (
        sample_incoherent(getkey(), e, m, tables)[0]
        if kind == "incoherent"
        else sample_coherent(getkey(), e, m, tables)
    )
    edges, p = _angular_pdf(e_kev, kind)
    counts, _ = np.histogram(np.asarray(cos), bins=edges)
    keep = p * n > 20
    chi2 = np.sum((counts[keep] - n * p[keep]) ** 2 / (n * p[keep]))
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, (chi2, keep.sum())


def test_compton_energy_follows_from_the_angle(getkey):
    tables = ScatterTables.from_table(MaterialTable.from_materials(["water"]))
    e = jnp.full(1000, 80.0)
    cos, e_out = sample_incoherent(getkey(), e, jnp.zeros(1000, jnp.int32), tables)
    np.testing.assert_allclose(e_out, 80.0 / (1 + 80.0 / 510.99895 * (1 - cos)), rtol=1e-5)


def test_dose_by_scatter_order_splits_the_same_run_and_its_primary_part_is_primary_kerma(getkey):
    t_mm = 20.0
    phantom = _slab(thickness_mm=t_mm, width=60.0)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    key = getkey()
    # the primary kerma is mostly the rare photoabsorptions: sd 2 % at 4e4 photons, 1 % at 1.6e5
    kwargs = dict(n_photons=160_000, key=key, lanes=4096, world_medium=None)
    split = pd.mc.simulate(phantom, source, by_scatter_order=True, **kwargs)
    whole = pd.mc.simulate(phantom, source, **kwargs)
    assert whole.dose_by_order_gy is None
    np.testing.assert_allclose(split.dose_gy, whole.dose_gy, rtol=1e-5, atol=1e-30)  # the same photons
    by_order = np.asarray(split.dose_by_order_gy, np.float64)
    np.testing.assert_allclose(by_order.sum(axis=0), split.dose_gy, rtol=1e-5, atol=1e-30)
    # unscattered photons impart energy only on the pencil's line (the central x column)...
    off_axis = np.ones(phantom.grid.shape, bool)
    off_axis[5:7, :, 5:7] = False
    assert by_order[0][off_axis].max() == 0.0 and by_order[1][off_axis].sum() > 0
    # ... and as much as their kerma: E (mu_en / mu) (1 - exp(-mu t)) per source photon
    water = pd.materials.get("water")
    mu_mm = float(water.mu_per_mm(60.0))
    expected_kev = 60.0 * float(water.mu_en_cm2_g(60.0) / water.mu_cm2_g(60.0)) * (1 - np.exp(-mu_mm * t_mm))
    unscattered_kev = split.deposited_kev * by_order[0].sum() / by_order.sum()
    assert unscattered_kev == pytest.approx(expected_kev, rel=0.03)
    assert by_order[2].sum() < by_order[1].sum()  # a thin slab: most scattered photons escape after one


def test_relative_error_falls_as_inverse_square_root_of_n(getkey):
    phantom = _slab(width=60.0, spacing=10.0)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    small = pd.mc.simulate(phantom, source, n_photons=8_000, key=getkey(), lanes=2048, n_batches=32)
    large = pd.mc.simulate(phantom, source, n_photons=128_000, key=getkey(), lanes=8192, n_batches=32)
    ratio = small.organ_rel_sigma["slab"] / large.organ_rel_sigma["slab"]
    assert ratio == pytest.approx(4.0, rel=0.5)  # sqrt(16), with the scatter of 32-batch estimates (~18 %)
    assert large.organ_energy_kev["slab"] == pytest.approx(
        small.organ_energy_kev["slab"], rel=5 * small.organ_rel_sigma["slab"]
    )


def test_same_key_same_result_and_dose_is_linear_in_photons(getkey):
    phantom = _slab(width=40.0, spacing=10.0)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    key = getkey()
    a = pd.mc.simulate(phantom, source, n_photons=5_000, key=key, lanes=1024, n_batches=2)
    b = pd.mc.simulate(phantom, source, n_photons=5_000, key=key, lanes=1024, n_batches=2)
    np.testing.assert_array_equal(a.energy_imparted_kev, b.energy_imparted_kev)
    # batches one after another or side by side (threads; the host sums them in batch order)
    one, three = (
        pd.mc.simulate(phantom, source, n_photons=5_000, key=key, lanes=512, n_batches=5, parallel_batches=k)
        for k in (1, 3)
    )
    np.testing.assert_array_equal(one.energy_imparted_kev, three.energy_imparted_kev)
    np.testing.assert_array_equal(one.rel_sigma, three.rel_sigma)
    np.testing.assert_allclose(a.scaled(1e6).dose_gy, a.dose_gy * 1e6, rtol=1e-6)
    np.testing.assert_allclose(a.scaled(1e6).sigma_gy, a.sigma_gy * 1e6, rtol=1e-6)
    assert np.all(np.isfinite(a.sigma_gy)) and np.all(np.asarray(a.sigma_gy) >= 0)


def test_batch_sums_in_float32_keep_the_small_spread_of_a_large_mean():
    # per-photon means of 1e4 keV spread by 1e-5 between batches: sum x^2 / n - N mean^2 in
    # float32 would lose the variance entirely (terms ~1e11, float32 spacing ~1e4)
    rng = np.random.default_rng(0)
    sizes = np.array([1000] * 9 + [400])
    x = 1e4 * (1 + 1e-5 * rng.standard_normal((len(sizes), 3))) * sizes[:, None]
    sums = None
    for xb, n in zip(x, sizes):
        xb, n = jnp.asarray(xb, jnp.float32), jnp.float32(n)
        sums = _BatchSums.first(xb, n) if sums is None else sums.add(xb, n)
    done = sizes.sum()
    weight = np.sum(sizes**2) / done**2
    mean, rel = sums.finish(float(done), weight)
    expected = x.sum(axis=0) / done  # the batch method in float64
    var = (np.sum(x**2 / sizes[:, None], axis=0) / done - expected**2) * weight
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    np.testing.assert_allclose(rel, np.sqrt(var) / expected, rtol=0.02)
    one = _BatchSums.first(jnp.asarray(x[0], jnp.float32), jnp.float32(sizes[0]))
    assert np.all(np.isinf(one.finish(float(sizes[0]), np.inf)[1]))  # one batch: no uncertainty


def test_bad_simulation_inputs_raise_clear_errors(getkey):
    phantom = _slab(width=40.0, spacing=10.0)
    toward = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    away = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="n_photons"):
        pd.mc.simulate(phantom, toward, n_photons=0, key=getkey())
    with pytest.raises(ValueError, match="parallel_batches"):
        pd.mc.simulate(phantom, toward, n_photons=100, key=getkey(), parallel_batches=0)
    with pytest.raises(ValueError, match="miss"):
        pd.mc.simulate(phantom, away, n_photons=100, key=getkey())
    with pytest.raises(TypeError, match="source"):
        pd.mc.simulate(phantom, MONO60, n_photons=100, key=getkey())
    with pytest.raises(ValueError, match="n_batches"):
        pd.mc.simulate(phantom, toward, n_photons=10, n_batches=20, key=getkey())


def test_coarser_dose_grid_sums_energy_and_mass(getkey):
    phantom = _slab(width=40.0, thickness_mm=40.0, spacing=5.0)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    key = getkey()
    fine = pd.mc.simulate(phantom, source, n_photons=20_000, key=key, lanes=2048, n_batches=4)
    coarse = pd.mc.simulate(
        phantom, source, n_photons=20_000, key=key, lanes=2048, n_batches=4, dose_grid_factor=(2, 4, 2)
    )
    assert coarse.grid.shape == (4, 2, 4) and coarse.grid.spacing_mm == (10.0, 20.0, 10.0)
    np.testing.assert_allclose(coarse.grid.center_mm, fine.grid.center_mm, atol=1e-9)
    blocks = np.asarray(fine.energy_imparted_kev, np.float64).reshape(4, 2, 2, 4, 4, 2).sum(axis=(1, 3, 5))
    np.testing.assert_allclose(coarse.energy_imparted_kev, blocks, rtol=1e-5)
    mass_kg = 1.0 * 10 * 20 * 10 * 1e-6
    np.testing.assert_allclose(coarse.dose_gy, blocks * 1.602176634e-16 / mass_kg, rtol=1e-5)
    assert float(np.nanmax(np.where(np.isfinite(coarse.rel_sigma), coarse.rel_sigma, np.nan))) < float(
        np.nanmax(np.where(np.isfinite(fine.rel_sigma), fine.rel_sigma, np.nan))
    )
    with pytest.raises(ValueError, match="dose_grid_factor"):
        pd.mc.simulate(phantom, source, n_photons=100, key=key, dose_grid_factor=(3, 1, 1))


def test_batches_spread_over_devices_give_device_independent_results(getkey):
    assert len(jax.local_devices()) >= 2  # tests run with two host devices (conftest)
    phantom = _slab(width=40.0, spacing=10.0)
    source = pd.sources.PencilBeam(MONO60, (0.0, -200.0, 0.0), (0.0, 1.0, 0.0))
    key = getkey()
    both = pd.mc.simulate(phantom, source, n_photons=8_000, key=key, lanes=1024, n_batches=4)
    one = jax.device_put(phantom, jax.local_devices()[1])  # placement of the input does not matter either
    again = pd.mc.simulate(one, source, n_photons=8_000, key=key, lanes=1024, n_batches=4)
    np.testing.assert_allclose(both.energy_imparted_kev, again.energy_imparted_kev, rtol=1e-6)


@pytest.mark.parametrize("material", ["water", "cortical_bone", "lead"])
def test_angular_densities_are_normalised_and_match_the_samplers(material, getkey):
    tables = ScatterTables.from_table(MaterialTable.from_materials([material]))
    density = ScatterDensity.from_tables(tables)
    cos = jnp.linspace(-1.0, 1.0, 200_001)
    m = jnp.zeros(cos.shape, jnp.int32)
    for e_kev in (12.3, 60.0, 149.0):
        e = jnp.full(cos.shape, e_kev)
        assert float(jnp.trapezoid(density.incoherent(cos, e, m), cos)) == pytest.approx(1.0, abs=1e-4)
        assert float(jnp.trapezoid(density.coherent(cos, e, m), cos)) == pytest.approx(1.0, abs=1e-4)
    n = 200_000
    e, m = jnp.full(n, 40.0), jnp.zeros(n, jnp.int32)
    for kind, draw in (("incoherent", sample_incoherent), ("coherent", sample_coherent)):
        sampled = draw(getkey(), e, m, tables)
        sampled = sampled[0] if kind == "incoherent" else sampled
        edges = np.linspace(-1.0, 1.0, 25)
        counts, _ = np.histogram(np.asarray(sampled), bins=edges)
        fine = jnp.linspace(-1.0, 1.0, 24 * 2000 + 1)
        pdf = np.asarray(getattr(density, kind)(fine, jnp.full(fine.shape, 40.0), jnp.zeros(fine.shape, jnp.int32)))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(np.asarray(fine)))])
        p = np.diff(np.interp(edges, np.asarray(fine), cdf))
        keep = p * n > 20
        chi2 = np.sum((counts[keep] - n * p[keep]) ** 2 / (n * p[keep]))
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, (kind, chi2)


def _patient_and_detector():
    """A water block ('patient') in a pencil/cone beam and a water cube ('detector') beside it in air."""
    shape = (8, 8, 20)
    grid = pd.Grid.centered(shape, (20.0,) * 3)
    table = MaterialTable.from_materials(["water", "air"])
    ids = np.ones(shape, np.int32)
    labels = np.zeros(shape, np.int32)
    ids[:, :, :8], labels[:, :, :8] = 0, 1
    ids[2:5, 2:5, 13:16], labels[2:5, 2:5, 13:16] = 0, 2
    rho = np.asarray(table.density_g_cm3)[ids]
    phantom = pd.Phantom(grid, ids, rho, table, labels, {"patient": 1, "detector": 2})
    source = pd.sources.ConeBeam(MONO60, (0.0, -500.0, -120.0), (0.0, 0.0, -120.0), (80.0, 80.0))
    return phantom, source, tuple(float(v) for v in grid.to_world(np.array([3.0, 3.0, 14.0])))


def test_scatter_splitting_is_unbiased_and_cuts_the_detector_variance(getkey):
    phantom, source, detector_mm = _patient_and_detector()
    key = getkey()
    # 16384 lanes per chunk: the chunk's tail moves into fewer lanes, each banked copy with its lane
    kw = dict(n_photons=163_840, lanes=16384, n_batches=10)
    analog = pd.mc.simulate(phantom, source, key=key, **kw)
    split = pd.mc.simulate(phantom, source, key=key, splitting=pd.mc.ScatterSplitting(detector_mm, 40.0), **kw)
    for organ in ("detector", "patient"):
        a, b = analog.organ_energy_kev[organ], split.organ_energy_kev[organ]
        sigma = np.hypot(a * analog.organ_rel_sigma[organ], b * split.organ_rel_sigma[organ])
        assert abs(a - b) < 4 * sigma, (organ, a, b, sigma)
    # same photons, same patient noise, far less detector noise
    assert split.organ_rel_sigma["detector"] < analog.organ_rel_sigma["detector"] / 2.5
    assert split.organ_rel_sigma["patient"] < 1.5 * analog.organ_rel_sigma["patient"]
    escaped = split.deposited_kev + split.medium_kev + split.escaped_kev
    assert escaped == pytest.approx(split.incident_kev, rel=0.01)  # conserved on average


def test_scatter_splitting_rejects_bad_targets():
    with pytest.raises(ValueError, match="radius_mm"):
        pd.mc.ScatterSplitting((0.0, 0.0, 0.0), 0.0)
    with pytest.raises(ValueError, match="center_mm"):
        pd.mc.ScatterSplitting((0.0, np.nan, 0.0), 10.0)


def test_densest_voxel_per_block_and_material_matches_a_direct_search():
    """The majorants' one-pass table against a loop over blocks and materials (partial edge blocks)."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 4, (13, 10, 9)).astype(np.int32)
    ids[ids == 2] = 1  # material 2 absent: its column is 0
    rho = rng.uniform(0.1, 11.0, ids.shape).astype(np.float32)
    table = _densest(ids, rho, (4, 4, 4), 4)
    expected = []
    for z in range(0, 13, 4):
        for y in range(0, 10, 4):
            for x in range(0, 9, 4):
                block = (slice(z, z + 4), slice(y, y + 4), slice(x, x + 4))
                expected.append([rho[block][ids[block] == m].max(initial=0.0) for m in range(4)])
    np.testing.assert_array_equal(table, np.asarray(expected, np.float64))
    assert np.all(table[:, 2] == 0) and table.shape == (4 * 3 * 3, 4)


def test_world_keeps_every_voxels_material_exactly_and_its_density_to_its_rounding():
    """The flights read density and material id packed in one word: ids exact, densities
    rounded to the nearest float with the ids' bits free (8 materials + air: 4 bits)."""
    rng = np.random.default_rng(5)
    names = ["water", "air", "lung", "adipose", "cortical_bone", "lead", "muscle", "aluminium"]
    table = MaterialTable.from_materials(names)
    shape = (6, 7, 5)
    ids = rng.integers(0, len(names), shape).astype(np.int32)
    rho = rng.uniform(0.0, 11.35, shape).astype(np.float32)
    rho[0, 0, :3] = (0.0, 1.0, 2.0**-20)  # zero stays zero; exact multiples stay exact
    phantom = pd.Phantom(
        pd.Grid.centered(shape, (2.0, 3.0, 4.0)), jnp.asarray(ids), jnp.asarray(rho), table,
        jnp.ones(shape, jnp.int32), {"all": 1},
    )  # fmt: skip
    world = World.build(phantom, np.zeros((1, 3)), "air", 0)
    every_id, every_rho = world.at(jnp.arange(ids.size))
    np.testing.assert_array_equal(every_id, ids.ravel())
    assert world.id_bits == 4 and world.num_voxels == ids.size and world.medium_id == len(names)
    # round to nearest at 2^-(23 - 4) of the leading bit: relative error at most 2^-20
    spacing = np.exp2(np.floor(np.log2(np.maximum(rho.ravel(), 1e-30))) - 19)
    err = np.abs(np.asarray(every_rho, np.float64) - rho.ravel())
    assert np.all(err <= 0.5 * spacing) and np.all(err <= 2.0**-20 * rho.ravel())
    np.testing.assert_array_equal(np.asarray(every_rho)[:3], (0.0, 1.0, 2.0**-20))
    assert err.max() > 0  # it does round
    # a point's flat index reads that voxel (C order, z y x)
    k, j, i = 4, 2, 3
    centre = np.asarray(phantom.grid.origin_mm) + np.asarray((k, j, i)) * np.asarray(phantom.grid.spacing_mm)
    flat, inside = voxel_index(phantom.grid, jnp.asarray(centre[None], jnp.float32))
    assert bool(inside[0]) and int(world.at(flat)[0][0]) == ids[k, j, i]


def test_ray_box_distances_match_the_slab_method_per_axis():
    """Entry and exit distances of rays through a box, against the slab method done with NumPy."""
    rng = np.random.default_rng(8)
    lo, hi = np.array([-10.0, -20.0, -5.0]), np.array([30.0, 15.0, 25.0])
    pos = rng.uniform(-60.0, 60.0, (500, 3))
    d = rng.normal(size=(500, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t1, t2 = (lo - pos) / d, (hi - pos) / d
    near, far = ray_box(jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(pos), jnp.asarray(d))
    np.testing.assert_allclose(near, np.minimum(t1, t2).max(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(far, np.maximum(t1, t2).min(axis=1), rtol=1e-5, atol=1e-4)
    hits = np.asarray(far > np.maximum(near, 0.0))
    # a hit's midpoint lies inside the box; a ray that misses never is inside at any t > 0
    mid = pos + (0.5 * (np.maximum(np.asarray(near), 0.0) + np.asarray(far)))[:, None] * d
    assert np.all(np.all((mid >= lo - 1e-3) & (mid <= hi + 1e-3), axis=1)[hits])
    ts = np.linspace(0.0, 200.0, 2001)
    path = pos[~hits, None, :] + ts[None, :, None] * d[~hits, None, :]
    assert not np.any(np.all((path > lo) & (path < hi), axis=-1))


@pytest.mark.parametrize("block_voxels", [0, 2])
def test_a_photon_that_meets_nothing_crosses_the_world_in_one_step(block_voxels, getkey):
    """A flight that reaches a face of the grid flies on in the other region in the same step:
    to the grid, across it and out of the world (vacuum), three flights, one step."""
    empty = _slab(width=20.0, thickness_mm=20.0, density=0.0)
    source = pd.sources.ConeBeam(MONO60, (0.0, -100.0, 0.0), (0.0, 0.0, 0.0), (10.0, 10.0))
    n = 1024
    r = pd.mc.simulate(
        empty,
        source,
        n_photons=n,
        key=getkey(),
        lanes=n,
        n_batches=1,
        majorant_block_voxels=block_voxels,
        world_medium=None,
    )
    assert r.steps == n and r.flights == 3 * n and r.interactions == 0
    assert r.escaped_kev == pytest.approx(r.incident_kev, rel=1e-6)


def test_majorant_blocks_give_the_global_majorant_result(getkey):
    """Water with a thin dense lead layer: 2-voxel majorant blocks (flights stop at block faces)
    transport the same physics as one global majorant, in fewer steps."""
    phantom = _slab(width=60.0, thickness_mm=100.0, spacing=5.0)
    ids = np.zeros(phantom.grid.shape, np.int32)
    ids[:, 14, :] = 1  # a 5 mm layer near the exit
    table = MaterialTable.from_materials(["water", "lead"])
    rho = np.where(ids == 1, 0.5, 1.0)  # a 0.22 mm Pb areal density spread over the layer
    labels = np.where(ids == 1, 2, 1)
    phantom = pd.Phantom(phantom.grid, ids, rho, table, labels, {"water": 1, "lead": 2})
    source = pd.sources.ConeBeam(MONO60, (0.0, -300.0, 0.0), (0.0, 0.0, 0.0), (40.0, 40.0))
    key = getkey()
    kw = dict(n_photons=60_000, key=key, lanes=4096, n_batches=6)
    one = pd.mc.simulate(phantom, source, majorant_block_voxels=0, **kw)
    blocks = pd.mc.simulate(phantom, source, majorant_block_voxels=2, **kw)
    for organ in ("water", "lead"):
        a, b = one.organ_energy_kev[organ], blocks.organ_energy_kev[organ]
        assert abs(a - b) < 4 * np.hypot(a * one.organ_rel_sigma[organ], b * blocks.organ_rel_sigma[organ]), organ
    assert blocks.deposited_kev + blocks.medium_kev + blocks.escaped_kev == pytest.approx(blocks.incident_kev, rel=1e-5)
    assert blocks.flights < one.flights
    with pytest.raises(ValueError, match="majorant_block_voxels"):
        pd.mc.simulate(phantom, source, majorant_block_voxels=-1, **kw)
