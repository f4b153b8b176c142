"""Semantic-segmentation data (data.source 'segmentation'): image files and mask files of the same name in folder
pairs under data.path, read into memory.

data.segmentation.images / .masks name the folders, '{split}' standing for the split's name ('{split}' and
'{split}annot' for CamVid's SegNet layout; '{split}/image' and '{split}/label' for the ISBI membrane layout). The
splits in data.splits are folder names, optionally sliced ('train[:20]', 'train[-5:]'); '' (or 'auto' where no such
folder exists) carves the role from the training split as for every source (data.validation_fraction,
data.test_fraction, data.split_seed). data.segmentation.size (height, width), or else data.image.size (square), when
set, resizes every image (bilinear) and mask (nearest) first: a cheaper resolution for training and evaluation.

Every split is padded at the bottom and right to one size, a multiple of data.segmentation.pad_to (the backbone's
largest stride), padding pixels labelled IGNORE: evaluation runs on whole images at full resolution and counts no
padding. Training draws data.segmentation.crop windows with random scale and flips (ftlab.data.dense_augment).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ftlab.data import dense_augment, images as images_lib, masks as masks_lib, splits as splits_lib
from ftlab.data.errors import DataError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_SPLIT = re.compile(r'^([\w.-]+)(?:\[(-?\d*):(-?\d*)\])?$')


class SegmentationSource:
  """A split in memory: images uint8 [N, H, W, C] and labels int32 [N, H, W] (IGNORE where nothing counts).
  `get_batch(indices)` gives {'image': normalised float32, 'label': int32}; with an rng and `augment` options
  (dense_augment.scale_crop_flip's crop, scale, flip) each example is a random training view."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, names: list[str], *, mean, std):
    self.images, self.labels, self.names = images, labels, names
    self.mean, self.std = tuple(mean), tuple(std)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in self.get_batch(np.array([index])).items()}

  def class_counts(self, num_classes: int) -> np.ndarray:
    """Pixels of each class (ignored ones left out): the counts that data balancing weighs by."""
    labels = self.labels[self.labels >= 0]
    return np.bincount(labels, minlength=num_classes)

  def get_batch(self, indices: np.ndarray, *, rng: np.random.Generator | None = None,
                augment: dict | None = None) -> dict[str, np.ndarray]:
    indices = np.asarray(indices)
    if rng is None or not augment or not augment.get('crop'):
      images, labels = self.images[indices], self.labels[indices]
      if rng is not None and augment and augment.get('flip'):
        flips = rng.random(len(indices)) < 0.5
        images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
        labels = np.where(flips[:, None, None], labels[:, :, ::-1], labels)
    else:
      views = [dense_augment.scale_crop_flip(self.images[i], self.labels[i], rng, **augment) for i in indices]
      images, labels = np.stack([v[0] for v in views]), np.stack([v[1] for v in views])
    return {'image': images_lib.normalize(images, self.mean, self.std), 'label': labels}

  def __repr__(self) -> str:
    return f'SegmentationSource({len(self)} images, shape {self.images.shape[1:]})'


def augment_options(data_config) -> dict | None:
  """The training stream's augmentation for SegmentationSource.get_batch (None when there is none)."""
  seg = data_config.segmentation
  crop = tuple(int(v) for v in seg.crop)
  options = {'crop': crop if all(crop) else None, 'scale': tuple(float(v) for v in seg.scale),
             'flip': bool(data_config.image.flip)}
  return options if options['crop'] or options['flip'] else None


def available_splits(data_config) -> tuple[str, ...]:
  """The names under data.path whose image folder exists."""
  root, template = data_config.path, data_config.segmentation.images
  if not os.path.isdir(root):
    raise DataError(f'data.path={root!r} is not a folder; point it at the dataset (its split folders inside)')
  names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, template.format(split=d))))
  if not names:
    raise DataError(f'data.path={root!r} holds no image folder matching data.segmentation.images={template!r} '
                    "('{split}' stands for a split name, e.g. 'train'); fix the template or the path")
  return tuple(names)


def pairs(data_config, split: str) -> list[tuple[str, str]]:
  """(image file, mask file) of every image in the split's folder, sorted by name; a missing mask is an error."""
  seg = data_config.segmentation
  image_dir = os.path.join(data_config.path, seg.images.format(split=split))
  mask_dir = os.path.join(data_config.path, seg.masks.format(split=split))
  if not os.path.isdir(mask_dir):
    raise DataError(f'{mask_dir}: no mask folder for split {split!r}; set data.segmentation.masks (now '
                    f'{seg.masks!r}) to the folder of its masks')
  masks = {os.path.splitext(f)[0]: f for f in sorted(os.listdir(mask_dir))}
  out = []
  for name in sorted(os.listdir(image_dir)):
    stem, ext = os.path.splitext(name)
    if ext.lower() not in IMAGE_EXTENSIONS:
      continue
    if stem not in masks:
      raise DataError(f'{os.path.join(image_dir, name)}: no mask named {stem}.* in {mask_dir}; add it or remove the '
                      'image')
    out.append((os.path.join(image_dir, name), os.path.join(mask_dir, masks[stem])))
  if not out:
    raise DataError(f'{image_dir}: no images ({", ".join(IMAGE_EXTENSIONS)}) for split {split!r}')
  return out


