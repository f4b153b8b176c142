"""Object-detection data (data.source 'detection'): images with Pascal VOC XML or COCO JSON boxes, read into memory.

Each role in data.splits names what it holds: a COCO JSON file under data.path ('instances_train.json'), a CSV or
text file listing image file names (its 'filename' column, or one name per line; their VOC XML files are read from
data.detection.annotations), 'all' (every VOC XML there), or '' (and 'auto': annotations have no split names) to
carve the role from the training split (seeded by data.split_seed). Images are letterboxed: resized so that the
longer side is data.detection.size, padded at the bottom and right to a square, boxes scaled with them; evaluation
runs on these whole images. Training takes random views with data.detection.scale and data.image.flip
(ftlab.data.dense_augment), boxes moved with the pixels.
"""
from __future__ import annotations

import csv
import glob
import os

import numpy as np

from ftlab.data import boxes as boxes_lib, dense_augment, images as images_lib, splits as splits_lib
from ftlab.data.errors import DataError


class DetectionSource:
  """A split in memory: letterboxed images uint8 [N, S, S, C], boxes [N, M, 4] and labels [N, M] (-1: padding).
  `get_batch(indices)` gives {'image' (normalised float32), 'boxes', 'box_labels'}; with an rng and `augment`
  (scale, flip) each image is a random training view. `scales[i]`: the letterbox's factor, so that a box in the
  original image is a box here divided by it."""

  def __init__(self, images, boxes, labels, names: list[str], *, mean, std, scales=None):
    self.images, self.boxes, self.labels, self.names = images, boxes, labels, names
    self.mean, self.std = tuple(mean), tuple(std)
    self.scales = np.ones(len(images), np.float32) if scales is None else np.asarray(scales, np.float32)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in self.get_batch(np.array([index])).items()}

  def _view(self, i: int, rng, augment: dict):
    valid = self.labels[i] >= 0
    image, boxes, kept = dense_augment.scale_crop_flip_boxes(self.images[i], self.boxes[i][valid], rng,
                                                             crop=self.images.shape[1:3], **augment)
    out_boxes = np.zeros_like(self.boxes[i])
    out_labels = np.full_like(self.labels[i], -1)
    out_boxes[:len(boxes)], out_labels[:len(boxes)] = boxes, self.labels[i][valid][kept]
    return image, out_boxes, out_labels

  def get_batch(self, indices, *, rng=None, augment=None) -> dict[str, np.ndarray]:
    indices = np.asarray(indices)
    if rng is None or not augment:
      images, boxes, labels = self.images[indices], self.boxes[indices], self.labels[indices]
    else:
      views = [self._view(int(i), rng, augment) for i in indices]
      images, boxes, labels = (np.stack([v[k] for v in views]) for k in range(3))
    return {'image': images_lib.normalize(images, self.mean, self.std), 'boxes': boxes, 'box_labels': labels}


def augment_options(data_config) -> dict | None:
  scale = tuple(float(v) for v in data_config.detection.scale)
  flip = bool(data_config.image.flip)
  return {'scale': scale, 'flip': flip} if flip or scale != (1.0, 1.0) else None


def _listed(path: str) -> list[str]:
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  if rows and 'filename' in rows[0]:
    column = rows[0].index('filename')
    return list(dict.fromkeys(r[column] for r in rows[1:] if r))  # one name per box in such CSVs: keep each once
  return [r[0].strip() for r in rows if r and r[0].strip()]


def _voc_for(data_config, names: list[str] | None, class_names) -> list[boxes_lib.Annotated]:
  det = data_config.detection
  folder = os.path.join(data_config.path, det.annotations)
  image_dir = os.path.join(data_config.path, det.images)
  if names is None:
    files = sorted(glob.glob(os.path.join(folder, '*.xml')))
    if not files:
      raise DataError(f'{folder}: no VOC .xml annotations; set data.detection.annotations to their folder')
  else:
    files = [os.path.join(folder, os.path.splitext(n)[0] + '.xml') for n in names]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
      raise DataError(f'{missing[0]}: no annotation for a listed image ({len(missing)} missing); add it or drop '
                      'the image from the list')
  return [boxes_lib.read_voc(f, image_dir, class_names) for f in files]


