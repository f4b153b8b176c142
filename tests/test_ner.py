"""Token classification (NER) end to end: a BERT encoder with a per-token head trains on CoNLL files, and the
entity-level F1 it writes to metrics.jsonl equals seqeval's on the same predictions."""
import json
import os

import jax
import numpy as np
from seqeval.metrics import f1_score

from conftest import small_config
from ftlab import checkpoints, loop
from ftlab.plan import make_plan

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'eu', 'rejects', 'german', 'call', 'peter', 'blackburn', 'said', '.',
         'in', 'paris', 'france', 'john', 'visited', 'bonn']
SENTENCES = [
    [('EU', 'I-ORG'), ('rejects', 'O'), ('German', 'I-MISC'), ('call', 'O'), ('.', 'O')],
    [('Peter', 'I-PER'), ('Blackburn', 'I-PER'), ('said', 'O'), ('.', 'O')],
    [('John', 'I-PER'), ('visited', 'O'), ('Paris', 'I-LOC'), ('in', 'O'), ('France', 'I-LOC'), ('.', 'O')],
    [('German', 'I-MISC'), ('John', 'I-PER'), ('visited', 'O'), ('Bonn', 'I-LOC'), ('.', 'O')],
]


def _write(path, sentences):
  with open(path, 'w') as f:
    f.write('-DOCSTART- -X- O\n\n')
    for sentence in sentences:
      f.write(''.join(f'{w} X {t}\n' for w, t in sentence) + '\n')


def test_entity_f1_in_metrics_equals_seqeval_on_the_models_predictions(tmp_path):
  folder = tmp_path / 'conll'
  folder.mkdir()
  _write(folder / 'eng.train', SENTENCES * 8)
  _write(folder / 'eng.testa', SENTENCES)
  _write(folder / 'eng.testb', SENTENCES[::-1])
  (tmp_path / 'vocab.txt').write_text('\n'.join(VOCAB) + '\n')
  c = small_config(model__name='bert', data__source='conll', data__path=str(folder), data__classes=[],
                   eval__metric='entity_f1', optimizer__learning_rate=3e-3)
  c.model.bert.update(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=16)
  c.data.tokenizer.path, c.data.tokenizer.max_length = str(tmp_path / 'vocab.txt'), 12
  c.train.num_steps, c.train.batch_size, c.eval.every_steps, c.eval.train_subset = 30, 8, 10, 0
  c.eval.predictions = True
  workdir = str(tmp_path / 'run')
  p = make_plan(c, workdir)
  assert p.task.kind == 'tags' and p.task.class_names[0] == 'O'
  summary = loop.train_and_evaluate(p)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  val = [r for r in rows if r['split'] == 'validation']
  assert len(val) == 3 and all(0.0 <= r['entity_f1'] <= 1.0 for r in val)
  test_row = [r for r in rows if r['split'] == 'test'][0]

  # The best checkpoint's predictions on the test split, scored by seqeval over words.

  params = checkpoints.restore_params(os.path.join(workdir, 'checkpoints'), summary['best_step'])
  batch = p.splits.test.get_batch(np.arange(len(p.splits.test)))
  logits = jax.jit(lambda x: p.model.apply({'params': params}, x))(p.task.inputs(batch))
  names = p.task.class_names
  truth, predicted = [], []
  for labels, pred in zip(batch['labels'], np.asarray(jax.numpy.argmax(logits, -1))):
    words = labels >= 0
    truth.append([names[t] for t in labels[words]])
    predicted.append([names[t] for t in pred[words]])
  assert [len(t) for t in truth] == [len(s) for s in SENTENCES[::-1]]
  assert test_row['entity_f1'] == summary['test']['entity_f1']
  np.testing.assert_allclose(test_row['entity_f1'], f1_score(truth, predicted), atol=1e-12)
  assert test_row['entity_f1'] > 0.0  # it learned something: 30 steps on 32 sentences
  with open(os.path.join(workdir, 'predictions.jsonl')) as f:  # its words, gold tags and predicted tags
    rows = [json.loads(line) for line in f if '"test"' in line]
  assert [r['input'] for r in rows] == [[w for w, _ in s] for s in SENTENCES[::-1]]
  assert [r['label'] for r in rows] == truth and [r['prediction'] for r in rows] == predicted
