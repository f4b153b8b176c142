"""The sweep runner: runs the trials of a sweep as normal ftlab runs, shares them between workers, and resumes.

Every trial, whatever the sweep's kind, is an Optuna trial in one study (default storage: SQLite at
DIR/optuna.db; any Optuna storage URL, e.g. PostgreSQL, for workers on several machines). Optuna is the ledger
that hands each trial to exactly one worker:
- grid / zip / random: every (configuration, seed) is enqueued once with its id; a worker takes the next waiting
  one with study.ask(), which the storage hands out once.
- bayes: a worker asks the sampler (TPE by default) for a new configuration and runs it for every seed; the budget
  num_trials counts configurations by trial number, so two workers never overshoot it.
A worker records its owner (host boot id, pid, process start time) and a heartbeat on the trial it runs. A RUNNING
trial whose owner process is gone (same machine) or whose heartbeat is older than `stale_after` seconds (any
machine) was interrupted: the next worker marks it failed and enqueues it again under the same id, and the trial's
run resumes from its checkpoint in DIR/trials/<id>. A trial whose worker died records.WORKER_DEATHS times (the
kernel's out-of-memory killer, every time) is recorded failed instead of enqueued forever.

A finished (configuration, seed) run appends its row to DIR/trials.jsonl (records.append: once per id), then the
Optuna trial is told. Diverged runs (NaN/Inf loss) are recorded as 'diverged' with their step, pruned ones as
'pruned', and the sweep goes on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import threading
import time
import traceback

import jax
import psutil

from ftlab import config as config_lib
from ftlab import data as data_lib
from ftlab import faults, grouping, locks, preemption, stages, trackers
from ftlab import workdir as workdir_lib
from ftlab import writers
from ftlab.outcome import Diverged, Stop
from ftlab.plan import make_plan
from ftlab.pretrained import source_task
from ftlab.steppers.stacked import layout_problem
from ftlab.sweeps import causes, records, space

STUDY_NAME = 'ftlab'
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0


@dataclasses.dataclass
class Options:
  storage: str = ''  # Optuna storage URL; '' = sqlite:///DIR/optuna.db
  study_name: str = STUDY_NAME
  stale_after: float = STALE_AFTER_SECONDS  # seconds without a heartbeat after which another machine's trial is stale
  report: bool = True  # write DIR/report.md when this worker finishes


DRIVERS = {'psycopg': "'psycopg[binary]'", 'psycopg2': 'psycopg2-binary', 'MySQLdb': 'mysqlclient',
           'pymysql': 'PyMySQL'}  # module -> pip package


def storage_url(sweep_dir: str, options: Options) -> str:
  return options.storage or f'sqlite:///{os.path.abspath(os.path.join(sweep_dir, "optuna.db"))}'


class Planner:
  """Plans the runs of a sweep, each once: the trials (and the source-task run they share) are planned before any
  compute and kept until they run; trials with the same data config share its splits (read and tokenized once)."""

  def __init__(self, sweep_dir: str):
    self.sweep_dir = sweep_dir
    self._splits: dict[str, data_lib.Splits] = {}
    self._plans: dict = {}

  def load_data(self, data_config) -> data_lib.Splits:
    key = json.dumps(data_config.to_dict(), sort_keys=True, default=repr)
    if key not in self._splits:
      self._splits[key] = data_lib.load(data_config)
    return self._splits[key]

  def make_plan(self, config, workdir: str, **kwargs):
    """make_plan, once per run: a trial's, or the source-task run's that several trials share."""
    key = (workdir, json.dumps(config.to_dict(), sort_keys=True, default=repr), json.dumps(kwargs, sort_keys=True))
    if key not in self._plans:
      self._plans[key] = make_plan(config, workdir, load_data=self.load_data, **kwargs)
    return self._plans[key]

  def stages(self, config, run_id: str) -> stages.Stages:
    """The planned stages of the trial `run_id` (its config: `config`); raises ConfigError."""
    workdir = workdir_lib.inside(os.path.join(self.sweep_dir, 'trials'), run_id)
    return stages.plan_stages(config, workdir, pretrain_dir=_pretrain_dir(self.sweep_dir, config),
                              make=self.make_plan)


def prepare(config_file: str, config_overrides: dict, sweep_overrides: dict, sweep_dir: str, *,
            plan_trials: bool = True, planner: Planner | None = None):
  """(base config, Sweep, the record for sweep.json): loads and checks everything before any compute; raises
  config.ConfigError listing every problem (the config's, the sweep's, and each trial config's). With
  `plan_trials`, every trial (configuration and seed; for bayes, the corners of the space) is also planned as
  ftlab.main would (data, model shapes, parameter groups, pretrained weights), which reads the data but trains
  nothing; `planner` keeps the plans for the trials to run."""
  path, _, arg = config_file.partition(':')
  base = config_lib.load_config_file(config_file)
  module = config_lib.load_module(path)
  if not hasattr(module, 'get_sweep'):
    raise config_lib.ConfigError([f'--config: {path} defines no get_sweep(arg=None); add one next to get_config '
                                  '(see ftlab/sweeps/space.py) or run a single config with python -m ftlab.main'])
  definition = config_lib.call_config_function(module, 'get_sweep', arg, path)
  problems = []
  for key, value in config_overrides.items():
    problems += _set(base, key, value)
  base_problems = config_lib.validate(base)
  problems += base_problems
  try:
    sweep = space.parse(definition, base, sweep_overrides)
  except space.SweepError as err:
    raise config_lib.ConfigError(problems + err.problems) from err
  if sweep.vectorize > 1 and not base_problems:
    problems += [p for p in [layout_problem(base)] if p]
    _pad_lora_rank(base, sweep)
  planner = planner or Planner(sweep_dir)
  for point, seed, fold in _trials_to_check(sweep):
    config = space.apply(base, point.overrides, seed, fold, sweep.folds)
    if plan_trials and not problems:
      trial_problems = _plan_problems(planner, config, point.run_id(seed, fold))
    else:  # the base is broken already: its own problems are reported once, not for every trial
      trial_problems = [p for p in config_lib.validate(config) if p not in base_problems]
    problems += [f'trial {point.values}: {p}' for p in trial_problems]
  if problems:
    raise config_lib.ConfigError(problems)
  record = {'config': config_file, 'overrides': config_overrides, 'sweep': sweep.to_dict(),
            'base_config': base.to_dict()}
  return base, sweep, record


def _pad_lora_rank(base, sweep: space.Sweep) -> None:
  """A vectorised sweep over lora.rank gives every trial adapters as wide as its largest rank (lora.max_rank: the
  columns past a trial's rank stay zero), so that trials of every rank share one compiled step."""
  largest = space.largest(sweep, 'lora.rank')
  if not base.lora.max_rank and largest is not None:
    base.lora.max_rank = int(largest)


def _trials_to_check(sweep: space.Sweep) -> list[tuple[space.Configuration, int, int | None]]:
  """Every (configuration, seed, fold) of a grid, zip or random sweep; the corners of a bayes sweep's space (its
  first seed and fold)."""
  if sweep.kind == 'bayes':
    return [(space.Configuration(f'edge{i}', v, space.expand(sweep, v)), *sweep.replicates()[0])
            for i, v in enumerate(space.corner_points(sweep))]
  return [(point, seed, fold) for point in space.configurations(sweep) for seed, fold in sweep.replicates()]


def _plan_problems(planner: Planner, config, run_id: str) -> list[str]:
  try:
    planner.stages(config, run_id)
  except config_lib.ConfigError as err:
    return err.problems
  return []


def _set(config, key: str, value) -> list[str]:
  schema = dict(config_lib.flatten(config_lib.defaults()))
  if key not in schema:
    return [f'--config.{key}: unknown key{config_lib.closest_key(key, sorted(schema))}']
  config_lib.set_key(config, key, value)
  return []


def check_same_sweep(sweep_dir: str, saved: dict | None, record: dict) -> None:
  """Refuses (ConfigError) a rerun whose sweep or base config differs from the one DIR/sweep.json holds (`saved`)."""
  if saved is None:
    return
  diffs = [f'sweep.{d}' for d in _differences(saved['sweep'], record['sweep'])]
  diffs += config_lib.config_differences(saved['base_config'], record['base_config'])
  if diffs:
    raise config_lib.ConfigError([f'--workdir: {sweep_dir} holds a different sweep; use a new --workdir, or the same '
                                  'config and options (only train.num_steps / train.num_epochs may change). '
                                  'Differences: ' + '; '.join(diffs)])


def check_same_storage(sweep_dir: str, saved: dict | None, options: Options) -> None:
  """Refuses (ConfigError) a worker whose Optuna storage is not the one DIR/sweep.json (`saved`) records: two
  storages would hand the same trials to two workers. A worker without --storage agrees with a recorded default
  SQLite file (which moves with its folder)."""
  recorded = (saved or {}).get('storage', '')
  mine = storage_url(sweep_dir, options)
  default = recorded.startswith('sqlite:///') and recorded.endswith('/optuna.db')
  if not recorded or recorded == mine or (default and not options.storage):
    return
  raise config_lib.ConfigError([f'--storage: {sweep_dir} shares its trials through {recorded}, but this worker would '
                                f'use {mine}; give --storage={recorded} (workers on two storages would train the same '
                                'trials twice)'])


def _differences(a: dict, b: dict) -> list[str]:
  a, b = ({k: v for k, v in config_lib.flatten(x) if k not in space.EXECUTION_KEYS} for x in (a, b))
  return [f'{k}: {a.get(k, "<absent>")!r} in the workdir, {b.get(k, "<absent>")!r} now'
          for k in sorted(set(a) | set(b)) if json.dumps(a.get(k)) != json.dumps(b.get(k))]


def open_study(sweep_dir: str, sweep: space.Sweep, record: dict, options: Options):
  """The sweep's Optuna study (created on first use, with its trials enqueued for grid / zip / random)."""
  import optuna
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  url = storage_url(sweep_dir, options)
  try:
    storage = optuna.storages.RDBStorage(url, engine_kwargs={'connect_args': {'timeout': 120}}
                                         if url.startswith('sqlite') else None)
    return _study(storage, sweep, record, options)
  except config_lib.ConfigError:
    raise
  except Exception as err:  # sqlalchemy / optuna: no driver, a damaged database, a server that does not answer
    missing = _missing_module(err)
    if missing:  # sqlalchemy's dialect imports its driver only now (optuna wraps the error)
      raise records.RecordError(f'{url}: the database driver {missing} is not installed; pip install '
                                f'{DRIVERS.get(missing, missing)} (or use the default SQLite storage)') from err
    first = (str(err).strip().splitlines() or [''])[0][:300]
    local = url.removeprefix('sqlite:///') if url.startswith('sqlite:///') else ''
    fix = (f'its folder {os.path.dirname(local)} does not exist; create it or give another --storage'
           if local and not os.path.isdir(os.path.dirname(local)) else
           f'if it is damaged, move {local} aside and rerun: the trials recorded in trials.jsonl are kept and not '
           'rerun (a bayes sweep\'s sampler restarts without their history)' if local else
           'check that the storage server is up and the URL is right (--storage)')
    raise records.RecordError(f'{url}: the sweep\'s Optuna storage cannot be opened ({type(err).__name__}: '
                              f'{first}); {fix}') from err


def _missing_module(err: BaseException | None) -> str:
  """The module whose import failed somewhere in `err`'s chain of causes, or ''."""
  while err is not None:
    if isinstance(err, ModuleNotFoundError) and err.name:
      return err.name
    err = err.__cause__ or err.__context__
  return ''


def _study(storage, sweep: space.Sweep, record: dict, options: Options):
  import optuna
  sampler = (optuna.samplers.TPESampler(seed=sweep.sampler['seed'],
                                        n_startup_trials=sweep.sampler.get('n_startup_trials', 10))
             if sweep.sampler['name'] == 'tpe' else optuna.samplers.RandomSampler(seed=sweep.sampler['seed']))
  study = optuna.create_study(storage=storage, study_name=options.study_name, load_if_exists=True, sampler=sampler,
                              pruner=make_pruner(sweep.pruner),
                              direction='maximize' if sweep.direction == 'max' else 'minimize')
  saved = study.user_attrs.get('ftlab_sweep')
  if saved is None:
    study.set_user_attr('ftlab_sweep', record['sweep'])
  elif _differences(saved, record['sweep']):
    raise config_lib.ConfigError([f'--storage: study {options.study_name!r} in {storage.url} '
                                  'belongs to a different sweep; give another --study or storage. Differences: '
                                  + '; '.join(_differences(saved, record['sweep']))])
  if sweep.kind != 'bayes' and not study.user_attrs.get('ftlab_enqueued'):
    existing = {t.user_attrs.get('ftlab_id') for t in study.get_trials(deepcopy=False)}
    for point in space.configurations(sweep):
      for seed, fold in sweep.replicates():
        if point.run_id(seed, fold) not in existing:
          study.enqueue_trial({}, user_attrs={'ftlab_id': point.run_id(seed, fold), 'ftlab_config_id': point.config_id,
                                              'ftlab_seed': seed, 'ftlab_fold': fold})
    study.set_user_attr('ftlab_enqueued', True)
  return study


def make_pruner(spec: dict):
  import optuna
  options = {k: v for k, v in spec.items() if k != 'name'}
  if spec['name'] == 'median':
    return optuna.pruners.MedianPruner(**options)
  if spec['name'] == 'halving':
    return optuna.pruners.SuccessiveHalvingPruner(**options)
  return optuna.pruners.NopPruner()


def _boot_id() -> str:
  try:
    with open('/proc/sys/kernel/random/boot_id') as f:
      return f.read().strip()
  except OSError:
    return socket.gethostname()


def owner() -> dict:
  """Who runs a trial: enough to tell later whether that process is still alive."""
  me = psutil.Process()
  return {'host': socket.gethostname(), 'boot_id': _boot_id(), 'pid': me.pid, 'started': me.create_time()}


def is_stale(trial, *, now: float, stale_after: float) -> bool:
  """Whether a RUNNING trial's worker is gone: dead on this machine, or silent for `stale_after` seconds."""
  who = trial.user_attrs.get('ftlab_owner')
  beat = trial.user_attrs.get('ftlab_heartbeat', trial.datetime_start.timestamp() if trial.datetime_start else now)
  if who and who.get('boot_id') == _boot_id():
    try:
      return psutil.Process(who['pid']).create_time() != who['started']
    except psutil.NoSuchProcess:
      return True
  return now - beat > stale_after


TRIAL_ATTRS = ('ftlab_id', 'ftlab_config_id', 'ftlab_seed', 'ftlab_fold')  # what a trial run again keeps


def requeue_retries(study, sweep_dir: str) -> list[str]:
  """Enqueues again the Optuna trial of every recorded trial that failed outside itself with retries left
  (records.retryable) and that no waiting or running trial holds; returns their ids. Called under sweep.lock."""
  import optuna
  retry = [row for row in records.read(sweep_dir) if records.retryable(row)]
  if not retry:
    return []
  trials = study.get_trials(deepcopy=False)
  live = {t.user_attrs.get('ftlab_id') for t in trials
          if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)}
  last = {t.user_attrs.get('ftlab_id'): t for t in trials}  # each id's latest trial (they come in number order)
  requeued = []
  for row in retry:
    key = row['id'] if row['id'] in last else row['config_id']  # a bayes trial is its configuration's, every seed
    if key in live or key not in last:
      continue
    t = last[key]
    study.enqueue_trial(dict(t.params), user_attrs={**{k: v for k, v in t.user_attrs.items() if k in TRIAL_ATTRS},
                                                    'ftlab_retry_of': t.number})
    live.add(key)
    requeued.append(row['id'])
  return requeued


def recover_stale(study, stale_after: float) -> list[str]:
  """Fails every stale RUNNING trial and enqueues it again with its id and values; returns the ids."""
  import optuna
  recovered = []
  for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    if not is_stale(t, now=time.time(), stale_after=stale_after):
      continue
    try:  # the storage changes a trial's state once: of two workers recovering it, one succeeds
      study._storage.set_trial_user_attr(t._trial_id, 'ftlab_stale', True)
      study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    except (RuntimeError, ValueError):
      continue
    attrs = {k: v for k, v in t.user_attrs.items() if k in TRIAL_ATTRS}
    if 'ftlab_id' in attrs:  # counted, so that a trial whose worker dies every time is failed, not run forever
      deaths = t.user_attrs.get('ftlab_deaths', 0) + (not t.user_attrs.get('ftlab_released'))
      study.enqueue_trial(dict(t.params), user_attrs={**attrs, 'ftlab_retry_of': t.number, 'ftlab_deaths': deaths})
      recovered.append(attrs['ftlab_id'])
  return recovered


class WorkerDied(Exception):
  """A trial whose worker process died records.WORKER_DEATHS times while running it: failed, not run again."""

  def __init__(self, deaths: int):
    super().__init__(
        f'the worker running this trial died {deaths} times (SIGKILL: the kernel\'s out-of-memory killer, or the '
        'machine); it is not run again. Find why (`dmesg`, the worker\'s log), lower its memory (batch size, '
        'train.grad_accum_steps) if that was it, then delete its line from trials.jsonl and rerun to train it again')


def _worker_deaths(job) -> int:
  return 0 if job.trial is None else job.trial.user_attrs.get('ftlab_deaths', 0)


class Heartbeat:
  """Marks trials alive every `every` seconds from a daemon thread, while they run."""

  def __init__(self, study, trials: list, every: float = HEARTBEAT_SECONDS):
    self.study, self.trial_ids, self.every = study, [t._trial_id for t in trials], every
    self.stop_event = threading.Event()
    self.thread = threading.Thread(target=self._beat, daemon=True)

  def _beat(self):
    while not self.stop_event.wait(self.every):
      for trial_id in self.trial_ids:
        try:
          self.study._storage.set_trial_user_attr(trial_id, 'ftlab_heartbeat', time.time())
        except Exception:  # the trial finished meanwhile, or the database is briefly away: the next beat retries
          pass

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, kind, value, tb):
    self.stop_event.set()
    self.thread.join()
    if kind is not None:  # the worker stops on purpose (SIGTERM, a full disk): not a death recover_stale counts
      for trial_id in self.trial_ids:
        try:
          self.study._storage.set_trial_user_attr(trial_id, 'ftlab_released', True)
        except Exception:  # the storage itself is what failed: the trial then counts as a death, once
          pass


