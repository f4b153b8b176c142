"""Study: decoupled weight decay (AdamW; multiplied by the learning rate, never on biases and norms).

    python -m ftlab.sweep --config experiments/weight_decay.py --workdir runs/weight_decay
    python -m ftlab.sweep --config experiments/weight_decay.py:sst2 --workdir runs/weight_decay_sst2

Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling

study_base = sibling(__file__, 'study_base')

get_config = study_base.get_config  # the quickstart, or SST-2 with the arg sst2


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    return {'kind': 'grid', 'seeds': [0], 'params': {'optimizer.weight_decay': [0.0, 0.01, 0.1]}}
  return {'kind': 'grid', 'seeds': [0, 1, 2], 'params': {'optimizer.weight_decay': [0.0, 1e-3, 1e-2, 1e-1, 1.0]}}
