"""Ranking metrics of next-item recommendation, per evaluated user (one held-out target each), averaged over users.

A target's rank is the number of other candidates scoring at least as high as it (ties count against the target, so
a model that scores everything alike ranks it last, not first). From the 0-based rank r:
  HR@K = recall@K = [r < K] (one target per user),  NDCG@K = [r < K] / log2(r + 2),  MRR = 1 / (r + 1).
Two candidate sets: 'sampled' ranks the target among data.interactions.eval_negatives sampled items the user never
interacted with (the NCF / SASRec protocol; metric names prefixed 'sampled_'); full ranking ranks it among every
catalogue item the user has not interacted with before it (Krichene and Rendle, 2020: sampled metrics can mislead).
coverage@K: the share of the catalogue that appears in some user's full-ranking top K.

`ranks_*` and `top_items` run on device inside the evaluation step (the full catalogue's scores are [B, rows], which a
sharded item table computes per shard); `scores` summarises the collected ranks on the host.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

KS = (5, 10, 20)
TOP = max(KS)
NAMES = tuple(f'{m}@{k}' for m in ('hr', 'ndcg', 'recall') for k in KS) + ('mrr',)
METRIC_NAMES = NAMES + tuple(f'sampled_{n}' for n in NAMES) + tuple(f'coverage@{k}' for k in KS)


def sampled_ranks(scores: jax.Array, candidates: jax.Array) -> jax.Array:
  """[B] ranks of each row's candidates[:, 0] among its candidates, from the full scores [B, rows]."""
  picked = jnp.take_along_axis(scores, candidates, axis=1)
  return jnp.sum(picked[:, 1:] >= picked[:, :1], axis=1).astype(jnp.int32)


def excluded(shape: tuple[int, int], seen: jax.Array, num_items: int) -> jax.Array:
  """[B, rows] True where an item is no candidate of full ranking: padding ids (0, and past num_items) and the items
  the row's user has seen (`seen` [B, S], 0-padded)."""
  ids = jnp.arange(shape[1])
  padding = (ids == 0) | (ids > num_items)
  rows = jnp.arange(shape[0])[:, None]
  hit = jnp.zeros(shape, bool).at[rows, seen].set(True)
  return hit | padding[None, :]


def full_ranks(scores: jax.Array, target: jax.Array, out: jax.Array) -> jax.Array:
  """[B] ranks of each row's target among the items `out` (from `excluded`) leaves, target excluded."""
  own = jnp.take_along_axis(scores, target[:, None], axis=1)
  ahead = (scores >= own) & ~out
  ahead = ahead.at[jnp.arange(scores.shape[0]), target].set(False)
  return jnp.sum(ahead, axis=1).astype(jnp.int32)


def top_items(scores: jax.Array, out: jax.Array, k: int = TOP) -> jax.Array:
  """[B, k] the highest-scoring items of full ranking, best first; -1 in the slots past a row's last candidate (a
  user who has seen all but a few items)."""
  values, items = jax.lax.top_k(jnp.where(out, -jnp.inf, scores.astype(jnp.float32)), k)
  return jnp.where(values > -jnp.inf, items, -1).astype(jnp.int32)


def per_user(ranks: np.ndarray) -> dict[str, np.ndarray]:
  """{metric: [users]} of 0-based ranks."""
  r = np.asarray(ranks, np.float64)
  out = {}
  for k in KS:
    hit = r < k
    out[f'hr@{k}'] = hit.astype(np.float64)
    out[f'ndcg@{k}'] = np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)
    out[f'recall@{k}'] = hit.astype(np.float64)
  out['mrr'] = 1.0 / (r + 1.0)
  return out


def scores(sampled: np.ndarray | None, full: np.ndarray, top: np.ndarray, num_items: int) -> dict[str, float]:
  """The row's ranking metrics from the evaluated users' sampled ranks (None: no sampled candidates), full ranks and
  full-ranking top items."""
  out = {name: float(v.mean()) for name, v in per_user(full).items()}
  if sampled is not None:
    out.update({f'sampled_{name}': float(v.mean()) for name, v in per_user(sampled).items()})
  for k in KS:
    shown = np.asarray(top)[:, :k]
    out[f'coverage@{k}'] = float(len(np.unique(shown[shown > 0])) / max(num_items, 1))
  return out