@dataclasses.dataclass
class Job:
  """One (configuration, seed, fold) run of a sweep, with the Optuna trial it reports to; fold None without
  cross-validation, -1 for the refit on every fold."""
  point: space.Configuration
  seed: int
  trial: object = None
  report_intermediate: bool = False
  fold: int | None = None

  @property
  def run_id(self) -> str:
    return self.point.run_id(self.seed, self.fold)


def run_one(planner: Planner, base, sweep: space.Sweep, point: space.Configuration, seed: int, *, trial=None,
            report_intermediate: bool = False, fold: int | None = None) -> dict:
  """Runs (or resumes) one (configuration, seed, fold) as a normal ftlab run in DIR/trials/<id>; returns its row.

  Already recorded in trials.jsonl: returns that row without running anything.
  """
  return run_many(planner, base, sweep, [Job(point, seed, trial, report_intermediate, fold)])[0]


def run_many(planner: Planner, base, sweep: space.Sweep, jobs: list[Job], *, on_row=None) -> list[dict]:
  """Runs (or resumes) several (configuration, seed) runs, each a normal ftlab run in DIR/trials/<id>; returns
  their rows in order. Runs that share a compiled train step and a start step train together as one vmapped
  step (ftlab/grouping.py); any other runs one by one. A run already recorded in trials.jsonl is not run.
  Each row is appended to trials.jsonl, and given to `on_row(job, row)`, as soon as its run (or group) ends."""
  sweep_dir = planner.sweep_dir
  done = records.by_id(sweep_dir)
  rows: list[dict | None] = [_settled(done.get(job.run_id)) for job in jobs]
  with contextlib.ExitStack() as held:
    for i in sorted(range(len(jobs)), key=lambda i: jobs[i].run_id):  # every worker locks in one order: no deadlock
      if rows[i] is None:
        held.enter_context(_trial_lock(sweep_dir, jobs[i].run_id))
        rows[i] = _settled(records.by_id(sweep_dir).get(jobs[i].run_id))  # a worker it waited for may have recorded it
    _run_jobs(planner, base, sweep, jobs, rows, on_row)
  recorded = records.by_id(sweep_dir)
  return [recorded[job.run_id] for job in jobs]


