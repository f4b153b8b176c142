"""Fuzzing: random config values, command lines and file bytes end as a result or as ftlab's own error.

Property-based (hypothesis), deterministic in CI (derandomized, no example database), FUZZ's examples per target:
random values of random types (None, bools, ints huge ones included, floats with nan/inf, strings, bytes, lists,
tuples, dicts) on random config keys and in `--config.KEY=VALUE` strings, and random bytes or near-valid mutations
(truncated, bytes flipped or inserted, wrong headers, wrong column counts, non-UTF-8, huge numbers, empty files) of
every local file ftlab parses. The property is the same everywhere: the call returns, or raises ftlab's error type
for that layer (ConfigError, DataError, SurgeryError, RecordError) with its message; never a TypeError,
UnicodeDecodeError, OverflowError, ... from deep inside.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import struct
import tempfile
import types

import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image

from ftlab import cli, config, metrics
from ftlab.config import ConfigError
from ftlab.data import builders, formats, images, text
from ftlab.data.errors import DataError
from ftlab.optim import rules as optim_rules, schedules
from ftlab.pretrained import hf, vision
from ftlab.pretrained.surgery import SurgeryError
from ftlab.sweeps import records

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

SCHEMA = dict(config.flatten(config.defaults()))
LEAVES = sorted(SCHEMA)
SECTIONS = sorted({key.rsplit('.', 1)[0] for key in LEAVES if '.' in key})

# Ints past 64 bits, and past the 4300 digits that str(int) refuses to print (built by a map: hypothesis reprs the
# elements of sampled_from).
HUGE_INTS = st.sampled_from([(1, 63), (-1, 64), (1, 64), (1, 1330), (-1, 16610)]).map(lambda a: a[0] * 2**a[1])
# Strings a config's choices, durations and regexes take, and near misses of them.
CHOICES = sorted({*config.OPTIMIZERS, *config.MODELS, *config.DTYPES, *config.LR_BATCH_SCALING, *config.IMAGE_STATS,
                  *config.DATA_SOURCES, *schedules.SCHEDULES, *metrics.METRIC_MODES, 'auto', 'min', 'max', 'cls',
                  'mean', 'pooler', 'gap', 'spill', 'drop', 'pad', 'csv', 'tsv', 'jsonl', 'iob1', 'iob2', 'bio',
                  'resize', 'crop', 'imagenet', 'small', 'jit', 'pmap', 's/16', '50', '', ' ', '0', '500', '500 steps',
                  '3 epochs', '1.5 epochs', '10%', '-1 steps', '1.5 steps', '1e999 epochs', 'nan%', '0 epochs',
                  '9' * 5000, '^head/', r'_(\d+)/', '(', '[a-', '*', '.*', 'train', 'train[:10%]', 'host:1234'})
DICT_KEYS = st.text(max_size=8).filter(lambda k: '.' not in k)  # ConfigDict refuses dotted keys when a dict is set

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE_INTS, st.floats(),
                    st.sampled_from(CHOICES), st.text(max_size=12), st.binary(max_size=8),
                    st.complex_numbers(max_magnitude=1e3), st.sampled_from([..., (), set(), frozenset({1})]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                                       st.dictionaries(DICT_KEYS, inner, max_size=3)), max_leaves=8)
DURATIONS = st.one_of(st.sampled_from(CHOICES), st.integers(-3, 10**6), HUGE_INTS, st.floats())
SCHEDULE_KEYS = st.sampled_from(sorted(schedules.schedule_defaults().keys()) + ['x'])
GROUP_SETTINGS = st.dictionaries(
    st.sampled_from(sorted(optim_rules.SETTINGS) + ['lr', '']),
    st.one_of(VALUES, st.dictionaries(SCHEDULE_KEYS, VALUES, max_size=2),
              st.lists(st.one_of(st.tuples(DURATIONS, DURATIONS), VALUES), max_size=3)), max_size=3)
GROUPS = st.lists(st.one_of(st.tuples(st.sampled_from(CHOICES) | st.text(max_size=6), GROUP_SETTINGS), VALUES),
                  max_size=3)


def _typed(key: str):
  """Values of the schema's type for `key` (which pass the type check and reach the range checks)."""
  default = SCHEMA[key]
  if key == 'optimizer.groups':
    return GROUPS
  if isinstance(default, bool):
    return st.booleans()
  if isinstance(default, int):
    return st.one_of(st.integers(-3, 10**6), st.integers(), HUGE_INTS)
  if isinstance(default, float):
    return st.one_of(st.floats(), st.integers(-3, 3), HUGE_INTS)
  if isinstance(default, str):
    return st.one_of(st.sampled_from(CHOICES), st.text(max_size=12), st.integers(-3, 100))
  return st.lists(st.one_of(st.integers(-3, 10), st.floats(), DURATIONS), max_size=4)


