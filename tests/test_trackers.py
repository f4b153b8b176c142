"""Experiment trackers (ftlab/trackers.py) against the real MLflow client: what a run and a sweep log is read back
through MlflowClient from the SQLite store ftlab made, and equals what metrics.jsonl and summary.json hold."""
import glob
import importlib.util
import json
import os
import struct
import textwrap

import pytest

from conftest import small_config
from ftlab import loop, trackers
from ftlab.plan import make_plan
from ftlab.sweeps import records, runner

mlflow = pytest.importorskip('mlflow', reason='the MLflow tests need `pip install mlflow-skinny==3.18.0` (the '
                             "README's optional line; .ci/run installs it)")
from mlflow.tracking import MlflowClient  # noqa: E402  pylint: disable=wrong-import-position


def _client(folder) -> MlflowClient:
  return MlflowClient(f'sqlite:///{os.path.abspath(os.path.join(folder, "mlflow.db"))}')


def _runs(client) -> list:
  return client.search_runs([client.get_experiment_by_name('ftlab').experiment_id])


def test_a_run_logs_its_config_every_metrics_row_and_its_summary_to_mlflow(tmp_path):
  workdir = tmp_path / 'run'
  outcome = loop.run_plans([make_plan(small_config(train__num_steps=20, log__backends=['mlflow']), str(workdir))])[0]
  assert outcome.error is None
  client = _client(workdir)
  [run] = _runs(client)
  assert run.info.status == 'FINISHED' and run.info.run_name == 'run'
  assert run.data.params['optimizer.learning_rate'] == str(small_config().optimizer.learning_rate)
  assert json.loads(run.data.params['model.features']) == [32, 16]
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  for split, name in (('validation', 'f1_macro'), ('train', 'loss'), ('test', 'accuracy')):
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f'{split}/{name}'))
    assert history == [(r['step'], pytest.approx(r[name])) for r in rows if r['split'] == split], (split, name)
  assert [a.path for a in client.list_artifacts(run.info.run_id)] == ['summary.json']
  assert not os.path.exists(workdir / 'tensorboard')  # log.backends without 'tensorboard'


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(tmp_path):
  config = small_config(log__backends=['mlflow'])
  first = trackers.MlflowRun(config, str(tmp_path), run_name='r')
  first.end('FAILED')
  again = trackers.MlflowRun(config, str(tmp_path), run_name='r')  # reads <workdir>/mlflow_run.json
  assert again.run_id == first.run_id and len(_runs(_client(tmp_path))) == 1
  assert _client(tmp_path).get_run(again.run_id).info.status == 'RUNNING'


SWEEP = '''
from ftlab.config import defaults


def get_config(arg=None):
  c = defaults()
  c.model.features = [16]
  c.data.classes = [5, 6, 7, 8, 9]
  c.train.num_steps, c.train.num_epochs, c.eval.every_steps = 10, 0.0, 5
  c.eval.predictions = False
  c.log.backends = ['mlflow'] + (['wandb'] if arg == 'wandb' else [])
  return c


def get_sweep(arg=None):
  return {'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3, 1e-2]}}
'''


def test_a_sweep_is_a_parent_run_with_a_child_per_trial_and_the_report(tmp_path):
  wandb = importlib.util.find_spec('wandb') is not None  # and, where installed, a W&B group of its trials
  (tmp_path / 'sweep.py').write_text(textwrap.dedent(SWEEP))
  sweep_dir = str(tmp_path / 'sweep')
  for _ in range(2):  # a rerun finds the same parent and runs nothing again
    rows = runner.run(str(tmp_path / 'sweep.py') + (':wandb' if wandb else ''), sweep_dir)
  client = _client(sweep_dir)
  runs = _runs(client)
  [parent] = [r for r in runs if 'mlflow.parentRunId' not in r.data.tags]
  children = {r.info.run_name: r for r in runs if r.data.tags.get('mlflow.parentRunId') == parent.info.run_id}
  assert sorted(children) == sorted(r['id'] for r in rows) == ['c000-s0', 'c001-s0'] and len(runs) == 3
  for row in records.read(sweep_dir):
    child = children[row['id']]
    assert child.info.status == 'FINISHED'
    assert child.data.metrics['validation/f1_macro'] == pytest.approx(
        [json.loads(line) for line in open(os.path.join(sweep_dir, row['workdir'], 'metrics.jsonl'))
         if '"validation"' in line][-1]['f1_macro'])
    assert float(child.data.params['optimizer.learning_rate']) == row['values']['optimizer.learning_rate']
  artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
  assert {'report.md', 'report.html', 'trials.jsonl'} <= artifacts and parent.info.status == 'FINISHED'
  if wandb:
    import wandb as wandb_lib
    wandb_lib.teardown()  # waits for W&B's service process to have written the runs' files
    for row in rows:
      [run_dir] = glob.glob(os.path.join(sweep_dir, row['workdir'], 'wandb', 'offline-run-*'))
      [run] = [r.run for r in _wandb_records(run_dir) if r.WhichOneof('record_type') == 'run']
      assert run.run_group == 'sweep' and run.display_name == row['id']


