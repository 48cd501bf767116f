import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physdose as pd
from physdose.sources import Beam, Bowtie, CArm, ConeBeam, CTScan, FanBeam, ParallelBeam, PencilBeam


@pytest.fixture(scope="module")
def tube():
    return pd.Spectrum.from_tube(120.0, {"Al": 2.5}, 12.0)


@pytest.fixture(scope="module")
def mono():
    return pd.Spectrum.monoenergetic(60.0)


def test_helical_trajectory_advances_pitch_times_collimation_per_rotation(mono):
    ct = CTScan(mono, start_z_mm=-60.0, end_z_mm=60.0, pitch=1.375, collimation_mm=40.0, views_per_rotation=24)
    z, angles = np.asarray(ct.view_z_mm()), np.asarray(ct.view_angles_deg())
    assert z[24] - z[0] == pytest.approx(1.375 * 40.0)
    np.testing.assert_allclose(np.diff(angles), 15.0)
    assert z[0] == -60.0 and z[-1] <= 60.0 + 1e-4 and z[-1] > 60.0 - 1.375 * 40 / 24
    beam = ct.beam()
    focal = np.asarray(beam.focal_mm)
    np.testing.assert_allclose(np.hypot(focal[:, 1], focal[:, 2]), 600.0, rtol=1e-5)
    # the central ray of every view passes through the rotation axis at the view's z
    c = np.asarray(beam.axes[:, 0])
    through_axis = focal + 600.0 * c
    np.testing.assert_allclose(through_axis[:, 1:], 0.0, atol=1e-3)
    np.testing.assert_allclose(through_axis[:, 0], z, atol=1e-4)
    # frames are orthonormal
    np.testing.assert_allclose(
        np.einsum("vij,vkj->vik", beam.axes, beam.axes), np.broadcast_to(np.eye(3), (len(z), 3, 3)), atol=1e-6
    )


def test_axial_scan_repeats_full_rotations_at_table_steps(mono):
    ct = CTScan(mono, start_z_mm=0.0, end_z_mm=80.0, helical=False, collimation_mm=20.0, views_per_rotation=8)
    z = np.asarray(ct.view_z_mm())
    assert ct.num_views == 5 * 8
    np.testing.assert_allclose(np.unique(z), [0.0, 20.0, 40.0, 60.0, 80.0])
    single = CTScan(mono, start_z_mm=10.0, end_z_mm=10.0, helical=False, views_per_rotation=8)
    assert single.num_views == 8 and np.all(np.asarray(single.view_z_mm()) == 10.0)


def test_ct_angle_convention(mono):
    ct = CTScan(mono, start_z_mm=0.0, end_z_mm=0.0, helical=False, views_per_rotation=4)
    focal = np.asarray(ct.beam().focal_mm)
    assert focal[0, 1] == pytest.approx(-600.0)  # theta 0: anterior source (AP)
    assert focal[1, 2] == pytest.approx(-600.0)  # theta 90: source on the patient's right


def test_collimation_edges_at_isocentre(mono):
    ct = CTScan(
        mono, start_z_mm=0.0, end_z_mm=0.0, helical=False, collimation_mm=10.0, fov_mm=320.0, views_per_rotation=1
    )
    beam = ct.beam()

    def fluence(z, x):  # view 0: source anterior, isocentre plane y = 0
        return float(beam.fluence_per_photon_mm2(jnp.asarray([z, 0.0, x])).sum())

    assert fluence(4.9, 0.0) > 0 and fluence(-4.9, 0.0) > 0
    assert fluence(5.1, 0.0) == 0 and fluence(-5.1, 0.0) == 0
    assert fluence(0.0, 159.0) > 0 and fluence(0.0, 161.0) == 0


def test_bowtie_is_symmetric_and_thickens_off_axis():
    for bowtie in (Bowtie.body(), Bowtie.head()):
        t = jnp.linspace(0.0, 0.6, 61)
        left, right = np.asarray(bowtie.path_mm(-t)), np.asarray(bowtie.path_mm(t))
        np.testing.assert_allclose(left, right, rtol=1e-6)
        assert np.all(np.diff(right) >= -1e-6) and right[-1] > right[0] + 5.0
        assert right[0] == pytest.approx(1.0, abs=0.05)
    # the head bowtie equalises a smaller cylinder, so it thickens sooner
    assert float(Bowtie.head().path_mm(0.15)) > float(Bowtie.body().path_mm(0.15))
    # transmission falls off-axis, more at low energy
    tr = np.asarray(Bowtie.body().transmission(jnp.asarray([0.0, 0.3]), jnp.asarray([40.0, 100.0])))
    assert tr[1, 0] < tr[0, 0] and tr[1, 0] < tr[1, 1]


