"""Pictures (matplotlib, saved as PNG)."""

from ._slices import slices as slices
from ._spectrum import spectra as spectra
