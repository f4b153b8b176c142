"""Which interactions train and which are evaluated (data.interactions.split), and the history each evaluated one
may see.

  'leave_last_out'  each user's latest interaction is the test target, the one before the validation target, the
                    rest train (NCF / SASRec); a user with fewer than 3 interactions only trains (a warning counts them)
  'time_cut'        data.interactions.time_cuts = [validation start, test start]: interactions before the first cut
                    train; a user's first interaction in [first cut, second cut) is a validation target, the first at
                    or after the second cut a test target (rating prediction: every interaction of the window)
  'users'           held-out users (cold-start cohorts): data.validation_fraction / test_fraction of the users (or
                    counts) are carved out by data.split_seed; their latest interaction is the target (rating: all)
  'random'          interactions carved at random (rating prediction), with data.folds / data.fold for k-fold
data.interactions.train_since then leaves the training interactions before it out of training (a later period
fine-tuned alone), not out of the histories.

A target's history is the user's interactions before it in time (ties in file order), which every protocol makes a
subset of what is already past: nothing after the target, nor after a time cut, is ever trained on before it or seen
in its history.
"""
from __future__ import annotations

import dataclasses
import datetime

import numpy as np

from ftlab.data import splits as splits_lib
from ftlab.data.errors import DataError

PROTOCOLS = ('leave_last_out', 'time_cut', 'users', 'random')


@dataclasses.dataclass(frozen=True)
class Interactions:
  """A log numbered: users 0..U-1, items 1..N (0 pads histories), and each user's interactions in time order."""
  user: np.ndarray  # [n] int32
  item: np.ndarray  # [n] int32
  rating: np.ndarray | None  # [n] float32
  time: np.ndarray  # [n] int64 (the file position where the log has no timestamps)
  user_ids: tuple[str, ...]  # user index -> the log's id
  item_ids: tuple[str, ...]  # item index - 1 -> the log's id
  order: np.ndarray  # interaction indices sorted by (user, time, file position)
  start: np.ndarray  # [U + 1]: user u's interactions are order[start[u]:start[u + 1]]
  rank: np.ndarray  # [n]: each interaction's position among its user's

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  def history(self, j: int) -> np.ndarray:
    """The interaction indices of the user of interaction j before it, in time order."""
    u = self.user[j]
    return self.order[self.start[u]:self.start[u] + self.rank[j]]


def numbered(users: np.ndarray, items: np.ndarray, ratings, times, *, user_ids=None, item_ids=None) -> Interactions:
  """The rows numbered by the sorted ids of `user_ids` / `item_ids` (default: those the rows hold). A part of a log
  (a cohort) numbered by the whole log's ids keeps the whole log's numbers, so that runs on its parts share them."""
  user_ids = np.unique(users) if user_ids is None else user_ids
  item_ids = np.unique(items) if item_ids is None else item_ids
  user, item = np.searchsorted(user_ids, users), np.searchsorted(item_ids, items)
  n = len(users)
  time = times if times is not None else np.arange(n, dtype=np.int64)
  order = np.lexsort((np.arange(n), time, user))
  start = np.searchsorted(user[order], np.arange(len(user_ids) + 1))
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n) - start[user[order]]
  return Interactions(user.astype(np.int32), (item + 1).astype(np.int32), ratings, time, tuple(user_ids),
                      tuple(item_ids), order, start, rank)


@dataclasses.dataclass(frozen=True)
class Split:
  """Interaction indices per role: train's are trained on; validation's and test's are evaluated (targets)."""
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  warnings: tuple[str, ...] = ()


def split(data: Interactions, data_config, *, ranking: bool) -> Split:
  ic = data_config.interactions
  protocol = {'leave_last_out': _leave_last_out, 'time_cut': _time_cut, 'users': _users, 'random': _random}
  result = protocol[ic.split](data, data_config, ranking)
  if ic.train_since:
    since = cut_seconds(ic.train_since)
    result = dataclasses.replace(result, train=result.train[data.time[result.train] >= since])
  for role in splits_lib.ROLES:
    if not len(getattr(result, role)):
      raise DataError(f'data.interactions.split={ic.split!r}: the {role} split is empty; {_fix(ic.split)}')
  return result


