"""The splits of a run, from any source, as batch sources the pipeline gathers from.

`load(config.data)` opens the dataset (a standard TFDS dataset through `tfds.data_source`, or a local one that
ftlab.data.builders prepares into array_record), assigns the train / validation / test roles (carving missing
ones, see ftlab.data.splits), and turns each split into a random-access batch source with `get_batch(indices)`:
- images: decoded, resized or padded to data.image.size and kept as uint8 (or the stored float) in memory, or
  read per batch from array_record when data.in_memory is off; normalised per batch, augmented in training;
- text: tokenized once per split (ftlab.data.text.TokenizedText), batches padded to max_length or a bucket;
- token tags: the same with labels on each word's first sub-token (TokenizedTags).
"""
from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

from ftlab.config.schema import reads_masks
from ftlab.data import builders, duplicates, images as images_lib, splits as splits_lib, standard, text
from ftlab.data.errors import DataError


def _finish(images, labels, rng, augment, mean, std) -> dict[str, np.ndarray]:
  """Augments (with an rng) and normalises a gathered batch; stored floats with stats 'none' pass unchanged."""
  if rng is not None and augment:
    images = images_lib.augment(images, rng, **augment)
  if images.dtype == np.uint8 or any(m != 0 for m in mean) or any(s != 1 for s in std):
    images = images_lib.normalize(images, mean, std)
  return {'image': images.astype(np.float32, copy=False), 'label': labels}


