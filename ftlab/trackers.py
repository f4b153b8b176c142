"""Experiment trackers: a run's parameters, metrics and results sent where a team already looks, besides
metrics.jsonl and summary.json (which stay the record ftlab itself reads).

`log.backends` picks them: 'tensorboard' (tensorboardX event files in <workdir>/tensorboard, the default) and
'mlflow' (MLflow's client: `pip install mlflow-skinny==3.18.0`, the README's optional line). A run is one MLflow
run in the experiment `log.experiment` at `log.mlflow_uri` (default: the SQLite database <workdir>/mlflow.db, its
artifacts beside it in mlartifacts/): the flattened config as parameters, every metrics.jsonl value as a metric
'<split>/<name>' at its step, summary.json and analysis.md as artifacts, FINISHED, FAILED or KILLED (pruned) at
the end. Its run id is kept in <workdir>/mlflow_run.json,
so a resumed run goes on in the same MLflow run (the steps after its last checkpoint are logged again: MLflow keeps
both values; metrics.jsonl keeps one). In a sweep (`in_sweep`) every trial is a child of the sweep's one parent
run, in the sweep's DIR/mlflow.db by default; the parent holds the report as artifacts. A backend chosen but not
installed is a config error, before any compute, naming the pip command.

'wandb' (Weights & Biases: `pip install wandb==0.31.0`) logs the same to a W&B run in <workdir>/wandb, offline by
default (`log.wandb_mode`; `wandb sync <workdir>/wandb/offline-run-*` uploads it later), in the project
`log.experiment`; every row's values against the metric 'step' (so the test row, at the best step, and a resumed
run's repeated steps are kept), the run id kept in <workdir>/wandb_run.json for a resume, a sweep's trials grouped
under the sweep's folder name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time

from ftlab import writers

# backend -> (its module, the pip requirement that installs it: the README's optional line, which .ci/run runs)
BACKENDS = {'tensorboard': ('tensorboardX', 'tensorboardX'), 'mlflow': ('mlflow', 'mlflow-skinny==3.18.0'),
            'wandb': ('wandb', 'wandb==0.31.0')}
WANDB_RUN_FILE = 'wandb_run.json'
WANDB_MODES = ('offline', 'online')
RUN_FILE = 'mlflow_run.json'
_BATCH = 100  # MLflow takes at most this many params or metrics in one call
_sweep: dict = {}  # while a sweep's trials run (in_sweep): W&B's group; MLflow's tracking URI and parent run id


def problems(log) -> list[str]:
  """Why the log section cannot be honoured: an unknown backend, or one whose library is not installed."""
  out = []
  for name in log.backends:
    if name not in BACKENDS:
      out.append(f'log.backends: {name!r} is not a backend; choose among {", ".join(BACKENDS)}')
    elif importlib.util.find_spec(BACKENDS[name][0]) is None:
      package = BACKENDS[name][1].partition('==')[0]
      out.append(f'log.backends: {name!r} needs the {package} package, which is not installed; run '
                 f'`pip install {BACKENDS[name][1]}`, or drop it from log.backends')
  if log.wandb_mode not in WANDB_MODES:
    out.append(f"log.wandb_mode: {log.wandb_mode!r}; choose 'offline' (no network; wandb sync uploads later) or "
               "'online'")
  if len(set(log.backends)) != len(log.backends):
    out.append(f'log.backends: {list(log.backends)} names a backend twice; list each once')
  return out


def open_runs(config, workdir: str) -> list:
  """The run's tracker runs (MlflowRun, WandbRun), for the backends log.backends names."""
  name = os.path.basename(os.path.abspath(workdir))
  kinds = {'mlflow': MlflowRun, 'wandb': WandbRun}
  return [kinds[b](config, workdir, run_name=name) for b in config.log.backends if b in kinds]


def tracking_uri(log, folder: str) -> str:
  """log.mlflow_uri, or the SQLite database in `folder`."""
  return log.mlflow_uri or f'sqlite:///{os.path.abspath(os.path.join(folder, "mlflow.db"))}'


def experiment_id(client, name: str, folder: str) -> str:
  """The MLflow experiment `name`, made with its artifacts in <folder>/mlartifacts when it does not exist yet (a
  relative default would put them in whatever folder the command ran from)."""
  import mlflow
  found = client.get_experiment_by_name(name)
  if found is not None:
    return found.experiment_id
  try:
    return client.create_experiment(name, artifact_location=os.path.abspath(os.path.join(folder, 'mlartifacts')))
  except mlflow.exceptions.MlflowException:  # another process made it meanwhile
    return client.get_experiment_by_name(name).experiment_id


