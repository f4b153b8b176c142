"""Shared fixtures: a small, fast config on scikit-learn's digits (no download); ftlab commands as processes forked
from a server that has imported ftlab; the comparison of two runs' outputs, bit for bit."""
import os
import re
import shutil
import sys
import tempfile

import pytest

from ftlab.config import defaults  # python -m pytest, run from the repository root, finds ftlab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One fresh folder per test session, never the user's: local datasets (the digits too) are prepared into TFDS's
# data_dir there, and jax's persistent compilation cache lives there, so that the many ftlab processes the tests
# start load the programs an earlier one compiled. Subprocesses (and grain's worker processes, which import this
# file) inherit both.
OWNER = 'FTLAB_TESTS_DIR' not in os.environ
if OWNER:
  os.environ['FTLAB_TESTS_DIR'] = tempfile.mkdtemp(prefix='ftlab-tests-')
SESSION_DIR = os.environ['FTLAB_TESTS_DIR']
# each pytest-xdist worker prepares its own datasets (two processes preparing one folder at once would collide)
WORKER = os.environ.get('PYTEST_XDIST_WORKER', 'main')
TFDS_DATA_DIR = os.environ['TFDS_DATA_DIR'] = os.path.join(SESSION_DIR, f'tfds-{WORKER}')
os.environ['FTLAB_COMPILATION_CACHE'] = os.path.join(SESSION_DIR, 'jax_cache')
# XLA's LLVM backend unoptimised (-O0) for the tests' small programs, this process's and every ftlab process they
# start: compiling is much of their time (~12% of a vectorised-trials test), and what they assert (bit-identical
# resumption, equality with a reference within a tolerance) compares programs compiled alike. Users' runs keep -O2.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'


def with_test_xla_flags(flags: str) -> str:
  return flags if TEST_XLA_FLAGS in flags else f'{TEST_XLA_FLAGS} {flags}'.strip()


os.environ['XLA_FLAGS'] = with_test_xla_flags(os.environ.get('XLA_FLAGS', ''))


def pytest_configure(config):
  del config
  from ftlab import compiled
  compiled.enable_persistent_cache(SESSION_DIR)  # this process too: the forked ftlab runs inherit it


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if OWNER:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


def small_config(**overrides):
  """A run of 40 steps on digits 5-9 with evaluation every 10 steps."""
  c = defaults()
  c.data.classes = [5, 6, 7, 8, 9]
  c.model.features = [32, 16]
  c.train.num_steps, c.train.num_epochs = 40, 0.0
  c.train.log_every_steps = 1000
  c.eval.every_steps = 10
  c.eval.train_subset = 64
  c.eval.predictions = False  # tests that check predictions.jsonl turn it on
  c.schedule.name = 'cosine'
  c.schedule.warmup = '5 steps'
  return overridden(c, overrides)


def overridden(c, overrides: dict):
  """`c` with each override set: 'a__b': value sets c.a.b."""
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


def _ftlab_child(target: str, argv: list, env: dict, log_base: str, cwd: str | None):
  """In a process forked from the fork server: runs `python -m TARGET ARGV` (its main), or with a script for TARGET
  `python -c TARGET ARGV`, with `env` added, in `cwd`, stdout and stderr going to files."""
  import importlib
  os.environ.update(env)
  os.environ['XLA_FLAGS'] = with_test_xla_flags(os.environ.get('XLA_FLAGS', ''))
  if cwd:
    os.chdir(cwd)
  for fd, suffix in ((1, '.out'), (2, '.err')):
    out = os.open(log_base + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, fd)
  if '\n' not in target:
    sys.exit(importlib.import_module(target).main(argv))
  sys.argv = ['-c', *argv]
  exec(compile(target, '<script>', 'exec'), {'__name__': '__main__'})  # pylint: disable=exec-used


_server = None
# What the fork server imports once for every ftlab process the tests start: ftlab's commands, and what they import
# only when used (scikit-learn's splitters and the digits loader: ~1.7 s a process, a third of a small run's time).
PRELOAD = ['ftlab.main', 'ftlab.sweep', 'sklearn.model_selection', 'sklearn.datasets', 'sklearn.metrics']


class Forked:
  """A running `start_ftlab` process."""

  def __init__(self, process, target: str, argv: list, log_base: str):
    self.process, self.args, self.log_base = process, [target, *argv], log_base

  def wait(self, timeout: float | None = None):
    """subprocess.CompletedProcess (returncode -9 for a process that SIGKILLed itself, None if still running after
    `timeout` seconds) with its stdout and stderr."""
    import subprocess
    self.process.join(timeout)
    outputs = []
    for suffix in ('.out', '.err'):
      with open(self.log_base + suffix, errors='replace') as f:
        outputs.append(f.read())
    return subprocess.CompletedProcess(self.args, self.process.exitcode, *outputs)

  def kill(self) -> None:
    if self.process.is_alive():
      self.process.kill()
      self.process.join()


def start_ftlab(target: str, argv: list, *, env: dict | None = None, log_base: str, cwd=None) -> Forked:
  """`python -m TARGET ARGV` (or `python -c TARGET ARGV` for a script) as a fresh process, forked from a server that
  has imported ftlab already (about 3 s less per run than a new interpreter; jax's backend starts in the child, so
  the fork is safe, and XLA_FLAGS in `env` take effect)."""
  import multiprocessing
  global _server
  if _server is None:
    _server = multiprocessing.get_context('forkserver')
    _server.set_forkserver_preload(PRELOAD)
  child = _server.Process(target=_ftlab_child, args=(target, list(argv), dict(env or {}), log_base,
                                                     None if cwd is None else str(cwd)))
  child.start()
  return Forked(child, target, argv, log_base)


def run_ftlab(target: str, argv: list, *, env: dict | None = None, log_base: str, cwd=None,
              timeout: float | None = None):
  """start_ftlab, waited for (and killed after `timeout` seconds): its subprocess.CompletedProcess."""
  forked = start_ftlab(target, argv, env=env, log_base=log_base, cwd=cwd)
  try:
    return forked.wait(timeout)
  finally:
    forked.kill()


def config_file(config, path: str) -> str:
  """Writes a ConfigDict as a config file at `path` (for --config=); returns the path."""
  import json
  with open(path, 'w') as f:
    f.write('import json\nimport ml_collections\n\ndef get_config(arg=None):\n'
            f'  return ml_collections.ConfigDict(json.loads({json.dumps(config.to_dict())!r}))\n')
  return path


def run_config(config, workdir: str, *, env: dict | None = None):
  """`python -m ftlab.main` on a ConfigDict (written to WORKDIR.py as a config file), its log in WORKDIR.log."""
  path = config_file(config, f'{workdir}.py')
  return run_ftlab('ftlab.main', [f'--config={path}', f'--workdir={workdir}'], env=env, log_base=f'{workdir}.log')


def assert_same_run(whole: str, other: str) -> None:
  """Two runs' metrics.jsonl, summary.json and every kept checkpoint (state leaves, loop, data iterator) are
  bit-identical (ftlab.compare)."""
  from ftlab import compare
  assert compare.differences(whole, other) == []


def assert_explained_completely(page: str, value: str = 'logit') -> int:
  """Every example of an explain page satisfies integrated gradients' completeness (the attributions' sum within 1%
  of the attributed value's change from the baseline, as the page reports them); returns how many it shows."""
  found = re.findall(rf'attributions sum ([-+][\d.]+), {value} change ([-+][\d.]+)', page)
  for total, change in found:
    assert abs(float(change)) > 1e-3 and float(total) == pytest.approx(float(change), rel=0.01), (total, change)
  return len(found)
