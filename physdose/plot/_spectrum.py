"""Spectrum plots."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..spectra._spectrum import Spectrum


def spectra(items: Mapping[str, Spectrum] | Spectrum, path: str | Path, *, title: str | None = None) -> Path:
    """Plot relative fluence per keV of one or more spectra and save a PNG at `path` (atomically).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(items, Spectrum):
        items = {"spectrum": items}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, s in items.items():
        e = np.asarray(s.energy_kev)
        f = np.asarray(s.fluence)
        if len(e) == 1:
            ax.axvline(e[0], label=f"{label} (mono)", color="k", lw=1)
            continue
        width = np.gradient(e)
        hvl = float(s.hvl_mm("Al"))
        ax.step(
            e, f / width, where="mid", label=f"{label}: HVL {hvl:.2f} mm Al, mean {float(s.mean_energy_kev):.1f} keV"
        )
    ax.set_xlabel("photon energy (keV)")
    ax.set_ylabel("relative fluence per keV")
    ax.set_xlim(0, None)
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
