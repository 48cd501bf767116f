"""The source interface."""

import abc

import equinox as eqx

from ..spectra._spectrum import Spectrum
from ._beam import Beam


class AbstractSource(eqx.Module):
    """An X-ray source. Every source reduces to one `Beam`, read by the MC and by the prior."""

    spectrum: eqx.AbstractVar[Spectrum]

    @abc.abstractmethod
    def beam(self) -> Beam:
        """The emission description of this source."""


def check_spectrum(spectrum) -> None:
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a physdose.Spectrum, got {type(spectrum).__name__}")
