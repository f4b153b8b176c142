"""The sweep runner on the quickstart data: rows per trial, divergence, pruning, resumption after a kill, two workers
sharing one SQLite storage, and a changed definition refused."""
import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import types
import wsgiref.util

import optuna
import PIL.Image
import pytest

from conftest import ROOT, assert_same_run, run_ftlab, start_ftlab
from ftlab import config as config_lib
from ftlab import data, group_checkpoints
from ftlab.sweeps import markdown, records, runner, space


# A quickstart-like sweep small enough for CI: 40 fine-tuning steps after a 40-step source-task run (shared by all
# trials), evaluated every 20 steps.
SWEEP_FILE = '''
from ftlab.config import defaults
from ftlab.sweeps.space import loguniform, variants


def get_config(arg=None):
  c = defaults()
  c.model.features = [32]
  c.data.source = 'digits'
  c.data.classes = [5, 6, 7, 8, 9]
  c.init.pretrain.enabled = True
  c.init.pretrain.classes = [0, 1, 2, 3, 4]
  c.init.pretrain.num_steps = 40
  c.optimizer.learning_rate = 3e-3
  c.train.num_steps = 40
  c.train.num_epochs = 0.0
  c.eval.every_steps = 20
  c.eval.train_subset = 64
  c.eval.predictions = False  # what these sweeps test is not the predictions
  return c


def get_sweep(arg=None):
  if arg == 'bayes':
    return {'kind': 'bayes', 'num_trials': 4, 'params': {'optimizer.learning_rate': loguniform(1e-3, 3e-2)},
            'sampler': {'n_startup_trials': 2}}
  if arg == 'prune':
    return {'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-2, 1e-7]},
            'pruner': {'name': 'median', 'n_startup_trials': 1}}
  return {'kind': 'grid', 'params': {'optimizer.learning_rate': [3e-3, 1e30],
                                     'strategy': variants(full={}, frozen={'optimizer.freeze': '^backbone/'})}}
'''


@pytest.fixture(scope='module')
def sweep_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('sweep_config') / 'tiny_sweep.py'
  path.write_text(textwrap.dedent(SWEEP_FILE))
  return str(path)


PLANNED = collections.Counter()  # the grid's runs by workdir: how often each was planned
LOADED = collections.Counter()  # the grid's data configs: how often each was read


@pytest.fixture(scope='module')
def grid(sweep_file, tmp_path_factory):
  """The default grid, run once, uninterrupted, in this process (counting its plans and data reads)."""
  sweep_dir = str(tmp_path_factory.mktemp('grid'))
  make_plan, load = runner.make_plan, data.load

  def counted_plan(config, workdir, **kwargs):
    PLANNED[os.path.relpath(workdir, sweep_dir)] += 1
    return make_plan(config, workdir, **kwargs)

  def counted_load(data_config):
    LOADED[json.dumps(data_config.to_dict(), sort_keys=True)] += 1
    return load(data_config)

  runner.make_plan, data.load = counted_plan, counted_load
  try:
    rows = runner.run(sweep_file, sweep_dir, options=runner.Options(report=False))
  finally:
    runner.make_plan, data.load = make_plan, load
  return sweep_dir, rows


def test_a_sweep_plans_each_run_once_and_reads_each_data_config_once(grid):
  sweep_dir, rows = grid
  source = [os.path.join('pretrain', name) for name in os.listdir(os.path.join(sweep_dir, 'pretrain'))
            if not name.endswith('.lock')]
  assert dict(PLANNED) == {**{row['workdir']: 1 for row in rows}, source[0]: 1}  # 4 trials, their one source run
  assert sorted(LOADED.values()) == [1, 1]  # the source task's classes and the trials': each read once


def sweep_argv(sweep_file, sweep_dir, *extra):
  """The command line of `python -m ftlab.sweep` (run with run_ftlab / start_ftlab)."""
  return [f'--config={sweep_file}', f'--workdir={sweep_dir}', '--report=false', *extra]


