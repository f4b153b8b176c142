"""Vectorised trials (ftlab/steppers/stacked.py through ftlab/loop.py): K runs trained as one vmapped step end where the same runs trained one
by one do, each with its own metrics, early stopping, divergence and checkpoints."""
import json
import os

import jax
import numpy as np
import pytest
from conftest import small_config

from ftlab import checkpoints, compiled, loop
from ftlab.outcome import Diverged
from ftlab.plan import make_plan


def trial_configs():
  """Four runs that differ only in traced values: learning rate, weight decay, dropout, label smoothing, seed; the
  second stops early (patience 1), the last diverges (lr 1e30)."""
  settings = [dict(lr=3e-3, wd=0.0, dropout=0.0, smoothing=0.0, seed=0, patience=100),
              dict(lr=1e-4, wd=1e-2, dropout=0.2, smoothing=0.1, seed=1, patience=1),
              dict(lr=1e-2, wd=1e-4, dropout=0.1, smoothing=0.0, seed=2, patience=100),
              dict(lr=1e30, wd=0.0, dropout=0.0, smoothing=0.0, seed=0, patience=100)]
  configs = []
  for s in settings:
    c = small_config()
    c.optimizer.learning_rate, c.optimizer.weight_decay = s['lr'], s['wd']
    c.model.dropout_rate, c.train.label_smoothing, c.seed = s['dropout'], s['smoothing'], s['seed']
    c.early_stopping.enabled, c.early_stopping.patience = True, s['patience']
    c.early_stopping.min_delta = 0.5 if s['patience'] == 1 else 0.0  # no evaluation improves by 0.5: stops at 20
    configs.append(c)
  return configs


def run_alone(config, workdir):
  return loop.run_plans([make_plan(config, workdir)])[0]


def metric_rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir, step):
  return checkpoints.restore_params(os.path.join(workdir, 'checkpoints'), step)


@pytest.fixture(scope='module')
def both(tmp_path_factory):
  root = tmp_path_factory.mktemp('vectorized')
  configs = trial_configs()
  alone = [run_alone(c, str(root / f'alone{i}')) for i, c in enumerate(configs)]
  plans = [make_plan(c, str(root / f'vec{i}')) for i, c in enumerate(configs)]
  assert len({p.static_key for p in plans}) == 1  # one group: one compiled step
  together = loop.run_plans(plans)
  return root, alone, together


def test_vectorised_trials_end_where_the_same_trials_run_one_by_one_do(both):
  root, alone, together = both
  for i in range(3):
    a, v = alone[i].summary, together[i].summary
    assert v is not None, together[i].error
    for key in ('best_step', 'final_step', 'stopped_early', 'total_steps'):
      assert v[key] == a[key], (i, key)
    for split in ('validation', 'test', 'train_eval'):
      for name in ('loss', 'accuracy', 'f1_macro'):
        assert v[split][name] == pytest.approx(a[split][name], abs=1e-5), (i, split, name)
    rows_a, rows_v = metric_rows(root / f'alone{i}'), metric_rows(root / f'vec{i}')
    assert [(r['step'], r['split']) for r in rows_v] == [(r['step'], r['split']) for r in rows_a]
    for ra, rv in zip(rows_a, rows_v):
      for name in ('loss', 'accuracy', 'f1_macro', 'learning_rate'):
        if name in ra:
          assert rv[name] == pytest.approx(ra[name], rel=1e-5, abs=1e-6), (i, ra['step'], ra['split'], name)
    pa, pv = final_params(root / f'alone{i}', a['final_step']), final_params(root / f'vec{i}', v['final_step'])
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pv)):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


def test_each_trial_of_a_group_keeps_the_checkpoints_and_data_positions_it_keeps_alone(both):
  """The group's checkpoints go into each trial's own folder at its end (ftlab/group_checkpoints.py): the same steps
  (the early-stopped trial's, and none for the one that diverged before saving) and the same data positions."""
  root, _, _ = both
  for i in range(4):
    alone, vec = root / f'alone{i}' / 'checkpoints', root / f'vec{i}' / 'checkpoints'
    steps = sorted(os.listdir(alone)) if os.path.isdir(alone) else []
    assert (sorted(os.listdir(vec)) if os.path.isdir(vec) else []) == steps, i
    for step in steps:
      data = os.path.join(step, 'data', 'process_0-of-1.json')
      assert (vec / data).read_bytes() == (alone / data).read_bytes(), (i, step)
    assert not os.path.exists(root / f'vec{i}' / 'group_checkpoint.json')
  assert not os.path.exists(root / '.groups')


def test_a_trial_that_stops_early_is_masked_and_its_state_frozen(both):
  root, alone, together = both
  stopped = together[1].summary
  assert stopped['stopped_early'] and stopped['final_step'] == 20 and together[0].summary['final_step'] == 40
  # nothing was saved for it after it stopped, while the others went on
  assert sorted(os.listdir(root / 'vec1' / 'checkpoints')) == ['10', '20']
  assert [r['step'] for r in metric_rows(root / 'vec1') if r['split'] == 'validation'] == [10, 20]


