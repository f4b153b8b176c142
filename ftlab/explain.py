"""Which inputs drive a run's predictions: `python -m ftlab.explain WORKDIR [--split test] [--n 20] [--steps 128]
[--checkpoint best|latest|STEP] [--out DIR]`.

For the chosen examples of the split (by default the most confident errors, then the most confident correct
predictions, n in all) the predicted class is attributed to the input by integrated gradients (ftlab/attribution.py):
text classifiers per token (over the word embeddings), NER runs per token for one word's predicted tag (the chosen
examples are then words), image models per pixel (the quickstart's MLP included). For segmentation the chosen images
are those with the lowest and the highest pixel accuracy, each attributed for the class it paints over the most
wrong pixels (its logits summed over the pixels it paints with that class). DIR (default WORKDIR_explain, not
inside WORKDIR, new or empty) gets explain.html: one self-contained page, each example with its label, prediction
and confidence, the tokens coloured by attribution (red for the predicted class, blue against it) or the image beside
its attribution map, and the completeness check (attributions' sum against the logit's change from the baseline).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import os
import sys

import numpy as np

PAGE = 'explain.html'


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m ftlab.explain', description=__doc__.split('\n\n')[0])
  p.add_argument('workdir')
  p.add_argument('--split', default='test', choices=('validation', 'test'))
  p.add_argument('--n', type=int, default=20, help='examples to explain')
  p.add_argument('--steps', type=int, default=128, help='integration steps (more: closer completeness)')
  p.add_argument('--checkpoint', default='best', help='best, latest or a step')
  p.add_argument('--out', default='', help='the folder of explain.html (default WORKDIR_explain)')
  return p


def choose(examples: list[dict], n: int) -> list[dict]:
  """The most confident errors (up to half of n), then the most confident correct predictions, n in all."""
  by_confidence = sorted(examples, key=lambda e: -e['confidence'])
  errors = [e for e in by_confidence if e['label'] != e['prediction']]
  correct = [e for e in by_confidence if e['label'] == e['prediction']]
  errors = errors[:max(n // 2, n - len(correct))]  # more than half when too few are correct
  return errors + correct[:n - len(errors)]


def choose_images(rows: list[dict], n: int) -> list[dict]:
  """Segmentation: the images with the lowest pixel accuracy (half of n), then those with the highest."""
  ranked = sorted(rows, key=lambda r: (r['correct'] / max(r['pixels'], 1), r['id']))
  worst = ranked[:(n + 1) // 2]
  best = [r for r in ranked[::-1] if r not in worst][:n - len(worst)]
  return [{'id': r['id'], 'input': r['input'], 'accuracy': r['correct'] / max(r['pixels'], 1), 'error': r in worst}
          for r in worst + best]


def _examples(plan, rows: list[dict]) -> list[dict]:
  """Rows as explainable examples {id, word (NER), label, prediction, confidence}."""
  if plan.task.kind == 'tags':
    return [{'id': r['id'], 'word': k, 'label': g, 'prediction': p, 'confidence': c}
            for r in rows for k, (g, p, c) in enumerate(zip(r['label'], r['prediction'], r['confidence']))]
  return [{'id': r['id'], 'label': r['label'], 'prediction': r['prediction'],
           'confidence': max(r['probabilities'])} for r in rows]


def _attribute(plan, variables, source, example: dict, steps: int) -> dict:
  """The example with its attributions ('tokens' and 'scores', or 'image' and 'map') and completeness."""
  import jax.numpy as jnp

  from ftlab import attribution
  names = list(plan.splits.class_names)
  batch = source.get_batch(np.array([example['id']]))
  if plan.task.kind == 'segment':
    return _attribute_segments(plan, variables, batch, example, steps)
  target = names.index(example['prediction'])
  if plan.task.kind == 'image':
    scores, at_x, at_base = attribution.image(plan.model, variables, batch['image'], target, steps=steps)
    out = {'image': batch['image'][0], 'map': np.asarray(scores)}
  else:
    inputs = {k: batch[k] for k in ('input_ids', 'attention_mask', 'token_type_ids') if k in batch}
    if plan.task.kind == 'tags':
      position = int(np.flatnonzero(batch['labels'][0] >= 0)[example['word']])
      target = jnp.array([position, target])
      example = {**example, 'position': position}
    scores, at_x, at_base = attribution.text(plan.model, variables, inputs, target, source.pad_id, steps=steps)
    real = batch['attention_mask'][0] > 0
    out = {'ids': batch['input_ids'][0][real].tolist(), 'scores': np.asarray(scores)[real]}
  total, change = attribution.completeness(scores, at_x, at_base)
  return {**example, **out, 'sum': total, 'change': change}


def _attribute_segments(plan, variables, batch: dict, example: dict, steps: int) -> dict:
  """One image of a segmentation run: the class it paints over the most wrong pixels (over the most pixels when
  none is wrong), attributed by its logits summed over the pixels it paints with it."""
  import jax.numpy as jnp

  from ftlab import attribution
  names = list(plan.splits.class_names)
  predicted = np.asarray(jnp.argmax(plan.model.apply(variables, batch['image'], train=False), axis=-1))[0]
  label = batch['label'][0]
  counted = label >= 0
  wrong = counted & (predicted != label)
  c = int(np.bincount(predicted[wrong if wrong.any() else counted], minlength=len(names)).argmax())
  region = predicted == c
  scores, at_x, at_base = attribution.image(plan.model, variables, batch['image'],
                                            (c, jnp.asarray(region, jnp.float32)), steps=steps)
  total, change = attribution.completeness(scores, at_x, at_base)
  caption = (f'{example["input"]}, pixel accuracy {example["accuracy"]:.3f}: the {int(region.sum())} pixels painted '
             f'{names[c]} ({int((region & wrong).sum())} of them wrongly)')
  return {**example, 'caption': caption, 'image': batch['image'][0], 'map': np.asarray(scores), 'sum': total,
          'change': change}


def _token_html(tokens: list[str], scores: np.ndarray, highlight: int | None) -> str:
  scale = max(float(np.abs(scores).max()), 1e-12)
  spans = []
  for k, (token, s) in enumerate(zip(tokens, scores)):
    a = min(abs(float(s)) / scale, 1.0)
    colour = f'rgba(214,39,40,{a:.2f})' if s > 0 else f'rgba(31,119,180,{a:.2f})'
    border = ' outline: 2px solid black;' if k == highlight else ''
    spans.append(f'<span title="{float(s):+.4f}" style="background:{colour};{border}">{html.escape(token)}</span>')
  return ' '.join(spans)


def _image_html(image: np.ndarray, scores: np.ndarray) -> str:
  from ftlab.sweeps import plots
  shown = image if image.ndim == 3 else image.reshape(scores.shape + (1,))
  shown = (shown - shown.min()) / max(float(np.ptp(shown)), 1e-12)
  limit = max(float(np.abs(scores).max()), 1e-12)
  with plots.plt.rc_context(plots.STYLE | {'axes.grid': False}):
    fig, axes = plots.plt.subplots(1, 2, figsize=(5, 2.6))
    axes[0].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap='gray')
    axes[0].set_title('input')
    axes[1].imshow(scores.reshape(shown.shape[:2]), cmap='RdBu_r', vmin=-limit, vmax=limit)
    axes[1].set_title('attribution')
    for ax in axes:
      ax.axis('off')
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
    plots.plt.close(fig)
  return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def page(title: str, explained: list[dict], tokenizer=None) -> str:
  """The self-contained HTML page of the explained examples."""
  parts = [f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
           'body{font-family:sans-serif;max-width:60em;margin:2em auto}.ex{margin:1.5em 0;padding:.8em;'
           'border:1px solid #ccc;border-radius:4px}.err{border-left:6px solid #d62728}.ok{border-left:6px solid '
           '#2ca02c}span{padding:1px 2px;border-radius:2px;line-height:1.9}small{color:#555}</style></head><body>',
           f'<h1>{html.escape(title)}</h1><p>Integrated gradients of the predicted class\'s logit: red pushes toward '
           'the prediction, blue against it (hover a token for its value). Completeness: the attributions sum to the '
           'logit\'s change from the baseline ([PAD] tokens / a zero image) up to the integration error.</p>']
  for e in explained:
    wrong = e['error'] if 'error' in e else e['label'] != e['prediction']
    what = f'word {e["word"]} of example {e["id"]}' if 'word' in e else f'example {e["id"]}'
    body = (_image_html(e['image'], e['map']) if 'image' in e else
            _token_html([tokenizer.id_to_token(i) or '?' for i in e['ids']], e['scores'], e.get('position')))
    caption = html.escape(e['caption']) if 'caption' in e else (
        f'true <b>{html.escape(e["label"])}</b>, predicted <b>{html.escape(e["prediction"])}</b> '
        f'(confidence {e["confidence"]:.3f}){" <b>error</b>" if wrong else ""}')
    parts.append(f'<div class="ex {"err" if wrong else "ok"}"><b>{html.escape(what)}</b>: {caption}<br>{body}<br>'
                 f'<small>attributions sum {e["sum"]:+.4f}, logit change {e["change"]:+.4f}</small></div>')
  return '\n'.join(parts) + '</body></html>\n'


def explain(workdir: str, out: str, *, split: str = 'test', n: int = 20, steps: int = 128,
            checkpoint: str = 'best') -> str:
  """Writes out/explain.html for the run at `workdir`; returns its path."""
  from ftlab import config as config_lib
  from ftlab import evaluate, predictions, writers
  from ftlab.data import text
  from ftlab.pretrained import load as pretrained_lib
  plan, state, step = evaluate.restored(workdir, out, checkpoint=checkpoint)
  if plan.task.kind not in ('image', 'text', 'tags', 'segment'):
    raise config_lib.ConfigError([f'{workdir}: a {plan.task.kind} run; explain covers image and text classifiers, '
                                  'NER and segmentation'])
  source = getattr(plan.splits, split)
  rows = predictions.rows(plan, state, source, split)
  variables = {'params': state.params, **state.model_state}
  chosen = choose_images(rows, n) if plan.task.kind == 'segment' else choose(_examples(plan, rows), n)
  explained = [_attribute(plan, variables, source, e, steps) for e in chosen]
  tokenizer = None
  if plan.task.kind in ('text', 'tags'):
    dc = plan.config.data
    tokenizer = text.load_tokenizer(dc.tokenizer.path or pretrained_lib.tokenizer_folder(plan.config.model),
                                    lowercase=dc.tokenizer.lowercase)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, PAGE)
  writers.write_text_atomic(path, page(f'{workdir} at step {step}: {split} split', explained, tokenizer))
  return path


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  from ftlab import checkpoints, cli
  from ftlab import config as config_lib
  from ftlab import evaluate
  from ftlab.data.errors import DataError
  out = args.out or f'{args.workdir.rstrip("/")}_explain'
  problems = [] if args.n >= 1 and args.steps >= 1 else ['--n and --steps: give positive numbers']
  if not os.path.isfile(os.path.join(args.workdir, 'config.json')):
    problems.append(f'{args.workdir}: not an ftlab run (no config.json); give a run\'s --workdir')
  else:
    problems += evaluate.out_problems(args.workdir, out)
  try:
    if problems:
      raise config_lib.ConfigError(problems)
    path = explain(args.workdir, out, split=args.split, n=args.n, steps=args.steps, checkpoint=args.checkpoint)
  except config_lib.ConfigError as err:
    cli.exit_on_config_error(err)
  except (checkpoints.CheckpointError, DataError) as err:
    print(f'ftlab.explain: {err}', file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
