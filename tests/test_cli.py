import pytest

from physdose.cli import main


def test_demo_prints_a_summary_and_saves_pictures(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "HVL1Al" in out and "CT scan" in out and "C-arm" in out and "Synthetic patient" in out
    expected = {"spectra.png", "synthetic_patient.png", "ir_room.png"}
    assert {p.name for p in tmp_path.iterdir()} == expected  # no temporary files left
    for name in expected:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrum_command_reports_the_requested_hvl(capsys):
    assert main(["spectrum", "--kvp", "100", "--hvl", "4.0"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert float(row[3]) == pytest.approx(4.0, abs=0.01)  # "100 kVp W <HVL1Al> ..."


def test_materials_command_lists_and_shows(capsys):
    assert main(["materials"]) == 0
    assert "cortical_bone" in capsys.readouterr().out
    assert main(["materials", "water", "--energies", "60"]) == 0
    assert "0.2059" in capsys.readouterr().out  # NIST mu/rho of water at 60 keV


def test_bad_input_gives_a_clear_error_and_exit_code_2(capsys):
    assert main(["spectrum", "--kvp", "300"]) == 2
    assert "kvp" in capsys.readouterr().err
    assert main(["spectrum", "--kvp", "80", "--filter", "Al2"]) == 2
    assert "--filter" in capsys.readouterr().err
    assert main(["materials", "kryptonite"]) == 2
    assert "kryptonite" in capsys.readouterr().err


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("demo", "spectrum", "materials"))
