"""k-fold cross-validation: the folds of a training split (disjoint, covering it once, stratified, groups kept
whole), read from a text file's group column, and a cross-validated sweep with its refit."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from conftest import small_config
from ftlab import data
from ftlab.data import splits
from ftlab.sweeps import markdown, records, runner


def _roles(labels, groups=None, *, k=5, fold=0, test=''):
  c = small_config()
  c.data.folds, c.data.fold, c.data.split_seed, c.data.test_fraction = k, fold, 3, 0.2
  return splits.carve_roles(len(labels), labels, {'train': 'train', 'validation': '', 'test': test}, c.data, groups)


def test_folds_are_disjoint_cover_the_training_split_once_and_keep_label_proportions():
  rng = np.random.default_rng(0)
  labels = rng.choice(3, size=203, p=[0.6, 0.3, 0.1])
  per_fold = [_roles(labels, fold=f, test='test') for f in range(5)]  # a named test split: nothing carved for it
  held = [r['validation'] for r in per_fold]
  assert sorted(np.concatenate(held).tolist()) == list(range(203))
  for f, r in enumerate(per_fold):
    assert sorted(np.concatenate([r['train'], r['validation']]).tolist()) == list(range(203))
    expected = np.bincount(labels, minlength=3) / 5
    assert np.all(np.abs(np.bincount(labels[r['validation']], minlength=3) - expected) <= 1)
  carved = [_roles(labels, fold=f) for f in range(5)]  # the test split carved first, the same for every fold
  assert all(np.array_equal(c['test'], carved[0]['test']) for c in carved)
  rest = np.setdiff1d(np.arange(203), carved[0]['test'])
  assert sorted(np.concatenate([c['validation'] for c in carved]).tolist()) == rest.tolist()
  refit = _roles(labels, fold=-1)
  assert np.array_equal(refit['train'], rest) and np.array_equal(refit['validation'], rest)


def test_groups_never_straddle_folds_or_the_carved_test_split():
  rng = np.random.default_rng(1)
  groups = rng.integers(0, 40, size=300).astype(str)
  labels = rng.integers(0, 2, size=300)
  for f in range(4):
    r = _roles(labels, groups, k=4, fold=f)
    sets = [set(groups[r[role]]) for role in ('train', 'validation', 'test')]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_a_text_files_group_column_keeps_a_speakers_examples_in_one_fold(tmp_path):
  rows = [f'speaker{i % 7},{"good" if i % 2 else "bad"} movie {i},{i % 2}' for i in range(70)]
  (tmp_path / 'train.csv').write_text('speaker,text,label\n' + '\n'.join(rows) + '\n')
  (tmp_path / 'vocab.txt').write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'good', 'bad', 'movie']))
  c = small_config(data__source='text', data__path=str(tmp_path))
  c.data.classes, c.data.data_dir = [], str(tmp_path / 'prepared')
  c.data.tokenizer.path = str(tmp_path / 'vocab.txt')
  c.data.folds, c.data.fold, c.data.group_column = 6, 2, 'speaker'
  c.data.splits.validation, c.data.splits.test = 'auto', ''
  c.data.test_fraction = 1  # one speaker held out for the test
  loaded = data.load(c.data)
  assert (len(loaded.train), len(loaded.validation), len(loaded.test)) == (50, 10, 10)


CV_SWEEP = '''
from ftlab.config import defaults


def get_config(arg=None):
  c = defaults()
  c.model.features = [32]
  c.data.classes = [5, 6, 7, 8, 9]
  c.data.splits.validation = ''
  c.optimizer.learning_rate = 3e-3
  c.train.num_steps, c.train.num_epochs = 40, 0.0
  c.eval.every_steps, c.eval.train_subset = 20, 0
  return c


def get_sweep(arg=None):
  return {'kind': 'grid', 'params': {'optimizer.learning_rate': [3e-3, 3e-4]}, 'folds': 2, 'refit': True}
'''


def _summary(sweep_dir, row):
  with open(os.path.join(sweep_dir, row['workdir'], 'summary.json')) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def cv_sweep(tmp_path_factory):
  """The cross-validated sweep, run one trial at a time: (its config file, its directory, its rows)."""
  tmp = tmp_path_factory.mktemp('cv')
  config = tmp / 'cv.py'
  config.write_text(CV_SWEEP)
  sweep_dir = str(tmp / 'cv')
  return str(config), sweep_dir, runner.run(str(config), sweep_dir, options=runner.Options(report=False))


def test_a_cross_validated_sweep_runs_every_fold_ranks_by_the_fold_mean_and_refits_the_best(cv_sweep):
  _, sweep_dir, rows = cv_sweep
  folds = [r for r in rows if not r.get('refit')]
  assert sorted(r['id'] for r in folds) == [f'c00{c}-s0-f{f}' for c in range(2) for f in range(2)]
  sizes = [_summary(sweep_dir, r)['data']['sizes'] for r in folds if r['config_id'] == 'c000']
  train_total = sizes[0]['train'] + sizes[0]['validation']
  assert sum(s['validation'] for s in sizes) == train_total and all(s['test'] == sizes[0]['test'] for s in sizes)

  spec = markdown.spec_of(records.read_sweep(sweep_dir))
  configs = markdown.summarize(rows, spec)
  best, other = configs
  scores = {c.config_id: [r['validation']['f1_macro'] for r in sorted(c.complete, key=lambda r: r['fold'])]
            for c in configs}
  line = {c.config_id: next(l for l in markdown.main_table(configs, spec).splitlines()
                            if f'| {markdown.plots.format_value(c.values["optimizer.learning_rate"])} |' in l)
          for c in configs}
  for c in configs:
    values = scores[c.config_id]
    cells = [cell.strip() for cell in line[c.config_id].split('|')]
    assert cells[4] == f'{np.mean(values):.4f} ± {np.std(values):.4f}'
    assert cells[5] == f'{np.std(values, ddof=1) / np.sqrt(2):.4f}'
  test = stats.ttest_rel(scores[other.config_id], scores[best.config_id])
  assert f'| {test.pvalue:.3g} |' in line[other.config_id]

  refit = next(r for r in rows if r.get('refit'))
  assert refit['id'] == f'{best.config_id}-s0-refit' and refit['status'] == 'complete'
  assert _summary(sweep_dir, refit)['data']['sizes']['train'] == train_total
  assert refit['final_step'] == round(np.mean([r['best_step'] for r in best.complete]))
  assert '## Refit on every fold' in open(markdown.write(sweep_dir)).read()


def test_the_folds_of_a_configuration_train_as_one_vectorised_group_and_end_as_they_do_alone(cv_sweep, tmp_path):
  """vectorize 2: each configuration's two folds are one group (each lane its own training and validation data);
  every trial's best step and metrics equal the trial run alone (float tolerance), and the refit is the same."""
  config, _, alone = cv_sweep
  grouped = runner.run(config, str(tmp_path / 'vectorised'), sweep_overrides={'vectorize': 2},
                       options=runner.Options(report=False))
  by_id = {r['id']: r for r in grouped}
  assert sorted(by_id) == sorted(r['id'] for r in alone)
  for row in alone:
    other = by_id[row['id']]
    assert other['best_step'] == row['best_step'], row['id']
    for split in ('validation', 'test'):
      for key, value in row[split].items():
        assert other[split][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (row['id'], split, key)