def _annotated(data_config, spec: str, role: str, class_names) -> list[boxes_lib.Annotated]:
  path = os.path.join(data_config.path, spec)
  if spec == 'all':
    return _voc_for(data_config, None, class_names)
  if not os.path.isfile(path):
    raise DataError(f"data.splits.{role}={spec!r}: no such file under {data_config.path}; name a COCO .json, a list "
                    "of image names (.csv with a 'filename' column, or .txt), 'all', or '' to carve it from train")
  if spec.endswith('.json'):
    return boxes_lib.read_coco(path, os.path.join(data_config.path, data_config.detection.images), class_names)
  return _voc_for(data_config, _listed(path), class_names)


def _letterboxed(a: boxes_lib.Annotated, size: int, channels: int):
  try:
    with open(a.path, 'rb') as f:
      image = images_lib.decode(f.read(), channels=channels, where=a.path)
  except OSError as err:
    raise DataError(f'{a.path}: cannot read the image ({err}); its annotation names it') from err
  if image.shape[:2] != (a.height, a.width):
    raise DataError(f'{a.path}: the image is {image.shape[1]}x{image.shape[0]} but its annotation says '
                    f'{a.width}x{a.height}; fix the annotation\'s size')
  f = size / max(a.height, a.width)
  h, w = max(1, round(a.height * f)), max(1, round(a.width * f))
  canvas = np.zeros((size, size, channels), np.uint8)
  canvas[:h, :w] = images_lib.resize(image, (h, w))
  return canvas, a.boxes * np.float32(f), f


def _source(annotated, data_config, mean, std) -> DetectionSource:
  det = data_config.detection
  size, most = int(det.size), int(det.max_boxes)
  channels = int(data_config.image.channels) or 3
  over = [a.path for a in annotated if len(a.labels) > most]
  if over:
    raise DataError(f'{over[0]}: more than data.detection.max_boxes={most} boxes ({len(over)} images); raise it')
  images = np.zeros((len(annotated), size, size, channels), np.uint8)
  boxes = np.zeros((len(annotated), most, 4), np.float32)
  labels = np.full((len(annotated), most), -1, np.int32)
  scales = np.ones(len(annotated), np.float32)
  for i, a in enumerate(annotated):
    images[i], scaled, scales[i] = _letterboxed(a, size, channels)
    boxes[i, :len(scaled)], labels[i, :len(a.labels)] = scaled, a.labels
  return DetectionSource(images, boxes, labels, [os.path.basename(a.path) for a in annotated], mean=mean, std=std,
                         scales=scales)


def load(data_config):
  """The train / validation / test DetectionSources and the report."""
  from ftlab.data.sources import Splits, image_stats  # sources dispatches here: imported when called
  names = tuple(data_config.detection.class_names)
  if not names:
    raise DataError("data.detection.class_names is empty: name the object classes (e.g. ['raccoon'])")
  spec = {role: '' if data_config.splits[role] == 'auto' else data_config.splits[role] for role in splits_lib.ROLES}
  if not spec['train']:
    raise DataError("data.splits.train is empty: name the training annotations (a .json, a list file, or 'all')")
  annotated, origin = splits_lib.carve_lists(
      {r: _annotated(data_config, v, r, names) for r, v in spec.items() if v}, spec, data_config)
  mean, std = image_stats(data_config.image)
  built = {r: _source(a, data_config, mean, std) for r, a in annotated.items()}
  report = {'dataset': f'detection annotations at {data_config.path}', 'task': 'detect', 'splits': origin,
            'sizes': {r: len(built[r]) for r in splits_lib.ROLES},
            'boxes': {r: int((built[r].labels >= 0).sum()) for r in splits_lib.ROLES}}
  return Splits(built['train'], built['validation'], built['test'], names, 'detect', report)
