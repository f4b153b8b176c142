"""LoRA: only adapters (and lora.train) change, the merged model computes base + adapter, errors name modules."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from ftlab import data, loop, steps
from ftlab import config as config_lib
from ftlab.initial_state import initial_state
from ftlab.models import lora
from ftlab.optim import groups, rules as optim_rules
from ftlab.plan import make_plan


def _lora_config(**overrides):
  base = dict(lora__target='^backbone/dense_', lora__rank=2, lora__alpha=4.0, model__dropout_rate=0.0,
              schedule__name='constant', schedule__warmup='0')
  return small_config(**{**base, **overrides})


def _leaves(tree):
  return {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _train(tmp_path, config, num_steps=5):
  p = make_plan(config, str(tmp_path))
  state = initial_state(p)
  step_fn = jax.jit(functools.partial(steps.train_step, model=p.model, task=p.task, tx=p.tx, frozen=p.frozen))
  it = data.train_iterator(p.splits.train, batch_size=32, seed=0)
  before = _leaves(state.params)
  for _ in range(num_steps):
    state, _ = step_fn(state, next(it))
  return p, before, state


@pytest.mark.parametrize('train_regex', ['', '^head/'])
def test_only_adapters_and_lora_train_change(tmp_path, train_regex):
  _, before, state = _train(tmp_path, _lora_config(lora__train=train_regex))
  after = _leaves(state.params)
  assert {'lora/backbone.dense_0/a', 'lora/backbone.dense_0/b', 'lora/backbone.dense_1/b'} <= after.keys()
  for path in before:
    trains = path.startswith('lora/') or (train_regex and path.startswith('head/'))
    assert (before[path].tobytes() != after[path].tobytes()) == bool(trains), path


def test_merged_model_computes_base_plus_adapter(tmp_path):
  p, _, state = _train(tmp_path, _lora_config(lora__dropout=0.2))
  images = jnp.asarray(p.splits.validation.images[:16])
  forward = lambda model, params: jax.jit(lambda x: model.apply({'params': params}, x, dropout_rate=0.0))(images)
  adapted = forward(p.model, state.params)
  merged = lora.merge(state.params, scale=4.0 / 2)
  plain = forward(p.model.model, merged)
  assert 'lora' not in merged and np.abs(np.asarray(merged['backbone']['dense_0']['kernel'])
                                         - np.asarray(state.params['backbone']['dense_0']['kernel'])).max() > 0
  np.testing.assert_allclose(plain, adapted, rtol=1e-5, atol=1e-5)


def test_fresh_adapters_leave_the_model_unchanged(tmp_path):
  p = make_plan(_lora_config(), str(tmp_path))
  state = initial_state(p)
  images = jnp.asarray(p.splits.validation.images[:8])
  base, _ = lora.split(state.params)
  np.testing.assert_array_equal(p.model.apply({'params': state.params}, images, dropout_rate=0.0),
                                p.model.model.apply({'params': base}, images, dropout_rate=0.0))


def test_plan_reports_the_trained_parameter_count(tmp_path):
  p = make_plan(_lora_config(lora__train=''), str(tmp_path))
  state = initial_state(p)
  text = optim_rules.describe(p.labels, p.rules, p.variables['params'])
  adapters = (64 + 32) * 2 + (32 + 16) * 2  # rank 2 on dense_0 (64->32) and dense_1 (32->16)
  total = sum(v.size for v in jax.tree.leaves(state.params))
  assert text.splitlines()[-1].startswith(f'trainable parameters: {adapters:,} of {total:,}')


def test_lora_run_exports_its_best_checkpoint_merged(tmp_path):
  from ftlab import checkpoints
  summary = loop.train_and_evaluate(make_plan(_lora_config(), str(tmp_path)))
  best = checkpoints.restore_params(os.path.join(tmp_path, 'checkpoints'), summary['best_step'])
  expected = _leaves(lora.merge(best, scale=4.0 / 2))
  with np.load(os.path.join(tmp_path, 'merged_params.npz'), allow_pickle=False) as f:
    assert sorted(f.files) == sorted(expected)  # the base's paths, no adapters
    for path in expected:
      np.testing.assert_allclose(f[path], expected[path], rtol=1e-6, err_msg=path)
  assert not np.array_equal(expected['backbone/dense_0/kernel'], best['backbone']['dense_0']['kernel'])


def test_target_matching_no_kernel_is_an_error_naming_the_modules(tmp_path):
  with pytest.raises(config_lib.ConfigError, match=r"lora.target: '\^encoder/' matches no dense kernel; "
                                                   r'modules with one: backbone/dense_0'):
    make_plan(_lora_config(lora__target='^encoder/'), str(tmp_path))
  problems = config_lib.validate(_lora_config(optimizer__groups=[('', {})], lora__rank=0))
  assert any(p.startswith('lora.rank:') for p in problems)
  assert any(p.startswith('lora.target / optimizer.groups:') for p in problems)
