"""The data pipeline: order is a function of (seed, epoch), every example once per epoch, exact eval coverage."""
import numpy as np
import pytest

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


@pytest.mark.parametrize('count', [2, 4])
@pytest.mark.parametrize('remainder', ['spill', 'pad'])
def test_processes_read_their_rows_of_the_single_process_batches(count, remainder):
  """Multi-host: process p's element k is its block of rows of the one-process batch k, so N processes train on
  the same global batches as one; evaluation likewise, and every process runs as many evaluation batches."""
  source = _source(23)
  stream = lambda p, n: data.pipeline.train_batches(source, batch_size=4 * count, seed=3, remainder=remainder,
                                                    process_index=p, process_count=n)
  one, shares = stream(0, 1), [stream(p, count) for p in range(count)]
  for k in range(8):  # several epochs
    assert [i for s in shares for i in _ids(s[k])] == _ids(one[k])
    if remainder == 'pad':
      np.testing.assert_array_equal(np.concatenate([s[k]['mask'] for s in shares]), one[k]['mask'])
  evals = [list(data.eval_batches(source, batch_size=2 * count, process_index=p, process_count=count))
           for p in range(count)]
  whole = list(data.eval_batches(source, batch_size=2 * count, process_index=0, process_count=1))
  assert {len(e) for e in evals} == {len(whole)}  # every process runs the same number of evaluation steps
  for b, batch in enumerate(whole):
    real = [i for e in evals for i, m in zip(_ids(e[b]), e[b]['mask']) if m]
    assert real == [i for i, m in zip(_ids(batch), batch['mask']) if m]
  assert sorted(i for e in evals for b in e for i, m in zip(_ids(b), b['mask']) if m) == list(range(23))


def test_remainder_drop_and_pad():
  source = _source(23)
  drop = data.pipeline.train_batches(source, batch_size=5, seed=0, remainder='drop', process_count=1,
                                     process_index=0)
  first_epoch = [i for k in range(4) for i in _ids(drop[k])]
  assert first_epoch == drop.order(0).tolist()[:20]  # the last 3 of epoch 0 are dropped
  assert _ids(drop[4]) == drop.order(1).tolist()[:5]  # batch 4 opens epoch 1
  pad = data.pipeline.train_batches(source, batch_size=5, seed=0, remainder='pad', process_count=1,
                                    process_index=0)
  masks = [pad[k]['mask'] for k in range(5)]
  assert [int(m.sum()) for m in masks] == [5, 5, 5, 5, 3]
  real = [i for k in range(5) for i, m in zip(_ids(pad[k]), pad[k]['mask']) if m]
  assert sorted(real) == list(range(23))  # each example exactly once in the padded epoch
  assert data.steps_per_epoch(23, 5, 'pad') == 5 and data.steps_per_epoch(23, 5, 'drop') == 4


def test_augmentation_is_a_function_of_seed_and_batch_index():
  rng = np.random.default_rng(0)
  source = data.ArraySource(rng.integers(0, 256, (16, 6, 6, 3)).astype(np.uint8), np.arange(16) % 2)
  batches = data.pipeline.train_batches(source, batch_size=8, seed=1, augment={'crop_padding': 2, 'flip': True},
                                        process_count=1, process_index=0)
  np.testing.assert_array_equal(batches[3]['image'], batches[3]['image'])
  plain = data.pipeline.train_batches(source, batch_size=8, seed=1, process_count=1, process_index=0)
  assert not np.array_equal(batches[3]['image'], plain[3]['image'])
  np.testing.assert_array_equal(batches[3]['label'], plain[3]['label'])  # same examples, augmented


def test_resumed_iterator_with_worker_processes_matches_an_uninterrupted_one():
  it = data.train_iterator(_source(), batch_size=4, seed=0, workers=2)
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = [_ids(next(it)) for _ in range(6)]
  it.close()
  fresh = data.train_iterator(_source(), batch_size=4, seed=0, workers=2)
  fresh.set_state(state)
  resumed = [_ids(next(fresh)) for _ in range(6)]
  fresh.close()
  single = data.train_iterator(_source(), batch_size=4, seed=0)
  in_process = [_ids(next(single)) for _ in range(11)][5:]
  assert resumed == expected == in_process  # workers change where batches are made, not which
