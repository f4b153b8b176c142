"""Quickstart: fine-tune a small network pretrained on digits 0-4 to digits 5-9 (scikit-learn's 8x8 digits).

Needs no download. The source-task run (digits 0-4) goes first into <workdir>/pretrain; its best checkpoint then
initialises the fine-tuning run on digits 5-9, with a fresh head.

    python -m ftlab.main --config configs/quickstart.py --workdir runs/quickstart
    python -m ftlab.main --config configs/quickstart.py:frozen --workdir runs/quickstart_frozen

`frozen` trains the head alone (the backbone stays bit-identical); the default fine-tunes everything; `llrd`
adds layer-wise learning-rate decay (0.5 per layer from the head down); `head_lr` trains the head 10x faster;
`gradual` unfreezes one layer every 2 epochs from the head down (ULMFiT); `lpft` trains the head alone for 5
epochs, then everything (LP-FT); `lora` trains rank-8 adapters on the dense layers and the head, the base frozen.
Expected, about 10 s each on 2 CPU cores (seed 0): fine-tune test accuracy 0.9833 (best validation F1 0.9494 at
step 240), frozen 0.9667. Over seeds 0-2 (experiments/freezing.py, every variant) see README.md.

Its sweep (get_sweep below), a 3 x 3 grid of learning rate x dropout, one seed, 26 s on 2 CPU cores:

    python -m ftlab.sweep --config configs/quickstart.py --workdir runs/quickstart_sweep
"""
from ftlab.config import defaults


def get_config(arg=None):
  config = defaults()
  config.seed = 0
  config.model.name = 'mlp'
  config.model.features = [128, 64]
  config.model.dropout_rate = 0.1
  config.data.source = 'digits'
  config.data.classes = [5, 6, 7, 8, 9]
  config.init.pretrain.enabled = True
  config.init.pretrain.classes = [0, 1, 2, 3, 4]
  config.init.pretrain.num_steps = 400
  config.init.pretrain.learning_rate = 3e-3
  config.init.reinit = '^head/'
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = 'cosine'
  config.schedule.warmup = '1 epochs'
  config.train.batch_size = 32
  config.train.num_epochs = 15.0
  config.eval.every_steps = 50
  config.early_stopping.enabled = True
  config.early_stopping.patience = 5
  if arg == 'frozen':
    config.optimizer.freeze = '^backbone/'
    config.optimizer.learning_rate = 3e-2  # a linear probe wants a higher rate (3e-3 left it undertrained)
  elif arg == 'llrd':
    config.optimizer.layer_decay = 0.5  # head at lr, layer 2 at lr/2, layer 1 at lr/4
  elif arg == 'gradual':
    config.optimizer.unfreeze_every = '2 epochs'  # head first, then one layer more every 2 epochs
  elif arg == 'lpft':
    config.optimizer.lp_ft = '5 epochs'  # the head alone for 5 epochs, then everything
  elif arg == 'lora':
    config.lora.target = '^backbone/dense_'  # rank-8 adapters; the base frozen, the new head trained
    config.optimizer.learning_rate = 3e-3
  elif arg == 'head_lr':
    config.optimizer.groups = [('^head/', {'lr_mult': 10.0}), ('', {})]
  elif arg not in (None, '', 'finetune'):
    raise ValueError(f"configs/quickstart.py: unknown arg {arg!r}; use finetune, frozen, gradual, lpft, llrd, head_lr or lora")
  return config


def get_sweep(arg=None):
  """The sweep `python -m ftlab.sweep --config configs/quickstart.py[:ARG]` runs (for any ARG's variant)."""
  del arg
  return {'kind': 'grid', 'seeds': [0],
          'params': {'optimizer.learning_rate': [3e-4, 1e-3, 3e-3], 'model.dropout_rate': [0.0, 0.1, 0.3]}}
