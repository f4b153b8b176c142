"""Ablation: how much of the pretrained network to train, on the quickstart (digits 0-4 -> 5-9): everything,
the head alone on a frozen backbone, gradual unfreezing, LP-FT, layer-wise LR decay, a 10x head rate, LoRA.

    python experiments/freeze_vs_finetune.py [--seeds 0 1 2] [--variants finetune frozen gradual lpft llrd ...]

Each (variant, seed) is a normal ftlab run in WORKDIR/<variant>_seed<seed> (rerunning resumes/skips finished runs);
the table gives mean +- std over seeds of the best validation F1 and of the test accuracy and F1 at that checkpoint.
The sweep runner of the ablations issue will replace this loop; the numbers it prints are in README.md.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ftlab import config as config_lib  # noqa: E402
from ftlab import main as ftlab_main  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--workdir', default='runs/freeze_vs_finetune')
  parser.add_argument('--variants', nargs='+', default=['finetune', 'frozen', 'gradual', 'lpft', 'llrd', 'head_lr', 'lora'])
  args = parser.parse_args()
  rows = {}
  for variant in args.variants:
    for seed in args.seeds:
      config = config_lib.load_config_file(os.path.join(ROOT, 'configs', f'quickstart.py:{variant}'))
      config.seed = seed
      summary = ftlab_main.run(config, os.path.join(args.workdir, f'{variant}_seed{seed}'))
      rows.setdefault(variant, []).append(
          (summary['validation']['f1_macro'], summary['test']['accuracy'], summary['test']['f1_macro']))
  print(f'\n| variant | seeds | val F1 | test accuracy | test F1 |\n|---|---|---|---|---|')
  for variant, values in rows.items():
    v = np.array(values)
    cells = ' | '.join(f'{m:.4f} +- {s:.4f}' for m, s in zip(v.mean(0), v.std(0)))
    print(f'| {variant} | {len(values)} | {cells} |')


if __name__ == '__main__':
  main()
