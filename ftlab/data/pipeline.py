"""grain pipelines: a seeded, endlessly repeating training stream and padded evaluation batches.

Training order is a function of (seed, epoch): each epoch is a numpy permutation seeded by (seed, epoch) (with
length bucketing, a permutation that groups similar lengths, also seeded by (seed, epoch)). The stream is a grain
MapDataset whose element k is training batch k, a pure function of k: its indices, its preprocessing and its
augmentation (seeded by (seed, k)). The grain iterator's state goes into every checkpoint, so a resumed run reads
exactly the batches an uninterrupted run would have read, with any number of worker processes. The remainder of
an epoch 'spill's into the next epoch (every example once per epoch, no short batch), is dropped, or is padded
with masked rows.

Multi-host: batch k is the same global batch for any number of processes; process i reads only its contiguous
block of rows of it, the block its devices hold in the global array (parallel.Layout assembles it with
make_array_from_process_local_data). So a run on N processes trains on exactly the batches of a run on one, the
iterator position (k) means the same on every process, and padded lengths and masks agree across processes. (One
exception: augmentation is drawn per process, seeded by (seed, k, process), so augmented runs are deterministic
for a given process count but not equal across counts.)

Why not grain's `shuffle().repeat().batch()`: it shuffles one index at a time (a Feistel permutation per element)
and fetches elements one by one through Python wrappers, about 50 us per example here: 6-20x slower than the
quickstart's train step (benchmarks/train_step.py). Gathering a batch with one numpy fancy index is ~100x faster.
"""
from __future__ import annotations

import math
import sys
from typing import Iterator

import grain
from absl import flags
import jax
import numpy as np

from ftlab.config import schema
from ftlab.data import text

REMAINDERS = ('spill', 'drop', 'pad')


def gather(source, indices: np.ndarray, **kwargs) -> dict[str, np.ndarray]:
  """The examples at `indices`, stacked: one vectorised read when the source has `get_batch`."""
  if hasattr(source, 'get_batch'):
    return source.get_batch(indices, **kwargs)
  items = [source[int(i)] for i in indices]
  return {k: np.stack([item[k] for item in items]) for k in items[0]}