def _sliced(spec: str, available: tuple[str, ...], data_config, role: str) -> list[tuple[str, str]]:
  match = _SPLIT.match(spec)
  if not match or match.group(1) not in available:
    raise DataError(f'data.splits.{role}={spec!r}: name a split folder under {data_config.path} ('
                    f'{", ".join(available)}), optionally sliced as \'train[:20]\', or \'\' to carve it from train')
  files = pairs(data_config, match.group(1))
  lo, hi = (int(v) if v else None for v in match.group(2, 3)) if match.group(2) is not None else (None, None)
  files = files[lo:hi]
  if not files:
    raise DataError(f'data.splits.{role}={spec!r} selects no image; widen the slice')
  return files


def read_pair(image_path: str, mask_path: str, data_config, fmt: masks_lib.MaskFormat, channels: int):
  """(image uint8 [H, W, C], labels int32 [H, W]) of one pair, resized to data.image.size when set."""
  with open(image_path, 'rb') as f:
    image = images_lib.decode(f.read(), channels=channels, where=image_path)
  return fit(image, masks_lib.read(mask_path, fmt), data_config, mask_path, image_path)


def fit(image: np.ndarray, labels: np.ndarray, data_config, where: str, image_where: str):
  """(image, labels) checked to match pixel for pixel and resized to data.segmentation.size (or data.image.size)."""
  if labels.shape != image.shape[:2]:
    raise DataError(f'{where}: the mask is {labels.shape[0]}x{labels.shape[1]} but its image {image_where} is '
                    f'{image.shape[0]}x{image.shape[1]}; masks must match their images pixel for pixel')
  height, width = (int(v) for v in data_config.segmentation.size)
  if not height and data_config.image.size:
    height = width = int(data_config.image.size)
  if height:
    image = images_lib.resize(image, (height, width))
    labels = dense_augment.resize_labels(labels, height, width)
  return image, labels


def _padded(arrays: list[np.ndarray], height: int, width: int, fill) -> np.ndarray:
  out = np.full((len(arrays), height, width) + arrays[0].shape[2:], fill, arrays[0].dtype)
  for i, a in enumerate(arrays):
    out[i, :a.shape[0], :a.shape[1]] = a
  return out


def _read_split(files, data_config, fmt, channels: int):
  read = [read_pair(image, mask, data_config, fmt, channels) for image, mask in files]
  return [r[0] for r in read], [r[1] for r in read]


def _roles(data_config, available) -> tuple[dict, dict]:
  """({role: (image, mask) files}, {role: where it came from}), carving the roles set to ''."""
  spec = {role: data_config.splits[role] for role in splits_lib.ROLES}
  spec = {r: ('' if v == 'auto' and r not in available else r if v == 'auto' else v) for r, v in spec.items()}
  if not spec['train']:
    raise DataError(f'data.splits.train is empty: name the training folder ({", ".join(available)})')
  files = {r: _sliced(v, available, data_config, r) for r, v in spec.items() if v}
  return splits_lib.carve_lists(files, spec, data_config)


def class_names(seg_config) -> tuple[str, ...]:
  names = tuple(seg_config.class_names) or (('background', 'foreground') if seg_config.binary else ())
  if not names:
    raise DataError('data.segmentation.class_names is empty: name the classes (index = the id in the masks), or set '
                    'data.segmentation.binary for 0/255 masks')
  return names


def load(data_config):
  """The train / validation / test SegmentationSources and the report (DataError on anything that cannot work)."""
  names = class_names(data_config.segmentation)
  fmt = masks_lib.MaskFormat.of(data_config.segmentation, len(names))
  files, origin = _roles(data_config, available_splits(data_config))
  channels = int(data_config.image.channels) or _channels_of(files['train'][0][0])
  read = {role: (*_read_split(f, data_config, fmt, channels), [os.path.basename(i) for i, _ in f])
          for role, f in files.items()}
  return splits_of(read, names, data_config, {'dataset': f'segmentation folders at {data_config.path}',
                                              'splits': origin})


def splits_of(read: dict, names: tuple[str, ...], data_config, report: dict):
  """Splits of SegmentationSources from {role: (images, labels, example names)}, every split padded to one size."""
  from ftlab.data.sources import Splits, image_stats  # sources dispatches here: imported when called
  step = max(1, int(data_config.segmentation.pad_to))
  height = -(-max(l.shape[0] for _, ls, _ in read.values() for l in ls) // step) * step
  width = -(-max(l.shape[1] for _, ls, _ in read.values() for l in ls) // step) * step
  mean, std = image_stats(data_config.image)
  built = {role: SegmentationSource(_padded(ims, height, width, 0), _padded(ls, height, width, masks_lib.IGNORE),
                                    list(ids), mean=mean, std=std)
           for role, (ims, ls, ids) in read.items()}
  report = {**report, 'task': 'segment', 'sizes': {role: len(built[role]) for role in splits_lib.ROLES},
            'padded_shape': [height, width, int(read['train'][0][0].shape[-1])]}
  return Splits(built['train'], built['validation'], built['test'], names, 'segment', report)


def _channels_of(path: str) -> int:
  from PIL import Image
  with Image.open(path) as image:
    return 1 if image.mode in ('L', 'I', 'I;16', '1') else 3

