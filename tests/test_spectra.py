import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import physdose as pd
from physdose.units import CM2_PER_G_TO_MM2_PER_KG, KEV_TO_J

from .helpers import reference, reference_text


def _tg195_spectrum(tag):
    table = reference(f"tg195_spectrum_{tag}.csv")
    return pd.Spectrum.from_table(table.energy_keV.values, table.relative_fluence.values)


def _tg195_row(quality):
    hvl = reference("iec61267_rqr_hvl_lab_realisations.csv")
    return hvl[(hvl.source == "TG195") & hvl.quality.str.startswith(quality)].iloc[0]


@pytest.mark.parametrize(("tag", "quality"), [("100kVp_RQR8", "RQR-8"), ("120kVp_RQR9", "RQR-9")])
def test_tg195_spectra_first_hvl_within_2_percent(tag, quality):
    # The TG-195 tables list 0.5 keV bins; read as bin centres (as the reference file says)
    # HVLs come out 1.2 % (RQR-8) and 1.7 % (RQR-9) low.
    row = _tg195_row(quality)
    assert float(_tg195_spectrum(tag).hvl_mm("Al")) == pytest.approx(row.first_hvl_mm_al, rel=0.02)


def test_tg195_rqr8_qvl_and_rqr9_mean_energy():
    qvl = float(_tg195_spectrum("100kVp_RQR8").attenuation_thickness_mm("Al", 0.25))
    assert qvl == pytest.approx(_tg195_row("RQR-8").second_value, rel=0.02)
    assert float(_tg195_spectrum("120kVp_RQR9").mean_energy_kev) == pytest.approx(56.4, rel=0.01)


def test_monoenergetic_hvl_is_ln2_over_mu_and_matches_tg195_case1():
    al = pd.materials.get("Al")
    for e in (30.0, 60.0, 100.0):
        hvl = float(pd.Spectrum.monoenergetic(e).hvl_mm("Al"))
        assert hvl == pytest.approx(np.log(2) / float(al.mu_per_mm(e)), rel=1e-5)
        assert float(pd.Spectrum.monoenergetic(e).hvl_mm("Al", order=2)) == pytest.approx(hvl, rel=1e-4)
    # TG-195 Case 1 filter thicknesses (tg195_materials.csv header): HVL in cm Al
    note = reference_text("tg195_materials.csv")
    for e in (30, 100):
        cm = float(re.search(rf"{e} keV HVL ([0-9.]+)", note).group(1))
        assert float(pd.Spectrum.monoenergetic(e).hvl_mm("Al")) == pytest.approx(10 * cm, rel=0.01)


@pytest.mark.parametrize("kvp", [60.0, 90.0, 120.0])
def test_tube_hvl_agrees_with_spekpy(kvp):
    import spekpy

    ours = pd.Spectrum.from_tube(kvp, {"Al": 3.0}, 12.0)
    spek = spekpy.Spek(kvp=kvp, th=12.0)
    spek.filter("Al", 3.0)
    assert float(ours.hvl_mm("Al")) == pytest.approx(spek.get_hvl1(), rel=0.01)
    assert float(ours.mean_energy_kev) == pytest.approx(spek.get_emean(), rel=0.01)
    # tube output: SpekPy air kerma per mAs at 1 m (uGy/mAs)
    kerma_ugy = float(ours.air_kerma_per_fluence_gy_mm2 * ours.output_photons_per_mas_mm2) * 1e6
    assert kerma_ugy == pytest.approx(spek.get_kerma(), rel=0.02)


def test_from_tube_finds_the_aluminium_for_a_requested_hvl():
    s = pd.Spectrum.from_tube(100.0, anode_angle_deg=11.0, hvl_mm_al=3.95)
    assert float(s.hvl_mm("Al")) == pytest.approx(3.95, abs=2e-3)


def test_filtration_hardens_the_beam_and_lowers_the_output():
    s = pd.Spectrum.from_tube(80.0, {"Al": 2.5})
    h = s.filtered({"Cu": 0.2})
    assert float(h.hvl_mm("Al")) > float(s.hvl_mm("Al"))
    assert float(h.mean_energy_kev) > float(s.mean_energy_kev)
    assert float(h.output_photons_per_mas_mm2) < float(s.output_photons_per_mas_mm2)
    assert float(jnp.sum(h.fluence)) == pytest.approx(1.0, rel=1e-6)
    # filtering twice with t equals filtering once with 2t
    a = s.filtered({"Al": 1.0}).filtered({"Al": 1.0})
    b = s.filtered({"Al": 2.0})
    np.testing.assert_allclose(a.fluence, b.fluence, rtol=1e-4, atol=1e-9)


def test_air_kerma_per_fluence_closed_form():
    e = 60.0
    s = pd.Spectrum.monoenergetic(e)
    expected = e * KEV_TO_J * float(pd.materials.get("air").mu_en_cm2_g(e)) * CM2_PER_G_TO_MM2_PER_KG
    assert float(s.air_kerma_per_fluence_gy_mm2) == pytest.approx(expected, rel=1e-6)


def test_hvl_gradients_are_finite_and_positive_in_filtration():
    base = pd.Spectrum.from_tube(100.0, {"Al": 2.0})
    with jax.enable_x64(True):
        spectrum = pd.Spectrum(base.energy_kev.astype(jnp.float64), base.fluence.astype(jnp.float64))

        def hvl(t):
            return spectrum.filtered({"Al": t}).hvl_mm("Al")

        check_grads(hvl, (jnp.asarray(1.5),), order=1, modes=("rev",))
        assert float(jax.grad(hvl)(jnp.asarray(1.5))) > 0
        weights = jax.grad(lambda f: pd.Spectrum(spectrum.energy_kev, f).hvl_mm("Al"))(spectrum.fluence)
        assert np.all(np.isfinite(np.asarray(weights)))


def test_from_table_normalises_and_jits():
    s = pd.Spectrum.from_table([30.0, 60.0], [2.0, 6.0])
    np.testing.assert_allclose(s.fluence, [0.25, 0.75])
    assert float(jax.jit(lambda sp: sp.mean_energy_kev)(s)) == pytest.approx(52.5)


def test_bad_spectrum_inputs_raise_errors_naming_them():
    with pytest.raises(ValueError, match="kvp"):
        pd.Spectrum.from_tube(15.0)
    with pytest.raises(ValueError, match="kvp"):
        pd.Spectrum.from_tube(200.0)
    with pytest.raises(ValueError, match="filtration_mm.*Xq"):
        pd.Spectrum.from_tube(80.0, {"Xq": 1.0})
    with pytest.raises(ValueError, match="filtration_mm"):
        pd.Spectrum.from_tube(80.0, {"Al": -1.0})
    with pytest.raises(ValueError, match="target"):
        pd.Spectrum.from_tube(80.0, target="Cu")
    with pytest.raises(ValueError, match="hvl_mm_al"):
        pd.Spectrum.from_tube(80.0, hvl_mm_al=30.0)
    with pytest.raises(ValueError, match="energy_kev"):
        pd.Spectrum.monoenergetic(300.0)
    with pytest.raises(ValueError, match="fluence"):
        pd.Spectrum.from_table([30.0, 40.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="order"):
        pd.Spectrum.monoenergetic(50.0).hvl_mm("Al", order=3)
