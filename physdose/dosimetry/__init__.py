"""Dosimetry quantities from any 3D dose: organ and effective dose, Hp(d), CTDIvol, DLP, SSDE."""

from ._ct import (
    CTDI as CTDI,
    SSDE_FIT as SSDE_FIT,
    chamber_cells as chamber_cells,
    ctdi_vol as ctdi_vol,
    dlp as dlp,
    ssde as ssde,
    ssde_conversion_factor as ssde_conversion_factor,
    water_equivalent_diameter as water_equivalent_diameter,
)
from ._effective import (
    DLP_K_FACTORS_MSV_PER_MGY_CM as DLP_K_FACTORS_MSV_PER_MGY_CM,
    ORGAN_ALIASES as ORGAN_ALIASES,
    REMAINDER_TISSUES as REMAINDER_TISSUES,
    TISSUE_WEIGHTS as TISSUE_WEIGHTS,
    EffectiveDose as EffectiveDose,
    dlp_to_effective_dose as dlp_to_effective_dose,
    effective_dose as effective_dose,
)
from ._hp import (
    QUANTITIES as QUANTITIES,
    PersonalDose as PersonalDose,
    SiteAirKerma as SiteAirKerma,
    air_kerma as air_kerma,
    conversion_coefficient as conversion_coefficient,
    hp as hp,
    hp_from_air_kerma as hp_from_air_kerma,
)
from ._organ import OrganDoses as OrganDoses, organ_doses as organ_doses
