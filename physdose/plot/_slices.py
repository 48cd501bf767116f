"""Orthogonal slices of a phantom: density, organ contours and an optional dose overlay."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float

from .._atomic import atomic_path
from .._checks import check_triple
from ..phantoms._phantom import Phantom

_DOSE_FLOOR = 0.01  # dose below this fraction of the maximum is not drawn


def slices(
    phantom: Phantom,
    path: str | Path,
    *,
    dose: Float[ArrayLike, "z y x"] | None = None,
    point_mm=None,
    organs: Sequence[str] | None = None,
    title: str | None = None,
    dose_label: str = "dose (Gy)",
) -> Path:
    """Save axial, coronal and sagittal slices through `point_mm` as a PNG at `path` (atomically).

    Each view shows the density (grey, g/cm^3) with the outline of every selected organ (one
    colour per organ, listed in the legend) and, if `dose` is given, the dose as a
    semi-transparent colour map with a colour bar; voxels below 1 % of the maximum dose
    are left clear. Images have the physical aspect ratio of the grid and axes in mm.

    Orientation (radiological convention): the axial view is seen from the feet, patient's
    left (+x) on the image right and anterior (-y) at the top; the coronal view is seen
    from the front, patient's left on the right and superior (+z) at the top; the sagittal
    view has anterior on the left and superior at the top. Dashed lines mark where the
    other two slices cut.

    Args:
        phantom: the phantom.
        path: output file; a PNG is written whatever the suffix.
        dose: dose per voxel, shape phantom.grid.shape (units as in `dose_label`).
        point_mm: world point (z, y, x) (mm) the three slices pass through (the nearest voxel
            centres are shown); the middle voxel of the grid by default.
        organs: names of the organs to outline; all of the phantom's organs by default, none
            for an empty list.
        title: figure title.
        dose_label: colour-bar label.

    Returns:
        The path written.

    Raises:
        ValueError: `dose` has another shape than the grid or is not finite, an organ is
            unknown, or `point_mm` is not a point inside the grid.
    """
    fig, _ = _figure(phantom, dose=dose, point_mm=point_mm, organs=organs, title=title, dose_label=dose_label)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _figure(phantom: Phantom, *, dose=None, point_mm=None, organs=None, title=None, dose_label="dose (Gy)"):
    """Build the slice figure.

    Returns:
        (figure, summary) with summary = {"axes": {view: Axes}, "contours": {view: number of
        organ contour sets drawn}, "legend": organ names listed, "dose_image": {view:
        AxesImage of the dose overlay}, "colorbar": the dose colour bar or None}.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a physdose.Phantom, got {type(phantom).__name__}")
    grid = phantom.grid
    names = _organ_names(phantom, organs)
    if dose is not None:
        dose = np.asarray(dose, dtype=np.float32)
        if dose.shape != grid.shape:
            raise ValueError(f"dose has shape {dose.shape} but phantom.grid.shape is {grid.shape}")
        if not np.all(np.isfinite(dose)):
            raise ValueError("dose must be finite everywhere, got NaN or inf values")
    index = _slice_index(grid, point_mm)

    density = np.asarray(phantom.density_g_cm3)
    labels = np.asarray(phantom.organ_labels)
    axes_mm = [o + d * np.arange(n) for o, d, n in zip(grid.origin_mm, grid.spacing_mm, grid.shape)]
    point = [float(a[i]) for a, i in zip(axes_mm, index)]
    iz, iy, ix = index

    # (name, 2-D selector, horizontal axis, vertical axis, vertical grows upward, title)
    views = [
        ("coronal", (slice(None), iy, slice(None)), 2, 0, True, f"coronal  y = {point[1]:.1f} mm"),
        ("sagittal", (slice(None), slice(None), ix), 1, 0, True, f"sagittal  x = {point[2]:.1f} mm"),
        ("axial", (iz, slice(None), slice(None)), 2, 1, False, f"axial  z = {point[0]:.1f} mm"),
    ]
    axis_text = {
        0: "z (mm), superior \u2191",
        1: "y (mm), posterior \u2192",
        2: "x (mm), patient left \u2192",
    }
    axis_text_down = {1: "y (mm), posterior \u2193"}

    extent_mm = [n * d for n, d in zip(grid.shape, grid.spacing_mm)]
    fig = Figure(figsize=(11.0, 9.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 2, width_ratios=[extent_mm[2], extent_mm[1]], height_ratios=[extent_mm[0], extent_mm[1]])
    panels = {
        "coronal": fig.add_subplot(gs[0, 0]),
        "sagittal": fig.add_subplot(gs[0, 1]),
        "axial": fig.add_subplot(gs[1, 0]),
    }
    side = fig.add_subplot(gs[1, 1])
    side.set_axis_off()

    vmax_rho = float(density.max()) if density.max() > 0 else 1.0
    dose_max = float(dose.max()) if dose is not None else 0.0
    colours = _colours(len(phantom.organs))
    colour_of = {name: colours[i] for i, name in enumerate(phantom.organs)}
    drawn: dict[str, int] = {}
    seen: list[str] = []
    dose_images = {}
    for name, sel, h, v, up, label in views:
        ax = panels[name]
        # arrays are indexed (z, y, x): the 2-D slice has rows along axis v, columns along h
        img = density[sel]
        hc, vc = axes_mm[h], axes_mm[v]
        dh, dv = grid.spacing_mm[h], grid.spacing_mm[v]
        left, right = hc[0] - dh / 2, hc[-1] + dh / 2
        low, high = vc[0] - dv / 2, vc[-1] + dv / 2
        extent = (left, right, low, high) if up else (left, right, high, low)
        origin = "lower" if up else "upper"
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=vmax_rho, extent=extent, origin=origin, interpolation="nearest")
        if dose is not None and dose_max > 0:
            d = dose[sel]
            masked = np.ma.masked_less(d, _DOSE_FLOOR * dose_max)
            dose_images[name] = ax.imshow(
                masked,
                cmap="jet",
                vmin=0.0,
                vmax=dose_max,
                alpha=0.5,
                extent=extent,
                origin=origin,
                interpolation="nearest",
            )
        count = 0
        label_slice = labels[sel]
        for organ in names:
            mask = (label_slice == phantom.organs[organ]).astype(np.float32)
            if mask.min() == mask.max():  # absent (or filling the slice): nothing to outline
                continue
            ax.contour(hc, vc, mask, levels=[0.5], colors=[colour_of[organ]], linewidths=1.0)
            count += 1
            if organ not in seen:
                seen.append(organ)
        drawn[name] = count
        # where the other two slices cut this view
        cut = {0: point[0], 1: point[1], 2: point[2]}
        ax.axvline(cut[h], color="w", lw=0.6, ls="--", alpha=0.6)
        ax.axhline(cut[v], color="w", lw=0.6, ls="--", alpha=0.6)
        ax.set_xlim(left, right)
        ax.set_ylim(*((low, high) if up else (high, low)))
        ax.set_aspect("equal")
        ax.set_xlabel(axis_text[h])
        ax.set_ylabel(axis_text[v] if up else axis_text_down.get(v, axis_text[v]))
        ax.set_title(label, fontsize=10)

    handles = [Line2D([], [], color=colour_of[o], lw=2, label=o) for o in names if o in seen]
    if handles:
        side.legend(handles=handles, loc="upper left", fontsize=8, ncol=2 if len(handles) > 10 else 1, frameon=False)
    colorbar = None
    if dose_images:
        cax = side.inset_axes([0.05, 0.08, 0.9, 0.06])
        colorbar = fig.colorbar(dose_images["axial"], cax=cax, orientation="horizontal", label=dose_label)
    info = (
        f"density 0-{vmax_rho:.2f} g/cm$^3$ (grey); spacing {tuple(round(s, 3) for s in grid.spacing_mm)} mm (z, y, x)"
    )
    fig.suptitle(f"{title}\n{info}" if title else info, fontsize=10)
    summary = {
        "axes": panels,
        "contours": drawn,
        "legend": [h.get_label() for h in handles],
        "dose_image": dose_images,
        "colorbar": colorbar,
    }
    return fig, summary


def _organ_names(phantom: Phantom, organs) -> list[str]:
    if organs is None:
        return list(phantom.organs)
    if isinstance(organs, str):
        organs = [organs]
    names = list(organs)
    for name in names:
        if name not in phantom.organs:
            raise ValueError(f"unknown organ {name!r} in organs; this phantom has {list(phantom.organs)}")
    return names


def _slice_index(grid, point_mm) -> tuple[int, int, int]:
    """Voxel index (z, y, x) nearest to `point_mm` (the grid centre when None)."""
    if point_mm is None:
        return tuple(n // 2 for n in grid.shape)
    p = check_triple("point_mm", point_mm)
    lo, hi = grid.bounds_mm
    if any(not a <= c <= b for c, a, b in zip(p, lo, hi)):
        raise ValueError(f"point_mm {point_mm!r} lies outside the grid, which spans {lo} to {hi} mm")
    return tuple(
        int(np.clip(round((c - o) / d), 0, n - 1)) for c, o, d, n in zip(p, grid.origin_mm, grid.spacing_mm, grid.shape)
    )


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(n)]
