"""Study: grid vs random vs Bayesian (TPE) search at an equal budget of 9 configurations over learning rate x weight
decay (1 seed each; compare the best validation F1 found and its test F1).

    python -m ftlab.sweep --config experiments/search.py:grid --workdir runs/search_grid
    python -m ftlab.sweep --config experiments/search.py:random --workdir runs/search_random
    python -m ftlab.sweep --config experiments/search.py:bayes --workdir runs/search_bayes
    python -m ftlab.sweep --config experiments/search.py:sst2,bayes --workdir runs/search_sst2_bayes

Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling
from ftlab.sweeps.space import loguniform

study_base = sibling(__file__, 'study_base')

KINDS = ('grid', 'random', 'bayes')


get_config = study_base.get_config  # the quickstart, or SST-2 with the arg sst2


def get_sweep(arg=None):
  data, kind = study_base.parse_arg(arg)
  if kind not in KINDS:
    raise ValueError(f'experiments/search.py: arg {arg!r}; use grid, random or bayes (sst2,KIND for SST-2)')
  lr, wd = ((1e-5, 3e-4), (1e-3, 1e-1)) if data == 'sst2' else ((1e-4, 3e-2), (1e-4, 1.0))
  if kind == 'grid':
    geometric = lambda lo, hi: [lo, (lo * hi) ** 0.5, hi]
    params = {'optimizer.learning_rate': geometric(*lr), 'optimizer.weight_decay': geometric(*wd)}
    return {'kind': 'grid', 'seeds': [0], 'params': params}
  params = {'optimizer.learning_rate': loguniform(*lr), 'optimizer.weight_decay': loguniform(*wd)}
  return {'kind': kind, 'seeds': [0], 'num_trials': 9, 'params': params,
          'sampler': {'n_startup_trials': 4} if kind == 'bayes' else {}}