def _assign(c, key: str, value) -> None:
  """config.set_key, skipped when an earlier assignment replaced a section on the way with a non-section."""
  *sections, leaf = key.split('.')
  node = c
  for s in sections:
    if not isinstance(node, ml_collections.ConfigDict) or s not in node:
      return
    node = node[s]
  if isinstance(node, ml_collections.ConfigDict):
    with contextlib.suppress(OverflowError):  # ConfigDict itself refuses an int too large for a float key
      config.set_key(c, key, value)


def _check_validate(c) -> list[str]:
  try:
    problems = config.validate(c)
  except ConfigError as err:
    problems = err.problems
  assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
  ConfigError(problems).report()
  return problems


@FUZZ
@example([('data.validation_fraction', float('inf')), ('seed', -2**16610), ('model.features', [2**64])])
@given(st.lists(st.tuples(st.sampled_from(LEAVES + SECTIONS), VALUES), min_size=1, max_size=4))
def test_validate_random_values_on_random_keys(assignments):
  c = config.defaults()
  for key, value in assignments:
    _assign(c, key, value)
  _check_validate(c)


@FUZZ
@given(st.data())
def test_validate_well_typed_random_values(data):
  c = config.defaults()
  for key in data.draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=25, unique=True)):
    _assign(c, key, data.draw(_typed(key), label=key))
  _check_validate(c)


def _source(value) -> str:
  """`value` as Python source text (huge ints, which repr refuses, in hex)."""
  try:
    return repr(value)
  except ValueError:
    return hex(value) if isinstance(value, int) else '0x' + 'f' * 5000


# What a user might type after --config.KEY=: Python literals and near misses of them.
TRICKY_RAW = ('{[]: 1}', '{{}}', "{'a.b': 1}", '{None: 1}', '{1: 2}', '-' * 10000 + '1', '+' * 3000 + '1',
              '[' * 300, '(' * 300 + ')' * 300, '0x' + 'f' * 5000, '1' * 5000, '1e999', '-1e999', '1j', '...',
              '\x00', 'nan', 'None', 'True', 'true', 'TRUE', '[1, "a"]', '(1,)', "b'x'", 'set()', "{'lr_mult': 1}",
              "[('^head/', {'lr_mult': 10.0})]", "[('.*', {'frozen_steps': [(0, '2 epochs')]})]", '')
RAW = st.one_of(st.text(max_size=30), VALUES.map(_source), st.sampled_from(TRICKY_RAW + tuple(CHOICES)))
OVERRIDE_KEYS = st.one_of(st.sampled_from(LEAVES), st.sampled_from(SECTIONS), st.text(max_size=15))


@pytest.fixture(scope='module')
def scratch(tmp_path_factory) -> str:
  """A folder for the files of one target's examples (each example overwrites or makes its own sub-folder)."""
  return str(tmp_path_factory.mktemp('fuzz'))


@pytest.fixture(scope='module')
def config_file(scratch) -> str:
  path = os.path.join(scratch, 'fuzz_config.py')
  with open(path, 'w') as f:
    f.write('from ftlab.config import defaults\n\n\ndef get_config(arg=None):\n  return defaults()\n')
  return path


def _exits_with_2(err: ConfigError) -> None:
  """The CLI's report of `err`: printed to stderr, exit status 2."""
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
    cli.exit_on_config_error(err)
  assert exit_info.value.code == 2 and 'problem' in stderr.getvalue()


