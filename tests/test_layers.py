"""ftlab.models.layers: the unrolled-threefry dropout mask is jax.random.bernoulli's, bit for bit."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.models import layers


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
def test_bernoulli_equals_jax_random_bernoulli_bit_for_bit(dtype):
  for shape in ((1,), (3, 7, 11), (4, 3, 16, 16)):
    ours = jax.jit(lambda k, q, shape=shape: layers.bernoulli(k, q, shape))
    ref = jax.jit(lambda k, q, shape=shape: jax.random.bernoulli(k, q, shape))
    for seed in range(3):
      key = jax.random.fold_in(jax.random.key(seed), 7)
      for keep in (0.9, 0.5, 1.0, 0.0):
        p = jnp.asarray(keep, dtype)
        np.testing.assert_array_equal(ours(key, p), ref(key, p))


def test_raw_and_other_keys_fall_back_or_match():
  raw = jax.random.PRNGKey(3)  # a legacy uint32[2] key
  p = jnp.float32(0.7)
  np.testing.assert_array_equal(layers.bernoulli(raw, p, (6, 9)), jax.random.bernoulli(raw, p, (6, 9)))
  rbg = jax.random.key(3, impl='rbg')
  np.testing.assert_array_equal(layers.bernoulli(rbg, p, (6, 9)), jax.random.bernoulli(rbg, p, (6, 9)))


class _Drop(nn.Module):
  @nn.compact
  def __call__(self, x, rate, train):
    return layers.dropout(self, x, rate, train=train)


def test_dropout_is_inverted_dropout_with_a_traced_rate():
  x = jnp.ones((64, 64))
  out = _Drop().apply({}, x, jnp.float32(0.25), True, rngs={'dropout': jax.random.key(0)})
  assert set(np.unique(np.asarray(out)).tolist()) <= {0.0, float(np.float32(1) / np.float32(0.75))}
  assert abs(float((out == 0).mean()) - 0.25) < 0.03
  np.testing.assert_array_equal(_Drop().apply({}, x, jnp.float32(0.25), False), x)
  np.testing.assert_array_equal(_Drop().apply({}, x, jnp.float32(0.0), True, rngs={'dropout': jax.random.key(0)}), x)


def test_bernoulli_under_vmap_over_keys_and_rates_equals_jax():
  """Vectorised trials (one dropout key and rate per trial) draw what each trial would alone."""
  keys = jax.random.split(jax.random.key(5), 3)
  keeps = jnp.asarray([0.9, 0.5, 0.75], jnp.float32)
  ours = jax.jit(jax.vmap(lambda k, q: layers.bernoulli(k, q, (4, 6, 8))))(keys, keeps)
  ref = jax.jit(jax.vmap(lambda k, q: jax.random.bernoulli(k, q, (4, 6, 8))))(keys, keeps)
  np.testing.assert_array_equal(ours, ref)
