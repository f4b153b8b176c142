"""The error analysis of predictions: calibration error against a direct computation, per-class scores against
sklearn, the most confused pairs and confident errors from the rows, and the page written from a predictions file."""
import json

import numpy as np
import pytest
from sklearn import metrics as sk

from ftlab import analysis, analysis_report

NAMES = ['cat', 'dog', 'fox']


def _rows(n=300, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, 3)) * 2
  probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  labels = np.where(rng.random(n) < 0.7, probabilities.argmax(1), rng.integers(0, 3, n))
  return [{'split': 'test', 'id': i, 'input': f'text {i}', 'label': NAMES[y], 'prediction': NAMES[p.argmax()],
           'probabilities': p.tolist()} for i, (y, p) in enumerate(zip(labels, probabilities))]


def test_expected_calibration_error_equals_a_direct_computation():
  rng = np.random.default_rng(1)
  confidence = rng.uniform(1 / 3, 1, 500)
  confidence[:3] = [1.0, 1 / 15, 2 / 15]  # on bin edges: (lo, hi] bins
  correct = rng.random(500) < confidence
  expected = 0.0
  for b in range(15):
    lo, hi = b / 15, (b + 1) / 15
    inside = [i for i in range(500) if (lo < confidence[i] <= hi) or (b == 0 and confidence[i] == 0)]
    if inside:
      accuracy = sum(correct[i] for i in inside) / len(inside)
      mean = sum(confidence[i] for i in inside) / len(inside)
      expected += len(inside) / 500 * abs(accuracy - mean)
  result = analysis.calibration(confidence, correct)
  assert result['ece'] == pytest.approx(expected, abs=1e-12)
  assert sum(result['count']) == 500


def test_per_class_scores_pairs_and_errors_come_from_the_rows():
  rows = _rows()
  result = analysis.classification(rows, NAMES)
  gold, predicted = [r['label'] for r in rows], [r['prediction'] for r in rows]
  report = sk.classification_report(gold, predicted, labels=NAMES, output_dict=True, zero_division=0)
  for c in result['per_class']:
    assert c['f1'] == pytest.approx(report[c['class']]['f1-score'], abs=1e-12)
    assert c['support'] == report[c['class']]['support']
  matrix = sk.confusion_matrix(gold, predicted, labels=NAMES)
  top = result['confused_pairs'][0]
  assert top['count'] == max(matrix[i, j] for i in range(3) for j in range(3) if i != j)
  assert all(rows[e['id']]['label'] == top['label'] and rows[e['id']]['prediction'] == top['prediction']
             for e in top['examples'])
  confidences = [e['confidence'] for e in result['confident_errors']]
  wrong = sorted((max(r['probabilities']) for r in rows if r['label'] != r['prediction']), reverse=True)
  assert confidences == pytest.approx(wrong[:len(confidences)])


def test_the_page_is_written_from_a_predictions_file(tmp_path):
  with open(tmp_path / 'predictions.jsonl', 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in _rows(60)))
  path = analysis_report.write(str(tmp_path), NAMES, title='t')
  text = open(path).read()
  assert '## test' in text and '### Most confident errors' in text and 'expected calibration error' in text
  assert (tmp_path / 'plots' / 'confusion_test.png').exists() and (tmp_path / 'plots' / 'reliability_test.png').exists()