@FUZZ
@example(overrides=[('seed', '{[]: 1}'), ('seed', "{'a.b': 1}"), ('seed', '{None: 1}'),
                    ('eval.batch_size', '-' * 10000 + '1'), ('train.label_smoothing', '0x' + 'f' * 300),
                    ('optimizer.eps', '0x' + 'f' * 5000)])
@given(overrides=st.lists(st.tuples(OVERRIDE_KEYS, RAW), max_size=4))
def test_cli_parse_random_overrides(config_file, overrides):
  argv = [f'--config={config_file}', '--workdir=unused'] + [f'--config.{key}={raw}' for key, raw in overrides]
  try:
    parsed, workdir = cli.parse(argv)
  except ConfigError as err:
    _exits_with_2(err)
    return
  assert isinstance(parsed, ml_collections.ConfigDict) and workdir == 'unused'


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(['--config', '--workdir', '--config.seed', '--',
                                                                 '--=', '--config=', '--config.=1', 'x'])),
                max_size=6))
def test_cli_split_args_random_argv(argv):
  options, overrides, problems = cli.split_args(argv)
  assert all(isinstance(p, str) for p in problems) and isinstance(options, dict) and isinstance(overrides, list)


@FUZZ
@given(broken=st.lists(st.tuples(st.sampled_from(SECTIONS + LEAVES), SCALARS), max_size=2),
       overrides=st.lists(st.tuples(st.sampled_from(LEAVES), RAW), min_size=1, max_size=3))
def test_cli_overrides_on_a_config_file_that_broke_its_sections(broken, overrides):
  c = config.defaults()  # as a config file's get_config returned it, with mistakes such as `config.model = 'bert'`
  for key, value in broken:
    _assign(c, key, value)
  problems = cli.apply_overrides(c, overrides)
  assert all(isinstance(p, str) for p in problems)
  _check_validate(c)


def _flip(args) -> bytes:
  data, edits = args
  data = bytearray(data)
  for position, byte in edits:
    if data:
      data[position % len(data)] = byte
  return bytes(data)


def _insert(args) -> bytes:
  data, position, extra = args
  position %= len(data) + 1
  return data[:position] + extra + data[position:]


def mutated(seeds) -> st.SearchStrategy[bytes]:
  """Random bytes, valid files (`seeds`), and seeds truncated, with bytes flipped or inserted, or empty."""
  seed = st.sampled_from(list(seeds))
  return st.one_of(
      st.binary(max_size=300),
      seed,
      st.tuples(seed, st.integers(0, 10**6)).map(lambda a: a[0][:a[1] % (len(a[0]) + 1)]),
      st.tuples(seed, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)
                ).map(_flip),
      st.tuples(seed, st.integers(0, 10**6), st.binary(min_size=1, max_size=12)).map(_insert),
      st.just(b''),
  )


def _write(folder: str, name: str, data: bytes) -> str:
  path = os.path.join(folder, name)
  with open(path, 'wb') as f:
    f.write(data)
  return path


@contextlib.contextmanager
def _fresh_folder(scratch: str):
  folder = tempfile.mkdtemp(dir=scratch)
  try:
    yield folder
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def _parse(builder_cls, options: dict):
  """What a local builder parses before it writes anything (the builder's own _parse, without TFDS around it)."""
  return builder_cls._parse(types.SimpleNamespace(options=options))


CELLS = st.one_of(st.sampled_from(['text', 'label', 'a', 'b', 'pos', 'neg', '0', '1', '-1', '01', '4294967296',
                                   '9' * 30, '9' * 5000, '0' * 5000 + '1', '٣', '²', '"', '"a, b"', 'x\ty', '', ' ',
                                   '\x00', '\r']),
                  st.text(max_size=8))
COLUMNS = st.sampled_from(['text', 'label', 'a', 'b', '', 'x y'])
HEADERS = st.one_of(st.sampled_from([['text', 'label'], ['text', 'b', 'label'], ['label', 'text', 'text']]),
                    st.lists(CELLS, max_size=4))


