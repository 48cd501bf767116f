"""Dose pictures: cumulative DVH curves, gamma maps with their histogram, dose profiles."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float

from .._atomic import atomic_path
from .._checks import check_positive
from ..metrics._dvh import DVH
from ..metrics._gamma import GammaResult

_AXIS_NAMES = {3: ("z", "y", "x"), 2: ("y", "x"), 1: ("x",)}
_NOT_EVALUATED = "0.25"  # dark grey behind gamma maps, apart from the light grey of gamma = 1


def dvh_curves(
    dvhs: Mapping[str, DVH] | DVH,
    path: str | Path,
    *,
    compare: Mapping[str, DVH] | None = None,
    title: str | None = None,
    dose_label: str = "dose (Gy)",
) -> Path:
    """Save cumulative DVH curves (volume % against dose) as a PNG at `path` (atomically).

    Args:
        dvhs: structure name -> DVH (from `physdose.metrics.dvh`), or one DVH; solid lines.
        path: output file; a PNG is written whatever the suffix.
        compare: structure name -> DVH of a second dose (e.g. the Monte Carlo reference),
            drawn dashed in the colour of the same name in `dvhs`.
        title: figure title.
        dose_label: x-axis label.

    Returns:
        The path written.

    Raises:
        TypeError: an entry is not a DVH.
        ValueError: `compare` names a structure that is not in `dvhs`.
    """
    fig, _ = _dvh_figure(dvhs, compare=compare, title=title, dose_label=dose_label)
    return _save(fig, path)


def gamma_map(
    result: GammaResult | Float[ArrayLike, "*spatial"],
    path: str | Path,
    *,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float] | None = None,
    point_index: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Save a gamma map and the histogram of its values as a PNG at `path` (atomically).

    A 3-D map is shown as axial, coronal and sagittal slices through `point_index` (same
    orientation as `physdose.plot.slices`), a 2-D map as one image. Gamma <= 1 (pass) is
    blue, > 1 (fail) red, light grey at 1; points that were not evaluated (NaN) are dark grey.
    The histogram panel gives the pass rate and the number of evaluated points.

    Args:
        result: a GammaResult, or a gamma array, shape (z, y, x) or (y, x), NaN where not
            evaluated.
        path: output file; a PNG is written whatever the suffix.
        spacing_mm: voxel spacing per axis (mm), as given to `physdose.metrics.gamma`.
        origin_mm: position of voxel (0, ...) per axis (mm); zero by default.
        point_index: voxel index the 3-D slices pass through; the grid centre by default.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: the map is not 2- or 3-D, `spacing_mm`/`origin_mm`/`point_index` do not
            match it, or it holds no evaluated point.
    """
    fig, _ = _gamma_figure(result, spacing_mm=spacing_mm, origin_mm=origin_mm, point_index=point_index, title=title)
    return _save(fig, path)


