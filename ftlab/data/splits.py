"""Which stored split plays which role (train / validation / test), and deterministic carving of missing ones.

Each role in data.splits is a TFDS split string (slicing included: 'train[:5000]', 'train[:10%]'), 'auto' (the
dataset's split of that name when it has one, else carved from train), or '' (always carved). Carving is seeded
by data.split_seed and stratified by label when data.stratify is on: the test split first, then validation from
what is left. A fraction < 1 is a share of the train split; a value >= 1 is a count of examples. With data.folds
(k-fold cross-validation) the rest is cut into folds instead, fold data.fold validating; with data.group_column,
examples of one group stay in one split and one fold.
"""
from __future__ import annotations

import itertools

import numpy as np

from ftlab.data.errors import DataError

ROLES = ('train', 'validation', 'test')


def resolve(spec: dict, available: tuple[str, ...], *, dataset: str, folds: int = 0) -> dict[str, str]:
  """{role: split string, or '' to carve it from train}; with `folds` the validation role is always carved."""
  out = {}
  for role in ROLES:
    value = spec[role]
    if folds and role == 'validation':
      value = ''
    if value == 'auto':
      value = role if role in available else ''
    base = value.split('[')[0].split('+')[0]
    if value and base not in available:
      raise DataError(f'data.splits.{role}={spec[role]!r}: {dataset} has no split {base!r}; it has '
                      f'{", ".join(available)} (or set \'\' to carve it from train)')
    out[role] = value
  if not out['train']:
    raise DataError(f'data.splits.train is empty: name the training split of {dataset} (one of '
                    f'{", ".join(available)})')
  return out


def overlap_problem(roles: dict[str, str], sizes: dict[str, int], *, dataset: str) -> str:
  """Why two roles' split strings select the same rows of one stored split ('train[:8000]' and 'train[-2000:]' of
  a 9,000-row train split), or ''. `sizes`: {stored split: its rows}."""
  import types

  import tensorflow_datasets as tfds
  infos = {name: types.SimpleNamespace(num_examples=n) for name, n in sizes.items()}
  ranges = {role: [(i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to)
                   for i in tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)]
            for role, split in roles.items() if split}
  for a, b in itertools.combinations([r for r in ROLES if r in ranges], 2):
    for (name, a0, a1), (other, b0, b1) in itertools.product(ranges[a], ranges[b]):
      shared = min(a1, b1) - max(a0, b0)
      if other == name and shared > 0:
        return (f'data.splits.{a}={roles[a]!r} and data.splits.{b}={roles[b]!r} select the same {shared} rows of '
                f'{dataset}\'s {name!r} split (rows {max(a0, b0)} to {min(a1, b1) - 1}), so {b} would score '
                f'examples that {a} also holds; give disjoint slices, set data.splits.{b}=\'\' to carve it from '
                'train, or data.allow_split_overlap=True for a deliberate overlap')
  return ''


def _amount(value: float, n: int, key: str) -> float | int:
  if value >= 1:
    if int(value) != value or value >= n:
      raise DataError(f'data.{key}={value}: a count must be a whole number below the {n} training examples')
    return int(value)
  return value


