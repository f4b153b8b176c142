"""Random-access data sources (len + getitem, the grain source protocol) and their train/validation/test splits.

The data issue adds TFDS and local-file sources behind the same `load(data_config)`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn import model_selection


class ArraySource:
  """In-memory examples as a grain random-access source: source[i] -> {'image': float32[...], 'label': int32}."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f'{len(images)} images but {len(labels)} labels')
    self.images = np.ascontiguousarray(images, np.float32)
    self.labels = np.asarray(labels, np.int32)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {'image': self.images[index], 'label': self.labels[index]}

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at `indices`, stacked (one numpy gather)."""
    return {'image': self.images[indices], 'label': self.labels[indices]}

  def __repr__(self) -> str:
    return f'ArraySource({len(self)} examples, image shape {self.images.shape[1:]})'


@dataclasses.dataclass(frozen=True)
class Splits:
  """The three splits of a run and its label names (index = label id)."""
  train: ArraySource
  validation: ArraySource
  test: ArraySource
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _select_classes(images, labels, classes):
  """Keeps `classes` (in that order) and renumbers them 0..k-1; [] keeps everything."""
  if not len(classes):
    return images, labels, tuple(str(c) for c in np.unique(labels))
  present = set(np.unique(labels).tolist())
  missing = [c for c in classes if c not in present]
  if missing:
    raise ValueError(f'data.classes: labels {missing} are not in the dataset (it has {sorted(present)})')
  keep = np.isin(labels, classes)
  remap = {c: i for i, c in enumerate(classes)}
  return images[keep], np.array([remap[c] for c in labels[keep]]), tuple(str(c) for c in classes)


def carve(images, labels, *, fraction: float, seed: int):
  """A deterministic stratified split: (rest, held_out) with `fraction` of every class held out."""
  idx = np.arange(len(labels))
  rest, held = model_selection.train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
  rest, held = np.sort(rest), np.sort(held)
  return (images[rest], labels[rest]), (images[held], labels[held])


def digits(data_config) -> Splits:
  """scikit-learn's 8x8 handwritten digits (1,797 images; ships with scikit-learn, no download).

  Pixels scaled to [0, 1], shaped [8, 8, 1]. The test split is carved first and the validation split from the
  rest, both stratified and seeded by data.split_seed.
  """
  raw = sk_datasets.load_digits()
  images = (raw.images / 16.0).astype(np.float32)[..., None]
  images, labels, names = _select_classes(images, raw.target, list(data_config.classes))
  seed = data_config.split_seed
  (images, labels), test = carve(images, labels, fraction=data_config.test_fraction, seed=seed)
  val_of_rest = data_config.validation_fraction / (1 - data_config.test_fraction)
  train, validation = carve(images, labels, fraction=val_of_rest, seed=seed)
  return Splits(ArraySource(*train), ArraySource(*validation), ArraySource(*test), names)


def load(data_config) -> Splits:
  """The splits for config.data."""
  loaders = {'digits': digits}
  return loaders[data_config.name](data_config)
