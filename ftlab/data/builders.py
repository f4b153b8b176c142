"""Local datasets as TFDS builders: files a researcher owns, prepared once into array_record under a data_dir.

Each builder parses every file of every split before it writes a record, so a bad file fails with its DataError
before anything is on disk; TFDS writes into an `incomplete.*` folder and renames it only when every split is
written, so a failed preparation never leaves a dataset that looks complete. The prepared dataset's name is a
digest of the format options and of the files (path, size, modification time): editing a file prepares anew,
an unchanged one is reused. Records keep the file order (no TFDS shuffling), so `train[:5000]` is the first 5000
examples of the file. Labels are stored as integers; their names are in the dataset's metadata.

No TensorFlow: features are plain tensors and text (TFDS encodes those without TF); images from folders are
kept as their encoded bytes and decoded by the pipeline (ftlab.data.images).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from ftlab import locks, quiet
from ftlab.data import formats
from ftlab.data.errors import DataError

LOCAL_SOURCES = ('digits', 'text', 'conll', 'idx', 'image_folder')


@dataclasses.dataclass(eq=False)
class LocalConfig(tfds.core.BuilderConfig):
  """The options of one local dataset; `name` is their digest."""
  options: dict = dataclasses.field(default_factory=dict)


class _LocalInfo(tfds.core.DatasetInfo):
  """A local dataset's info. TFDS looks a builder's info up in its GCS bucket whenever the builder is made before
  its dataset is prepared; the lookup (disabled, offline) still makes an empty /tmp/tmp*tfds folder each time and
  never removes it: thousands over a sweep or a test suite. A researcher's own files are in no bucket."""

  def initialize_from_bucket(self) -> None:
    return


class _Local(tfds.core.GeneratorBasedBuilder):
  """Shared by the local builders: options from the config, label names in the metadata, file order kept."""
  VERSION = tfds.core.Version('1.0.0')

  @property
  def options(self) -> dict:
    return self.builder_config.options

  def _info(self) -> tfds.core.DatasetInfo:
    return _LocalInfo(builder=self, features=tfds.features.FeaturesDict(self._features()),
                      metadata=tfds.core.MetadataDict(), disable_shuffling=True)

  def _features(self) -> dict:
    raise NotImplementedError

  def _parse(self) -> tuple[dict[str, list[dict]], list[str]]:
    """({split: [example]}, label names), with every file parsed and checked."""
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager
    splits, names = self._parse()
    self.info.metadata['class_names'] = list(names)
    return {split: self._generate_examples(examples) for split, examples in splits.items()}

  def _generate_examples(self, examples):
    for i, example in enumerate(examples):
      yield i, example

  def _log_download_bytes(self) -> None:  # TFDS's 'Downloading and preparing dataset ...': nothing is downloaded
    files = self.options.get('files') or {}
    read = ', '.join(str(f) if isinstance(f, str) else ' + '.join(map(str, f)) for f in files.values()) or \
        f'the {self.options["source"]} data'
    print(f'ftlab: reading {read} once into {self.data_dir} (later runs read it from there)', flush=True)

  def _log_download_done(self) -> None:
    pass


def _int64(shape=()):
  return tfds.features.Tensor(shape=shape, dtype=np.int64)


class FtlabText(_Local):
  """Sequence classification from CSV / TSV / JSONL: text (and an optional text pair) with a label."""

  def _features(self):
    features = {'text': tfds.features.Text(), 'label': _int64()}
    if self.options['text_pair_column']:
      features['text_pair'] = tfds.features.Text()
    if self.options.get('group_column'):
      features['group'] = tfds.features.Text()
    return features

  def _parse(self):
    o = self.options
    read = {split: formats.read_text_classification(
        path, text_column=o['text_column'], label_column=o['label_column'],
        text_pair_column=o['text_pair_column'], group_column=o.get('group_column', ''), file_format=o['format'])
        for split, path in o['files'].items()}
    names = tuple(o['label_names']) or formats.infer_label_names(read['train'], path=o['files']['train'])
    classes = sorted({row['label'] for row in read['train']})
    if len(classes) < 2:
      raise DataError(f'{o["files"]["train"]}: every training example has the label {classes[0]!r}, one class: a '
                      'classifier has nothing to learn; check data.text.label_column, or that the file holds every '
                      'class (a file sorted by label, cut by a split slice?)')
    splits = {}
    for split, rows in read.items():
      ids = formats.label_ids(rows, names, path=o['files'][split])
      keys = [k for k in ('text', 'text_pair', 'group') if k == 'text' or k in rows[0]]
      splits[split] = [{**{k: row[k] for k in keys}, 'label': i} for row, i in zip(rows, ids)]
    return splits, names


