"""Error analysis of a split's predictions (predictions.jsonl rows, see ftlab/predictions.py), as numbers: per-class
precision, recall and F1 (sklearn), the confusion matrix, the most confused class pairs with examples, the most
confident errors, and calibration (expected calibration error over equal-width confidence bins, and the bins of the
reliability diagram). For NER the same per tag over words; for segmentation per-class IoU and the worst images; for
a decoder's generations the wrong ones (and with a label set the classes they are read as); detection in
ftlab/detection_analysis.py.
ftlab/analysis_report.py writes them as Markdown and figures.
"""
from __future__ import annotations

import numpy as np

from ftlab.lm_task import NONE_CLASS

CALIBRATION_BINS = 15
TOP = 10  # confident errors, confused pairs and worst images listed
EXAMPLES_PER_PAIR = 3


def _sk_metrics():
  """scikit-learn's metrics, imported when an analysis is made: scikit-learn takes about a second to import."""
  from sklearn import metrics
  return metrics


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
  """Expected calibration error of top-label confidences: sum over equal-width bins (0, 1/B], ... of the bin's share
  of examples times |accuracy - mean confidence| in it (Guo et al., 2017); with each bin's count, accuracy and
  mean confidence for the reliability diagram (None where a bin is empty)."""
  confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
  which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
  counts = np.bincount(which, minlength=bins)
  hits = np.bincount(which, weights=correct, minlength=bins)
  sums = np.bincount(which, weights=confidence, minlength=bins)
  seen = counts > 0
  accuracy = np.where(seen, hits / np.maximum(counts, 1), np.nan)
  mean_conf = np.where(seen, sums / np.maximum(counts, 1), np.nan)
  ece = float(np.sum(counts[seen] / max(len(confidence), 1) * np.abs(accuracy[seen] - mean_conf[seen])))
  none = lambda values: [None if np.isnan(v) else float(v) for v in values]
  return {'ece': ece, 'bins': bins, 'count': counts.tolist(), 'accuracy': none(accuracy),
          'confidence': none(mean_conf)}


def _per_class(gold, predicted, names) -> list[dict]:
  p, r, f, s = _sk_metrics().precision_recall_fscore_support(gold, predicted, labels=list(names), zero_division=0)
  return [{'class': n, 'precision': float(a), 'recall': float(b), 'f1': float(c), 'support': int(d)}
          for n, a, b, c, d in zip(names, p, r, f, s)]


def _confused_pairs(rows, gold, predicted, matrix, names) -> list[dict]:
  off = [(int(matrix[i, j]), i, j) for i in range(len(names)) for j in range(len(names)) if i != j and matrix[i, j]]
  out = []
  for count, i, j in sorted(off, key=lambda t: (-t[0], t[1], t[2]))[:TOP]:
    examples = [_brief(r) for r, g, p in zip(rows, gold, predicted) if g == names[i] and p == names[j]]
    out.append({'label': names[i], 'prediction': names[j], 'count': count, 'examples': examples[:EXAMPLES_PER_PAIR]})
  return out


def _brief(row: dict) -> dict:
  return {'id': row['id'], 'input': row.get('input'), 'confidence': row.get('confidence')}


def classification(rows: list[dict], names: list[str]) -> dict:
  """The analysis of image / text classification rows of one split."""
  gold, predicted = [r['label'] for r in rows], [r['prediction'] for r in rows]
  probabilities = np.array([r['probabilities'] for r in rows], np.float64)
  confidence = probabilities.max(axis=1)
  rows = [{**r, 'confidence': float(c)} for r, c in zip(rows, confidence)]
  correct = np.array([g == p for g, p in zip(gold, predicted)])
  matrix = _sk_metrics().confusion_matrix(gold, predicted, labels=list(names))
  errors = sorted((r for r, ok in zip(rows, correct) if not ok), key=lambda r: -r['confidence'])[:TOP]
  return {'kind': 'classification', 'examples': len(rows), 'accuracy': float(correct.mean()),
          'per_class': _per_class(gold, predicted, names), 'confusion': matrix.tolist(), 'class_names': list(names),
          'confused_pairs': _confused_pairs(rows, gold, predicted, matrix, names),
          'confident_errors': [{**_brief(r), 'label': r['label'], 'prediction': r['prediction']} for r in errors],
          'calibration': calibration(confidence, correct)}


