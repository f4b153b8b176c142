"""The engine end to end on digits: freezing, outputs, checkpoints, resumption after a kill, early stopping."""
import functools
import itertools
import json
import logging
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from conftest import ROOT, run_ftlab, small_config
from ftlab import checkpoints, data, loop, quiet, steps
from ftlab import state as state_lib
from ftlab.initial_state import initial_state
from ftlab.optim import groups
from ftlab.plan import make_plan
from ftlab.steppers import stacked


def _leaves(tree):
  def host(v):
    return np.asarray(jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v)
  return {groups.path_str(kp): host(v) for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _final_params(workdir, step):
  return _leaves(checkpoints.restore_params(os.path.join(workdir, 'checkpoints'), step))


@pytest.mark.parametrize('model', ['mlp', 'cnn'])
def test_frozen_parameters_are_bit_identical_and_the_rest_moves(tmp_path, model):
  config = small_config(optimizer__freeze='^backbone/', model__name=model, model__features=[8, 8])
  plan = make_plan(config, str(tmp_path))
  initial = _leaves(initial_state(plan).params)
  loop.train_and_evaluate(plan)
  final = _final_params(str(tmp_path), 40)
  assert initial.keys() == final.keys()
  for path in initial:
    if path.startswith('backbone/'):
      assert initial[path].tobytes() == final[path].tobytes(), path
    else:
      assert not np.array_equal(initial[path], final[path]), f'{path} did not train'


def test_run_writes_config_metrics_summary_tensorboard_and_checkpoints(tmp_path):
  workdir = str(tmp_path)
  summary = loop.train_and_evaluate(make_plan(small_config(), workdir))
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'config.json', 'metrics.jsonl', 'optimizer_plan.txt',
                                         'summary.json', 'tensorboard']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tensorboard')))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  validation = [r for r in rows if r['split'] == 'validation']
  assert [r['step'] for r in validation] == [10, 20, 30, 40]
  for r in validation:
    for key in ('loss', 'accuracy', 'precision_macro', 'recall_macro', 'f1_macro', 'f1_per_class',
                'confusion_matrix', 'gap_loss', 'gap_accuracy', 'gap_f1_macro'):
      assert key in r, key
    assert sum(map(sum, r['confusion_matrix'])) == len(data.load(small_config().data).validation)
  assert {r['split'] for r in rows} == {'train', 'train_eval', 'validation', 'test'}
  assert all('learning_rate' in r for r in rows if r['split'] == 'train')
  best = max(validation, key=lambda r: r['f1_macro'])['f1_macro']
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f) == summary
  assert summary['validation']['f1_macro'] == pytest.approx(best)
  by_step = {r['step']: r for r in validation}
  assert by_step[summary['best_step']]['f1_macro'] == pytest.approx(best)
  test_rows = [r for r in rows if r['split'] == 'test']
  assert len(test_rows) == 1 and test_rows[0]['step'] == summary['best_step']
  assert test_rows[0]['f1_macro'] == summary['test']['f1_macro']
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  assert summary['best_step'] in steps and 40 in steps and len(steps) <= 3  # keep=2 latest + the best


def test_checkpoint_round_trip_is_exact(tmp_path):
  plan = make_plan(small_config(model__name='cnn', model__features=[4]), str(tmp_path / 'unused'))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen))
  it = data.train_iterator(plan.splits.train, batch_size=32, seed=0)
  for _ in range(3):
    state, _ = step_fn(state, next(it))
  ckpts = checkpoints.Checkpoints(str(tmp_path / 'ckpt'), keep=2, mode='max')
  ckpts.save(3, state, it, {'best': 0.5, 'bad_evals': 1, 'stopped_early': False}, metric=0.5)
  ckpts.wait()
  expected_batch = next(it)
  fresh_state = initial_state(plan)
  fresh_it = data.train_iterator(plan.splits.train, batch_size=32, seed=0)
  restored, loop = ckpts.restore(3, fresh_state, fresh_it)
  assert loop == {'best': 0.5, 'bad_evals': 1, 'stopped_early': False}
  a, b = _leaves(state), _leaves(restored)
  assert a.keys() == b.keys() and {'rng', 'model_state/batch_stats/backbone/batchnorm_0/mean'} <= a.keys()
  for path in a:
    assert a[path].dtype == b[path].dtype and a[path].tobytes() == b[path].tobytes(), path
  batch = next(fresh_it)
  np.testing.assert_array_equal(batch['label'], expected_batch['label'])
  np.testing.assert_array_equal(batch['image'], expected_batch['image'])