def _settled(row: dict | None) -> dict | None:
  """A recorded row that stands (None for none, or for a failure outside the trial that a rerun retries)."""
  return None if records.retryable(row) else row


def _trial_lock(sweep_dir: str, run_id: str):
  """A trial's run-folder lock, held as ftlab.main holds its workdir's (by process 0 of a multi-host sweep); a
  trial that another worker is training (a worker that took it as stale) is waited for."""
  workdir = workdir_lib.inside(os.path.join(sweep_dir, 'trials'), run_id)
  return locks.one_writer(workdir, wait=True) if jax.process_index() == 0 else contextlib.nullcontext()


def _run_jobs(planner: Planner, base, sweep: space.Sweep, jobs: list[Job], rows: list, on_row) -> None:
  """run_many's work once the trials' locks are held: `rows` holds the rows recorded before (None to run)."""
  sweep_dir = planner.sweep_dir
  todo, plans, on_evals, last = [], [], [], []
  for i, job in enumerate(jobs):
    if rows[i] is not None:
      continue
    rows[i], plan = _start(planner, base, sweep, job)
    if plan is not None:
      seen: dict = {}
      todo.append(i)
      plans.append(plan)
      on_evals.append(_on_eval(job, sweep, seen))
      last.append(seen)

  def record(i: int) -> None:  # as soon as a run (or its group) ends: a later kill loses none of it
    faults.point('record', where=rows[i]['id'])
    records.append(sweep_dir, rows[i])
    if on_row is not None:
      on_row(jobs[i], records.by_id(sweep_dir)[rows[i]['id']])

  for i in range(len(jobs)):
    if i not in todo:  # recorded before, or failed before training
      record(i)

  def finished(j: int, outcome) -> None:
    _stop_if_unwritable(outcome.error, plans[j].workdir)
    _finish_row(rows[todo[j]], outcome.error if outcome.error is not None else outcome.summary, last[j],
                sweep.metric, outcome.seconds)
    record(todo[j])

  grouping.run_groups(plans, on_evals=on_evals, vectorize=sweep.vectorize, shard_trials=sweep.shard_trials,
                      lanes_at_once=sweep.lanes_at_once, on_outcome=finished)


