"""X-ray tube spectra, filtration, half-value layers and air kerma."""

from ._spectrum import BIN_CENTERS_KEV as BIN_CENTERS_KEV, Spectrum as Spectrum
