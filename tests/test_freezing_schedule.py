"""Freezing over time: gradual unfreezing, LP-FT and frozen step ranges, with the phase traced (no recompiles)."""
import functools

import jax
import numpy as np
import pytest

from conftest import small_config
from ftlab import data, steps
from ftlab import config as config_lib
from ftlab.initial_state import initial_state
from ftlab.optim import groups
from ftlab.plan import make_plan


def _trajectory(tmp_path, num_steps=10, **overrides):
  """Params after each of `num_steps` train steps (index k = after k steps) and the jitted step's cache size."""
  config = small_config(model__features=[8, 8], schedule__name='constant', schedule__warmup='0',
                        optimizer__weight_decay=0.1, **overrides)
  plan = make_plan(config, str(tmp_path))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen))
  it = data.train_iterator(plan.splits.train, batch_size=32, seed=0)
  leaves = lambda s: {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(s.params)[0]}
  trajectory = [leaves(state)]
  for _ in range(num_steps):
    state, _ = step_fn(state, next(it))
    trajectory.append(leaves(state))
  return trajectory, step_fn._cache_size()


def _first_change(trajectory, path):
  """The number of steps after which `path` first differs from its initial bits (None if never)."""
  start = trajectory[0][path].tobytes()
  return next((k for k, t in enumerate(trajectory) if t[path].tobytes() != start), None)


def _layer(path):  # mlp [8, 8]: dense_0/norm_0 -> 1, dense_1/norm_1 -> 2, head -> 3
  return 3 if path.startswith('head/') else int(path.split('/')[1][-1]) + 1


def test_gradual_unfreezing_releases_one_layer_every_k_steps_from_the_top(tmp_path):
  trajectory, compiles = _trajectory(tmp_path, optimizer__unfreeze_every='3 steps')
  for path in trajectory[0]:
    unfreeze = (3 - _layer(path)) * 3  # head at 0, layer 2 at step 3, layer 1 at step 6
    # bit-identical through step unfreeze - 1, moved by the step numbered `unfreeze` (the (unfreeze+1)-th step)
    assert _first_change(trajectory, path) == unfreeze + 1, path
  assert compiles == 1  # three phase changes, one compilation


def test_lp_ft_trains_only_the_head_first(tmp_path):
  trajectory, compiles = _trajectory(tmp_path, optimizer__lp_ft='4 steps')
  for path in trajectory[0]:
    assert _first_change(trajectory, path) == (1 if path.startswith('head/') else 5), path
  assert compiles == 1


def test_a_group_frozen_for_a_step_range_stops_and_resumes(tmp_path):
  trajectory, compiles = _trajectory(tmp_path, optimizer__groups=[('^head/', {'frozen_steps': [(2, 5)]}),
                                                                  ('', {})])
  kernel = [t['head/kernel'].tobytes() for t in trajectory]
  assert kernel[0] != kernel[1] != kernel[2]  # trains at steps 0 and 1
  assert kernel[2] == kernel[3] == kernel[4] == kernel[5]  # frozen at steps 2, 3, 4: bit-identical
  assert kernel[5] != kernel[6]  # trains again from step 5
  assert compiles == 1


def test_the_plan_shows_freezing_over_time(tmp_path):
  from ftlab.optim import rules as optim_rules
  config = small_config(model__features=[8, 8], optimizer__unfreeze_every='1 epochs')
  p = make_plan(config, str(tmp_path))
  text = optim_rules.describe(p.labels, p.rules, p.variables['params'])
  spe = p.steps_per_epoch
  assert f'all@layer1' in text and f'frozen at steps [0, {2 * spe}), trained otherwise' in text
  assert f'frozen at steps [0, {spe}), trained otherwise' in text


@pytest.mark.parametrize('key,value', [('optimizer__unfreeze_every', 'soon'), ('optimizer__lp_ft', -3)])
def test_bad_durations_are_config_errors(key, value):
  problems = config_lib.validate(small_config(**{key: value}))
  assert any(p.startswith(key.replace('__', '.') + ':') for p in problems), problems