def test_point_source_integrates_to_one_and_follows_inverse_square(mono):
    beam = ConeBeam(mono, (0.0, 0.0, -1000.0), (0.0, 0.0, 0.0), (300.0, 200.0)).beam()
    # integrate photons per sr over the aperture by quadrature in (t_u, t_w)
    tu, tw = beam.tan_half.tolist()
    n = 201
    gu, gw = np.meshgrid(np.linspace(-tu, tu, n), np.linspace(-tw, tw, n), indexing="ij")
    c, u, w = np.asarray(beam.axes[0])
    d = c + gu[..., None] * u + gw[..., None] * w
    norm = np.linalg.norm(d, axis=-1)
    dirs = jnp.asarray(d / norm[..., None], dtype=jnp.float32)
    per_sr = np.asarray(beam.photons_per_sr(0, dirs).sum(-1))
    inside = (np.abs(gu) < tu) & (np.abs(gw) < tw)  # skip the boundary samples
    dA = (2 * tu / (n - 1)) * (2 * tw / (n - 1))
    total = np.sum(np.where(inside, per_sr / norm**3, 0.0)) * dA
    assert total == pytest.approx(1.0, rel=0.02)
    near = float(beam.fluence_per_photon_mm2(jnp.asarray([0.0, 0.0, -500.0])).sum())
    far = float(beam.fluence_per_photon_mm2(jnp.asarray([0.0, 0.0, 0.0])).sum())
    assert near / far == pytest.approx(4.0, rel=1e-5)


def test_sampled_photons_reproduce_the_analytic_fluence(mono, getkey):
    """MC sampling and the analytic fluence come from one Beam, so they must agree."""
    beam = FanBeam(mono, (0.0, -600.0, 0.0), (0.0, 0.0, 0.0), 400.0, 40.0, bowtie=Bowtie.body()).beam()
    n = 400_000
    ph = beam.sample(n, key=getkey())
    # photons (weighted) crossing a 20 x 20 mm^2 square in the plane y = 0, centred at x = 120 mm
    hit = ph.pos_mm + (600.0 / ph.direction[:, 1])[:, None] * ph.direction
    inside = (jnp.abs(hit[:, 0]) < 10.0) & (jnp.abs(hit[:, 2] - 120.0) < 10.0)
    tally = float(jnp.sum(jnp.where(inside, ph.weight, 0.0))) / n
    # the same from the analytic fluence: integral over the square of fluence x cos(incidence)
    g = np.linspace(-10.0, 10.0, 81)[:-1] + 0.125
    zz, xx = np.meshgrid(g, 120.0 + g, indexing="ij")
    pts = jnp.asarray(np.stack([zz, np.zeros_like(zz), xx], axis=-1), dtype=jnp.float32)
    cos = 600.0 / np.sqrt(600.0**2 + zz**2 + xx**2)
    analytic = float(np.sum(np.asarray(beam.fluence_per_photon_mm2(pts).sum(-1)) * cos) * 0.25**2)
    rel_sigma = 1 / np.sqrt(float(jnp.sum(inside)))
    assert tally == pytest.approx(analytic, rel=4 * rel_sigma)
    # all directions stay in the aperture
    t = beam.aperture_coords(0, ph.direction[:1000])
    assert np.all(np.abs(np.asarray(t)) <= np.asarray(beam.tan_half)[None] + 1e-6)


def test_sampling_is_deterministic_per_key(mono):
    beam = ConeBeam(mono, (0.0, 0.0, -500.0), (0.0, 0.0, 0.0), (100.0, 100.0)).beam()
    a = beam.sample(64, key=jax.random.key(3))
    b = beam.sample(64, key=jax.random.key(3))
    np.testing.assert_array_equal(a.direction, b.direction)
    mean_weight = float(beam.sample(200_000, key=jax.random.key(4)).weight.mean())
    assert mean_weight == pytest.approx(1.0, abs=5e-3)


