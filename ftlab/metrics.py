"""Classification metrics for ftlab built on `clu.metrics`.

Device side (inside jitted steps): `make_eval_metrics(C)` / `make_train_metrics()` return
`clu.metrics.Collection` classes built with `Cls.single_from_model_output(loss=..., logits=...,
labels=..., mask=...)` and accumulated with `.merge()`. Rows with mask 0 count nowhere.
`over_devices` reduces a per-device program's metrics. Host side: `scores_from_confusion` (sklearn-compatible precision/recall/F1) and `summarize`
(computed collection -> flat JSON-ready dict).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from ftlab import entity_metrics, ranking_metrics

METRIC_NAMES = ('loss', 'accuracy', 'precision_macro', 'recall_macro', 'f1_macro')
ENTITY_METRIC_NAMES = ('entity_precision', 'entity_recall', 'entity_f1')  # token classification only
LM_METRIC_NAMES = ('perplexity',)  # decoders only
SEGMENTATION_METRIC_NAMES = ('miou',)  # segmentation only (accuracy is then pixel accuracy)
DETECTION_METRIC_NAMES = ('map', 'map50', 'map75')  # detection only: COCO mAP@[.5:.95], @.5, @.75
RATING_METRIC_NAMES = ('rmse', 'mae')  # rating prediction
RANKING_METRIC_NAMES = ranking_metrics.METRIC_NAMES  # 'hr@10', 'ndcg@10', 'mrr', 'sampled_ndcg@10', ...
METRIC_MODES = {'loss': 'min', 'perplexity': 'min', 'accuracy': 'max', 'precision_macro': 'max',
                'recall_macro': 'max', 'f1_macro': 'max', 'miou': 'max', 'map': 'max', 'map50': 'max', 'map75': 'max',
                **{name: 'max' for name in ENTITY_METRIC_NAMES}, 'rmse': 'min', 'mae': 'min',
                **{name: 'max' for name in RANKING_METRIC_NAMES}}


@flax.struct.dataclass
class _Accuracy(clu_metrics.Accuracy):
  """clu Accuracy that accepts any integer label dtype (clu insists on int32)."""

  @classmethod
  def from_model_output(cls, *, logits, labels, **kwargs):
    return super().from_model_output(logits=logits, labels=labels.astype(jnp.int32), **kwargs)


@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
  """Confusion-matrix counts [C, C] (rows = true class, cols = predicted class); merge = sum.

  Use `ConfusionMatrix.of(C)` to get a subclass bound to a static class count (needed for
  `empty()`); the unbound class infers C from `logits.shape[-1]`.
  """
  matrix: jnp.ndarray
  num_classes: ClassVar[int | None] = None

  @classmethod
  @functools.cache
  def of(cls, num_classes: int) -> type[ConfusionMatrix]:
    """Returns a (cached) ConfusionMatrix subclass bound to `num_classes`."""
    sub = type(f'ConfusionMatrix{num_classes}', (cls,), {'num_classes': int(num_classes)})
    return flax.struct.dataclass(sub)

  @classmethod
  def empty(cls) -> ConfusionMatrix:
    if cls.num_classes is None:
      raise ValueError('use ConfusionMatrix.of(num_classes) to get an empty() matrix')
    return cls(matrix=jnp.zeros((cls.num_classes, cls.num_classes), jnp.int32))

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_) -> ConfusionMatrix:
    num_classes = logits.shape[-1] if cls.num_classes is None else cls.num_classes
    if logits.shape[-1] != num_classes:
      raise ValueError(f'logits have {logits.shape[-1]} classes, expected {num_classes}')
    if mask is None:
      mask = jnp.ones(labels.shape, jnp.int32)
    # one_hot of an out-of-range label is all zeros, so garbage labels can never leak in.
    true = jnp.asarray(labels).astype(jnp.int32)[..., None] == jnp.arange(num_classes)
    pred = jnp.argmax(logits, axis=-1)[..., None] == jnp.arange(num_classes)
    true = (true & (jnp.asarray(mask) != 0)[..., None]).astype(jnp.int32).reshape(-1, num_classes)
    pred = pred.astype(jnp.int32).reshape(-1, num_classes)
    return cls(matrix=jnp.einsum('bi,bj->ij', true, pred))

  def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
    return type(self)(matrix=self.matrix + other.matrix)

  def compute(self) -> jnp.ndarray:
    return self.matrix


@functools.cache
def make_eval_metrics(num_classes: int) -> type[clu_metrics.Collection]:
  """Collection class with loss (Average of 'loss'), accuracy and confusion ([C, C] counts)."""
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       accuracy=_Accuracy,
                                       confusion=ConfusionMatrix.of(num_classes))


@functools.cache
def make_tag_eval_metrics(tag_names: tuple[str, ...]) -> type[clu_metrics.Collection]:
  """Token classification: loss, accuracy and confusion over the tags of words, and entity-level counts (IOB2
  spans, as seqeval) for entity precision / recall / F1."""
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       accuracy=_Accuracy,
                                       confusion=ConfusionMatrix.of(len(tag_names)),
                                       entity=entity_metrics.EntityF1.of(tuple(tag_names)))


@functools.cache
def make_pixel_eval_metrics(num_classes: int) -> type[clu_metrics.Collection]:
  """Segmentation: the loss over counted pixels and the pixel confusion matrix, from which `summarize` computes
  pixel accuracy, per-class IoU and mean IoU exactly (integer counts over the whole split)."""
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       pixel_confusion=ConfusionMatrix.of(num_classes))


@functools.cache
def make_train_metrics() -> type[clu_metrics.Collection]:
  """Collection class with loss (Average of 'loss') and accuracy only; mask optional."""
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       accuracy=_Accuracy)


@functools.cache
def make_loss_metrics() -> type[clu_metrics.Collection]:
  """Collection class with the loss alone (Average of 'loss'): the train metrics of tasks without classes."""
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'))


def row_weights(batch: dict, key: str) -> jax.Array:
  """[B] the batch's row mask as float32 weights (padded evaluation rows 0), all ones without one; B is batch[key]'s
  first dimension."""
  rows = batch.get('mask')
  return jnp.ones(batch[key].shape[0], jnp.float32) if rows is None else rows.astype(jnp.float32)


def over_devices(collection, axis_name: str):
  """A collection of one device's rows (inside a per-device program) as the whole batch's, the same on every
  device: counts and totals summed (psum), collected outputs (clu CollectingMetric, e.g. detections) gathered in
  device order, which is the global batch's row order."""
  def reduce(metric):
    if isinstance(metric, clu_metrics.CollectingMetric):
      return jax.lax.all_gather(metric, axis_name, axis=0, tiled=True)
    return jax.lax.psum(metric, axis_name)

  return collection.replace(**{f.name: reduce(getattr(collection, f.name)) for f in dataclasses.fields(collection)})


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  return np.divide(num, den, out=np.zeros(num.shape, np.float64), where=den != 0)