def test_a_grid_writes_one_row_per_trial_and_a_nan_trial_is_diverged(grid):
  sweep_dir, rows = grid
  assert sorted(r['id'] for r in rows) == ['c000-s0', 'c001-s0', 'c002-s0', 'c003-s0']
  by_id = {r['id']: r for r in rows}
  for run_id in ('c000-s0', 'c001-s0'):  # lr 3e-3: full and frozen fine-tuning finish
    row = by_id[run_id]
    assert row['status'] == 'complete' and row['best_step'] in (20, 40) and row['final_step'] == 40
    summary = json.load(open(os.path.join(sweep_dir, row['workdir'], 'summary.json')))
    assert row['objective'] == summary['validation']['f1_macro']
    assert row['test']['accuracy'] == summary['test']['accuracy']
  assert by_id['c001-s0']['values'] == {'optimizer.learning_rate': 3e-3, 'strategy': 'frozen'}
  for run_id in ('c002-s0', 'c003-s0'):  # lr 1e30: NaN within a few steps, recorded with its step; the sweep went on
    row = by_id[run_id]
    assert row['status'] == 'diverged' and 1 <= row['step'] < 20 and 'diverged' in row['message']
    assert not os.path.exists(os.path.join(sweep_dir, row['workdir'], 'checkpoints', '20'))  # nothing NaN saved
  # one source-task run shared by every trial
  assert len(os.listdir(os.path.join(sweep_dir, 'pretrain'))) == 2  # the run and its .lock
  study = optuna.load_study(study_name='ftlab', storage=f'sqlite:///{sweep_dir}/optuna.db')
  states = sorted(t.state.name for t in study.trials)
  assert states == ['COMPLETE', 'COMPLETE', 'FAIL', 'FAIL']


def test_the_report_of_a_grid_has_its_table_and_plots(grid):
  sweep_dir, rows = grid
  text = open(markdown.write(sweep_dir)).read()
  best = max((r for r in rows if r['status'] == 'complete'), key=lambda r: r['objective'])
  best_line = next(line for line in text.splitlines() if line.startswith('| ★'))
  assert f"{best['objective']:.4f}" in best_line and best['values']['strategy'] in best_line
  assert 'c002-s0' in text and 'diverged' in text
  plots = sorted(os.listdir(os.path.join(sweep_dir, 'plots')))
  assert plots == ['curves.png', 'heatmap.png', 'metric_vs_optimizer.learning_rate.png', 'metric_vs_strategy.png',
                   'overfitting.png']
  for name in plots:
    with PIL.Image.open(os.path.join(sweep_dir, 'plots', name)) as image:
      image.verify()
    assert f'plots/{name}' in text


def test_rerunning_a_finished_sweep_runs_nothing(grid, sweep_file):
  sweep_dir, rows = grid
  before = {r['id']: os.path.getmtime(os.path.join(sweep_dir, r['workdir'], 'config.json')) for r in rows
            if r['status'] == 'complete'}
  again = runner.run(sweep_file, sweep_dir, options=runner.Options(report=False))
  assert again == rows
  assert before == {r['id']: os.path.getmtime(os.path.join(sweep_dir, r['workdir'], 'config.json')) for r in rows
                    if r['status'] == 'complete'}


def test_a_changed_sweep_is_refused_with_the_difference(grid, sweep_file):
  sweep_dir, rows = grid
  with pytest.raises(config_lib.ConfigError) as err:
    runner.run(sweep_file, sweep_dir, sweep_overrides={'seeds': [0, 1]}, options=runner.Options(report=False))
  assert 'holds a different sweep' in str(err.value) and 'sweep.seeds' in str(err.value)
  with pytest.raises(config_lib.ConfigError) as err:
    runner.run(sweep_file, sweep_dir, config_overrides={'model.dropout_rate': 0.3}, options=runner.Options(report=False))
  assert 'model.dropout_rate: 0.1 in the workdir, 0.3 now' in str(err.value)
  assert records.read(sweep_dir) == rows


# Five SIGKILLs over one sweep (ftlab.faults points; /TEXT: only in the run whose workdir contains TEXT), each
# followed by a rerun of the same command. A trial interrupted by a kill goes back to the end of the queue, so the
# order is: mid-step of the source-task run that all trials share (trial 0 was taken); right after trial 1's step-20
# checkpoint save is issued (its files half written); at the first step of trial 2 (which diverges); after trial 3
# diverged, before its trials.jsonl row; after trial 0's step-20 evaluation, with none of its rows written.
SWEEP_KILLS = ('step=25/pretrain', 'save=20/c001-s0', 'step=1/c002-s0', 'record@1', 'evaluated=20/c000-s0')


def _row(row: dict, sweep_dir: str) -> dict:
  """A trials.jsonl row without its wall time, its sweep directory written as <dir>."""
  return {k: v.replace(sweep_dir, '<dir>') if isinstance(v, str) else v for k, v in row.items() if k != 'wall_seconds'}


