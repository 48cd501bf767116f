import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import stats

from physdose import _random

# each test compares two draws from one key, which JAX's key-reuse check (on in conftest) forbids
pytestmark = pytest.mark.usefixtures("key_reuse_allowed")


@pytest.fixture
def key_reuse_allowed():
    with jax.debug_key_reuse(False):
        yield


@pytest.mark.parametrize("make_key", [jr.key, jr.PRNGKey], ids=["typed", "raw"])
def test_draws_equal_jax_random_bit_for_bit(make_key):
    key = make_key(1234)
    for shape, lo, hi in [((2, 16384), 1e-12, 1.0), ((7,), 0.0, 1.0), ((3, 5, 2), -1.0, 1.0), ((), 0.0, 6.28)]:
        np.testing.assert_array_equal(
            _random.uniform(key, shape, minval=lo, maxval=hi), jr.uniform(key, shape, minval=lo, maxval=hi)
        )
    for num in (2, 6):
        np.testing.assert_array_equal(jr.key_data(_random.split(key, num)), jr.key_data(jr.split(key, num)))
    for data in (0, 7, 2**31 - 1):
        np.testing.assert_array_equal(jr.key_data(_random.fold_in(key, data)), jr.key_data(jr.fold_in(key, data)))


def test_draws_equal_jax_random_under_jit_with_traced_data():
    key = jr.key(5)

    def ours(i):
        return _random.uniform(_random.fold_in(key, i), (100,), minval=1e-12, maxval=1.0)

    def theirs(i):
        return jr.uniform(jr.fold_in(key, i), (100,), minval=1e-12, maxval=1.0)

    for i in (0, 3, 1000):
        np.testing.assert_array_equal(jax.jit(ours)(i), jax.jit(theirs)(i))


def test_float64_draws_equal_jax_random():
    with jax.enable_x64(True):
        key = jr.key(9)
        ours = _random.uniform(key, (4, 33), dtype=jnp.float64)
        assert ours.dtype == jnp.float64
        np.testing.assert_array_equal(ours, jr.uniform(key, (4, 33), dtype=jnp.float64))
        # scaled by a width that is not a power of two, XLA may fuse the multiply-add: 1 ulp
        scaled = _random.uniform(key, (4, 33), dtype=jnp.float64, minval=-2.0, maxval=3.0)
        np.testing.assert_allclose(
            scaled, jr.uniform(key, (4, 33), dtype=jnp.float64, minval=-2.0, maxval=3.0), rtol=0, atol=1e-15
        )


def test_other_key_implementations_fall_back_to_jax_random():
    key = jr.key(3, impl="rbg")
    np.testing.assert_array_equal(_random.uniform(key, (10,)), jr.uniform(key, (10,)))
    np.testing.assert_array_equal(jr.key_data(_random.split(key, 3)), jr.key_data(jr.split(key, 3)))


def test_uniforms_are_uniform():
    u = np.asarray(_random.uniform(jr.key(0), (200_000,)))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
