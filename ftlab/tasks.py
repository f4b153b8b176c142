"""Per-task inputs, losses and metrics: image classification, sequence (text) classification and token
classification (NER). The train and eval steps ask the run's `Task` what the model reads from a batch, how each
prediction is weighted in the loss, and which metrics to accumulate, so one pair of steps serves all three.

Losses are softmax cross-entropy with (traced) label smoothing. Weights multiply per-class weights, the batch's
row mask (padded rows count nowhere) and, for token classification, the positions that carry a word's tag (the
first sub-token of each word; labels -1 elsewhere).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ftlab import entity_metrics
from ftlab import metrics as metrics_lib

TEXT_INPUTS = ('input_ids', 'attention_mask', 'token_type_ids', 'segment_ids', 'positions', 'starts')


def classification_loss(logits: jax.Array, labels: jax.Array, *, label_smoothing=0.0) -> jax.Array:
  """Per-prediction cross-entropy in float32 (logits [..., C], labels [...] of class or token ids), with label
  smoothing (maybe a traced scalar): optax.softmax_cross_entropy against optax.smooth_labels' targets, computed
  without materialising one-hot targets. (The one-hot form also gave XLA:CPU in jax 0.10.2 a wrong program: under
  jit(vmap) over trials, with labels shared, every trial's masked loss sum over 8x48x64 pixels was the first's.)"""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  s = jnp.asarray(label_smoothing, jnp.float32)
  return (1.0 - s) * nll - s * jnp.mean(logp, axis=-1)


@dataclasses.dataclass(frozen=True)
class Task:
  """What a run predicts: 'image' / 'text' (one label per example), 'tags' (one label per word) or 'segment' (one
  label per pixel, IGNORE (-1) where none counts)."""
  kind: str
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def inputs(self, batch: dict):
    """What the model reads: the image array, or the dict of token arrays."""
    if self.kind in ('image', 'segment'):
      return batch['image']
    return {k: batch[k] for k in TEXT_INPUTS if k in batch}

  def example_input(self, source):
    """One example of `source` shaped as a batch of one, to initialise the model."""
    return self.inputs(source.get_batch(np.zeros(1, np.int64)))

  def labels_and_mask(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(labels clipped to valid ids, mask) of the predictions that count: [B] per example ([B, S] per example slot
    of packed rows), [B, L] per token, [B, H, W] per pixel (slots, tokens and pixels labelled -1 count nowhere)."""
    rows = batch.get('mask')
    if self.kind in ('image', 'text') and batch['label'].ndim == 1:
      labels = batch['label']
      mask = jnp.ones(labels.shape, jnp.float32) if rows is None else rows.astype(jnp.float32)
      return labels, mask
    labels = batch['labels' if self.kind == 'tags' else 'label']  # packed text: [B, S], -1 on empty slots
    mask = (labels >= 0).astype(jnp.float32)
    if rows is not None:  # padded rows: every token / pixel of them
      mask = mask * rows.astype(jnp.float32).reshape(rows.shape + (1,) * (labels.ndim - 1))
    return jnp.maximum(labels, 0), mask

  def losses_and_weights(self, logits, batch: dict, *, label_smoothing, class_weights):
    """(per-prediction losses, their weights): the batch's loss is sum(w * loss) / sum(w)."""
    labels, mask = self.labels_and_mask(batch)
    losses = classification_loss(logits, labels, label_smoothing=label_smoothing)
    return losses, class_weights[labels] * mask

  def train_metrics(self, *, losses, logits, batch):
    labels, mask = self.labels_and_mask(batch)
    return metrics_lib.make_train_metrics().single_from_model_output(loss=losses, logits=logits, labels=labels,
                                                                     mask=mask)

  def eval_metrics(self, *, logits, batch):
    """Loss (no label smoothing), accuracy and the confusion matrix; for tags also entity-level counts."""
    labels, mask = self.labels_and_mask(batch)
    losses = classification_loss(logits, labels)
    if self.kind == 'segment':
      return metrics_lib.make_pixel_eval_metrics(self.num_classes).single_from_model_output(
          loss=losses, logits=logits, labels=labels, mask=mask)
    if self.kind != 'tags':
      return metrics_lib.make_eval_metrics(self.num_classes).single_from_model_output(
          loss=losses, logits=logits, labels=labels, mask=mask)
    return metrics_lib.make_tag_eval_metrics(self.class_names).single_from_model_output(
        loss=losses, logits=logits, labels=labels, mask=mask)

  def check_metric(self, metric: str) -> str | None:
    """A problem when eval.metric does not exist for this task."""
    if metric == 'miou' and self.kind != 'segment':
      return "eval.metric: 'miou' is for segmentation (a data source with masks); use f1_macro or accuracy"
    if metric in ('map', 'map50', 'map75'):
      return f"eval.metric: {metric!r} is for detection (data.source 'detection'); use f1_macro or accuracy"
    if metric in metrics_lib.RATING_METRIC_NAMES + metrics_lib.RANKING_METRIC_NAMES:
      return (f"eval.metric: {metric!r} measures recommendation (data.source 'interactions'); use f1_macro or "
              'accuracy')
    if metric.startswith('entity_') and self.kind != 'tags':
      return (f'eval.metric: {metric!r} is for token classification (NER) only; this run classifies '
              f'{"images" if self.kind in ("image", "segment") else "texts"}: use f1_macro or accuracy')
    if self.kind == 'tags':
      try:
        entity_metrics.tag_scheme(self.class_names)
      except ValueError as err:
        return f'data: the tag set is not IOB2 ({err}); entity metrics need B-/I-/O tags (data.conll.scheme)'
    return None
