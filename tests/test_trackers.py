"""Experiment trackers (ftlab/trackers.py) against the real MLflow client: what a run and a sweep log is read back
through MlflowClient from the SQLite store ftlab made, and equals what metrics.jsonl and summary.json hold."""
import importlib.util
import json
import os
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
  c.log.backends = ['mlflow']
  return c


def get_sweep(arg=None):
  return {'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3, 1e-2]}}
'''


def test_a_sweep_is_a_parent_run_with_a_child_per_trial_and_the_report(tmp_path):
  (tmp_path / 'sweep.py').write_text(textwrap.dedent(SWEEP))
  sweep_dir = str(tmp_path / 'sweep')
  for _ in range(2):  # a rerun finds the same parent and runs nothing again
    rows = runner.run(str(tmp_path / 'sweep.py'), sweep_dir)
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


def test_a_backend_chosen_but_not_installed_is_a_config_error_naming_the_pip_command(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'mlflow' else find_spec(name, *a))
  log = small_config(log__backends=['mlflow', 'wandbb']).log
  assert trackers.problems(log) == [
      "log.backends: 'mlflow' needs the mlflow-skinny package, which is not installed; run `pip install "
      "mlflow-skinny==3.18.0`, or drop it from log.backends",
      "log.backends: 'wandbb' is not a backend; choose among tensorboard, mlflow"]