def tags(rows: list[dict], names: list[str]) -> dict:
  """NER rows (one tag per word): the same analysis over words, an example being a word in its sentence."""
  words = [{'id': f'{r["id"]}:{k}', 'input': f'{w} ({" ".join(r["input"])})', 'label': g, 'prediction': p,
            'confidence': c}
           for r in rows for k, (w, g, p, c) in enumerate(zip(r['input'], r['label'], r['prediction'],
                                                               r['confidence']))]
  gold, predicted = [w['label'] for w in words], [w['prediction'] for w in words]
  correct = np.array([g == p for g, p in zip(gold, predicted)])
  matrix = _sk_metrics().confusion_matrix(gold, predicted, labels=list(names))
  errors = sorted((w for w, ok in zip(words, correct) if not ok), key=lambda w: -w['confidence'])[:TOP]
  return {'kind': 'tags', 'examples': len(words), 'accuracy': float(correct.mean()) if words else 0.0,
          'per_class': _per_class(gold, predicted, names), 'confusion': matrix.tolist(), 'class_names': list(names),
          'confused_pairs': _confused_pairs(words, gold, predicted, matrix, names),
          'confident_errors': [{**_brief(w), 'label': w['label'], 'prediction': w['prediction']} for w in errors],
          'calibration': calibration([w['confidence'] for w in words], correct)}


def segmentation(rows: list[dict], names: list[str]) -> dict:
  """Per-class IoU over the split (summed intersections and unions) and the images with the lowest pixel accuracy."""
  inter, union = (np.sum([r[k] for r in rows], axis=0) for k in ('intersection', 'union'))
  per_class = [{'class': n, 'iou': float(i / u) if u else None, 'union_pixels': int(u)}
               for n, i, u in zip(names, inter, union)]
  worst = sorted(rows, key=lambda r: r['correct'] / max(r['pixels'], 1))[:TOP]
  return {'kind': 'segment', 'examples': len(rows), 'per_class': per_class,
          'accuracy': float(sum(r['correct'] for r in rows) / max(sum(r['pixels'] for r in rows), 1)),
          'worst_images': [{'id': r['id'], 'input': r['input'],
                            'pixel_accuracy': r['correct'] / max(r['pixels'], 1)} for r in worst]}


def generation(rows: list[dict], names: list[str]) -> dict:
  """A decoder's generations: accuracy, the first wrong ones with their references and, with a label set, the
  classification analysis of the classes the generations are read as ('(none)' included)."""
  wrong = [{'id': r['id'], 'input': r['input'], 'reference': r['reference'], 'generation': r['generation']}
           for r in rows if not r['correct']]
  out = {'kind': 'lm', 'examples': len(rows), 'accuracy': float(np.mean([r['correct'] for r in rows])),
         'wrong_generations': wrong[:TOP]}
  if 'label' in rows[0]:
    labels = list(names) if NONE_CLASS in names else [*names, NONE_CLASS]
    gold, predicted = [r['label'] for r in rows], [r['prediction'] for r in rows]
    matrix = _sk_metrics().confusion_matrix(gold, predicted, labels=labels)
    out.update(per_class=_per_class(gold, predicted, labels), confusion=matrix.tolist(), class_names=labels,
               confused_pairs=_confused_pairs(rows, gold, predicted, matrix, labels))
  return out


def of_split(rows: list[dict], names: list[str]) -> dict | None:
  """The analysis of one split's rows, by the kind of rows they are (None for no rows)."""
  if not rows:
    return None
  if 'detections' in rows[0]:
    from ftlab import detection_analysis  # it reads this module's calibration
    return detection_analysis.detection(rows, names)
  if 'generation' in rows[0]:
    return generation(rows, names)
  if 'intersection' in rows[0]:
    return segmentation(rows, names)
  if 'confidence' in rows[0]:
    return tags(rows, names)
  return classification(rows, names)
