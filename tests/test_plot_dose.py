import numpy as np
import pytest

import physdose as pd
from physdose.plot import dose_profiles, dvh_curves, gamma_map
from physdose.plot._dose import _dvh_figure, _gamma_figure, _profile_figure, _step_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPE, SPACING = (10, 12, 14), (3.0, 2.0, 2.0)


def _dose(shift_mm=0.0, scale=1.0):
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(SHAPE, SPACING)], indexing="ij")
    return scale * np.exp(-(z**2 + y**2 + (x - shift_mm) ** 2) / (2 * 8.0**2))


def _gamma_result():
    return pd.metrics.gamma(_dose(), _dose(shift_mm=2.0, scale=1.04), SPACING)


def _assert_png(path, out):
    assert out == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5_000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically: no temporary left


# ---------------------------------------------------------------------------------------------
# DVH curves


def test_dvh_curves_write_a_png(tmp_path):
    dose = _dose()
    hot = dose > 0.5
    dvhs = {"hot": pd.metrics.dvh(dose, hot), "all": pd.metrics.dvh(dose)}
    path = tmp_path / "out" / "dvh.png"
    _assert_png(path, dvh_curves(dvhs, path, compare={"hot": pd.metrics.dvh(1.05 * dose, hot)}, title="t"))


def test_dvh_figure_draws_solid_and_dashed_curves():
    dose = _dose()
    dvhs = {"a": pd.metrics.dvh(dose, dose > 0.5), "b": pd.metrics.dvh(dose)}
    fig, summary = _dvh_figure(dvhs, compare={"a": pd.metrics.dvh(0.9 * dose, dose > 0.5)})
    assert summary["solid"] == ["a", "b"] and summary["dashed"] == ["a"]
    lines = summary["axes"].get_lines()
    assert len(lines) == 3
    assert [t.get_text() for t in summary["axes"].get_legend().get_texts()] == ["a", "b"]
    assert summary["axes"].get_ylabel() == "volume (%)"
    # every curve starts at 100 % and ends at 0 %
    for line in lines:
        y = line.get_ydata()
        assert y[0] == pytest.approx(100.0) and y[-1] == pytest.approx(0.0) and np.all(np.diff(y) <= 1e-9)


def test_dvh_step_curve_is_exact():
    h = pd.metrics.dvh(np.array([1.0, 2.0, 2.0, 4.0]))
    x, y = _step_curve(h)
    # V(d) = 1 up to 1 Gy, 0.75 up to 2 Gy, 0.25 up to 4 Gy, then 0
    np.testing.assert_allclose(x, [0, 1, 1, 2, 2, 2, 2, 4, 4])
    np.testing.assert_allclose(y, [1, 1, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0])
    for d, v in ((0.5, 1.0), (1.5, 0.75), (3.0, 0.25)):
        assert float(h.volume_at_dose(d)) == pytest.approx(v)


def test_dvh_curves_reject_bad_input(tmp_path):
    h = pd.metrics.dvh(_dose())
    with pytest.raises(TypeError, match="DVH"):
        dvh_curves({"a": _dose()}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="compare"):
        dvh_curves({"a": h}, tmp_path / "x.png", compare={"b": h})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Gamma maps


def test_gamma_map_writes_a_png(tmp_path):
    path = tmp_path / "gamma.png"
    _assert_png(path, gamma_map(_gamma_result(), path, spacing_mm=SPACING, title="gamma 3 %/3 mm"))


def test_gamma_figure_shows_three_views_and_the_pass_rate():
    result = _gamma_result()
    fig, summary = _gamma_figure(result, spacing_mm=SPACING, origin_mm=(-15.0, -12.0, -14.0), point_index=(1, 6, 7))
    assert set(summary["axes"]) == {"axial", "coronal", "sagittal"}
    assert summary["pass_rate"] == pytest.approx(float(result.pass_rate), abs=1e-3)
    assert summary["n_evaluated"] == int(result.n_evaluated)
    assert f"{float(result.pass_rate):.1f} %" in summary["histogram"].get_title()
    axial = summary["axes"]["axial"]
    left, right = axial.get_xlim()
    assert right - left == pytest.approx(SHAPE[2] * SPACING[2])
    assert left == pytest.approx(-14.0 - SPACING[2] / 2)
    # not-evaluated points are masked (drawn as the grey background)
    mask = np.ma.getmaskarray(summary["image"]["axial"].get_array())
    expected = np.isnan(np.asarray(result.gamma)[1])
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(mask, expected)


