"""The physics prior: closed forms, linearity, gradients, calibration, inverse problems."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import physdose as pd
from physdose.mc._interactions import ScatterTables, sample_coherent, sample_incoherent
from physdose.prior._medium import AttenuationBasis, ScatterData
from physdose.prior._model import self_shielding, sinhc
from physdose.prior._scatter import blob_inverse_square
from physdose.units import kerma_gy

N, H = 16, 5.0
SLAB = (5, 9)  # water in y-layers [5, 9): 20 mm


def slab(density=1.0, dtype=jnp.float32):
    """A 20 mm water slab across a 16^3 grid of 5 mm voxels, vacuum (air of density 0) around it."""
    grid = pd.Grid.centered((N, N, N), (H, H, H))
    table = pd.materials.MaterialTable.from_materials(["air", "water"])
    ids = np.zeros((N, N, N), np.int32)
    ids[:, SLAB[0] : SLAB[1], :] = 1
    rho = jnp.asarray(np.where(ids == 1, density, 0.0), dtype)
    return pd.Phantom(grid, ids, rho, table, np.zeros_like(ids), {})


def cone(e_kev=60.0, field=(60.0, 60.0), focal_y=-400.0):
    return pd.sources.ConeBeam(pd.Spectrum.monoenergetic(e_kev), (0.0, focal_y, 0.0), (0.0, 0.0, 0.0), field)


def free_air_dose(phantom, source, thickness_mm=0.0, e_kev=60.0):
    """Closed form: photons/sr / r^2 x exp(-mu t / cos) x E mu_en(air), per voxel."""
    beam = source.beam()
    rel = phantom.grid.voxel_centers_mm() - beam.focal_mm[0][None, None, None]
    dist = jnp.linalg.norm(rel, axis=-1)
    per_sr = beam.photons_per_sr(0, rel / dist[..., None])[..., 0]
    mu = phantom.materials.mu_cm2_g(1, e_kev) * 0.1
    fluence = per_sr / dist**2 * jnp.exp(-mu * thickness_mm * dist / rel[..., 1])
    return np.asarray(kerma_gy(fluence, e_kev, phantom.materials.mu_en_cm2_g(0, e_kev)))


FAST = dict(n_sources=16, path_samples=4, cell_mm=20.0)


def test_slab_transmission_is_beer_lambert_and_converges_with_step():
    phantom, source = slab(), cone()
    expected = free_air_dose(phantom, source, thickness_mm=20.0)
    behind = np.zeros(phantom.grid.shape, bool)
    behind[:, 11:, :] = True
    behind &= covered_fraction(phantom) == 1.0  # voxels the field edge cuts get their covered share
    errors = []
    for step in (10.0, 5.0, 2.5):
        out = pd.prior.dose(phantom, source, step_mm=step, world_medium=None, **FAST)
        errors.append(np.abs(np.asarray(out.primary)[behind] / expected[behind] - 1).max())
    assert errors[-1] < 2e-5
    assert errors[0] > errors[1] > errors[2]


DENSE = dict(e_kev=30.0, density=8.0)  # 5 mm voxels of 8 g/cm^3 water at 30 keV: mu h = 1.5


def dense_slab_ratio(step_mm: float) -> tuple[np.ndarray, float]:
    """Primary dose / the closed form at the voxel centre, in the dense slab's voxels on rays within
    1 degree of the beam axis, shape (2, 4, 2) (slab layers on axis 1); and x = mu h / 2."""
    e_kev, density = DENSE["e_kev"], DENSE["density"]
    phantom, source = slab(density=density), cone(e_kev=e_kev)
    out = pd.prior.dose(phantom, source, step_mm=step_mm, world_medium=None, **FAST)
    beam = source.beam()
    rel = phantom.grid.voxel_centers_mm() - beam.focal_mm[0][None, None, None]
    dist = jnp.linalg.norm(rel, axis=-1)
    per_sr = beam.photons_per_sr(0, rel / dist[..., None])[..., 0]
    mu_mm = float(phantom.materials.mu_cm2_g(1, e_kev)) * density * 0.1
    face_mm = float(phantom.grid.axes_mm()[1][SLAB[0]]) - H / 2
    depth_mm = (rel[..., 1] - (face_mm - beam.focal_mm[0][1])) * dist / rel[..., 1]  # to the centre, along the ray
    centre = kerma_gy(per_sr / dist**2 * jnp.exp(-mu_mm * depth_mm), e_kev, phantom.materials.mu_en_cm2_g(1, e_kev))
    central = (slice(N // 2 - 1, N // 2 + 1), slice(*SLAB), slice(N // 2 - 1, N // 2 + 1))
    return np.asarray(out.primary)[central] / np.asarray(centre)[central], mu_mm * H / 2


def test_primary_dose_is_the_voxel_mean_in_strongly_attenuating_voxels():
    """In voxels with mu h = 1.5 the mean fluence over a voxel is sinh(mu h / 2) / (mu h / 2) = 1.10
    times the value at its centre: the Monte Carlo scores the mean."""
    ratio, x = dense_slab_ratio(step_mm=1.25)
    np.testing.assert_allclose(ratio, np.sinh(x) / x, rtol=5e-3)
    assert np.sinh(x) / x > 1.09


def test_transmission_falls_exponentially_between_depth_nodes():
    """With 5 mm steps the depth nodes lie midway between the 5 mm voxel centres. Inside the slab
    (the layers off its faces, which this step resolves only to the trapezoid's accuracy) the
    dose is still the voxel mean: interpolating the transmission linearly between the nodes would
    read cosh(mu h / 2) = 1.29 times the value at the centres."""
    ratio, x = dense_slab_ratio(step_mm=5.0)
    np.testing.assert_allclose(ratio[:, 1:-1], np.sinh(x) / x, rtol=5e-3)
    assert np.cosh(x) > 1.29


def test_gradients_stay_finite_where_the_transmission_underflows():
    """Behind 20 mm of water at 50 g/cm^3 at 20 keV (mu t = 81) the primary's transmission falls below
    `FLOOR` (e^-69) at the depth nodes: the gradient with respect to the density stays finite (float32)."""
    phantom, source = slab(density=50.0), cone(e_kev=20.0)

    def total(scale):
        scaled = eqx.tree_at(lambda p: p.density_g_cm3, phantom, phantom.density_g_cm3 * scale)
        return jnp.sum(pd.prior.dose(scaled, source, world_medium=None, **FAST).total)

    value, slope = jax.value_and_grad(total)(jnp.asarray(1.0))
    assert np.isfinite(float(value)) and np.isfinite(float(slope)) and float(slope) < 0


def test_voxel_mean_factor_is_sinh_x_over_x_with_its_derivative(x64):
    x = np.concatenate([[0.0], np.logspace(-8, np.log10(20.0), 400)])
    positive = np.where(x > 0, x, 1.0)
    exact = np.where(x > 0, np.sinh(x) / positive, 1.0)
    # the derivative in closed form, and by its series where that form cancels
    slope = np.where(x > 1e-2, (x * np.cosh(x) - np.sinh(x)) / positive**2, x / 3 + x**3 / 30 + x**5 / 840)
    np.testing.assert_allclose(sinhc(jnp.asarray(x)), exact, rtol=1e-14)
    np.testing.assert_allclose(jax.vmap(jax.grad(sinhc))(jnp.asarray(x)), slope, rtol=1e-8, atol=1e-15)


def test_self_shielding_is_the_mean_chord_escape_factor_with_its_derivative(x64):
    """(1 - exp(-mu L)) / (mu L) with L = 4 V / S (2 h / 3 for a cube), 1 with slope -L / 2 where
    the voxel attenuates as its surroundings do, above 1 for a voxel that attenuates less."""
    h = 6.0
    mean_chord_cm = 0.1 * 2.0 * h / 3.0
    mu = np.concatenate([-np.logspace(np.log10(2.5), -8, 200), [0.0], np.logspace(-8, 1.5, 200)])  # 1/cm
    x = mu * mean_chord_cm  # -1 ... 12.6
    exact = np.where(x != 0, -np.expm1(-x) / np.where(x != 0, x, 1.0), 1.0)
    np.testing.assert_allclose(self_shielding(jnp.asarray(mu), (h, h, h)), exact, rtol=1e-12)
    # a voxel much thinner than its cells gains no more than e - 1 (the fluence at its surface)
    assert float(self_shielding(jnp.asarray(-50.0), (h, h, h))) == pytest.approx(np.e - 1.0, rel=1e-12)
    slope = jax.vmap(jax.grad(lambda m: self_shielding(m, (h, h, h))))(jnp.asarray(mu))
    assert np.all(np.isfinite(slope)) and np.all(slope < 0)
    assert float(slope[200]) == pytest.approx(-mean_chord_cm / 2)
    # a box: 4 V / S = 2 hz hy hx / (hz hy + hy hx + hz hx)
    box = (2.0, 4.0, 8.0)
    chord_cm = 0.1 * 2 * 64.0 / (8.0 + 32.0 + 16.0)
    assert float(self_shielding(jnp.asarray(1.0), box)) == pytest.approx(-np.expm1(-chord_cm) / chord_cm, rel=1e-12)


def test_blob_kernel_is_the_mean_inverse_square_over_a_gaussian():
    """Against the exact integral E|X|^-2 = int_0^inf prod_i (1 + 2 s v_i)^(-1/2) exp(-s d_i^2 / (1 + 2 s v_i)) ds."""

    def exact(d, v):
        y = np.linspace(0.0, 1.0, 100_001)[:, None]  # s = (1/y^2 - 1) / (2 vbar): a finite integrand on [0, 1]
        vbar = v.mean()
        den = y**2 + (1 - y**2) * (v / vbar)[None]
        g = np.prod(den**-0.5, axis=1) * np.exp(-np.sum(d[None] ** 2 * (1 - y**2) / (2 * vbar * den), axis=1))
        return np.trapezoid(g, y[:, 0]) / vbar

    directions = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.6, 0.8, 0]])
    for v, tolerance in (((40.0, 40.0, 40.0), 8e-4), ((85.0, 149.0, 149.0), 0.13), ((10.0, 200.0, 100.0), 0.45)):
        v = np.asarray(v)
        for u in directions:
            for r in (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 300.0):
                got = float(blob_inverse_square(jnp.asarray(r * r), jnp.asarray(u), jnp.asarray(v)))
                want = exact(r * u, v)
                assert got == pytest.approx(want, rel=tolerance if r < 200 else 3e-3), (v, u, r)
    assert float(blob_inverse_square(jnp.asarray(0.0), jnp.zeros(3), jnp.full(3, 40.0))) == pytest.approx(1 / 40)


def test_attenuation_averaged_over_a_spread_source_is_the_gaussian_mean(x64):
    """`PriorParams.attenuation` with depth spreads (sd, sd_s) equals the mean over x ~ N(0, 1) of
    kappa B exp(-t) = kappa exp(-t) (1 + a t_s exp(b t_s - gamma t_e)) at depths (t, t_s) = (tau - sd x,
    tau_s - sd_s x) and escaped depth t_e (Gauss-Hermite, 40 nodes), and a source spread along the
    path raises the transmission (Jensen)."""
    params = pd.prior.PriorParams(
        log_scale=(0.3, 0.2), log_buildup_a=(0.3, 0.4), buildup_b=(0.35, 0.01), escape=(0.25, 0.05)
    )
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    cases = ((2.0, 1.5, 0.8, 0.6, 40.0, 0.0), (5.0, 4.0, 1.5, 1.2, 70.0, 3.5), (0.5, 0.1, 0.3, 0.05, 25.0, 0.1))
    for tau, tau_s, sd, sd_s, e, escaped in cases:
        u = np.log(e / 60.0)
        kappa, a, b, gamma = (np.exp(0.3 + 0.2 * u), np.exp(0.3 + 0.4 * u), 0.35 + 0.01 * u, 0.25 + 0.05 * u)
        t, t_s = tau - sd * x, tau_s - sd_s * x
        want = np.sum(w * kappa * np.exp(-t) * (1.0 + a * t_s * np.exp(b * t_s - gamma * escaped)))
        got = float(params.attenuation(jnp.asarray(tau), jnp.asarray(tau_s), jnp.asarray(e), sd, sd_s, escaped))
        assert got == pytest.approx(want, rel=1e-9)
        assert got > float(params.attenuation(jnp.asarray(tau), jnp.asarray(tau_s), jnp.asarray(e), 0.0, 0.0, escaped))


def covered_fraction(phantom, field_mm=60.0, focal_y=-400.0):
    """Closed form: the share of each voxel's (z, x) extent inside the `cone()` field at its depth."""
    z, y, x = (np.asarray(a) for a in phantom.grid.axes_mm())
    half = field_mm / 2 * (y - focal_y) / -focal_y  # field half-width at each depth (mm)

    def share(c):  # (c, y)
        lo, hi = np.maximum(-half[None], c[:, None] - H / 2), np.minimum(half[None], c[:, None] + H / 2)
        return np.clip((hi - lo) / H, 0.0, 1.0)

    return share(z)[:, :, None] * share(x).T[None]


def test_empty_world_is_pure_inverse_square():
    phantom, source = slab(density=0.0), cone()
    phantom = eqx.tree_at(lambda p: p.material_ids, phantom, jnp.zeros_like(phantom.material_ids))  # all air
    out = pd.prior.dose(phantom, source, world_medium=None, **FAST)
    primary = np.asarray(out.primary)
    covered = covered_fraction(phantom)
    inside = covered == 1.0
    expected = free_air_dose(phantom, source)
    np.testing.assert_allclose(primary[inside], expected[inside], rtol=1e-4)
    # a voxel the field edge cuts gets the covered share of the open-field dose (the MC's voxel average)
    wide = cone(field=(200.0, 200.0))
    per_sr = float(wide.beam().solid_angle_sr / source.beam().solid_angle_sr)
    open_field = free_air_dose(phantom, wide) * per_sr  # the wide field with the narrow one's photons per sr
    edge = (covered > 0.05) & (covered < 0.95)
    assert edge.sum() > 100
    np.testing.assert_allclose(primary[edge], covered[edge] * open_field[edge], rtol=0.02)
    assert np.all(primary[covered == 0.0] < 0.06 * open_field[covered == 0.0])  # a moment-matched box's reach
    assert float(jnp.max(out.scatter)) == 0.0
    # along the central ray the inverse-square law itself: dose x r^2 is constant
    axis = np.asarray(out.primary)[N // 2, :, N // 2] * (np.asarray(phantom.grid.axes_mm()[1]) + 400.0) ** 2
    np.testing.assert_allclose(axis, axis[0], rtol=1e-4)


def test_air_between_source_and_grid_attenuates_like_the_monte_carlo_world():
    phantom, source = slab(density=0.0), cone()
    vacuum = pd.prior.dose(phantom, source, world_medium=None, **FAST).primary
    air = pd.prior.dose(phantom, source, world_medium="air", **FAST).primary
    entry = 400.0 - N * H / 2  # focal spot to the grid face along the central ray (mm)
    mu = float(pd.materials.get("air").mu_per_mm(60.0))
    ratio = float(air[N // 2, 0, N // 2] / vacuum[N // 2, 0, N // 2])
    assert ratio == pytest.approx(np.exp(-mu * entry), rel=1e-4)


def test_dose_is_linear_in_fluence_and_view_weights():
    phantom = slab()
    beam = cone().beam()
    dose = eqx.filter_jit(lambda b: pd.prior.dose(phantom, b, **FAST))  # one compilation per spectrum size
    base = dose(beam)
    doubled = eqx.tree_at(lambda b: b.view_weight, beam, 2.0 * beam.view_weight)
    out = dose(doubled)
    np.testing.assert_allclose(np.asarray(out.total), 2 * np.asarray(base.total), rtol=1e-5, atol=0)
    # a spectrum is a fluence mixture: dose of the mix is the mix of doses
    s30, s80 = pd.Spectrum.monoenergetic(30.0), pd.Spectrum.monoenergetic(80.0)
    mix = pd.Spectrum.from_table([30.0, 80.0], [0.25, 0.75])
    d = {e: dose(eqx.tree_at(lambda b: b.spectrum, beam, s)) for e, s in ((30, s30), (80, s80))}
    both = dose(eqx.tree_at(lambda b: b.spectrum, beam, mix))
    np.testing.assert_allclose(
        np.asarray(both.primary), 0.25 * np.asarray(d[30].primary) + 0.75 * np.asarray(d[80].primary), rtol=1e-4, atol=0
    )


def test_scatter_reaches_outside_the_field_and_falls_with_distance():
    phantom = slab()
    source = cone(field=(20.0, 20.0))
    out = pd.prior.dose(phantom, source, **FAST)
    primary, scatter = np.asarray(out.primary), np.asarray(out.scatter)
    row = scatter[N // 2, 7, :]  # inside the slab, across the field
    assert primary[N // 2, 7, 0] == 0 and row[0] > 0
    centre = N // 2
    assert row[centre] > row[centre + 3] > row[-1]
    # the slab scatters more backward (toward the source) than far sideways in air
    assert scatter[N // 2, 2, N // 2] > scatter[N // 2, 2, 0]


def test_jit_equals_eager_and_vmap_equals_loop():
    phantom, source = _small_slab(jnp.float32), cone()
    eager = pd.prior.dose(phantom, source, **FAST).total
    jitted = eqx.filter_jit(lambda p: pd.prior.dose(p, source, **FAST))(phantom).total
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-30)
    # a traced source: the layout falls back to bounds from the grid, on the same lattice nodes, and to
    # the general read-back (along each ray, not at each depth's target height: a few 1e-4 apart)
    traced = eqx.filter_jit(pd.prior.dose)(phantom, source, **FAST).total
    np.testing.assert_allclose(np.asarray(traced), np.asarray(eager), rtol=1e-3, atol=1e-30)
    scales = jnp.asarray([0.5, 1.5])

    def one(scale):
        return pd.prior.dose(
            eqx.tree_at(lambda p: p.density_g_cm3, phantom, phantom.density_g_cm3 * scale), source, **FAST
        ).total

    batched = jax.vmap(one)(scales)
    single = jax.jit(one)
    for i, s in enumerate(scales):
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single(s)), rtol=1e-4, atol=1e-30)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


SMALL = dict(n_sources=16, path_samples=3, cell_mm=10.0, step_mm=10.0, group_kev=20.0)


def _small_slab(dtype=jnp.float64):
    """The slab on a coarser 8^3 grid of 10 mm voxels (float64 by default)."""
    p = slab(dtype=dtype)
    ids = p.material_ids[::2, ::2, ::2]
    grid = pd.Grid.centered((8, 8, 8), (10.0, 10.0, 10.0))
    return pd.Phantom(grid, ids, p.density_g_cm3[::2, ::2, ::2], p.materials, jnp.zeros_like(ids), {})


def test_gradients_match_finite_differences_in_float64(x64):
    """One check over parameters, densities, material fractions, spectrum weights, focal spot and field."""
    phantom = _small_slab()
    # the last probe voxel straddles the field edge (covered 82 %): its primary moves with the field size
    probe = (jnp.asarray([4, 4, 5, 6, 4]), jnp.asarray([3, 6, 7, 4, 4]), jnp.asarray([4, 4, 1, 0, 5]))
    energies = jnp.asarray([40.0, 60.0, 80.0])
    fractions = 0.9 * jax.nn.one_hot(phantom.material_ids, len(phantom.materials), dtype=jnp.float64) + 0.05

    def total(params, density_scale, fractions, weights, focal_y_dm, field_cm):
        p = eqx.tree_at(lambda q: q.density_g_cm3, phantom, phantom.density_g_cm3 * density_scale)
        s = pd.sources.ConeBeam(
            pd.Spectrum(energies, weights), jnp.stack([0.0, 100.0 * focal_y_dm, 3.0]), (0.0, 0.0, 0.0), 10.0 * field_cm
        )
        return pd.prior.dose(p, s, params, material_fractions=fractions, **SMALL).total[probe] * 1e12

    args = (
        pd.prior.PriorParams((0.1, -0.2), (-0.3, 0.1), (0.2, 0.0), (0.3, 0.1)),
        jnp.asarray(1.0),
        fractions,
        jnp.asarray([0.2, 0.5, 0.3]),
        jnp.asarray(-4.0),
        jnp.asarray([3.6, 4.0]),
    )
    check_grads(jax.jit(total), args, order=1, modes=["rev"], eps=1e-4)


def test_gradients_are_finite_at_zero_density_and_field_edges(x64):
    phantom = _small_slab()
    empty = eqx.tree_at(lambda p: p.density_g_cm3, phantom, jnp.zeros_like(phantom.density_g_cm3))

    def total(rho, field):
        p = eqx.tree_at(lambda q: q.density_g_cm3, phantom, rho)
        s = pd.sources.ConeBeam(pd.Spectrum.monoenergetic(60.0), (0.0, -400.0, 0.0), (0.0, 0.0, 0.0), field)
        return jnp.sum(pd.prior.dose(p, s, **SMALL).total)

    # field edges through voxel centres: 10 mm at the aim plane, where the centres sit at +-5 mm
    grad = jax.jit(jax.grad(total, argnums=(0, 1)))
    g_rho, g_field = grad(empty.density_g_cm3, jnp.asarray([10.0, 10.0]))
    assert np.all(np.isfinite(np.asarray(g_rho))) and np.all(np.isfinite(np.asarray(g_field)))
    g_rho, g_field = grad(phantom.density_g_cm3, jnp.asarray([10.0, 10.0]))
    assert np.all(np.isfinite(np.asarray(g_rho))) and np.all(np.isfinite(np.asarray(g_field)))
    assert float(jnp.sum(g_field)) != 0.0  # a wider field gives more dose


def test_attenuation_basis_rebuilds_every_coefficient():
    table = pd.materials.MaterialTable.from_materials(["air", "water", "cortical_bone", "lung", "lead"])
    basis = AttenuationBasis.from_table(table)
    assert basis.rank < len(table) and basis.max_rel_error <= 3e-3
    e = jnp.asarray([17.3, 33.0, 60.0, 88.5, 120.0])
    rebuilt = basis.weight @ basis.at(e).T
    exact = table.mu_cm2_g(jnp.arange(len(table))[:, None], e[None])
    np.testing.assert_allclose(np.asarray(rebuilt), np.asarray(exact), rtol=5e-3)


@pytest.mark.parametrize("e_kev", [pytest.param(30.0, marks=pytest.mark.slow), 80.0])
def test_scatter_moments_are_those_the_monte_carlo_samples(getkey, e_kev):
    table = pd.materials.MaterialTable.from_materials(["water"])
    data = ScatterData.from_table(table)
    _, c1, c2, ratio = (np.asarray(a)[0, 0] for a in data.at(jnp.asarray([e_kev])))
    n = 200_000
    tables = ScatterTables.from_table(table)
    e = jnp.full((n,), e_kev)
    m = jnp.zeros((n,), jnp.int32)
    cos_i, e_i = sample_incoherent(getkey(), e, m, tables)
    cos_c = sample_coherent(getkey(), e, m, tables)
    p_coh = float(table.coherent_cm2_g(0, e_kev) / (table.coherent_cm2_g(0, e_kev) + table.incoherent_cm2_g(0, e_kev)))
    coherent = np.asarray(jax.random.uniform(getkey(), (n,))) < p_coh
    cos = np.where(coherent, np.asarray(cos_c), np.asarray(cos_i))
    energy_ratio = np.where(coherent, 1.0, np.asarray(e_i) / e_kev)
    for value, samples in ((c1, cos), (c2, 0.5 * (3 * cos**2 - 1)), (ratio, energy_ratio)):
        assert value == pytest.approx(samples.mean(), abs=4 * samples.std() / np.sqrt(n) + 1e-4)


def _with_lead_sheet(phantom):
    """`phantom` with a 5 mm lead sheet across its first z layer, labelled "apron"."""
    table = pd.materials.MaterialTable.from_materials(list(phantom.materials.names) + ["lead"])
    ids = np.array(phantom.material_ids)
    ids[0] = len(table) - 1
    rho = phantom.density_g_cm3.at[0].set(11.35)
    return pd.Phantom(phantom.grid, ids, rho, table, np.where(ids == len(table) - 1, 1, 0), {"apron": 1})


def test_calibrate_recovers_known_parameters_and_round_trips(tmp_path, getkey):
    """...also when the reference holds a dose in a lead apron that the prior could never fit:
    a shield's own dose is no tissue dose, and calibration leaves it out (as organ and voxels)."""
    phantom, source = _with_lead_sheet(slab()), cone(field=(30.0, 30.0))
    options = dict(FAST, last_leg_mm=0.0)  # the sheet is off the beam's path; no last leg needed
    truth = pd.prior.PriorParams((0.3, 0.0), (-0.5, 0.0), (0.0, 0.0))
    reference = pd.prior.dose(phantom, source, truth, **options).total
    lead = np.asarray(phantom.organ_labels) == 1
    mc = {
        "dose_gy": jnp.where(lead, 100.0 * float(reference.max()), reference),
        "rel_sigma": jnp.where(lead, 0.001, 0.01),
        "organ_names": ["apron"],
    }
    prior = pd.prior.calibrate(
        [(phantom, source)], [mc], key=getkey(), steps=60, learning_rate=0.1, progress=False, **options
    )
    assert prior.info["loss_after"] < 1e-2 * prior.info["loss_before"]  # the apron alone would make it >= 20
    fitted = np.asarray(prior.dose(phantom, source).total)
    region = np.asarray(reference) > 0.01 * float(reference.max())
    np.testing.assert_allclose(fitted[region], np.asarray(reference)[region], rtol=0.03)
    path = tmp_path / "prior.json"
    prior.save(path)
    again = pd.prior.Prior.load(path)
    assert again.options == prior.options
    np.testing.assert_array_equal(np.asarray(again.dose(phantom, source).total), fitted)


@pytest.mark.slow
def test_fit_solves_an_inverse_problem_added_filtration():
    """Recover 2 mm of added aluminium from the depth-dose profile through a water slab."""
    phantom = _small_slab(jnp.float32)
    tube = pd.Spectrum.from_tube(80.0, {"Al": 1.0})

    def profile(al_mm):
        s = pd.sources.ConeBeam(tube.filtered({"Al": al_mm}), (0.0, -400.0, 0.0), (0.0, 0.0, 0.0), (40.0, 40.0))
        d = pd.prior.dose(phantom, s, **SMALL).total[4, :, 4]
        return d / d[0]

    measured = profile(2.0)
    best, history = pd.prior.fit(
        lambda t: jnp.sum((profile(t) / measured - 1) ** 2),
        jnp.asarray(0.5),
        steps=50,
        learning_rate=0.1,
        progress=False,
    )
    assert float(best) == pytest.approx(2.0, abs=0.05)
    assert history[-1] < 1e-2 * history[0]


def test_bad_input_is_named():
    phantom = slab()
    pencil = pd.sources.PencilBeam(pd.Spectrum.monoenergetic(60.0), (0.0, -400.0, 0.0), (0.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="focal-spot"):
        pd.prior.dose(phantom, pencil)
    with pytest.raises(ValueError, match="step_mm"):
        pd.prior.dose(phantom, cone(), step_mm=0.0)
    with pytest.raises(ValueError, match="material_fractions"):
        pd.prior.dose(phantom, cone(), material_fractions=jnp.ones((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="n_sources"):
        pd.prior.dose(phantom, cone(), n_sources=0)
    for cells in ((10.0, 20.0), (10.0, -1.0, 10.0)):
        with pytest.raises(ValueError, match="cell_mm"):
            pd.prior.dose(phantom, cone(), cell_mm=cells)
    for name in ("last_leg_mm", "far_rows"):
        with pytest.raises(ValueError, match=name):
            pd.prior.dose(phantom, cone(), **{name: -1.0})
    with pytest.raises(TypeError, match="params"):
        pd.prior.dose(phantom, cone(), {"log_scale": 0})
    with pytest.raises(ValueError, match="does not reach"):
        away = pd.sources.ConeBeam(
            pd.Spectrum.monoenergetic(60.0), (0.0, -400.0, 0.0), (0.0, -800.0, 0.0), (10.0, 10.0)
        )
        pd.prior.dose(phantom, away)


def test_gradients_stay_finite_in_float32_when_groups_barely_scatter():
    """A tube spectrum through matter filling the grid: the lowest groups scatter ~nothing, and
    behind thick filtration they hold ~nothing."""
    phantom = _small_slab(jnp.float32)
    water = eqx.tree_at(
        lambda p: (p.material_ids, p.density_g_cm3),
        phantom,
        (jnp.ones_like(phantom.material_ids), jnp.ones_like(phantom.density_g_cm3)),
    )
    tube = pd.Spectrum.from_tube(80.0, {"Al": 1.0})

    def total(al_mm):
        s = pd.sources.ConeBeam(tube.filtered({"Al": al_mm}), (0.0, -400.0, 0.0), (0.0, 0.0, 0.0), (40.0, 40.0))
        return jnp.sum(pd.prior.dose(water, s, **{**SMALL, "group_kev": 10.0}).total) * 1e12

    grad = jax.jit(jax.grad(total))
    for al_mm in (1.0, 8.0):  # 8 mm: the 0-10 keV group keeps ~1e-40 of the fluence
        g = grad(jnp.asarray(al_mm))
        assert np.isfinite(float(g)) and float(g) != 0.0


def test_cells_per_axis_and_fractions_one_hot_equal_material_ids():
    """Cells of (z, y, x) sizes make that coarse lattice; one-hot material fractions give
    the dose of the material ids (each voxel's own mu_en, primary and scattered)."""
    phantom, source = _small_slab(jnp.float32), cone()
    options = dict(FAST, cell_mm=(10.0, 20.0, 40.0))
    scene = pd.prior.prepare(phantom, source, **options)
    assert scene.coarse_grid.spacing_mm == (10.0, 20.0, 40.0)
    one_hot = jax.nn.one_hot(phantom.material_ids, len(phantom.materials))
    by_ids = pd.prior.dose(phantom, source, **options)
    by_fractions = pd.prior.dose(phantom, source, material_fractions=one_hot, **options)
    for a, b in ((by_ids.primary, by_fractions.primary), (by_ids.scatter, by_fractions.scatter)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-30)
    assert float(by_ids.scatter.max()) > 0.05 * float(by_ids.primary.max())


def test_separable_resampling_is_trilinear_interpolation(getkey):
    from physdose.prior._primary import resample_linear, trilinear

    coarse = pd.Grid((4, 3, 5), (20.0, 15.0, 10.0), (-30.0, -15.0, -20.0))
    fine = pd.Grid((13, 1, 17), (6.0, 5.0, 3.5), (-45.0, 3.0, -27.0))  # reaches past the coarse centres
    volume = jax.random.normal(getkey(), coarse.shape + (2,))
    expected = trilinear(volume, coarse.to_index(fine.voxel_centers_mm()), outside_zero=False)
    np.testing.assert_allclose(np.asarray(resample_linear(volume, coarse, fine)), np.asarray(expected), atol=1e-5)
    for outside_zero in (False, True):  # one gather from the table of cell corners: the same interpolation
        index = coarse.to_index(fine.voxel_centers_mm())
        np.testing.assert_allclose(
            np.asarray(trilinear(volume, index, outside_zero=outside_zero, stacked=True)),
            np.asarray(trilinear(volume, index, outside_zero=outside_zero)),
            atol=1e-5,
        )


def test_scatter_on_the_cell_lattice_equals_the_pointwise_transport():
    """`Scene.dose` reads the paths of all cells separably; `dose_at` samples each path: same numbers."""
    phantom = slab()
    scene = eqx.filter_jit(pd.prior.prepare)(phantom, cone(field=(20.0, 20.0)), n_sources=16, cell_mm=15.0)
    params = pd.prior.PriorParams(log_buildup_a=(0.0, 0.0), buildup_b=(0.2, 0.0), escape=(0.5, 0.0))
    cells = scene.coarse_grid.voxel_centers_mm().reshape(-1, 3)
    for lattice, points in zip(scene._fluence(params, None), scene._fluence(params, cells)):
        np.testing.assert_allclose(np.asarray(lattice), np.asarray(points), rtol=2e-5, atol=1e-6 * float(points.max()))
    index = np.array([[8, 7, 8], [8, 2, 0], [0, 15, 15], [3, 6, 11]])
    full, some = scene.dose(params), scene.dose_at(params, index)
    np.testing.assert_allclose(np.asarray(some.scatter), np.asarray(full.scatter)[tuple(index.T)], rtol=2e-5)


def test_scatter_rows_leave_out_only_rows_far_from_the_field():
    """Every row near the irradiated ones is computed; further out, rows at most `growth` x distance apart."""
    from physdose.prior._geometry import NEAR_ROWS, row_brackets, scatter_rows

    rows = np.asarray(scatter_rows(113, 78, 86, 0.15))
    assert set(range(78 - NEAR_ROWS, 86 + NEAR_ROWS + 1)) <= set(rows) and {0, 112} <= set(rows)
    distance = np.maximum(np.maximum(78 - rows, rows - 86), 0)
    gaps = np.diff(rows)
    assert np.all(gaps <= np.maximum(1, 0.15 * np.maximum(distance[:-1], distance[1:]) + 1))
    assert len(rows) < 60 and scatter_rows(113, 78, 86, 0.0) is None and scatter_rows(12, 4, 6, 0.15) is None
    lo, hi, t = row_brackets(113, tuple(rows))
    assert np.all(rows[lo] <= np.arange(113)) and np.all(np.arange(113) <= rows[hi])
    np.testing.assert_allclose(rows[lo] + t * (rows[hi] - rows[lo]), np.arange(113))


def test_scatter_between_computed_rows_follows_its_fall_along_a_water_column():
    """In 400 mm of water along z, rows left out far from a 10 mm field are interpolated between computed
    ones within 3 % of computing them (the fluence falls 7000-fold); computed rows are unchanged, and
    `dose_at` gives `dose`'s numbers."""
    grid = pd.Grid.centered((80, 8, 8), (5.0, 5.0, 5.0))
    table = pd.materials.MaterialTable.from_materials(["air", "water"])
    ids = np.ones(grid.shape, np.int32)
    phantom = pd.Phantom(grid, ids, jnp.ones(grid.shape), table, np.zeros_like(ids), {})
    source = pd.sources.ConeBeam(pd.Spectrum.monoenergetic(60.0), (0.0, -400.0, 0.0), (0.0, 0.0, 0.0), (10.0, 30.0))
    options = dict(n_sources=16, cell_mm=10.0, path_samples=8)
    every = pd.prior.prepare(phantom, source, far_rows=0.0, **options)
    some = pd.prior.prepare(phantom, source, far_rows=0.5, **options)
    assert every.scatter_rows is None and 0 < len(some.scatter_rows) < 0.6 * some.coarse_grid.shape[0]
    params = pd.prior.PriorParams(log_buildup_a=(0.0, 0.0), buildup_b=(0.2, 0.0))
    g = every.n0.shape[1]
    phi_every, phi_some = (
        np.asarray(s._at_cells(params, None))[:, :g].sum(-1).reshape(every.coarse_grid.shape) for s in (every, some)
    )
    assert phi_every[0].max() < 1e-3 * phi_every.max()
    error = np.abs(phi_some / phi_every - 1)
    assert error[list(some.scatter_rows)].max() < 1e-6
    assert 0.003 < error.max() < 0.03
    index = np.array([[2, 3, 3], [10, 1, 6], [70, 7, 0], [41, 4, 4]])
    at, whole = some.dose_at(params, index).scatter, some.dose(params).scatter
    np.testing.assert_allclose(np.asarray(at), np.asarray(whole)[tuple(index.T)], rtol=2e-5)


def test_axial_views_read_by_columns_equal_the_general_ray_tracing(getkey, monkeypatch):
    """CT views (slice direction along z) take the column path; it gives the general path's primary."""
    from physdose.prior import _model

    grid = pd.Grid.centered((20, 12, 14), (4.0, 5.0, 4.5))
    table = pd.materials.MaterialTable.from_materials(["air", "water", "cortical_bone"])
    ids = np.asarray(jax.random.randint(getkey(), grid.shape, 0, 3))
    rho = np.asarray(jax.random.uniform(getkey(), grid.shape, minval=0.2, maxval=2.0))
    phantom = pd.Phantom(grid, ids, jnp.asarray(rho * (ids > 0)), table, np.zeros_like(ids), {})
    scan = pd.sources.CTScan(
        pd.Spectrum.monoenergetic(60.0), start_z_mm=-20.0, end_z_mm=15.0, collimation_mm=10.0,
        views_per_rotation=8, source_isocenter_mm=150.0, fov_mm=120.0,
    )  # fmt: skip
    options = dict(max_views=12, cell_mm=12.0, n_sources=8, path_samples=2)
    calls = []
    layout = _model.axial_layout
    monkeypatch.setattr(_model, "axial_layout", lambda *a: calls.append(layout(*a)) or calls[-1])
    columns = np.asarray(pd.prior.prepare(phantom, scan, **options).primary)
    assert calls[-1] is not None  # the column path was taken
    monkeypatch.setattr(_model, "axial_layout", lambda *a: None)
    general = np.asarray(pd.prior.prepare(phantom, scan, **options).primary)
    assert general.max() > 0
    # the column path reads each depth's nodes at the target's height, the general one along the
    # target's ray: under 1e-3 apart in this steep cone (source 150 mm from the axis), where the 4 mm
    # step's own error is ~20 % (measured on one such phantom: 6.5e-4 and 21 %; 1e-5 at a 0.25 mm step)
    np.testing.assert_allclose(columns, general, rtol=1e-3, atol=1e-6 * general.max())


def test_view_extents_bound_every_voxel_in_each_views_aperture():
    """The voxels each view reaches, from the lattice of every second voxel, against all voxels tested one
    by one: inside their box by less than the margin the callers add, and a view that misses reaches none."""
    from physdose.prior._geometry import view_extents

    grid = pd.Grid.centered((20, 12, 14), (4.0, 5.0, 4.5))
    scan = pd.sources.CTScan(
        pd.Spectrum.monoenergetic(60.0), start_z_mm=-20.0, end_z_mm=15.0, collimation_mm=10.0,
        views_per_rotation=8, source_isocenter_mm=150.0, fov_mm=120.0,
    )  # fmt: skip
    away = pd.sources.ConeBeam(pd.Spectrum.monoenergetic(60.0), (0.0, -400.0, 0.0), (0.0, -800.0, 0.0), (60.0, 60.0))
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    points = np.asarray(grid.origin_mm) + index * np.asarray(grid.spacing_mm)
    for beam, reaches in ((scan.beam(), True), (cone().beam(), True), (away.beam(), False)):
        extents = view_extents(grid, beam)
        assert extents.shape == (beam.num_views, 2, 3)
        for v, (f, (c, u, w)) in enumerate(zip(np.asarray(beam.focal_mm), np.asarray(beam.axes))):
            rel = points - f
            depth = rel @ c
            t = np.stack([rel @ u, rel @ w], -1) / np.where(depth > 0, depth, 1.0)[:, None]
            inside = (depth > 0) & np.all(np.abs(t - np.asarray(beam.aperture_center)) <= np.asarray(beam.tan_half), -1)
            assert inside.any() == reaches
            if not reaches:
                assert np.all(extents[v, 0] > extents[v, 1])
                continue
            # the lattice's voxels are some of them: inside the box, by less than the callers' margin (2)
            hit = index[inside]
            assert np.all(hit.min(0) <= extents[v, 0]) and np.all(extents[v, 0] <= hit.min(0) + 2)
            assert np.all(hit.max(0) - 2 <= extents[v, 1]) and np.all(extents[v, 1] <= hit.max(0))


def _shielded_slab(lead: bool):
    """The water slab with a one-voxel sheet of lead (0.25 mm Pb) across it at x layer 12, out of a narrow field."""
    p = slab()
    table = pd.materials.MaterialTable.from_materials(["air", "water", "lead"])
    ids, rho = np.asarray(p.material_ids).copy(), np.asarray(p.density_g_cm3).copy()
    if lead:
        ids[:, :, 12], rho[:, :, 12] = 2, 11.35 * 0.25 / H
    return pd.Phantom(p.grid, ids, jnp.asarray(rho), table, np.zeros_like(ids), {})


def test_last_leg_cancels_in_uniform_matter_and_resolves_a_thin_shield():
    params = pd.prior.PriorParams()
    prepare = eqx.filter_jit(pd.prior.prepare)  # compiled once per layout, shared by the phantoms
    dose = eqx.filter_jit(lambda scene: scene.dose(params).scatter)

    def scatter(scene, last_leg_mm=None):
        return np.asarray(dose(scene if last_leg_mm is None else dataclasses.replace(scene, last_leg_mm=last_leg_mm)))

    # uniform water: the last leg's lift on the cells and drop at the voxels cancel
    water = eqx.tree_at(
        lambda p: (p.material_ids, p.density_g_cm3),
        slab(),
        (jnp.ones((N, N, N), jnp.int32), jnp.ones((N, N, N), jnp.float32)),
    )
    scene = prepare(water, cone(), **FAST)
    assert scene.last_leg_mm == 0.0  # no shielding material: off by default
    inner = np.s_[6:10, 6:10, 6:10]  # voxels whose cells and last legs stay inside the grid
    np.testing.assert_allclose(scatter(scene, 10.0)[inner], scatter(scene)[inner], rtol=1e-3)

    # a sheet thinner than a cell: with the last leg the scattered dose behind it is what cells of
    # one voxel (which resolve the sheet) give; smeared over a cell without it, it leaks through
    options = dict(n_sources=64, path_samples=16, world_medium=None)
    source = cone(field=(20.0, 20.0))
    behind = np.s_[4:12, SLAB[0] : SLAB[1], 13:]

    def scenes(cell_mm):
        return (prepare(_shielded_slab(lead), source, cell_mm=cell_mm, **options) for lead in (True, False))

    lead, free = scenes(5.0)
    resolved = scatter(lead, 0.0)[behind].mean() / scatter(free)[behind].mean()
    lead, free = scenes(20.0)
    assert lead.last_leg_mm == 20.0  # lead in the phantom: one cell by default
    with_leg, without = (scatter(lead, leg)[behind].mean() / scatter(free)[behind].mean() for leg in (None, 0.0))
    assert resolved < 0.3  # 0.25 mm Pb passes ~25 % of 55 keV photons at normal incidence, fewer obliquely
    assert with_leg == pytest.approx(resolved, rel=0.25)
    assert without > 1.5 * resolved


def test_samples_before_the_last_leg_cover_exactly_the_path_before_it():
    from physdose.prior._scatter import before_last_leg

    frac = (jnp.arange(16) + 0.5) / 16
    r = jnp.asarray([5.0, 20.0, 31.0, 100.0, 640.0])
    w = np.asarray(before_last_leg(frac, r, 20.0))  # (16, 5)
    assert w.min() >= 0.0 and w.max() <= 1.0
    # each sample stands for r / 16 of the path: the weights add up to the path before the last leg
    np.testing.assert_allclose(w.sum(axis=0) * np.asarray(r) / 16, np.maximum(np.asarray(r) - 20.0, 0.0), atol=1e-4)
    assert np.all(np.diff(w, axis=0) <= 0)  # the cut-off samples are the last ones


def test_a_path_escapes_across_an_air_gap_and_not_through_tissue_or_lung():
    """`escaped_fraction` from cells of air, lung and tissue (sigma at 60 keV 0.00024, 0.05, 0.2 /cm) as the
    transport reads them: one sample of air in 16 makes a path escaped, tissue or lung alone does not."""
    from physdose.prior._scatter import GAP_SCATTERING_PER_CM, MIN_LOG_CLOSED, escaped_fraction

    def log_closed(sigma):
        return max(float(np.log(-np.expm1(-sigma / GAP_SCATTERING_PER_CM))), MIN_LOG_CLOSED)

    air, lung, tissue = (log_closed(s) for s in (0.00024, 0.05, 0.2))

    def fraction(samples):
        return float(escaped_fraction(jnp.asarray(np.mean(samples)), len(samples)))

    assert fraction([tissue] * 16) < 1e-6
    assert fraction([tissue] * 8 + [lung] * 8) < 0.06  # a lung is no air gap
    assert fraction([tissue] * 15 + [air]) == pytest.approx(1 - (1 - np.exp(-0.024)), rel=1e-4)  # 0.976
    assert fraction([tissue] * 12 + [air] * 4) > 0.9999


def test_escape_lowers_only_the_build_up_of_photons_that_left_the_body():
    """In uniform water no path crosses a gap: `escape` changes nothing. Behind the slab (vacuum) the
    scattered dose falls, but never below its first scatter (the build-up is only reduced)."""
    prepare = eqx.filter_jit(pd.prior.prepare)
    dose = eqx.filter_jit(lambda scene, p: scene.dose(p).scatter)
    infinite, escaping = pd.prior.PriorParams(), pd.prior.PriorParams(escape=(0.5, 0.0))
    water = eqx.tree_at(
        lambda p: (p.material_ids, p.density_g_cm3),
        slab(),
        (jnp.ones((N, N, N), jnp.int32), jnp.ones((N, N, N), jnp.float32)),
    )
    scene = prepare(water, cone(), **FAST)
    np.testing.assert_allclose(np.asarray(dose(scene, escaping)), np.asarray(dose(scene, infinite)), rtol=1e-4)

    scene = prepare(slab(), cone(field=(20.0, 20.0)), **FAST)
    behind = np.s_[:, 12:, :]
    first, reduced, full = (
        np.asarray(dose(scene, p))[behind]
        for p in (pd.prior.PriorParams(log_buildup_a=(-60.0, 0.0)), escaping, infinite)
    )
    assert np.all(first <= reduced * (1 + 1e-6)) and np.all(reduced <= full * (1 + 1e-6))
    assert reduced.sum() < (1 - 1e-3) * full.sum()  # a thin slab's short paths: a small cut, but a cut


def test_air_bands_are_distances_from_the_body_outside_the_beam():
    from physdose.prior._calibrate import air_bands

    phantom = slab()  # water in y layers 5-8, 5 mm voxels
    primary = np.zeros(phantom.grid.shape)
    primary[:, :, 6:10] = 1.0  # a beam through x layers 6-9
    bands = air_bands(phantom, primary, (10.0, 20.0))
    for y, want in ((9, -1), (10, 0), (11, 0), (12, 1), (15, 1), (4, -1), (3, 0), (1, 1)):  # 5 mm per layer
        assert np.all(bands[:, y, :6] == want), y
    assert np.all(bands[:, :, 6:10] == -1) and np.all(bands[:, 5:9] == -1)  # in the beam; the body
