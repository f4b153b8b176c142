"""Next-item ranking on MovieLens 100K, leave-last-out: popularity, ftlab's MF, NeuMF and SASRec, and the `implicit`
library's BPR and ALS as outside references, all scored by the same metric code on the same targets. Run by hand
where `implicit` is installed (`pip install implicit`, not a dependency of ftlab; --no-implicit skips it):

    python benchmarks/movielens_ranking.py [--models sasrec,mf,neumf] [--seeds 0] [--out /tmp/ml_rank]

Each user's latest rating is the test target, the one before the validation target (configs/movielens_seq.py).
HR@10 and NDCG@10 against 100 sampled negatives (sampled_*, fixed by data.split_seed) and against the full catalogue
less the items the user rated before the target; the ftlab models at their best validation NDCG@10 checkpoint.
Popularity scores an item by its number of training ratings. implicit's models train on the same training ratings
(a user x item matrix of ones) with their defaults (BPR: 100 factors, lr 0.01, reg 0.01, 100 iterations; ALS: 100
factors, reg 0.01, 15 iterations) and score every item by the dot product, as ftlab's MF does.
"""
import argparse
import os
import tempfile
import time

import jax.numpy as jnp
import numpy as np

from ftlab import loop, ranking_metrics
from ftlab.config import load_config_file
from ftlab.plan import make_plan

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CONFIG = os.path.join(ROOT, 'configs', 'movielens_seq.py')
SHOWN = ('hr@10', 'ndcg@10', 'sampled_hr@10', 'sampled_ndcg@10', 'mrr', 'coverage@10')


def scored(splits, scores_of) -> dict:
  """The test split's metrics of `scores_of(users, histories)` -> [B, rows] scores, through ftlab's metric code."""
  test = splits.test.arrays
  num_items = splits.report['num_items']
  scores = jnp.asarray(scores_of(test['user'], test['history']), jnp.float32)
  out = ranking_metrics.excluded(scores.shape, jnp.asarray(test['seen']), num_items)
  full = ranking_metrics.full_ranks(scores, jnp.asarray(test['target']), out)
  sampled = ranking_metrics.sampled_ranks(scores, jnp.asarray(test['candidates']))
  top = ranking_metrics.top_items(scores, out)
  return ranking_metrics.scores(np.asarray(sampled), np.asarray(full), np.asarray(top), num_items)


def popularity(splits) -> np.ndarray:
  train = splits.train
  counts = np.bincount(train.item, minlength=splits.report['item_rows']).astype(np.float32)
  return lambda users, histories: np.broadcast_to(counts, (len(users), len(counts)))


def implicit_models(splits, seed: int) -> dict:
  """{name: scores_of} of implicit's BPR and ALS trained on the training ratings."""
  import implicit
  import scipy.sparse
  train, rows = splits.train, splits.report['item_rows']
  matrix = scipy.sparse.csr_matrix((np.ones(len(train.user), np.float32), (train.user, train.item)),
                                   shape=(splits.report['num_users'], rows))
  matrix.sum_duplicates()
  matrix.data[:] = 1.0
  out = {}
  for name, model in (('implicit BPR', implicit.cpu.bpr.BayesianPersonalizedRanking(random_state=seed)),
                      ('implicit ALS', implicit.cpu.als.AlternatingLeastSquares(random_state=seed))):
    t0 = time.perf_counter()
    model.fit(matrix, show_progress=False)
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    out[name] = (lambda u, h, users=users, items=items: users[u] @ items.T, time.perf_counter() - t0)
  return out


def ftlab_model(model: str, seed: int, workdir: str):
  config = load_config_file(f'{CONFIG}:{model}')
  config.seed = seed
  t0 = time.perf_counter()
  plan = make_plan(config, workdir)
  summary = loop.train_and_evaluate(plan)
  return plan.splits, summary['test'], time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--models', default='sasrec,mf,neumf')
  parser.add_argument('--seeds', default='0')
  parser.add_argument('--out', default='')
  parser.add_argument('--no-implicit', action='store_true')
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix='ml_rank_')
  results = {}  # name -> [(metrics, seconds)] over seeds
  splits = None
  for seed in map(int, args.seeds.split(',')):
    for model in args.models.split(','):
      splits, test, seconds = ftlab_model(model, seed, os.path.join(out, f'{model}_{seed}'))
      results.setdefault(f'ftlab {model}', []).append((test, seconds))
      print(f'ftlab {model} seed {seed}: ' + '  '.join(f'{k} {test[k]:.4f}' for k in SHOWN) + f'  ({seconds:.0f} s)',
            flush=True)
    results.setdefault('popularity', []).append((scored(splits, popularity(splits)), 0.0))
    if not args.no_implicit:
      for name, (scores_of, seconds) in implicit_models(splits, seed).items():
        results.setdefault(name, []).append((scored(splits, scores_of), seconds))
  print(f'\ntest split, {len(splits.test)} users; mean (+- std over seeds {args.seeds})')
  print(f'  {"model":16s}' + ''.join(f'{k:>20s}' for k in SHOWN) + '   seconds')
  for name, runs in results.items():
    cells = []
    for k in SHOWN:
      v = np.array([r[0][k] for r in runs])
      cells.append(f'{v.mean():.4f} +- {v.std():.4f}' if len(v) > 1 else f'{v.mean():.4f}')
    print(f'  {name:16s}' + ''.join(f'{c:>20s}' for c in cells) + f'   {np.mean([r[1] for r in runs]):.0f}')


if __name__ == '__main__':
  main()
