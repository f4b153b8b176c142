"""The decoder task (SFT): next-token loss on the counted (completion) tokens, and evaluation by generation.

It answers the train and eval steps as ftlab.tasks.Task does. The loss is cross-entropy over the vocabulary with
(traced) label smoothing, weighted by the batch's loss mask: the sum over every counted token divided by their
number, so a packed batch gives the same loss as its examples unpacked. Evaluation reports the loss on the
references and its perplexity and, when max_new_tokens > 0, decodes each prompt greedily with the KV cache inside
the eval step (one pass over the prompt serves both, see `evaluate`): accuracy is exact match with the reference
completion (up to its end-of-sequence token), and with a label set (class_names) a generation is of the class whose
completion tokens it starts with (the longest, if several), giving precision, recall and F1 over the labels; a
generation that starts with no label counts as the extra class '(none)'.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from ftlab import generation
from ftlab.tasks import classification_loss
from ftlab import metrics as metrics_lib
from ftlab.models import llama

INPUTS = ('input_ids', 'positions', 'segment_ids')
NONE_CLASS = '(none)'


@functools.cache
def eval_collection(num_classes: int) -> type[clu_metrics.Collection]:
  """Token loss (and the same mean, reported as perplexity), generation accuracy and, with a label set, the
  confusion over its classes plus '(none)'."""
  fields = {'loss': clu_metrics.Average, 'perplexity': clu_metrics.Average, 'accuracy': clu_metrics.Average}
  if num_classes:
    fields['label_confusion'] = metrics_lib.ConfusionMatrix.of(num_classes + 1)
  return clu_metrics.Collection.create(**fields)


@dataclasses.dataclass(frozen=True)
class LMTask:
  """class_names: the label set (or none) whose completions are `label_tokens` (ids before the end-of-sequence
  token, -1 padded to max_new_tokens slots)."""
  class_names: tuple[str, ...]
  decoder: llama.DecoderConfig
  eos_id: int
  label_tokens: tuple[tuple[int, ...], ...] = ()
  max_new_tokens: int = 0
  cache_dtype: str = 'float32'
  kind: str = 'lm'

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def inputs(self, batch: dict) -> dict:
    return {k: batch[k] for k in INPUTS}

  def example_input(self, source):
    return self.inputs(source.get_batch(np.zeros(1, np.int64)))

  def labels_and_mask(self, batch: dict):
    mask = batch['loss_mask']
    if 'mask' in batch:
      mask = mask * batch['mask'].astype(jnp.float32)[:, None]
    return batch['targets'], mask

  def losses_and_weights(self, logits, batch: dict, *, label_smoothing, class_weights):
    del class_weights  # a vocabulary has no per-class weights (config validation refuses them)
    targets, mask = self.labels_and_mask(batch)
    return classification_loss(logits, targets, label_smoothing=label_smoothing), mask

  def train_metrics(self, *, losses, logits, batch):
    targets, mask = self.labels_and_mask(batch)
    return metrics_lib.make_train_metrics().single_from_model_output(loss=losses, logits=logits, labels=targets,
                                                                     mask=mask)

  def evaluate(self, apply, batch: dict):
    """(the eval metrics of a batch, its greedy generations or None without generation); `apply(inputs, cache=None)`
    runs the model. With generation and 'completion_ids'
    in the batch (every counted token is in the completion), each prompt is run once: its cache serves both the
    completion's loss (the completion run through it) and the greedy decoding. Otherwise the whole rows are run for
    the loss and the prompts again for decoding."""
    if not self.max_new_tokens:
      return self.eval_metrics(logits=apply(self.inputs(batch)), batch=batch), None
    dtype = jnp.dtype(self.cache_dtype)
    prompts, segments = batch['prompt_ids'], batch['prompt_segments']
    if 'completion_ids' not in batch:
      generated = self.generate(apply, batch)
      return self.eval_metrics(logits=apply(self.inputs(batch)), batch=batch, generated=generated), generated
    completion = batch['completion_ids']
    length = prompts.shape[1] + max(completion.shape[1], self.max_new_tokens)
    first, cache, positions = generation.prefill(apply, self.decoder, prompts, segments, length=length,
                                                 cache_dtype=dtype)
    counted = completion >= 0
    steps = jnp.arange(completion.shape[1])
    logits, _ = apply({'input_ids': jnp.maximum(completion, 0), 'positions': positions[:, None] + steps,
                       'segment_ids': counted.astype(jnp.int32)}, cache)
    logits = jnp.concatenate([first[:, None], logits[:, :-1]], axis=1)  # the logits that predict each token
    generated = generation.decode(apply, first, cache, positions, max_new_tokens=self.max_new_tokens,
                                  eos_id=self.eos_id)
    scored = {**batch, 'targets': jnp.maximum(completion, 0), 'loss_mask': counted.astype(jnp.float32)}
    return self.eval_metrics(logits=logits, batch=scored, generated=generated), generated

  def generate(self, apply, batch: dict) -> jax.Array:
    """The greedy generation [B, max_new_tokens] from each of the batch's prompts."""
    return generation.generate(apply, self.decoder, batch['prompt_ids'], batch['prompt_segments'],
                               max_new_tokens=self.max_new_tokens, eos_id=self.eos_id,
                               cache_dtype=jnp.dtype(self.cache_dtype))

  def predictions(self, apply, batch: dict) -> dict:
    """Per row: the generation, whether it is right (as the accuracy counts it) and, with a label set, the class
    it is read as (num_classes: '(none)')."""
    return self.predictions_of(self.generate(apply, batch), batch)

  def predictions_of(self, generated, batch: dict) -> dict:
    """`predictions` of generations already made."""
    correct, predicted = self.judge(generated, batch)
    return {'generated': generated, 'correct': correct, 'predicted': predicted}

  def _matches(self, generated, expected) -> jax.Array:
    """Whether each generation equals `expected` [..., N] on its slots (-1 slots are free)."""
    return jnp.all((expected == generated) | (expected < 0), axis=-1)

  def judge(self, generated, batch: dict):
    """(whether each generation is right [B], the class each is read as [B]: -1 without a label set)."""
    if not self.num_classes:
      return self._matches(generated, batch['reference']), jnp.full(generated.shape[:1], -1, jnp.int32)
    labels = jnp.asarray(self.label_tokens)  # [C, N]
    hits = self._matches(generated[:, None], labels[None])  # [B, C]: the generation starts with the class's tokens
    longest = jnp.argmax(jnp.where(hits, jnp.sum(labels >= 0, -1), -1), -1)  # of several, the longest label
    predicted = jnp.where(jnp.any(hits, -1), longest, self.num_classes)
    return predicted == batch['label'], predicted

  def eval_metrics(self, *, logits, batch, generated=None):
    targets, mask = self.labels_and_mask(batch)
    losses = classification_loss(logits, targets)
    rows = batch['mask'] if 'mask' in batch else jnp.ones(targets.shape[:1], bool)
    loss = clu_metrics.Average.from_model_output(losses, mask=mask > 0)
    out = {'loss': loss, 'perplexity': loss}
    if generated is None:
      out['accuracy'] = clu_metrics.Average.from_model_output(jnp.zeros(rows.shape), mask=jnp.zeros(rows.shape, bool))
    else:
      correct, predicted = self.judge(generated, batch)
      out['accuracy'] = clu_metrics.Average.from_model_output(correct.astype(jnp.float32), mask=rows)
      if self.num_classes:
        one_hot = jax.nn.one_hot(predicted, self.num_classes + 1)
        out['label_confusion'] = metrics_lib.ConfusionMatrix.of(self.num_classes + 1).from_model_output(
            logits=one_hot, labels=batch['label'], mask=rows)
    cls = eval_collection(self.num_classes if generated is not None else 0)
    return cls(_reduction_counter=clu_metrics._ReductionCounter(jnp.array(1, jnp.int32)), **out)

  def check_metric(self, metric: str) -> str | None:
    if metric.startswith('entity_'):
      return f'eval.metric: {metric!r} is for token classification (NER) only; for a decoder use loss or accuracy'
    if metric not in ('loss', 'perplexity', 'accuracy', 'f1_macro', 'precision_macro', 'recall_macro'):
      return f'eval.metric: {metric!r} does not measure a decoder; use loss, perplexity or accuracy'
    if metric in ('f1_macro', 'precision_macro', 'recall_macro') and not (self.num_classes and self.max_new_tokens):
      return (f'eval.metric: {metric!r} needs a label set evaluated by generation (data.sft.prompt templates over a '
              'labelled dataset, or data.text.label_names, and data.sft.max_new_tokens >= 0); use loss, perplexity '
              'or accuracy')
    if metric == 'accuracy' and not self.max_new_tokens:
      return 'eval.metric: accuracy is measured by generation, which is off (data.sft.generate=False); use loss'
    return None
