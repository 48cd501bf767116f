"""DICOM and NIfTI in and out: CT scans and label maps in, dose out (needs `physdose[io]`).

This is the only place where physdose reorders axes: files are read into (z, y, x)
patient coordinates (DICOM LPS: +x patient left, +y posterior, +z superior).
"""

from ._ct import load_ct as load_ct, load_hu as load_hu
from ._dose import load_dose as load_dose, save_dose as save_dose
from ._labels import load_labels as load_labels
