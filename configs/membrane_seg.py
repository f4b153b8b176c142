"""Cell-membrane segmentation of electron-microscopy slices (ISBI 2012, binary masks) with an FPN head on ImageNet
EfficientNet-Lite0.

Data: ../shared/data/isbi_membrane/train (30 slices of 512x512, grey, masks 0 = membrane, 255 = cell interior).
Weights: ../shared/weights/efficientnet_lite0/model.safetensors (ImageNet-1k; the grey slices are read as RGB).

    python -m ftlab.main --config configs/membrane_seg.py --workdir runs/membrane_seg
    python -m ftlab.main --config configs/membrane_seg.py:scratch --workdir runs/membrane_seg_scratch

The 30 slices are split 20 / 5 / 5 (train / validation / test, carved with data.split_seed 0); read at 256x256
(data.segmentation.size, the CPU budget), trained on random 192x192 crops of slices scaled by 0.75-1.25 with flips,
batch 4, AdamW lr 2e-3, 5% warm-up then cosine; evaluated on whole slices, selected by validation mIoU (the mean of
the membrane and interior IoUs). `scratch`: the same network and budget from random initialisation.

Measured (CPU, 2 cores, 2026-12-04, seed 0; the budget: 200 steps of 4 crops, 40 epochs of the 20 slices):
               val mIoU  pixel acc  membrane IoU | test mIoU  pixel acc  membrane IoU | training
  pretrained    0.7234    0.8907     0.575       |  0.7079     0.8749     0.565       | 381 s (best at step 100)
  scratch       0.6211    0.8581     0.399       |  0.5703     0.8263     0.331       | 420 s
"""
import os

from ftlab.config import defaults

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared')


def get_config(arg=None):
  c = defaults()
  c.seed = 0
  m = c.model
  m.name, m.variant = 'efficientnet', 'lite0'
  m.pretrained = os.path.join(SHARED, 'weights', 'efficientnet_lite0', 'model.safetensors')
  m.bn_frozen = True
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.head_dropout_rate = 0.1
  c.init.reinit = '^head/'
  d = c.data
  d.source, d.path = 'segmentation', os.path.join(SHARED, 'data', 'isbi_membrane')
  d.splits.train, d.splits.validation, d.splits.test = 'train', '', ''
  d.validation_fraction, d.test_fraction = 5, 5
  d.image.channels, d.image.stats, d.image.flip = 3, 'imagenet', True
  s = d.segmentation
  s.images, s.masks = '{split}/image', '{split}/label'
  s.binary, s.class_names = True, ['membrane', 'interior']
  s.size, s.crop, s.scale = [256, 256], [192, 192], [0.75, 1.25]
  o = c.optimizer
  o.learning_rate, o.weight_decay = 2e-3, 1e-4
  c.schedule.name, c.schedule.warmup = 'cosine', '5%'
  t = c.train
  t.batch_size, t.num_steps, t.num_epochs = 4, 200, 0.0
  t.log_every_steps = 20
  c.eval.every_steps, c.eval.batch_size, c.eval.metric = 100, 5, 'miou'
  c.eval.train_subset = 8
  if arg == 'scratch':
    m.pretrained, m.bn_frozen = '', False
    c.init.reinit = ''
  return c


def get_sweep(arg=None):
  """Learning rate x batch-norm statistics frozen or trained."""
  return {'kind': 'grid', 'seeds': [0],
          'params': {'optimizer.learning_rate': [1e-3, 2e-3, 4e-3], 'model.bn_frozen': [True, False]}}
