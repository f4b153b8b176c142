"""A run's error analysis as a page: `write(folder, class_names)` reads folder/predictions.jsonl and writes
folder/analysis.md with its figures in folder/plots/ (the confusion matrix and the reliability diagram of each split).
A run writes it at its end (eval.predictions), ftlab.evaluate into its own folder, and `python -m ftlab.report
WORKDIR` again by hand; a sweep's report links the best configuration's.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ftlab import analysis, predictions
from ftlab.sweeps import plots
from ftlab.sweeps.markdown import table

FILE = 'analysis.md'
MAX_INPUT = 120  # characters of an input shown in a table


def read_rows(folder: str) -> dict[str, list[dict]]:
  """predictions.jsonl's rows by split."""
  out: dict[str, list[dict]] = {}
  with open(os.path.join(folder, predictions.FILE), encoding='utf-8') as f:
    for line in f:
      row = json.loads(line)
      out.setdefault(row['split'], []).append(row)
  return out


def _input(value) -> str:
  text = ' '.join(value) if isinstance(value, list) else '(no stored input)' if value is None else str(value)
  text = text if text.strip() else '(empty)'
  return text if len(text) <= MAX_INPUT else text[:MAX_INPUT - 3] + '...'


def _f(value) -> str:
  return 'n/a' if value is None else f'{value:.4f}'


def _confusion_png(path: str, result: dict, split: str) -> str:
  matrix = np.asarray(result['confusion'], np.float64)
  shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  names = result['class_names']
  size = min(2 + 0.45 * len(names), 16)
  with plots.plt.rc_context(plots.STYLE | {'axes.grid': False}):
    fig, ax = plots.plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 6 else 0)
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 20:
      for i in range(len(names)):
        for j in range(len(names)):
          ax.text(j, i, int(matrix[i, j]), ha='center', va='center', fontsize=7,
                  color='white' if shares[i, j] > 0.5 else 'black')
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(f'{split}: confusion (counts; colour = share of the true class)')
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return plots.save(fig, path)


def _reliability_png(path: str, calibration: dict, split: str) -> str:
  bins = calibration['bins']
  centres = (np.arange(bins) + 0.5) / bins
  accuracy = [np.nan if a is None else a for a in calibration['accuracy']]
  with plots.plt.rc_context(plots.STYLE):
    fig, ax = plots.plt.subplots(figsize=(5, 5))
    ax.bar(centres, accuracy, width=1 / bins, edgecolor='black', alpha=0.7, label='accuracy in the bin')
    ax.plot([0, 1], [0, 1], '--', color='grey', label='perfect calibration')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel('confidence (top class probability)')
    ax.set_ylabel('accuracy')
    ax.set_title(f'{split}: reliability, ECE {calibration["ece"]:.4f}')
    ax.legend(loc='upper left')
    fig.tight_layout()
    return plots.save(fig, path)


def _classification_md(folder: str, result: dict, split: str) -> list[str]:
  per_class = table(['class', 'precision', 'recall', 'F1', 'support'],
                     [[c['class'], _f(c['precision']), _f(c['recall']), _f(c['f1']), str(c['support'])]
                      for c in result['per_class']])
  pairs = table(['true', 'predicted as', 'count', 'examples (id: input)'],
                 [[p['label'], p['prediction'], str(p['count']),
                   '; '.join(f'{e["id"]}: {_input(e["input"])}' for e in p['examples'])]
                  for p in result['confused_pairs']]) if result['confused_pairs'] else 'None: no errors.'
  errors = table(['id', 'input', 'true', 'predicted', 'confidence'],
                  [[str(e['id']), _input(e['input']), e['label'], e['prediction'], _f(e['confidence'])]
                   for e in result['confident_errors']]) if result['confident_errors'] else 'None: no errors.'
  cal = result['calibration']
  confusion = _confusion_png(os.path.join(folder, 'plots', f'confusion_{split}.png'), result, split)
  reliability = _reliability_png(os.path.join(folder, 'plots', f'reliability_{split}.png'), cal, split)
  unit = 'words' if result['kind'] == 'tags' else 'examples'
  return [f'### Per class ({result["examples"]} {unit}, accuracy {result["accuracy"]:.4f})', '', per_class, '',
          f'![confusion matrix]({os.path.relpath(confusion, folder)})', '', '### Most confused pairs', '', pairs, '',
          '### Most confident errors', '', errors, '',
          f'### Calibration: expected calibration error {cal["ece"]:.4f} (confidence: the predicted class\'s '
          f'probability; {cal["bins"]} equal-width bins)', '',
          f'![reliability diagram]({os.path.relpath(reliability, folder)})', '']


