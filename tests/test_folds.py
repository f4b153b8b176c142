"""k-fold cross-validation: the folds of a training split (disjoint, covering it once, stratified, groups kept
whole), read from a text file's group column, and a cross-validated sweep with its refit."""
import numpy as np
import pytest

from conftest import small_config
from ftlab import data
from ftlab.data import splits


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