def test_a_sweep_killed_out_of_disk_and_preempted_ends_with_the_same_trials_and_results(grid, sweep_file, tmp_path):
  sweep_dir = str(tmp_path / 'killed')
  argv = sweep_argv(sweep_file, sweep_dir)
  for i, spec in enumerate(SWEEP_KILLS):
    killed = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_KILL': spec}, log_base=str(tmp_path / f'log{i}'))
    assert killed.returncode == -signal.SIGKILL, (spec, killed.stderr[-3000:])
  # a full disk at trial 0's save at step 20: one line, exit status 4, the trial not recorded as failed
  full = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_ENOSPC': 'save=20/c000-s0'}, log_base=str(tmp_path / 'full'))
  assert full.returncode == 4, full.stderr[-3000:]
  assert 'ftlab.sweep: cannot write' in full.stderr and 'disk full' in full.stderr, full.stderr[-3000:]
  assert 'Traceback' not in full.stderr and 'c000-s0' not in records.by_id(sweep_dir)
  # and a SIGTERM mid-trial: trial 0 saves a checkpoint at step 30 (between evaluations) and the sweep stops
  stopped = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_TERM': 'step=30/c000-s0'}, log_base=str(tmp_path / 'term'))
  assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
  assert 'preempted (SIGTERM): saved a checkpoint at step 30' in stopped.stderr
  done = run_ftlab('ftlab.sweep', argv, log_base=str(tmp_path / 'last'))
  assert done.returncode == 0, done.stderr[-3000:]
  rows, expected = sorted(records.read(sweep_dir), key=lambda r: r['id']), grid[1]
  assert [r['id'] for r in rows] == ['c000-s0', 'c001-s0', 'c002-s0', 'c003-s0']  # each once
  assert [_row(r, sweep_dir) for r in rows] == [_row(r, grid[0]) for r in expected]
  runs = [os.path.join('trials', r['id']) for r in expected] + [
      os.path.join('pretrain', name) for name in os.listdir(os.path.join(grid[0], 'pretrain'))
      if not name.endswith('.lock')]
  for run in runs:  # every trial's (and the source run's) metrics, summary and checkpoints, bit for bit
    assert_same_run(os.path.join(grid[0], run), os.path.join(sweep_dir, run))


def test_a_vectorised_sweep_killed_then_preempted_mid_group_resumes_and_ends_as_the_sequential_one(grid, sweep_file, tmp_path):
  sweep_dir = str(tmp_path / 'vectorised')
  # 4 trials at once: the full-fine-tuning pair and the frozen pair each train as one vmapped step (the freezing
  # mask is static, so the two strategies are two groups); the process dies at step 30 of the frozen group
  argv = sweep_argv(sweep_file, sweep_dir, '--sweep.vectorize=4')
  first = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_KILL': 'step=30/c001-s0'}, log_base=str(tmp_path / 'k'))
  assert first.returncode == -9, first.stderr[-2000:]
  assert sorted(r['id'] for r in records.read(sweep_dir)) == ['c000-s0', 'c002-s0']  # the group that had ended
  # then SIGTERM at step 25 of the resumed frozen group: its trial still training (c001; c003 diverged) saves
  stopped = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_TERM': 'step=25/c001-s0'}, log_base=str(tmp_path / 't'))
  assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
  assert 'resuming interrupted trials c001-s0, c003-s0' in stopped.stdout
  assert 'preempted (SIGTERM): saved a checkpoint at step 25' in stopped.stderr
  trial_dir = os.path.join(sweep_dir, 'trials', 'c001-s0')
  group = group_checkpoints.pointed(trial_dir)  # the group's one checkpoint of its trials at each save step
  assert '25' in os.listdir(group) and not os.path.exists(os.path.join(trial_dir, 'checkpoints', '25'))
  second = run_ftlab('ftlab.sweep', argv, log_base=str(tmp_path / 'r'))
  assert second.returncode == 0, second.stderr[-2000:]
  assert 'resuming ' + trial_dir + ' from step 25' in second.stdout
  # the group's folder is gone; each trial's own folder keeps what a run alone keeps (checkpoint.keep 2, the best)
  assert not os.path.exists(os.path.join(sweep_dir, 'trials', '.groups'))
  assert group_checkpoints.pointed(trial_dir) is None
  assert sorted(os.listdir(os.path.join(trial_dir, 'checkpoints')), key=int) == ['20', '40']
  rows = records.read(sweep_dir)
  assert sorted(r['id'] for r in rows) == ['c000-s0', 'c001-s0', 'c002-s0', 'c003-s0']  # each once
  sequential = {r['id']: r for r in grid[1]}
  for row in rows:
    alone = sequential[row['id']]
    assert (row['status'], row['step'], row['best_step']) == (alone['status'], alone['step'], alone['best_step'])
    if row['status'] == 'complete':
      assert row['objective'] == pytest.approx(alone['objective'], abs=1e-6)
  metric_rows = records.read_metrics(sweep_dir, {'workdir': 'trials/c001-s0'})
  assert [(r['step'], r['split']) for r in metric_rows] == [
      (20, 'train'), (20, 'train_eval'), (20, 'validation'), (40, 'train'), (40, 'train_eval'), (40, 'validation'),
      (40, 'test')]


