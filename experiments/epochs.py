"""Study: training length, with and without early stopping (patience 3 evaluations on validation F1, evaluated every epoch on the quickstart; the best
checkpoint is kept either way, so 'off' still reports the best step).

    python -m ftlab.sweep --config experiments/epochs.py --workdir runs/epochs
    python -m ftlab.sweep --config experiments/epochs.py:sst2 --workdir runs/epochs_sst2

Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling
from ftlab.sweeps.space import variants

study_base = sibling(__file__, 'study_base')


def get_config(arg=None):
  config = study_base.base_config(arg)
  config.early_stopping.patience = 3
  if study_base.parse_arg(arg)[0] == 'quickstart':
    config.eval.every_steps = 0  # once per epoch: the 2-epoch runs have 34 steps
  return config


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  epochs = [0.5, 1.0, 2.0] if data == 'sst2' else [2.0, 5.0, 10.0, 20.0, 40.0]
  return {'kind': 'grid', 'seeds': [0] if data == 'sst2' else [0, 1, 2],
          'params': {'train.num_epochs': epochs,
                     'early_stopping': variants(off={'early_stopping.enabled': False},
                                                on={'early_stopping.enabled': True})}}
