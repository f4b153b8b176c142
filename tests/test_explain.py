"""Integrated gradients: completeness (attributions sum to logit(x) - logit(baseline) within 1%) for an image MLP
over pixels and a BERT text classifier over word embeddings. (`python -m ftlab.explain` on a finished run:
tests/test_evaluate.py, which has one.)"""
import numpy as np
import pytest

from conftest import small_config
from ftlab import attribution
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'good', 'bad', 'movie', 'not', 'very', 'peter', 'paris', 'visited']


def _variables(plan):
  state = initial_state(plan)
  return {'params': state.params, **state.model_state}


def _assert_complete(attributions, at_input, at_baseline):
  total, change = attribution.completeness(attributions, at_input, at_baseline)
  assert abs(change) > 1e-3 and total == pytest.approx(change, rel=0.01)


def test_image_attributions_are_complete(tmp_path):
  # (no layer norm: with the zero biases of a fresh model it makes the logits constant along x' + alpha x for alpha
  # > 0, a jump at the baseline that no path integral sees)
  plan = make_plan(small_config(model__norm=False), str(tmp_path))
  x = plan.splits.validation.get_batch(np.arange(1))['image']
  _assert_complete(*attribution.image(plan.model, _variables(plan), x, 2, steps=64))


def _text_plan(tmp_path, **data):
  rows = [f'{"good" if i % 2 else "bad"} movie {"very " * (i % 3)}good,{i % 2}' for i in range(40)]
  (tmp_path / 'train.csv').write_text('text,label\n' + '\n'.join(rows) + '\n')
  (tmp_path / 'vocab.txt').write_text('\n'.join(VOCAB) + '\n')
  c = small_config(model__name='bert', data__source='text', data__path=str(tmp_path), data__classes=[])
  c.model.bert.update(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=16)
  c.data.tokenizer.path, c.data.tokenizer.max_length, c.data.data_dir = str(tmp_path / 'vocab.txt'), 12, str(
      tmp_path / 'tfds')
  return make_plan(c, str(tmp_path / 'run'))


def test_text_attributions_over_word_embeddings_are_complete(tmp_path):
  plan = _text_plan(tmp_path)
  source = plan.splits.validation
  batch = source.get_batch(np.arange(1))
  inputs = {k: batch[k] for k in ('input_ids', 'attention_mask', 'token_type_ids')}
  scores, at_input, at_baseline = attribution.text(plan.model, _variables(plan), inputs, 1, source.pad_id, steps=64)
  _assert_complete(scores, at_input, at_baseline)
  assert np.all(np.asarray(scores)[batch['attention_mask'][0] == 0] == 0)  # padding gets nothing