def _segmentation_md(result: dict) -> list[str]:
  per_class = table(['class', 'IoU', 'pixels in prediction or label'],
                     [[c['class'], _f(c['iou']), str(c['union_pixels'])] for c in result['per_class']])
  worst = table(['id', 'image', 'pixel accuracy'], [[str(w['id']), w['input'], _f(w['pixel_accuracy'])]
                                                     for w in result['worst_images']])
  return [f'### Per class ({result["examples"]} images, pixel accuracy {result["accuracy"]:.4f})', '', per_class,
          '', '### Images with the lowest pixel accuracy', '', worst, '']


def _figure(folder: str, path: str, alt: str) -> str:
  return f'![{alt}]({os.path.relpath(path, folder)})'


def _detection_md(folder: str, result: dict, split: str) -> list[str]:
  at = result['threshold']
  per_class = table(['class', 'AP', 'AP50', f'precision @{at}', f'recall @{at}', f'F1 @{at}', 'boxes', 'detections'],
                     [[c['class'], _f(c['ap']), _f(c['ap50']), _f(c['precision']), _f(c['recall']), _f(c['f1']),
                       str(c['support']), str(c['detections'])] for c in result['per_class']])
  kinds = table(['correct', 'duplicate', 'wrong class', 'poorly localised', 'background', 'missed boxes'],
                [[str(result['errors'][k]) for k in ('correct', 'duplicate', 'wrong class', 'localisation',
                                                     'background', 'missed')]])
  errors = table(['id', 'image', 'kind', 'true', 'predicted', 'score', 'box (x0, y0, x1, y1)'],
                  [[str(e['id']), e['input'], e['kind'], e['label'], e['prediction'], _f(e['confidence']),
                    ', '.join(str(v) for v in e['box'])] for e in result['confident_errors']]
                  ) if result['confident_errors'] else 'None: no false detections.'
  worst = table(['id', 'image', 'boxes', 'missed', 'false detections'],
                [[str(w['id']), w['input'], str(w['boxes']), str(w['missed']), str(w['false'])]
                 for w in result['worst_images']])
  cal = result['calibration']
  confusion = _confusion_png(os.path.join(folder, 'plots', f'confusion_{split}.png'), result, split)
  reliability = _reliability_png(os.path.join(folder, 'plots', f'reliability_{split}.png'), cal, split)
  return [f'### Per class ({result["examples"]} images; AP as the run\'s mAP, the rest with detections scored '
          f'>= {at})', '', per_class, '', f'### What the detections scored >= {at} are', '', kinds, '',
          _figure(folder, confusion, 'confusion with background'), '', '### Most confident false detections', '',
          errors, '', '### Images with the most errors', '', worst, '',
          f'### Calibration: expected calibration error {cal["ece"]:.4f} (score against correct at IoU 0.5, '
          f'detections scored >= 0.05)', '', _figure(folder, reliability, 'reliability diagram'), '']


def _generation_md(folder: str, result: dict, split: str) -> list[str]:
  wrong = table(['id', 'prompt', 'reference', 'generation'],
                [[str(w['id']), _input(w['input']), _input(w['reference']), _input(w['generation'])]
                 for w in result['wrong_generations']]) if result['wrong_generations'] else 'None: every one is right.'
  parts = [f'### {result["examples"]} generations, accuracy {result["accuracy"]:.4f}', '']
  if 'per_class' in result:
    per_class = table(['class', 'precision', 'recall', 'F1', 'support'],
                       [[c['class'], _f(c['precision']), _f(c['recall']), _f(c['f1']), str(c['support'])]
                        for c in result['per_class']])
    confusion = _confusion_png(os.path.join(folder, 'plots', f'confusion_{split}.png'), result, split)
    parts += ['Each generation is read as the class whose completion it starts with, else (none).', '', per_class, '',
              _figure(folder, confusion, 'confusion matrix'), '']
  return parts + ['### Wrong generations (the first)', '', wrong, '']


def write(folder: str, class_names: list[str], *, title: str = '') -> str | None:
  """Writes folder/analysis.md (and its figures) from folder/predictions.jsonl; returns its path (None without
  predictions)."""
  if not os.path.exists(os.path.join(folder, predictions.FILE)):
    return None
  parts = [f'# Error analysis{": " + title if title else ""}', '',
           'From predictions.jsonl at the best checkpoint (ftlab/analysis.py). The expected calibration error weighs '
           'each confidence bin\'s |accuracy - confidence| by its share of the examples.', '']
  for split, rows in read_rows(folder).items():
    result = analysis.of_split(rows, list(class_names))
    parts += [f'## {split}', '']
    if result['kind'] == 'segment':
      parts += _segmentation_md(result)
    elif result['kind'] == 'detect':
      parts += _detection_md(folder, result, split)
    elif result['kind'] == 'lm':
      parts += _generation_md(folder, result, split)
    else:
      parts += _classification_md(folder, result, split)
  path = os.path.join(folder, FILE)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write('\n'.join(parts).rstrip() + '\n')
  os.replace(path + '.tmp', path)
  return path