def test_two_workers_share_a_sqlite_storage_and_split_a_budget(sweep_file, tmp_path):
  sweep_dir = str(tmp_path / 'shared')
  # a TFDS data_dir of their own, not yet prepared: both workers start by preparing the digits, one waits for the other
  env = {'TFDS_DATA_DIR': str(tmp_path / 'tfds')}
  workers = [start_ftlab('ftlab.sweep', sweep_argv(f'{sweep_file}:bayes', sweep_dir), env=env,
                         log_base=str(tmp_path / f'w{i}')) for i in range(2)]
  results = [w.wait() for w in workers]
  outputs = [r.stdout + r.stderr for r in results]
  assert [r.returncode for r in results] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
  rows = records.read(sweep_dir)
  assert sorted(r['id'] for r in rows) == ['b000-s0', 'b001-s0', 'b002-s0', 'b003-s0']
  assert all(r['status'] == 'complete' for r in rows), [(r['id'], r['status'], r.get('error')) for r in rows]
  study = optuna.load_study(study_name='ftlab', storage=f'sqlite:///{sweep_dir}/optuna.db')
  complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
  assert sorted(t.user_attrs['ftlab_id'] for t in complete) == ['b000', 'b001', 'b002', 'b003']
  assert {t.params['optimizer.learning_rate'] for t in complete} == {r['values']['optimizer.learning_rate'] for r in rows}
  ran = [sum(f'trial {i}' in out for i in ('b000', 'b001', 'b002', 'b003')) for out in outputs]
  assert sum(ran) == 4  # each trial run by exactly one worker


def test_a_bad_trial_is_pruned_from_its_validation_metric(sweep_file, tmp_path):
  sweep_dir = str(tmp_path / 'prune')
  rows = {r['id']: r for r in runner.run(f'{sweep_file}:prune', sweep_dir, options=runner.Options(report=False))}
  assert rows['c000-s0']['status'] == 'complete'
  pruned = rows['c001-s0']  # lr 1e-7 barely moves from the fresh head: below the median at the first evaluation
  assert pruned['status'] == 'pruned' and pruned['step'] == 20 and 'median pruner' in pruned['message']
  assert pruned['objective'] < rows['c000-s0']['objective']


class FakeTrial:
  def __init__(self, owner, heartbeat):
    self.user_attrs = {'ftlab_owner': owner, 'ftlab_heartbeat': heartbeat}
    self.datetime_start = None


def test_stale_trials_are_dead_local_owners_or_silent_remote_ones():
  me = runner.owner()
  assert not runner.is_stale(FakeTrial(me, 0.0), now=1e9, stale_after=60)  # alive here, whatever the heartbeat
  dead = {**me, 'started': me['started'] - 1000}  # this pid, but another process (a reused pid)
  assert runner.is_stale(FakeTrial(dead, 1e9), now=1e9, stale_after=60)
  remote = {**me, 'boot_id': 'another-machine'}
  assert not runner.is_stale(FakeTrial(remote, 1e9 - 30), now=1e9, stale_after=60)
  assert runner.is_stale(FakeTrial(remote, 1e9 - 61), now=1e9, stale_after=60)