def _rows_as(fmt: str, header: list[str], body: list[list[str]]) -> bytes:
  if fmt == 'jsonl':
    lines = [json.dumps(dict(zip(header, row))) for row in body]
  else:
    lines = [('\t' if fmt == 'tsv' else ',').join(row) for row in [header] + body]
  return '\n'.join(lines).encode('utf-8', 'surrogatepass')


# (format, a valid file of it, or one with huge or odd labels).
TEXT_SEEDS = (('csv', b'text,label\nhello,1\nbye,0\n'), ('tsv', b'text\tlabel\nhello\tpos\n\nbye\tneg\n'),
              ('jsonl', b'{"text": "a", "label": 2}\n{"text": "b", "label": "x"}\n'),
              ('csv', b'\xef\xbb\xbftext,b,label\n"x, y",z,0\r\n"multi\nline",w,1\n'),
              ('csv', b'text,label\nhello,99999999999\n'), ('tsv', b'text\tlabel\nhi\t' + b'9' * 5000 + b'\n'),
              ('jsonl', b'{"text": "a", "label": ' + b'9' * 5000 + b'}\n'),
              ('jsonl', b'{"text": "a", "label": 1e999}\n'),
              ('csv', b'text,label\nx\xff,1\n'), ('jsonl', b'[{"text": "a", "label": 0}]\n'),
              ('csv', b'text,label\n' + b'x' * 200000 + b',1\n'))
NEAR_VALID_TEXT = st.sampled_from(TEXT_SEEDS).flatmap(lambda seed: st.tuples(st.just(seed[0]), mutated([seed[1]])))
TEXT_FILES = st.one_of(
    NEAR_VALID_TEXT, NEAR_VALID_TEXT,
    st.tuples(st.sampled_from(['csv', 'tsv', 'jsonl']), HEADERS, st.lists(st.lists(CELLS, max_size=4), max_size=4)
              ).map(lambda a: (a[0], _rows_as(*a))),
    st.tuples(st.sampled_from(['csv', 'tsv', 'jsonl']), st.binary(max_size=300)))
SANE_COLUMNS = st.just(('text', 'label', ''))


@FUZZ
@example(file=('tsv', b'text\tlabel\nhi\t' + b'9' * 5000 + b'\n'), suffix='own', fmt='auto',
         columns=('text', 'label', ''), label_names=[])
@example(file=('csv', b'text,label\nhello,99999999999\n'), suffix='own', fmt='auto', columns=('text', 'label', ''),
         label_names=[])
@example(file=('csv', b'text,label\nhello,' + b'0' * 5000 + b'1\n'), suffix='own', fmt='auto',
         columns=('text', 'label', ''), label_names=['neg', 'pos'])
@given(file=TEXT_FILES, suffix=st.sampled_from(['own'] * 6 + ['.csv', '.tsv', '.jsonl', '.json', '.txt', '']),
       fmt=st.sampled_from(['auto'] * 4 + ['own'] * 2 + ['csv', 'tsv', 'jsonl']),
       columns=st.one_of(SANE_COLUMNS, SANE_COLUMNS, SANE_COLUMNS,
                         st.tuples(COLUMNS, COLUMNS, st.sampled_from(['', 'b', 'text']))),
       label_names=st.one_of(st.just([]), st.just([]), st.lists(CELLS, max_size=3)))
def test_text_classification_files(scratch, file, suffix, fmt, columns, label_names):
  own, content = file
  path = _write(scratch, 'train' + ('.' + own if suffix == 'own' else suffix), content)
  text_column, label_column, pair_column = columns
  options = {'files': {'train': path}, 'text_column': text_column, 'label_column': label_column,
             'text_pair_column': pair_column, 'label_names': label_names, 'format': own if fmt == 'own' else fmt}
  with contextlib.suppress(DataError):
    _parse(builders.FtlabText, options)  # read_text_classification, infer_label_names, label_ids


TAGS = st.sampled_from(['O', 'B-PER', 'I-PER', 'I-LOC', 'B-', 'I-', '-', 'X', 'B-MISC', 'o', 'B-a-b'])
TOKEN = st.one_of(st.sampled_from(['EU', 'rejects', '-DOCSTART-', '.', 'NNP', 'I-NP']),
                  st.text(max_size=6).filter(lambda t: t and not t.isspace() and not any(c.isspace() for c in t)))
