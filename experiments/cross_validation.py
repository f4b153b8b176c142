"""Study: full fine-tuning, a frozen backbone and LoRA compared by k-fold cross-validation, with the best refit on
every fold and tested once. On small training sets one validation split is noisy; five folds give each strategy five
scores, and the report pairs them fold by fold (standard error, paired t-test against the best).

    python -m ftlab.sweep --config experiments/cross_validation.py --workdir runs/cv
    python -m ftlab.sweep --config experiments/cross_validation.py:sst2 --workdir runs/cv_sst2

sst2: the first 2,000 SST-2 training sentences cut into 5 folds (1,600 train, 400 validate), all-MiniLM-L6-v2,
3 epochs (150 steps of 32); the refit is tested on the 872-sentence dev set. Results: experiments/README.md.
"""
from ftlab.config import sibling
from ftlab.sweeps.space import variants

study_base = sibling(__file__, 'study_base')


def get_config(arg=None):
  config = study_base.base_config(arg)
  config.data.splits.validation = ''  # each fold validates in turn
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    config.data.splits.train, config.data.splits.test = 'train[:2000]', 'validation'
    config.train.num_epochs = 3.0
    config.eval.train_subset = 256
  return config


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    strategies = variants(full={}, frozen={'optimizer.freeze': '^backbone/', 'optimizer.learning_rate': 1e-3},
                          lora={'lora.target': r'attention/(query|value)$', 'optimizer.learning_rate': 5e-4})
  else:
    strategies = variants(full={}, frozen={'optimizer.freeze': '^backbone/', 'optimizer.learning_rate': 3e-2},
                          lora={'lora.target': '^backbone/dense_', 'optimizer.learning_rate': 3e-3})
  return {'kind': 'grid', 'seeds': [0], 'folds': 5, 'refit': True, 'params': {'strategy': strategies}}