def test_a_backend_chosen_but_not_installed_is_a_config_error_naming_the_pip_command(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'mlflow' else find_spec(name, *a))
  log = small_config(log__backends=['mlflow', 'wandbb']).log
  assert trackers.problems(log) == [
      "log.backends: 'mlflow' needs the mlflow-skinny package, which is not installed; run `pip install "
      "mlflow-skinny==3.18.0`, or drop it from log.backends",
      "log.backends: 'wandbb' is not a backend; choose among tensorboard, mlflow, wandb"]


def _wandb_records(run_dir: str) -> list:
  """The records of a W&B run's transaction log (<run dir>/run-ID.wandb), parsed with W&B's own protobuf schema.
  The file is a LevelDB-style log: a 7-byte header (':W&B', magic 0xBEE1, version 0), then 32 KiB blocks of
  chunks (crc32c 4 bytes, length 2, type 1: full, first, middle, last). wandb 0.31 ships no Python reader of it
  (reading moved into its Go core), so the test reads it here."""
  from wandb.proto import wandb_internal_pb2
  [path] = glob.glob(os.path.join(run_dir, '*.wandb'))
  data = open(path, 'rb').read()
  assert data[:4] == b':W&B' and struct.unpack('<H', data[4:6])[0] == 0xBEE1
  records, pending, pos, block = [], b'', 7, 32768
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack('<IHB', data[pos:pos + 7])
    pending += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):  # full or last
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      records.append(record)
      pending = b''
    elif kind == 0:
      break
  return records


def test_a_run_logs_its_config_and_every_metrics_row_to_an_offline_wandb_run(tmp_path):
  wandb = pytest.importorskip('wandb', reason="the W&B test needs `pip install wandb==0.31.0` (the README's "
                                              'optional line; .ci/run installs it)')
  workdir = tmp_path / 'run'
  config = small_config(train__num_steps=20, log__backends=['wandb'])
  assert loop.run_plans([make_plan(config, str(workdir))])[0].error is None
  wandb.teardown()  # waits for W&B's service process to have written the run's files
  [run_dir] = glob.glob(str(workdir / 'wandb' / 'offline-run-*'))
  records = _wandb_records(run_dir)
  [run] = [r.run for r in records if r.WhichOneof('record_type') == 'run']
  assert run.display_name == 'run' and run.project == 'ftlab'
  configured = {item.key: json.loads(item.value_json) for item in run.config.update}
  assert configured['optimizer.learning_rate'] == config.optimizer.learning_rate
  assert configured['model.features'] == [32, 16]
  logged = []
  for r in records:
    if r.WhichOneof('record_type') == 'history':
      items = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
      logged += [(items['step'], k, v) for k, v in items.items() if '/' in k]
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  expected = [(r['step'], f'{r["split"]}/{k}', v) for r in rows for k, v in r.items()
              if k not in ('step', 'split') and isinstance(v, (int, float)) and not isinstance(v, bool)]
  assert sorted(logged) == sorted((s, k, pytest.approx(v)) for s, k, v in expected)  # every row, the test row too
  exits = [r.exit.exit_code for r in records if r.WhichOneof('record_type') == 'exit']
  assert exits == [0] and json.load(open(workdir / trackers.WANDB_RUN_FILE))['run_id'] == run.run_id
  assert json.load(open(os.path.join(run_dir, 'files', 'summary.json'))) == json.load(open(workdir / 'summary.json'))
