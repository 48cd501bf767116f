"""Voxel phantoms: synthetic patients, the physician and IR room, reference phantoms."""

from ._phantom import Phantom as Phantom
