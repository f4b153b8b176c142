"""Standard TFDS datasets through `tfds.data_source` (array_record, random access, no TensorFlow).

A dataset is read from data.data_dir where it was prepared before (`tfds build NAME --data_dir DIR` on a machine
with network, or `data.download = True`); nothing is downloaded unless the config asks. Which features are the
input and the label is known for the datasets below and inferred for others: an `image` feature makes an image
classification task, `tokens` with `ner` (or `tags`) token classification, `sentence` or `text` with `label`
sequence classification; data.text.text_column / label_column override the feature names.
"""
from __future__ import annotations

import importlib

import tensorflow_datasets as tfds

from ftlab.data.errors import DataError

# Datasets whose modules TFDS cannot find by name without TensorFlow (their package's __init__ imports TF).
_MODULES = {'glue': 'tensorflow_datasets.text.glue', 'conll2003': 'tensorflow_datasets.text.conll2003.conll2003',
            'imdb_reviews': 'tensorflow_datasets.text.imdb'}
KNOWN = ('mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'glue/sst2', 'imdb_reviews', 'conll2003')


def builder(name: str, data_dir: str | None):
  """The TFDS builder of `name` (e.g. 'mnist', 'glue/sst2'); DataError naming data.name when unknown."""
  base = name.split('/')[0].split(':')[0]
  if base in _MODULES:
    importlib.import_module(_MODULES[base])
  try:
    return tfds.builder(name, data_dir=data_dir or None, file_format='array_record')
  except Exception as err:  # TFDS raises several types (DatasetNotFoundError, registry and config errors)
    raise DataError(f'data.name={name!r}: TFDS has no such dataset ({type(err).__name__}: '
                    f'{str(err).splitlines()[0]}); ftlab is tested with {", ".join(KNOWN)}') from err


def open_split(name: str, split: str, *, data_dir: str | None, download: bool):
  """A random-access source over `split` (TFDS split syntax, e.g. 'train[:5000]', 'train[:10%]')."""
  b = builder(name, data_dir)
  if download and not b.is_prepared():
    b.download_and_prepare(file_format='array_record')
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as err:  # TFDS raises several types, by version and cause; is_prepared tells them apart
    if not b.is_prepared():
      raise DataError(f'data.name={name!r} is not prepared under data.data_dir={data_dir or b.data_dir!r}: prepare '
                      f'it where there is network (`tfds build {name} --data_dir DIR`) and point data.data_dir at '
                      'DIR, or set data.download=True') from err
    raise DataError(f'data.splits: {name!r} has no split {split!r} ({str(err).splitlines()[0]}); it has '
                    f'{", ".join(b.info.splits)}') from err


def split_names(name: str, data_dir: str | None) -> tuple[str, ...]:
  """The splits the dataset defines (train/validation/test...)."""
  return tuple(builder(name, data_dir).info.splits) or ('train', 'validation', 'test')


def features_of(name: str, data_dir: str | None):
  return builder(name, data_dir).info.features


def class_names(feature) -> tuple[str, ...]:
  """The names of a ClassLabel (or of a Sequence of ClassLabel)."""
  inner = getattr(feature, 'feature', feature)
  names = getattr(inner, 'names', None)
  if not names:
    raise DataError(f'feature {feature} has no class names; set data.text.label_names')
  return tuple(names)


def task_keys(features, text_config) -> tuple[str, dict[str, str]]:
  """(task, {role: feature name}): task 'image', 'text' or 'tags'."""
  keys = set(features.keys())
  label = text_config.label_column or 'label'
  if 'image' in keys and label in keys:
    return 'image', {'image': 'image', 'label': label}
  if 'tokens' in keys and ({'ner', 'tags'} & keys):
    return 'tags', {'tokens': 'tokens', 'tags': 'ner' if 'ner' in keys else 'tags'}
  text = text_config.text_column or next((k for k in ('sentence', 'text') if k in keys), '')
  if text in keys and label in keys:
    roles = {'text': text, 'label': label}
    if text_config.text_pair_column:
      if text_config.text_pair_column not in keys:
        raise DataError(f'data.text.text_pair_column={text_config.text_pair_column!r} is not a feature; '
                        f'features: {sorted(keys)}')
      roles['text_pair'] = text_config.text_pair_column
    return 'text', roles
  raise DataError(f'cannot tell the input and label among features {sorted(keys)}; set data.text.text_column '
                  'and data.text.label_column to their names')