def test_parallel_and_pencil_beams(mono):
    par = ParallelBeam(mono, (0.0, 0.0, -200.0), (0.0, 0.0, 1.0), (100.0, 50.0)).beam()
    f = par.fluence_per_photon_mm2(jnp.asarray([[10.0, 20.0, 50.0], [0.0, 60.0, 50.0], [0.0, 0.0, -300.0]]))
    np.testing.assert_allclose(np.asarray(f.sum(-1)), [1 / 5000.0, 0.0, 0.0], rtol=1e-6)
    pencil = PencilBeam(mono, (0.0, 0.0, -100.0), (0.0, 0.0, 1.0)).beam()
    ph = pencil.sample(16, key=jax.random.key(0))
    np.testing.assert_allclose(ph.direction, np.tile([0.0, 0.0, 1.0], (16, 1)), atol=1e-7)
    np.testing.assert_allclose(ph.weight, 1.0)


def test_carm_angle_conventions(mono):
    pa = CArm(mono)
    np.testing.assert_allclose(pa.focal_mm(), [0.0, 750.0, 0.0], atol=1e-3)  # under-table tube
    lao90 = CArm(mono, lao_deg=90.0)
    assert float(lao90.focal_mm()[2]) == pytest.approx(-750.0)  # source on the patient's right
    np.testing.assert_allclose(lao90.central_ray(), [0.0, 0.0, 1.0], atol=1e-7)
    rao30 = CArm(mono, lao_deg=-30.0)
    assert float(rao30.focal_mm()[2]) > 0  # RAO: source on the patient's left
    cra = CArm(mono, cra_deg=25.0)
    assert float(cra.central_ray()[0]) > 0 and float(cra.focal_mm()[0]) < 0  # receptor toward the head
    raised = CArm(mono, table_height_mm=50.0)
    np.testing.assert_allclose(raised.focal_mm() - pa.focal_mm(), [0.0, 50.0, 0.0], atol=1e-3)
    beam = CArm(mono, field_mm=(200.0, 100.0), source_image_mm=1000.0).beam()
    np.testing.assert_allclose(beam.tan_half, [0.1, 0.05], rtol=1e-6)
    assert float(jnp.linalg.norm(CArm(mono, lao_deg=37.0, cra_deg=-12.0).focal_mm())) == pytest.approx(750.0)


def test_kerma_per_mas_matches_tube_output_at_one_metre(tube):
    carm = CArm(tube, source_isocenter_mm=1000.0, source_image_mm=1200.0)
    beam = carm.beam()
    kerma_per_mas = float(beam.air_kerma_per_photon_gy(jnp.zeros(3)) * beam.photons_per_mas())
    expected = float(tube.air_kerma_per_fluence_gy_mm2 * tube.output_photons_per_mas_mm2)
    assert kerma_per_mas == pytest.approx(expected, rel=1e-4)


def test_tube_current_modulation_and_mas(tube):
    ct = CTScan(
        tube,
        start_z_mm=0.0,
        end_z_mm=100.0,
        collimation_mm=20.0,
        views_per_rotation=10,
        tube_current_ma=100.0,
        rotation_time_s=1.0,
        tcm_z_mm=jnp.asarray([0.0, 100.0]),
        tcm_factor=jnp.asarray([0.5, 1.5]),
    )
    ma = np.asarray(ct.view_current_ma())
    np.testing.assert_allclose(ma, 100.0 * (0.5 + np.asarray(ct.view_z_mm()) / 100.0), rtol=1e-5)
    assert float(ct.mas) == pytest.approx(ma.sum() / 10, rel=1e-6)
    beam = ct.beam()
    np.testing.assert_allclose(beam.view_weight, ma / ma.sum(), rtol=1e-5)
    assert float(ct.source_photons()) == pytest.approx(float(ct.mas * beam.photons_per_mas()), rel=1e-6)
    normalised = CTScan(tube, start_z_mm=0.0, end_z_mm=10.0, ctdi_vol_mgy=12.0)
    assert float(normalised.source_photons_for_ctdi_vol(3e-12)) == pytest.approx(4e12)


