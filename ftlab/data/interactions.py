"""Recommendation data (data.source 'interactions'): a log of (user, item, rating, timestamp) rows split by a
protocol (ftlab/data/interaction_splits.py) into batch sources.

  rating prediction   every split: (user, item, rating) rows
  ranking, training   'pairs' (user, item, negatives [k]) for MF / NeuMF, or 'sequences' (a user's history [L] and
                      the next item at every position, negatives [L, k]) for the sequential model
  ranking, evaluation one row per target: the user, the history before it (the latest L items), the target, the
                      sampled candidates (the target first, then data.interactions.eval_negatives items the user
                      never interacted with, fixed by data.split_seed) and every item seen before (excluded from
                      full ranking)

Items are numbered 1..N (0 pads); the item tables have `item_rows` rows, N + 1 rounded up to a multiple of 128 so
that the table divides evenly over devices (rows past N are never candidates). Training negatives come from the
generator the pipeline seeds by (seed, batch), so a resumed run draws the same ones.
"""
from __future__ import annotations

import os

import numpy as np

from ftlab.data import interaction_log, interaction_splits, item_info
from ftlab.data import splits as splits_lib
from ftlab.data.errors import DataError
from ftlab.data.negatives import Negatives

ROW_MULTIPLE = 128


class RatingSource:
  """(user, item, rating) rows."""

  def __init__(self, user, item, rating):
    self.user, self.item, self.rating = user, item, rating

  def __len__(self) -> int:
    return len(self.user)

  def get_batch(self, indices, *, rng=None, augment=None) -> dict[str, np.ndarray]:
    del rng, augment
    return {'user': self.user[indices], 'item': self.item[indices], 'rating': self.rating[indices]}


class PairSource:
  """Training (user, positive item) rows with `k` negatives each; `evaluation`: the training users ranked."""

  def __init__(self, user, item, negatives: Negatives, k: int, evaluation):
    self.user, self.item, self.negatives, self.k, self.evaluation = user, item, negatives, k, evaluation

  def __len__(self) -> int:
    return len(self.user)

  def get_batch(self, indices, *, rng=None, augment=None) -> dict[str, np.ndarray]:
    del augment
    rng = rng if rng is not None else np.random.default_rng(0)
    users = self.user[indices]
    return {'user': users, 'item': self.item[indices], 'negatives': self.negatives.draw(users, (self.k,), rng)}


class SequenceSource:
  """Training windows of a user's history: history [L] and the next item at each position (0: none), with `k`
  negatives per position."""

  def __init__(self, user, history, targets, negatives: Negatives, k: int, evaluation):
    self.user, self.history, self.targets = user, history, targets
    self.negatives, self.k, self.evaluation = negatives, k, evaluation

  def __len__(self) -> int:
    return len(self.user)

  def get_batch(self, indices, *, rng=None, augment=None) -> dict[str, np.ndarray]:
    del augment
    rng = rng if rng is not None else np.random.default_rng(0)
    users, length = self.user[indices], self.history.shape[1]
    return {'user': users, 'history': self.history[indices], 'targets': self.targets[indices],
            'negatives': self.negatives.draw(users, (length, self.k), rng)}