def test_a_trial_whose_worker_dies_every_time_is_failed_after_the_bound_not_run_forever(tmp_path):
  sweep = space.parse({'kind': 'grid', 'params': {'optimizer.learning_rate': [0.1]}},
                      config_lib.defaults())
  point = space.configurations(sweep)[0]
  study = optuna.create_study(direction='maximize')
  study.enqueue_trial({}, user_attrs={'ftlab_id': point.run_id(0), 'ftlab_config_id': point.config_id,
                                      'ftlab_seed': 0})
  gone = {**runner.owner(), 'started': 0.0}  # this pid, another process: the worker died
  for deaths in range(1, records.WORKER_DEATHS + 1):
    trial = study.ask()
    trial.set_user_attr('ftlab_owner', gone)
    assert runner.recover_stale(study, stale_after=60) == [point.run_id(0)]
    if deaths == 2:  # a worker that stopped on purpose (SIGTERM, a full disk) released it: not a death
      trial = study.ask()
      with pytest.raises(KeyboardInterrupt), runner.Heartbeat(study, [trial]):
        raise KeyboardInterrupt
      trial.set_user_attr('ftlab_owner', gone)
      assert runner.recover_stale(study, stale_after=60) == [point.run_id(0)]
  trial = study.ask()
  assert trial.user_attrs['ftlab_deaths'] == records.WORKER_DEATHS
  planner = types.SimpleNamespace(sweep_dir=str(tmp_path))  # never asked to plan: the trial does not run
  row, plan = runner._start(planner, None, sweep, runner.Job(point, 0, trial))
  assert plan is None and row['status'] == 'failed' and row['cause'] == 'trial'
  assert row['message'].startswith(f'the worker running this trial died {records.WORKER_DEATHS} times')
  assert 'Traceback' not in row['message'] and not records.retryable(row)


def test_the_pruners_are_optunas():
  assert isinstance(runner.make_pruner({'name': 'median', 'n_startup_trials': 2}), optuna.pruners.MedianPruner)
  halving = runner.make_pruner({'name': 'halving', 'min_resource': 20, 'reduction_factor': 3})
  assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
  assert isinstance(runner.make_pruner({'name': 'none'}), optuna.pruners.NopPruner)


HOLDER = '''
import sys
from ftlab import locks
with locks.one_writer(sys.argv[1]):
  print('held', flush=True)
  sys.stdin.read()  # until the test closes our stdin
'''


