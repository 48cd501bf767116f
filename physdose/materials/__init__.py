"""Materials, photon cross sections and CT number (HU) calibration."""

from ._hu import HUCalibration as HUCalibration
from ._material import Material as Material, get as get, mix as mix, names as names
from ._table import MaterialTable as MaterialTable
from ._xraylib import ENERGY_NODES_KEV as ENERGY_NODES_KEV, cache_dir as cache_dir