def test_geometry_gradients_are_finite(tube):
    def kerma(angles):
        return (
            CArm(tube, lao_deg=angles[0], cra_deg=angles[1])
            .beam()
            .air_kerma_per_photon_gy(jnp.asarray([20.0, -100.0, 30.0]))
        )

    g = jax.grad(kerma)(jnp.asarray([10.0, 5.0]))
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).sum()) > 0
    jitted = jax.jit(kerma)(jnp.asarray([10.0, 5.0]))
    assert float(jitted) == pytest.approx(float(kerma(jnp.asarray([10.0, 5.0]))), rel=1e-5)


def test_bad_source_inputs_raise_errors_naming_them(tube, mono):
    with pytest.raises(ValueError, match="pitch"):
        CTScan(tube, start_z_mm=0.0, end_z_mm=10.0, pitch=-1.0)
    with pytest.raises(ValueError, match="end_z_mm"):
        CTScan(tube, start_z_mm=10.0, end_z_mm=0.0)
    with pytest.raises(ValueError, match="fov_mm"):
        CTScan(tube, start_z_mm=0.0, end_z_mm=10.0, fov_mm=1300.0)
    with pytest.raises(TypeError, match="spectrum"):
        CArm("120 kVp")
    with pytest.raises(ValueError, match="field_mm"):
        CArm(tube, field_mm=(0.0, 100.0))
    with pytest.raises(ValueError, match="cra_deg"):
        CArm(tube, cra_deg=95.0)
    with pytest.raises(ValueError, match="source_isocenter_mm"):
        CArm(tube, source_isocenter_mm=1200.0, source_image_mm=1100.0)
    with pytest.raises(ValueError, match="direction"):
        PencilBeam(mono, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)).beam()
    with pytest.raises(ValueError, match="tube output"):
        ConeBeam(mono, (0.0, 0.0, -100.0), (0.0, 0.0, 0.0), (10.0, 10.0)).beam().photons_per_mas()
    with pytest.raises(ValueError, match="tan_half"):
        Beam(mono, jnp.zeros((1, 3)), jnp.eye(3)[None], jnp.ones(1), jnp.asarray([0.1, 0.0]), jnp.zeros(2))


def test_off_axis_aperture_solid_angle_and_sampling(mono, getkey):
    """A field kept on a detector by a tilted source: the aperture sits off the central ray."""
    src = ConeBeam(mono, (0.0, -1000.0, 0.0), (0.0, 0.0, 0.0), (200.0, 100.0), field_offset_mm=(0.0, 300.0))
    beam = src.beam()
    np.testing.assert_allclose(beam.aperture_center, [0.0, 0.3], rtol=1e-6)
    # solid angle by quadrature over the shifted rectangle: integral of cos^3 dt_u dt_w
    tu = np.linspace(-0.1, 0.1, 401)
    tw = np.linspace(0.25, 0.35, 401)
    gu, gw = np.meshgrid(tu, tw, indexing="ij")
    omega = np.trapezoid(np.trapezoid((1 + gu**2 + gw**2) ** -1.5, tw, axis=1), tu)
    assert float(beam.solid_angle_sr) == pytest.approx(omega, rel=1e-5)
    centred = ConeBeam(mono, (0.0, -1000.0, 0.0), (0.0, 0.0, 0.0), (200.0, 100.0)).beam()
    assert float(centred.solid_angle_sr) > float(beam.solid_angle_sr)  # the same field off axis subtends less
    ph = beam.sample(100_000, key=getkey())
    t = np.asarray(beam.aperture_coords(0, ph.direction))
    assert np.all(np.abs(t[:, 0]) <= 0.1 + 1e-6) and np.all(np.abs(t[:, 1] - 0.3) <= 0.05 + 1e-6)
    assert float(ph.weight.mean()) == pytest.approx(1.0, abs=5e-3)
    # every photon lands in the field, 300 mm off the aim point along w = z, at the aim plane
    hit = np.asarray(ph.pos_mm + (1000.0 / ph.direction[:, 1])[:, None] * ph.direction)
    assert np.all(np.abs(hit[:, 0] - 300.0) <= 50.0 + 1e-3) and np.all(np.abs(hit[:, 2]) <= 100.0 + 1e-3)
