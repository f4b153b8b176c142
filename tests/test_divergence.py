"""Divergence: a NaN or Inf step stops the run naming the step and the last good checkpoint, or, with
train.skip_nonfinite, is skipped (nothing but the step count changes) and counted."""
import functools
import json
import os

import jax
import numpy as np
import pytest

from conftest import small_config
from ftlab import data, parallel, train


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(k): np.asarray(v).tobytes() for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]
          if not jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)}


def test_a_skipped_step_changes_nothing_but_the_step_count(tmp_path):
  plan = train.plan(small_config(model__name='cnn', model__features=[8, 8], train__skip_nonfinite=1,
                                schedule__name='constant', schedule__warmup='0'), str(tmp_path))
  state, tx, frozen = train.initial_state(plan)
  step_fn = jax.jit(functools.partial(train.train_step, model=plan.model, task=plan.task, tx=tx, frozen=frozen,
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
  summary = train.train_and_evaluate(small_config(train__skip_nonfinite=2), str(tmp_path))
  assert summary['skipped_steps'] == 1 and summary['final_step'] == 40
  assert 'ftlab: step 7: the loss is nan; the step was skipped (1 in a row, 1 in all' in capsys.readouterr().out
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if r['split'] == 'train']
  assert [r['skipped_steps'] for r in train_rows] == [1, 1, 1, 1]  # evaluations at 10, 20, 30, 40
  assert all(np.isfinite(r['loss']) for r in rows)  # the skipped step's NaN counts in no row


def test_steps_skipped_in_a_row_beyond_the_budget_stop_the_run(tmp_path):
  config = small_config(optimizer__learning_rate=1e30, train__skip_nonfinite=3)
  with pytest.raises(train.Diverged) as err:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(err.value)
  assert 'after skipping 3 non-finite steps in a row, train.skip_nonfinite' in message
  assert 'no checkpoint was saved before it' in message and 'Lower optimizer.learning_rate' in message
  assert not os.path.exists(tmp_path / 'checkpoints' / '10')  # nothing non-finite saved


def test_without_skipping_the_first_nonfinite_step_stops_the_run_naming_the_last_good_checkpoint(tmp_path):
  config = small_config(schedule__name='piecewise', schedule__boundaries=['12'], schedule__values=[1.0, 1e30])
  with pytest.raises(train.Diverged) as err:
    train.train_and_evaluate(config, str(tmp_path))
  assert 13 <= err.value.step < 20 and err.value.last_good == 10
  assert f'the last good checkpoint is step 10 in {tmp_path}/checkpoints' in str(err.value)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10']
