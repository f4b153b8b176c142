"""Raccoon detection (one class) with a CenterNet head on the FPN of ImageNet EfficientNet-Lite0.

Data: ../shared/data/raccoon (200 images with Pascal VOC XML boxes; the source's split, train_labels.csv 160 images
and test_labels.csv 40). Weights: ../shared/weights/efficientnet_lite0/model.safetensors (ImageNet-1k).

    python -m ftlab.main --config configs/raccoon_det.py --workdir runs/raccoon_det
    python -m ftlab.main --config configs/raccoon_det.py:scratch --workdir runs/raccoon_det_scratch

Images letterboxed to 224x224 (the CPU budget), trained on random views scaled by 0.75-1.25 with flips, batch 8,
AdamW lr 2e-3 (weight decay 1e-4), 5% warm-up then cosine; 20 validation images carved from the 160 training ones
(data.split_seed 0); the test split is the source's 40. Selected by validation mAP@0.5 (COCOeval, up to 100
detections an image). `scratch`: the same network and budget from random initialisation.

Measured (CPU, 2 cores, 2026-12-04, seed 0; the budget: 120 steps of 8 images, about 7 epochs of the 140):
               val mAP@0.5  mAP@[.5:.95]  | test mAP@0.5  mAP@[.5:.95]  mAP@0.75 | training
  pretrained     0.8509       0.3093      |   0.8152        0.3109       0.1320  | 570 s
  scratch        0.0030       0.0006      |   0.0074        0.0009       0.0000  | 586 s
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
  m.head_features = 64
  m.dropout_rate = m.attention_dropout_rate = m.head_dropout_rate = 0.0
  c.init.reinit = '^head/'
  d = c.data
  d.source, d.path = 'detection', os.path.join(SHARED, 'data', 'raccoon')
  d.splits.train, d.splits.validation, d.splits.test = 'train_labels.csv', '', 'test_labels.csv'
  d.validation_fraction = 20
  d.image.stats, d.image.flip = 'imagenet', True
  det = d.detection
  det.class_names, det.size, det.scale, det.max_boxes = ['raccoon'], 224, [0.75, 1.25], 8
  o = c.optimizer
  o.learning_rate, o.weight_decay = 2e-3, 1e-4
  c.schedule.name, c.schedule.warmup = 'cosine', '5%'
  t = c.train
  t.batch_size, t.num_steps, t.num_epochs = 8, 120, 0.0
  t.log_every_steps = 20
  c.eval.every_steps, c.eval.batch_size, c.eval.metric = 40, 20, 'map50'
  c.eval.train_subset = 20
  if arg == 'scratch':
    m.pretrained, m.bn_frozen = '', False
    c.init.reinit = ''
  return c


def get_sweep(arg=None):
  """Learning rate x LP-FT (the head alone for the first 25% of the steps, then everything)."""
  return {'kind': 'grid', 'seeds': [0],
          'params': {'optimizer.learning_rate': [1e-3, 2e-3, 4e-3], 'optimizer.lp_ft': ['', '25%']}}