class ShuffledBatches:
  """A grain random-access source whose element k is training batch k of an endless, epoch-reshuffled stream.

  `batch_size` is the global batch; element k holds this process's block of its rows (`process_index` of
  `process_count`, batch_size / process_count rows). `augment` (a dict of ftlab.data.images.augment options) is
  applied with an rng seeded by (seed, k) (and the process, with several); with `buckets` (allowed padded lengths)
  and a source with `lengths`, batches group similar lengths and are padded to the smallest bucket that fits the
  whole global batch. With `pack` (a text source with `get_packed`) each process's examples are packed into rows of
  the source's max_length tokens, the row count the same on every process and a multiple of `row_multiple`; a
  padded remainder's repeats get label -1 instead of a row mask.
  """

  def __init__(self, source, *, batch_size: int, seed: int, examples: np.ndarray, remainder: str = 'spill',
               augment: dict | None = None, buckets: np.ndarray | None = None, process_index: int = 0,
               process_count: int = 1, pack: bool = False, row_multiple: int = 4):
    if remainder not in REMAINDERS:
      raise ValueError(f'remainder {remainder!r}: choose one of {REMAINDERS}')
    if remainder == 'drop' and len(examples) < batch_size:
      raise ValueError(f'{len(examples)} examples cannot fill one batch of {batch_size} with remainder "drop"')
    if batch_size % process_count:
      raise ValueError(f'a batch of {batch_size} does not split over {process_count} processes')
    self.source, self.batch_size, self.seed, self.examples = source, batch_size, seed, np.asarray(examples)
    self.remainder, self.augment, self.buckets = remainder, augment or None, buckets
    self.process_index, self.process_count = process_index, process_count
    self.pack, self.row_multiple = pack, row_multiple
    self._orders: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return sys.maxsize

  def order(self, epoch: int) -> np.ndarray:
    """The example indices of `epoch`, in the order it reads them (the last two epochs are cached)."""
    if epoch not in self._orders:
      self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
      rng = np.random.default_rng([self.seed, epoch])
      if self.buckets is not None:
        perm = text.length_bucketed_order(self.source.lengths[self.examples], self.batch_size, rng)
      else:
        perm = rng.permutation(len(self.examples))
      self._orders[epoch] = self.examples[perm]
    return self._orders[epoch]

  def batches_per_epoch(self) -> int | None:
    n, b = len(self.examples), self.batch_size
    return {'spill': None, 'drop': n // b, 'pad': -(-n // b)}[self.remainder]

  def indices(self, k: int) -> tuple[np.ndarray, int]:
    """(the example indices of batch k, how many of them are real rather than padding)."""
    n, b = len(self.examples), self.batch_size
    if self.remainder == 'spill':
      positions = np.arange(k * b, (k + 1) * b)
      epochs, within = np.divmod(positions, n)
      indices = np.empty(b, np.int64)
      for epoch in np.unique(epochs):
        at = epochs == epoch
        indices[at] = self.order(int(epoch))[within[at]]
      return indices, b
    epoch, j = divmod(k, self.batches_per_epoch())
    indices = self.order(epoch)[j * b:(j + 1) * b]
    real = len(indices)
    return np.concatenate([indices, np.repeat(indices[:1], b - real)]), real

  def rows(self) -> slice:
    """This process's rows of every global batch."""
    per_process = self.batch_size // self.process_count
    return slice(self.process_index * per_process, (self.process_index + 1) * per_process)

  def __getitem__(self, k: int) -> dict[str, np.ndarray]:
    indices, real = self.indices(k)
    kwargs = {}
    if self.augment:
      seed = [self.seed, 1, k] + ([self.process_index] if self.process_count > 1 else [])
      kwargs = {'rng': np.random.default_rng(seed), 'augment': self.augment}
    if self.pack:
      return self._packed(indices, real)
    if self.buckets is not None:
      kwargs['length'] = text.padded_length(self.source.lengths[indices[:real]], self.buckets)
    batch = gather(self.source, indices[self.rows()], **kwargs)
    if self.remainder == 'pad':
      batch['mask'] = (np.arange(self.batch_size) < real)[self.rows()]
    return batch


  def _packed(self, indices: np.ndarray, real: int) -> dict[str, np.ndarray]:
    blocks = indices.reshape(self.process_count, -1)
    rows = max(text.packed_rows(self.source.lengths[b], self.source.max_length, multiple=self.row_multiple)
               for b in blocks)
    counted = (np.arange(self.batch_size) < real)[self.rows()]
    return self.source.get_packed(indices[self.rows()], rows=rows, slots=blocks.shape[1], counted=counted)


def train_batches(source, *, batch_size: int, seed: int, remainder: str = 'spill', augment: dict | None = None,
                  bucket: bool = False, max_length: int = 0, pack: bool = False, process_index: int | None = None,
                  process_count: int | None = None) -> ShuffledBatches:
  """The training stream of this process: its rows of every global batch of `batch_size`."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  buckets = None
  if bucket:
    buckets = text.bucket_lengths(max_length)
  return ShuffledBatches(source, batch_size=batch_size, seed=seed, examples=np.arange(len(source)),
                         remainder=remainder, augment=augment, buckets=buckets, process_index=pi, process_count=pc,
                         pack=pack, row_multiple=math.lcm(4, jax.local_device_count()))


def train_iterator(source, *, batch_size: int, seed: int, read_threads: int = 0, workers: int = 0,
                   **options) -> grain.DatasetIterator:
  """Endless shuffled batches of `batch_size` (global; each process gets its share of examples and batch).

  `read_threads` > 0 reads ahead in that many threads (for sources on slow storage); 0 reads in the training
  thread, which is fastest for in-memory sources (reader threads only contend for the GIL, as grain notes).
  `workers` > 0 prepares batches in that many worker processes (grain mp_prefetch): for preprocessing that holds
  the GIL (decoding images read per batch). `options` go to `train_batches`.
  """
  batches = train_batches(source, batch_size=batch_size, seed=seed, **options)
  read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(1, 4 * read_threads))
  dataset = grain.MapDataset.source(batches).to_iter_dataset(read)
  if workers:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; ftlab has its own command line
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
  return iter(dataset)


def steps_per_epoch(num_examples: int, batch_size: int, remainder: str = 'spill') -> int:
  """Optimizer steps in one pass over `num_examples` (at least 1)."""
  if remainder == 'pad':
    return max(1, -(-num_examples // batch_size))
  return max(1, num_examples // batch_size)


def eval_batches(source, *, batch_size: int, limit: int | None = None, process_index: int | None = None,
                 process_count: int | None = None, buckets=None) -> Iterator[dict[str, np.ndarray]]:
  """Every example of `source` (or its first `limit`) once, in global batches of exactly `batch_size`, of which
  each process reads its block of rows (as in training; all processes run the same number of batches): the last
  batch is padded by repeating a row, and a 'mask' field (1 real, 0 padding) keeps padding out of metrics; 'index'
  is each row's position in `source`. In order; with `buckets` (allowed padded lengths) and a source with
  `lengths`, shortest first, each batch padded to the smallest bucket that fits its global batch (a few compiled
  shapes, and far less padding than max_length: the sums the metrics take are the same up to float order)."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  per_process = batch_size // pc
  n = len(source) if limit is None else min(limit, len(source))
  num_batches = -(-n // batch_size)
  lengths = getattr(source, 'lengths', None) if buckets is not None else None
  order = np.arange(n) if lengths is None else np.argsort(lengths[:n], kind='stable')

  def batch(b: int) -> dict[str, np.ndarray]:
    global_rows = order[b * batch_size:(b + 1) * batch_size]
    indices = global_rows[pi * per_process:(pi + 1) * per_process]
    real = len(indices)
    fill = indices[:1] if real else global_rows[:1]
    indices = np.concatenate([indices, np.repeat(fill, per_process - real)])
    padded = {} if lengths is None else {'length': text.padded_length(lengths[global_rows], buckets)}
    return {**gather(source, indices, **padded), 'mask': np.arange(per_process) < real,
            'index': indices.astype(np.int32)}

  return iter(grain.MapDataset.range(num_batches).map(batch))


def eval_buckets(plan):
  """eval_batches' `buckets` for a planned run: an encoder's whose training batches are bucketed or packed
  (data.tokenizer.bucket / pack: evaluation stays one example a row), else None (a decoder's evaluation by
  generation compiles slowly: one shape)."""
  tokenizer = plan.config.data.tokenizer
  varied = tokenizer.bucket or tokenizer.pack
  return text.bucket_lengths(tokenizer.max_length) if varied and plan.task.kind in ('text', 'tags') else None


def stream_options(data_config) -> dict:
  """`train_iterator` options from config.data."""
  image = data_config.image
  augment = {'crop_padding': image.crop_padding, 'flip': image.flip} if image.crop_padding or image.flip else None
  if schema.reads_masks(data_config):
    from ftlab.data import segmentation
    augment = segmentation.augment_options(data_config)
  if data_config.source == 'detection':
    from ftlab.data import detection
    augment = detection.augment_options(data_config)
  if data_config.source == 'interactions' and data_config.interactions.task == 'ranking':
    augment = {'negatives': data_config.interactions.train_negatives}  # drawn by the (seed, batch) generator
  return {'read_threads': data_config.read_threads, 'workers': data_config.workers,
          'remainder': data_config.remainder, 'augment': augment, 'bucket': data_config.tokenizer.bucket,
          'max_length': data_config.tokenizer.max_length,
          'pack': data_config.tokenizer.pack}