def test_a_trial_whose_folder_another_process_holds_is_waited_for_and_trained_once(sweep_file, tmp_path):
  """Every trial holds its run folder's lock as ftlab.main does: a worker that takes a trial another process still
  has (here: a worker killed at step 30 whose trial a holder process keeps locked, as a worker judged stale would)
  changes nothing in its folder until that process lets go, then resumes it once (no duplicated metric rows)."""
  sweep_dir = tmp_path / 'held'
  trial = sweep_dir / 'trials' / 'c000-s0'
  argv = sweep_argv(sweep_file, str(sweep_dir))
  killed = run_ftlab('ftlab.sweep', argv, env={'FTLAB_TEST_KILL': 'step=30/c000-s0'}, log_base=str(tmp_path / 'k'))
  assert killed.returncode == -9, killed.stderr[-2000:]
  holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(trial)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
  assert 'held\n' in iter(holder.stdout.readline, '')  # after its 'taking over' line
  before = _files(trial)
  worker = subprocess.Popen([sys.executable, '-m', 'ftlab.sweep', *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
  seen = []
  for line in worker.stdout:
    seen.append(line)
    if 'waiting for it' in line:
      break
  assert f'{trial} is in use by another ftlab run (pid {holder.pid}' in seen[-1], ''.join(seen)[-3000:]
  assert _files(trial) == before  # nothing written while the holder has it
  holder.communicate('')
  rest = worker.communicate()[0]
  assert worker.returncode == 0, rest[-3000:]
  assert sorted(r['id'] for r in records.read(str(sweep_dir))) == [
      'c000-s0', 'c001-s0', 'c002-s0', 'c003-s0']
  with open(trial / 'metrics.jsonl') as f:
    written = [(r['step'], r['split']) for r in map(json.loads, f)]
  assert len(written) == len(set(written)) and (40, 'test') in written


def _files(folder) -> dict:
  """{relative path: sha256} of every file under `folder` (the lock file aside: its holder line changes)."""
  import hashlib
  return {os.path.relpath(os.path.join(d, name), folder): hashlib.sha256(open(os.path.join(d, name), 'rb').read())
          .hexdigest() for d, _, names in os.walk(folder) for name in names if name != '.ftlab.lock'}


def test_a_trial_failed_outside_itself_is_run_again_on_rerun_up_to_the_bound(sweep_file, tmp_path, monkeypatch):
  """An I/O error (EIO at step 30 of c000) records the trial failed with cause 'environment'; each rerun runs it
  again (resuming its folder), up to records.RETRIES more times, while the diverged trials stay as they are; the
  report says which attempt it is and whether a rerun retries it."""
  sweep_dir = str(tmp_path / 'retry')
  options = runner.Options(report=False)
  monkeypatch.setattr(records, 'RETRIES', 1)  # the bound as a setting: one retry keeps the test to two reruns
  monkeypatch.setenv('FTLAB_TEST_EIO', 'step=30/c000-s0')
  for attempt in range(1, 2 + records.RETRIES):
    rows = records.by_id(sweep_dir) if attempt > 1 else {}
    diverged = {i: r for i, r in rows.items() if r['status'] == 'diverged'}
    if attempt == 1 + records.RETRIES:
      monkeypatch.delenv('FTLAB_TEST_EIO')  # the last retry succeeds
    runner.run(sweep_file, sweep_dir, options=options)
    row = records.by_id(sweep_dir)['c000-s0']
    assert row.get('attempt', 1) == attempt
    assert {i: r for i, r in records.by_id(sweep_dir).items() if i in diverged} == diverged  # not run again
    if attempt <= records.RETRIES:
      assert (row['status'], row['cause']) == ('failed', 'environment') and 'Errno 5' in row['message']
      assert '[outside the trial, attempt' in markdown.incomplete_table([row], markdown.spec_of(
          records.read_sweep(sweep_dir))) and records.retryable(row)
  assert row['status'] == 'complete' and len(records.read(sweep_dir)) == 4
  with open(os.path.join(sweep_dir, row['workdir'], 'metrics.jsonl')) as f:
    written = [(r['step'], r['split']) for r in map(json.loads, f)]
  assert len(written) == len(set(written)) and (40, 'test') in written
  exhausted = {**row, 'status': 'failed', 'cause': 'environment', 'attempt': 1 + records.RETRIES}
  assert not records.retryable(exhausted) and not records.retryable({**row, 'status': 'failed', 'cause': 'trial'})


def test_three_workers_on_a_real_postgresql_storage_give_the_sqlite_runs_trials(grid, sweep_file, tmp_path):
  """Three `ftlab.sweep` processes share a PostgreSQL study (a throwaway server, tests/pg_server.py): each trial is
  run by exactly one of them, and the trials equal the single SQLite worker's (the `grid` fixture)."""
  import pg_server
  reference = {r['id']: r for r in grid[1]}
  with pg_server.server() as url:
    sweep_dir = str(tmp_path / 'pg')
    workers = [start_ftlab('ftlab.sweep', sweep_argv(sweep_file, sweep_dir, f'--storage={url}'),
                           log_base=str(tmp_path / f'w{i}')) for i in range(3)]
    results = [w.wait() for w in workers]
  outputs = [r.stdout + r.stderr for r in results]
  assert [r.returncode for r in results] == [0, 0, 0], '\n'.join(o[-1500:] for o in outputs)
  rows = records.by_id(sweep_dir)
  assert sorted(rows) == sorted(reference)
  for run_id, row in rows.items():
    assert (row['status'], row['best_step']) == (reference[run_id]['status'], reference[run_id]['best_step'])
    expected = reference[run_id]['objective']
    assert row['objective'] == (expected if expected is None else pytest.approx(expected, rel=1e-6))
  assert sum(out.count(f'ftlab.sweep: trial {run_id} ') for out in outputs for run_id in rows) == len(rows)


def _wsgi_get(app, path: str) -> dict:
  """GET `path` from a WSGI app, in this process (no server, no port): its JSON body."""
  environ, answer = {}, {}
  wsgiref.util.setup_testing_defaults(environ)
  environ.update(PATH_INFO=path, REQUEST_METHOD='GET')
  body = b''.join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
  assert answer['status'].startswith('200'), (path, answer, body[:500])
  return json.loads(body)


def test_optuna_dashboard_opens_the_sweeps_storage_with_the_command_the_report_prints(grid):
  import optuna_dashboard
  sweep_dir, rows = grid
  spec, _ = markdown.load(sweep_dir)
  assert spec.storage == f'sqlite:///{os.path.abspath(sweep_dir)}/optuna.db'  # `optuna-dashboard <this>`
  app = optuna_dashboard.wsgi(spec.storage)
  studies = _wsgi_get(app, '/api/studies')['study_summaries']
  assert len(studies) == 1
  trials = _wsgi_get(app, f'/api/studies/{studies[0]["study_id"]}')['trials']
  assert sorted(t['state'] for t in trials) == ['Complete', 'Complete', 'Fail', 'Fail']  # two diverged
  assert sorted(t['values'][0] for t in trials if t['state'] == 'Complete') == sorted(
      r['objective'] for r in rows if r['status'] == 'complete')
