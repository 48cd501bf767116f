"""Gamma index (Low et al. 1998) by the interpolated shell search of pymedphys.gamma.

The search is that of Wendling et al. 2007 (doi:10.1118/1.2721657) as pymedphys implements
it, sample for sample: the evaluated dose is interpolated linearly on spherical shells
(circles in 2-D) of growing radius around each reference point, shells
`distance_mm / interp_fraction` apart with points on a shell no further apart than that,
out to `distance_mm * max_gamma`. A point stops searching once the distance term alone
reaches its best gamma so far, which never changes the result.

Here the shells are merged into bands. Before each band the points still searching are
listed (`jnp.nonzero`), the list is processed in blocks of `chunk_size` points, and the
band's offsets in sub-blocks of a few offsets whose interpolation stencils read a small box
of evaluated dose gathered once per point and band. Work follows the pymedphys early stop;
memory is O(grid) plus O(chunk_size x box), whatever the grid size.
"""

import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import is_concrete
from ._checks import check_dose_pair, check_spacing

_OUTSIDE = 1.0e30  # dose given to padding voxels: a sample that touches one never wins the minimum
_SNAP = 1.0e-9  # fractional voxel offsets closer than this to an integer are taken as the integer
_MIN_BAND_OFFSETS = 256  # consecutive shells are merged into bands of at least this many offsets
_SPLIT_MIN_POINTS = 32768  # grids with fewer points search all bands with one box (compiles faster)
_CPU = {"chunk_size": 256, "sub_size": 8}  # points per block, offsets per (unrolled) sub-block
_ACCELERATOR = {"chunk_size": 32768, "sub_size": 32}


class GammaResult(eqx.Module):
    """Gamma index map and pass rate.

    Attributes:
        gamma: gamma index per reference point, shape of `reference`; NaN where the point
            was not evaluated (reference dose below the cutoff, or zero in local mode).
            Values are capped at `max_gamma`.
        pass_rate: percentage (0-100) of evaluated points with gamma <= 1; NaN if none was.
        evaluated: True where gamma was evaluated, shape of `reference`.
    """

    gamma: Float[Array, "*spatial"]
    pass_rate: Float[Array, ""]
    evaluated: Bool[Array, "*spatial"]

    @property
    def n_evaluated(self) -> Array:
        """Number of evaluated reference points."""
        return jnp.sum(self.evaluated)


