import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import physdose as pd
from physdose.metrics import _gamma

# ---------------------------------------------------------------------------------------------
# Dose pairs


def _axes(shape, spacing):
    """Centred axes (mm): pymedphys treats sub-ulp offsets at a coordinate of exactly 0 as outside."""
    return tuple((np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, spacing))


def _blobs(shape, spacing, *, shift_mm=None, scale=1.0, seed=0, n=4):
    """Sum of Gaussian blobs (structured dose), optionally shifted (mm) and scaled."""
    rng = np.random.default_rng(seed)
    axes = _axes(shape, spacing)
    mesh = np.meshgrid(*axes, indexing="ij")
    shift = shift_mm or (0.0,) * len(shape)
    extent = np.array([a[-1] - a[0] for a in axes])
    out = np.zeros(shape)
    for _ in range(n):
        centre = rng.uniform(-0.3, 0.3, len(shape)) * extent
        width = rng.uniform(0.15, 0.3) * extent.mean()
        amplitude = rng.uniform(0.4, 1.0)
        r2 = sum((m - c - s) ** 2 for m, c, s in zip(mesh, centre, shift))
        out += amplitude * np.exp(-r2 / (2 * width**2))
    return scale * out


def _smooth_noise(shape, seed, sigma_vox):
    x = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma_vox, mode="wrap")
    return (x - x.min()) / (x.max() - x.min())


def _random_pair(shape, amplitude=0.2):
    """Random smooth reference and a perturbed copy (non-negative)."""
    ref = 0.2 + _smooth_noise(shape, 1, 2.5)
    ev = np.clip(ref + amplitude * (2 * _smooth_noise(shape, 2, 1.0) - 1), 0.0, None)
    return ref, ev


SHAPE_3D, SPACING_3D = (14, 16, 18), (2.5, 2.0, 2.0)
SHAPE_2D, SPACING_2D = (40, 44), (1.5, 2.0)

# name -> (reference, evaluated, spacing, dose %, distance mm); pass rates 60-95 %
CASES = {
    "3d-blobs": (
        _blobs(SHAPE_3D, SPACING_3D),
        _blobs(SHAPE_3D, SPACING_3D, shift_mm=(3.0, -2.0, 2.0), scale=1.05),
        SPACING_3D,
        3.0,
        3.0,
    ),
    "3d-random": (*_random_pair(SHAPE_3D), SPACING_3D, 2.0, 2.0),
    "2d-blobs": (
        _blobs(SHAPE_2D, SPACING_2D),
        _blobs(SHAPE_2D, SPACING_2D, shift_mm=(2.0, -1.5), scale=1.04),
        SPACING_2D,
        3.0,
        3.0,
    ),
    "2d-random": (*_random_pair(SHAPE_2D), SPACING_2D, 2.0, 1.0),
}


def _pymedphys_gamma(ref, ev, spacing, dose_percent, distance_mm, local, **kw):
    pymedphys = pytest.importorskip("pymedphys")
    axes = _axes(ref.shape, spacing)
    return pymedphys.gamma(
        axes,
        ref,
        axes,
        ev,
        dose_percent,
        distance_mm,
        lower_percent_dose_cutoff=kw.get("cutoff", 10),
        interp_fraction=10,
        max_gamma=2,
        local_gamma=local,
    )


def _pass_rate(g):
    valid = g[np.isfinite(g)]
    return 100.0 * np.mean(valid <= 1.0)


# ---------------------------------------------------------------------------------------------
# gamma: agreement with pymedphys


@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
@pytest.mark.parametrize("case", list(CASES))
def test_gamma_matches_pymedphys(case, local):
    ref, ev, spacing, dd, dta = CASES[case]
    expected = _pymedphys_gamma(ref, ev, spacing, dd, dta, local)
    out = pd.metrics.gamma(ref, ev, spacing, dose_percent=dd, distance_mm=dta, local=local)
    got = np.asarray(out.gamma)
    assert 50.0 < _pass_rate(expected) < 95.0  # the pairs test something
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) < 1e-4  # same samples: agreement to float32 rounding
    assert abs(float(out.pass_rate) - _pass_rate(expected)) < 0.5
    assert int(out.n_evaluated) == int(np.sum(np.isfinite(expected)))


