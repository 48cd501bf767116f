"""The physics prior: fast, differentiable analytic dose (primary attenuation plus scatter), calibrated against MC."""

from ._calibrate import Prior as Prior, calibrate as calibrate, fit as fit
from ._model import PriorDose as PriorDose, PriorParams as PriorParams, Scene as Scene, dose as dose, prepare as prepare