class RankingEvalSource:
  """One row per target: user, history [L], target, candidates [1 + n] (target first), seen [S] (0-padded)."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays

  def __len__(self) -> int:
    return len(self.arrays['user'])

  def get_batch(self, indices, *, rng=None, augment=None) -> dict[str, np.ndarray]:
    del rng, augment
    return {k: v[indices] for k, v in self.arrays.items()}


def _left_padded(rows: list[np.ndarray], width: int) -> np.ndarray:
  out = np.zeros((len(rows), max(width, 1)), np.int32)
  for r, row in enumerate(rows):
    row = row[-width:] if width else row[:0]
    out[r, out.shape[1] - len(row):] = row
  return out


def ranking_eval(data, targets: np.ndarray, *, max_history: int, negatives: Negatives, n: int,
                 rng: np.random.Generator) -> RankingEvalSource:
  histories = [data.item[data.history(j)] for j in targets]
  seen = [np.unique(h) for h in histories]
  users = data.user[targets]
  target = data.item[targets]
  sampled = negatives.draw(users, (n,), rng) if n else np.zeros((len(targets), 0), np.int32)
  return RankingEvalSource({
      'user': users, 'target': target, 'history': _left_padded(histories, max_history),
      'candidates': np.concatenate([target[:, None], sampled], axis=1).astype(np.int32),
      'seen': _left_padded(seen, max((len(s) for s in seen), default=1))})


def _windows(data, train: np.ndarray, length: int, since: int | None):
  """(user, history [W, L], targets [W, L]) of every training sequence cut from its end into windows of L + 1: a
  user's training interactions, after their interactions before `since` (data.interactions.train_since), which are
  history but never targets (target 0)."""
  in_train = np.zeros(len(data.user), bool)
  in_train[train] = True
  context = in_train | (data.time < since) if since is not None else in_train
  users, histories, targets = [], [], []
  for u in range(data.num_users):
    mine = data.order[data.start[u]:data.start[u + 1]]
    mine = mine[context[mine]]
    seq, trained = data.item[mine], in_train[mine]
    for end in range(len(seq), 1, -length):
      window = slice(max(0, end - length - 1), end)
      if not trained[window][1:].any():
        break
      users.append(u)
      histories.append(seq[window][:-1])
      targets.append(np.where(trained[window], seq[window], 0)[1:])
  if not users:
    raise DataError('data.interactions: no user has two training interactions, so no training sequence; the '
                    'sequential model needs histories')
  return np.asarray(users, np.int32), _left_padded(histories, length), _left_padded(targets, length)


def _last_train(data, train: np.ndarray) -> np.ndarray:
  """Each training user's latest training interaction (the training split's evaluation targets)."""
  ordered = train[np.lexsort((data.rank[train], data.user[train]))]
  users = data.user[ordered]
  last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
  return ordered[last]


def _log(data_config):
  ic = data_config.interactions
  path = data_config.path
  if not path:
    raise DataError('data.path is empty: data.source=\'interactions\' reads a log file (CSV, TSV, .dat or JSONL)')
  if os.path.isdir(path):
    raise DataError(f'{path}: is a folder; point data.path at the interaction log file (e.g. .../u.data)')
  log = interaction_log.read(path, ic)
  ranking = ic.task == 'ranking'
  if ic.task == 'rating' and log.ratings is None:
    raise DataError("data.interactions.task='rating' needs ratings, and rating_column is ''; name the rating column "
                    "or rank instead (task='ranking')")
  if ic.split == 'time_cut' and log.times is None:
    raise DataError("data.interactions.split='time_cut' needs timestamps, and timestamp_column is ''; name the "
                    "timestamp column or use split 'random' or 'users'")
  keep = np.ones(len(log), bool)
  if ranking and ic.positive_rating and log.ratings is not None:
    keep = log.ratings >= ic.positive_rating
  if ic.cohort.part:
    keep &= _in_cohort(log.users, ic.cohort) == (ic.cohort.part == 'cohort')
  take = lambda a: None if a is None else a[keep]
  data = interaction_splits.numbered(take(log.users), take(log.items), take(log.ratings), take(log.times),
                                     user_ids=np.unique(log.users), item_ids=np.unique(log.items))
  return log, data, ranking


def _in_cohort(users: np.ndarray, cohort) -> np.ndarray:
  """Whether each row's user is in the cohort: cohort.fraction of the log's users (a share, or a count), drawn by
  cohort.seed from the sorted user ids (the same users however the log is filtered or ordered)."""
  ids = np.unique(users)
  size = int(cohort.fraction) if cohort.fraction >= 1 else max(1, round(cohort.fraction * len(ids)))
  if size >= len(ids):
    raise DataError(f'data.interactions.cohort.fraction={cohort.fraction}: the cohort would hold all {len(ids)} users; '
                    'take fewer')
  chosen = ids[np.random.default_rng(cohort.seed).permutation(len(ids))[:size]]
  return np.isin(users, chosen)


def load(data_config):
  """The train / validation / test sources of config.data and their report."""
  from ftlab.data.sources import Splits  # sources dispatches here: imported when called
  ic = data_config.interactions
  log, data, ranking = _log(data_config)
  split = interaction_splits.split(data, data_config, ranking=ranking)
  warnings = list(split.warnings)
  if log.duplicates:
    warnings.append(f'{log.duplicates} duplicate rows (the same user, item and timestamp) were dropped, the last '
                    'kept')
  catalogue = item_info.read(ic.catalogue, data.item_ids) if ic.catalogue.path else None
  if catalogue is not None and catalogue.missing:
    warnings.append(f'{catalogue.missing} items of the log are not in {ic.catalogue.path}; they have no text and no '
                    'flags')
  built = _ranking(data, split, data_config) if ranking else _rating(data, split)
  built['train'].catalogue = catalogue  # item texts and flags (model.pretrained reads the texts)
  rows = -(-(data.num_items + 1) // ROW_MULTIPLE) * ROW_MULTIPLE
  train_ratings = data.rating[split.train] if data.rating is not None else np.ones(1, np.float32)
  report = {'dataset': f'interactions at {data_config.path}', 'task': ic.task, 'protocol': ic.split,
            'cohort': ic.cohort.part or 'everyone',
            'sizes': {r: len(built[r]) for r in splits_lib.ROLES},
            'splits': {r: f'{ic.split}: {len(getattr(split, r))} interactions' for r in splits_lib.ROLES},
            'num_users': data.num_users, 'num_items': data.num_items, 'item_rows': rows,
            'interactions': len(data.user), 'max_history': ic.max_history, 'mean_rating': float(train_ratings.mean()),
            'rating_range': [float(train_ratings.min()), float(train_ratings.max())], 'warnings': warnings,
            'items_with_text': data.num_items - catalogue.missing if catalogue else 0}
  for warning in warnings:
    print(f'ftlab: warning: {data_config.path}: {warning}', flush=True)
  return Splits(built['train'], built['validation'], built['test'], (), 'ranking' if ranking else 'rating', report)


def _rating(data, split) -> dict:
  of = lambda idx: RatingSource(data.user[idx], data.item[idx], data.rating[idx])
  return {role: of(getattr(split, role)) for role in splits_lib.ROLES}


def _ranking(data, split, data_config) -> dict:
  ic = data_config.interactions
  everything = Negatives(data.user, data.item, data.num_items)
  trained = Negatives(data.user[split.train], data.item[split.train], data.num_items)
  length = ic.max_history

  def evaluated(role: str, targets):
    rng = np.random.default_rng([data_config.split_seed, splits_lib.ROLES.index(role)])
    return ranking_eval(data, targets, max_history=length, negatives=everything, n=ic.eval_negatives, rng=rng)

  train_view = evaluated('train', _last_train(data, split.train))
  if ic.examples == 'sequences':
    since = interaction_splits.cut_seconds(ic.train_since) if ic.train_since else None
    users, history, targets = _windows(data, split.train, length, since)
    train = SequenceSource(users, history, targets, trained, ic.train_negatives, train_view)
  else:
    train = PairSource(data.user[split.train], data.item[split.train], trained, ic.train_negatives, train_view)
  return {'train': train, 'validation': evaluated('validation', split.validation),
          'test': evaluated('test', split.test)}
