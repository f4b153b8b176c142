"""Every study in experiments/ is a valid sweep, on the quickstart and on SST-2 (checked before any compute: the
config, the sweep definition and every trial's config)."""
import glob
import os

import pytest

from ftlab.sweeps import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = sorted(p for p in glob.glob(os.path.join(ROOT, 'experiments', '*.py')) if not p.endswith('study_base.py'))


def specs():
  yield os.path.join(ROOT, 'configs', 'quickstart.py')  # the sweep beside the quickstart's get_config
  for path in STUDIES:
    options = ['grid', 'random', 'bayes'] if path.endswith('search.py') else ['']
    for option in options:
      for data in ('', 'sst2'):
        arg = ','.join(p for p in (data, option) if p)
        yield f'{path}:{arg}' if arg else path


@pytest.mark.parametrize('spec', list(specs()), ids=lambda s: os.path.basename(s))
def test_every_study_is_a_valid_sweep(spec, tmp_path):
  # the quickstart's trials are planned too (data, shapes, parameter groups); SST-2's only validated (no data here)
  base, sweep, record = runner.prepare(spec, {}, {}, str(tmp_path), plan_trials='sst2' not in spec)
  assert sweep.params and record['sweep']['kind'] == sweep.kind
  assert len(os.listdir(tmp_path)) == 0  # nothing written


def test_the_studies_cover_the_issue():
  names = {os.path.basename(p)[:-3] for p in STUDIES}
  assert names == {'lr_schedule', 'batch_size', 'epochs', 'dropout', 'weight_decay', 'freezing', 'search',
                   'cross_validation'}
