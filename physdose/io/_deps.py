"""Optional dependencies of `physdose.io`, imported on first use."""

_HINT = 'install the optional extra: pip install "physdose[io]"'


def import_pydicom():
    """The `pydicom` module (with its submodules loaded), or an ImportError naming the extra."""
    try:
        import pydicom
        import pydicom.dataset
        import pydicom.errors
        import pydicom.tag
        import pydicom.uid
        import pydicom.valuerep
    except ImportError as err:
        raise ImportError(f"reading and writing DICOM needs pydicom>=3.0; {_HINT}") from err
    return pydicom


def import_nibabel():
    """The `nibabel` module, or an ImportError naming the extra."""
    try:
        import nibabel
    except ImportError as err:
        raise ImportError(f"reading and writing NIfTI needs nibabel>=5.2; {_HINT}") from err
    return nibabel
