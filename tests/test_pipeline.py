"""The data pipeline: order is a function of (seed, epoch), every example once per epoch, exact eval coverage."""
import numpy as np

from ftlab import data
from ftlab.data.pipeline import ShuffledBatches


def _source(n=23):
  return data.ArraySource(np.arange(n, dtype=np.float32)[:, None, None, None], np.arange(n) % 3)


def _ids(batch):
  return batch['image'][:, 0, 0, 0].astype(int).tolist()


def test_each_epoch_is_a_permutation_that_depends_on_seed_and_epoch():
  source = _source()
  it = data.train_iterator(source, batch_size=5, seed=7)
  stream = [i for _ in range(46) for i in _ids(next(it))]  # 230 examples = 10 epochs of 23
  epochs = [stream[e * 23:(e + 1) * 23] for e in range(10)]
  assert all(sorted(e) == list(range(23)) for e in epochs)  # every example once per epoch; remainders spill over
  assert len({tuple(e) for e in epochs}) == 10  # reshuffled every epoch
  again = data.train_iterator(source, batch_size=5, seed=7)
  assert [i for _ in range(46) for i in _ids(next(again))] == stream
  other = data.train_iterator(source, batch_size=5, seed=8)
  assert [i for _ in range(46) for i in _ids(next(other))] != stream
  batches = ShuffledBatches(source, batch_size=5, seed=7, examples=np.arange(23))
  np.testing.assert_array_equal(batches.order(3), np.array(epochs[3]))


def test_iterator_state_restores_the_exact_position():
  it = data.train_iterator(_source(), batch_size=4, seed=0)
  for _ in range(9):
    next(it)
  state = it.get_state()
  expected = [_ids(next(it)) for _ in range(5)]
  fresh = data.train_iterator(_source(), batch_size=4, seed=0)
  fresh.set_state(state)
  assert [_ids(next(fresh)) for _ in range(5)] == expected


def test_eval_batches_cover_every_example_once_with_padding_masked():
  batches = list(data.eval_batches(_source(), batch_size=10))
  assert [len(b['label']) for b in batches] == [10, 10, 10]
  real = [i for b in batches for i, m in zip(_ids(b), b['mask']) if m]
  assert real == list(range(23)) and sum(int(b['mask'].sum()) for b in batches) == 23
  limited = list(data.eval_batches(_source(), batch_size=10, limit=12))
  assert [i for b in limited for i, m in zip(_ids(b), b['mask']) if m] == list(range(12))
