"""Layers shared by ftlab's models."""
import flax.linen as nn
import jax
import jax.numpy as jnp


def dropout(module: nn.Module, x: jax.Array, rate: jax.Array, *, train: bool) -> jax.Array:
  """Inverted dropout whose rate may be a traced value (nn.Dropout needs a Python float).

  A sweep over the dropout rate then reuses one compiled step. At rate 0 it is the identity, as nn.Dropout is.
  """
  if not train:
    return x
  keep = 1.0 - jnp.asarray(rate, x.dtype)
  mask = jax.random.bernoulli(module.make_rng('dropout'), keep, x.shape)
  return jnp.where(mask, x / keep, jnp.zeros_like(x))
