"""`jax.random`'s threefry draws, bit for bit, with the hash unrolled.

On CPU, JAX lowers the Threefry-2x32 hash with its five groups of four rounds rolled into a
loop (to save compile time): every draw is a small while loop of its own, and inside the
Monte Carlo's flight loop that loop costs more than the flights it feeds. Here the same
hash is written out in jax.numpy, so XLA fuses it into the code that uses the numbers.

Under JAX's default `jax_threefry_partitionable` (True since JAX 0.5) every threefry
operation is one hash of the key and a 64-bit counter (Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3"): `split(key, n)[i]` and `fold_in(key, i)` are the hash of
counter i, and 32 uniform bits at flat index j are the two output words of counter j
XORed. These functions compute exactly that, so they return the bits `jax.random` returns
(tested; a uniform scaled to a width that is not a power of two may differ in its last bit
where XLA fuses the multiply-add). For other key implementations, or with the flag off,
they call `jax.random`.

Each draw is computed once, into its own buffer (`physdose._fusion.apart`): XLA would
otherwise fuse the hash into every fusion that reads the numbers and compute it again in
each (a step of the Monte Carlo hashed its numbers 29 times over instead of 7).
"""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._fusion import apart

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def threefry2x32(key_words: Array, hi: Array, lo: Array) -> tuple[Array, Array]:
    """Threefry-2x32 (20 rounds) of the 64-bit counters (hi, lo) under the key `key_words`
    (uint32, shape (2,)); returns the two uint32 output words, shape of the counters."""
    k0, k1 = key_words[0], key_words[1]
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0, x1 = hi + ks[0], lo + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def _fast(key) -> bool:
    """Whether `key` is a threefry key (typed or raw uint32 (2,)) under partitionable threefry."""
    if not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jr.key_impl(key)) == "threefry2x32" and key.shape == ()
    return key.shape == (2,) and key.dtype == jnp.uint32 and jax.config.jax_default_prng_impl == "threefry2x32"


def _words(key) -> Array:
    return jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _like(key, words: Array):
    """`words` (uint32, (..., 2)) as keys of the same kind as `key` (typed or raw)."""
    return jr.wrap_key_data(words, impl="threefry2x32") if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else words


def _counters(shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The 64-bit counters (hi, lo) of a draw of `shape`: its elements' flat (C order) indices."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"at most 2^32 - 1 numbers per draw, got shape {shape}")
    lo = jnp.arange(size, dtype=jnp.uint32).reshape(shape)
    return jnp.zeros_like(lo), lo


def fold_in(key: PRNGKeyArray, data) -> PRNGKeyArray:
    """`jax.random.fold_in(key, data)` for a non-negative int32 `data` (Python or traced)."""
    if not _fast(key):
        return jr.fold_in(key, data)
    lo = jnp.asarray(data).astype(jnp.uint32)
    return _like(key, jnp.stack(threefry2x32(_words(key), jnp.zeros_like(lo), lo)))


def split(key: PRNGKeyArray, num: int = 2) -> PRNGKeyArray:
    """`jax.random.split(key, num)`, shape (num,)."""
    if not _fast(key):
        return jr.split(key, num)
    return _like(key, jnp.stack(threefry2x32(_words(key), *_counters((num,))), axis=-1))


def uniform(key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32, minval=0.0, maxval=1.0) -> Array:
    """`jax.random.uniform(key, shape, dtype, minval, maxval)` for float32 or float64, in [minval, maxval)."""
    dtype = jnp.dtype(dtype)
    if not _fast(key) or dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return jr.uniform(key, shape, dtype=dtype, minval=minval, maxval=maxval)
    finfo = jnp.finfo(dtype)
    uint = jnp.uint32 if dtype == jnp.float32 else jnp.uint64
    one = np.array(1.0, dtype).view(uint)

    def draw(words, minval, maxval):
        b0, b1 = threefry2x32(words, *_counters(tuple(shape)))
        if dtype == jnp.float32:
            bits = b0 ^ b1
        else:
            bits = (b0.astype(jnp.uint64) << jnp.uint64(32)) | b1.astype(jnp.uint64)
        mantissa = (bits >> uint(finfo.bits - finfo.nmant)) | jnp.asarray(one, uint)  # a float in [1, 2)
        floats = jax.lax.bitcast_convert_type(mantissa, dtype) - jnp.asarray(1.0, dtype)
        return jnp.maximum(minval, floats * (maxval - minval) + minval)

    words = _words(key)
    minval, maxval = jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype)
    return apart(draw, words, minval, maxval)
