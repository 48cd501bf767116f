"""Scorers: fluence and air kerma on disks crossed by photon flights."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_positive
from .._vec3 import dot3
from ..materials._material import get
from ..units import kerma_gy


class DiskScorer(eqx.Module):
    """A scoring disk (a thin, non-perturbing detector) anywhere in the world.

    Every flight segment crossing the disk scores fluence (sum of w / (|cos| area),
    1/mm^2 per source photon) and air kerma (Gy per source photon), in total and for
    primary (never scattered) photons alone.

    Attributes:
        center_mm: disk centre (z, y, x) (mm).
        normal: disk normal (z, y, x), any length.
        radius_mm: disk radius (mm).
    """

    center_mm: tuple[float, float, float] = eqx.field(static=True, converter=lambda v: tuple(float(x) for x in v))
    normal: tuple[float, float, float] = eqx.field(static=True, converter=lambda v: tuple(float(x) for x in v))
    radius_mm: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        check_positive("radius_mm", self.radius_mm)
        if len(self.center_mm) != 3 or len(self.normal) != 3 or not np.linalg.norm(self.normal) > 0:
            raise ValueError(
                f"center_mm and normal must be (z, y, x) vectors, normal non-zero; got {self.center_mm}, {self.normal}"
            )


class Disks(eqx.Module):
    """Several DiskScorers stacked for use under jit."""

    center_mm: Float[Array, "p 3"]
    normal: Float[Array, "p 3"]
    radius_mm: Float[Array, " p"]

    @classmethod
    def stack(cls, disks) -> "Disks":
        normals = np.asarray([d.normal for d in disks], dtype=float)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return cls(
            jnp.asarray([d.center_mm for d in disks]), jnp.asarray(normals), jnp.asarray([d.radius_mm for d in disks])
        )

    def __len__(self) -> int:
        return self.radius_mm.shape[0]

    def score(self, seg) -> Float[Array, "p 4"]:
        """Per disk: fluence, primary fluence, air kerma, primary air kerma of the flight segments crossing it."""
        cos = seg.direction @ self.normal.T  # (n, p)
        safe = jnp.where(jnp.abs(cos) > 1e-9, cos, 1e-9)
        t = jnp.einsum("pk,npk->np", self.normal, self.center_mm[None] - seg.pos_mm[:, None, :]) / safe
        hit = seg.pos_mm[:, None, :] + t[..., None] * seg.direction[:, None, :]
        off = hit - self.center_mm[None]
        r2 = dot3(off, off)
        on_segment = (t > 0) & (t <= seg.length_mm[:, None])
        crosses = seg.mask[:, None] & on_segment & (r2 <= (self.radius_mm**2)[None]) & (jnp.abs(cos) > 1e-9)
        area = jnp.pi * self.radius_mm**2
        fluence = jnp.where(crosses, seg.weight[:, None] / (jnp.abs(safe) * area[None]), 0.0)
        mu_en = get("air").mu_en_cm2_g(seg.energy_kev)
        kerma = fluence * kerma_gy(1.0, seg.energy_kev, mu_en)[:, None]
        primary = seg.primary[:, None]
        return jnp.stack(
            [fluence.sum(0), jnp.where(primary, fluence, 0).sum(0), kerma.sum(0), jnp.where(primary, kerma, 0).sum(0)],
            axis=-1,
        )
