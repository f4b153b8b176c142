"""Divergence: a NaN or Inf step stops the run naming the step and the last good checkpoint, or, with
train.skip_nonfinite, is skipped (nothing but the step count changes) and counted."""
import functools
import json
import os

import jax
import numpy as np
import pytest

from conftest import assert_same_run, small_config
from ftlab import data, faults, loop, parallel, steps
from ftlab.initial_state import initial_state
from ftlab.outcome import Diverged
from ftlab.plan import make_plan


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(k): np.asarray(v).tobytes() for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]
          if not jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)}


def test_a_skipped_step_changes_nothing_but_the_step_count(tmp_path):
  plan = make_plan(small_config(model__name='cnn', model__features=[8, 8], train__skip_nonfinite=1,
                                schedule__name='constant', schedule__warmup='0'), str(tmp_path))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen,
                                      skip_nonfinite=True))
  batch = next(data.train_iterator(plan.splits.train, batch_size=32, seed=0))
  good, m = step_fn(state, batch)
  assert np.isfinite(float(m.loss.total)) and _leaves(good.params) != _leaves(state.params)
  poisoned = {**batch, 'image': batch['image'].astype(np.float32)}
  poisoned['image'][3, 0, 0, 0] = np.nan  # one pixel of one example
  skipped, m = step_fn(good, poisoned)
  assert np.isnan(float(m.loss.total))  # how the loop sees the skip
  assert int(skipped.step) == int(good.step) + 1
  for part in ('params', 'opt_state', 'model_state'):  # batch statistics too: the CNN has batch norm
    assert _leaves(getattr(skipped, part)) == _leaves(getattr(good, part)), part


def test_a_run_skips_a_poisoned_batch_counts_it_and_goes_on(tmp_path, monkeypatch, capsys):
  calls = {'n': 0}
  place = parallel.Layout.place_batch

  def poison_the_seventh(self, batch):
    calls['n'] += 1
    if calls['n'] == 7:
      batch = {**batch, 'image': np.full(batch['image'].shape, np.nan, np.float32)}
    return place(self, batch)

  monkeypatch.setattr(parallel.Layout, 'place_batch', poison_the_seventh)
  summary = loop.train_and_evaluate(make_plan(small_config(train__skip_nonfinite=2), str(tmp_path)))
  assert summary['skipped_steps'] == 1 and summary['final_step'] == 40
  assert 'ftlab: step 7: the loss is nan; the step was skipped (1 in a row, 1 in all' in capsys.readouterr().out
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if r['split'] == 'train']
  assert [r['skipped_steps'] for r in train_rows] == [1, 1, 1, 1]  # evaluations at 10, 20, 30, 40
  assert all(np.isfinite(r['loss']) for r in rows)  # the skipped step's NaN counts in no row


def test_steps_skipped_in_a_row_beyond_the_budget_stop_the_run(tmp_path):
  config = small_config(optimizer__learning_rate=1e30, train__skip_nonfinite=3)
  with pytest.raises(Diverged) as err:
    loop.train_and_evaluate(make_plan(config, str(tmp_path)))
  message = str(err.value)
  assert 'after skipping 3 non-finite steps in a row, train.skip_nonfinite' in message
  assert 'no checkpoint was saved before it' in message and 'Lower optimizer.learning_rate' in message
  assert not os.path.exists(tmp_path / 'checkpoints' / '10')  # nothing non-finite saved


def test_without_skipping_the_first_nonfinite_step_stops_the_run_naming_the_last_good_checkpoint(tmp_path):
  config = small_config(schedule__name='piecewise', schedule__boundaries=['12'], schedule__values=[1.0, 1e30])
  with pytest.raises(Diverged) as err:
    loop.train_and_evaluate(make_plan(config, str(tmp_path)))
  assert 13 <= err.value.step < 20 and err.value.last_good == 10
  assert f'the last good checkpoint is step 10 in {tmp_path}/checkpoints' in str(err.value)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10']


class _Crash(Exception):
  """Stands for a process killed right after a step (before any further save)."""


def test_a_resumed_run_whose_steps_are_all_skipped_before_its_next_save_keeps_the_carried_train_metrics(
    tmp_path, monkeypatch):
  """Checkpoints every 2 steps, evaluations every 10. Killed after step 5, the run resumes from step 4 carrying
  the train metrics of steps 1-4; steps 5 and 6 are skipped (NaN), so its checkpoint at 6 has no metrics of its own
  and must keep the carried ones. Killed again after step 7, it resumes from 6 and ends bit-identical to a run that
  skipped the same steps without stopping (the train row at step 10 included)."""
  config = small_config(train__skip_nonfinite=3, checkpoint__every_steps=2)
  place = parallel.Layout.place_batch
  run = {'next_step': 1, 'crash_after': None}

  def poison_steps_5_and_6(self, batch):
    if run['next_step'] in (5, 6):
      batch = {**batch, 'image': np.full(batch['image'].shape, np.nan, np.float32)}
    run['next_step'] += 1
    return place(self, batch)

  def crash(name, value=None, where=''):
    if name == 'step' and value == run['crash_after']:
      raise _Crash(value)

  monkeypatch.setattr(parallel.Layout, 'place_batch', poison_steps_5_and_6)
  monkeypatch.setattr(faults, 'point', crash)
  whole = str(tmp_path / 'whole')
  assert loop.train_and_evaluate(make_plan(config, whole))['skipped_steps'] == 2
  resumed = str(tmp_path / 'resumed')
  for crash_after, resumes_from in ((5, 1), (7, 5)):
    run.update(next_step=resumes_from, crash_after=crash_after)
    with pytest.raises(_Crash):
      loop.train_and_evaluate(make_plan(config, resumed))
  run.update(next_step=7, crash_after=None)
  assert loop.train_and_evaluate(make_plan(config, resumed))['skipped_steps'] == 2
  assert_same_run(whole, resumed)
  with open(os.path.join(resumed, 'metrics.jsonl')) as f:
    first = [json.loads(line) for line in f][0]
  assert first['split'] == 'train' and first['step'] == 10 and first['skipped_steps'] == 2
