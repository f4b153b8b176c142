"""Packed encoder rows: several examples in one row, each attending to its own tokens with positions restarting,
give each example the logits it has alone (sequence classification under every pooling, RoBERTa positions, and
token classification); a packed training batch holds the batch's examples once each; a packed run (data.tokenizer.pack)
trains as the unpacked one."""
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from ftlab import checkpoints, data, stages
from ftlab.models import BertConfig, BertEncoder
from ftlab.models.heads import SequenceClassifier, TokenClassifier

LENGTHS = (5, 3, 7)
ROWS = ((0, 1), (2,))  # which examples share a row: 5 + 3 tokens, then 7 and one padding token
WIDTH = 8


def _examples(vocab: int):
  rng = np.random.default_rng(0)
  return [rng.integers(3, vocab, n) for n in LENGTHS]


def _alone(examples):
  """One example per row, right-padded."""
  ids = np.zeros((len(examples), WIDTH), np.int32)
  mask = np.zeros_like(ids)
  for i, e in enumerate(examples):
    ids[i, :len(e)], mask[i, :len(e)] = e, 1
  return {'input_ids': ids, 'attention_mask': mask}


def _packed(examples):
  slots = max(len(r) for r in ROWS)
  ids, mask, segments, positions = (np.zeros((len(ROWS), WIDTH), np.int32) for _ in range(4))
  starts = np.full((len(ROWS), slots), -1, np.int32)
  for r, members in enumerate(ROWS):
    at = 0
    for s, e in enumerate(members):
      n = len(examples[e])
      ids[r, at:at + n], mask[r, at:at + n], segments[r, at:at + n] = examples[e], 1, s + 1
      positions[r, at:at + n], starts[r, s] = np.arange(n), at
      at += n
  return {'input_ids': ids, 'attention_mask': mask, 'segment_ids': segments, 'positions': positions,
          'starts': starts}


def _config(position_offset: int) -> BertConfig:
  return BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=16,
                    position_offset=position_offset)


@pytest.mark.parametrize('pooling,position_offset', [('cls', 0), ('mean', 0), ('pooler', 0), ('cls', 2)])
def test_packed_rows_give_each_example_its_logits_alone(pooling, position_offset):
  config = _config(position_offset)
  model = SequenceClassifier(BertEncoder(config, name='backbone'), num_classes=3, pooling=pooling)
  examples = _examples(config.vocab_size)
  alone, packed = _alone(examples), _packed(examples)
  params = model.init(jax.random.key(0), jax.tree.map(jnp.asarray, alone))
  expected = np.asarray(jax.jit(model.apply)(params, alone))
  got = np.asarray(jax.jit(model.apply)(params, packed))  # [rows, slots, classes]
  assert got.shape == (len(ROWS), 2, 3)
  for r, members in enumerate(ROWS):
    for s, e in enumerate(members):
      np.testing.assert_allclose(got[r, s], expected[e], rtol=1e-5, atol=1e-5)


def test_packed_rows_give_each_token_its_tag_logits_alone():
  config = _config(0)
  model = TokenClassifier(BertEncoder(config, name='backbone'), num_classes=5)
  examples = _examples(config.vocab_size)
  alone, packed = _alone(examples), _packed(examples)
  params = model.init(jax.random.key(1), jax.tree.map(jnp.asarray, alone))
  expected = np.asarray(jax.jit(model.apply)(params, alone))
  got = np.asarray(jax.jit(model.apply)(params, {k: v for k, v in packed.items() if k != 'starts'}))
  for r, members in enumerate(ROWS):
    at = 0
    for e in members:
      n = LENGTHS[e]
      np.testing.assert_allclose(got[r, at:at + n], expected[e, :n], rtol=1e-5, atol=1e-5)
      at += n


WORDS = ['good', 'bad', 'movie', 'plot', 'great', 'awful', 'acting', 'not', 'very', 'a', 'the', 'fun', 'dull']


def _write_text(folder) -> None:
  """Sentences of 1 to 9 words, labelled by whether 'good' / 'great' / 'fun' outnumber the rest."""
  rng = np.random.default_rng(0)
  os.makedirs(folder)
  for split, n in (('train', 96), ('validation', 24), ('test', 24)):
    lines = ['text,label']
    for _ in range(n):
      words = list(rng.choice(WORDS, int(rng.integers(1, 10))))
      positive = sum(w in ('good', 'great', 'fun') for w in words) > sum(w in ('bad', 'awful', 'dull') for w in words)
      lines.append(f'{" ".join(words)},{"pos" if positive else "neg"}')
    (folder / f'{split}.csv').write_text('\n'.join(lines) + '\n')


def _text_config(tmp_path, **overrides):
  _write_text(tmp_path / 'text')
  (tmp_path / 'vocab.txt').write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', *WORDS]) + '\n')
  c = small_config(model__name='bert', data__source='text', data__path=str(tmp_path / 'text'), data__classes=[],
                   model__dropout_rate=0.0, model__attention_dropout_rate=0.0, **overrides)
  c.model.bert.update(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=16)
  c.data.tokenizer.path, c.data.tokenizer.max_length = str(tmp_path / 'vocab.txt'), 16
  c.train.num_steps, c.train.batch_size, c.eval.every_steps, c.eval.train_subset = 20, 16, 10, 0
  return c


