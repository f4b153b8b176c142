"""Which inputs drive a run's predictions: `python -m ftlab.explain WORKDIR [--split test] [--n 20] [--steps 128]
[--checkpoint best|latest|STEP] [--out DIR]`.

For the chosen examples of the split (by default the most confident errors, then the most confident correct
predictions, n in all) the prediction is attributed to the input by integrated gradients (ftlab/attribution.py):
text classifiers per token (over the word embeddings), NER runs per token for one word's predicted tag (the chosen
examples are then words), image models per pixel (the quickstart's MLP included). For segmentation the chosen images
are those with the lowest and the highest pixel accuracy, each attributed for the class it paints over the most
wrong pixels (its logits summed over the pixels it paints with that class). For detection the chosen examples are
detections (judged as the error analysis judges them: correct, duplicate, wrong class, localisation, background),
each attributed by its class's heatmap logit at the cell it was decoded from. For a decoder the chosen examples are
its wrong generations, then its right ones (in the split's order), each attributed by the generation's
log-probability given the prompt over the prompt's tokens. DIR (default WORKDIR_explain, not inside WORKDIR, new or
empty) gets explain.html (ftlab/explain_page.py): one self-contained page, each example with its caption, the tokens
coloured by attribution or the image beside its attribution map, and the completeness check (the attributions' sum
against the attributed value's change from the baseline).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

from ftlab import detection_analysis

PAGE = 'explain.html'
_TOWARD = 'red pushes toward it, blue against it (hover a token for its value)'
INTROS = {
    'image': 'Integrated gradients of the predicted class\'s logit over the pixels, from the zero image: red pushes '
             'toward the prediction, blue against it.',
    'text': f'Integrated gradients of the predicted class\'s logit over the word embeddings, from [PAD] at every '
            f'token: {_TOWARD}.',
    'tags': f'Integrated gradients of the outlined word\'s predicted tag\'s logit over the word embeddings, from '
            f'[PAD] at every token: {_TOWARD}.',
    'segment': 'Integrated gradients of one class\'s logits summed over the pixels it is painted on, over the '
               'pixels, from the zero image: red pushes toward the class, blue against it.',
    'detect': 'Integrated gradients of each detection\'s class heatmap logit at its centre cell (its box in green), '
              'over the pixels, from the zero image: red pushes toward the detection, blue against it.',
    'lm': 'Integrated gradients of the generation\'s log-probability given the prompt, over the prompt\'s token '
          f'embeddings, from the padding token at every prompt token: {_TOWARD.replace("it,", "the answer,")}.',
}
COMPLETENESS = (' Completeness: the attributions sum to the attributed value\'s change from the baseline up to the '
                'integration error (more --steps, smaller).')


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
  """The most confident errors (up to half of n), then the most confident correct predictions, n in all (in the
  split's order where examples carry no confidence: a decoder's generations)."""
  by_confidence = sorted(examples, key=lambda e: -e.get('confidence', 0.0))
  errors = [e for e in by_confidence if e['error']]
  correct = [e for e in by_confidence if not e['error']]
  errors = errors[:max(n // 2, n - len(correct))]  # more than half when too few are correct
  return errors + correct[:n - len(errors)]


def choose_images(rows: list[dict], n: int) -> list[dict]:
  """Segmentation: the images with the lowest pixel accuracy (half of n), then those with the highest."""
  ranked = sorted(rows, key=lambda r: (r['correct'] / max(r['pixels'], 1), r['id']))
  worst = ranked[:(n + 1) // 2]
  best = [r for r in ranked[::-1] if r not in worst][:n - len(worst)]
  return [{'id': r['id'], 'input': r['input'], 'accuracy': r['correct'] / max(r['pixels'], 1), 'error': r in worst}
          for r in worst + best]


def examples(kind: str, rows: list[dict]) -> list[dict]:
  """Rows as explainable examples {id, error, confidence, ...}: per word for NER, per detection for detection."""
  if kind == 'tags':
    return [{'id': r['id'], 'word': k, 'label': g, 'prediction': p, 'confidence': c, 'error': g != p}
            for r in rows for k, (g, p, c) in enumerate(zip(r['label'], r['prediction'], r['confidence']))]
  if kind == 'detect':
    return [{'id': r['id'], 'input': r['input'], 'box': d['box'], 'prediction': d['label'], 'truth': d['truth'],
             'kind': d['kind'], 'confidence': d['score'], 'error': d['kind'] != 'correct'}
            for r in rows for d in detection_analysis.judge(r, 0.0)[0]]
  if kind == 'lm':
    return [{'id': r['id'], 'input': r['input'], 'reference': r['reference'], 'answer': r['generation'],
             'error': not r['correct']} for r in rows]
  return [{'id': r['id'], 'label': r['label'], 'prediction': r['prediction'], 'confidence': max(r['probabilities']),
           'error': r['label'] != r['prediction']} for r in rows]


def _complete(entry: dict, scores, at_x, at_base) -> dict:
  from ftlab import attribution
  total, change = attribution.completeness(scores, at_x, at_base)
  return {**entry, 'sum': total, 'change': change}


def _variables(state) -> dict:
  return {'params': state.params, **state.model_state}


def _attribute(plan, state, source, example: dict, steps: int, tokens) -> dict:
  """The example's page entry: its attributions ('tokens' and 'scores', or 'image' and 'map'), caption and
  completeness. `tokens`: token ids -> their strings."""
  batch = source.get_batch(np.array([example['id']]))
  attribute = {'segment': _attribute_segments, 'detect': _attribute_detection, 'lm': _attribute_generation,
               'image': _attribute_image}.get(plan.task.kind, _attribute_text)
  return attribute(plan, state, source, batch, example, steps, tokens)


def _caption(example: dict) -> str:
  return (f'true {example["label"]}, predicted {example["prediction"]} '
          f'(confidence {example["confidence"]:.3f})')


def _attribute_image(plan, state, source, batch, example, steps, tokens) -> dict:
  from ftlab import attribution
  target = list(plan.splits.class_names).index(example['prediction'])
  scores, at_x, at_base = attribution.image(plan.model, _variables(state), batch['image'], target, steps=steps)
  entry = {'what': f'example {example["id"]}', 'caption': _caption(example), 'error': example['error'],
           'image': batch['image'][0], 'map': np.asarray(scores)}
  return _complete(entry, scores, at_x, at_base)


def _attribute_text(plan, state, source, batch, example, steps, tokens) -> dict:
  """A text classifier's predicted class, or for NER one word's predicted tag (that word outlined)."""
  import jax.numpy as jnp

  from ftlab import attribution
  target = list(plan.splits.class_names).index(example['prediction'])
  inputs = {k: batch[k] for k in ('input_ids', 'attention_mask', 'token_type_ids') if k in batch}
  entry = {'what': f'example {example["id"]}', 'caption': _caption(example), 'error': example['error']}
  if plan.task.kind == 'tags':
    position = int(np.flatnonzero(batch['labels'][0] >= 0)[example['word']])
    target = jnp.array([position, target])
    entry.update(what=f'word {example["word"]} of example {example["id"]}', position=position)
  scores, at_x, at_base = attribution.text(plan.model, _variables(state), inputs, target, source.pad_id,
                                           steps=steps)
  real = batch['attention_mask'][0] > 0
  entry.update(tokens=tokens(batch['input_ids'][0][real].tolist()), scores=np.asarray(scores)[real])
  return _complete(entry, scores, at_x, at_base)


def _attribute_segments(plan, state, source, batch, example, steps, tokens) -> dict:
  """One image of a segmentation run: the class it paints over the most wrong pixels (over the most pixels when
  none is wrong), attributed by its logits summed over the pixels it paints with it."""
  import jax.numpy as jnp

  from ftlab import attribution
  names = list(plan.splits.class_names)
  from ftlab import predictions
  predicted = np.asarray(predictions.predictor(plan)(state, batch))[0]  # compiled already, for the rows
  label = batch['label'][0]
  counted = label >= 0
  wrong = counted & (predicted != label)
  c = int(np.bincount(predicted[wrong if wrong.any() else counted], minlength=len(names)).argmax())
  region = predicted == c
  scores, at_x, at_base = attribution.image(plan.model, _variables(state), batch['image'],
                                            (c, jnp.asarray(region, jnp.float32)), steps=steps)
  caption = (f'{example["input"]}, pixel accuracy {example["accuracy"]:.3f}: the {int(region.sum())} pixels painted '
             f'{names[c]} ({int((region & wrong).sum())} of them wrongly)')
  entry = {'what': f'example {example["id"]}', 'caption': caption, 'error': example['error'],
           'image': batch['image'][0], 'map': np.asarray(scores)}
  return _complete(entry, scores, at_x, at_base)


def _attribute_detection(plan, state, source, batch, example, steps, tokens) -> dict:
  """One detection: its class's heatmap logit at the peak cell it was decoded from (the peak of its class whose
  score is nearest its own), over the letterboxed image's pixels; its box drawn on both."""
  import jax
  import jax.numpy as jnp

  from ftlab import attribution, centernet, compiled
  names = list(plan.splits.class_names)
  c = names.index(example['prediction'])
  forward = compiled.cached(('explain forward', plan.static_key),
                            lambda: jax.jit(functools.partial(plan.model.apply, train=False)))
  heat = centernet.split_outputs(forward(_variables(state), batch['image']), len(names))[0]
  scores, classes, cells = (np.asarray(x)[0] for x in centernet.peaks(heat, plan.task.max_detections))
  cell = int(cells[np.argmin(np.where(classes == c, np.abs(scores - example['confidence']), np.inf))])
  at = np.zeros(heat.shape[1:3], np.float32)
  at.flat[cell] = 1.0
  attributions, at_x, at_base = attribution.image(plan.model, _variables(state), batch['image'],
                                                  (c, jnp.asarray(at)), steps=steps)
  caption = (f'{example["input"]}: {example["prediction"]} detected with score {example["confidence"]:.3f}, '
             f'{example["kind"]} (the ground truth it overlaps most: {example["truth"]})')
  entry = {'what': f'example {example["id"]}', 'caption': caption, 'error': example['error'],
           'image': batch['image'][0], 'map': np.asarray(attributions),
           'box': [v * float(source.scales[example['id']]) for v in example['box']]}  # into the letterboxed image
  return _complete(entry, attributions, at_x, at_base)


