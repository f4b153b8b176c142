"""grain pipelines: a seeded, endlessly repeating training stream and padded evaluation batches.

Training order is a function of (seed, epoch): each epoch is a numpy permutation seeded by (seed, epoch), and
batch k holds positions [k*B, (k+1)*B) of the endless stream of epochs, so remainders spill into the next epoch.
The stream is a grain MapDataset of whole batches, iterated by a grain DatasetIterator whose state goes into
every checkpoint: a resumed run reads exactly the batches an uninterrupted run would have read. Each process
reads its own slice of the data (multi-host).

Why not grain's `shuffle().repeat().batch()`: it shuffles one index at a time (a Feistel permutation per element)
and fetches elements one by one through Python wrappers, about 50 us per example here: 6-20x slower than the
quickstart's train step (benchmarks/train_step.py). Gathering a batch with one numpy fancy index is ~100x faster.
"""
from __future__ import annotations

import sys
from typing import Iterator

import grain
import jax
import numpy as np


def gather(source, indices: np.ndarray) -> dict[str, np.ndarray]:
  """The examples at `indices`, stacked: one vectorised read when the source has `get_batch`."""
  if hasattr(source, 'get_batch'):
    return source.get_batch(indices)
  items = [source[int(i)] for i in indices]
  return {k: np.stack([item[k] for item in items]) for k in items[0]}


class ShuffledBatches:
  """A grain random-access source whose element k is training batch k of an endless, epoch-reshuffled stream."""

  def __init__(self, source, *, batch_size: int, seed: int, examples: np.ndarray):
    self.source, self.batch_size, self.seed, self.examples = source, batch_size, seed, examples
    self._orders: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return sys.maxsize

  def order(self, epoch: int) -> np.ndarray:
    """The example indices of `epoch`, in the order it reads them (the last two epochs are cached)."""
    if epoch not in self._orders:
      self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
      self._orders[epoch] = self.examples[np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))]
    return self._orders[epoch]

  def __getitem__(self, k: int) -> dict[str, np.ndarray]:
    n = len(self.examples)
    positions = np.arange(k * self.batch_size, (k + 1) * self.batch_size)
    epochs, within = np.divmod(positions, n)
    indices = np.empty(self.batch_size, np.int64)
    for epoch in np.unique(epochs):
      at = epochs == epoch
      indices[at] = self.order(int(epoch))[within[at]]
    return gather(self.source, indices)


def train_iterator(source, *, batch_size: int, seed: int, read_threads: int = 0) -> grain.DatasetIterator:
  """Endless shuffled batches of `batch_size` (global; each process gets its share of examples and batch). Every
  example is seen once per epoch and no step sees a short batch.

  `read_threads` > 0 reads ahead in that many threads (for sources on slow storage); 0 reads in the training
  thread, which is fastest for in-memory sources (reader threads only contend for the GIL, as grain notes).
  """
  per_process = batch_size // jax.process_count()
  examples = np.arange(len(source))[jax.process_index()::jax.process_count()]
  batches = ShuffledBatches(source, batch_size=per_process, seed=seed, examples=examples)
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(1, 4 * read_threads))
  return iter(grain.MapDataset.source(batches).to_iter_dataset(options))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Optimizer steps in one pass over `num_examples` (at least 1)."""
  return max(1, num_examples // batch_size)


def eval_batches(source, *, batch_size: int, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every example of `source` (or its first `limit`) once, in order, in batches of exactly `batch_size` (each
  process its share): the last batch is padded by repeating its first row, and a 'mask' field (1 real, 0 padding)
  keeps padding out of metrics."""
  per_process = batch_size // jax.process_count()
  n = len(source) if limit is None else min(limit, len(source))
  examples = np.arange(n)[jax.process_index()::jax.process_count()]

  def batch(b: int) -> dict[str, np.ndarray]:
    indices = examples[b * per_process:(b + 1) * per_process]
    real = len(indices)
    indices = np.concatenate([indices, np.repeat(indices[:1], per_process - real)])
    return {**gather(source, indices), 'mask': np.arange(per_process) < real}

  return iter(grain.MapDataset.range(-(-len(examples) // per_process)).map(batch))
