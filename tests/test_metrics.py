"""Tests for ftlab.metrics: clu collections vs sklearn.metrics, masking, edge cases."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from ftlab import metrics as M

C = 5
TOL = 1e-6


@jax.jit
def _eval_step(loss, logits, labels, mask):
  return M.make_eval_metrics(logits.shape[-1]).single_from_model_output(
      loss=loss, logits=logits, labels=labels, mask=mask)


def _collect(logits, labels, loss=None, mask=None, n_batches=4):
  logits, labels = np.asarray(logits, np.float32), np.asarray(labels, np.int32)
  loss = np.zeros(len(labels), np.float32) if loss is None else np.asarray(loss, np.float32)
  mask = np.ones(len(labels), bool) if mask is None else np.asarray(mask, bool)
  coll = None
  for idx in np.array_split(np.arange(len(labels)), n_batches):
    upd = _eval_step(loss[idx], logits[idx], labels[idx], mask[idx])
    coll = upd if coll is None else coll.merge(upd)
  return coll


def _logits_for(preds, num_classes=C):
  return np.eye(num_classes, dtype=np.float32)[np.asarray(preds)]


def _assert_matches_sklearn(summary, y_true, y_pred, num_classes=C):
  labels = list(range(num_classes))
  p, r, f, s = skm.precision_recall_fscore_support(
      y_true, y_pred, labels=labels, average=None, zero_division=0)
  np.testing.assert_allclose(summary['precision_per_class'], p, atol=TOL)
  np.testing.assert_allclose(summary['recall_per_class'], r, atol=TOL)
  np.testing.assert_allclose(summary['f1_per_class'], f, atol=TOL)
  assert summary['support'] == s.tolist()
  pm, rm, fm, _ = skm.precision_recall_fscore_support(
      y_true, y_pred, average='macro', zero_division=0)
  assert summary['precision_macro'] == pytest.approx(pm, abs=TOL)
  assert summary['recall_macro'] == pytest.approx(rm, abs=TOL)
  assert summary['f1_macro'] == pytest.approx(fm, abs=TOL)
  assert summary['f1_macro'] == pytest.approx(skm.f1_score(y_true, y_pred, average='macro'), abs=TOL)
  assert summary['accuracy'] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
  assert summary['confusion_matrix'] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()


@pytest.mark.parametrize('seed', range(5))
def test_random_batches_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(200, C)).astype(np.float32)
  labels = rng.integers(0, C, size=200)
  loss = rng.uniform(0, 3, size=200).astype(np.float32)
  summary = M.summarize(_collect(logits, labels, loss))
  _assert_matches_sklearn(summary, labels, logits.argmax(-1))
  assert summary['loss'] == pytest.approx(float(loss.mean()), rel=1e-5)
  json.dumps(summary)  # JSON-ready
  assert all(isinstance(summary[k], float) for k in M.METRIC_NAMES)
  assert set(M.METRIC_MODES) == (set(M.METRIC_NAMES) | set(M.ENTITY_METRIC_NAMES) | set(M.LM_METRIC_NAMES)
                                 | set(M.SEGMENTATION_METRIC_NAMES) | set(M.DETECTION_METRIC_NAMES)
                                 | set(M.RATING_METRIC_NAMES) | set(M.RANKING_METRIC_NAMES))


def test_class_never_seen_nor_predicted():
  rng = np.random.default_rng(0)
  y_true = rng.integers(0, C - 1, size=100)  # class 4 never true ...
  y_pred = np.where(rng.uniform(size=100) < 0.6, y_true, rng.integers(0, C - 1, size=100))  # ... nor predicted
  summary = M.summarize(_collect(_logits_for(y_pred), y_true))
  _assert_matches_sklearn(summary, y_true, y_pred)
  assert summary['support'][C - 1] == 0 and summary['f1_per_class'][C - 1] == 0.0
  present = summary['f1_per_class'][:C - 1]
  assert summary['f1_macro'] == pytest.approx(np.mean(present), abs=TOL)  # not dragged down


def test_class_predicted_but_never_true():
  y_true = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
  y_pred = np.array([0, 3, 1, 3, 2, 1, 0, 1, 3, 0])  # class 3 predicted but never true
  summary = M.summarize(_collect(_logits_for(y_pred), y_true, n_batches=3))
  _assert_matches_sklearn(summary, y_true, y_pred)
  assert summary['precision_per_class'][3] == 0.0 and summary['recall_per_class'][3] == 0.0


def test_padding_rows_change_nothing():
  rng = np.random.default_rng(7)
  n, pad = 37, 11
  logits = rng.normal(size=(n, C)).astype(np.float32)
  labels = rng.integers(0, C, size=n)
  loss = rng.uniform(0, 3, size=n).astype(np.float32)
  clean = M.summarize(_collect(logits, labels, loss, n_batches=1))

  g_logits = rng.normal(scale=1e4, size=(pad, C)).astype(np.float32)
  g_logits[0] = np.nan
  g_labels = np.concatenate([rng.integers(0, C, size=pad - 2), [-1, C + 3]])
  g_loss = np.full(pad, 1e6, np.float32)
  g_loss[1] = np.nan
  perm = rng.permutation(n + pad)  # padding interleaved with real rows
  cat = lambda a, b: np.concatenate([a, b])[perm]
  mask = cat(np.ones(n), np.zeros(pad)).astype(np.float32)  # 0/1 float mask
  padded = M.summarize(_collect(cat(logits, g_logits), cat(labels, g_labels),
                                cat(loss, g_loss), mask=mask, n_batches=4))
  assert padded['loss'] == pytest.approx(float(loss.mean()), rel=1e-5)
  assert padded['confusion_matrix'] == clean['confusion_matrix']
  for k in clean:
    np.testing.assert_allclose(padded[k], clean[k], atol=TOL, err_msg=k)
  _assert_matches_sklearn(padded, labels, logits.argmax(-1))


def test_train_metrics_mask_optional():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(16, C)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, C, size=16), jnp.int32)
  loss = jnp.asarray(rng.uniform(size=16), jnp.float32)
  Train = M.make_train_metrics()
  step = jax.jit(lambda l, x, y: Train.single_from_model_output(loss=l, logits=x, labels=y))
  coll = step(loss[:8], logits[:8], labels[:8]).merge(step(loss[8:], logits[8:], labels[8:]))
  s = M.summarize(coll)
  assert set(s) == {'loss', 'accuracy'}
  assert s['loss'] == pytest.approx(float(loss.mean()), rel=1e-5)
  assert s['accuracy'] == pytest.approx(float((logits.argmax(-1) == labels).mean()), abs=TOL)
  masked = M.summarize(Train.single_from_model_output(
      loss=loss, logits=logits, labels=labels, mask=jnp.arange(16) < 8))
  assert masked['loss'] == pytest.approx(float(loss[:8].mean()), rel=1e-5)


def test_confusion_matrix_factory_and_empty():
  cls = M.ConfusionMatrix.of(C)
  assert cls is M.ConfusionMatrix.of(C) and issubclass(cls, M.ConfusionMatrix)
  empty = cls.empty()
  assert empty.compute().shape == (C, C) and int(empty.compute().sum()) == 0
  Eval = M.make_eval_metrics(C)
  assert Eval is M.make_eval_metrics(C)
  upd = Eval.single_from_model_output(loss=jnp.ones(3), logits=jnp.eye(C)[:3],
                                      labels=jnp.array([0, 1, 1]), mask=jnp.ones(3))
  merged = Eval.empty().merge(upd)
  np.testing.assert_array_equal(np.asarray(merged.compute()['confusion']),
                                np.asarray(upd.compute()['confusion']))
