"""Shared test helpers: reference data and tolerances."""

from pathlib import Path

import pandas as pd
import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
if not REFERENCE.exists():  # a checkout whose shared/ lies beside it under another name
    REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

RTOL = {"float32": 2e-3, "float64": 1e-5}


def reference(name: str) -> pd.DataFrame:
    """A published reference table from ../shared/reference (skips the test when absent)."""
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference data {path} not available")
    return pd.read_csv(path, comment="#")


def reference_text(name: str) -> str:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference data {path} not available")
    return path.read_text()
