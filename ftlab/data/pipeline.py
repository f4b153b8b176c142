"""grain pipelines: a seeded, endlessly repeating training stream and padded evaluation batches.

Training order is a function of (seed, epoch): grain's shuffle reseeds each repetition. The training iterator is a
grain DatasetIterator whose state goes into every checkpoint, so a resumed run reads exactly the batches an
uninterrupted run would have read. Each process reads its own slice of the data (multi-host).
"""
from __future__ import annotations

from typing import Iterator

import grain
import jax
import numpy as np


def _shard(ds: grain.MapDataset) -> grain.MapDataset:
  return ds[jax.process_index()::jax.process_count()] if jax.process_count() > 1 else ds


def train_iterator(source, *, batch_size: int, seed: int, read_threads: int = 0) -> grain.DatasetIterator:
  """Endless shuffled batches of `batch_size` (global; each process gets its share). Remainders spill into the
  next epoch's shuffle, so every example is seen once per epoch and no step sees a short batch.

  `read_threads` > 0 reads ahead in that many threads (for sources on slow storage); 0 reads in the training
  thread, which is fastest for in-memory sources (reader threads only contend for the GIL, as grain notes).
  """
  per_process = batch_size // jax.process_count()
  ds = _shard(grain.MapDataset.source(source)).shuffle(seed=seed).repeat(None)
  ds = ds.batch(per_process, drop_remainder=True)
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(1, 4 * read_threads))
  return iter(ds.to_iter_dataset(options))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Optimizer steps in one pass over `num_examples` (at least 1)."""
  return max(1, num_examples // batch_size)


def eval_batches(source, *, batch_size: int, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every example of `source` (or its first `limit`) once, in order, in batches of exactly `batch_size`: the last
  batch is padded by repeating its first row, and a 'mask' field (1 real, 0 padding) keeps padding out of metrics."""
  ds = grain.MapDataset.source(source)
  if limit is not None:
    ds = ds[:min(limit, len(ds))]
  per_process = batch_size // jax.process_count()
  for batch in _shard(ds).batch(per_process, drop_remainder=False):
    n = len(batch['label'])
    pad = per_process - n
    batch = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) if pad else v for k, v in batch.items()}
    batch['mask'] = np.arange(per_process) < n
    yield batch
