"""AAPM TG-195 at reduced statistics: tolerances are the issue's, widened by 3 of our sigma."""

import json

import jax
import numpy as np
import pytest

from physdose.cli import main
from physdose.validation import reference_table, tg195_spectrum
from physdose.validation._tg195 import _case2_source, case1, case2, case4, case5

from .helpers import REFERENCE


def _check(records, tolerance_percent, volumes=None):
    assert records
    for r in records:
        if volumes is not None and r["volume"] not in volumes:
            continue
        assert np.isfinite(r["reference_mean"]), r
        allowed = tolerance_percent + 300 * r["rel_sigma"]
        assert abs(r["diff_percent"]) <= allowed, r


def test_reference_table_is_complete_and_spectra_match_their_published_means():
    rows = reference_table()
    cases = {r["case"] for r in rows}
    assert {"Case 1 HVL", "Case 2", "Case 4.1", "Case 4.2", "Case 5"} <= cases
    hvl = [r for r in rows if r["case"] == "Case 1 HVL"]
    assert all(abs(r["reference_mean"] - (0.5 if r["volume"] == "HVL" else 0.25)) < 0.002 for r in hvl)
    assert float(tg195_spectrum("120 kVp").mean_energy_kev) == pytest.approx(56.4, rel=0.01)


def test_case1_hvl_and_qvl_ratios_within_1_percent():
    _check(case1(60_000, key=jax.random.key(1), spectra=("100 kVp",)), 1.0)  # 30 keV: the command's test


def test_case2_radiography_and_tomosynthesis_totals_within_2_percent():
    records = case2(150_000, key=jax.random.key(2), spectra=("56.4 keV",))
    _check(records, 2.0, volumes={"Total body"})
    _check(records, 2.0)  # the VOIs, with their (larger) statistical uncertainty


@pytest.mark.parametrize("mode", ["radiography", "tomosynthesis"])
def test_case2_field_covers_the_detector_from_1800_mm_above_the_imaging_plane(mode):
    """Both modes: the source 1800 mm from the imaging plane (y = 150 mm), its field exactly the
    390 mm detector there; tomosynthesis: the ray to the detector centre 15 deg off the normal."""
    beam = _case2_source(tg195_spectrum("56.4 keV"), mode).beam()
    focal = np.asarray(beam.focal_mm[0], np.float64)
    c, u, w = np.asarray(beam.axes[0], np.float64)
    assert 150.0 - focal[1] == pytest.approx(1800.0, rel=1e-6)  # float32 geometry
    tilt = np.degrees(np.arctan2(np.hypot(focal[0], focal[2]), 150.0 - focal[1]))
    assert tilt == pytest.approx(15.0 if mode == "tomosynthesis" else 0.0, abs=1e-5)
    centre, half = np.asarray(beam.aperture_center, np.float64), np.asarray(beam.tan_half, np.float64)
    corners = []
    for su in (-1, 1):
        for sw in (-1, 1):
            d = c + (centre[0] + su * half[0]) * u + (centre[1] + sw * half[1]) * w
            corners.append(focal + (150.0 - focal[1]) / d[1] * d)  # where the corner ray meets y = 150
    corners = np.asarray(corners)
    np.testing.assert_allclose(corners[:, 1], 150.0, atol=1e-6)
    np.testing.assert_allclose(np.sort(np.abs(corners[:, [0, 2]]).ravel()), 195.0, rtol=1e-5)


def test_case4_slices_within_2_percent():
    records = case4(
        150_000,
        key=jax.random.key(4),
        spectra=("56.4 keV",),
        collimations_mm=(10.0,),
        angles_deg=(0,),
        spacing_mm=(5.0, 4.0, 4.0),
    )
    _check([r for r in records if r["case"] == "Case 4.1"], 2.0)
    # the scoring cylinders are 2.5 voxels across here: mean dose x analytic mass, 5 % allowed
    _check([r for r in records if r["case"] == "Case 4.2" and r["volume"] == "0"], 5.0)


def test_case5_organs_within_3_percent_at_4_mm():
    path = REFERENCE / "tg195_case5_phantom.tar.gz"
    if not path.exists():
        pytest.skip("TG-195 Case 5 phantom not available")
    records = case5(
        150_000,
        key=jax.random.key(5),
        path=path,
        spectra=("56.4 keV",),
        angles_deg=(0,),
        continuous=False,
        spacing_mm=4.0,
    )
    # large organs; resampling to 4 mm moves thin ones (skin, small organs) by voxels
    _check(records, 3.0, volumes={"Soft tissue", "Heart", "Lung", "Liver", "Cortical Bone"})


def test_validate_command_writes_the_records_as_json(tmp_path, capsys):
    out = tmp_path / "tg195.json"
    argv = ["validate", "tg195", "--case", "1", "--spectrum", "30 keV", "--photons", "20000", "--out", str(out)]
    assert main(argv) == 0
    records = json.loads(out.read_text())
    keys = {"case", "volume", "spectrum", "mode", "value", "rel_sigma", "reference_mean", "diff_percent"}
    assert len(records) == 2 and all(set(r) == keys for r in records)
    assert {r["volume"] for r in records} == {"HVL", "QVL"}
    _check(records, 1.0)  # Case 1 at 30 keV: HVL and QVL ratios within 1 % (+3 sigma)
    assert "4-code mean" in capsys.readouterr().out
