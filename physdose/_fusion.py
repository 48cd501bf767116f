"""A fusion boundary that XLA keeps on CPU: a computation run on its own, into its own buffer.

XLA fuses a producer into each fusion that reads it and computes it again in each. For
cheap producers that is right; for a random-number hash read by several consumers, or for a
voxel index computed from float positions inside a gather, it is not (measured on the Monte
Carlo's step at 16384 lanes: the hash computed 29 times over instead of 7; a gather with its
index fused in 4-5x slower than one whose index is already in memory).
`jax.lax.optimization_barrier` does not help there, since XLA removes it before fusing.

`apart(fn, *args)` runs `fn` as both branches of a `lax.cond`: a conditional's branches are
computations of their own, so what `fn` computes is materialised once, and whichever branch
runs the result is `fn(*args)`. The predicate is read from the first argument so that XLA
cannot fold it away. Under `vmap` the conditional becomes a select of both branches (twice
the work, the same result). Gradients flow through it as through `lax.cond`.
"""

import jax
import jax.numpy as jnp


def apart(fn, *args):
    """`fn(*args)`, computed once in a computation of its own (see the module docstring)."""
    first = jnp.ravel(jax.tree.leaves(args)[0])[0]
    return jax.lax.cond(first == 0, fn, fn, *args)