CONLL_SEEDS = (b'-DOCSTART- -X- O O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n\n'
               b'Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n',
               b'EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n', b'a O\nb\n', b'a\xff O\n')


def _conll_lines(sentences) -> bytes:
  return '\n\n'.join('\n'.join(' '.join(row) for row in sentence) for sentence in sentences).encode(
      'utf-8', 'surrogatepass')


@FUZZ
@given(content=st.one_of(mutated(CONLL_SEEDS),
                         st.lists(st.lists(st.lists(st.one_of(TOKEN, TAGS), min_size=1, max_size=3), max_size=4),
                                  max_size=3).map(_conll_lines)),
       word_column=st.integers(-4, 4) | st.sampled_from([2**63 - 1, -2**63]),
       tag_column=st.integers(-4, 4) | st.sampled_from([2**63 - 1, -2**63]),
       scheme=st.sampled_from(['iob1', 'iob2', 'bio', 'iob']))
def test_conll_files(scratch, content, word_column, tag_column, scheme):
  path = _write(scratch, 'train.txt', content)
  options = {'files': {'train': path}, 'word_column': word_column, 'tag_column': tag_column, 'scheme': scheme}
  with contextlib.suppress(DataError):
    _parse(builders.FtlabConll, options)  # read_conll, conll_tag_names


def _idx(magic: int, shape, payload: bytes) -> bytes:
  return struct.pack(f'>I{len(shape)}I', magic, *shape) + payload


IDX_IMAGES = _idx(2051, (2, 3, 3), bytes(range(18)))
IDX_LABELS = _idx(2049, (2,), b'\x01\x07')
IDX_SEEDS = (IDX_IMAGES, IDX_LABELS, gzip.compress(IDX_IMAGES), gzip.compress(IDX_LABELS), _idx(2051, (0, 28, 28), b''))
DIMS = st.sampled_from([0, 1, 2, 3, 4, 2**16, 2**31, 2**32 - 1])
IDX_HEADERS = st.tuples(st.sampled_from([2051, 2049, 2051, 0x1f8b0800, 0]), st.lists(DIMS, min_size=0, max_size=3),
                        st.binary(max_size=20)).map(lambda a: _idx(*a))
IDX_FILES = st.tuples(st.one_of(mutated(IDX_SEEDS), IDX_HEADERS), st.booleans()).map(
    lambda a: gzip.compress(a[0]) if a[1] else a[0])


@FUZZ
@example(images_data=_idx(2051, (2**31, 2**31, 4), b''), labels_data=IDX_LABELS, gz=(False, False))
@given(images_data=IDX_FILES, labels_data=IDX_FILES, gz=st.tuples(st.booleans(), st.booleans()))
def test_idx_files(scratch, images_data, labels_data, gz):
  with _fresh_folder(scratch) as folder:
    _write(folder, 'train-images-idx3-ubyte' + ('.gz' if gz[0] else ''), images_data)
    _write(folder, 'train-labels-idx1-ubyte' + ('.gz' if gz[1] else ''), labels_data)
    data_config = ml_collections.ConfigDict({'source': 'idx', 'path': folder, 'files': {}})
    with contextlib.suppress(DataError):
      options = builders.local_options(data_config)  # _idx_files, read_idx
      _parse(builders.FtlabIdx, options)


def _encoded(fmt: str, mode: str = 'RGB', size=(3, 2)) -> bytes:
  out = io.BytesIO()
  Image.new(mode, size, 128).save(out, format=fmt)
  return out.getvalue()


IMAGE_SEEDS = tuple(_encoded(f, m) for f, m in (('PNG', 'RGB'), ('PNG', 'L'), ('PNG', 'RGBA'), ('JPEG', 'RGB'),
                                                ('GIF', 'P'), ('BMP', 'RGB'), ('WEBP', 'RGB'), ('TIFF', 'RGB'),
                                                ('PNG', 'I;16'), ('PNG', '1')))


