"""LoRA trials on one shared base (ftlab/steppers/held_once.py): a vectorised group of LoRA trials holds the frozen
base once, unstacked, in its compiled program, and each trial ends where it ends trained alone."""
import types

import jax
import numpy as np
import pytest

from conftest import small_config
from ftlab import checkpoints, data, loop
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.steppers import StackedStepper

SETTINGS = [dict(lr=3e-3, wd=0.0, alpha=4.0, dropout=0.0), dict(lr=1e-2, wd=1e-2, alpha=8.0, dropout=0.1),
            dict(lr=1e-3, wd=1e-3, alpha=2.0, dropout=0.2)]


def lora_configs():
  """Three LoRA trials on one base (one seed: one base) that differ in learning rate, weight decay, alpha and the
  adapters' dropout."""
  return [small_config(lora__target='^backbone/dense_', lora__rank=2, lora__alpha=s['alpha'], lora__dropout=s['dropout'],
                       lora__train='^head/', optimizer__learning_rate=s['lr'], optimizer__weight_decay=s['wd'],
                       train__num_steps=20) for s in SETTINGS]


def test_lora_trials_on_a_shared_base_end_as_they_do_alone(tmp_path):
  configs = lora_configs()
  alone = [loop.run_plans([make_plan(c, str(tmp_path / f'alone{i}'))])[0] for i, c in enumerate(configs)]
  plans = [make_plan(c, str(tmp_path / f'group{i}')) for i, c in enumerate(configs)]
  assert len({p.static_key for p in plans}) == 1  # alpha and the adapters' dropout are traced: one group
  together = loop.run_plans(plans)
  for i, (a, v) in enumerate(zip(alone, together)):
    assert v.summary is not None, v.error
    for split in ('validation', 'test'):
      assert v.summary[split]['loss'] == pytest.approx(a.summary[split]['loss'], abs=1e-5), (i, split)
    ckpt = lambda name, o: checkpoints.restore_params(str(tmp_path / name / 'checkpoints'), o.summary['final_step'])
    for x, y in zip(jax.tree.leaves(ckpt(f'alone{i}', a)), jax.tree.leaves(ckpt(f'group{i}', v))):
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
  assert base.shape == (64, 32) and adapter.shape == (3, 64, 2)  # the base unstacked, the adapters per trial
  once, stacked = stepper.layout.bytes_held(states)
  base_bytes = sum(x.nbytes for k, x in states.params.items() if k == 'backbone' for x in jax.tree.leaves(x))
  assert once == base_bytes
  active = np.ones(3, bool)
  signature = _main_arguments(stepper.train_fn.lower(states, stepper.next_batch(trials, active), active))
  assert signature.count('tensor<64x32xf32>') == 1 and 'tensor<3x64x32xf32>' not in signature
  assert 'tensor<3x64x2xf32>' in signature  # each trial's adapter