def test_a_group_checkpoints_lane_restores_exactly_and_params_reads_see_a_rewritten_step(tmp_path):
  """A vectorised group saves its stacked state once per save step and writes each trial's lane into the trial's
  own folder at its end (ftlab/group_checkpoints.py): the lane restores bit for bit, as device arrays, into a run's
  template. restore_params caches a source run's parameters per process, keyed by the step's commit: a run
  rewritten in the same folder is read again."""
  from ftlab import group_checkpoints
  plan = make_plan(small_config(model__name='cnn', model__features=[4]), str(tmp_path / 'unused'))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen))
  it = data.train_iterator(plan.splits.train, batch_size=32, seed=0)
  other, _ = step_fn(state, next(it))
  both = jax.device_put(stacked.stack([state, other]))
  workdirs = [str(tmp_path / 'first'), str(tmp_path / 'second')]
  for workdir in workdirs:
    os.makedirs(workdir)
  group = group_checkpoints.Group(workdirs, both, (False,) * len(jax.tree.leaves(both)), keep=2, mode='max')
  lanes = {i: {'loop': {'best': None}, 'data': it.get_state(), 'metric': 0.5} for i in range(2)}
  group.save(1, both, lanes)
  directory = os.path.join(workdirs[1], 'checkpoints')
  ckpts = checkpoints.Checkpoints(directory, keep=2, mode='max')
  group.end({workdirs[1]: ckpts})
  restored, _ = ckpts.restore(1, state)
  a, b = _leaves(other), _leaves(restored)
  assert a.keys() == b.keys() and 'rng' in a
  for path in a:
    assert a[path].dtype == b[path].dtype and a[path].tobytes() == b[path].tobytes(), path
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(restored))
  assert os.path.isdir(group.directory)  # the first trial still names it
  first = checkpoints.restore_params(directory, 1)
  assert checkpoints.restore_params(directory, 1) is first  # read once
  ckpts.close()
  shutil.rmtree(directory)
  ckpts = checkpoints.Checkpoints(directory, keep=2, mode='max')
  ckpts.save(1, jax.device_get(state), it, {'best': None}, metric=0.5)
  ckpts.wait()
  ckpts.close()
  again = _leaves({'params': checkpoints.restore_params(directory, 1)})
  assert again.keys() == {f'params/{k}' for k in _leaves(first)}
  for path, value in _leaves(state.params).items():
    assert again[f'params/{path}'].tobytes() == value.tobytes(), path


def test_traced_hyperparameters_change_results_without_recompiling(tmp_path):
  plan = make_plan(small_config(schedule__name='constant', schedule__warmup='0'), str(tmp_path))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen))
  batch = next(data.train_iterator(plan.splits.train, batch_size=32, seed=0))
  base, _ = step_fn(state, batch)
  changed = state_lib.set_hyperparams(state, learning_rate=0.5, weight_decay=0.1, dropout_rate=0.3,
                                  attention_dropout_rate=0.05, head_dropout_rate=0.2, label_smoothing=0.2,
                                  class_weights=[1.0, 2.0, 1.0, 1.0, 3.0])
  values = state_lib.hyperparams(changed)
  assert values.pop('class_weights') == [1.0, 2.0, 1.0, 1.0, 3.0]
  assert values == pytest.approx({'learning_rate': 0.5, 'weight_decay': 0.1, 'dropout_rate': 0.3,
                                  'attention_dropout_rate': 0.05, 'head_dropout_rate': 0.2, 'label_smoothing': 0.2})
  other, metrics = step_fn(changed, batch)
  assert step_fn._cache_size() == 1
  assert not np.array_equal(base.params['head']['kernel'], other.params['head']['kernel'])
  # label smoothing and dropout reach the loss: the same params give another training loss
  _, m0 = step_fn(state, batch)
  smoothed, m1 = step_fn(state_lib.set_hyperparams(state, label_smoothing=0.5), batch)
  assert float(m0.loss.compute()) != float(m1.loss.compute())
  # class weights reach the gradient
  reweighted, _ = step_fn(state_lib.set_hyperparams(state, class_weights=[5.0, 1.0, 1.0, 1.0, 1.0]), batch)
  assert not np.array_equal(base.params['head']['kernel'], reweighted.params['head']['kernel'])
  assert step_fn._cache_size() == 1