def dose_profiles(
    doses: Mapping[str, Float[ArrayLike, "*spatial"]] | Float[ArrayLike, "*spatial"],
    path: str | Path,
    *,
    spacing_mm: Sequence[float],
    axis: int = -1,
    origin_mm: Sequence[float] | None = None,
    point_index: Sequence[int] | None = None,
    std_gy: Mapping[str, Float[ArrayLike, "*spatial"]] | None = None,
    k: float = 2.0,
    title: str | None = None,
    dose_label: str = "dose (Gy)",
) -> Path:
    """Save dose profiles along one array axis through a voxel as a PNG at `path` (atomically).

    Args:
        doses: name -> dose array (all the same shape, 1-3 D, Gy), or one dose array.
        path: output file; a PNG is written whatever the suffix.
        spacing_mm: voxel spacing per axis (mm).
        axis: array axis of the profile; for a (z, y, x) volume 0 is z, 1 is y, 2 (or -1) is x.
        origin_mm: position of voxel (0, ...) per axis (mm); zero by default.
        point_index: a voxel on the profile line (its index along `axis` is ignored); the
            grid centre by default.
        std_gy: name -> standard deviation (Gy) of that dose, drawn as a +- k std band.
        k: coverage factor of the bands.
        title: figure title.
        dose_label: y-axis label.

    Returns:
        The path written.

    Raises:
        ValueError: shapes differ, an array is not finite, `axis`, `spacing_mm`,
            `origin_mm` or `point_index` do not match the doses, or `std_gy` names an
            unknown dose.
    """
    fig, _ = _profile_figure(
        doses,
        spacing_mm=spacing_mm,
        axis=axis,
        origin_mm=origin_mm,
        point_index=point_index,
        std_gy=std_gy,
        k=k,
        title=title,
        dose_label=dose_label,
    )
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _new_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _dvh_figure(dvhs, *, compare=None, title=None, dose_label="dose (Gy)"):
    """Build the DVH figure. Returns (figure, summary) with summary = {"axes", "solid": names, "dashed": names}."""
    if isinstance(dvhs, DVH):
        dvhs = {"structure": dvhs}
    compare = dict(compare or {})
    for name, h in list(dvhs.items()) + list(compare.items()):
        if not isinstance(h, DVH):
            raise TypeError(f"DVH for {name!r} must be a physdose.metrics.DVH, got {type(h).__name__}")
    unknown = [n for n in compare if n not in dvhs]
    if unknown:
        raise ValueError(f"compare names structures {unknown} that are not in dvhs {list(dvhs)}")
    fig = _new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    colours = _colours(len(dvhs))
    solid, dashed = [], []
    for (name, h), colour in zip(dvhs.items(), colours):
        dose, volume = _step_curve(h)
        ax.plot(dose, 100.0 * volume, color=colour, lw=1.5, label=name)
        solid.append(name)
        if name in compare:
            dose, volume = _step_curve(compare[name])
            ax.plot(dose, 100.0 * volume, color=colour, lw=1.2, ls="--")
            dashed.append(name)
    ax.set_xlabel(dose_label)
    ax.set_ylabel("volume (%)")
    ax.set_xlim(0.0, None)
    ax.set_ylim(0.0, 102.0)
    ax.grid(alpha=0.3)
    if solid:
        ax.legend(fontsize=8, ncol=2 if len(solid) > 8 else 1)
    if dashed:
        ax.text(0.99, 0.99, "dashed: comparison", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    if title:
        ax.set_title(title)
    return fig, {"axes": ax, "solid": solid, "dashed": dashed}


def _step_curve(h: DVH, max_steps: int = 4096):
    """Cumulative DVH as (dose, volume fraction receiving >= dose): exact steps, or sampled for large structures."""
    if int(np.sum(np.diff(np.asarray(h.cumulative_volume_mm3), prepend=0.0) > 0)) > max_steps:
        dose, volume = h.curve(1024)
        return np.concatenate([np.asarray(dose), np.asarray(dose[-1:])]), np.concatenate([np.asarray(volume), [0.0]])
    dose = np.asarray(h.dose_gy)
    cumulative = np.asarray(h.cumulative_volume_mm3)
    total = float(h.total_volume_mm3)
    inside = np.diff(cumulative, prepend=0.0) > 0
    dose, cumulative = dose[inside][::-1], cumulative[inside][::-1] / total  # ascending dose
    # V(d) for d in (dose[i-1], dose[i]] equals cumulative[i]
    x = np.concatenate([[0.0], np.repeat(dose, 2)])
    y = np.concatenate([np.repeat(cumulative, 2), [0.0]])
    return x, y


def _gamma_figure(result, *, spacing_mm, origin_mm=None, point_index=None, title=None):
    """Build the gamma figure. Returns (figure, summary) with summary = {"axes": {view: Axes}, "histogram": Axes,
    "pass_rate": %, "n_evaluated": int, "image": {view: AxesImage}}."""
    from matplotlib.colors import TwoSlopeNorm

    g = np.asarray(result.gamma if isinstance(result, GammaResult) else result, dtype=np.float64)
    if g.ndim not in (2, 3):
        raise ValueError(f"the gamma map must be 2- or 3-D, got shape {g.shape}")
    spacing, origin = _spacing_origin(spacing_mm, origin_mm, g.ndim)
    valid = np.isfinite(g)
    if not valid.any():
        raise ValueError("the gamma map holds no evaluated point (all NaN)")
    values = g[valid]
    n = int(values.size)
    rate = 100.0 * float(np.mean(values <= 1.0))
    top = max(2.0, float(values.max()))
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top)
    axes_mm = [o + d * np.arange(m) for o, d, m in zip(origin, spacing, g.shape)]

    if g.ndim == 3:
        index = _index(point_index, g.shape)
        iz, iy, ix = index
        views = [
            ("axial", g[iz], 2, 1, False, f"axial  z = {axes_mm[0][iz]:.1f} mm"),
            ("coronal", g[:, iy, :], 2, 0, True, f"coronal  y = {axes_mm[1][iy]:.1f} mm"),
            ("sagittal", g[:, :, ix], 1, 0, True, f"sagittal  x = {axes_mm[2][ix]:.1f} mm"),
        ]
        extent = [n * d for n, d in zip(g.shape, spacing)]
        fig = _new_figure((12.0, 8.5))
        grid = fig.add_gridspec(2, 2, width_ratios=[extent[2], extent[1]], height_ratios=[extent[0], extent[1]])
        slots = {"coronal": grid[0, 0], "sagittal": grid[0, 1], "axial": grid[1, 0]}
        hist_slot = grid[1, 1]
    else:
        views = [("map", g, 1, 0, False, None)]
        fig = _new_figure((11.0, 4.8))
        grid = fig.add_gridspec(1, 2, width_ratios=[1.3, 1.0])
        slots = {"map": grid[0, 0]}
        hist_slot = grid[0, 1]

    names = _AXIS_NAMES[g.ndim]
    panels, images = {}, {}
    for name, image, h, v, up, label in views:
        ax = fig.add_subplot(slots[name])
        ax.set_facecolor(_NOT_EVALUATED)
        hc, vc = axes_mm[h], axes_mm[v]
        dh, dv = spacing[h], spacing[v]
        left, right = hc[0] - dh / 2, hc[-1] + dh / 2
        low, high = vc[0] - dv / 2, vc[-1] + dv / 2
        extent = (left, right, low, high) if up else (left, right, high, low)
        images[name] = ax.imshow(
            np.ma.masked_invalid(image),
            cmap="coolwarm",
            norm=norm,
            extent=extent,
            origin="lower" if up else "upper",
            interpolation="nearest",
        )
        ax.set_aspect("equal")
        ax.set_xlabel(f"{names[h]} (mm)")
        ax.set_ylabel(f"{names[v]} (mm)")
        if label:
            ax.set_title(label, fontsize=10)
        panels[name] = ax
    fig.colorbar(next(iter(images.values())), ax=list(panels.values()), label="gamma", shrink=0.8)

    hist = fig.add_subplot(hist_slot)
    bins = np.linspace(0.0, top, 41)
    hist.hist(np.clip(values, 0.0, top), bins=bins, color="0.4")
    hist.axvline(1.0, color="r", lw=1.0, ls="--")
    hist.set_xlabel("gamma")
    hist.set_ylabel("points")
    hist.set_title(f"pass rate {rate:.1f} % (gamma <= 1) of {n:,d} points\n(dark grey: not evaluated)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig, {"axes": panels, "histogram": hist, "pass_rate": rate, "n_evaluated": n, "image": images}


def _profile_figure(
    doses, *, spacing_mm, axis=-1, origin_mm=None, point_index=None, std_gy=None, k=2.0, title=None, dose_label=""
):
    """Build the profile figure. Returns (figure, summary) with summary = {"axes", "lines": {name: (x_mm, dose)},
    "bands": names with a band}."""
    if not isinstance(doses, Mapping):
        doses = {"dose": doses}
    arrays = {name: np.asarray(d, dtype=np.float64) for name, d in doses.items()}
    if not arrays:
        raise ValueError("doses is empty; give at least one dose")
    shape = next(iter(arrays.values())).shape
    for name, d in arrays.items():
        if d.shape != shape:
            raise ValueError(f"dose {name!r} has shape {d.shape}, the first dose has shape {shape}; they must match")
        if not np.all(np.isfinite(d)):
            raise ValueError(f"dose {name!r} must be finite everywhere")
    ndim = len(shape)
    if ndim not in (1, 2, 3):
        raise ValueError(f"doses must be 1-, 2- or 3-D, got shape {shape}")
    if not isinstance(axis, int | np.integer) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an array axis in [{-ndim}, {ndim}), got {axis!r}")
    axis = int(axis) % ndim
    spacing, origin = _spacing_origin(spacing_mm, origin_mm, ndim)
    index = list(_index(point_index, shape))
    index[axis] = slice(None)
    line = tuple(index)
    x = origin[axis] + spacing[axis] * np.arange(shape[axis])
    std_gy = dict(std_gy or {})
    unknown = [n for n in std_gy if n not in arrays]
    if unknown:
        raise ValueError(f"std_gy names doses {unknown} that are not in doses {list(arrays)}")

    fig = _new_figure((7.0, 4.2))
    ax = fig.add_subplot()
    lines, bands = {}, []
    for (name, d), colour in zip(arrays.items(), _colours(len(arrays))):
        y = d[line]
        ax.plot(x, y, color=colour, lw=1.4, label=name)
        lines[name] = (x, y)
        if name in std_gy:
            s = np.asarray(std_gy[name], dtype=np.float64)
            if s.shape != shape:
                raise ValueError(f"std_gy[{name!r}] has shape {s.shape}, the doses have shape {shape}")
            ax.fill_between(x, y - k * s[line], y + k * s[line], color=colour, alpha=0.25, lw=0)
            bands.append(name)
    names = _AXIS_NAMES[ndim]
    through = ", ".join(f"{names[a]} = {origin[a] + spacing[a] * index[a]:.1f}" for a in range(ndim) if a != axis)
    ax.set_xlabel(f"{names[axis]} (mm)")
    ax.set_ylabel(dose_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    subtitle = f"profile along {names[axis]}" + (f" through {through} mm" if through else "")
    if bands:
        subtitle += f"; bands: +-{k:g} std"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
    return fig, {"axes": ax, "lines": lines, "bands": bands}


def _spacing_origin(spacing_mm, origin_mm, ndim):
    spacing = np.asarray(spacing_mm, dtype=float).reshape(-1) if np.ndim(spacing_mm) == 1 else None
    if spacing is None or spacing.size != ndim:
        raise ValueError(f"spacing_mm must have {ndim} entries, one per axis, got {spacing_mm!r}")
    check_positive("spacing_mm", spacing)
    if origin_mm is None:
        origin = np.zeros(ndim)
    else:
        origin = np.asarray(origin_mm, dtype=float).reshape(-1) if np.ndim(origin_mm) == 1 else None
        if origin is None or origin.size != ndim or not np.all(np.isfinite(origin)):
            raise ValueError(f"origin_mm must have {ndim} finite entries, one per axis, got {origin_mm!r}")
    return spacing, origin


def _index(point_index, shape) -> tuple[int, ...]:
    if point_index is None:
        return tuple(n // 2 for n in shape)
    try:
        index = tuple(int(i) for i in point_index)
    except TypeError as err:
        raise ValueError(f"point_index must be a voxel index with {len(shape)} entries, got {point_index!r}") from err
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ValueError(f"point_index {point_index!r} is not a voxel index of shape {shape}")
    return index


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(n)]
