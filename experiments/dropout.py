"""Study: dropout rate (traced: the rates do not recompile). Quickstart: the MLP's hidden dropout; SST-2: hidden,
attention and head dropout together.

    python -m ftlab.sweep --config experiments/dropout.py --workdir runs/dropout
    python -m ftlab.sweep --config experiments/dropout.py:sst2 --workdir runs/dropout_sst2

The quickstart's source-task run uses the same dropout (it is derived from the fine-tuning config), so this varies
the pretraining's dropout too; its other studies keep the source run fixed.
Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling
from ftlab.sweeps.space import variants

study_base = sibling(__file__, 'study_base')


get_config = study_base.get_config  # the quickstart, or SST-2 with the arg sst2


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    rates = {f'p{r}': {'model.dropout_rate': r, 'model.attention_dropout_rate': r, 'model.head_dropout_rate': r}
             for r in (0.0, 0.1, 0.2)}
    return {'kind': 'grid', 'seeds': [0], 'params': {'dropout': variants(**rates)}}
  return {'kind': 'grid', 'seeds': [0, 1, 2], 'params': {'model.dropout_rate': [0.0, 0.1, 0.2, 0.3, 0.5]}}
