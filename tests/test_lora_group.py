"""LoRA trials on one shared base (ftlab/steppers/held_once.py): a vectorised group of LoRA trials holds the frozen
base once, unstacked, in its compiled program, and each trial ends where it ends trained alone."""
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from ftlab import checkpoints, data, loop
from ftlab.initial_state import initial_state
from ftlab.models import lora
from ftlab.plan import make_plan
from ftlab.steppers import StackedStepper, lane_chunks
from ftlab.sweeps import runner

SETTINGS = [dict(rank=2, lr=3e-3, wd=0.0, alpha=4.0, dropout=0.0), dict(rank=4, lr=1e-2, wd=1e-2, alpha=8.0, dropout=0.1),
            dict(rank=1, lr=1e-3, wd=1e-3, alpha=2.0, dropout=0.2)]


def lora_configs(max_rank=4):
  """Three LoRA trials on one base (one seed: one base) that differ in rank (padded to `max_rank`), learning rate,
  weight decay, alpha and the adapters' dropout. eval.mode 'max' on the loss picks the worse evaluation, step 5 of
  10, as the best: each trial restores its best checkpoint at the end (a group restacks those lanes around the base
  it holds once)."""
  return [small_config(lora__target='^backbone/dense_', lora__rank=s['rank'], lora__max_rank=max_rank,
                       lora__alpha=s['alpha'], lora__dropout=s['dropout'], lora__train='^head/',
                       optimizer__learning_rate=s['lr'], optimizer__weight_decay=s['wd'], train__num_steps=10,
                       eval__every_steps=5, eval__metric='loss', eval__mode='max')
          for s in SETTINGS]


def _final_params(workdir, outcome):
  return checkpoints.restore_params(str(workdir / 'checkpoints'), outcome.summary['final_step'])


def test_lora_trials_on_a_shared_base_end_as_they_do_alone(tmp_path):
  # alone: the first at its own width (padding changes nothing), the others padded as in the group (one compile)
  configs = lora_configs(0)[:1] + lora_configs()[1:]
  alone = [loop.run_plans([make_plan(c, str(tmp_path / f'alone{i}'))])[0] for i, c in enumerate(configs)]
  for lanes in (0, 1):  # the group's train step over all 3 lanes at once, then one lane at a time (lanes_at_once)
    plans = [make_plan(c, str(tmp_path / f'group{lanes}_{i}')) for i, c in enumerate(lora_configs())]
    assert len({p.static_key for p in plans}) == 1  # rank (padded), alpha and the adapters' dropout: one group
    together = loop.run_plans(plans, lanes_at_once=lanes)
    for i, (a, v) in enumerate(zip(alone, together)):
      _assert_same_trial(tmp_path, i, a, v, f'group{lanes}_{i}')


def _assert_same_trial(tmp_path, i, a, v, group_dir):
  assert v.summary is not None, v.error
  assert v.summary['best_step'] == a.summary['best_step'] == 5 and v.summary['final_step'] == 10
  for split in ('validation', 'test'):
    assert v.summary[split]['loss'] == pytest.approx(a.summary[split]['loss'], abs=1e-5), (i, split)
  pa, pv = _final_params(tmp_path / f'alone{i}', a), _final_params(tmp_path / group_dir, v)
  rank = SETTINGS[i]['rank']
  for ab in pv['lora'].values():  # the padding past the trial's rank is still exactly zero
    assert not np.asarray(ab['a'])[:, rank:].any() and not np.asarray(ab['b'])[rank:].any()
  pv = {**pv, 'lora': lora.at_rank(pv['lora'], rank)}
  pa = {**pa, 'lora': lora.at_rank(pa['lora'], rank)}
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pv)):
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


def _main_arguments(lowered) -> str:
  """The signature of the lowered program's main function: the parameters the compiled program takes."""
  text = lowered.as_text()
  start = text.index('func.func public @main(')
  return text[start:text.index(') -> (', start)]


