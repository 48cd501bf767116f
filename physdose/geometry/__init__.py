"""Voxel grids, world/index transforms, resampling, cropping and padding."""

from ._grid import Grid as Grid, crop as crop, pad as pad, resample as resample
