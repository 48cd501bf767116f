"""Voxel phantoms: synthetic patients, the physician and IR room, reference phantoms."""

from ._phantom import Phantom as Phantom
from ._physician import physician as physician
from ._reference import (
    CTDI_HOLES as CTDI_HOLES,
    TG195_CASE5_MATERIALS as TG195_CASE5_MATERIALS,
    ctdi as ctdi,
    icru_slab as icru_slab,
    icru_sphere as icru_sphere,
    tg195_case2_box as tg195_case2_box,
    tg195_case4_cylinder as tg195_case4_cylinder,
    tg195_case5 as tg195_case5,
    water_cylinder as water_cylinder,
)
from ._room import ir_room as ir_room
from ._synthetic import PatientDistribution as PatientDistribution, synthetic_patient as synthetic_patient