def _fix(protocol: str) -> str:
  return {'leave_last_out': 'the users need at least 3 interactions each',
          'time_cut': 'move data.interactions.time_cuts (and train_since) inside the log\'s time range',
          'users': 'raise data.validation_fraction / data.test_fraction',
          'random': 'raise data.validation_fraction / data.test_fraction'}[protocol]


def _leave_last_out(data: Interactions, data_config, ranking: bool) -> Split:
  del data_config, ranking
  counts = np.diff(data.start)
  last = data.order[data.start[1:][counts >= 3] - 1]
  before = data.order[data.start[1:][counts >= 3] - 2]
  train = np.setdiff1d(np.arange(len(data.user)), np.concatenate([last, before]))
  few = int(((counts > 0) & (counts < 3)).sum())
  warnings = (f'{few} users with fewer than 3 interactions only train (leave-last-out holds out two per user); '
              'they are not evaluated',) if few else ()
  return Split(train, np.sort(before), np.sort(last), warnings)


def cut_seconds(value: str) -> int:
  """A time cut's seconds: digits are unix seconds, anything else an ISO 8601 date (UTC unless it names a zone)."""
  text = str(value).strip()
  if text.lstrip('-').isdigit():
    return int(text)
  try:
    moment = datetime.datetime.fromisoformat(text)
  except ValueError:
    raise DataError(f'data.interactions.time_cuts / train_since: {value!r} is neither unix seconds nor an ISO 8601 '
                    "date (e.g. '1998-03-01')") from None
  return int((moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).timestamp())


def _time_cut(data: Interactions, data_config, ranking: bool) -> Split:
  ic = data_config.interactions
  if len(ic.time_cuts) != 2:
    raise DataError(f'data.interactions.time_cuts={list(ic.time_cuts)}: give two cuts, [validation start, test start] '
                    "(e.g. ['1998-02-01', '1998-03-01'])")
  first, second = (cut_seconds(c) for c in ic.time_cuts)
  if first >= second:
    raise DataError(f'data.interactions.time_cuts={list(ic.time_cuts)}: the validation start must come before the '
                    'test start')
  window = {'validation': (data.time >= first) & (data.time < second), 'test': data.time >= second}
  held = {role: np.flatnonzero(w) for role, w in window.items()}
  if ranking:  # each user's first interaction in the window
    held = {role: _first_per_user(data, h) for role, h in held.items()}
  return Split(np.flatnonzero(data.time < first), held['validation'], held['test'])


def _first_per_user(data: Interactions, candidates: np.ndarray) -> np.ndarray:
  if not len(candidates):
    return candidates
  ordered = candidates[np.lexsort((data.rank[candidates], data.user[candidates]))]
  _, first = np.unique(data.user[ordered], return_index=True)
  return np.sort(ordered[first])


def _users(data: Interactions, data_config, ranking: bool) -> Split:
  roles = {'train': '', 'validation': '', 'test': ''}
  users = splits_lib.carve_roles(data.num_users, None, roles, data_config)
  member = np.zeros((3, data.num_users), bool)
  for k, role in enumerate(splits_lib.ROLES):
    member[k, users[role]] = True
  of = lambda k: np.flatnonzero(member[k][data.user])
  if not ranking:
    return Split(of(0), of(1), of(2))
  last = lambda k: np.sort(data.order[data.start[1:][users[splits_lib.ROLES[k]]] - 1])
  return Split(of(0), last(1), last(2))


def _random(data: Interactions, data_config, ranking: bool) -> Split:
  if ranking:
    raise DataError("data.interactions.split='random' holds out interactions without an order, for rating "
                    "prediction; rank with 'leave_last_out', 'time_cut' or 'users', or set data.interactions.task="
                    "'rating'")
  roles = {'train': '', 'validation': '', 'test': ''}
  carved = splits_lib.carve_roles(len(data.user), None, roles, data_config)
  return Split(carved['train'], carved['validation'], carved['test'])
