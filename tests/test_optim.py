"""The optimizer chain: parameter groups, freezing, the weight-decay mask, traced hyperparameters."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import small_config
from ftlab import models
from ftlab.optim import builder, groups


def _params(config):
  model = models.build(config.model, 5)
  return model.init({'params': jax.random.key(0)}, jnp.zeros((1, 8, 8, 1)), dropout_rate=0.0)['params']


def test_paths_are_slash_joined():
  paths = groups.param_paths(_params(small_config()))
  assert 'backbone/dense_0/kernel' in paths and 'backbone/norm_0/scale' in paths and 'head/bias' in paths


def test_pattern_matching_nothing_is_an_error_naming_it():
  params = _params(small_config())
  with pytest.raises(groups.GroupError, match=r"frozen='\^backbon/'.*backbone/dense_0"):
    groups.assign(params, [('frozen', '^backbon/'), ('rest', '')], origin='optimizer.freeze')


def test_uncovered_parameters_are_an_error_naming_them():
  params = _params(small_config())
  with pytest.raises(groups.GroupError, match=r'parameters in no group: .*head/bias'):
    groups.assign(params, [('backbone', '^backbone/')])


def test_first_matching_group_wins():
  labels = groups.assign(_params(small_config()), [('head', '^head/'), ('norms', 'norm'), ('rest', '')])
  assert labels['head']['kernel'] == 'head'
  assert labels['backbone']['norm_1']['scale'] == 'norms'
  assert labels['backbone']['dense_1']['kernel'] == 'rest'


def _build(config, params, total_steps=100):
  return builder.build(config.optimizer, config.schedule, params, total_steps=total_steps, steps_per_epoch=10)


def test_frozen_parameters_get_zero_updates_and_no_optimizer_state():
  config = small_config(optimizer__freeze='^backbone/', schedule__name='constant', schedule__warmup='0')
  params = _params(config)
  tx = _build(config, params)
  state = tx.init(params)
  leaves_with_state = [groups.path_str(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert not any('backbone' in p for p in leaves_with_state), leaves_with_state
  assert any('head' in p for p in leaves_with_state)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  for path, u in zip(groups.param_paths(params), jax.tree.leaves(updates)):
    if path.startswith('backbone/'):
      assert not np.any(np.asarray(u)), path
    else:
      assert np.all(np.asarray(u) != 0), path


def test_no_weight_decay_on_masked_parameters():
  """With zero gradients, AdamW's update is exactly -lr * wd * p where decay applies and 0 where masked."""
  config = small_config(optimizer__weight_decay=0.5, optimizer__learning_rate=0.1, optimizer__grad_clip_norm=0.0,
                        schedule__name='constant', schedule__warmup='0')
  params = _params(config)
  params = jax.tree.map(lambda p: p + 1.0, params)  # no zeros, so a missing decay would show
  tx = _build(config, params)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  for path, u, p in zip(groups.param_paths(params), jax.tree.leaves(updates), jax.tree.leaves(params)):
    masked = path.endswith('/bias') or '/norm_' in path and path.endswith('/scale')
    expected = np.zeros_like(p) if masked else -0.1 * 0.5 * np.asarray(p)
    np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6, err_msg=path)


def test_decay_mask_goes_by_path_not_by_rank():
  """A 1-D kernel is decayed and a 2-D parameter named bias is not: the mask reads names, not shapes."""
  config = small_config(optimizer__weight_decay=1.0, optimizer__learning_rate=1.0, optimizer__grad_clip_norm=0.0,
                        schedule__name='constant', schedule__warmup='0')
  params = {'layer': {'kernel': jnp.ones((3,)), 'bias': jnp.ones((2, 2))}, 'LayerNorm_0': {'scale': jnp.ones(3)}}
  tx = _build(config, params)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_array_equal(updates['layer']['kernel'], -np.ones(3))
  np.testing.assert_array_equal(updates['layer']['bias'], np.zeros((2, 2)))
  np.testing.assert_array_equal(updates['LayerNorm_0']['scale'], np.zeros(3))


def test_learning_rate_follows_the_schedule_times_the_traced_peak():
  config = small_config(optimizer__name='sgd', optimizer__momentum=0.0, optimizer__weight_decay=0.0,
                        optimizer__grad_clip_norm=0.0, schedule__name='linear', schedule__warmup='0')
  params = {'w': jnp.zeros(())}
  tx = _build(config, params, total_steps=10)
  state = builder.set_hyperparams(tx.init(params), learning_rate=jnp.float32(2.0))
  seen = []
  for _ in range(4):
    updates, state = tx.update({'w': jnp.float32(1.0)}, state, params)
    seen.append(float(updates['w']))
  np.testing.assert_allclose(seen, [-2.0 * (1 - k / 10) for k in range(4)], rtol=1e-6)


@pytest.mark.parametrize('name', ['adamw', 'sgd', 'adafactor'])
def test_each_optimizer_reduces_a_quadratic(name):
  config = small_config(optimizer__name=name, optimizer__learning_rate=0.05, schedule__name='constant',
                        schedule__warmup='0', optimizer__weight_decay=0.0)
  params = {'w': jnp.full((4, 4), 3.0)}
  tx = _build(config, params)
  state = tx.init(params)
  loss = lambda p: jnp.sum(p['w'] ** 2)
  for _ in range(50):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.5 * 16 * 9
