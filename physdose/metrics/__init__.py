"""Dose-comparison metrics: gamma index, dose errors, dose-volume histograms, uncertainty calibration."""

from ._calibration import (
    ReliabilityCurve as ReliabilityCurve,
    coverage as coverage,
    gaussian_nll as gaussian_nll,
    reliability_curve as reliability_curve,
)
from ._dvh import DVH as DVH, dvh as dvh
from ._errors import dose_region as dose_region, mae as mae, relative_error as relative_error, rmse as rmse
from ._gamma import GammaResult as GammaResult, gamma as gamma