def _write_config(tmp_path, **overrides):
  """A config file for subprocess runs: small_config() with 60 steps and `overrides` ('a__b': value)."""
  overrides = {'train__num_steps': 60, **overrides}
  path = tmp_path / 'tiny.py'
  path.write_text('from conftest import small_config\n\n'
                  f'def get_config(arg=None):\n  return small_config(**{overrides!r})\n')
  return str(path)


_runs = itertools.count()


def _run(config_path, workdir, env=None):
  """`python -m ftlab.main` on the config file, as a process forked from the test's fork server."""
  return run_ftlab('ftlab.main', [f'--config={config_path}', f'--workdir={workdir}'], env=env,
                   log_base=f'{workdir}.log{next(_runs)}')


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _summary(workdir):
  with open(os.path.join(workdir, 'summary.json')) as f:
    s = json.load(f)
  s.pop('train_seconds_this_session')
  return s


def test_early_stopping_stops_and_stays_stopped(tmp_path):
  config = small_config(early_stopping__enabled=True, early_stopping__patience=2, early_stopping__min_delta=10.0,
                        eval__metric='loss')
  summary = loop.train_and_evaluate(make_plan(config, str(tmp_path)))
  # The first evaluation sets the best; no later one can improve by 10, so it stops after two more.
  assert summary['stopped_early'] and summary['final_step'] == 30
  again = loop.train_and_evaluate(make_plan(config, str(tmp_path)))
  assert again['final_step'] == 30 and again['test'] == summary['test']