def _start(planner: Planner, base, sweep: space.Sweep, job: Job):
  """(the job's row, its planned fine-tuning run), after its source-task run; the plan is None when planning or
  the source-task run failed (the row says why)."""
  t0 = time.perf_counter()
  run_id = job.run_id
  workdir = workdir_lib.inside(os.path.join(planner.sweep_dir, 'trials'), run_id)
  row = {'id': run_id, 'config_id': job.point.config_id, 'values': job.point.values, 'seed': job.seed,
         'workdir': os.path.relpath(workdir, planner.sweep_dir), 'best_step': None, 'final_step': None,
         'objective': None, 'validation': None, 'test': None, 'train_eval': None, 'message': ''}
  if job.fold is not None:
    row.update(fold=job.fold, **({'refit': True} if job.fold == -1 else {}))
  failed = records.by_id(planner.sweep_dir).get(run_id)
  if records.retryable(failed):
    row['attempt'] = failed.get('attempt', 1) + 1
    print(f'ftlab.sweep: trial {run_id}: attempt {row["attempt"]} of {1 + records.RETRIES} (it failed outside itself: '
          f'{(failed["message"].splitlines() or [""])[0][:200]})', flush=True)
  if _worker_deaths(job) >= records.WORKER_DEATHS:
    _finish_row(row, WorkerDied(_worker_deaths(job)), {}, sweep.metric, 0.0)
    return row, None
  fold = '' if job.fold is None else ' refit on every fold' if job.fold == -1 else f' fold {job.fold}'
  print(f'ftlab.sweep: trial {run_id} {json.dumps(job.point.values)} seed {job.seed}{fold}', flush=True)
  try:
    planned = planner.stages(space.apply(base, job.point.overrides, job.seed, job.fold, sweep.folds), run_id)
    stages.run_sources(planned)
  except Exception as err:  # a bad trial config, a broken data file, a bug: recorded, and the sweep goes on
    _stop_if_unwritable(err, workdir)
    _finish_row(row, err, {}, sweep.metric, time.perf_counter() - t0)
    return row, None
  return row, planned.final