class MlflowRun:
  """One ftlab run as an MLflow run (MlflowClient with explicit run ids: the trials of a vectorised group log
  side by side in one process)."""

  def __init__(self, config, workdir: str, *, run_name: str):
    self.client = _client(_sweep.get('uri') or tracking_uri(config.log, workdir))
    path = os.path.join(workdir, RUN_FILE)
    saved = _read_json(path)
    if saved and saved.get('uri') == self.client.tracking_uri:
      self.run_id = saved['run_id']
      self.client.update_run(self.run_id, status='RUNNING')
      return
    tags = {'ftlab.workdir': os.path.abspath(workdir)}
    if 'parent' in _sweep:
      tags['mlflow.parentRunId'] = _sweep['parent']
    run = self.client.create_run(experiment_id(self.client, config.log.experiment, _sweep.get('folder', workdir)),
                                 run_name=run_name, tags=tags)
    self.run_id = run.info.run_id
    self.log_params(config)
    writers.write_json_atomic(path, {'uri': self.client.tracking_uri, 'run_id': self.run_id})

  def log_params(self, config) -> None:
    from mlflow.entities import Param

    from ftlab.config import flatten
    params = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in flatten(config)]
    for i in range(0, len(params), _BATCH):
      self.client.log_batch(self.run_id, params=params[i:i + _BATCH])

  def log_row(self, step: int, split: str, scalars: dict[str, float]) -> None:
    """One metrics.jsonl row's numbers, each as the metric '<split>/<name>' at `step`."""
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    metrics = [Metric(f'{split}/{k}', v, now, int(step)) for k, v in scalars.items()]
    for i in range(0, len(metrics), _BATCH):
      self.client.log_batch(self.run_id, metrics=metrics[i:i + _BATCH])

  def log_file(self, path: str) -> None:
    if os.path.exists(path):
      self.client.log_artifact(self.run_id, path)

  def end(self, status: str) -> None:
    """status: 'FINISHED', 'FAILED' or 'KILLED' (pruned)."""
    self.client.set_terminated(self.run_id, status=status)


class WandbRun:
  """One ftlab run as a W&B run (wandb.init with reinit='create_new': the trials of a vectorised group log side by
  side in one process)."""

  def __init__(self, config, workdir: str, *, run_name: str):
    import wandb

    from ftlab.config import flatten
    path = os.path.join(workdir, WANDB_RUN_FILE)
    saved = _read_json(path) or {}
    self.run = wandb.init(project=config.log.experiment, name=run_name, dir=workdir, mode=config.log.wandb_mode,
                          id=saved.get('run_id'), resume='allow', reinit='create_new', group=_sweep.get('group'),
                          config=dict(flatten(config)), settings=wandb.Settings(silent=True, console='off'))
    self.run.define_metric('*', step_metric='step')
    if not saved:
      writers.write_json_atomic(path, {'run_id': self.run.id})

  def log_row(self, step: int, split: str, scalars: dict[str, float]) -> None:
    self.run.log({'step': int(step), **{f'{split}/{k}': v for k, v in scalars.items()}})

  def log_file(self, path: str) -> None:
    """A copy in the run's files folder, which W&B uploads with the run (run.save would print a warning)."""
    if os.path.exists(path):
      shutil.copy(path, self.run.dir)

  def end(self, status: str) -> None:
    self.run.summary['ftlab_status'] = status
    self.run.finish(exit_code=0 if status == 'FINISHED' else 1)


@contextlib.contextmanager
def in_sweep(config, sweep_dir: str):
  """While the block runs, every MlflowRun is a child of the sweep's parent run (made once: looked up by the
  sweep's folder on every rerun and by every worker), in the sweep's database; yields the parent as an MlflowRun-
  like handle for the report's artifacts, or None when the sweep does not log to MLflow."""
  _sweep['group'] = os.path.basename(os.path.abspath(sweep_dir))  # W&B: the trials' group
  if 'mlflow' not in config.log.backends:
    try:
      yield None
    finally:
      _sweep.clear()
    return
  from ftlab import locks
  folder = os.path.abspath(sweep_dir)
  client = _client(tracking_uri(config.log, sweep_dir))
  key = hashlib.sha256(folder.encode()).hexdigest()[:16]  # a tag value safe in a filter string, whatever the path
  with locks.waiting(os.path.join(sweep_dir, 'mlflow.lock')):
    experiment = experiment_id(client, config.log.experiment, sweep_dir)
    found = client.search_runs([experiment], filter_string=f"tags.`ftlab.sweep_key` = '{key}'", max_results=1)
    parent = found[0].info.run_id if found else client.create_run(
        experiment, run_name=os.path.basename(folder), tags={'ftlab.sweep_key': key, 'ftlab.sweep': folder}
    ).info.run_id
    client.update_run(parent, status='RUNNING')
  _sweep.update(uri=client.tracking_uri, parent=parent, folder=sweep_dir)
  try:
    yield Parent(client, parent)
  finally:
    _sweep.clear()


@dataclasses.dataclass
class Parent:
  """A sweep's parent run: its report as artifacts."""
  client: object
  run_id: str

  def log_report(self, sweep_dir: str) -> None:
    for name in ('report.md', 'report.html', 'trials.jsonl', 'sweep.json'):
      if os.path.exists(os.path.join(sweep_dir, name)):
        self.client.log_artifact(self.run_id, os.path.join(sweep_dir, name))
    self.client.set_terminated(self.run_id, status='FINISHED')


def _client(uri: str):
  """An MlflowClient on `uri`, without MLflow's INFO lines on making a database's tables (a normal run prints no
  library noise)."""
  from mlflow.tracking import MlflowClient
  logging.getLogger('mlflow.store.db.utils').setLevel(logging.WARNING)
  logging.getLogger('alembic').setLevel(logging.WARNING)
  return MlflowClient(uri)


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
