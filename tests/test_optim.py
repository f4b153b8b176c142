"""The optimizer chain: parameter groups, freezing, the weight-decay mask, traced hyperparameters."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import small_config
from ftlab import models, steps, tasks
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.optim import builder, groups, rules as optim_rules


def _params(config):
  model = models.build(config.model, tasks.Task('image', tuple('56789')))
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
  labels, rules = optim_rules.resolve(config.optimizer, params, steps_per_epoch=10, total_steps=total_steps)
  return builder.build(config.optimizer, config.schedule, labels, rules, total_steps=total_steps,
                       steps_per_epoch=10, batch_size=config.train.batch_size)


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


def _sgd(**overrides):
  base = dict(optimizer__name='sgd', optimizer__momentum=0.0, optimizer__weight_decay=0.0,
              optimizer__grad_clip_norm=0.0, optimizer__learning_rate=0.1, schedule__name='constant',
              schedule__warmup='0')
  return small_config(**{**base, **overrides})


def _first_update(config, params, grads=None):
  tx = _build(config, params)
  updates, _ = tx.update(grads or jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  return {p: np.asarray(u) for p, u in zip(groups.param_paths(params), jax.tree.leaves(updates))}


def test_layer_wise_decay_gives_each_layer_lr_times_decay_to_the_distance_from_the_top():
  config = _sgd(optimizer__layer_decay=0.5, model__features=[8, 8])
  params = dict(_params(config))
  params['embed'] = {'embedding': jnp.zeros((3, 2))}  # no layer index: below the first layer (0)
  updates = _first_update(config, params)
  layer = {'embed': 0, 'backbone/dense_0': 1, 'backbone/norm_0': 1, 'backbone/dense_1': 2, 'backbone/norm_1': 2,
           'head': 3}
  for path, u in updates.items():
    l = next(v for k, v in layer.items() if path.startswith(k + '/'))
    np.testing.assert_allclose(u, np.full_like(u, -0.1 * 0.5 ** (3 - l)), rtol=1e-6, err_msg=path)


def test_group_multipliers_for_learning_rate_and_weight_decay():
  config = _sgd(optimizer__weight_decay=0.5,
                optimizer__groups=[('^head/', {'lr_mult': 10.0, 'wd_mult': 0.0}), ('', {'wd_mult': 2.0})])
  params = jax.tree.map(lambda p: p + 1.0, _params(config))
  updates = _first_update(config, params, jax.tree.map(jnp.zeros_like, params))
  for (path, u), p in zip(updates.items(), jax.tree.leaves(params)):
    decayed = not (path.endswith('/bias') or '/norm_' in path)
    expected = 0.0 if path.startswith('head/') or not decayed else -0.1 * 0.5 * 2.0
    np.testing.assert_allclose(u, expected * np.asarray(p), rtol=1e-6, err_msg=path)
  grads_only = _first_update(config, params)
  np.testing.assert_allclose(grads_only['head/kernel'], -1.0, rtol=1e-6)  # lr 0.1 x 10


def test_a_group_can_have_its_own_schedule():
  config = _sgd(schedule__name='linear', optimizer__groups=[('^head/', {'schedule': {'name': 'constant'}}),
                                                            ('', {})])
  params = _params(config)
  tx = _build(config, params, total_steps=10)
  state = tx.init(params)
  ones = jax.tree.map(jnp.ones_like, params)
  for k in range(3):
    updates, state = tx.update(ones, state, params)
  np.testing.assert_allclose(updates['head']['kernel'], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates['backbone']['dense_0']['kernel'], -0.1 * (1 - 2 / 10), rtol=1e-6)


def test_frozen_group_gets_no_update_no_state_and_no_clipping_share():
  config = _sgd(optimizer__grad_clip_norm=1.0, optimizer__groups=[('^backbone/', {'frozen': True}), ('', {})])
  params = _params(config)
  tx = _build(config, params)
  state = tx.init(params)
  assert not any('backbone' in groups.path_str(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(state)[0])
  grads = jax.tree.map(lambda p: jnp.full_like(p, 100.0), params)
  grads['head'] = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params['head'])  # norm well below the clip
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_allclose(updates['head']['kernel'], -0.1 * 1e-3, rtol=1e-5)  # the backbone's huge grads
  assert not any(np.any(np.asarray(u)) for u in jax.tree.leaves(updates['backbone']))  # did not clip the head


def test_groups_must_cover_every_parameter():
  config = _sgd(optimizer__groups=[('^head/', {'lr_mult': 2.0}), ('^nothing/', {})])
  with pytest.raises(groups.GroupError) as err:
    optim_rules.resolve(config.optimizer, _params(config))
  assert "groups[1]='^nothing/'" in str(err.value) and 'parameters in no group: backbone/dense_0/bias' in str(err.value)


def test_optimizer_plan_counts_parameters_per_group():
  config = _sgd(optimizer__freeze='^backbone/dense_0/', optimizer__groups=[('^head/', {'lr_mult': 5.0}), ('', {})])
  params = _params(config)  # dense_0: 64*32+32, head: 16*5+5
  text = optim_rules.describe(*optim_rules.resolve(config.optimizer, params), params)
  rows = {line.split()[0]: line.split() for line in text.splitlines()[2:-1]}
  assert rows['freeze'][2] == '2,080' and rows['freeze'][-1] == 'run'  # 'frozen for the whole run'
  assert rows['groups[0]'][2] == '85' and rows['groups[0]'][3] == '5'
  total = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert text.splitlines()[-1] == f'trainable parameters: {total - 2080:,} of {total:,} ' \
                                  f'({100 * (total - 2080) / total:.1f}%)'


@pytest.mark.parametrize('name', ['adamw', 'sgd'])
def test_gradient_accumulation_equals_one_large_batch(tmp_path, name):
  """4 micro-batches of 16 give the update of one batch of 64: weight decay, class weights and a warm-up + cosine
  schedule counted in optimizer steps included."""
  from ftlab import data
  final = {}
  for k in (1, 4):
    config = small_config(optimizer__name=name, optimizer__weight_decay=0.05, model__dropout_rate=0.0,
                          train__batch_size=64, train__grad_accum_steps=k, schedule__name='cosine',
                          schedule__warmup='2 steps', train__class_weights=[1.0, 2.0, 1.0, 0.5, 1.0])
    plan = make_plan(config, str(tmp_path / str(k)))
    state = initial_state(plan)
    step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen, accum_steps=k))
    it = data.train_iterator(plan.splits.train, batch_size=64, seed=0)
    for _ in range(6):
      state, metrics = step_fn(state, next(it))
    final[k] = (jax.tree.leaves(state.params), float(metrics.loss.compute()))
  for a, b in zip(final[1][0], final[4][0]):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
  assert final[1][1] == pytest.approx(final[4][1], rel=1e-6)


@pytest.mark.parametrize('scaling, batch, expected', [('none', 128, 1e-3), ('linear', 128, 4e-3), ('linear', 16, 5e-4),
                                                      ('sqrt', 128, 2e-3)])
def test_the_learning_rate_scales_with_the_batch_size_when_asked(scaling, batch, expected):
  config = small_config()
  config.optimizer.learning_rate, config.optimizer.base_batch_size = 1e-3, 32
  config.optimizer.lr_batch_scaling = scaling
  config.train.batch_size = batch
  params = {'backbone': {'dense_1': {'kernel': jnp.ones((3, 2)), 'bias': jnp.zeros(2)}}}
  tx = _build(config, params)
  assert builder.hyperparams(tx.init(params))['learning_rate'] == pytest.approx(expected, rel=1e-6)
