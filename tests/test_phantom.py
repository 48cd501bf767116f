import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physdose as pd
from physdose.materials import MaterialTable


def _box_phantom(shape=(6, 7, 8)):
    grid = pd.Grid.centered(shape, (5.0, 4.0, 3.0))
    table = MaterialTable.from_materials(["air", "water", "cortical_bone"])
    ids = np.zeros(shape, np.int32)
    ids[1:5, 1:6, 1:7] = 1
    ids[2:4, 2:4, 2:4] = 2
    labels = np.where(ids == 2, 1, 0)
    labels[1, 1:6, 1:7] = 2
    rho = np.asarray(table.density_g_cm3)[ids]
    return pd.Phantom(grid, ids, rho, table, labels, {"bone": 1, "top": 2}, points={"front": ((0, -10, 0), (0, -2, 0))})


def test_masses_volumes_and_attenuation_are_consistent():
    p = _box_phantom()
    v = p.grid.voxel_volume_mm3 * 1e-3
    assert p.organ_volumes_ml()["bone"] == pytest.approx(8 * v)
    assert p.organ_masses_g()["bone"] == pytest.approx(8 * v * 1.92, rel=1e-6)
    mu = p.mu_per_mm(60.0)
    water_mu = float(pd.materials.get("water").mu_per_mm(60.0))
    assert float(mu[3, 4, 5]) == pytest.approx(water_mu, rel=1e-5)
    assert p.points["front"][1] == (0.0, -1.0, 0.0)  # normals are normalised
    assert bool(p.mask("top")[1, 3, 3]) and not bool(p.mask("top")[2, 3, 3])


def test_phantom_is_a_pytree_that_jits():
    p = _box_phantom()
    total = jax.jit(lambda ph: ph.voxel_mass_g().sum())(p)
    assert float(total) == pytest.approx(float(p.voxel_mass_g().sum()))
    doubled = jax.tree.map(lambda a: a, p)
    assert doubled.organs == p.organs


def test_resampling_to_finer_and_back_keeps_masses():
    p = _box_phantom()
    fine = p.resample((2.5, 2.0, 1.5))
    assert fine.grid.shape == (12, 14, 16)
    for organ in p.organs:
        assert fine.organ_masses_g()[organ] == pytest.approx(p.organ_masses_g()[organ], rel=1e-5)
        assert fine.organ_volumes_ml()[organ] == pytest.approx(p.organ_volumes_ml()[organ], rel=1e-5)
    back = fine.resample(grid=p.grid)
    np.testing.assert_array_equal(back.organ_labels, p.organ_labels)


def test_bad_phantoms_raise_errors_naming_the_field():
    p = _box_phantom()
    with pytest.raises(ValueError, match="density_g_cm3"):
        pd.Phantom(p.grid, p.material_ids, jnp.zeros((2, 2, 2)), p.materials, p.organ_labels, p.organs)
    with pytest.raises(ValueError, match="material_ids"):
        pd.Phantom(p.grid, p.material_ids + 5, p.density_g_cm3, p.materials, p.organ_labels, p.organs)
    with pytest.raises(ValueError, match="density_g_cm3"):
        pd.Phantom(
            p.grid, p.material_ids, p.density_g_cm3.at[0, 0, 0].set(jnp.nan), p.materials, p.organ_labels, p.organs
        )
    with pytest.raises(ValueError, match="density_g_cm3"):
        pd.Phantom(p.grid, p.material_ids, -p.density_g_cm3, p.materials, p.organ_labels, p.organs)
    with pytest.raises(ValueError, match="organ_labels"):
        pd.Phantom(p.grid, p.material_ids, p.density_g_cm3, p.materials, p.organ_labels, {"bone": 1})
    with pytest.raises(ValueError, match="unknown organ"):
        p.mask("spleen")
    with pytest.raises(ValueError, match="normal"):
        pd.Phantom(
            p.grid,
            p.material_ids,
            p.density_g_cm3,
            p.materials,
            p.organ_labels,
            p.organs,
            points={"x": ((0, 0, 0), (0, 0, 0))},
        )
    with pytest.raises(ValueError, match="spacing_mm"):
        p.resample()
