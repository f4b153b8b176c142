"""Semantic segmentation from a standard TFDS dataset (data.source 'tfds' with data.segmentation.mask_feature set):
each record's image and mask features, e.g. oxford_iiit_pet's 'image' and 'segmentation_mask' (trimaps 1..3:
data.segmentation.id_offset=1), cityscapes' 'image_left' and 'segmentation_label', scene_parse150's 'image' and
'annotation'.

Roles and carving as for every TFDS dataset (data.splits in TFDS split syntax, '' or a missing 'auto' carved from
train); masks are read as the folder source reads its files (ftlab.data.masks: class ids, binary, palette, ignored
values), resized with data.segmentation.size, and every split is padded to one size (ftlab.data.segmentation).
"""
from __future__ import annotations

import numpy as np

from ftlab.data import images as images_lib, masks as masks_lib, segmentation, splits as splits_lib, standard
from ftlab.data.errors import DataError
from ftlab.data.sources import read_records


def feature_keys(features, seg_config, name: str) -> tuple[str, str]:
  """(image feature, mask feature) of the dataset; DataError naming its features when either is missing."""
  mask = seg_config.mask_feature
  images = [k for k, f in features.items() if type(f).__name__ == 'Image' and k != mask]
  image = seg_config.image_feature or ('image' if 'image' in images else images[0] if len(images) == 1 else '')
  for key, value in (('mask_feature', mask), ('image_feature', image)):
    if value not in features:
      raise DataError(f'data.segmentation.{key}={value!r}: {name} has no such feature; its features are '
                      f'{", ".join(sorted(features))}')
  return image, mask


def _read_split(records, indices, keys, fmt, data_config, dataset: str, split: str):
  """(images, labels, example names) of the records at `indices`."""
  image_key, mask_key = keys
  channels = int(data_config.image.channels)
  images, labels, names = [], [], []
  for start in range(0, len(indices), 256):
    chunk = indices[start:start + 256]
    for i, row in zip(chunk, read_records(records, chunk)):
      at = f'{dataset}, split {split}, example {int(i)}'
      image = images_lib.with_channels(np.asarray(row[image_key]), channels)
      image, label = segmentation.fit(image, masks_lib.from_array(row[mask_key], fmt, at), data_config, at, at)
      images.append(image)
      labels.append(label)
      names.append(f'{split}[{int(i)}]')
  return images, labels, names


def load(data_config):
  """The train / validation / test SegmentationSources of a TFDS dataset with masks."""
  dc = data_config
  data_dir = dc.data_dir or None
  names = segmentation.class_names(dc.segmentation)
  keys = feature_keys(standard.features_of(dc.name, data_dir), dc.segmentation, dc.name)
  fmt = masks_lib.MaskFormat.of(dc.segmentation, len(names))
  roles = splits_lib.resolve(dict(dc.splits), standard.split_names(dc.name, data_dir), dataset=dc.name,
                            folds=dc.folds)
  records = {role: standard.open_split(dc.name, split, data_dir=data_dir, download=dc.download)
             for role, split in roles.items() if split}
  carved = splits_lib.carve_roles(len(records['train']), None, roles, dc)
  read, origin = {}, {}
  for role in splits_lib.ROLES:
    split = roles[role] or roles['train']
    indices = carved[role] if role in carved else np.arange(len(records[role]))
    if not len(indices):
      raise DataError(f'{dc.name}: split {split!r} ({role}) is empty; point data.splits.{role} at a split with '
                      'examples')
    source = records['train'] if role in carved else records[role]
    read[role] = _read_split(source, indices, keys, fmt, dc, dc.name, split)
    origin[role] = f'{split} (carved, {len(indices)} images)' if role in carved and len(carved) > 1 else split
  return segmentation.splits_of(read, names, dc, {'dataset': f'tfds:{dc.name}', 'splits': origin})