class FtlabConll(_Local):
  """Token classification from CoNLL files: words and their tags, converted to IOB2."""

  def _features(self):
    return {'tokens': tfds.features.Sequence(tfds.features.Text()), 'tags': tfds.features.Sequence(_int64())}

  def _parse(self):
    o = self.options
    read = {split: formats.read_conll(path, word_column=o['word_column'], tag_column=o['tag_column'],
                                      scheme=o['scheme']) for split, path in o['files'].items()}
    names = formats.conll_tag_names([s for sentences in read.values() for s in sentences])
    index = {name: i for i, name in enumerate(names)}
    return {split: [{'tokens': s['tokens'], 'tags': [index[t] for t in s['tags']]} for s in sentences]
            for split, sentences in read.items()}, names


class FtlabIdx(_Local):
  """Images and labels from IDX files (the MNIST format, gzip or raw)."""

  def _features(self):
    return {'image': tfds.features.Tensor(shape=tuple(self.options['shape']), dtype=np.uint8), 'label': _int64()}

  def _parse(self):
    splits, top = {}, 0
    for split, (images_path, labels_path) in self.options['files'].items():
      images, labels = formats.read_idx(images_path, labels_path)
      if list(images.shape[1:]) != list(self.options['shape']):
        raise DataError(f'{images_path}: images are {images.shape[1:]}, but the train split\'s are '
                        f'{tuple(self.options["shape"])}; every split of an IDX dataset must have one image shape')
      splits[split] = [{'image': im, 'label': int(lb)} for im, lb in zip(images, labels)]
      top = max(top, int(labels.max()) + 1 if len(labels) else 0)
    return splits, tuple(str(i) for i in range(top))


class FtlabImageFolder(_Local):
  """Images from a folder tree, one sub-folder per class; each image kept as its file's bytes."""

  def _features(self):
    return {'image': tfds.features.Tensor(shape=(), dtype=np.object_), 'file': tfds.features.Text(),
            'label': _int64()}

  def _parse(self):
    splits, names = {}, None
    for split, root in self.options['files'].items():
      files, classes = formats.read_image_folder(root)
      if names is not None and classes != names:
        raise DataError(f'{root}: class folders {list(classes)} differ from the train split\'s {list(names)}; '
                        'every split needs the same class sub-folders')
      names = classes
      examples = []
      for path, label in files:
        encoded = pathlib.Path(path).read_bytes()
        formats.decode_image(encoded, where=path, channels=3)  # every image must decode before anything is written
        examples.append({'image': encoded, 'file': os.path.relpath(path, root), 'label': label})
      splits[split] = examples
    return splits, names