def _stop_if_unwritable(err: BaseException | None, workdir: str) -> None:
  """Re-raises a disk that is full or cannot be written: the sweep stops there (exit status 4) with the trial
  unrecorded, so that a rerun, once there is space, resumes it from its last checkpoint instead of keeping a
  failure that was not the trial's."""
  if err is not None and workdir_lib.write_problem(err, workdir) is not None:
    raise err


def _on_eval(job: Job, sweep: space.Sweep, seen: dict):
  """The run's evaluation callback: remembers the last validation row in `seen`, reports it to the Optuna trial
  and raises Stop when the pruner says so."""
  def on_eval(step, validation):
    seen.update(row=validation, step=step)
    if job.trial is not None and job.report_intermediate and sweep.pruner['name'] != 'none':
      job.trial.report(float(validation[sweep.metric]), step)
      if job.trial.should_prune():
        raise Stop(step, f'pruned by the {sweep.pruner["name"]} pruner at step {step} '
                               f'({sweep.metric} {validation[sweep.metric]:.4f})')
  return on_eval


def _finish_row(row: dict, result, seen: dict, metric: str, seconds: float) -> None:
  """Fills a row from how its run ended: a summary dict, or the exception it raised; `seconds` is the wall time
  of the run (of its group, when it trained vectorised)."""
  if isinstance(result, Stop):
    row.update(status='pruned', step=result.step, message=result.reason, validation=seen.get('row'),
               objective=_metric(seen.get('row'), metric))
  elif isinstance(result, Diverged):
    row.update(status='diverged', step=result.step, message=str(result), validation=seen.get('row'))
  elif isinstance(result, config_lib.ConfigError):
    row.update(status='failed', step=0, cause=causes.TRIAL, message=result.report())
  elif isinstance(result, WorkerDied):
    row.update(status='failed', step=0, cause=causes.TRIAL, message=str(result))
  elif isinstance(result, BaseException):
    row.update(status='failed', step=seen.get('step', 0), cause=causes.cause_of(result),
               message=f'{type(result).__name__}: {result}\n'
                       + ''.join(traceback.format_exception(result, limit=5)[-6:]))
  else:
    row.update(status='complete', step=result['best_step'], best_step=result['best_step'],
               final_step=result['final_step'], validation=result['validation'], test=result['test'],
               train_eval=result.get('train_eval'), objective=_metric(result['validation'], metric))
    if 'skipped_steps' in result:  # train.skip_nonfinite
      row['skipped_steps'] = result['skipped_steps']
  row['wall_seconds'] = round(seconds, 3)
  row['validation'] = _scalars(row['validation'])
  row['test'] = _scalars(row['test'])
  row['train_eval'] = _scalars(row['train_eval'])


