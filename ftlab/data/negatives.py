"""Negative sampling: items drawn uniformly from the catalogue (1..N) that a user has never interacted with.

Draws are a function of the generator they are given (the pipeline seeds it by (seed, batch), so a resumed run draws
what an uninterrupted one does); a draw that hits one of the user's items is drawn again until none does. Membership
is one binary search over the sorted keys user * (N + 1) + item.
"""
from __future__ import annotations

import numpy as np

from ftlab.data.errors import DataError


class Negatives:
  """A sampler that never returns an item `users[k]` has interacted with in (`users`, `items`)."""

  def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int):
    self.num_items = int(num_items)
    self.keys = np.unique(users.astype(np.int64) * (num_items + 1) + items)
    distinct = np.bincount(self.keys // (num_items + 1))
    if (distinct >= num_items).any():
      user = int(np.flatnonzero(distinct >= num_items)[0])
      raise DataError(f'user index {user} has interacted with every one of the {num_items} items, so no negative '
                      'can be drawn for them; drop such users from the log')

  def positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each (user, item) is one of the interactions."""
    query = users.astype(np.int64) * (self.num_items + 1) + items
    at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
    return self.keys[at] == query

  def draw(self, users: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """[len(users), *shape] int32 items, none of them an item of its row's user."""
    rows = np.broadcast_to(np.asarray(users).reshape((-1,) + (1,) * len(shape)), (len(users),) + tuple(shape))
    out = rng.integers(1, self.num_items + 1, size=rows.shape)
    bad = self.positive(rows, out)
    while bad.any():
      out[bad] = rng.integers(1, self.num_items + 1, size=int(bad.sum()))
      bad[bad] = self.positive(rows[bad], out[bad])
    return out.astype(np.int32)