def test_eight_virtual_devices_train_like_one(tmp_path):
  config_path = _write_config(tmp_path, train__num_steps=20)
  one, eight = str(tmp_path / 'one'), str(tmp_path / 'eight')
  assert _run(config_path, one, env={'XLA_FLAGS': ''}).returncode == 0
  result = _run(config_path, eight, env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode == 0, result.stderr
  a, b = _final_params(one, 20), _final_params(eight, 20)
  for path in a:
    np.testing.assert_allclose(a[path], b[path], rtol=1e-4, atol=1e-5, err_msg=path)


def test_quickstart_pretrains_then_fine_tunes_from_the_source_run(tmp_path, caplog):
  """The frozen quickstart: the fine-tuned backbone is bit-for-bit the source run's best backbone; the head is new;
  the libraries' noise on every normal run is not logged (ftlab/quiet.py)."""
  from ftlab import config as config_lib
  from ftlab import stages
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs', 'quickstart.py') + ':frozen')
  config.init.pretrain.num_steps = 40
  config.train.num_steps, config.train.num_epochs = 20, 0.0
  config.eval.every_steps = 10
  config.schedule.warmup = '2 steps'
  workdir = str(tmp_path)
  summary = stages.run(config, workdir)
  with open(os.path.join(workdir, 'pretrain', 'summary.json')) as f:
    source = json.load(f)
  assert source['class_names'] == ['0', '1', '2', '3', '4'] and summary['class_names'] == ['5', '6', '7', '8', '9']
  pretrained = _final_params(os.path.join(workdir, 'pretrain'), source['best_step'])
  tuned = _final_params(workdir, 20)
  for path in pretrained:
    if path.startswith('backbone/'):
      assert pretrained[path].tobytes() == tuned[path].tobytes(), path
  assert not np.array_equal(pretrained['head/kernel'], tuned['head/kernel'])
  _assert_predictions_give_the_metrics(workdir, summary)
  logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert not [m for m in logged if any(text in m for text in quiet.BENIGN)]  # each was logged before (orbax, TFDS)


def _assert_predictions_give_the_metrics(workdir: str, summary: dict):
  """predictions.jsonl (the quickstart writes it): a row per validation and test example whose predictions score
  the summary's metrics (sklearn), with probabilities over the class names that sum to 1."""
  from sklearn import metrics as sk
  with open(os.path.join(workdir, 'predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  for split in ('validation', 'test'):
    mine = [r for r in rows if r['split'] == split]
    assert [r['id'] for r in mine] == list(range(len(mine))) and len(mine) == summary['data']['sizes'][split]
    gold, predicted = [r['label'] for r in mine], [r['prediction'] for r in mine]
    assert sk.accuracy_score(gold, predicted) == pytest.approx(summary[split]['accuracy'], rel=1e-6)  # clu: float32
    assert sk.f1_score(gold, predicted, average='macro') == pytest.approx(summary[split]['f1_macro'], abs=1e-12)
    probabilities = np.array([r['probabilities'] for r in mine])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert [summary['class_names'][k] for k in probabilities.argmax(1)] == predicted


def test_freezing_a_batch_norm_backbone_also_fixes_its_statistics(tmp_path):
  config = small_config(model__name='cnn', model__features=[4, 4], optimizer__freeze='^backbone/conv_0|batchnorm_0')
  plan = make_plan(config, str(tmp_path))
  state = initial_state(plan)
  step_fn = jax.jit(functools.partial(steps.train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen))
  it = data.train_iterator(plan.splits.train, batch_size=32, seed=0)
  before = _leaves(state.model_state)
  for _ in range(3):
    state, _ = step_fn(state, next(it))
  after = _leaves(state.model_state)
  for path in before:
    if 'batchnorm_0' in path:
      assert before[path].tobytes() == after[path].tobytes(), path
    else:
      assert not np.array_equal(before[path], after[path]), f'{path} did not update'


def test_train_rows_log_the_scheduled_learning_rate(tmp_path):
  config = small_config(schedule__name='linear', schedule__warmup='0', optimizer__learning_rate=0.01)
  loop.train_and_evaluate(make_plan(config, str(tmp_path)))
  lrs = {r['step']: r['learning_rate'] for r in _rows(str(tmp_path)) if r['split'] == 'train'}
  assert lrs == pytest.approx({s: 0.01 * (1 - (s - 1) / 40) for s in (10, 20, 30, 40)}, rel=1e-5)


@pytest.mark.parametrize('mode,values,stop_at,best_at', [
    ('max', [0.5, 0.6, 0.605, 0.61, 0.7], 3, 1),  # +0.005 and +0.01 are below min_delta=0.05: patience 2 runs out
    ('min', [1.0, 0.9, 0.95, 0.8, 0.85, 0.84], 5, 3),
])
def test_early_stopping_rule(mode, values, stop_at, best_at):
  from ml_collections import ConfigDict
  from ftlab.loop_state import LoopState
  es = ConfigDict({'enabled': True, 'patience': 2, 'min_delta': 0.05 if mode == 'max' else 0.0})
  state = LoopState()
  for i, v in enumerate(values):
    state = state.evaluated(10 * i, v, es, mode)
    if state.stopped_early:
      break
  assert i == stop_at
  assert (state.best, state.best_step) == (values[best_at], 10 * best_at)  # the last improvement by min_delta


def test_the_source_task_run_uses_no_fine_tuning_strategy():
  from ftlab import config as config_lib
  from ftlab.pretrained import source_task
  for arg in ('frozen', 'gradual', 'lpft', 'llrd', 'head_lr', 'lora'):
    tuned = config_lib.load_config_file(os.path.join(ROOT, 'configs', f'quickstart.py:{arg}'))
    source = source_task.source_config(tuned)
    plain = source_task.source_config(config_lib.load_config_file(os.path.join(ROOT, 'configs', 'quickstart.py')))
    assert source.to_dict() == plain.to_dict(), arg  # every variant fine-tunes from the same source run
    assert config_lib.validate(source) == []


def test_padded_rows_take_no_part_in_the_gradient(tmp_path):
  plan = make_plan(small_config(model__dropout_rate=0.0), str(tmp_path))
  state = initial_state(plan)
  batch = plan.splits.train.get_batch(np.arange(8))
  padded = {k: np.concatenate([v, v[:4][::-1]]) for k, v in batch.items()}  # 4 padding rows of other values
  padded['image'][8:] = np.random.default_rng(0).random(padded['image'][8:].shape)
  padded['mask'] = np.arange(12) < 8
  grads = jax.jit(lambda b: steps.accumulated_gradients(plan.model, plan.task, state, b, jax.random.key(0), 1)[0])
  unpadded = _leaves(grads(batch))
  for path, g in _leaves(grads(padded)).items():
    np.testing.assert_allclose(g, unpadded[path], rtol=1e-5, atol=1e-7, err_msg=path)


def test_a_run_on_local_idx_files_with_padded_remainders_resumes_exactly(tmp_path):
  from test_sources import _write_idx
  rng = np.random.default_rng(0)
  labels = np.arange(90) % 3
  images = rng.random((90, 6, 6)) * 60
  images[np.arange(90), 2 * labels] += 180  # class c: a bright row 2c
  images = images.astype(np.uint8)
  _write_idx(tmp_path / 'idx', 'train', images, labels)
  overrides = dict(data__source='idx', data__path=str(tmp_path / 'idx'), data__data_dir=str(tmp_path / 'tfds'),
                   data__classes=[], data__remainder='pad', data__image__crop_padding=1, data__image__flip=True,
                   train__batch_size=16)
  config_path = _write_config(tmp_path, **overrides)
  _run(config_path, str(tmp_path / 'whole'))
  killed = _run(config_path, str(tmp_path / 'killed'), env={'FTLAB_TEST_KILL': 'step=25'})
  assert killed.returncode == -signal.SIGKILL
  _run(config_path, str(tmp_path / 'killed'))
  assert _rows(str(tmp_path / 'whole')) == _rows(str(tmp_path / 'killed'))
  whole, resumed = _final_params(str(tmp_path / 'whole'), 60), _final_params(str(tmp_path / 'killed'), 60)
  assert all(whole[k].tobytes() == resumed[k].tobytes() for k in whole)
  summary = _summary(str(tmp_path / 'whole'))
  assert summary['data']['sizes'] == {'train': 54, 'validation': 18, 'test': 18}
  assert summary['validation']['accuracy'] > 0.6  # a bright row per class is learnable


def test_a_run_whose_best_is_its_last_step_reads_each_split_once_at_the_end(tmp_path, monkeypatch):
  """The final evaluation keeps its predictions: where it is the best checkpoint, the end reuses its rows instead of
  evaluating the validation split again, and predictions.jsonl comes from the same passes (validation in the loop,
  test once), equal to a separate predict pass over the best state."""
  from ftlab import predictions
  config = small_config(train__num_steps=20, eval__every_steps=20, eval__predictions=True)
  plan = make_plan(config, str(tmp_path))
  passes = []
  counted = data.eval_batches
  monkeypatch.setattr(data, 'eval_batches', lambda source, **kw: passes.append(source) or counted(source, **kw))
  summary = loop.train_and_evaluate(plan)
  splits = plan.splits
  read = lambda source: sum(s is source for s in passes)
  assert read(splits.validation) == 1 and read(splits.test) == 1  # before: 3 and 2
  with open(tmp_path / 'metrics.jsonl') as f:
    final = [r for r in map(json.loads, f) if r['split'] == 'validation' and r['step'] == 20][0]
  assert {k: final[k] for k in summary['validation']} == summary['validation']
  manager = checkpoints.Checkpoints(str(tmp_path / 'checkpoints'), keep=1, mode=plan.eval_mode, read_only=True)
  best, _ = manager.restore(20, initial_state(plan, load_pretrained=False))
  with open(tmp_path / 'predictions.jsonl') as f:
    written = [json.loads(line) for line in f]
  separate = [r for split in ('validation', 'test') for r in predictions.rows(
      plan, getattr(splits, split), split, predictions.outputs_of(plan, best, getattr(splits, split)))]
  assert [(r['split'], r['id'], r['prediction']) for r in written] == [(r['split'], r['id'], r['prediction'])
                                                                      for r in separate]
  np.testing.assert_allclose([r['probabilities'] for r in written], [r['probabilities'] for r in separate], atol=1e-5)
  _assert_predictions_give_the_metrics(str(tmp_path), summary)
