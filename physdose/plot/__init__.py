"""Pictures (matplotlib, saved as PNG)."""

from ._dose import dose_profiles as dose_profiles, dvh_curves as dvh_curves, gamma_map as gamma_map
from ._slices import slices as slices
from ._spectrum import spectra as spectra