def _metric(values: dict | None, name: str):
  return None if not values or name not in values else float(values[name])


def _scalars(values: dict | None):
  """A metrics dict without its per-class lists and confusion matrix (those stay in the trial's summary.json)."""
  if values is None:
    return None
  return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _pretrain_dir(sweep_dir: str, config) -> str:
  """Trials whose source-task runs are the same config share one, in DIR/pretrain/<hash>."""
  if not config.init.pretrain.enabled:
    return ''
  source = json.dumps(source_task.source_config(config).to_dict(), sort_keys=True)
  return os.path.join(sweep_dir, 'pretrain', hashlib.sha256(source.encode()).hexdigest()[:12])


def work(planner: Planner, base, sweep: space.Sweep, study, options: Options) -> list[dict]:
  """Takes and runs trials until none is left; returns the rows this worker wrote. With sweep.vectorize K, takes
  up to K waiting trials at a time and runs them together."""
  sweep_dir, rows = planner.sweep_dir, []
  while True:
    if preemption.received():  # SIGTERM between trials (one in progress stops in its loop)
      raise preemption.Preempted(None, sweep_dir)
    recovered = recover_stale(study, options.stale_after)
    if recovered:
      print(f'ftlab.sweep: resuming interrupted trials {", ".join(recovered)}', flush=True)
    taken = []
    while len(taken) < sweep.vectorize:
      trial = _take(study, sweep)
      if trial is None:
        break
      taken.append(trial)
    if not taken:
      break
    with Heartbeat(study, taken):
      if sweep.kind == 'bayes':
        per_trial = [_run_bayes_trial(planner, base, sweep, taken[0])]
      else:
        points = {p.config_id: p for p in space.configurations(sweep)}
        jobs = [Job(points[t.user_attrs['ftlab_config_id']], t.user_attrs['ftlab_seed'], t, True,
                    t.user_attrs.get('ftlab_fold')) for t in taken]
        per_trial = [[row] for row in run_many(planner, base, sweep, jobs, on_row=lambda job, row: _tell(
            study, job.trial, sweep, [row]))]  # told as each run ends: no finished trial looks interrupted
    for trial, trial_rows in zip(taken, per_trial):
      rows += trial_rows
      _tell(study, trial, sweep, trial_rows)  # skip_if_finished: only a bayes trial is told here
  return rows