def _attribute_generation(plan, state, source, batch, example, steps, tokens) -> dict:
  """A decoder's greedy generation from the example's prompt: its log-probability over the prompt's tokens."""
  from ftlab import attribution, predictions
  from ftlab.data import sft
  prompt = batch['prompt_ids'][0][batch['prompt_segments'][0] > 0]
  generated = np.asarray(predictions.predictor(plan)(state, batch)['generated'])[0]
  answer = [t for t in sft.until_eos(generated, source.eos_id, len(generated)) if t >= 0 and t != source.eos_id]
  answer = answer or [source.eos_id]  # an empty generation: the end-of-sequence token's probability
  ids = np.full((1, source.prompt_length + len(generated) + 1), source.pad_id, np.int32)
  ids[0, :len(prompt) + len(answer)] = np.concatenate([prompt, answer])
  end = len(prompt) + len(answer)
  scores, at_x, at_base = attribution.generation(plan.model, _variables(state), ids, len(prompt), end, source.pad_id,
                                                 steps=steps)
  entry = {'what': f'example {example["id"]}', 'caption': f'reference {example["reference"]!r}',
           'error': example['error'], 'tokens': tokens(prompt.tolist()),
           'scores': np.asarray(scores)[:len(prompt)], 'answer': example['answer']}
  return _complete(entry, scores, at_x, at_base)