def carve(n: int, labels: np.ndarray | None, amount: float | int, *, seed: int, key: str,
          groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(rest, held_out) sorted index arrays over range(n); stratified by `labels` when given; with `groups`, whole
  groups are held out (sklearn's GroupShuffleSplit: `amount` then counts groups, and labels are not stratified)."""
  from sklearn import model_selection  # here: scikit-learn takes ~1 s to import, and only carving needs it
  amount = _amount(amount, n, key)
  idx = np.arange(n)
  try:
    if groups is not None:
      splitter = model_selection.GroupShuffleSplit(n_splits=1, test_size=amount, random_state=seed)
      rest, held = next(splitter.split(idx, groups=groups))
    else:
      rest, held = model_selection.train_test_split(idx, test_size=amount, random_state=seed, stratify=labels)
  except ValueError as err:
    raise DataError(f'data.{key}={amount}: cannot carve it from {n} training examples ({err}); use a larger '
                    'value, or data.stratify=False') from err
  return np.sort(rest), np.sort(held)


def fold_indices(labels: np.ndarray | None, groups: np.ndarray | None, k: int, *, seed: int,
                 n: int | None = None) -> list[np.ndarray]:
  """K disjoint sorted index arrays covering range(len) once: stratified by `labels` when given (sklearn's
  StratifiedKFold, shuffled with `seed`), with `groups` never split (StratifiedGroupKFold / GroupKFold)."""
  from sklearn import model_selection  # here: scikit-learn takes ~1 s to import, and only folds need it
  n = len(labels) if labels is not None else len(groups) if groups is not None else n
  x = np.zeros((n, 1))
  if groups is not None:
    splitter = (model_selection.StratifiedGroupKFold(k, shuffle=True, random_state=seed) if labels is not None
                else model_selection.GroupKFold(k, shuffle=True, random_state=seed))
  else:
    splitter = (model_selection.StratifiedKFold(k, shuffle=True, random_state=seed) if labels is not None
                else model_selection.KFold(k, shuffle=True, random_state=seed))
  try:
    return [np.sort(held) for _, held in splitter.split(x, labels, groups)]
  except ValueError as err:
    raise DataError(f'data.folds={k}: cannot cut {n} training examples into {k} folds ({err}); use fewer folds, or '
                    'data.stratify=False') from err


def _folds(rest: np.ndarray, strat, groups, data_config) -> dict[str, np.ndarray]:
  """{train, validation} of data.fold among data.folds folds of the indices `rest`."""
  labels = strat[rest] if strat is not None else None
  folds = fold_indices(labels, groups[rest] if groups is not None else None, data_config.folds,
                       seed=data_config.split_seed, n=len(rest))
  if data_config.fold == -1:  # a refit: every fold trains, and is evaluated as the validation split
    return {'train': rest, 'validation': rest}
  held = folds[data_config.fold]
  return {'train': np.setdiff1d(rest, rest[held]), 'validation': rest[held]}


def carve_roles(n: int, labels: np.ndarray | None, roles: dict[str, str], data_config,
                groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """{role: indices into the train split} for train and every role that is carved from it: the test split first,
  then validation (or, with data.folds, the folds) from the rest. `groups` (data.group_column's values) keep each
  group in one carved split and one fold."""
  strat = labels if data_config.stratify and labels is not None else None
  rest, out = np.arange(n), {}
  test, val = data_config.test_fraction, data_config.validation_fraction
  if not roles['test']:
    rest, out['test'] = carve(n, strat, test, seed=data_config.split_seed, key='test_fraction', groups=groups)
  if data_config.folds:
    return {**out, **_folds(rest, strat, groups, data_config)}
  if not roles['validation']:
    if not roles['test'] and val < 1 and test < 1:
      val = val / (1 - test)  # a share of the whole train split, as the key says
    sub = strat[rest] if strat is not None else None
    keep, held = carve(len(rest), sub, val, seed=data_config.split_seed, key='validation_fraction',
                       groups=groups[rest] if groups is not None else None)
    rest, out['validation'] = rest[keep], rest[held]
  out['train'] = rest
  return out


def carve_lists(chosen: dict[str, list], spec: dict[str, str], data_config) -> tuple[dict, dict]:
  """(examples per role, where each role came from): `chosen` holds the roles `spec` names (train among them);
  the roles spec leaves '' are carved from train's list (unstratified: dense tasks have no one label per image)."""
  if data_config.folds:  # the folds make the validation split
    spec, chosen = {**spec, 'validation': ''}, {r: v for r, v in chosen.items() if r != 'validation'}
  origin = {role: value for role, value in spec.items() if value}
  if all(spec.values()):
    return chosen, origin
  train, out = chosen['train'], dict(chosen)
  for role, idx in carve_roles(len(train), None, spec, data_config).items():
    out[role] = [train[i] for i in idx]
    if role != 'train' or len(idx) != len(train):
      origin[role] = f'{spec["train"]} (carved, {len(idx)} images)'
  return out, origin
