"""Error analysis of a detection split's predictions (predictions.jsonl rows, see ftlab/predictions.py): per-class
AP (pycocotools, as the run's mAP) with precision, recall and F1 at a score threshold, what each detection above it
is (the TIDE error kinds: correct, duplicate, wrong class, poorly localised, background) and which ground-truth boxes
none finds, the confusion between classes and background, the most confident false detections, the images with the
most errors, and calibration (a detection's score against whether it is correct).

A detection is correct when it is the highest-scored one of its class to overlap an unclaimed ground-truth box of
that class with IoU >= 0.5 (COCO's greedy matching). Among the others: a duplicate overlaps such a box already
claimed; a wrong class overlaps a box of another class with IoU >= 0.5; poorly localised overlaps a box of its
class with 0.1 <= IoU < 0.5; background overlaps nothing with IoU >= 0.1 (Bolya et al., 2020, TIDE).
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask

from ftlab import analysis, detection_metrics

SCORE_THRESHOLD = 0.3  # a detection is made when its score reaches this (per-class P/R/F1, errors, confusion)
SCORE_FLOOR = 0.05  # detections below it are left out of the calibration (COCO's usual test threshold)
IOU_MATCH, IOU_BACKGROUND = 0.5, 0.1
KINDS = ('correct', 'duplicate', 'wrong class', 'localisation', 'background')
BACKGROUND = '(background)'


def _iou(a: list, b: list) -> np.ndarray:
  """IoU [len(a), len(b)] of boxes [x0, y0, x1, y1] (pycocotools)."""
  if not a or not b:
    return np.zeros((len(a), len(b)))
  xywh = lambda boxes: [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes]
  return np.asarray(coco_mask.iou(xywh(a), xywh(b), [0] * len(b)), np.float64).reshape(len(a), len(b))


def judge(row: dict, threshold: float) -> tuple[list[dict], list[bool]]:
  """(each detection of `row` scored >= threshold, by falling score, with its kind and the ground-truth box it
  overlaps most; whether each ground-truth box was found)."""
  truth, found = row['truth'], row['detections']
  keep = [k for k in np.argsort(-np.asarray(found['scores']), kind='stable') if found['scores'][k] >= threshold]
  boxes = [found['boxes'][k] for k in keep]
  iou = _iou(boxes, truth['boxes'])
  claimed = [False] * len(truth['boxes'])
  out = []
  for d, k in enumerate(keep):
    label = found['labels'][k]
    same = np.array([l == label for l in truth['labels']], bool)
    overlap = iou[d] if len(truth['boxes']) else np.zeros(0)
    free = np.where(same & ~np.array(claimed, bool), overlap, -1.0)
    best = int(np.argmax(free)) if len(free) else -1
    if best >= 0 and free[best] >= IOU_MATCH:
      claimed[best], kind, at = True, 'correct', best
    else:
      kind, at = _error_kind(overlap, same)
    out.append({'box': found['boxes'][k], 'score': found['scores'][k], 'label': label, 'kind': kind,
                'truth': truth['labels'][at] if at >= 0 else BACKGROUND})
  return out, claimed


def _error_kind(overlap: np.ndarray, same: np.ndarray) -> tuple[str, int]:
  """The kind of a detection that claimed no box, and the box it overlaps most (-1: none)."""
  if not len(overlap):
    return 'background', -1
  at = int(np.argmax(overlap))
  if np.any(same & (overlap >= IOU_MATCH)):
    return 'duplicate', int(np.argmax(np.where(same, overlap, -1)))
  if overlap[at] >= IOU_MATCH:
    return 'wrong class', at
  if np.any(same & (overlap >= IOU_BACKGROUND)):
    return 'localisation', int(np.argmax(np.where(same, overlap, -1)))
  return 'background', -1


def detection(rows: list[dict], names: list[str], threshold: float = SCORE_THRESHOLD) -> dict:
  """The analysis of one split's detection rows."""
  judged = [judge(r, threshold) for r in rows]
  per_class = _per_class(rows, judged, names)
  kinds = {k: sum(d['kind'] == k for dets, _ in judged for d in dets) for k in KINDS}
  kinds['missed'] = sum(not f for _, found in judged for f in found)
  return {'kind': 'detect', 'examples': len(rows), 'threshold': threshold, 'per_class': per_class,
          'errors': kinds, 'class_names': [*names, BACKGROUND], 'confusion': _confusion(rows, judged, names).tolist(),
          'confident_errors': _confident_errors(rows, judged), 'worst_images': _worst(rows, judged),
          'calibration': _calibration(rows)}


def _per_class(rows, judged, names) -> list[dict]:
  truths = [(r['truth']['boxes'], [names.index(l) for l in r['truth']['labels']]) for r in rows]
  found = [(r['detections']['boxes'], r['detections']['scores'], [names.index(l) for l in r['detections']['labels']])
           for r in rows]
  ap = detection_metrics.per_class_ap(truths, found, len(names))
  out = []
  for k, name in enumerate(names):
    made = [d for dets, _ in judged for d in dets if d['label'] == name]
    hits = sum(d['kind'] == 'correct' for d in made)
    support = sum(l == name for r in rows for l in r['truth']['labels'])
    p, rc = hits / max(len(made), 1), hits / max(support, 1)
    out.append({'class': name, 'ap': ap[k]['ap'], 'ap50': ap[k]['ap50'], 'precision': p, 'recall': rc,
                'f1': 2 * p * rc / (p + rc) if p + rc else 0.0, 'support': support, 'detections': len(made)})
  return out


def _confusion(rows, judged, names) -> np.ndarray:
  """[true class or background, predicted class or background]: each detection made by what it overlaps (a box of
  its class or another at IoU >= 0.5, else background), each box no detection found as predicted background."""
  index = {n: i for i, n in enumerate([*names, BACKGROUND])}
  matrix = np.zeros((len(index), len(index)), np.int64)
  for row, (dets, found) in zip(rows, judged):
    for d in dets:
      true = d['truth'] if d['kind'] in ('correct', 'wrong class', 'duplicate') else BACKGROUND
      matrix[index[true], index[d['label']]] += 1
    for label, ok in zip(row['truth']['labels'], found):
      matrix[index[label], index[BACKGROUND]] += not ok
  return matrix


def _confident_errors(rows, judged) -> list[dict]:
  wrong = [{'id': r['id'], 'input': r['input'], 'label': d['truth'], 'prediction': d['label'], 'kind': d['kind'],
            'confidence': d['score'], 'box': [round(v, 1) for v in d['box']]}
           for r, (dets, _) in zip(rows, judged) for d in dets if d['kind'] != 'correct']
  return sorted(wrong, key=lambda e: -e['confidence'])[:analysis.TOP]


def _worst(rows, judged) -> list[dict]:
  counted = [{'id': r['id'], 'input': r['input'], 'boxes': len(found), 'missed': sum(not f for f in found),
              'false': sum(d['kind'] != 'correct' for d in dets)} for r, (dets, found) in zip(rows, judged)]
  return sorted(counted, key=lambda c: (-(c['missed'] + c['false']), c['id']))[:analysis.TOP]


def _calibration(rows) -> dict:
  """Each detection scored >= SCORE_FLOOR: its score against whether it is correct."""
  scores, correct = [], []
  for r in rows:
    dets, _ = judge(r, SCORE_FLOOR)
    scores += [d['score'] for d in dets]
    correct += [d['kind'] == 'correct' for d in dets]
  return analysis.calibration(np.asarray(scores), np.asarray(correct, bool))
