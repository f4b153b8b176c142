"""Study: learning rate x schedule (constant, cosine, linear decay; all with a one-epoch warm-up), early stopping off
so that every schedule runs to its end.

    python -m ftlab.sweep --config experiments/lr_schedule.py --workdir runs/lr_schedule        # quickstart, 3 seeds
    python -m ftlab.sweep --config experiments/lr_schedule.py:sst2 --workdir runs/lr_schedule_sst2   # MiniLM, 1 seed

Results: see experiments/README.md (measured tables) and DIR/report.md.
"""
from ftlab.config import sibling

study_base = sibling(__file__, 'study_base')

def get_config(arg=None):
  config = study_base.base_config(arg)
  config.early_stopping.enabled = False
  return config


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    return {'kind': 'grid', 'seeds': [0], 'params': {'optimizer.learning_rate': [5e-5, 1e-4, 2e-4],
                                                     'schedule.name': ['constant', 'linear']}}
  return {'kind': 'grid', 'seeds': [0, 1, 2], 'params': {'optimizer.learning_rate': [3e-4, 1e-3, 3e-3, 1e-2],
                                                         'schedule.name': ['constant', 'cosine', 'linear']}}
