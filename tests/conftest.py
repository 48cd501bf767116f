import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax
import jax.random as jr
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")
jax.config.update("jax_debug_key_reuse", True)

# Doses per source photon are 1e-18-1e-12 Gy, and pytest.approx's default absolute tolerance
# (1e-12) would pass any two of them: comparisons here are relative unless a test gives abs=.
type(pytest.approx(1.0)).DEFAULT_ABSOLUTE_TOLERANCE = 0.0


@pytest.fixture
def getkey():
    """A function returning a fresh PRNG key on each call (deterministic per test)."""
    state = {"key": jr.key(0)}

    def _getkey():
        state["key"], sub = jr.split(state["key"])
        return sub

    return _getkey
