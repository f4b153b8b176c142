"""Rating prediction on MovieLens 100K: ftlab's matrix factorisation against Surprise's SVD on the same data. Run by
hand where scikit-surprise is installed (`pip install scikit-surprise`, not a dependency of ftlab):

    python benchmarks/movielens_vs_surprise.py [--folds 5] [--epochs 30] [--out /tmp/ml_mf]

For each fold k of configs/movielens_mf.py (10% of the ratings carved as the test split, the other 90% cut into 5
folds; fold k validates, the other four train): ftlab trains its MF (configs/movielens_mf.py:k) and Surprise's SVD
(its defaults: 100 factors, 20 epochs of SGD, lr 0.005, reg 0.02, the biased model Surprise benchmarks) trains on
exactly the same training ratings; both predict the same validation fold (the 5-fold cross-validation figure) and the
same test split, clipped to [1, 5]. Printed: RMSE and MAE of each side per fold, their means and standard deviations,
and each side's wall time. Also printed for reference: Surprise's own 5-fold cross_validate on all 100,000 ratings
(80% training per fold, so not the same data as the table).
"""
import argparse
import os
import tempfile
import time

import numpy as np

from ftlab import loop
from ftlab.config import load_config_file
from ftlab.plan import make_plan

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CONFIG = os.path.join(ROOT, 'configs', 'movielens_mf.py')


def _errors(predicted, actual) -> tuple[float, float]:
  error = np.clip(np.asarray(predicted), 1, 5) - np.asarray(actual)
  return float(np.sqrt(np.mean(error ** 2))), float(np.mean(np.abs(error)))


def surprise_side(splits, folder: str) -> tuple[dict, float]:
  """Surprise SVD trained on `splits.train`'s ratings; RMSE / MAE on validation and test; its wall time."""
  import surprise
  t0 = time.perf_counter()
  train = splits.train
  path = os.path.join(folder, 'train.tsv')
  np.savetxt(path, np.stack([train.user, train.item, train.rating], 1), fmt='%d\t%d\t%.1f')
  trainset = surprise.Dataset.load_from_file(path, surprise.Reader(line_format='user item rating', sep='\t',
                                                                   rating_scale=(1, 5))).build_full_trainset()
  algo = surprise.SVD(random_state=0)
  algo.fit(trainset)
  out = {}
  for role in ('validation', 'test'):
    source = getattr(splits, role)
    predicted = [algo.predict(str(u), str(i)).est for u, i in zip(source.user, source.item)]
    out[role] = _errors(predicted, source.rating)
  return out, time.perf_counter() - t0


def ftlab_side(fold: int, epochs: float, workdir: str):
  config = load_config_file(f'{CONFIG}:{fold}')
  config.train.num_epochs = epochs
  t0 = time.perf_counter()
  plan = make_plan(config, workdir)
  summary = loop.train_and_evaluate(plan)
  seconds = time.perf_counter() - t0
  val, test = summary['validation'], summary['test']
  return plan.splits, {'validation': (val['rmse'], val['mae']), 'test': (test['rmse'], test['mae'])}, seconds


def surprise_own_cross_validation() -> list[float]:
  import surprise
  data = surprise.Dataset.load_from_file(os.path.join(ROOT, '..', 'shared', 'data', 'movielens_100k', 'u.data'),
                                         surprise.Reader('ml-100k'))
  result = surprise.model_selection.cross_validate(surprise.SVD(random_state=0), data, measures=['rmse'], cv=5,
                                                   verbose=False)
  return list(result['test_rmse'])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--folds', type=int, default=5)
  parser.add_argument('--epochs', type=float, default=30.0)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix='ml_mf_')
  rows = []
  for fold in range(args.folds):
    splits, ours, our_seconds = ftlab_side(fold, args.epochs, os.path.join(out, f'fold{fold}'))
    theirs, their_seconds = surprise_side(splits, out)
    rows.append((ours, theirs, our_seconds, their_seconds))
    print(f'fold {fold}: ftlab MF val RMSE {ours["validation"][0]:.4f} test {ours["test"][0]:.4f} ({our_seconds:.1f} s)'
          f' | Surprise SVD val {theirs["validation"][0]:.4f} test {theirs["test"][0]:.4f} ({their_seconds:.1f} s)',
          flush=True)
  print('\n                     validation RMSE   MAE          test RMSE         MAE           seconds/fold')
  for name, side, seconds in (('ftlab MF', 0, 2), ('Surprise SVD', 1, 3)):
    cells = []
    for role in ('validation', 'test'):
      for m in range(2):
        v = np.array([r[side][role][m] for r in rows])
        cells.append(f'{v.mean():.4f} +- {v.std():.4f}')
    print(f'  {name:18s} ' + '  '.join(cells) + f'  {np.mean([r[seconds] for r in rows]):.1f}')
  own = surprise_own_cross_validation()
  print(f"\nSurprise's own 5-fold cross_validate on all 100,000 ratings: RMSE {np.mean(own):.4f} +- {np.std(own):.4f}")


if __name__ == '__main__':
  main()