def test_the_base_appears_once_in_the_compiled_programs_parameters(tmp_path):
  plans = [make_plan(c, str(tmp_path / f't{i}')) for i, c in enumerate(lora_configs())]
  stepper = StackedStepper(plans)
  trials = [types.SimpleNamespace(take_state=lambda p=p: jax.device_get(initial_state(p)), start_step=0,
                                  iterator=data.train_iterator(p.splits.train, batch_size=32, seed=0)) for p in plans]
  states = stepper.start(trials)
  base = states.params['backbone']['dense_0']['kernel']
  adapter = states.params['lora']['backbone.dense_0']['a']
  assert base.shape == (64, 32) and adapter.shape == (3, 64, 4)  # the base unstacked, the adapters per trial
  held = [x for x, once in zip(jax.tree.leaves(states), stepper.layout.once) if once]
  assert {id(x) for x in held} == {id(x) for x in jax.tree.leaves(states.params['backbone'])}  # the base, no more
  active = np.ones(3, bool)
  signature = _main_arguments(stepper.train_fn.lower(states, stepper.next_batch(trials, active), active))
  assert signature.count('tensor<64x32xf32>') == 1 and 'tensor<3x64x32xf32>' not in signature
  assert 'tensor<3x64x4xf32>' in signature  # each trial's adapter


SWEEP = '''
from ftlab.config import defaults


def get_config(arg=None):
  c = defaults()
  c.model.features = [32]
  c.data.classes = [5, 6, 7, 8, 9]
  c.lora.target = '^backbone/dense_'
  c.train.num_steps, c.train.num_epochs, c.eval.every_steps = 10, 0.0, 5
  return c


def get_sweep(arg=None):
  return {'kind': 'grid', 'params': {'lora.rank': [1, 8, 4], 'lora.alpha': [8.0, 16.0]}, 'vectorize': int(arg or 1)}
'''


@pytest.mark.parametrize('vectorize, width', [(6, 8), (1, 0)])
def test_a_vectorised_sweep_over_the_rank_pads_every_trial_to_its_largest(tmp_path, vectorize, width):
  (tmp_path / 'ranks.py').write_text(textwrap.dedent(SWEEP))
  planner = runner.Planner(str(tmp_path / 'sweep'))
  base, sweep, _ = runner.prepare(f'{tmp_path / "ranks.py"}:{vectorize}', {}, {}, str(tmp_path / 'sweep'),
                                  planner=planner)
  assert base.lora.max_rank == width  # a sweep trained one by one keeps each trial at its own width
  keys = {p.static_key for p in planner._plans.values()}  # pylint: disable=protected-access
  assert len(keys) == (1 if vectorize > 1 else 3)


@pytest.mark.parametrize('batch_axis', [None, 0])
def test_a_step_over_lanes_in_chunks_equals_the_step_over_all_lanes_at_once(batch_axis):
  def step(state, batch):  # a leaf held once ('base') goes in and comes back unchanged
    new = {'base': state['base'], 'w': state['w'] - 0.1 * jnp.tanh(state['w'] @ state['base'] + batch.sum())}
    return new, {'loss': jnp.sum(new['w'] ** 2)}

  rng = np.random.default_rng(0)
  states = {'base': jnp.asarray(rng.normal(size=(3, 3)), jnp.float32),
            'w': jnp.asarray(rng.normal(size=(6, 2, 3)), jnp.float32)}
  batch = jnp.asarray(rng.normal(size=(6, 4) if batch_axis == 0 else (4,)), jnp.float32)
  once = (True, False)  # jax.tree.leaves order: base, w
  vmapped = jax.vmap(step, in_axes=({'base': None, 'w': 0}, batch_axis), out_axes=({'base': None, 'w': 0}, 0))
  whole = vmapped(states, batch)
  assert [lane_chunks.chunk_size(6, n) for n in (0, 1, 2, 4, 5, 6, 9)] == [6, 1, 2, 3, 3, 6, 6]
  for lanes in (1, 2, 4):
    chunked = jax.jit(lambda s, b, n=lanes: lane_chunks.in_chunks(vmapped, s, b, once=once, batch_axis=batch_axis,
                                                                  lanes=n))(states, batch)
    assert chunked[0]['base'] is not None and chunked[0]['base'].shape == (3, 3)
    for x, y in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked)):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)  # float summation order

