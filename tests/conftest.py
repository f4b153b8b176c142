"""Shared fixtures: a small, fast config on scikit-learn's digits (no download)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ftlab.config import defaults  # noqa: E402


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
