"""physdose: fast, differentiable X-ray dose estimation for patients and staff, in JAX."""

from . import (
    dosimetry as dosimetry,
    geometry as geometry,
    io as io,
    materials as materials,
    mc as mc,
    metrics as metrics,
    phantoms as phantoms,
    plot as plot,
    prior as prior,
    sources as sources,
    spectra as spectra,
    units as units,
)
from .geometry._grid import Grid as Grid
from .phantoms._phantom import Phantom as Phantom
from .spectra._spectrum import Spectrum as Spectrum

__version__ = "0.1.0"
