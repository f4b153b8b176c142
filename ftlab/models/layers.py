"""Layers shared by ftlab's models."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def dropout(module: nn.Module, x: jax.Array, rate: jax.Array, *, train: bool) -> jax.Array:
  """Inverted dropout whose rate may be a traced value (nn.Dropout needs a Python float).

  A sweep over the dropout rate then reuses one compiled step. At rate 0 it is the identity, as nn.Dropout is.
  The mask is `bernoulli(key, 1 - rate, x.shape)`, bit for bit what jax.random.bernoulli draws (see `bernoulli`).
  """
  if not train:
    return x
  keep = 1.0 - jnp.asarray(rate, x.dtype)
  mask = bernoulli(module.make_rng('dropout'), keep, x.shape)
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_UINT = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}


def _threefry2x32(k1, k2, x0, x1):
  """Threefry-2x32 with 20 rounds, unrolled: the hash of jax.random's default generator, as JAX lowers it for
  GPU and TPU. On CPU JAX lowers it as a loop of 5 iterations whose every iteration reads and writes whole arrays
  in memory; unrolled, XLA fuses the 20 rounds into one pass (about 5x faster for dropout masks on 2 cores)."""
  ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
  rotl = lambda v, d: lax.shift_left(v, jnp.uint32(d)) | lax.shift_right_logical(v, jnp.uint32(32 - d))
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ rotl(x1, r)
    x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
  return x0, x1


def bernoulli(key: jax.Array, p: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """jax.random.bernoulli(key, p, shape), bit-identical, with the threefry hash unrolled (see `_threefry2x32`).

  Reproduces jax.random's partitionable threefry bits (the default since JAX 0.5: element i hashes the 64-bit
  counter i) and jax.random.uniform's mantissa construction in p's dtype. Keys of another implementation
  (jax_default_prng_impl 'rbg', ...), or jax_threefry_partitionable=False, go to jax.random.bernoulli itself.
  """
  p = jnp.asarray(p)
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  impl = str(jax.random.key_impl(key)) if typed else jax.config.jax_default_prng_impl
  size = math.prod(shape)
  if (impl != 'threefry2x32' or not jax.config.jax_threefry_partitionable or not 0 < size < 2 ** 32
      or jnp.finfo(p.dtype).bits not in _UINT):
    return jax.random.bernoulli(key, p, shape)
  k = jax.random.key_data(key) if typed else key
  count = lax.iota(jnp.uint32, size).reshape(shape)  # the 64-bit counter's high word is 0 below 2**32 elements
  w0, w1 = _threefry2x32(k[0], k[1], jnp.zeros(shape, jnp.uint32), count)
  finfo = jnp.finfo(p.dtype)
  nbits, nmant = finfo.bits, finfo.nmant
  rng_bits = 8 if nmant < 8 else nbits  # as jax.random.uniform: 8 random bits for bfloat16
  bits = (w0 ^ w1).astype(_UINT[rng_bits]).astype(_UINT[nbits])
  one = np.array(1.0, p.dtype).view(_UINT[nbits])
  floats = lax.bitcast_convert_type(lax.shift_right_logical(bits, _UINT[nbits](rng_bits - nmant)) | one, p.dtype)
  return floats - jnp.array(1.0, p.dtype) < p