@pytest.mark.filterwarnings('ignore:Corrupt EXIF data', 'ignore:Truncated File Read')  # PIL, on damaged TIFFs
@FUZZ
@given(data=mutated(IMAGE_SEEDS), channels=st.sampled_from([1, 3, 3, 0, 4]))
def test_image_bytes(data, channels):
  with contextlib.suppress(DataError):
    formats.decode_image(data, where='fuzz.png', channels=channels)
  if channels in (1, 3):
    with contextlib.suppress(DataError):
      images.decode(data, channels=channels, where='fuzz.png')


NAMES = st.one_of(st.sampled_from(['train', 'validation', 'test', 'dev', 'cats', 'dogs', '.hidden', 'README.md',
                                   'train.csv', 'dev.tsv', 'test.jsonl', 'train.txt', 'a.png', 'b.JPG', 'x.gif',
                                   't10k-images-idx3-ubyte', 'train-labels-idx1-ubyte', 'SOURCE.txt', 'LICENSE']),
                  st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='/\x00'), min_size=1,
                          max_size=10).filter(lambda n: n not in ('.', '..') and len(n.encode()) < 200))
# A folder tree: (sub-folder or '', file name, contents).
TREES = st.lists(st.tuples(st.sampled_from(['', 'train', 'cats', 'dogs', 'train/cats', 'test/dogs', 'validation',
                                            '.hidden', 'cats/deep']) | NAMES, NAMES, mutated(IMAGE_SEEDS)),
                 max_size=6)
FILES = st.dictionaries(st.sampled_from(['train', 'validation', 'test', 'dev', 'x']),
                        st.one_of(NAMES, st.sampled_from(['', '*', '**', '*.csv', 'train*', '[', '[a-', '../train.csv',
                                                          '/etc/passwd', '/abs/*', 'a**b', 'a\x00b', 'train.csv,',
                                                          'a,b', 'x,y,z', 'cats', '.'])), max_size=3)


def _make_tree(folder: str, tree) -> None:
  for sub, name, data in tree:
    where = os.path.join(folder, sub)
    with contextlib.suppress(OSError):  # a name already taken by a file or a folder: the tree just lacks it
      os.makedirs(where, exist_ok=True)
      _write(where, name, data)


@FUZZ
@given(tree=TREES, files=FILES, source=st.sampled_from(['text', 'conll', 'idx', 'image_folder']))
def test_dataset_folders(scratch, tree, files, source):
  with _fresh_folder(scratch) as folder:
    _make_tree(folder, tree)
    data_config = ml_collections.ConfigDict({
        'source': source, 'path': folder, 'files': files,
        'text': {'text_column': '', 'label_column': '', 'text_pair_column': '', 'label_names': [], 'format': 'auto'},
        'conll': {'word_column': 0, 'tag_column': -1, 'scheme': 'iob1'}})
    with contextlib.suppress(DataError):
      options = builders.local_options(data_config)  # find_split_files, _idx_files, _image_folders
      if source == 'image_folder':
        _parse(builders.FtlabImageFolder, options)  # read_image_folder, decode_image of every file


def _vocab(tokens) -> bytes:
  return '\n'.join(tokens).encode()


VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'world', '##s']
VOCAB_SEEDS = (_vocab(VOCAB), _vocab(VOCAB[1:4]), _vocab(VOCAB + ['x'] * 3), b'[UNK]\n[CLS]\n[SEP]\n\xff\xfe\n')


def _tokenizer_json() -> bytes:
  with tempfile.TemporaryDirectory() as folder:
    path = _write(folder, 'vocab.txt', VOCAB_SEEDS[0])
    return text.load_tokenizer(path).to_str().encode()


TOKENIZER_SEEDS = (_tokenizer_json(), b'{}', b'{"version": "1.0", "model": {"type": "WordPiece", "vocab": {}}}')


@FUZZ
@given(data=st.one_of(mutated(VOCAB_SEEDS), mutated(TOKENIZER_SEEDS)),
       name=st.sampled_from(['vocab.txt', 'tokenizer.json', 'tok.bin']), lowercase=st.booleans(),
       as_folder=st.booleans())
