"""Packed encoder rows: several examples in one row, each attending to its own tokens with positions restarting,
give each example the logits it has alone (sequence classification under every pooling, RoBERTa positions, and
token classification)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.models import BertConfig, BertEncoder
from ftlab.models.heads import SequenceClassifier, TokenClassifier

LENGTHS = (5, 3, 7)
ROWS = ((0, 1), (2,))  # which examples share a row: 5 + 3 tokens, then 7 and one padding token
WIDTH = 8


def _examples(vocab: int):
  rng = np.random.default_rng(0)
  return [rng.integers(3, vocab, n) for n in LENGTHS]


def _alone(examples):
  """One example per row, right-padded."""
  ids = np.zeros((len(examples), WIDTH), np.int32)
  mask = np.zeros_like(ids)
  for i, e in enumerate(examples):
    ids[i, :len(e)], mask[i, :len(e)] = e, 1
  return {'input_ids': ids, 'attention_mask': mask}


def _packed(examples):
  slots = max(len(r) for r in ROWS)
  ids, mask, segments, positions = (np.zeros((len(ROWS), WIDTH), np.int32) for _ in range(4))
  starts = np.full((len(ROWS), slots), -1, np.int32)
  for r, members in enumerate(ROWS):
    at = 0
    for s, e in enumerate(members):
      n = len(examples[e])
      ids[r, at:at + n], mask[r, at:at + n], segments[r, at:at + n] = examples[e], 1, s + 1
      positions[r, at:at + n], starts[r, s] = np.arange(n), at
      at += n
  return {'input_ids': ids, 'attention_mask': mask, 'segment_ids': segments, 'positions': positions,
          'starts': starts}


def _config(position_offset: int) -> BertConfig:
  return BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=16,
                    position_offset=position_offset)


@pytest.mark.parametrize('pooling,position_offset', [('cls', 0), ('mean', 0), ('pooler', 0), ('cls', 2)])
def test_packed_rows_give_each_example_its_logits_alone(pooling, position_offset):
  config = _config(position_offset)
  model = SequenceClassifier(BertEncoder(config, name='backbone'), num_classes=3, pooling=pooling)
  examples = _examples(config.vocab_size)
  alone, packed = _alone(examples), _packed(examples)
  params = model.init(jax.random.key(0), jax.tree.map(jnp.asarray, alone))
  expected = np.asarray(jax.jit(model.apply)(params, alone))
  got = np.asarray(jax.jit(model.apply)(params, packed))  # [rows, slots, classes]
  assert got.shape == (len(ROWS), 2, 3)
  for r, members in enumerate(ROWS):
    for s, e in enumerate(members):
      np.testing.assert_allclose(got[r, s], expected[e], rtol=1e-5, atol=1e-5)


def test_packed_rows_give_each_token_its_tag_logits_alone():
  config = _config(0)
  model = TokenClassifier(BertEncoder(config, name='backbone'), num_classes=5)
  examples = _examples(config.vocab_size)
  alone, packed = _alone(examples), _packed(examples)
  params = model.init(jax.random.key(1), jax.tree.map(jnp.asarray, alone))
  expected = np.asarray(jax.jit(model.apply)(params, alone))
  got = np.asarray(jax.jit(model.apply)(params, {k: v for k, v in packed.items() if k != 'starts'}))
  for r, members in enumerate(ROWS):
    at = 0
    for e in members:
      n = LENGTHS[e]
      np.testing.assert_allclose(got[r, at:at + n], expected[e, :n], rtol=1e-5, atol=1e-5)
      at += n