def scores_from_confusion(cm: np.ndarray, *, labels: int | None = None) -> dict:
  """Per-class and macro precision/recall/F1 from a [C, C] confusion matrix (rows = true).

  Matches sklearn's precision_recall_fscore_support with zero_division=0: per-class values cover
  all C classes; macro averages are over the classes seen in the labels or the predictions. With `labels`, only the
  first `labels` classes are scored (sklearn's labels=range(labels)): predictions of the others are misses.
  """
  cm = np.asarray(cm, dtype=np.int64)
  tp = np.diag(cm).astype(np.float64)
  support, predicted = cm.sum(axis=1), cm.sum(axis=0)
  if labels is not None:
    tp, support, predicted = tp[:labels], support[:labels], predicted[:labels]
  precision = _safe_div(tp, predicted.astype(np.float64))
  recall = _safe_div(tp, support.astype(np.float64))
  f1 = _safe_div(2 * tp, (support + predicted).astype(np.float64))  # 2tp / (2tp + fp + fn)
  present = (support > 0) | (predicted > 0)
  macro = (lambda v: float(v[present].mean()) if present.any() else 0.0)
  return {
      'precision_macro': macro(precision), 'recall_macro': macro(recall), 'f1_macro': macro(f1),
      'precision_per_class': precision.tolist(), 'recall_per_class': recall.tolist(),
      'f1_per_class': f1.tolist(), 'support': [int(s) for s in support],
      'confusion_matrix': cm.tolist(),
  }


def iou_scores(cm: np.ndarray) -> dict:
  """Pixel accuracy, per-class IoU (tp / (tp + fp + fn)) and mean IoU over the classes present in the labels or
  the predictions, from a [C, C] pixel confusion matrix (rows = true)."""
  cm = np.asarray(cm, dtype=np.int64)
  tp = np.diag(cm).astype(np.float64)
  union = (cm.sum(axis=0) + cm.sum(axis=1)).astype(np.float64) - tp
  iou = _safe_div(tp, union)
  present = union > 0
  return {'accuracy': float(tp.sum() / max(cm.sum(), 1)), 'iou_per_class': iou.tolist(),
          'miou': float(iou[present].mean()) if present.any() else 0.0}


def summarize(collection) -> dict:
  """Computes an (eval or train) collection into a flat JSON-ready dict of floats/lists."""
  values = collection.compute()
  out = {'loss': float(np.asarray(values['loss']))}
  if 'accuracy' in values:
    out['accuracy'] = float(np.asarray(values['accuracy']))
  if 'squared_error' in values:  # rating prediction
    out['rmse'] = float(np.sqrt(np.asarray(values['squared_error'])))
    out['mae'] = float(np.asarray(values['abs_error']))
  if 'ranking' in values:  # ranking: computed from the collected ranks (rec_task.Ranks)
    out.update(values['ranking'])
  if 'detections' in values:  # detection: COCO mAP over the collected detections
    from ftlab import det_task
    out.update(det_task.detection_scores(values['detections']))
  if 'pixel_confusion' in values:  # segmentation: scores over pixels
    cm = np.asarray(values['pixel_confusion'])
    out.update(scores_from_confusion(cm))
    out.update(iou_scores(cm))
  if 'confusion' in values:
    out.update(scores_from_confusion(np.asarray(values['confusion'])))
  if 'perplexity' in values:  # a decoder's evaluation: the mean token loss, exponentiated
    out['perplexity'] = float(np.exp(np.asarray(values['perplexity'])))
  if 'label_confusion' in values:  # generations scored over a label set, plus a last class for 'none of them'
    cm = np.asarray(values['label_confusion'])
    out.update(scores_from_confusion(cm, labels=cm.shape[0] - 1))
  if 'entity' in values:
    out.update(entity_metrics.entity_scores(np.asarray(values['entity'])))
  return out