def gamma(
    reference: Float[ArrayLike, "*spatial"],
    evaluated: Float[ArrayLike, "*spatial"],
    spacing_mm: Sequence[float],
    *,
    dose_percent: float = 3.0,
    distance_mm: float = 3.0,
    lower_percent_cutoff: float = 10.0,
    local: bool = False,
    max_gamma: float = 2.0,
    interp_fraction: int = 10,
    normalisation_gy: float | ArrayLike | None = None,
    chunk_size: int | None = None,
) -> GammaResult:
    """Gamma index of `evaluated` against `reference`, two doses on the same 1-, 2- or 3-D grid.

    Gamma at a reference point r is the minimum over the searched offsets p of
    sqrt((D_e(r + p) - D_r(r))^2 / dD^2 + |p|^2 / dta^2), with D_e interpolated linearly,
    dta = `distance_mm` and dD = `dose_percent` % of the normalisation: `normalisation_gy`
    (by default max(reference)) in global mode, D_r(r) in local mode. Offsets whose point
    lies outside the grid are skipped. The offsets are pymedphys's (module docstring), so
    the map equals, to float rounding,
    `pymedphys.gamma(axes, reference, axes, evaluated, dose_percent, distance_mm,
    lower_percent_dose_cutoff=lower_percent_cutoff, interp_fraction=interp_fraction,
    max_gamma=max_gamma, local_gamma=local, global_normalisation=normalisation_gy)`.

    Args:
        reference: reference dose, shape (z, y, x) (or (y, x), or (x,)), Gy.
        evaluated: evaluated dose on the same grid, same shape, Gy.
        spacing_mm: voxel spacing (mm), one per array axis, in array-axis order.
        dose_percent: dose-difference criterion (%).
        distance_mm: distance-to-agreement criterion (mm).
        lower_percent_cutoff: reference points with a dose below this percentage of the
            normalisation are not evaluated.
        local: normalise dose differences by the local reference dose (points with zero
            reference dose are then not evaluated) instead of `normalisation_gy`.
        max_gamma: the search stops at `distance_mm * max_gamma` and gamma is capped there;
            at least 1 so that pass/fail is decided.
        interp_fraction: samples lie `distance_mm / interp_fraction` apart.
        normalisation_gy: dose (Gy) the percentages refer to; max(reference) by default.
        chunk_size: reference points searched together (memory/speed trade-off; memory
            grows linearly with it); chosen per backend by default.

    Returns:
        GammaResult: the gamma map (NaN where not evaluated) and the pass rate (%, gamma <= 1).

    Raises:
        ValueError: the doses' shapes differ or are not 1-3 D, `spacing_mm` has the wrong
            length or is not positive, a dose is negative or not finite, the reference is
            zero everywhere, or a criterion is out of range.

    Examples:
        >>> import jax.numpy as jnp
        >>> import physdose as pd
        >>> x = jnp.linspace(-20.0, 20.0, 41)
        >>> ref = jnp.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 200.0)
        >>> out = pd.metrics.gamma(ref, 1.02 * ref, (1.0, 1.0))
        >>> float(out.pass_rate), out.gamma.shape
        (100.0, (41, 41))
    """
    ref, ev = check_dose_pair(reference, evaluated)
    if ref.ndim not in (1, 2, 3):
        raise ValueError(f"reference and evaluated must be 1-, 2- or 3-D, got shape {ref.shape}")
    spacing = check_spacing(spacing_mm, ref.ndim)
    dose_percent = _number("dose_percent", dose_percent, low=0.0)
    distance_mm = _number("distance_mm", distance_mm, low=0.0)
    max_gamma = _number("max_gamma", max_gamma, low=1.0, closed=True)
    lower_percent_cutoff = _number("lower_percent_cutoff", lower_percent_cutoff, low=0.0, closed=True, high=100.0)
    for name, value in (("interp_fraction", interp_fraction), ("chunk_size", chunk_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if normalisation_gy is None:
        norm = jnp.max(ref)
    else:
        norm = jnp.asarray(normalisation_gy, ref.dtype)
        if norm.shape != () or (is_concrete(norm) and not (np.isfinite(float(norm)) and float(norm) > 0)):
            raise ValueError(f"normalisation_gy must be a finite positive dose, got {normalisation_gy!r}")
    tuning = _CPU if jax.default_backend() == "cpu" else _ACCELERATOR
    # one box per group of similar bands saves gathering on big grids; one box compiles faster
    split = ref.size >= _SPLIT_MIN_POINTS
    groups = _search_groups(spacing, distance_mm, interp_fraction, max_gamma, tuning["sub_size"], split)
    return _gamma_jit(
        ref,
        ev,
        norm,
        jnp.asarray(dose_percent, ref.dtype),
        jnp.asarray(lower_percent_cutoff, ref.dtype),
        [group.arrays(ref.dtype) for group in groups],
        spacing=spacing,
        distance_mm=distance_mm,
        local=bool(local),
        max_gamma=max_gamma,
        interp_fraction=int(interp_fraction),
        chunk_size=int(chunk_size or tuning["chunk_size"]),
        sub_size=tuning["sub_size"],
        split=split,
    )


def _number(name, value, *, low, closed=False, high=None) -> float:
    """`value` as a finite float in (low, high] (or [low, high] when `closed`), or ValueError naming `name`."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    ok = math.isfinite(out) and not isinstance(value, bool) and (out >= low if closed else out > low)
    if not ok or (high is not None and out > high):
        bound = (
            f"{'[' if closed else '('}{low}, {high if high is not None else 'inf'}{']' if high is not None else ')'}"
        )
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")
    return out


@functools.partial(
    jax.jit,
    static_argnames=(
        "spacing",
        "distance_mm",
        "local",
        "max_gamma",
        "interp_fraction",
        "chunk_size",
        "sub_size",
        "split",
    ),
)
def _gamma_jit(
    ref,
    ev,
    norm,
    dose_percent,
    lower_percent_cutoff,
    tables,
    *,
    spacing,
    distance_mm,
    local,
    max_gamma,
    interp_fraction,
    chunk_size,
    sub_size,
    split,
) -> GammaResult:
    shape = ref.shape
    dtype = ref.dtype
    n_points = math.prod(shape)
    groups = _search_groups(spacing, distance_mm, interp_fraction, max_gamma, sub_size, split)

    # Reference points to evaluate, and the factor turning a dose difference into gamma units.
    mask = ref >= lower_percent_cutoff / 100.0 * norm
    if local:
        mask = mask & (ref > 0)
        scale = jnp.where(mask, 100.0 / (dose_percent * jnp.where(mask, ref, 1.0)), 0.0)
    else:
        scale = jnp.broadcast_to(100.0 / (dose_percent * norm), shape)
    scale = scale.astype(dtype).reshape(-1)
    mask_flat = mask.reshape(-1)
    ref_flat = ref.reshape(-1)

    # Squared gamma so far: shell 0 is the point itself.
    best2 = jnp.where(mask_flat, ((ev.reshape(-1) - ref_flat) * scale) ** 2, jnp.inf)

    if groups:
        # evaluated dose padded so that the box around every point lies inside
        pad = tuple(
            (max(0, -min(g.lo[a] for g in groups)), max(0, max(g.lo[a] + g.box_shape[a] - 1 for g in groups)))
            for a in range(len(shape))
        )
        ev_pad = jnp.pad(ev, pad, constant_values=_OUTSIDE)
        k = int(min(chunk_size, n_points))
        for group, arrays in zip(groups, tables):
            best2 = _search_group(group, arrays, best2, ev_pad, pad, ref_flat, scale, mask_flat, shape, k)

    g = jnp.minimum(jnp.sqrt(best2), max_gamma).reshape(shape)
    g = jnp.where(mask, g, jnp.nan).astype(dtype)
    n_eval = jnp.sum(mask)
    passed = jnp.sum(mask & (g <= 1.0))
    rate = jnp.where(n_eval > 0, 100.0 * passed / jnp.maximum(n_eval, 1), jnp.nan).astype(dtype)
    return GammaResult(gamma=g, pass_rate=rate, evaluated=mask)


def _search_group(group, arrays, best2, ev_pad, pad, ref_flat, scale, mask_flat, shape, k):
    """Run the bands of one group (one box shape) over the points that are still searching.

    `arrays` are the group's tables (`_Group.arrays`), passed as arguments rather than
    baked into the program as constants, which would slow compilation.
    """
    n_points = ref_flat.shape[0]
    corners, weights, dist2, band_first_d2, band_subs = arrays
    box_start = jnp.asarray([lo + p for lo, (p, _) in zip(group.lo, pad)], jnp.int32)
    n_per_sub, n_corners = group.weights.shape[1:]

    def coords(flat):
        out = []
        for axis in reversed(range(len(shape))):
            out.append(flat % shape[axis])
            flat = flat // shape[axis]
        return jnp.stack(out[::-1], axis=-1)  # (K, ndim)

    def block(i, carry):
        best2, b, points = carry
        idx = jax.lax.dynamic_slice(points, (i * k,), (k,))  # (K,) points of this block
        starts = coords(idx) + box_start[None, :]
        box = jax.vmap(lambda s: jax.lax.dynamic_slice(ev_pad, tuple(s), group.box_shape))(starts)
        box = box.reshape(k, -1).T  # (P, K): the evaluated dose around each point
        r = ref_flat[idx]
        s = scale[idx]

        def sub(j, acc):
            rows, w, d2 = corners[j], weights[j], dist2[j]
            for c in range(n_per_sub):
                v = sum(
                    w[c, q] * jax.lax.dynamic_index_in_dim(box, rows[c * n_corners + q], 0, keepdims=False)
                    for q in range(n_corners)
                )
                acc = jnp.minimum(acc, ((v - r) * s) ** 2 + d2[c])
            return acc

        acc = jax.lax.fori_loop(band_subs[b, 0], band_subs[b, 1], sub, best2[idx])
        return best2.at[idx].min(acc), b, points

    def band(b, best2):
        searching = mask_flat & (best2 > band_first_d2[b])
        count = jnp.sum(searching, dtype=jnp.int32)
        (points,) = jnp.nonzero(searching, size=n_points + k, fill_value=0)
        best2, _, _ = jax.lax.fori_loop(0, (count + k - 1) // k, block, (best2, b, points))
        return best2

    return jax.lax.fori_loop(0, len(group.band_subs), band, best2)


# ---------------------------------------------------------------------------------------------
# Static tables: the pymedphys shells, in voxel units, grouped in bands.


def shell_distances(distance_mm: float, interp_fraction: int, max_gamma: float) -> list[float]:
    """Radii (mm) of the search shells, exactly as pymedphys.gamma's loop visits them (one criterion)."""
    step = distance_mm / interp_fraction
    maximum = distance_mm * max_gamma
    forced = [distance_mm]
    distance = 0.0
    out = []
    while distance <= maximum:
        out.append(distance)
        distance += max(distance / interp_fraction / max_gamma, step)
        if forced and distance >= forced[0]:
            distance = forced.pop(0)
    return out


def shell_points(distance: float, ndim: int, step: float) -> np.ndarray:
    """Offsets (mm), shape (n, ndim), of the points of one shell, as pymedphys's `calculate_coordinates_shell`."""
    if ndim == 1:
        return np.array([[0.0]]) if distance == 0 else np.array([[distance], [-distance]])
    if ndim == 2:
        count = int(np.ceil(2 * np.pi * distance / step)) + 1
        theta = np.linspace(0, 2 * np.pi, count + 1)[:-1]
        return np.stack([distance * np.cos(theta), distance * np.sin(theta)], axis=1)
    rows = int(np.ceil(np.pi * distance / step)) + 1
    elevation = np.linspace(0, np.pi, rows)
    per_row = np.ceil(2 * np.pi * distance * np.sin(elevation) / step).astype(int) + 1
    points = []
    for phi, n in zip(elevation, per_row):
        azimuth = np.linspace(0, 2 * np.pi, n + 1)[:-1]
        points.append(
            np.stack(
                [
                    distance * np.sin(phi) * np.cos(azimuth),
                    distance * np.sin(phi) * np.sin(azimuth),
                    distance * np.cos(phi) * np.ones_like(azimuth),
                ],
                axis=1,
            )
        )
    return np.concatenate(points, axis=0)


def _stencils(offsets_vox: np.ndarray):
    """Linear-interpolation stencil of each offset (voxel units, (n, ndim)).

    Returns:
        (corner, weight): corner voxel offsets, int (n, 2^ndim, ndim), and weights (n, 2^ndim).
        Corner j takes floor + 1 along axis a when bit a of j (from the first axis) is set;
        along an axis where the offset is a whole number that corner is the floor itself,
        with weight 0, so that a point on the grid's last plane still counts as inside.
    """
    ndim = offsets_vox.shape[1]
    floor = np.floor(offsets_vox)
    frac = offsets_vox - floor
    up = frac > 1.0 - _SNAP
    floor[up] += 1.0
    frac[up] = 0.0
    frac[frac < _SNAP] = 0.0
    floor = floor.astype(np.int64)
    bits = np.array([[(j >> (ndim - 1 - a)) & 1 for a in range(ndim)] for j in range(2**ndim)])  # (2^ndim, ndim)
    step = bits[None] * (frac[:, None, :] > 0)
    corner = floor[:, None, :] + step
    weight = np.prod(np.where(bits[None] == 1, frac[:, None, :], 1.0 - frac[:, None, :]), axis=-1)
    return corner, weight


class _Group:
    """Consecutive bands of shells whose stencils fit one box of voxels around the reference point.

    The group's offsets come in sub-blocks of `sub_size` (padded with offsets of infinite
    distance); each band owns whole sub-blocks, given by `band_subs`, and is searched by the
    points whose squared gamma exceeds its `band_first_distance2`.
    """

    def __init__(self, bands, distance_mm, sub_size):
        stencils = [[_stencils(p) for _, p in band] for band in bands]
        all_corners = np.concatenate([c for band in stencils for c, _ in band])
        ndim = all_corners.shape[-1]
        self.lo = tuple(int(v) for v in all_corners.min(axis=(0, 1)))
        hi = all_corners.max(axis=(0, 1))
        self.box_shape = tuple(int(h - lo + 1) for lo, h in zip(self.lo, hi))
        box_strides = np.array([math.prod(self.box_shape[a + 1 :]) for a in range(ndim)])
        n_corners = 2**ndim
        rows, weights, dist2, subs, first = [], [], [], [], []
        n_subs = 0
        for band, band_stencils in zip(bands, stencils):
            c = np.concatenate([c for c, _ in band_stencils])
            w = np.concatenate([w for _, w in band_stencils])
            d2 = np.concatenate([np.full(len(p), (d / distance_mm) ** 2) for d, p in band])
            n = len(c)
            n_sub = -(-n // sub_size)
            pad = n_sub * sub_size - n
            rows.append(np.concatenate([((c - self.lo) * box_strides).sum(-1), np.zeros((pad, n_corners), np.int64)]))
            weights.append(np.concatenate([w, np.zeros((pad, n_corners))]))
            dist2.append(np.concatenate([d2, np.full(pad, np.inf)]))
            subs.append((n_subs, n_subs + n_sub))
            first.append((band[0][0] / distance_mm) ** 2)
            n_subs += n_sub
        self.corners = np.concatenate(rows).reshape(n_subs, sub_size * n_corners)
        self.weights = np.concatenate(weights).reshape(n_subs, sub_size, n_corners)
        self.distance2 = np.concatenate(dist2).reshape(n_subs, sub_size)
        self.band_subs = np.array(subs)
        self.band_first_distance2 = np.array(first)

    def arrays(self, dtype) -> tuple[np.ndarray, ...]:
        """The tables as NumPy arrays (jit turns them into arguments, not constants):
        corners (S, C * 2^ndim) rows of the box, int32; weights (S, C, 2^ndim); squared
        distance terms (S, C); squared distance term where each band starts (B,); sub-blocks
        of each band (B, 2), int32."""
        dtype = np.dtype(dtype)
        return (
            self.corners.astype(np.int32),
            self.weights.astype(dtype),
            self.distance2.astype(dtype),
            self.band_first_distance2.astype(dtype),
            self.band_subs.astype(np.int32),
        )


@functools.lru_cache(maxsize=32)
def _search_groups(spacing, distance_mm, interp_fraction, max_gamma, sub_size, split=True) -> list[_Group]:
    """The search after shell 0: shells merged into bands, bands into groups by box (one group unless `split`)."""
    ndim = len(spacing)
    step = distance_mm / interp_fraction
    bands, pending = [], []
    for d in shell_distances(distance_mm, interp_fraction, max_gamma)[1:]:  # shell 0 is done densely
        pending.append((d, shell_points(d, ndim, step) / np.asarray(spacing)))
        if sum(len(p) for _, p in pending) >= _MIN_BAND_OFFSETS:
            bands.append(pending)
            pending = []
    if pending:
        bands.append(pending)

    def box(band):
        corner = np.concatenate([_stencils(p)[0] for _, p in band])
        return tuple(corner.min(axis=(0, 1))), tuple(corner.max(axis=(0, 1)))

    groups, current, current_box = [], [], None
    for band in bands:
        b = box(band)
        if current and split and b != current_box:
            groups.append(_Group(current, distance_mm, sub_size))
            current = []
        current.append(band)
        current_box = b
    if current:
        groups.append(_Group(current, distance_mm, sub_size))
    return groups