def test_gamma_matches_pymedphys_in_float64():
    ref, ev, spacing, dd, dta = CASES["2d-blobs"]
    expected = _pymedphys_gamma(ref, ev, spacing, dd, dta, False, cutoff=20)
    with jax.enable_x64(True):
        out = pd.metrics.gamma(ref, ev, spacing, dose_percent=dd, distance_mm=dta, lower_percent_cutoff=20)
        assert out.gamma.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out.gamma), expected, atol=1e-9, equal_nan=True)
        assert float(out.pass_rate) == pytest.approx(_pass_rate(expected), abs=1e-9)


def test_gamma_matches_pymedphys_in_1d():
    x = np.arange(-30.0, 30.5, 1.0)
    ref = np.exp(-(x**2) / 300.0)
    ev = 1.03 * np.exp(-((x - 2.0) ** 2) / 300.0)
    expected = _pymedphys_gamma(ref, ev, (1.0,), 2.0, 2.0, False)
    out = pd.metrics.gamma(ref, ev, (1.0,), dose_percent=2.0, distance_mm=2.0)
    np.testing.assert_allclose(np.asarray(out.gamma), expected, atol=1e-4, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# gamma: closed forms


def test_identical_doses_give_zero_gamma():
    ref = CASES["3d-blobs"][0]
    out = pd.metrics.gamma(ref, ref, SPACING_3D)
    g = np.asarray(out.gamma)
    assert float(out.pass_rate) == 100.0
    assert np.all(g[np.isfinite(g)] == 0.0)


@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_scaled_uniform_dose_gives_p_over_dose_criterion(local):
    # every sample differs by p * D: gamma = p / (dose_percent / 100) at every point
    ref = np.full(SHAPE_3D, 2.0)
    out = pd.metrics.gamma(ref, 1.012 * ref, SPACING_3D, dose_percent=3.0, local=local)
    np.testing.assert_allclose(np.asarray(out.gamma), 0.4, rtol=1e-5)
    out = pd.metrics.gamma(ref, 1.045 * ref, SPACING_3D, dose_percent=3.0, local=local)
    np.testing.assert_allclose(np.asarray(out.gamma), 1.5, rtol=1e-5)
    assert float(out.pass_rate) == 0.0


def test_scaled_dose_gives_p_over_dose_criterion_at_the_maximum():
    # a peak on a grid point, scaled by 1 + p: at the maximum the best sample is the point itself, as long
    # as the peak is broad enough that the slope of the interpolated "tent" costs more than it saves
    y, x = np.meshgrid(*_axes(SHAPE_2D, SPACING_2D), indexing="ij")
    peak = (20, 22)
    ref = np.exp(-((y - y[peak]) ** 2 + (x - x[peak]) ** 2) / (2 * 60.0**2))
    out = pd.metrics.gamma(ref, 1.015 * ref, SPACING_2D, dose_percent=3.0)
    assert float(out.gamma[peak]) == pytest.approx(0.5, rel=1e-5)


def _sampled_ramp_gamma(a, d, dose_criterion, distance_mm=3.0):
    """Gamma of D(x) = c + a x against D(x - d), minimised over the search offsets (closed form per sample)."""
    best = np.inf
    for radius in _gamma.shell_distances(distance_mm, 10, 2.0):
        p = _gamma.shell_points(radius, 2, distance_mm / 10)
        best = min(best, np.min(np.sqrt((a * (p[:, 1] - d) / dose_criterion) ** 2 + (radius / distance_mm) ** 2)))
    return best


@pytest.mark.parametrize("dose_percent", [3.0, 0.01], ids=["shallow", "steep"])
def test_shifted_ramp_gives_the_closed_form(dose_percent):
    # D(x) = 1 + a x shifted by d along x: continuous gamma = d / sqrt(dta^2 + (dD / a)^2), which is d / dta
    # for a steep ramp (dD / a << dta); the search finds the best of its samples
    y, x = np.meshgrid(*_axes(SHAPE_2D, SPACING_2D), indexing="ij")
    a, d = 1.0 / 60.0, 1.5
    ref = 1.0 + a * x
    out = pd.metrics.gamma(ref, 1.0 + a * (x - d), SPACING_2D, dose_percent=dose_percent)
    interior = np.asarray(out.gamma)[4:-4, 4:-4]  # the samples within 6 mm stay on the grid
    dose_criterion = dose_percent / 100 * ref.max()
    continuous = d / math.sqrt(3.0**2 + (dose_criterion / a) ** 2)
    # float32 doses: a 0.01 % criterion magnifies their rounding
    rtol = 2e-5 if dose_percent > 1 else 1e-3
    np.testing.assert_allclose(interior, _sampled_ramp_gamma(a, d, dose_criterion), rtol=rtol)
    assert np.all(interior >= continuous * (1 - rtol))  # sampling can only overestimate the continuous minimum
    np.testing.assert_allclose(interior, continuous, rtol=0.06)
    if dose_percent < 1:
        assert continuous == pytest.approx(d / 3.0, rel=1e-3)


def test_gamma_is_capped_at_max_gamma():
    ref = np.ones(SHAPE_2D)
    out = pd.metrics.gamma(ref, 1.5 * ref, SPACING_2D)
    np.testing.assert_array_equal(np.asarray(out.gamma), 2.0)
    assert float(out.pass_rate) == 0.0


# ---------------------------------------------------------------------------------------------
# gamma: contract, cutoff, chunking, jit


def test_gamma_result_contract_and_cutoff():
    ref, ev, spacing, dd, dta = CASES["3d-blobs"]
    out = pd.metrics.gamma(ref, ev, spacing, lower_percent_cutoff=40.0)
    chex.assert_shape(out.gamma, SHAPE_3D)
    chex.assert_shape(out.evaluated, SHAPE_3D)
    evaluated = ref >= 0.4 * ref.max()
    np.testing.assert_array_equal(np.asarray(out.evaluated), evaluated)
    np.testing.assert_array_equal(np.isfinite(np.asarray(out.gamma)), evaluated)
    g = np.asarray(out.gamma)[evaluated]
    assert np.all((g >= 0) & (g <= 2.0))
    assert float(out.pass_rate) == pytest.approx(100.0 * np.mean(g <= 1.0), abs=1e-4)


def test_global_normalisation_changes_the_cutoff_and_the_criterion():
    ref, ev, spacing, dd, dta = CASES["2d-blobs"]
    base = pd.metrics.gamma(ref, ev, spacing)
    same = pd.metrics.gamma(ref, ev, spacing, normalisation_gy=float(ref.max()))
    np.testing.assert_array_equal(np.asarray(base.gamma), np.asarray(same.gamma))
    loose = pd.metrics.gamma(ref, ev, spacing, normalisation_gy=2.0 * float(ref.max()), lower_percent_cutoff=5.0)
    np.testing.assert_array_equal(np.asarray(loose.evaluated), np.asarray(base.evaluated))
    assert float(loose.pass_rate) > float(base.pass_rate)


def test_local_gamma_skips_zero_reference_points():
    ref = np.zeros(SHAPE_2D)
    ref[3:17, 5:27] = 1.0
    out = pd.metrics.gamma(ref, ref, SPACING_2D, local=True, lower_percent_cutoff=0.0)
    np.testing.assert_array_equal(np.asarray(out.evaluated), ref > 0)


def test_small_blocks_and_split_boxes_give_the_same_map(monkeypatch):
    ref, ev, spacing, dd, dta = CASES["3d-blobs"]
    base = pd.metrics.gamma(ref, ev, spacing)
    # big grids search with one box per group of bands; force that here, with blocks of 7 points
    assert ref.size < _gamma._SPLIT_MIN_POINTS
    assert len(_gamma._search_groups(spacing, dta, 10, 2.0, 8, True)) > 1
    monkeypatch.setattr(_gamma, "_SPLIT_MIN_POINTS", 0)
    other = pd.metrics.gamma(ref, ev, spacing, chunk_size=7)
    np.testing.assert_allclose(np.asarray(other.gamma), np.asarray(base.gamma), rtol=1e-6, equal_nan=True)


def test_gamma_under_jit_equals_the_direct_call():
    ref, ev, spacing, dd, dta = CASES["2d-blobs"]
    direct = pd.metrics.gamma(ref, ev, spacing)
    jitted = jax.jit(lambda r, e: pd.metrics.gamma(r, e, spacing))(jnp.asarray(ref), jnp.asarray(ev))
    np.testing.assert_array_equal(np.asarray(jitted.gamma), np.asarray(direct.gamma))
    assert float(jitted.pass_rate) == float(direct.pass_rate)


def test_gamma_on_an_odd_grid_is_finite():
    ref, ev = _random_pair((5, 33, 7), amplitude=0.1)
    out = pd.metrics.gamma(ref, ev, (3.0, 1.0, 2.0))
    chex.assert_tree_all_finite(out.gamma[np.asarray(out.evaluated)])


def test_shells_follow_pymedphys():
    pytest.importorskip("pymedphys")
    from pymedphys._utilities.createshells import calculate_coordinates_shell

    distances = _gamma.shell_distances(3.0, 10, 2.0)
    assert distances[0] == 0.0 and distances[-1] <= 6.0 and 3.0 in distances
    for ndim in (1, 2, 3):
        for d in distances[:: len(distances) // 5]:
            expected = np.stack(calculate_coordinates_shell(d, ndim, 0.3), axis=1)
            np.testing.assert_array_equal(_gamma.shell_points(d, ndim, 0.3), expected)


# ---------------------------------------------------------------------------------------------
# gamma: bad input


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(evaluated=np.ones((4, 5))), "shape"),
        (dict(spacing_mm=(1.0, 1.0, 1.0)), "spacing_mm"),
        (dict(spacing_mm=(1.0, 0.0)), "spacing_mm"),
        (dict(spacing_mm=(1.0, -2.0)), "spacing_mm"),
        (dict(spacing_mm=1.0), "spacing_mm"),
        (dict(reference=-np.ones((4, 4))), "reference.*non-negative"),
        (dict(evaluated=np.full((4, 4), np.nan)), "evaluated.*finite"),
        (dict(reference=np.zeros((4, 4))), "reference is zero everywhere"),
        (dict(reference=np.ones((2, 2, 2, 2)), evaluated=np.ones((2, 2, 2, 2)), spacing_mm=(1,) * 4), "1-, 2- or 3-D"),
        (dict(dose_percent=0.0), "dose_percent"),
        (dict(distance_mm=-1.0), "distance_mm"),
        (dict(max_gamma=0.5), "max_gamma"),
        (dict(lower_percent_cutoff=120.0), "lower_percent_cutoff"),
        (dict(interp_fraction=2.5), "interp_fraction"),
        (dict(normalisation_gy=0.0), "normalisation_gy"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_gamma_rejects_bad_input(change, match):
    args = dict(reference=np.ones((4, 4)), evaluated=np.ones((4, 4)), spacing_mm=(1.0, 1.0))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        pd.metrics.gamma(args.pop("reference"), args.pop("evaluated"), args.pop("spacing_mm"), **args)


# ---------------------------------------------------------------------------------------------
# Dose errors


def test_mae_rmse_and_relative_error_closed_forms():
    ref = np.array([[1.0, 2.0], [4.0, 0.0]])
    ev = np.array([[1.5, 1.0], [4.0, 0.3]])
    assert float(pd.metrics.mae(ref, ev)) == pytest.approx((0.5 + 1.0 + 0.0 + 0.3) / 4)
    assert float(pd.metrics.rmse(ref, ev)) == pytest.approx(math.sqrt((0.25 + 1.0 + 0.09) / 4))
    # the zero-dose voxel is left out of the relative error
    assert float(pd.metrics.relative_error(ref, ev)) == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_errors_inside_masks_and_above_thresholds():
    ref = np.array([1.0, 2.0, 4.0, 8.0])
    ev = np.array([2.0, 2.5, 4.0, 6.0])
    mask = np.array([True, True, False, True])
    assert float(pd.metrics.mae(ref, ev, mask=mask)) == pytest.approx((1.0 + 0.5 + 2.0) / 3)
    assert float(pd.metrics.mae(ref, ev, threshold_gy=2.0)) == pytest.approx((0.5 + 0.0 + 2.0) / 3)
    assert float(pd.metrics.mae(ref, ev, threshold_percent=50.0)) == pytest.approx((0.0 + 2.0) / 2)
    assert float(pd.metrics.rmse(ref, ev, mask=mask, threshold_gy=2.0)) == pytest.approx(math.sqrt((0.25 + 4) / 2))
    assert float(pd.metrics.relative_error(ref, ev, threshold_percent=25.0)) == pytest.approx((0.25 + 0 + 0.25) / 3)
    np.testing.assert_array_equal(
        np.asarray(pd.metrics.dose_region(ref, mask=mask, threshold_gy=2.0)), [False, True, False, True]
    )
    assert math.isnan(float(pd.metrics.mae(ref, ev, threshold_gy=100.0)))  # nothing selected


def test_errors_under_jit_equal_the_direct_call(getkey):
    ref = jax.random.uniform(getkey(), (6, 7, 8))
    ev = ref + 0.1 * jax.random.uniform(getkey(), (6, 7, 8))
    mask = ref > 0.3
    for f in (pd.metrics.mae, pd.metrics.rmse, pd.metrics.relative_error):
        direct = f(ref, ev, mask=mask, threshold_percent=20.0)
        jitted = jax.jit(lambda r, e, m, f=f: f(r, e, mask=m, threshold_percent=20.0))(ref, ev, mask)
        assert float(jitted) == pytest.approx(float(direct), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(evaluated=np.ones(3)), "shape"),
        (dict(reference=np.array([1.0, -1.0, 2.0, 1.0])), "reference.*non-negative"),
        (dict(evaluated=np.array([1.0, np.inf, 2.0, 1.0])), "evaluated.*finite"),
        (dict(mask=np.ones(4)), "mask.*boolean"),
        (dict(mask=np.ones(3, bool)), "mask.*shape"),
        (dict(threshold_gy=-1.0), "threshold_gy"),
        (dict(threshold_percent=float("nan")), "threshold_percent"),
    ],
)
def test_errors_reject_bad_input(kwargs, match):
    args = dict(reference=np.array([1.0, 2.0, 3.0, 4.0]), evaluated=np.array([1.0, 2.0, 3.0, 5.0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pd.metrics.mae(args.pop("reference"), args.pop("evaluated"), **args)


def test_relative_error_needs_a_nonzero_reference():
    with pytest.raises(ValueError, match="reference is zero everywhere"):
        pd.metrics.relative_error(np.zeros(3), np.ones(3))
    assert float(pd.metrics.mae(np.zeros(3), np.ones(3))) == 1.0


# ---------------------------------------------------------------------------------------------
# DVH


def test_dvh_of_a_uniform_dose():
    h = pd.metrics.dvh(np.full((4, 5, 6), 2.5), voxel_volume_mm3=8.0)
    assert float(h.total_volume_mm3) == 4 * 5 * 6 * 8.0
    np.testing.assert_allclose(np.asarray(h.dose_at_volume(jnp.array([0.0, 2.0, 50.0, 98.0, 100.0]))), 2.5)
    np.testing.assert_allclose(np.asarray(h.volume_at_dose(jnp.array([0.0, 2.5, 2.5001]))), [1.0, 1.0, 0.0])
    assert float(h.mean_gy) == pytest.approx(2.5)


def test_dvh_of_a_linear_ramp_has_closed_form_dx_and_vx():
    n, d_max = 1000, 40.0
    dose = (np.arange(n) + 0.5) / n * d_max  # uniform over [0, d_max]
    h = pd.metrics.dvh(np.random.default_rng(0).permutation(dose).reshape(10, 100))
    x = np.array([0.0, 2.0, 10.0, 30.0, 50.0, 95.0, 100.0])
    np.testing.assert_allclose(np.asarray(h.dose_at_volume(x)), d_max * (1 - x / 100), atol=d_max / n)
    doses = np.array([0.0, 4.0, 20.0, 39.0])
    np.testing.assert_allclose(np.asarray(h.volume_at_dose(doses)), 1 - doses / d_max, atol=1.0 / n)
    np.testing.assert_allclose(np.asarray(h.volume_at_percent([50.0, 100.0], prescription_gy=20.0)), [0.75, 0.5])
    assert float(h.mean_gy) == pytest.approx(d_max / 2, rel=1e-5)
    assert float(h.max_gy) == pytest.approx(dose.max())
    curve_dose, curve_volume = h.curve(50)
    chex.assert_shape((curve_dose, curve_volume), (50,))
    assert np.all(np.diff(np.asarray(curve_volume)) <= 0)


def test_dvh_counts_voxel_volumes_and_masks():
    dose = np.array([1.0, 2.0, 3.0, 9.0])
    volume = np.array([3.0, 1.0, 2.0, 5.0])
    mask = np.array([True, True, True, False])
    h = pd.metrics.dvh(dose, mask, voxel_volume_mm3=volume)
    assert float(h.total_volume_mm3) == 6.0
    assert float(h.max_gy) == 3.0
    assert float(h.volume_at_dose(2.0)) == pytest.approx(3.0 / 6.0)
    assert float(h.volume_at_dose(3.0)) == pytest.approx(2.0 / 6.0)
    assert float(h.dose_at_volume(30.0)) == 3.0  # the hottest 2 mm^3 are at 3 Gy
    assert float(h.dose_at_volume(50.0)) == 2.0
    assert float(h.dose_at_volume(51.0)) == 1.0
    assert float(h.mean_gy) == pytest.approx((3 * 1 + 1 * 2 + 2 * 3) / 6.0)


def test_dvh_under_jit_equals_the_direct_call(getkey):
    dose = jax.random.uniform(getkey(), (8, 9, 10), maxval=5.0)
    mask = dose > 1.0
    f = lambda d, m: pd.metrics.dvh(d, m, voxel_volume_mm3=2.0).dose_at_volume(jnp.array([5.0, 50.0]))  # noqa: E731
    np.testing.assert_array_equal(np.asarray(jax.jit(f)(dose, mask)), np.asarray(f(dose, mask)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dose=-np.ones(4)), "dose.*non-negative"),
        (dict(dose=np.array([1.0, np.nan, 1.0, 1.0])), "dose.*finite"),
        (dict(mask=np.zeros(4, bool)), "no voxel"),
        (dict(mask=np.ones(5, bool)), "mask.*shape"),
        (dict(voxel_volume_mm3=0.0), "voxel_volume_mm3"),
        (dict(voxel_volume_mm3=np.ones(3)), "voxel_volume_mm3"),
    ],
)
def test_dvh_rejects_bad_input(kwargs, match):
    args = dict(dose=np.ones(4), mask=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pd.metrics.dvh(args.pop("dose"), args.pop("mask"), **args)


def test_dvh_queries_reject_bad_values():
    h = pd.metrics.dvh(np.ones(4))
    with pytest.raises(ValueError, match="volume_percent"):
        h.dose_at_volume(120.0)
    with pytest.raises(ValueError, match="prescription_gy"):
        h.volume_at_percent(50.0, prescription_gy=0.0)


# ---------------------------------------------------------------------------------------------
# Calibration


def _normal_samples(getkey, n=200_000):
    return jax.random.normal(getkey(), (n,))


def test_coverage_of_standard_normal_samples_is_nominal(getkey):
    t = _normal_samples(getkey)
    zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
    tolerance = 4 * math.sqrt(0.25 / t.size)  # 4 binomial standard deviations
    for k in (1.0, 2.0, 3.0):
        nominal = math.erf(k / math.sqrt(2))
        assert float(pd.metrics.coverage(zeros, ones, t, k=k)) == pytest.approx(nominal, abs=tolerance)
    # an overconfident std covers less; adding the target's own noise restores it
    assert float(pd.metrics.coverage(zeros, 0.5 * ones, t)) == pytest.approx(math.erf(1 / math.sqrt(2)), abs=tolerance)
    restored = pd.metrics.coverage(zeros, 0.6 * ones, t, target_std=0.8 * ones)
    assert float(restored) == pytest.approx(math.erf(2 / math.sqrt(2)), abs=tolerance)


def test_gaussian_nll_of_standard_normal_samples(getkey):
    t = _normal_samples(getkey)
    zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
    assert float(pd.metrics.gaussian_nll(zeros, ones, t)) == pytest.approx(
        0.5 * math.log(2 * math.pi * math.e), abs=0.01
    )
    # the NLL is lowest at the true std
    nll = [float(pd.metrics.gaussian_nll(zeros, s * ones, t)) for s in (0.7, 1.0, 1.4)]
    assert nll[1] < nll[0] and nll[1] < nll[2]
    assert float(pd.metrics.gaussian_nll(jnp.zeros(2), jnp.full(2, 2.0), jnp.array([0.0, 2.0]))) == pytest.approx(
        0.5 * math.log(2 * math.pi * 4.0) + 0.25
    )


def test_reliability_curve_is_diagonal_when_calibrated(getkey):
    t = _normal_samples(getkey)
    zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
    curve = pd.metrics.reliability_curve(zeros, ones, t)
    chex.assert_shape((curve.expected, curve.observed), (19,))
    np.testing.assert_allclose(np.asarray(curve.observed), np.asarray(curve.expected), atol=0.01)
    assert float(curve.calibration_error) < 0.005
    over = pd.metrics.reliability_curve(zeros, 0.5 * ones, t, levels=[0.5, 0.9])
    assert np.all(np.asarray(over.observed) < np.asarray(over.expected) - 0.1)
    masked = pd.metrics.reliability_curve(zeros, ones, t, mask=t > 0, levels=[0.5])
    assert float(masked.observed[0]) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(std=np.ones(3)), "shape"),
        (dict(std=-np.ones(4)), "std.*non-negative"),
        (dict(target=np.full(4, np.nan)), "target.*finite"),
        (dict(mask=np.ones(4)), "mask"),
        (dict(target_std=-np.ones(4)), "target_std"),
    ],
)
def test_calibration_rejects_bad_input(kwargs, match):
    args = dict(mean=np.zeros(4), std=np.ones(4), target=np.zeros(4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pd.metrics.coverage(args.pop("mean"), args.pop("std"), args.pop("target"), **args)


def test_calibration_rejects_bad_options():
    with pytest.raises(ValueError, match="k must be"):
        pd.metrics.coverage(np.zeros(2), np.ones(2), np.zeros(2), k=0.0)
    with pytest.raises(ValueError, match="std must be positive"):
        pd.metrics.gaussian_nll(np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="levels"):
        pd.metrics.reliability_curve(np.zeros(2), np.ones(2), np.zeros(2), levels=[0.5, 1.0])