class FtlabDigits(_Local):
  """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn): one 'train' split in the
  order scikit-learn gives, pixels scaled to [0, 1]."""

  def _features(self):
    return {'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32), 'label': _int64()}

  def _parse(self):
    from sklearn import datasets as sk_datasets  # here: scikit-learn takes ~1 s to import, and only digits need it
    raw = sk_datasets.load_digits()
    images = (raw.images / 16.0).astype(np.float32)[..., None]
    return {'train': [{'image': im, 'label': int(lb)} for im, lb in zip(images, raw.target)]}, \
        tuple(str(i) for i in range(10))


BUILDERS = {'digits': FtlabDigits, 'text': FtlabText, 'conll': FtlabConll, 'idx': FtlabIdx,
            'image_folder': FtlabImageFolder}


def _fingerprint(path) -> list:
  stat = os.stat(path)
  return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _idx_files(path, files: dict) -> dict[str, tuple[str, str]]:
  """{split: (images file, labels file)} for an IDX folder: explicit `data.files` entries 'IMAGES,LABELS', or
  found by name (train-*, t10k-* / test-*; *images* / *labels*)."""
  root = pathlib.Path(path)
  if not root.is_dir():
    raise DataError(f'data.path: {path!r} is not a folder; point it at the folder holding the IDX files')
  found = {}
  names = sorted(p.name for p in root.iterdir() if p.is_file())
  prefixes = {'train': ('train',), 'validation': ('valid', 'val', 'dev'), 'test': ('t10k', 'test')}
  for split, prefix in prefixes.items():
    if files.get(split):
      parts = [s.strip() for s in files[split].split(',')]
      if len(parts) != 2:
        raise DataError(f'data.files.{split}={files[split]!r}: an IDX split needs "IMAGES_FILE,LABELS_FILE"')
      found[split] = tuple(str(root / p) for p in parts)
      continue
    images = [n for n in names if n.lower().startswith(prefix) and 'images' in n.lower()]
    labels = [n for n in names if n.lower().startswith(prefix) and 'labels' in n.lower()]
    if len(images) == 1 and len(labels) == 1:
      found[split] = (str(root / images[0]), str(root / labels[0]))
    elif images or labels:
      raise DataError(f'{path}: cannot pair the {split} files (images {images}, labels {labels}); set '
                      f'data.files.{split}="IMAGES_FILE,LABELS_FILE"')
  if 'train' not in found:
    raise DataError(f'{path}: no train-*images* / train-*labels* IDX files among {names}; set '
                    'data.files.train="IMAGES_FILE,LABELS_FILE"')
  for images, labels in found.values():
    for f in (images, labels):
      if not os.path.isfile(f):
        raise DataError(f'{f}: no such file; fix data.files or data.path')
  return found


def _image_folders(path, files: dict) -> dict[str, str]:
  """{split: class-folder root}: `data.path` holds train/ (validation/, test/) or is itself the class tree."""
  root = pathlib.Path(path)
  if not root.is_dir():
    raise DataError(f'data.path: {path!r} is not a folder; point it at a folder of class sub-folders '
                    '(or of train/ validation/ test/ folders of class sub-folders)')
  aliases = {'train': ('train',), 'validation': ('validation', 'valid', 'val', 'dev'), 'test': ('test',)}
  found = {}
  for split, names in aliases.items():
    if files.get(split):
      found[split] = str(root / files[split])
      continue
    for name in names:
      if (root / name).is_dir():
        found[split] = str(root / name)
        break
  return found or {'train': str(root)}


def local_options(data_config) -> dict:
  """The options that define a local dataset (with its resolved files): what its digest covers."""
  source, files = data_config.source, dict(data_config.files)
  if source == 'digits':
    return {'source': 'digits'}
  if not data_config.path:
    raise DataError(f"data.path is empty: data.source='{source}' reads local files; set data.path to their folder")
  if source == 'text':
    t = data_config.text
    resolved = {k: str(v) for k, v in formats.find_split_files(data_config.path, files).items()}
    return {'source': source, 'files': resolved, 'text_column': t.text_column or 'text',
            'text_pair_column': t.text_pair_column, 'label_column': t.label_column or 'label',
            'label_names': list(t.label_names), 'format': t.format,
            **({'group_column': data_config.get('group_column')} if data_config.get('group_column') else {})}
  if source == 'conll':
    c = data_config.conll
    resolved = {k: str(v) for k, v in formats.find_split_files(data_config.path, files).items()}
    return {'source': source, 'files': resolved, 'word_column': c.word_column, 'tag_column': c.tag_column,
            'scheme': c.scheme}
  if source == 'idx':
    resolved = _idx_files(data_config.path, files)
    images, labels = formats.read_idx(*resolved['train'])
    return {'source': source, 'files': resolved, 'shape': list(images.shape[1:])}
  if source == 'image_folder':
    return {'source': source, 'files': _image_folders(data_config.path, files)}
  raise DataError(f'data.source={source!r} is not a local source; use one of {LOCAL_SOURCES}')


def _all_files(options: dict) -> list[str]:
  files = []
  for value in options.get('files', {}).values():
    for root in ([value] if isinstance(value, str) else list(value)):
      if os.path.isdir(root):
        files += sorted(str(p) for p in pathlib.Path(root).rglob('*') if p.is_file())
      else:
        files.append(root)
  return files


def digest(options: dict) -> str:
  """A name for the prepared dataset: changes when an option or any file (path, size, mtime) changes."""
  key = json.dumps({'options': options, 'files': [_fingerprint(f) for f in _all_files(options)]}, sort_keys=True)
  return 'h' + hashlib.sha256(key.encode()).hexdigest()[:16]


def default_data_dir() -> str:
  """TFDS's data_dir: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def prepare(data_config) -> tfds.core.DatasetBuilder:
  """The local dataset of `data_config`, prepared into array_record under data.data_dir (once; reused after)."""
  options = local_options(data_config)
  cls = BUILDERS[options['source']]
  data_dir = data_config.data_dir or default_data_dir()
  name = digest(options)

  def builder():
    return cls(data_dir=data_dir, config=LocalConfig(name=name, options=options), file_format='array_record')

  if builder().is_prepared():
    # a builder made after the check: one made before reads no metadata if another process finishes meanwhile
    return builder()
  # two processes (sweep workers, runs started together) would both prepare and the second rename would fail: one
  # prepares while the others wait, then they read what it wrote
  with locks.waiting(os.path.join(data_dir, cls.name, f'{name}.prepare.lock')):
    fresh = builder()  # after the wait: sees what the process before it prepared
    if not fresh.is_prepared():
      tfds.disable_progress_bar()
      fresh.download_and_prepare()
  return fresh


quiet.install()
