"""Recommendation as fine-tuning on MovieLens 100K (configs/movielens_finetune.py): SASRec pretrained on the ratings
before 1998, then fine-tuned on the six weeks from 1998-01-01, against the same model trained on those six weeks
alone with the same budget, and against fine-tuning with the item embeddings frozen. Run by hand:

    python benchmarks/movielens_finetune.py [--seeds 0,1,2,3,4] [--out /tmp/ml_ft]

Per seed: one pretraining run (shared by the two pretrained variants, as a sweep shares it), then the three
fine-tuning runs. Printed: each variant's test metrics (first ratings from 1998-03-15 on; full ranking and against 100
sampled negatives) per seed, their means, and for each pair of variants the paired difference over seeds of test
NDCG@10 with its 95% interval and p-value (ftlab.sweeps.significance.paired: a paired t-test), so that a difference
inside the noise of seeds says so.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from ftlab import loop, stages
from ftlab.config import load_config_file
from ftlab.sweeps import significance

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CONFIG = os.path.join(ROOT, 'configs', 'movielens_finetune.py')
VARIANTS = ('finetune', 'frozen_items', 'target_only')
SHOWN = ('ndcg@10', 'hr@10', 'mrr', 'sampled_ndcg@10', 'sampled_hr@10')


def run(variant: str, seed: int, out: str) -> tuple[dict, float]:
  config = load_config_file(f'{CONFIG}:{variant}')
  config.seed = seed
  t0 = time.perf_counter()
  planned = stages.plan_stages(config, os.path.join(out, f'{variant}_{seed}'),
                               pretrain_dir=os.path.join(out, f'pretrain_{seed}'))
  stages.run_sources(planned)
  summary = loop.train_and_evaluate(planned.final)
  return summary['test'], time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix='ml_ft_')
  seeds = [int(s) for s in args.seeds.split(',')]
  results = {v: {} for v in VARIANTS}  # variant -> {seed: test row}
  for seed in seeds:
    for variant in VARIANTS:
      test, seconds = run(variant, seed, out)
      results[variant][seed] = test
      print(f'{variant} seed {seed}: ' + '  '.join(f'{k} {test[k]:.4f}' for k in SHOWN) + f'  ({seconds:.0f} s)',
            flush=True)
  print(f'\ntest (first ratings from 1998-03-15), mean +- std over seeds {args.seeds}')
  print(f'  {"variant":14s}' + ''.join(f'{k:>22s}' for k in SHOWN))
  for variant in VARIANTS:
    cells = [np.array([results[variant][s][k] for s in seeds]) for k in SHOWN]
    print(f'  {variant:14s}' + ''.join(f'{v.mean():.4f} +- {v.std(ddof=1) if len(v) > 1 else 0:.4f}'.rjust(22)
                                       for v in cells))
  print('\npaired differences of test ndcg@10 over seeds (a minus b; 95% interval; paired t-test)')
  for a, b in (('finetune', 'target_only'), ('finetune', 'frozen_items'), ('frozen_items', 'target_only')):
    c = significance.paired({(s, 0): results[b][s]['ndcg@10'] for s in seeds},
                            {(s, 0): results[a][s]['ndcg@10'] for s in seeds})
    interval = f'[{c.low:+.4f}, {c.high:+.4f}] p={c.p:.3f}' if c.p is not None else '(too few seeds)'
    print(f'  {a} - {b}: {c.mean:+.4f} {interval}')


if __name__ == '__main__':
  main()
