"""Shared fixtures: a small, fast config on scikit-learn's digits (no download); ftlab commands as processes forked
from a server that has imported ftlab; the comparison of two runs' outputs, bit for bit."""
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ftlab.config import defaults  # noqa: E402

# Local datasets (the digits too) are prepared into TFDS's data_dir: one fresh folder per test session, never the
# user's ~/tensorflow_datasets. Subprocesses (and grain's worker processes, which import this file) inherit it.
OWNER = 'FTLAB_TESTS_TFDS_DATA_DIR' not in os.environ
if OWNER:
  os.environ['FTLAB_TESTS_TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='ftlab-tests-tfds-')
TFDS_DATA_DIR = os.environ['TFDS_DATA_DIR'] = os.environ['FTLAB_TESTS_TFDS_DATA_DIR']


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if OWNER:
    shutil.rmtree(TFDS_DATA_DIR, ignore_errors=True)


def small_config(**overrides):
  """A run of 40 steps on digits 5-9 with evaluation every 10 steps."""
  c = defaults()
  c.data.classes = [5, 6, 7, 8, 9]
  c.model.features = [32, 16]
  c.train.num_steps, c.train.num_epochs = 40, 0.0
  c.train.log_every_steps = 1000
  c.eval.every_steps = 10
  c.eval.train_subset = 64
  c.schedule.name = 'cosine'
  c.schedule.warmup = '5 steps'
  for key, value in overrides.items():
    *sections, leaf = key.split('__')
    node = c
    for s in sections:
      node = node[s]
    node[leaf] = value
  return c


@pytest.fixture
def config():
  return small_config()


@pytest.fixture
def train_step_traces(monkeypatch) -> list:
  """A list that grows by one each time steps.train_step is traced, i.e. once per compilation of a train step."""
  from ftlab import steps
  traces = []
  original = steps.train_step

  def counting_step(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(steps, 'train_step', counting_step)
  return traces


@pytest.fixture
def no_persistent_cache(monkeypatch):
  """For tests that call ftlab.main.main or ftlab.sweep.main in this process: leave jax's compilation cache as it is
  (enable_persistent_cache would turn it on, into that test's folder, for every later test of the session)."""
  from ftlab import compiled
  monkeypatch.setattr(compiled, 'enable_persistent_cache', lambda workdir: '')


def _ftlab_child(module: str, argv: list, env: dict, log_base: str):
  """In a process forked from the fork server: runs `python -m MODULE ARGV` (its main) with `env` added, stdout and
  stderr going to files."""
  import importlib
  os.environ.update(env)
  for fd, suffix in ((1, '.out'), (2, '.err')):
    target = os.open(log_base + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
  sys.exit(importlib.import_module(module).main(argv))


_server = None


def run_ftlab(module: str, argv: list, *, env: dict | None = None, log_base: str):
  """`python -m MODULE ARGV` as a fresh process, but forked from a server that has imported ftlab already (about
  2 s less per run than a new interpreter; jax's backend starts in the child, so the fork is safe). Returns
  subprocess.CompletedProcess (returncode -9 for a process that SIGKILLed itself) with its stdout and stderr."""
  import multiprocessing
  import subprocess
  global _server
  if _server is None:
    _server = multiprocessing.get_context('forkserver')
    _server.set_forkserver_preload(['ftlab.main', 'ftlab.sweep'])
  child = _server.Process(target=_ftlab_child, args=(module, list(argv), dict(env or {}), log_base))
  child.start()
  child.join()
  outputs = []
  for suffix in ('.out', '.err'):
    with open(log_base + suffix, errors='replace') as f:
      outputs.append(f.read())
  return subprocess.CompletedProcess([module, *argv], child.exitcode, *outputs)


def assert_same_run(whole: str, other: str) -> None:
  """Two runs' metrics.jsonl, summary.json and every kept checkpoint (state leaves, loop, data iterator) are
  bit-identical (ftlab.compare)."""
  from ftlab import compare
  assert compare.differences(whole, other) == []
