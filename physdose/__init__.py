"""physdose: fast, differentiable X-ray dose estimation for patients and staff, in JAX."""

from . import (
    geometry as geometry,
    materials as materials,
    plot as plot,
    sources as sources,
    spectra as spectra,
    units as units,
)
from .geometry._grid import Grid as Grid
from .spectra._spectrum import Spectrum as Spectrum

__version__ = "0.1.0"
