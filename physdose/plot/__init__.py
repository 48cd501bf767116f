"""Pictures (matplotlib, saved as PNG)."""

from ._spectrum import spectra as spectra