def test_tokenizer_files(scratch, data, name, lowercase, as_folder):
  with _fresh_folder(scratch) as folder:
    path = _write(folder, name, data)
    with contextlib.suppress(DataError):
      text.load_tokenizer(folder if as_folder else path, lowercase=lowercase)


# Files other layers read: sweep records (RecordError) and pretrained weights (SurgeryError).
TRIAL_SEEDS = (b'{"id": "c000-s0", "status": "complete", "objective": 0.5}\n',
               b'{"id": "c000-s0", "status": "complete"}\n{"id": "c001-s0", "stat', b'[1, 2]\n', b'\n\n',
               b'{"id": "a", "status": ["complete"]}\n', b'{"id": "\xff", "status": "complete"}\n')


@FUZZ
@given(data=mutated(TRIAL_SEEDS))
def test_sweep_trials_file(scratch, data):
  with _fresh_folder(scratch) as folder:
    _write(folder, records.TRIALS, data)
    with contextlib.suppress(records.RecordError):
      records.read(folder)


@FUZZ
@given(data=mutated((b'{"name": "x", "space": {}}', b'[]')))
def test_sweep_json_file(scratch, data):
  with _fresh_folder(scratch) as folder:
    _write(folder, records.SWEEP, data)
    with contextlib.suppress(records.RecordError):
      records.read_sweep(folder)


@FUZZ
@given(data=mutated((b'{"step": 1, "loss": 0.5}\n{"step": 2', b'1\n"x"\n')))
def test_trial_metrics_file(scratch, data):
  with _fresh_folder(scratch) as folder:
    os.makedirs(os.path.join(folder, 'trials', 'c000-s0'))
    _write(os.path.join(folder, 'trials', 'c000-s0'), 'metrics.jsonl', data)
    with contextlib.suppress(records.RecordError):
      records.read_metrics(folder, {'workdir': 'trials/c000-s0'})


def _safetensors() -> bytes:
  from safetensors.numpy import save
  return save({'bert.embeddings.word_embeddings.weight': np.ones((3, 2), np.float32), 'b': np.zeros(2, np.int64)})


def _npz() -> bytes:
  out = io.BytesIO()
  np.savez(out, **{'params/head/kernel': np.ones((2, 2), np.float32), 'x': np.arange(3)})
  return out.getvalue()


HF_CONFIG = json.dumps({'model_type': 'bert', 'vocab_size': 30, 'hidden_size': 8, 'num_hidden_layers': 1,
                        'num_attention_heads': 2, 'intermediate_size': 16, 'max_position_embeddings': 32}).encode()
WEIGHT_SEEDS = (_safetensors(), _npz())


@FUZZ
@given(data=mutated((HF_CONFIG, b'[]', b'{"model_type": "bert"}', b'{"model_type": "bert", "pad_token_id": "x"}')))
def test_hf_config_json(scratch, data):
  with _fresh_folder(scratch) as folder:
    _write(folder, 'config.json', data)
    with contextlib.suppress(SurgeryError):
      hf.read_config(folder)


@FUZZ
@given(weights=mutated(WEIGHT_SEEDS),
       index=mutated((b'{"weight_map": {"a": "model-1.safetensors"}}', b'{"weight_map": [1]}',
                      b'{"weight_map": {"a": 1}}', b'[]')),
       sharded=st.booleans())
def test_hf_weight_files(scratch, weights, index, sharded):
  with _fresh_folder(scratch) as folder:
    if sharded:
      _write(folder, 'model.safetensors.index.json', index)
      _write(folder, 'model-1.safetensors', weights)
    else:
      _write(folder, 'model.safetensors', weights)
    with contextlib.suppress(SurgeryError):
      hf.read_weights(folder)


@FUZZ
@given(weights=mutated(WEIGHT_SEEDS), suffix=st.sampled_from(['.safetensors', '.npz']))
def test_vision_weight_files(scratch, weights, suffix):
  with contextlib.suppress(SurgeryError):
    vision.read_weights(_write(scratch, 'weights' + suffix, weights))
