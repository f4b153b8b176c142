"""Image classification of your own folders with ImageNet EfficientNet-Lite0 (any dataset).

    python -m ftlab.main --config configs/images.py --config.data.path=DIR --workdir runs/mine \
        --config.model.pretrained=WEIGHTS

DIR holds a folder per class of images (PNG, JPEG, ...), either directly (validation and test carved from them,
20% each, stratified) or inside train/, and optionally validation/ (or valid / val / dev) and test/. WEIGHTS:
EfficientNet-Lite0's ImageNet weights as .safetensors with lukemelas EfficientNet-PyTorch names, or the folder
holding them (default: ../shared/weights/efficientnet_lite0 beside this repository); --config.model.pretrained=''
trains from scratch.

The recipe: images resized to 224 x 224 with ImageNet statistics and random flips, batch 32, the backbone's batch
norm on its ImageNet statistics, a fresh head; AdamW lr 1e-3 (5% warm-up, cosine decay), weight decay 1e-4,
head dropout 0.2, 10 epochs evaluated each epoch, the best by macro F1. `:frozen` trains the head alone (a linear
probe: several times faster); `--show-config` prints every key this sets and what it means.
"""
import os

from ftlab.config import defaults

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'weights',
                       'efficientnet_lite0')


def get_config(arg=None):
  c = defaults()
  m = c.model
  m.name, m.variant, m.pretrained = 'efficientnet', 'lite0', WEIGHTS
  m.bn_frozen = True
  m.dropout_rate, m.head_dropout_rate = 0.0, 0.2
  c.init.reinit = '^head/'
  d = c.data
  d.source, d.path = 'image_folder', ''  # yours: --config.data.path=DIR
  d.classes = []
  d.splits.train = d.splits.validation = d.splits.test = 'auto'
  d.image.size, d.image.channels, d.image.stats, d.image.flip = 224, 3, 'imagenet', True
  o = c.optimizer
  o.learning_rate, o.weight_decay = 1e-3, 1e-4
  c.schedule.name, c.schedule.warmup = 'cosine', '5%'
  c.train.batch_size, c.train.num_epochs = 32, 10.0
  c.eval.every_steps, c.eval.metric = 0, 'f1_macro'
  if arg == 'frozen':
    o.freeze = '^backbone/'
  elif arg not in (None, ''):
    raise ValueError(f'configs/images.py: unknown arg {arg!r}; use frozen (or nothing)')
  return c
