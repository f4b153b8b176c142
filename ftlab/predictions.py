"""What a run predicts for each example: `rows(plan, state, source, split)` and predictions.jsonl.

At the end of a run (eval.predictions), for its validation and test splits at the best checkpoint, one JSON line per
example, in the split's order ('id' is the example's position in its split):

- image / text classification: {"split", "id", "input", "label", "prediction", "probabilities"}: the input is the
  text (and "input_pair" for pairs), the image's file name where the source keeps one, else null; label and
  prediction are class names; probabilities are over the run's class_names (summary.json), in that order.
- NER: "input" the words, "label" and "prediction" one tag per word (the prediction is the first sub-token's, as
  the metrics read it), "confidence" the probability of each predicted tag.
- segmentation, per image: "input" the image's name, "pixels" counted, "correct" pixels, and per class the pixels of
  the "intersection" and "union" of prediction and label: summed over a split they give its IoU exactly.
- detection, per image: "input" the image's name, "truth" {"boxes", "labels"} and "detections" {"boxes", "scores",
  "labels"} (every detection the mAP counts, by falling score); boxes are [x0, y0, x1, y1] in the original image's
  pixels, labels class names.
- decoder runs evaluated by generation: "input" the prompt, "reference" the reference completion, "generation" the
  greedy generation (to its end-of-sequence token), "correct" as the accuracy counts it and, with a label set,
  "label" and "prediction" (the class the generation is read as, or '(none)').

Only process 0 of a single-process run writes them.
"""
from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np

from ftlab import data as data_lib
from ftlab import compiled, steps, writers
from ftlab.data import sft
from ftlab.lm_task import NONE_CLASS

FILE = 'predictions.jsonl'
KINDS = ('image', 'text', 'tags', 'segment', 'detect', 'lm')


def predictor(plan):
  """The jitted predict step of a planned run (state, batch) -> predictions; runs with one static key (a sweep's
  trials) share it."""
  return compiled.cached(('predict', plan.static_key),
                         lambda: jax.jit(functools.partial(steps.predict_step, model=plan.model, task=plan.task)))


def outputs_of(plan, state, source):
  """(host batch, its host predictions) for each evaluation batch of `source` under `state`."""
  predict = predictor(plan)
  for batch in data_lib.eval_batches(source, batch_size=plan.config.eval.batch_size, process_count=1,
                                     process_index=0, buckets=data_lib.eval_buckets(plan)):
    yield batch, jax.device_get(predict(state, batch))


def rows(plan, source, split: str, outputs) -> list[dict]:
  """The prediction rows of every example of `source` (a split of plan.splits) from `outputs`: (batch, predictions)
  for each of its evaluation batches, in order (the stepper's evaluate_predicting, or outputs_of)."""
  row_of = {'tags': _tags, 'segment': _pixels, 'detect': _boxes, 'lm': _generation}.get(plan.task.kind, _example)
  out = []
  for batch, predicted in outputs:
    predicted = jax.tree.map(np.asarray, predicted)
    for j in np.flatnonzero(batch['mask']):
      i = int(batch['index'][j])
      out.append({'split': split, 'id': i, **row_of(source, i, batch, j, predicted, plan.splits.class_names)})
  return sorted(out, key=lambda row: row['id'])  # batches may visit the examples by length


def _example(source, i: int, batch: dict, j: int, predicted: np.ndarray, names) -> dict:
  label, probabilities = int(batch['label'][j]), predicted[j]
  texts = getattr(source, 'texts', None)
  pairs = getattr(source, 'text_pairs', None)
  file_names = getattr(source, 'names', None)
  row = {'input': texts[i] if texts is not None else file_names[i] if file_names is not None else None}
  if pairs is not None:
    row['input_pair'] = pairs[i]
  row.update(label=names[label], prediction=names[int(np.argmax(probabilities))],
             probabilities=[round(float(p), 6) for p in probabilities])
  return row


def _tags(source, i: int, batch: dict, j: int, predicted: np.ndarray, names) -> dict:
  labels, probabilities = batch['labels'][j], predicted[j]
  at = np.flatnonzero(labels >= 0)  # each kept word's first sub-token
  chosen = np.argmax(probabilities[at], axis=-1)
  return {'input': list(source.sentences[i][:len(at)]), 'label': [names[t] for t in labels[at]],
          'prediction': [names[t] for t in chosen],
          'confidence': [round(float(p), 6) for p in probabilities[at, chosen]]}


def _pixels(source, i: int, batch: dict, j: int, predicted: np.ndarray, names) -> dict:
  labels, num_classes = batch['label'][j], len(names)
  counted = labels >= 0
  gold, pred = labels[counted], predicted[j][counted]
  inter = np.bincount(gold[gold == pred], minlength=num_classes)
  union = np.bincount(gold, minlength=num_classes) + np.bincount(pred, minlength=num_classes) - inter
  return {'input': source.names[i], 'pixels': int(counted.sum()), 'correct': int(inter.sum()),
          'intersection': inter.tolist(), 'union': union.tolist()}


def _boxes(source, i: int, batch: dict, j: int, predicted, names) -> dict:
  boxes, scores, labels = (x[j] for x in predicted)
  found = scores > 0  # the detections the mAP counts (ftlab/det_task.py: detection_scores)
  truth = batch['box_labels'][j] >= 0
  original = lambda b: (b / source.scales[i]).tolist()  # the letterbox's scale undone
  return {'input': source.names[i],
          'truth': {'boxes': original(batch['boxes'][j][truth]),
                    'labels': [names[c] for c in batch['box_labels'][j][truth]]},
          'detections': {'boxes': original(boxes[found]), 'scores': scores[found].tolist(),
                         'labels': [names[c] for c in labels[found]]}}


def _generation(source, i: int, batch: dict, j: int, predicted: dict, names) -> dict:
  tok, eos = source.tokenizer, source.eos_id
  text = lambda ids: tok.decode([t for t in sft.until_eos(ids, eos, len(ids)) if t >= 0 and t != eos])
  e = source.rows[i][0]
  row = {'input': tok.decode(source.examples.ids[e][:source.examples.prompt_lengths[e]]),
         'reference': text(source.examples.references[e]), 'generation': text(predicted['generated'][j]),
         'correct': bool(predicted['correct'][j])}
  if names:
    row.update(label=names[int(batch['label'][j])], prediction=(*names, NONE_CLASS)[int(predicted['predicted'][j])])
  return row


def applies(plan) -> bool:
  """Whether the run has per-example rows to write: a task with them, one process, a decoder that generates."""
  return (plan.task.kind in KINDS and jax.process_count() == 1
          and not (plan.task.kind == 'lm' and not plan.task.max_new_tokens))  # a decoder evaluated by its loss only


def write(plan, rows_of_splits: list[list[dict]]) -> str:
  """Writes WORKDIR/predictions.jsonl from `rows` of the validation and test splits, in that order; returns its
  path."""
  path = os.path.join(plan.workdir, FILE)
  writers.write_text_atomic(path, ''.join(json.dumps(row) + '\n' for rows_ in rows_of_splits for row in rows_))
  return path
