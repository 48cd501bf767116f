"""Voxel phantoms: synthetic patients, the physician and IR room, reference phantoms."""

from ._phantom import Phantom as Phantom
from ._synthetic import PatientDistribution as PatientDistribution, synthetic_patient as synthetic_patient