def _take(study, sweep: space.Sweep):
  """The next trial for this worker (marked with its owner), or None when the sweep has none left."""
  import optuna
  waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
  if not waiting and sweep.kind != 'bayes':
    return None
  if not waiting and _fresh_count(study) >= sweep.num_trials:
    return None
  trial = study.ask()
  run_id = trial.user_attrs.get('ftlab_id')
  if run_id is None and sweep.kind != 'bayes':  # the queue emptied meanwhile: Optuna made a new trial
    _discard(study, trial)
    return None
  if run_id is None:
    index = _budget_position(study, trial)
    if index >= sweep.num_trials:
      _discard(study, trial)
      return None
    config_id = f'b{index:03d}'
    trial.set_user_attr('ftlab_config_id', config_id)
    trial.set_user_attr('ftlab_id', config_id)
  trial.set_user_attr('ftlab_owner', owner())
  trial.set_user_attr('ftlab_heartbeat', time.time())
  return trial


def _in_budget(t) -> bool:
  """A trial the bayes sampler made (not re-enqueued after a dead worker) that was not discarded over budget."""
  return bool(t.user_attrs.get('ftlab_fresh')) and not t.user_attrs.get('ftlab_discarded')


def _fresh_count(study) -> int:
  return sum(1 for t in study.get_trials(deepcopy=False) if _in_budget(t))


def _budget_position(study, trial) -> int:
  """The number of sampler-made (not re-enqueued) trials before this one: its place in the budget. Trial numbers
  come from the storage in order, so every worker computes the same positions and the budget is never overshot."""
  trial.set_user_attr('ftlab_fresh', True)
  return sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and _in_budget(t))


def _discard(study, trial):
  import optuna
  trial.set_user_attr('ftlab_discarded', True)
  study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _run_bayes_trial(planner: Planner, base, sweep, trial) -> list[dict]:
  """Runs every seed (and fold) of the configuration the sampler gave `trial`; pruning watches the first run, and
  the others run only if it survives. The sampler is told the mean objective over them."""
  point = space.suggest(sweep, trial, trial.user_attrs['ftlab_config_id'])
  rows = []
  for i, (seed, fold) in enumerate(sweep.replicates()):
    row = run_one(planner, base, sweep, point, seed, trial=trial, report_intermediate=i == 0, fold=fold)
    rows.append(row)
    if row['status'] != 'complete':
      break
  return rows