class ArraySource:
  """Images in memory: source[i] -> {'image': float32[...], 'label': int32}; `get_batch` gathers, augments (with an
  rng) and normalises a whole batch at once."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, *, mean=(0.0,), std=(1.0,)):
    if len(images) != len(labels):
      raise ValueError(f'{len(images)} images but {len(labels)} labels')
    self.images = np.ascontiguousarray(images)
    self.labels = np.asarray(labels, np.int32)
    self.mean, self.std = tuple(mean), tuple(std)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    batch = self.get_batch(np.array([index]))
    return {k: v[0] for k, v in batch.items()}

  def get_batch(self, indices: np.ndarray, *, rng: np.random.Generator | None = None,
                augment: dict | None = None) -> dict[str, np.ndarray]:
    """The examples at `indices`, stacked (one numpy gather), augmented when `rng` is given, normalised."""
    return _finish(self.images[indices], self.labels[indices], rng, augment, self.mean, self.std)

  def __repr__(self) -> str:
    return f'ArraySource({len(self)} examples, image shape {self.images.shape[1:]})'


class RecordImages(ArraySource):
  """Images read per batch from a TFDS data source (data.in_memory off), decoded and resized per batch."""

  def __init__(self, records, indices: np.ndarray, labels: np.ndarray, *, shape_fn, mean, std):
    super().__init__(np.zeros((len(labels), 0), np.uint8), labels, mean=mean, std=std)
    self.records, self.indices, self.shape_fn = records, np.asarray(indices), shape_fn

  def get_batch(self, indices, *, rng=None, augment=None):
    indices = np.asarray(indices)
    rows = read_records(self.records, self.indices[indices])
    images = np.stack([self.shape_fn(r['image'], int(i)) for i, r in zip(indices, rows)])
    return _finish(images, self.labels[indices], rng, augment, self.mean, self.std)


@dataclasses.dataclass(frozen=True)
class Splits:
  """The three splits of a run, its label names (index = label id), its task, and a report of how they were
  made (sizes, where each split came from, truncated examples)."""
  train: object
  validation: object
  test: object
  class_names: tuple[str, ...]
  task: str = 'image'  # 'image' | 'text' | 'tags'
  report: dict = dataclasses.field(default_factory=dict)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


@dataclasses.dataclass
class _Raw:
  """An opened dataset: how to read a split, which splits exist, the task and its feature names."""
  name: str
  open: object  # split string -> random-access source of feature dicts
  available: tuple[str, ...]
  task: str
  keys: dict
  class_names: tuple[str, ...]
  identity: str = ''  # where its records live; a changed local file is prepared into a new folder, so a new identity


def _open(data_config) -> _Raw:
  dc = data_config
  if dc.source == 'tfds':
    if not dc.name:
      raise DataError("data.name is empty: data.source='tfds' needs a TFDS dataset name, e.g. 'mnist' or 'glue/sst2'")
    data_dir = dc.data_dir or None
    features = standard.features_of(dc.name, data_dir)
    task, keys = standard.task_keys(features, dc.text)
    label_feature = features[keys['tags' if task == 'tags' else 'label']]
    names = tuple(dc.text.label_names) or standard.class_names(label_feature)
    if dc.group_column:
      if dc.group_column not in features:
        raise DataError(f'data.group_column={dc.group_column!r}: {dc.name} has no such feature; its features are '
                        f'{", ".join(sorted(features))}')
      keys['group'] = dc.group_column
    return _Raw(dc.name, lambda split: standard.open_split(dc.name, split, data_dir=data_dir, download=dc.download),
                standard.split_names(dc.name, data_dir), task, keys, names,
                identity=f'tfds:{dc.name}:{os.path.abspath(data_dir) if data_dir else os.environ.get("TFDS_DATA_DIR", "")}')
  builder = builders.prepare(dc)
  task = {'text': 'text', 'conll': 'tags'}.get(dc.source, 'image')
  fields = {'image': ('image', 'label'), 'text': ('text', 'label'), 'tags': ('tokens', 'tags')}[task]
  keys = {f: f for f in fields}
  if task == 'text' and dc.text.text_pair_column:
    keys['text_pair'] = 'text_pair'
  if dc.group_column:
    keys['group'] = 'group'
  return _Raw(f'{dc.source} dataset at {dc.path or "scikit-learn"}', lambda split: builder.as_data_source(split=split),
              tuple(builder.info.splits), task, keys, tuple(builder.info.metadata['class_names']),
              identity=str(builder.data_dir))


def read_records(records, indices) -> list[dict]:
  """Records at `indices` (a batched read when the source has one)."""
  indices = [int(i) for i in indices]
  if hasattr(records, '__getitems__'):
    try:
      return list(records.__getitems__(indices))
    except TypeError:  # tfds.testing.mock_data's source has a __getitems__ that cannot be called
      pass
  return [records[i] for i in indices]


_read_columns: collections.OrderedDict = collections.OrderedDict()  # (identity, split, keys) -> columns
_READ_COLUMNS_KEPT = 8


def _columns_of(raw: _Raw, split: str, records, keys: dict) -> dict[str, list]:
  """_columns, remembered for the last few (dataset, split, keys) read in this process: the records are read and
  decoded once when several data configs select from one split (a source-task run and its fine-tuning run take
  other classes of the same dataset; a sweep over data keys). A sweep shares whole splits between trials with the
  same data config by itself (sweeps.runner.Planner)."""
  if not raw.identity:
    return _columns(records, keys)
  key = (raw.identity, split, tuple(sorted(keys.items())))
  if key not in _read_columns:
    _read_columns[key] = _columns(records, keys)
    while len(_read_columns) > _READ_COLUMNS_KEPT:
      _read_columns.popitem(last=False)
  _read_columns.move_to_end(key)
  return {role: list(values) for role, values in _read_columns[key].items()}  # callers may change their lists


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _columns(records, keys: dict, *, chunk: int = 2048) -> dict[str, list]:
  """Every record of a split, by role (strings decoded; images as stored: arrays or encoded bytes)."""
  out = {role: [] for role in keys}
  for start in range(0, len(records), chunk):
    for row in read_records(records, range(start, min(len(records), start + chunk))):
      for role, feature in keys.items():
        value = row[feature]
        if role in ('text', 'text_pair'):
          value = _text(value)
        elif role == 'tokens':
          value = [_text(v) for v in value]
        elif role == 'tags':
          value = [int(v) for v in value]
        elif role == 'label':
          value = int(value)
        elif role == 'group':
          value = _text(value) if isinstance(value, bytes) else str(value)
        out[role].append(value)
  return out


def _check_labels(labels, names, where: str):
  labels = np.asarray(labels)
  bad = (labels < 0) | (labels >= len(names))
  if bad.any():
    i = int(np.argmax(bad))
    raise DataError(f'{where}: example {i} has label {int(labels[i])}, outside the {len(names)} classes '
                    f'{list(names)[:10]}; a split without labels (e.g. GLUE test, label -1) cannot be used: point '
                    'data.splits at a labelled split or carve it with \'\'')


def _select_classes(columns: dict, classes: list, names: tuple[str, ...]) -> tuple[dict, tuple[str, ...]]:
  """Keeps the examples of `classes` (label ids, in that order) and renumbers them 0..k-1."""
  labels = np.asarray(columns['label'])
  present = set(np.unique(labels).tolist())
  missing = [c for c in classes if c not in present]
  if missing:
    raise DataError(f'data.classes: labels {missing} are not in the dataset (it has {sorted(present)}); list only '
                    'labels it has, or [] to keep them all')
  keep = np.flatnonzero(np.isin(labels, classes))
  remap = {c: i for i, c in enumerate(classes)}
  out = {k: _take(v, keep) for k, v in columns.items()}
  out['label'] = [remap[c] for c in np.asarray(columns['label'])[keep]]
  return out, tuple(names[c] if c < len(names) else str(c) for c in classes)


def _take(values, indices):
  if isinstance(values, np.ndarray):
    return values[indices]
  return [values[int(i)] for i in indices]


def _image_shaper(image_config, where: str):
  """image (array or encoded bytes), index -> the array the model sees (decoded, resized/padded/cropped)."""
  channels, size = image_config.channels, image_config.size

  def shape(image, index):
    if isinstance(image, (bytes, np.bytes_)):
      image = images_lib.decode(bytes(image), channels=channels or 3, where=f'{where}, example {index}')
    image = images_lib.with_channels(np.asarray(image), channels)
    if size and image.shape[:2] != (size, size):
      image = images_lib.resize(image, size, method=image_config.resize)
    return image

  return shape


def image_stats(image_config) -> tuple[tuple, tuple]:
  mean, std = images_lib.STATS[image_config.stats]
  return tuple(image_config.mean) or mean, tuple(image_config.std) or std


def _image_source(columns, records, indices, data_config, where: str):
  shape = _image_shaper(data_config.image, where)
  mean, std = image_stats(data_config.image)
  labels = np.asarray(columns['label'], np.int32)
  if 'image' not in columns:
    return RecordImages(records, indices, labels, shape_fn=shape, mean=mean, std=std)
  images = [shape(im, i) for i, im in enumerate(columns['image'])]
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise DataError(f'{where}: images have {len(shapes)} different shapes (e.g. {sorted(shapes)[:3]}); set '
                    'data.image.size to resize them to one')
  return ArraySource(np.stack(images) if images else np.zeros((0, 1, 1, 1), np.float32), labels, mean=mean,
                     std=std)


def _tokenizer(data_config):
  if not data_config.tokenizer.path:
    raise DataError('data.tokenizer.path is empty: text datasets need a tokenizer; set it to a tokenizer.json, '
                    "a vocab.txt, or a model folder holding one (e.g. the pretrained model's folder)")
  return text.load_tokenizer(data_config.tokenizer.path, lowercase=data_config.tokenizer.lowercase)


def load(data_config) -> Splits:
  """The train / validation / test batch sources for config.data (DataError on anything that cannot work)."""
  dc = data_config
  if dc.source == 'segmentation':
    from ftlab.data import segmentation
    return segmentation.load(dc)
  if reads_masks(dc):
    from ftlab.data import tfds_segmentation
    return tfds_segmentation.load(dc)
  if dc.source == 'detection':
    from ftlab.data import detection
    return detection.load(dc)
  if dc.source == 'interactions':
    from ftlab.data import interactions
    return interactions.load(dc)
  if dc.source == 'sft':
    from ftlab.data import sft_splits
    built, names, report = sft_splits.from_jsonl(dc)
    report['sizes'] = {role: len(built[role]) for role in splits_lib.ROLES}
    return Splits(built['train'], built['validation'], built['test'], names, 'lm', report)
  raw = _open(dc)
  roles = splits_lib.resolve(dict(dc.splits), raw.available, dataset=raw.name, folds=dc.folds)
  records = {}
  for role, split in roles.items():
    if not split:
      continue
    try:
      records[role] = raw.open(split)
      len(records[role])  # a slice that ends before it starts opens, then has a negative length
    except DataError:
      raise
    except ValueError as err:  # TFDS refuses the split string: bad slicing syntax, an empty slice
      reason = 'the slice ends before it starts' if '__len__' in str(err) else ' '.join(str(err).split())
      raise DataError(f'data.splits.{role}={split!r}: {raw.name} cannot read this split ({reason}); use TFDS split '
                      "syntax, e.g. 'train', 'train[:80%]' or 'train[:5000]'") from err
  if not dc.allow_split_overlap:  # before any example is read
    stored = {i.split('[')[0] for split in roles.values() if split for i in split.split('+')}
    problem = splits_lib.overlap_problem(roles, {s: len(raw.open(s)) for s in stored}, dataset=raw.name)
    if problem:
      raise DataError(problem)
  lazy = raw.task == 'image' and not dc.in_memory and not dc.classes  # images stay on disk: read labels only
  keys = {k: raw.keys[k] for k in ('label', 'group') if k in raw.keys} if lazy else raw.keys
  columns = {r: _columns_of(raw, roles[r], rec, keys) for r, rec in records.items()}
  names = raw.class_names
  for role, cols in columns.items():
    if not len(next(iter(cols.values()))):
      raise DataError(f'{raw.name}: split {roles[role]!r} ({role}) is empty; point data.splits.{role} at a split '
                      'with examples')
    if raw.task != 'tags':
      _check_labels(cols['label'], names, f'{raw.name}, split {roles[role]!r}')
    else:
      _check_labels([t for tags in cols['tags'] for t in tags] or [0], names, f'{raw.name}, split {roles[role]!r}')
  selected_names = names
  if dc.classes and raw.task != 'tags':
    for role in list(columns):
      columns[role], selected_names = _select_classes(columns[role], list(dc.classes), names)
  train_cols = columns['train']
  n = len(next(iter(train_cols.values())))
  labels = np.asarray(train_cols['label']) if raw.task != 'tags' else None
  groups = np.asarray(train_cols['group']) if 'group' in train_cols else None
  carved = splits_lib.carve_roles(n, labels, roles, dc, groups)
  origin, record_index = {}, {}
  for role in splits_lib.ROLES:
    if role in carved:
      columns[role] = {k: _take(v, carved[role]) for k, v in train_cols.items()}
      carved_any = len(carved) > 1
      origin[role] = f'{roles["train"]} (carved, {len(carved[role])} examples)' if carved_any else roles['train']
      record_index[role] = ('train', carved[role])
    else:
      origin[role] = roles[role]
      record_index[role] = (role, np.arange(len(next(iter(columns[role].values())))))
  report = {'dataset': raw.name, 'task': raw.task, 'splits': origin}
  repeated = duplicates.found(columns, raw.task)
  if repeated:
    report['duplicates'] = repeated
  built = {}
  if raw.task == 'image':
    for role in splits_lib.ROLES:
      src_role, idx = record_index[role]
      built[role] = _image_source(columns[role], records.get(src_role), idx, dc, f'{raw.name}, {role} split')
  elif raw.task == 'text' and dc.sft.prompt:  # a labelled text dataset as SFT for a decoder
    from ftlab.data import sft_splits
    built, lm_report = sft_splits.from_text(columns, selected_names, dc, origin)
    report.update(lm_report, dataset=raw.name)
  else:
    tokenizer = _tokenizer(dc)
    for role in splits_lib.ROLES:
      cols = columns[role]
      if raw.task == 'text':
        built[role] = text.TokenizedText(cols['text'], np.asarray(cols['label'], np.int32), tokenizer,
                                         max_length=dc.tokenizer.max_length, text_pairs=cols.get('text_pair'))
      else:
        built[role] = text.TokenizedTags(cols['tokens'], cols['tags'], tokenizer, max_length=dc.tokenizer.max_length)
    report['truncated'] = {role: int(built[role].num_truncated) for role in splits_lib.ROLES}
    report['vocab_size'] = int(tokenizer.get_vocab_size(with_added_tokens=True))
    report['pad_id'] = int(text.pad_token_id(tokenizer))
  report['sizes'] = {role: len(built[role]) for role in splits_lib.ROLES}
  return Splits(built['train'], built['validation'], built['test'], selected_names, report['task'], report)
