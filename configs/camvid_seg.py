"""CamVid road-scene segmentation (11 classes, void ignored) with an FPN head on ImageNet EfficientNet-Lite0.

Data: ../shared/data/camvid (SegNet's release: 367 train + 101 val images of 480x360, class-id masks, id 11 void).
Weights: ../shared/weights/efficientnet_lite0/model.safetensors (ImageNet-1k).

    python -m ftlab.main --config configs/camvid_seg.py --workdir runs/camvid_seg
    python -m ftlab.main --config configs/camvid_seg.py:frozen --workdir runs/camvid_seg_frozen
    python -m ftlab.main --config configs/camvid_seg.py:scratch --workdir runs/camvid_seg_scratch

Default: the pretrained backbone fine-tuned with the FPN head (batch norm on its ImageNet statistics, bn_frozen),
training on random 224x224 crops of images scaled by 0.5-1.0 with flips, batch 8, AdamW lr 2e-3 (weight decay
1e-4), 5% warm-up then cosine decay; evaluation on whole images at full resolution (480x360, padded to 480x384 with
ignored pixels), selected by validation mIoU. The validation split is CamVid's val (101 images); the test split is
37 images carved from train (10%, data.split_seed 0), so 330 train. `frozen`: the backbone frozen, the head alone
trains; `scratch`: the same network and budget from random initialisation (batch norm then trains).

Measured (CPU, 2 cores, 2026-12-04, seed 0; the budget: 250 steps of 8 crops of 160x160 at half resolution, about
6 epochs; images and masks read at 240x180): validation mIoU over the 11 classes (void ignored), pixel accuracy,
test (37 carved images) mIoU, and the training time:
  fine-tuned  0.5129  0.887  test 0.5136  728 s  (sky .93 building .82 pole .04 road .93 pavement .73 tree .88
                                                  sign .11 fence .41 car .40 pedestrian .31 bicyclist .09)
  frozen      0.5000  0.867  test 0.4731  198 s  (the backbone's gradients skipped: 3.7x faster)
  scratch     0.2499  0.653  test 0.2836  693 s  (six classes at 0 IoU)
Published anchor (SegNet, full resolution, the 233-image test split, long training): about 60 mIoU.
"""
import os

from ftlab.config import defaults

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared')
CLASSES = ['sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign_symbol', 'fence', 'car', 'pedestrian',
           'bicyclist']


def get_config(arg=None):
  c = defaults()
  c.seed = 0
  m = c.model
  m.name, m.variant = 'efficientnet', 'lite0'
  m.pretrained = os.path.join(SHARED, 'weights', 'efficientnet_lite0', 'model.safetensors')
  m.bn_frozen = True
  m.head_features = 64
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.head_dropout_rate = 0.1
  c.init.reinit = '^head/'
  d = c.data
  d.source, d.path = 'segmentation', os.path.join(SHARED, 'data', 'camvid')
  d.splits.train, d.splits.validation, d.splits.test = 'train', 'val', ''
  d.test_fraction = 0.1
  s = d.segmentation
  s.images, s.masks = '{split}', '{split}annot'
  s.class_names, s.ignore_ids = CLASSES, [11]
  s.size = [180, 240]  # half resolution: the CPU budget (a GPU machine trains at full size: size [0, 0])
  s.crop, s.scale = [160, 160], [0.75, 1.25]
  d.image.flip = True
  d.image.stats = 'imagenet'
  o = c.optimizer
  o.learning_rate, o.weight_decay = 2e-3, 1e-4
  c.schedule.name, c.schedule.warmup = 'cosine', '5%'
  t = c.train
  t.batch_size, t.num_steps, t.num_epochs = 8, 250, 0.0
  t.log_every_steps = 20
  c.eval.every_steps, c.eval.batch_size, c.eval.metric = 125, 16, 'miou'
  c.eval.train_subset = 32
  if arg == 'frozen':
    o.freeze = '^backbone/'
  elif arg == 'scratch':
    m.pretrained, m.bn_frozen = '', False
    c.init.reinit = ''
  elif arg == 'tiny':  # a minute: a few steps, to try the pipeline
    t.num_steps, c.eval.every_steps = 6, 3
    d.splits.train, d.splits.validation = 'train[:24]', 'val[:8]'
  return c


def get_sweep(arg=None):
  """Learning rate x freezing strategy of the backbone (full fine-tune, frozen, LP-FT for the first 25%)."""
  return {'kind': 'grid', 'seeds': [0],
          'params': {'optimizer.learning_rate': [1e-3, 2e-3, 4e-3], 'optimizer.lp_ft': ['', '25%']}}