def _tell(study, trial, sweep, rows: list[dict]):
  import numpy as np
  import optuna
  statuses = {r['status'] for r in rows}
  if statuses == {'complete'}:
    study.tell(trial, float(np.mean([r['objective'] for r in rows])), skip_if_finished=True)
  elif 'pruned' in statuses:
    study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
  else:
    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def refit(planner: Planner, base, sweep: space.Sweep, study) -> dict | None:
  """A cross-validated sweep's refit, once every trial has ended: its best configuration (mean objective over seeds
  and folds) trained on every fold of the training split for the mean of its runs' best steps (its schedule spans
  that length), evaluated once at the end, so that its test metrics come from no choice made on held-out data. Row
  '<config>-s<seed>-refit' with 'refit': True. The first worker to find it missing runs it, under a lock."""
  import optuna
  from ftlab.sweeps import markdown
  states = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
  if study.get_trials(deepcopy=False, states=states):
    print('ftlab.sweep: trials are still running elsewhere; the last worker to finish refits', flush=True)
    return None
  with locks.waiting(os.path.join(planner.sweep_dir, 'refit.lock')):
    rows = [r for r in records.read(planner.sweep_dir) if not r.get('refit')]
    configs = markdown.summarize(rows, markdown.spec_of(records.read_sweep(planner.sweep_dir)))
    if not configs or configs[0].objective is None:
      print('ftlab.sweep: no configuration completed, so there is nothing to refit', flush=True)
      return None
    best = configs[0]
    steps = max(1, round(float(sum(r['best_step'] for r in best.complete)) / len(best.complete)))
    overrides = {**space.expand(sweep, best.values), 'train.num_steps': steps, 'train.num_epochs': 0.0,
                 'eval.every_steps': steps, 'early_stopping.enabled': False}
    point = space.Configuration(best.config_id, best.values, overrides)
    return run_one(planner, base, sweep, point, sweep.seeds[0], fold=-1)


def set_up(sweep_dir: str, sweep: space.Sweep, record: dict, options: Options):
  """Opens the sweep's study, then (on first use) records sweep.json; returns the study. Refused (ConfigError,
  RecordError) before sweep.json is written, and then nothing this call made is left behind."""
  before = set(os.listdir(sweep_dir)) if os.path.isdir(sweep_dir) else None
  os.makedirs(sweep_dir, exist_ok=True)
  try:
    with locks.waiting(os.path.join(sweep_dir, 'sweep.lock')):  # workers starting together set it up once
      saved = records.read_sweep(sweep_dir)
      check_same_sweep(sweep_dir, saved, record)
      check_same_storage(sweep_dir, saved, options)
      first = saved is None
      if first:
        record.update(storage=storage_url(sweep_dir, options), study_name=options.study_name)
      study = open_study(sweep_dir, sweep, record, options)
      if first:
        writers.write_json_atomic(os.path.join(sweep_dir, records.SWEEP), record)
      retried = requeue_retries(study, sweep_dir)
    if retried:
      print(f'ftlab.sweep: running again the trials that failed outside themselves: {", ".join(retried)}', flush=True)
    return study
  except (config_lib.ConfigError, records.RecordError):
    _remove_new(sweep_dir, before)
    raise


def _remove_new(sweep_dir: str, before: set | None) -> None:
  """Removes what a refused set-up made (the sweep folder when it made it, else the entries added since), unless
  another worker has set the sweep up meanwhile."""
  if os.path.exists(os.path.join(sweep_dir, records.SWEEP)):
    return
  if before is None:
    shutil.rmtree(sweep_dir, ignore_errors=True)
    return
  for name in set(os.listdir(sweep_dir)) - before:
    path = os.path.join(sweep_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


def run(config_file: str, sweep_dir: str, *, config_overrides: dict | None = None,
        sweep_overrides: dict | None = None, options: Options | None = None) -> list[dict]:
  """The whole command: checks, records sweep.json, works through the trials, writes the report. Returns every
  row of trials.jsonl."""
  options = options or Options()
  planner = Planner(sweep_dir)
  base, sweep, record = prepare(config_file, config_overrides or {}, sweep_overrides or {}, sweep_dir,
                                planner=planner)
  study = set_up(sweep_dir, sweep, record, options)
  with trackers.in_sweep(base, sweep_dir) as parent:  # log.backends 'mlflow': the trials are one run's children
    work(planner, base, sweep, study, options)
    if sweep.refit:
      refit(planner, base, sweep, study)
    rows = records.read(sweep_dir)
    if options.report:
      from ftlab.sweeps import markdown
      print(f'ftlab.sweep: report {markdown.write(sweep_dir)}', flush=True)
    if parent is not None:
      parent.log_report(sweep_dir)
  return rows