def test_a_diverged_trial_is_reported_and_the_others_go_on(both):
  root, alone, together = both
  err = together[3].error
  assert isinstance(err, Diverged) and isinstance(alone[3].error, Diverged)
  assert err.step == alone[3].error.step and err.last_good is None
  assert not os.path.exists(root / 'vec3' / 'summary.json')
  assert all(o.summary is not None for o in together[:3])


# (seed, batch index): the training batches made NaN. Seed 0 skips step 7, seed 1 steps 12 and 13, and seed 2 steps
# 5, 6 and 7: more than train.skip_nonfinite=2 in a row, so it diverges at step 7.
POISONED = {(0, 6), (1, 11), (1, 12), (2, 4), (2, 5), (2, 6)}


def test_skip_nonfinite_in_a_group_gives_each_trial_what_it_gives_alone(tmp_path, monkeypatch):
  from ftlab.data import pipeline
  batch_of = pipeline.ShuffledBatches.__getitem__

  def poisoned(self, k):
    batch = batch_of(self, k)
    return {**batch, 'image': np.full(batch['image'].shape, np.nan, np.float32)} if (self.seed, k) in POISONED else batch

  monkeypatch.setattr(pipeline.ShuffledBatches, '__getitem__', poisoned)
  configs = [small_config(train__skip_nonfinite=2, train__num_steps=20, optimizer__learning_rate=lr, seed=seed)
             for seed, lr in enumerate((1e-3, 3e-3, 1e-2))]
  alone = [loop.run_plans([make_plan(c, str(tmp_path / f'alone{i}'))])[0] for i, c in enumerate(configs)]
  together = loop.run_plans([make_plan(c, str(tmp_path / f'vec{i}')) for i, c in enumerate(configs)])
  for i in range(2):
    a, v = alone[i].summary, together[i].summary
    assert a['skipped_steps'] == v['skipped_steps'] == i + 1 and v['final_step'] == a['final_step'] == 20
    rows_a, rows_v = metric_rows(tmp_path / f'alone{i}'), metric_rows(tmp_path / f'vec{i}')
    assert [(r['step'], r['split'], r.get('skipped_steps')) for r in rows_v] == [
        (r['step'], r['split'], r.get('skipped_steps')) for r in rows_a]
    for ra, rv in zip(rows_a, rows_v):
      assert rv['loss'] == pytest.approx(ra['loss'], rel=1e-5), (i, ra['step'], ra['split'])
    pa, pv = final_params(tmp_path / f'alone{i}', 20), final_params(tmp_path / f'vec{i}', 20)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pv)):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
  for outcome in (alone[2], together[2]):
    assert isinstance(outcome.error, Diverged) and outcome.error.step == 7 and outcome.error.last_good is None
    assert 'after skipping 2 non-finite steps in a row' in str(outcome.error)


def test_trials_with_different_compiled_steps_are_refused(tmp_path):
  a, b = small_config(), small_config(model__features=[64, 16])
  plans = [make_plan(a, str(tmp_path / 'a')), make_plan(b, str(tmp_path / 'b'))]
  assert plans[0].static_key != plans[1].static_key
  with pytest.raises(ValueError, match='differ only in traced hyperparameters'):
    loop.run_plans(plans)
  compiled.clear()


SHARDED = '''
import json
import jax
from conftest import small_config
from ftlab import loop
from ftlab.plan import make_plan
assert jax.device_count() == 4
losses = {{}}
for shard in (True, False):
  configs = []
  for i in range(4):
    c = small_config(train__num_steps=10, eval__every_steps=10, eval__train_subset=0)
    c.optimizer.learning_rate, c.seed = 1e-3 * (i + 1), i % 2
    configs.append(c)
  plans = [make_plan(c, {root!r} + f'/{{shard}}{{i}}') for i, c in enumerate(configs)]
  losses[shard] = [o.summary['validation']['loss'] for o in loop.run_plans(plans, shard_trials=shard)]
print(json.dumps(losses))
'''


def test_the_trial_axis_sharded_over_devices_gives_the_same_trials(tmp_path):
  """4 trials (two seeds: stacked batches) with their states split over 4 virtual CPU devices, one trial each,
  against the same 4 with the batch split over the devices instead."""
  from conftest import run_ftlab
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4', 'JAX_PLATFORMS': 'cpu'}
  out = run_ftlab(SHARDED.format(root=str(tmp_path)), [], env=env, log_base=str(tmp_path / 'script'))
  assert out.returncode == 0, out.stderr[-3000:]
  losses = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(losses['true'], losses['false'], rtol=1e-5)
  assert len(set(losses['true'])) == 4  # four different trials