def test_a_packed_batch_holds_each_example_once_with_its_tokens_and_label(tmp_path):
  c = _text_config(tmp_path)
  source = data.load(c.data).train
  indices = np.arange(16)
  alone = source.get_batch(indices)
  counted = np.arange(16) < 12  # the last four: a padded remainder's repeats
  packed = source.get_packed(indices, rows=8, slots=16, counted=counted)
  assert packed['input_ids'].shape == (8, 16) and packed['starts'].shape == (8, 16)
  assert int(packed['attention_mask'].sum()) == int(alone['attention_mask'].sum())  # no token lost or repeated
  assert len(packed['input_ids']) < len(indices)  # several examples share rows
  found = []
  for r, s in zip(*np.nonzero(packed['starts'] >= 0)):
    tokens = packed['input_ids'][r][packed['segment_ids'][r] == s + 1]
    i = next(i for i in range(16) if i not in found and
             np.array_equal(alone['input_ids'][i][alone['attention_mask'][i] > 0], tokens))
    found.append(i)
    assert packed['label'][r, s] == (alone['label'][i] if counted[i] else -1)
    assert packed['input_ids'][r, packed['starts'][r, s]] == tokens[0]
  assert sorted(found) == list(range(16))


@pytest.mark.parametrize('task', ['text', 'ner'])
def test_a_packed_run_trains_as_the_unpacked_one(tmp_path, task):
  """The same examples per step and the same loss: packing changes the layout only (float rounding aside)."""
  if task == 'text':
    c = _text_config(tmp_path)
  else:
    c = _text_config(tmp_path)
    c.data.source, c.data.path = 'conll', _write_conll(tmp_path / 'conll')
    c.eval.metric = 'entity_f1'
  c.eval.predictions = False  # the layout is what differs; predictions and their analysis would only add time
  c.eval.every_steps = 20  # one evaluation, at the end
  runs = {}
  for pack in (False, True):
    c.data.tokenizer.pack = pack
    runs[pack] = str(tmp_path / f'pack_{pack}')
    stages.run(c, runs[pack])
  metrics = {}
  for pack, workdir in runs.items():
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      metrics[pack] = [json.loads(line) for line in f]
  assert [(r['step'], r['split']) for r in metrics[True]] == [(r['step'], r['split']) for r in metrics[False]]
  for packed, alone in zip(metrics[True], metrics[False]):
    assert packed['loss'] == pytest.approx(alone['loss'], rel=1e-4, abs=1e-5), (packed, alone)
  params = [checkpoints.restore_params(os.path.join(w, 'checkpoints'), 20) for w in runs.values()]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), *params)


def _write_conll(folder) -> str:
  rng = np.random.default_rng(1)
  os.makedirs(folder)
  for name, n in (('eng.train', 96), ('eng.testa', 16), ('eng.testb', 16)):
    lines = ['-DOCSTART- -X- O', '']
    for _ in range(n):
      for w in rng.choice(WORDS, int(rng.integers(1, 9))):
        lines.append(f'{w} X {"I-PER" if w in ("movie", "plot") else "O"}')
      lines.append('')
    (folder / name).write_text('\n'.join(lines) + '\n')
  return str(folder)


@pytest.mark.parametrize('task', ['text', 'ner'])
def test_evaluation_by_length_buckets_equals_evaluation_in_order_at_max_length(tmp_path, task):
  """With data.tokenizer.bucket, evaluation visits the examples shortest first, each batch padded to its bucket: the
  metrics are those of the in-order batches padded to max_length (float order aside) and the prediction rows come
  back in split order, the same."""
  from ftlab import predictions
  from ftlab.initial_state import initial_state
  from ftlab.plan import make_plan
  from ftlab.steppers import SingleStepper
  c = _text_config(tmp_path, data__tokenizer__bucket=True, eval__batch_size=8)
  c.data.tokenizer.max_length = c.model.bert.max_position = 32  # buckets 16 and 32
  if task == 'ner':
    c.data.source, c.data.path = 'conll', _write_conll(tmp_path / 'conll')
  plan = make_plan(c, str(tmp_path / 'run'))
  stepper = SingleStepper(plan)
  packed = c.copy_and_resolve_references()
  packed.data.tokenizer.bucket, packed.data.tokenizer.pack = False, True  # packed training: bucketed evaluation too
  assert list(data.eval_buckets(types.SimpleNamespace(config=packed, task=plan.task))) == [16, 32]
  state = stepper.layout.place_state(initial_state(plan))
  source = plan.splits.validation
  lengths = [b['input_ids'].shape[1] for b in data.eval_batches(source, batch_size=8, buckets=stepper.buckets)]
  assert lengths == sorted(lengths) and lengths[0] < c.data.tokenizer.max_length  # shortest first, less padding
  runs = {}
  for buckets in (stepper.buckets, None):
    stepper.buckets = buckets
    (metrics,), (outputs,) = stepper.evaluate_predicting(state, source)
    runs[buckets is None] = metrics, predictions.rows(plan, source, 'validation', outputs)
  (bucketed, bucketed_rows), (in_order, in_order_rows) = runs[False], runs[True]
  assert bucketed.keys() == in_order.keys()
  for key, value in in_order.items():
    np.testing.assert_allclose(bucketed[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  assert [r['id'] for r in bucketed_rows] == list(range(len(source)))
  assert [r['prediction'] for r in bucketed_rows] == [r['prediction'] for r in in_order_rows]
