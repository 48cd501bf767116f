"""Axis-aligned voxel grids in patient coordinates, ordered (z, y, x)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_triple


class Grid(eqx.Module):
    """Axis-aligned voxel grid. Every per-axis tuple is ordered (z, y, x).

    Patient coordinates (DICOM LPS stored as (z, y, x)): +x patient left, +y posterior,
    +z superior. `origin_mm` is the centre of voxel (0, 0, 0).

    Attributes:
        shape: number of voxels (z, y, x).
        spacing_mm: voxel size (mm).
        origin_mm: world position of the centre of voxel (0, 0, 0) (mm).

    Examples:
        >>> g = Grid((2, 3, 4), (2.0, 1.0, 1.0), (0.0, -1.0, -1.5))
        >>> g.to_world(jnp.array([1.0, 2.0, 3.0])).tolist()
        [2.0, 1.0, 1.5]
    """

    shape: tuple[int, int, int] = eqx.field(static=True, converter=lambda s: tuple(int(v) for v in s))
    spacing_mm: tuple[float, float, float] = eqx.field(static=True, converter=lambda s: check_triple("spacing_mm", s))
    origin_mm: tuple[float, float, float] = eqx.field(
        static=True, default=(0.0, 0.0, 0.0), converter=lambda s: check_triple("origin_mm", s)
    )

    def __check_init__(self):
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be three positive voxel counts (z, y, x), got {self.shape}")
        if min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")

    @classmethod
    def centered(cls, shape, spacing_mm, center_mm=(0.0, 0.0, 0.0)) -> "Grid":
        """Grid of `shape` and `spacing_mm` whose centre lies at `center_mm`."""
        shape = tuple(int(s) for s in shape)
        spacing = check_triple("spacing_mm", spacing_mm)
        center = check_triple("center_mm", center_mm)
        origin = tuple(c - (n - 1) / 2 * d for c, n, d in zip(center, shape, spacing))
        return cls(shape, spacing, origin)

    @property
    def size_mm(self) -> tuple[float, float, float]:
        """Extent of the grid from outer face to outer face (mm)."""
        return tuple(n * d for n, d in zip(self.shape, self.spacing_mm))

    @property
    def center_mm(self) -> tuple[float, float, float]:
        """World position of the grid centre (mm)."""
        return tuple(o + (n - 1) / 2 * d for o, n, d in zip(self.origin_mm, self.shape, self.spacing_mm))

    @property
    def bounds_mm(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(lower, upper) corners of the outer voxel faces (mm)."""
        lo = tuple(o - d / 2 for o, d in zip(self.origin_mm, self.spacing_mm))
        hi = tuple(a + s for a, s in zip(lo, self.size_mm))
        return lo, hi

    @property
    def voxel_volume_mm3(self) -> float:
        return math.prod(self.spacing_mm)

    @property
    def num_voxels(self) -> int:
        return math.prod(self.shape)

    def to_index(self, p_mm: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b 3"]:
        """Continuous voxel index (z, y, x) of world points `p_mm`; voxel centres are integers."""
        p = jnp.asarray(p_mm)
        return (p - _per_axis(self.origin_mm, p)) / _per_axis(self.spacing_mm, p)

    def to_world(self, index: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b 3"]:
        """World position (mm) of continuous voxel indices `index`."""
        i = jnp.asarray(index, dtype=jnp.result_type(float))
        return _per_axis(self.origin_mm, i) + i * _per_axis(self.spacing_mm, i)

    def axes_mm(self) -> tuple[Float[Array, " z"], Float[Array, " y"], Float[Array, " x"]]:
        """Voxel-centre coordinates along each axis (mm)."""
        return tuple(o + d * jnp.arange(n) for o, d, n in zip(self.origin_mm, self.spacing_mm, self.shape))

    def voxel_centers_mm(self) -> Float[Array, "z y x 3"]:
        """World positions of all voxel centres (mm)."""
        return jnp.stack(jnp.meshgrid(*self.axes_mm(), indexing="ij"), axis=-1)

    def contains(self, p_mm: Float[ArrayLike, "*b 3"]) -> Float[Array, "*b"]:
        """Whether world points lie inside the grid's outer faces."""
        lo, hi = self.bounds_mm
        p = jnp.asarray(p_mm)
        return jnp.all((p >= _per_axis(lo, p)) & (p <= _per_axis(hi, p)), axis=-1)

    def crop(self, start, stop) -> "Grid":
        """Sub-grid of voxels start <= index < stop (per axis, (z, y, x))."""
        start, stop = _check_window(self.shape, start, stop)
        shape = tuple(b - a for a, b in zip(start, stop))
        return Grid(shape, self.spacing_mm, tuple(self.to_world(jnp.asarray(start, float)).tolist()))

    def pad(self, widths) -> "Grid":
        """Grid grown by `widths` = ((before, after) per axis) voxels."""
        widths = _check_widths(widths)
        shape = tuple(n + a + b for n, (a, b) in zip(self.shape, widths))
        origin = tuple(o - a * d for o, (a, _), d in zip(self.origin_mm, widths, self.spacing_mm))
        return Grid(shape, self.spacing_mm, origin)

    def with_spacing(self, spacing_mm) -> "Grid":
        """Grid covering (at least) the same extent with voxel size `spacing_mm` (a number or a
        (z, y, x) triple), same centre."""
        if isinstance(spacing_mm, int | float):
            spacing_mm = (spacing_mm,) * 3
        spacing = check_triple("spacing_mm", spacing_mm)
        if min(spacing) <= 0:
            raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
        shape = tuple(max(1, round(s / d)) for s, d in zip(self.size_mm, spacing))
        return Grid.centered(shape, spacing, self.center_mm)


def _per_axis(values, like: Array) -> Array:
    """A (z, y, x) triple shaped to broadcast against points `like` of shape (*b, 3)."""
    return jnp.asarray(values, like.dtype).reshape((1,) * (like.ndim - 1) + (3,))


def _check_window(shape, start, stop):
    start, stop = tuple(int(v) for v in start), tuple(int(v) for v in stop)
    if len(start) != 3 or len(stop) != 3 or any(not 0 <= a < b <= n for a, b, n in zip(start, stop, shape)):
        raise ValueError(f"crop window start={start}, stop={stop} must satisfy 0 <= start < stop <= shape={shape}")
    return start, stop


def _check_widths(widths):
    widths = tuple((int(a), int(b)) for a, b in widths)
    if len(widths) != 3 or any(a < 0 or b < 0 for a, b in widths):
        raise ValueError(f"widths must be three non-negative (before, after) pairs, got {widths}")
    return widths


def _check_volume(volume, grid: Grid, name: str = "volume"):
    if tuple(volume.shape) != grid.shape:
        raise ValueError(f"{name} has shape {tuple(volume.shape)} but grid.shape is {grid.shape}")


def crop(volume: Float[ArrayLike, "z y x"], grid: Grid, start, stop) -> tuple[Array, Grid]:
    """Crop `volume` on `grid` to voxels start <= index < stop; returns (volume, grid)."""
    volume = jnp.asarray(volume)
    _check_volume(volume, grid)
    new = grid.crop(start, stop)
    s, e = _check_window(grid.shape, start, stop)
    return volume[s[0] : e[0], s[1] : e[1], s[2] : e[2]], new


def pad(volume: Float[ArrayLike, "z y x"], grid: Grid, widths, *, value=0) -> tuple[Array, Grid]:
    """Pad `volume` by `widths` voxels ((before, after) per axis) with `value`; returns (volume, grid)."""
    volume = jnp.asarray(volume)
    _check_volume(volume, grid)
    new = grid.pad(widths)
    return jnp.pad(volume, _check_widths(widths), constant_values=value), new


def resample(
    volume: Float[ArrayLike, "z y x"], grid: Grid, new_grid: Grid, *, nearest: bool = False, fill_value=0
) -> Array:
    """Resample `volume` from `grid` onto `new_grid` (point sampling at the new voxel centres).

    Trilinear interpolation for continuous quantities (densities, dose); `nearest=True`
    for labels and material ids (keeps the dtype). Points outside `grid` get `fill_value`.

    Args:
        volume: values on `grid`, shape grid.shape.
        grid: the grid of `volume`.
        new_grid: the target grid.

    Returns:
        Values on `new_grid`, shape new_grid.shape.
    """
    volume = jnp.asarray(volume)
    _check_volume(volume, grid)
    idx = grid.to_index(new_grid.voxel_centers_mm())
    coords = tuple(jnp.moveaxis(idx, -1, 0))
    if nearest:
        rounded = tuple(jnp.round(c).astype(jnp.int32) for c in coords)
        inside = jnp.all(jnp.stack([(r >= 0) & (r < n) for r, n in zip(rounded, grid.shape)]), axis=0)
        clipped = tuple(jnp.clip(r, 0, n - 1) for r, n in zip(rounded, grid.shape))
        return jnp.where(inside, volume[clipped], jnp.asarray(fill_value, volume.dtype))
    values = volume.astype(jnp.result_type(volume.dtype, float))
    return jax.scipy.ndimage.map_coordinates(values, coords, order=1, mode="constant", cval=fill_value)
