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

Detection and decoder runs have no per-example rows yet. Only process 0 of a single-process run writes them.
"""
from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np

from ftlab import data as data_lib
from ftlab import compiled, steps, writers

FILE = 'predictions.jsonl'
KINDS = ('image', 'text', 'tags', 'segment')


def predictor(plan):
  """The jitted predict step of a planned run (state, batch) -> predictions; runs with one static key (a sweep's
  trials) share it."""
  return compiled.cached(('predict', plan.static_key),
                         lambda: jax.jit(functools.partial(steps.predict_step, model=plan.model, task=plan.task)))


def rows(plan, state, source, split: str, *, predict=None) -> list[dict]:
  """The prediction rows of every example of `source` (a split of plan.splits) under `state`."""
  predict = predict or predictor(plan)
  names, kind = plan.splits.class_names, plan.task.kind
  out = []
  for batch in data_lib.eval_batches(source, batch_size=plan.config.eval.batch_size, process_count=1,
                                     process_index=0):
    predicted = np.asarray(jax.device_get(predict(state, batch)))
    for j in np.flatnonzero(batch['mask']):
      i = len(out)
      row = {'split': split, 'id': i}
      if kind == 'tags':
        row.update(_tags(source, i, batch['labels'][j], predicted[j], names))
      elif kind == 'segment':
        row.update(_pixels(source, i, batch['label'][j], predicted[j], len(names)))
      else:
        row.update(_example(source, i, int(batch['label'][j]), predicted[j], names))
      out.append(row)
  return out


def _example(source, i: int, label: int, probabilities: np.ndarray, names) -> dict:
  texts = getattr(source, 'texts', None)
  pairs = getattr(source, 'text_pairs', None)
  file_names = getattr(source, 'names', None)
  row = {'input': texts[i] if texts is not None else file_names[i] if file_names is not None else None}
  if pairs is not None:
    row['input_pair'] = pairs[i]
  row.update(label=names[label], prediction=names[int(np.argmax(probabilities))],
             probabilities=[round(float(p), 6) for p in probabilities])
  return row


def _tags(source, i: int, labels: np.ndarray, probabilities: np.ndarray, names) -> dict:
  at = np.flatnonzero(labels >= 0)  # each kept word's first sub-token
  chosen = np.argmax(probabilities[at], axis=-1)
  return {'input': list(source.sentences[i][:len(at)]), 'label': [names[t] for t in labels[at]],
          'prediction': [names[t] for t in chosen],
          'confidence': [round(float(p), 6) for p in probabilities[at, chosen]]}


def _pixels(source, i: int, labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
  counted = labels >= 0
  gold, pred = labels[counted], predicted[counted]
  inter = np.bincount(gold[gold == pred], minlength=num_classes)
  union = np.bincount(gold, minlength=num_classes) + np.bincount(pred, minlength=num_classes) - inter
  return {'input': source.names[i], 'pixels': int(counted.sum()), 'correct': int(inter.sum()),
          'intersection': inter.tolist(), 'union': union.tolist()}


def write(plan, state) -> str | None:
  """Writes WORKDIR/predictions.jsonl for the validation and test splits; returns its path (None where the task
  has no per-example rows, or the run spans processes)."""
  if plan.task.kind not in KINDS or jax.process_count() > 1:
    return None
  predict = predictor(plan)
  lines = [json.dumps(row) for split in ('validation', 'test')
           for row in rows(plan, state, getattr(plan.splits, split), split, predict=predict)]
  path = os.path.join(plan.workdir, FILE)
  writers.write_text_atomic(path, '\n'.join(lines) + '\n')
  return path
