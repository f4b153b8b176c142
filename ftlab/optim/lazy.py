"""Lazy rows: an embedding table's rows that a batch does not touch keep their values and their optimizer state.

Recommenders regularise and step only the rows of the users and items in the batch (LazyAdam, sparse SGD with L2 on
the looked-up rows): a dense AdamW would decay every row every step and keep moving untouched rows with their stale
momentum. `lazy_rows(inner, lazy)` wraps an optax transformation: for each leaf whose entry of `lazy` is True, a row
(the leaf's slices along its first axis; each element of a vector) whose incoming gradient is all zeros gets a zero
update and keeps every part of the state shaped like the updates (Adam's moments) as it was. Where every row is
touched it is exactly the inner transformation. The step count (Adam's bias correction) stays global, as LazyAdam's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def touched(grad: jax.Array) -> jax.Array:
  """Per row of `grad` (broadcastable to it): whether any of its entries is non-zero."""
  if grad.ndim == 0:
    return jnp.ones((), bool)
  rows = jnp.any(grad != 0, axis=tuple(range(1, grad.ndim)))
  return rows.reshape(rows.shape + (1,) * (grad.ndim - 1))


def held(new, old, mask, target):
  """The optimizer state `new`, where every part shaped like the updates (tree structure `target`) takes `old`'s
  values where `mask` (a tree like the updates) is False; other parts (counts) stay new."""
  if jax.tree.structure(new) == target:
    return jax.tree.map(lambda m, n, o: jnp.where(m, n, o), mask, new, old)
  if isinstance(new, tuple) and type(new) is type(old):
    parts = [held(n, o, mask, target) for n, o in zip(new, old)]
    return type(new)(*parts) if hasattr(new, '_fields') else tuple(parts)
  return new


def lazy_rows(inner: optax.GradientTransformation, lazy) -> optax.GradientTransformation:
  """`inner`, lazy on the leaves where `lazy` (a tree like the updates of Python bools; MaskedNode for leaves of
  other labels inside multi_transform) is True."""

  def update(updates, state, params=None):
    mask = jax.tree.map(lambda is_lazy, g: touched(g) if is_lazy else jnp.ones((), bool), lazy, updates)
    new_updates, new_state = inner.update(updates, state, params)
    new_updates = jax.tree.map(lambda m, u: jnp.where(m, u, jnp.zeros_like(u)), mask, new_updates)
    return new_updates, held(new_state, state, mask, jax.tree.structure(updates))

  return optax.GradientTransformation(inner.init, update)
