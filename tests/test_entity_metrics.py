"""Tests for ftlab.entity_metrics: entity counts inside jit vs seqeval 1.2.2 (default mode, IOB2, micro)."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from seqeval import metrics as sq
from seqeval.metrics.sequence_labeling import get_entities

from ftlab import entity_metrics as EM

TAG_SETS = [
    ('O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC'),
    ('I-LOC', 'B-PER', 'O', 'I-PER', 'B-LOC'),  # O not first, shuffled ids
    ('O', 'B-X', 'I-X'),  # a single type
    ('O', 'I-ORG', 'B-PER', 'I-PER', 'B-DATE-TIME', 'I-DATE-TIME', 'B-LOC'),  # I-only / B-only types, '-' in a type
]
B, L = 8, 24


@functools.partial(jax.jit, static_argnames=('tag_kinds', 'tag_types'))
def _counts_jit(pred, true, valid, *, tag_kinds, tag_types):
  return EM.entity_counts(pred, true, valid, tag_kinds=tag_kinds, tag_types=tag_types)


def _random_tags(rng, tag_names, shape):
  """Random tag ids, weighted so that O, B and I are about equally likely (long and ill-formed chunks are common)."""
  kinds, _, _ = EM.tag_scheme(tag_names)
  kinds = np.asarray(kinds)
  weights = np.array([1.0 / np.sum(kinds == k) for k in kinds])
  return rng.choice(len(tag_names), size=shape, p=weights / weights.sum())


def _random_batch(rng, tag_names):
  """(pred, true, valid, mask): random lengths, interleaved invalid positions, some rows padded by mask."""
  true = _random_tags(rng, tag_names, (B, L))
  noise = _random_tags(rng, tag_names, (B, L))
  pred = np.where(rng.random((B, L)) < rng.choice([0.0, 0.5, 0.8, 0.95]), true, noise)
  lengths = rng.integers(0, L + 1, size=B)
  valid = (np.arange(L) < lengths[:, None]) & (rng.random((B, L)) < rng.choice([0.5, 0.8, 1.0]))
  mask = rng.random(B) < 0.8
  return pred, true, valid, mask


def _words(tags, valid, mask, tag_names):
  """The word sequences (lists of tag names) of the unmasked rows, for seqeval."""
  return [[tag_names[t] for t, v in zip(row, ok) if v] for row, ok, m in zip(tags, valid, mask) if m]


def _seqeval(y_true, y_pred):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # UndefinedMetricWarning where a denominator is 0
    scores = (sq.precision_score(y_true, y_pred), sq.recall_score(y_true, y_pred), sq.f1_score(y_true, y_pred))
  true_ents, pred_ents = set(get_entities(y_true)), set(get_entities(y_pred))
  return scores, (len(true_ents & pred_ents), len(pred_ents), len(true_ents))


def _assert_matches(counts, y_true, y_pred):
  (p, r, f), expected_counts = _seqeval(y_true, y_pred)
  assert tuple(int(c) for c in counts) == expected_counts
  s = EM.entity_scores(counts)
  assert s['entity_precision'] == pytest.approx(p, abs=1e-12)
  assert s['entity_recall'] == pytest.approx(r, abs=1e-12)
  assert s['entity_f1'] == pytest.approx(f, abs=1e-12)
  assert (s['entity_correct'], s['entity_predicted'], s['entity_true']) == expected_counts


@pytest.mark.parametrize('tag_names', TAG_SETS)
def test_entity_counts_match_seqeval_on_random_sequences(tag_names):
  kinds, types, _ = EM.tag_scheme(tag_names)
  rng = np.random.default_rng(len(tag_names))
  total = np.zeros(3, np.int64)
  for _ in range(60):
    pred, true, valid, mask = _random_batch(rng, tag_names)
    counts = _counts_jit(pred, true, valid & mask[:, None], tag_kinds=kinds, tag_types=types)
    _assert_matches(np.asarray(counts), _words(true, valid, mask, tag_names), _words(pred, valid, mask, tag_names))
    total += np.asarray(counts)
  assert total[0] > 0 and total[1] > total[0] and total[2] > total[0]  # the cases were not trivial


@pytest.mark.parametrize('tag_names', TAG_SETS[:2])
def test_entity_f1_metric_matches_seqeval_and_merges(tag_names):
  metric_cls = EM.EntityF1.of(tag_names)
  assert EM.EntityF1.of(list(tag_names)) is metric_cls
  step = jax.jit(lambda logits, labels, mask: metric_cls.from_model_output(logits=logits, labels=labels, mask=mask))
  rng = np.random.default_rng(7)
  for _ in range(20):
    pred, true, valid, mask = _random_batch(rng, tag_names)
    logits = np.eye(len(tag_names), dtype=np.float32)[pred] + rng.normal(0, 0.01, (B, L, len(tag_names)))
    labels = np.where(valid, true, -1).astype(np.int32)
    whole = step(logits, labels, mask)
    halves = metric_cls.empty().merge(step(logits[:3], labels[:3], mask[:3])).merge(
        step(logits[3:], labels[3:], mask[3:]))
    np.testing.assert_array_equal(np.asarray(halves.compute()), np.asarray(whole.compute()))
    _assert_matches(np.asarray(whole.compute()), _words(true, valid, mask, tag_names),
                    _words(pred, valid, mask, tag_names))


def test_entity_f1_in_a_clu_collection():
  from clu import metrics as clu_metrics
  names = TAG_SETS[0]
  coll = clu_metrics.Collection.create(entities=EM.EntityF1.of(names))
  labels = np.array([[1, -1, 2, 0, 3, -1]], np.int32)
  logits = np.eye(len(names), dtype=np.float32)[np.maximum(labels, 0)]
  out = jax.jit(lambda lo, la: coll.single_from_model_output(logits=lo, labels=la))(logits, labels)
  out = out.merge(coll.empty())
  np.testing.assert_array_equal(np.asarray(out.compute()['entities']), [2, 2, 2])


def test_hand_cases_and_jit():
  names = TAG_SETS[0]
  kinds, types, _ = EM.tag_scheme(names)
  t = {n: i for i, n in enumerate(names)}
  f = functools.partial(EM.entity_counts, tag_kinds=kinds, tag_types=types)
  fj = jax.jit(f)
  true = np.array([[t['B-PER'], t['I-PER'], t['O'], t['B-LOC'], t['O']]])
  valid = np.ones_like(true, bool)
  wrong_end = np.array([[t['B-PER'], t['O'], t['O'], t['B-LOC'], t['O']]])
  for fn in (f, fj):
    np.testing.assert_array_equal(np.asarray(fn(true, true, valid)), [2, 2, 2])
    assert EM.entity_scores(fn(true, true, valid))['entity_f1'] == 1.0
    np.testing.assert_array_equal(np.asarray(fn(wrong_end, true, valid)), [1, 2, 2])
    assert EM.entity_scores(fn(wrong_end, true, valid))['entity_f1'] == 0.5
  # An invalid position inside a span is skipped: B-PER [garbage] I-PER is one entity of two words.
  true = np.array([[t['B-PER'], t['B-LOC'], t['I-PER'], t['O']]])
  pred = np.array([[t['B-PER'], t['O'], t['I-PER'], t['O']]])
  valid = np.array([[True, False, True, True]])
  np.testing.assert_array_equal(np.asarray(fj(pred, true, valid)), [1, 1, 1])
  # Ill-formed: I-PER after O starts an entity; I-LOC after B-PER starts another one.
  true = np.array([[t['O'], t['I-PER'], t['I-PER'], t['I-LOC']]])
  np.testing.assert_array_equal(np.asarray(fj(true, true, np.ones_like(true, bool))), [2, 2, 2])
  # Rows are separate sentences: an I-PER opening row 2 does not continue row 1's PER.
  rows = np.array([[t['B-PER'], t['I-PER']], [t['I-PER'], t['O']]])
  pred = np.array([[t['B-PER'], t['I-PER']], [t['B-PER'], t['O']]])
  np.testing.assert_array_equal(np.asarray(fj(pred, rows, np.ones_like(rows, bool))), [2, 2, 2])
  # vmap over rows agrees with the batched call.
  per_row = jax.vmap(f)(pred, rows, np.ones_like(rows, bool))
  np.testing.assert_array_equal(np.asarray(per_row.sum(0)), [2, 2, 2])


def test_entity_scores_zero_denominators():
  assert EM.entity_scores(np.array([0, 0, 0])) == {
      'entity_precision': 0.0, 'entity_recall': 0.0, 'entity_f1': 0.0,
      'entity_true': 0, 'entity_predicted': 0, 'entity_correct': 0}
  s = EM.entity_scores(jnp.array([0, 3, 0], jnp.int32))
  assert (s['entity_precision'], s['entity_recall'], s['entity_f1']) == (0.0, 0.0, 0.0)
  _assert_matches(np.array([0, 0, 0]), [['O', 'O']], [['O', 'O']])
  _assert_matches(np.array([0, 1, 0]), [['O', 'O']], [['B-PER', 'O']])
  _assert_matches(np.array([0, 0, 1]), [['B-PER', 'O']], [['O', 'O']])


def test_tag_scheme():
  kinds, types, type_names = EM.tag_scheme(['O', 'B-PER', 'I-PER', 'I-LOC', 'B-LOC'])
  assert kinds == (0, 1, 2, 2, 1)
  assert type_names == ('PER', 'LOC') and types[1:] == (0, 0, 1, 1)
  for bad in ('E-PER', 'X', 'B-', 'S-LOC', 'o'):
    with pytest.raises(ValueError, match=repr(bad)):
      EM.tag_scheme(['O', 'B-PER', bad])
  with pytest.raises(ValueError, match='E-PER'):
    EM.EntityF1.of(('O', 'E-PER'))
  with pytest.raises(ValueError, match='of\\(tag_names\\)'):
    EM.EntityF1.from_model_output(logits=jnp.zeros((1, 2, 3)), labels=jnp.zeros((1, 2), jnp.int32))
