"""Study: batch size, with the learning rate fixed or scaled linearly with it (optimizer.lr_batch_scaling, the rate
given for a batch of 32). The number of epochs is fixed, so larger batches take fewer steps.

    python -m ftlab.sweep --config experiments/batch_size.py --workdir runs/batch_size
    python -m ftlab.sweep --config experiments/batch_size.py:sst2 --workdir runs/batch_size_sst2

Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling

study_base = sibling(__file__, 'study_base')

def get_config(arg=None):
  config = study_base.base_config(arg)
  config.optimizer.base_batch_size = 32
  config.early_stopping.enabled = False
  return config


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  sizes = [16, 32, 64] if data == 'sst2' else [16, 32, 64, 128]
  return {'kind': 'grid', 'seeds': [0] if data == 'sst2' else [0, 1, 2],
          'params': {'train.batch_size': sizes, 'optimizer.lr_batch_scaling': ['none', 'linear']}}
