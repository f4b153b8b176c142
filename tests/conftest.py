"""Shared fixtures: a small, fast config on scikit-learn's digits (no download)."""
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