# Four trials (two learning rates x two seeds: stacked batches) as one vectorised group, as this sweep defines them.
GROUP = [(1e-3, 0), (1e-3, 1), (3e-3, 0), (3e-3, 1)]
GROUP_SWEEP = '''
from conftest import small_config


def get_config(arg=None):
  return small_config()


def get_sweep(arg=None):
  return {'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3, 3e-3]}, 'seeds': [0, 1], 'vectorize': 4}
'''


@pytest.fixture(scope='module')
def whole_group(tmp_path_factory):
  """The group trained once, never stopped: {sweep trial id: its workdir}."""
  root = tmp_path_factory.mktemp('whole_group')
  workdirs = {f'c{c:03d}-s{seed}': str(root / f'c{c:03d}-s{seed}') for c in range(2) for seed in (0, 1)}
  plans = [make_plan(small_config(optimizer__learning_rate=lr, seed=seed), workdirs[f'c{c:03d}-s{seed}'])
           for c, lr in enumerate((1e-3, 3e-3)) for seed in (0, 1)]
  assert all(o.error is None for o in loop.run_plans(plans))
  return workdirs


def test_a_group_sigkilled_at_a_random_step_and_rerun_ends_bit_identical(whole_group, tmp_path):
  """The group as a sweep (python -m ftlab.sweep, vectorize 4) that kills itself at a step drawn at random; the rerun
  resumes the group from its last checkpoint and every trial ends bit for bit as the group that never stopped."""
  import random
  from conftest import run_ftlab
  from ftlab import compare
  from ftlab.sweeps import records
  (tmp_path / 'group.py').write_text(GROUP_SWEEP)
  sweep_dir = str(tmp_path / 'sweep')
  argv = [f'--config={tmp_path / "group.py"}', f'--workdir={sweep_dir}', '--report=false']
  step = random.Random(18).randrange(1, 40)
  killed = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_KILL': f'step={step}'}, log_base=str(tmp_path / 'k'))
  assert killed.returncode == -9, killed.stderr[-3000:]
  rerun = run_ftlab('ftlab.sweep', argv, log_base=str(tmp_path / 'r'))
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert sorted(r['status'] for r in records.read(sweep_dir)) == ['complete'] * 4
  for run_id, whole in whole_group.items():
    assert compare.differences(whole, os.path.join(sweep_dir, 'trials', run_id)) == [], (step, run_id)


def test_a_group_killed_while_writing_its_trials_checkpoints_at_its_end_ends_bit_identical(whole_group, tmp_path):
  """The group as a sweep killed while its end writes its checkpoints into the trials' own folders (after the first
  trial's step-30 one): the rerun finishes the writing and every trial ends bit for bit as the group that never
  stopped."""
  from conftest import run_ftlab
  from ftlab import compare
  (tmp_path / 'group.py').write_text(GROUP_SWEEP)
  sweep_dir = str(tmp_path / 'sweep')
  argv = [f'--config={tmp_path / "group.py"}', f'--workdir={sweep_dir}', '--report=false']
  killed = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_KILL': 'settle=30/c000-s0'}, log_base=str(tmp_path / 'k'))
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert os.path.isdir(os.path.join(sweep_dir, 'trials', '.groups'))  # its other trials still name it
  rerun = run_ftlab('ftlab.sweep', argv, log_base=str(tmp_path / 'r'))
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert not os.path.exists(os.path.join(sweep_dir, 'trials', '.groups'))
  for run_id, whole in whole_group.items():
    assert compare.differences(whole, os.path.join(sweep_dir, 'trials', run_id)) == [], run_id


def test_a_group_preempted_between_evaluations_resumes_as_a_group_and_ends_as_if_never_stopped(whole_group, tmp_path,
                                                                                              monkeypatch, capsys):
  from ftlab import compare, preemption
  configs = [small_config(optimizer__learning_rate=lr, seed=seed) for lr, seed in GROUP]
  stop_at = {'step': 15}  # between the evaluations at 10 and 20: the checkpoints carry 5 steps of train metrics
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: step == stop_at['step'])
  plans = [make_plan(c, str(tmp_path / f'stopped{i}')) for i, c in enumerate(configs)]
  with pytest.raises(preemption.Preempted, match='saved a checkpoint at step 15'):
    loop.run_plans(plans)
  stop_at['step'] = None
  plans = [make_plan(c, str(tmp_path / f'stopped{i}')) for i, c in enumerate(configs)]
  resumed = loop.run_plans(plans)
  assert all(o.error is None for o in resumed)
  out = capsys.readouterr().out
  assert all(f'resuming {tmp_path / f"stopped{i}"} from step 15' in out for i in range(len(configs)))  # not anew
  for i, whole in enumerate(whole_group.values()):  # metrics rows, summary, kept checkpoints (15's deleted), bit for bit
    assert compare.differences(whole, str(tmp_path / f'stopped{i}')) == []