def test_gamma_figure_of_a_2d_map():
    g = np.full((6, 8), np.nan)
    g[1:5, 2:7] = np.linspace(0.0, 1.8, 20).reshape(4, 5)
    _, summary = _gamma_figure(g, spacing_mm=(1.0, 2.0))
    assert set(summary["axes"]) == {"map"}
    assert summary["n_evaluated"] == 20
    assert summary["pass_rate"] == pytest.approx(100.0 * np.mean(g[1:5, 2:7] <= 1.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(result=np.full((4, 4), np.nan)), "no evaluated point"),
        (dict(result=np.zeros(4)), "2- or 3-D"),
        (dict(spacing_mm=(1.0,)), "spacing_mm"),
        (dict(spacing_mm=(1.0, -1.0)), "spacing_mm"),
        (dict(origin_mm=(0.0, np.nan)), "origin_mm"),
    ],
)
def test_gamma_map_rejects_bad_input(tmp_path, kwargs, match):
    args = dict(result=np.zeros((4, 4)), spacing_mm=(1.0, 1.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gamma_map(args.pop("result"), tmp_path / "g.png", **args)


def test_gamma_map_rejects_a_point_outside(tmp_path):
    with pytest.raises(ValueError, match="point_index"):
        gamma_map(_gamma_result(), tmp_path / "g.png", spacing_mm=SPACING, point_index=(0, 0, 99))


# ---------------------------------------------------------------------------------------------
# Dose profiles


def test_dose_profiles_write_a_png(tmp_path):
    path = tmp_path / "profile.png"
    out = dose_profiles(
        {"reference": _dose(), "evaluated": _dose(2.0, 1.04)},
        path,
        spacing_mm=SPACING,
        std_gy={"evaluated": 0.02 * _dose()},
        title="profiles",
    )
    _assert_png(path, out)


def test_profile_figure_draws_the_dose_along_the_axis():
    ref, ev = _dose(), _dose(2.0, 1.04)
    _, summary = _profile_figure(
        {"reference": ref, "evaluated": ev},
        spacing_mm=SPACING,
        axis=2,
        origin_mm=(0.0, 0.0, -13.0),
        point_index=(4, 5, 0),
        std_gy={"reference": 0.1 * ref},
    )
    x, y = summary["lines"]["evaluated"]
    np.testing.assert_allclose(x, -13.0 + 2.0 * np.arange(SHAPE[2]))
    np.testing.assert_allclose(y, ev[4, 5, :])
    assert summary["bands"] == ["reference"]
    assert summary["axes"].get_xlabel() == "x (mm)"
    _, summary = _profile_figure(ref, spacing_mm=SPACING, axis=0)
    x, y = summary["lines"]["dose"]
    np.testing.assert_allclose(y, ref[:, 6, 7])
    assert summary["axes"].get_xlabel() == "z (mm)"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(doses={"a": np.ones(SHAPE), "b": np.ones((2, 2, 2))}), "shape"),
        (dict(doses={"a": np.full(SHAPE, np.inf)}), "finite"),
        (dict(axis=3), "axis"),
        (dict(spacing_mm=(1.0, 1.0)), "spacing_mm"),
        (dict(std_gy={"c": np.ones(SHAPE)}), "std_gy"),
        (dict(point_index=(0, 0)), "point_index"),
        (dict(doses={}), "empty"),
    ],
)
def test_dose_profiles_reject_bad_input(tmp_path, kwargs, match):
    args = dict(doses={"a": np.ones(SHAPE)}, spacing_mm=SPACING)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dose_profiles(args.pop("doses"), tmp_path / "p.png", **args)
    assert list(tmp_path.iterdir()) == []
