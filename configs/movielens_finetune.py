"""Recommendation as fine-tuning on MovieLens 100K: a SASRec-style model pretrained on the ratings before 1998 and
fine-tuned on the six weeks from 1998-01-01, against the same model trained on those two months alone, and with its
item embeddings frozen.

Data: ../shared/data/movielens_100k/u.data (research licence: read from ../shared, never copied). Periods (UTC):
  source run (DIR/pretrain)  trains on ratings before 1997-12-15, selects on [1997-12-15, 1998-01-01)
  fine-tuning run            trains on [1998-01-01, 1998-02-15); each user's first rating in [02-15, 03-15) is a
                             validation target, the first from 03-15 on a test target
Histories at evaluation hold everything before the target (the source period too): what a deployed model knows.
Most target users are new (413 of the 551 who rate after 1998-01-01 never rated before), so this is a new period
and largely a new cohort at once.

    python -m ftlab.main --config configs/movielens_finetune.py --workdir runs/ml_ft            # pretrain + fine-tune
    python -m ftlab.main --config configs/movielens_finetune.py:target_only --workdir runs/ml_target
    python -m ftlab.main --config configs/movielens_finetune.py:frozen_items --workdir runs/ml_frozen
    python -m ftlab.sweep --config configs/movielens_finetune.py --workdir runs/ml_ft_sweep          # the three, 3 seeds

Measured: see benchmarks/movielens_finetune.py (filled in below by the session that ran it).
"""
from ftlab.config import files

seq = files.sibling(__file__, 'movielens_seq')

def get_config(arg=None):
  c = seq.get_config('sasrec')
  ic = c.data.interactions
  ic.split, ic.time_cuts, ic.train_since = 'time_cut', ['1998-02-15', '1998-03-15'], '1998-01-01'
  c.train.num_epochs = 60.0
  c.eval.every_steps = 0
  pre = c.init.pretrain
  variant = arg or 'finetune'
  if variant != 'target_only':
    pre.enabled, pre.time_cuts = True, ['1997-12-15', '1998-01-01']
    pre.num_steps, pre.learning_rate = 1500, 1e-3
    c.init.reinit = ''
  if variant == 'frozen_items':
    c.optimizer.freeze = '^item_embedding/'
  return c


def get_sweep(arg=None):
  """The three variants, 3 seeds each (one pretraining run per seed, shared by the two pretrained variants)."""
  strategy = {'finetune': {}, 'target_only': {'init.pretrain.enabled': False},
              'frozen_items': {'optimizer.freeze': '^item_embedding/'}}
  return {'kind': 'grid', 'seeds': [0, 1, 2], 'params': {'strategy': {'variants': strategy}}}