def _tokens(plan, source):
  """Token ids -> their strings, as the page shows them (a decoder's pieces decoded one by one)."""
  if plan.task.kind == 'lm':
    return lambda ids: [source.tokenizer.decode([i]) for i in ids]
  if plan.task.kind not in ('text', 'tags'):
    return None
  from ftlab.data import text
  from ftlab.pretrained import load as pretrained_lib
  dc = plan.config.data
  tok = text.load_tokenizer(dc.tokenizer.path or pretrained_lib.tokenizer_folder(plan.config.model),
                            lowercase=dc.tokenizer.lowercase)
  return lambda ids: [tok.id_to_token(i) or '?' for i in ids]


def explain(workdir: str, out: str, *, split: str = 'test', n: int = 20, steps: int = 128,
            checkpoint: str = 'best') -> str:
  """Writes out/explain.html for the run at `workdir`; returns its path."""
  from ftlab import config as config_lib
  from ftlab import evaluate, explain_page, predictions, writers
  plan, state, step = evaluate.restored(workdir, out, checkpoint=checkpoint)
  kind = plan.task.kind
  if kind == 'lm' and not plan.task.max_new_tokens:
    raise config_lib.ConfigError([f'{workdir}: a decoder evaluated by its loss only, with no generations to '
                                  'explain; give the run eval generation (its config\'s max_new_tokens > 0)'])
  if kind not in INTROS:
    raise config_lib.ConfigError([f'{workdir}: a {kind} run; explain covers {", ".join(INTROS)} runs'])
  source = getattr(plan.splits, split)
  rows = predictions.rows(plan, source, split, predictions.outputs_of(plan, state, source))
  chosen = choose_images(rows, n) if kind == 'segment' else choose(examples(kind, rows), n)
  tokens = _tokens(plan, source)
  explained = [_attribute(plan, state, source, e, steps, tokens) for e in chosen]
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, PAGE)
  html = explain_page.page(f'{workdir} at step {step}: {split} split', INTROS[kind] + COMPLETENESS, explained,
                           value='log-probability' if kind == 'lm' else 'logit')
  writers.write_text_atomic(path, html)
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
