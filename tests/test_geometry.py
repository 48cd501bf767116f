import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physdose as pd
from physdose.geometry import crop, pad, resample


def test_index_world_roundtrip_and_origin_is_voxel_centre(getkey):
    g = pd.Grid((33, 34, 35), (2.5, 1.0, 0.5), (-40.0, 10.0, 3.0))
    np.testing.assert_allclose(g.to_world(jnp.zeros(3)), g.origin_mm)
    p = jax.random.uniform(getkey(), (10, 3), minval=-50, maxval=50)
    np.testing.assert_allclose(g.to_world(g.to_index(p)), p, rtol=1e-5, atol=1e-4)
    lo, hi = g.bounds_mm
    np.testing.assert_allclose(np.subtract(hi, lo), g.size_mm)
    assert lo[0] == pytest.approx(-40.0 - 1.25)


def test_centered_grid_and_voxel_centres():
    g = pd.Grid.centered((4, 5, 6), (2.0, 2.0, 2.0), (10.0, 0.0, -5.0))
    np.testing.assert_allclose(g.center_mm, (10.0, 0.0, -5.0))
    centres = g.voxel_centers_mm()
    assert centres.shape == (4, 5, 6, 3)
    np.testing.assert_allclose(centres.mean(axis=(0, 1, 2)), (10.0, 0.0, -5.0), atol=1e-5)
    np.testing.assert_allclose(centres[1, 2, 3], g.to_world(jnp.asarray([1.0, 2.0, 3.0])))
    assert bool(g.contains(jnp.asarray(g.center_mm))) and not bool(g.contains(jnp.asarray([100.0, 0.0, 0.0])))


def test_trilinear_resampling_reproduces_linear_fields_exactly():
    g = pd.Grid((9, 10, 11), (3.0, 2.0, 1.0), (0.0, 0.0, 0.0))
    c = g.voxel_centers_mm()
    field = 0.5 * c[..., 0] - 0.2 * c[..., 1] + 0.1 * c[..., 2] + 3.0
    fine = pd.Grid.centered((12, 14, 16), (1.5, 1.0, 0.5), g.center_mm)
    out = resample(field, g, fine)
    cf = fine.voxel_centers_mm()
    expected = 0.5 * cf[..., 0] - 0.2 * cf[..., 1] + 0.1 * cf[..., 2] + 3.0
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(resample(field, g, g), field, rtol=1e-6)


def test_nearest_resampling_keeps_labels_and_dtype():
    g = pd.Grid((4, 4, 4), (2.0, 2.0, 2.0))
    labels = jnp.arange(64, dtype=jnp.int32).reshape(4, 4, 4)
    fine = g.with_spacing((1.0, 1.0, 1.0))
    assert g.with_spacing(1.0) == fine  # a number means cubic voxels
    out = resample(labels, g, fine, nearest=True, fill_value=-1)
    assert out.dtype == jnp.int32 and out.shape == (8, 8, 8)
    assert set(np.unique(out).tolist()) <= set(range(64))
    # each fine voxel takes the label of the coarse voxel that contains it
    np.testing.assert_array_equal(out[::2, ::2, ::2][1:, 1:, 1:], labels[1:, 1:, 1:])
    far = pd.Grid((2, 2, 2), (1.0, 1.0, 1.0), (100.0, 100.0, 100.0))
    assert np.all(np.asarray(resample(labels, g, far, nearest=True, fill_value=-1)) == -1)


def test_crop_and_pad_keep_world_positions():
    g = pd.Grid((5, 6, 7), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    vol = jnp.arange(g.num_voxels, dtype=jnp.float32).reshape(g.shape)
    sub, sg = crop(vol, g, (1, 2, 3), (4, 5, 7))
    assert sub.shape == sg.shape == (3, 3, 4)
    np.testing.assert_allclose(sg.origin_mm, g.to_world(jnp.asarray([1.0, 2.0, 3.0])))
    assert float(sub[0, 0, 0]) == float(vol[1, 2, 3])
    big, bg = pad(vol, g, ((1, 2), (0, 1), (3, 0)), value=-5.0)
    assert big.shape == bg.shape == (8, 7, 10)
    np.testing.assert_allclose(bg.to_world(jnp.asarray([1.0, 0.0, 3.0])), g.origin_mm)
    back, backg = crop(big, bg, (1, 0, 3), (6, 6, 10))
    np.testing.assert_array_equal(back, vol)
    assert backg == g


def test_bad_grid_inputs_raise_errors_naming_them():
    with pytest.raises(ValueError, match="spacing_mm"):
        pd.Grid((2, 2, 2), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="spacing_mm"):
        pd.Grid((2, 2, 2), (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        pd.Grid((2, 0, 2), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing_mm"):
        pd.Grid((2, 2, 2), (1.0, 1.0))
    g = pd.Grid((2, 3, 4), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        resample(jnp.zeros((2, 3, 5)), g, g)
    with pytest.raises(ValueError, match="crop window"):
        crop(jnp.zeros(g.shape), g, (0, 0, 0), (3, 3, 4))
    with pytest.raises(ValueError, match="widths"):
        pad(jnp.zeros(g.shape), g, ((0, -1), (0, 0), (0, 0)))
