"""A vectorised group's train step taken a few lanes at a time: the memory of `lanes` trials' activations, not K's.

vmap over all K lanes of a group computes every lane's forward and backward pass at once, so the step's temporaries
(activations kept for the backward pass, attention scores, the feed-forward layers' inputs) are K times one run's:
for 8 LoRA MiniLM trials on 2 CPU cores, about 2 GB over a state of about 1 GB. `in_chunks` runs the same vmapped
step over chunks of `lanes` lanes one after another inside the one compiled program (lax.map): each chunk's
temporaries are freed before the next chunk runs, and the leaves held once (ftlab/steppers/held_once.py) are shared
by every chunk, not split. Each lane's numbers are those of the all-at-once step up to float summation order.
"""
from __future__ import annotations

import jax


def chunk_size(k: int, lanes: int) -> int:
  """The largest divisor of the group's size `k` that is at most `lanes` (0: all K lanes at once)."""
  if lanes <= 0 or lanes >= k:
    return k
  return max(c for c in range(1, lanes + 1) if k % c == 0)


def in_chunks(vmapped_step, states, batch, *, once: tuple[bool, ...], batch_axis, lanes: int):
  """vmapped_step(states, batch) -> (states, metrics), computed `lanes` lanes at a time. `once`: per leaf of the
  state, held once (unstacked, shared by every chunk); `batch_axis` 0 for per-lane batches [K, B, ...], None for a
  batch every lane shares."""
  leaves, treedef = jax.tree.flatten(states)
  k = next(x.shape[0] for x, o in zip(leaves, once) if not o)
  size = chunk_size(k, lanes)
  if size == k:
    return vmapped_step(states, batch)
  split = lambda x: x.reshape((k // size, size) + x.shape[1:])
  held = [x for x, o in zip(leaves, once) if o]

  def one_chunk(chunk):
    stacked, lane_batch = chunk
    from_stacked, from_held = iter(stacked), iter(held)
    new, metrics = vmapped_step(treedef.unflatten([next(from_held if o else from_stacked) for o in once]),
                                batch if batch_axis is None else lane_batch)
    return [x for x, o in zip(jax.tree.leaves(new), once) if not o], metrics

  lane_batches = None if batch_axis is None else jax.tree.map(split, batch)
  stepped, metrics = jax.lax.map(one_chunk, ([split(x) for x, o in zip(leaves, once) if not o], lane_batches))
  merge = lambda x: x.reshape((k,) + x.shape[2:])
  stepped = iter(stepped)
  states = treedef.unflatten([x if o else merge(next(stepped)) for x, o in zip(leaves, once)])
  return states, jax.tree.map(merge, metrics)
