"""Path checks shared by the readers and writers."""

import os
from pathlib import Path


def as_path(name: str, value) -> Path:
    """`value` as a Path, or a TypeError naming the argument `name`."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}: {value!r}")
    return Path(value)


def existing_path(name: str, value) -> Path:
    """`value` as a Path that exists, or FileNotFoundError naming the argument `name`."""
    path = as_path(name, value)
    if not path.exists():
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist")
    return path
