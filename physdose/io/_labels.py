"""Organ label maps (NIfTI) -> integer label volumes and organ names."""

import json
import os
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from ..geometry._grid import Grid
from ._nifti import is_nifti, read_nifti
from ._orient import check_same_grid
from ._paths import existing_path

_INT32_MAX = np.iinfo(np.int32).max


def _sidecar(path: Path) -> Path | None:
    """`<stem>.json` (stem without .nii/.nii.gz), else `<file name>.json`, if present."""
    name = path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    for candidate in (path.with_name(stem + ".json"), path.with_name(name + ".json")):
        if candidate.is_file():
            return candidate
    return None


def _as_label(value, source: str) -> int:
    try:
        label = int(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source} maps to or from {value!r}, which is not an integer label") from err
    if isinstance(value, float) and value != label:
        raise ValueError(f"{source} holds label {value!r}, which is not an integer")
    if not 0 <= label <= _INT32_MAX:
        raise ValueError(f"{source} holds label {label}, which must lie in 0..{_INT32_MAX}")
    return label


def _organs_from_mapping(mapping, source: str) -> dict[str, int]:
    """name -> label from a mapping label -> name or name -> label (label 0 is dropped)."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{source} must be a mapping label -> name or name -> label, got {type(mapping).__name__}")
    items = list(mapping.items())
    if all(isinstance(v, str) for _, v in items):  # label -> name (JSON keys are strings)
        pairs = [(v, _as_label(k, source)) for k, v in items]
    elif all(isinstance(k, str) for k, _ in items) and all(not isinstance(v, str | bool) for _, v in items):
        pairs = [(k, _as_label(v, source)) for k, v in items]
    else:
        raise ValueError(f"{source} must map labels to names or names to labels, got {dict(mapping)!r}")
    organs = {}
    for name, label in pairs:
        if label == 0:
            continue  # background
        if not name:
            raise ValueError(f"{source} gives label {label} an empty name")
        if name in organs and organs[name] != label:
            raise ValueError(f"{source} gives name {name!r} two labels, {organs[name]} and {label}")
        organs[name] = label
    labels = list(organs.values())
    if len(set(labels)) != len(labels):
        raise ValueError(f"{source} gives one label several names: {organs}")
    return organs


def load_labels(
    path: str | os.PathLike, grid: Grid | None = None, *, names: Mapping | None = None
) -> tuple[Int[Array, "z y x"], dict[str, int]]:
    """Read an organ label map (NIfTI), checked against the grid of a CT when given.

    The label map is reordered into (z, y, x) LPS order exactly as `load_ct` reorders CT
    images; with `grid`, it is then checked to lie on it: same shape, and spacing and
    origin within 1e-3 mm. It is never resampled.

    Organ names come from `names`, else from a sidecar JSON file next to the label map
    (`organs.json` or `organs.nii.gz.json` for `organs.nii.gz`); both map label -> name
    (``{"1": "liver"}``) or name -> label (``{"liver": 1}``). Label 0 is background.
    Labels present in the volume without a name are called ``"label_<k>"``.

    Args:
        path: a .nii/.nii.gz file holding non-negative integer labels.
        grid: the grid the labels must lie on (e.g. `load_ct(...).grid`); None skips the check.
        names: optional mapping label -> name or name -> label.

    Returns:
        (labels, organs): int32 labels of shape grid.shape (z, y, x), and organ
        name -> label for every non-zero label, sorted by label.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the label map is not on `grid` (naming the mismatched shape,
            spacing or origin), holds non-integer or negative values, its names are
            inconsistent, or `path` is not NIfTI (DICOM-SEG and RTSTRUCT are not supported).
        TypeError: if `grid` is not a Grid or `names` is not a mapping.
        ImportError: if nibabel is missing (pip install "physdose[io]").
    """
    path = existing_path("path", path)
    if grid is not None and not isinstance(grid, Grid):
        raise TypeError(f"grid must be a physdose.Grid or None, got {type(grid).__name__}")
    if not is_nifti(path):
        raise ValueError(
            f"path {str(path)!r} must be a NIfTI label map (.nii or .nii.gz); DICOM-SEG and RTSTRUCT are "
            "not supported, convert them to a NIfTI label map on the CT grid first"
        )
    volume, found = read_nifti(path, labels=True)
    if grid is not None:
        check_same_grid(found, grid, what=f"label map {str(path)!r}")
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"label map {str(path)!r} must hold integer labels, got dtype {volume.dtype}")
    if volume.dtype.kind == "f" and (not np.all(np.isfinite(volume)) or np.any(volume != np.round(volume))):
        raise ValueError(f"label map {str(path)!r} holds non-integer values; labels must be integers")
    if volume.size and (volume.min() < 0 or volume.max() > _INT32_MAX):
        raise ValueError(
            f"label map {str(path)!r} holds labels {volume.min()}..{volume.max()}; they must lie in 0..{_INT32_MAX}"
        )
    labels = volume.astype(np.int32)

    if names is not None:
        organs = _organs_from_mapping(names, "names")
    elif (sidecar := _sidecar(path)) is not None:
        try:
            mapping = json.loads(sidecar.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"organ-name file {str(sidecar)!r} is not valid JSON: {err}") from err
        organs = _organs_from_mapping(mapping, f"organ-name file {str(sidecar)!r}")
    else:
        organs = {}
    named = set(organs.values())
    for k in np.unique(labels).tolist():
        if k != 0 and k not in named:
            if f"label_{k}" in organs:
                raise ValueError(f"label {k} has no name but 'label_{k}' already names label {organs[f'label_{k}']}")
            organs[f"label_{k}"] = k
    organs = dict(sorted(organs.items(), key=lambda item: item[1]))
    return jnp.asarray(labels), organs
