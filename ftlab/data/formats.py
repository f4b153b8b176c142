"""Pure parsers for local dataset files: text classification (CSV/TSV/JSONL), CoNLL, IDX, image folders.

Every bad input raises DataError naming the file (and line where it applies), what is wrong and the fix,
with the config key to change where one applies. Nothing here writes files.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import pathlib
import re
import struct
import sys
import zlib

import numpy as np

from ftlab.data.errors import DataError, located

_TEXT_FORMATS = ('csv', 'tsv', 'jsonl')
_SUFFIX_FORMATS = {'.csv': 'csv', '.tsv': 'tsv', '.jsonl': 'jsonl', '.json': 'jsonl'}
_CONLL_SCHEMES = ('iob1', 'iob2', 'bio')
_IDX_IMAGES, _IDX_LABELS = 2051, 2049
_SPLIT_ALIASES = {
    'train': ('train',),
    'validation': ('validation', 'valid', 'val', 'dev', 'testa'),
    'test': ('test', 'testb'),
}
_INT = re.compile(r'[+-]?\d+')
_MAX_INFERRED_CLASSES = 100_000  # integer labels name ids 0..max; a larger max is a label set to give explicitly


def _read_bytes(path) -> bytes:
  """The bytes of `path`; a missing file or a folder is a DataError."""
  p = pathlib.Path(path)
  if p.is_dir():
    raise DataError(f'{path}: is a folder, not a file; point data.path / data.files at the data file')
  try:
    return p.read_bytes()
  except FileNotFoundError:
    raise DataError(f'{path}: no such file; check data.path and data.files') from None
  except OSError as e:
    raise DataError(f'{path}: cannot be read ({e.strerror}); check the file and its permissions') from None


def _decode(path, data: bytes) -> str:
  """Strict UTF-8 text of `data` without a BOM; undecodable bytes name the line and byte offset."""
  bom = 3 if data.startswith(b'\xef\xbb\xbf') else 0
  try:
    return data[bom:].decode('utf-8')
  except UnicodeDecodeError as e:
    offset = bom + e.start
    line = data.count(b'\n', 0, offset) + 1
    raise DataError(f'{located(path, line)}: byte 0x{data[offset]:02x} at byte offset {offset} is not valid UTF-8; '
                    're-save the file as UTF-8') from None


MAX_LISTED = 10  # problems of one file listed in its error; the rest counted


def _problems(path, problems: list[str]) -> DataError:
  """One error for every row-level problem of a file (each 'file:line: what; fix'), so that one run shows all."""
  if len(problems) == 1:
    return DataError(problems[0])
  more = f'; and {len(problems) - MAX_LISTED} more' if len(problems) > MAX_LISTED else ''
  return DataError(f'{path}: {len(problems)} problems: ' + '; '.join(
      p.removeprefix(f'{path}:') for p in problems[:MAX_LISTED]) + more)


def _checked_text(path, text: str) -> str:
  """`text`, refused where it cannot be a text file ftlab reads: NUL bytes, or only CR line endings."""
  nul = text.find('\0')
  if nul >= 0:
    raise DataError(f'{located(path, text.count(chr(10), 0, nul) + 1)}: a NUL byte; the file looks binary or UTF-16, '
                    'not UTF-8 text: re-save it as UTF-8')
  if '\r' in text and '\n' not in text:
    raise DataError(f'{path}: its lines end in CR alone (old Mac line endings), so it reads as one line; convert '
                    'them to LF (e.g. tr "\\r" "\\n")')
  return text


def _lines(text: str) -> list[str]:
  """Lines split on '\\n' (so numbers agree with byte-level line counts), a trailing '\\r' dropped."""
  return [line[:-1] if line.endswith('\r') else line for line in text.split('\n')]


def _text_format(path, file_format: str) -> str:
  """'csv', 'tsv' or 'jsonl' for `path`: the given format, or the one its suffix implies for 'auto'."""
  if file_format in _TEXT_FORMATS:
    return file_format
  if file_format != 'auto':
    raise DataError(f'{path}: unknown file format {file_format!r}; use one of auto, {", ".join(_TEXT_FORMATS)}')
  suffix = pathlib.Path(path).suffix.lower()
  if suffix in _SUFFIX_FORMATS:
    return _SUFFIX_FORMATS[suffix]
  raise DataError(f'{path}: cannot tell the format from the suffix {suffix or "(none)"!r}; set the format to one '
                  'of csv, tsv, jsonl explicitly, or rename the file to .csv, .tsv or .jsonl')


def _column_keys(text_column: str, label_column: str, text_pair_column: str,
                 group_column: str = '') -> list[tuple[str, str, str]]:
  """(output field, column name, config key) for the columns to read."""
  keys = [('text', text_column, 'data.text.text_column'), ('label', label_column, 'data.text.label_column')]
  if text_pair_column:
    keys.append(('text_pair', text_pair_column, 'data.text.text_pair_column'))
  if group_column:
    keys.append(('group', group_column, 'data.group_column'))
  return keys


class MissingColumn(DataError):
  """A column (a JSON key) the config names that the file does not have."""


def _missing_column(where: str, column: str, key: str, present, what: str = 'columns') -> DataError:
  """The error for a column that is not there, listing the ones that are."""
  have = ', '.join(repr(c) for c in present) or '(none)'
  if not column:
    return MissingColumn(f'{where}: {key} is empty; set it to one of the {what} the file has: {have}')
  return MissingColumn(f'{where}: no column {column!r} (the file has {what}: {have}); set {key} to one of them')


def _json_type(value) -> str:
  """The JSON name of a decoded value's type."""
  names = {bool: 'boolean', int: 'integer', float: 'number', str: 'string', list: 'array', dict: 'object'}
  return 'null' if value is None else names.get(type(value), type(value).__name__)


def _label_string(where: str, value) -> str:
  """A label as a string: strings stripped, JSON ints as str(int); anything else is an error."""
  if isinstance(value, str):
    label = value.strip()
  elif isinstance(value, int) and not isinstance(value, bool):
    label = str(value)
  elif isinstance(value, float) and value.is_integer():
    label = repr(value)  # 1.0: made an integer below, with a warning
  else:
    raise DataError(f'{where}: label {value!r} is a JSON {_json_type(value)}; labels must be strings or integers, '
                    'correct the file or set data.text.label_column to the label column')
  if not label:
    raise DataError(f'{where}: empty label; give every example a label or remove the line')
  return label


def _whole_floats_as_integers(path, examples: list[dict]) -> None:
  """Labels written as whole-number floats ('1.0', a tool that wrote class ids as floats) read as the integers, with
  a warning that says so."""
  changed = [e for e in examples if _WHOLE_FLOAT.match(e['label'])]
  if not changed:
    return
  first = changed[0]['label']
  for example in changed:
    example['label'] = str(int(_WHOLE_FLOAT.match(example['label']).group(1)))
  print(f'ftlab: warning: {path}: {len(changed)} labels are written as whole-number floats (e.g. {first!r}); read '
        f'as the integers (e.g. {changed[0]["label"]!r}), which name classes 0..k-1', file=sys.stderr, flush=True)


_WHOLE_FLOAT = re.compile(r'^([+-]?\d+)\.0*$')


def _read_delimited(path, text: str, fmt: str, keys) -> list[dict]:
  """CSV/TSV rows (header row first) as examples; every row's problem reported at once."""
  if fmt == 'tsv':
    reader = csv.reader(io.StringIO(text, newline=''), delimiter='\t', quoting=csv.QUOTE_NONE)
  else:
    reader = csv.reader(io.StringIO(text, newline=''))
  examples, problems, header, line = [], [], None, 0
  try:
    for row in reader:
      start, line = line + 1, reader.line_num
      if not row or (len(row) == 1 and not row[0].strip()):
        continue
      if header is None:
        header = [name.strip() for name in row]
        indices = _header_indices(path, header, keys)
        continue
      try:
        examples.append(_delimited_example(located(path, start), row, header, indices, fmt))
        examples[-1]['line'] = start
      except DataError as problem:
        problems.append(str(problem))
  except csv.Error as e:
    problems.append(f'{located(path, reader.line_num)}: not valid {fmt.upper()} ({e}); fix the row')
  if problems:
    raise _problems(path, problems)
  if header is None or not examples:
    raise DataError(f'{path}: has no examples ({"no header row" if header is None else "a header but no rows"}); '
                    'check data.path and data.files')
  return examples


def _header_indices(path, header: list[str], keys) -> dict[str, int]:
  """{output field: its column's index} from the header row; a column named twice that ftlab reads is refused."""
  indices = {}
  for field, column, key in keys:
    if column not in header or not column:
      raise _missing_column(str(path), column, key, header)
    where = [i + 1 for i, name in enumerate(header) if name == column]
    if len(where) > 1:
      raise DataError(f'{path}: the header names the column {column!r} {len(where)} times (columns '
                      f'{", ".join(map(str, where))}), so {key} is ambiguous; rename the others')
    indices[field] = where[0] - 1
  return indices


def _delimited_example(where: str, row: list[str], header: list[str], indices: dict, fmt: str) -> dict:
  if [field.strip() for field in row] == header:
    raise DataError(f'{where}: repeats the header row (files joined together?); remove the line')
  if len(row) != len(header):
    fix = 'a field may contain a tab; remove tabs inside fields' if fmt == 'tsv' else \
        'quote fields that contain commas, e.g. "a, b"'
    raise DataError(f'{where}: expected {len(header)} fields (the header has {len(header)}), found {len(row)}; '
                    f'{fix}, or fix the row')
  example = {field: row[i] for field, i in indices.items()}
  example['label'] = _label_string(where, example['label'])
  _check_texts(where, example)
  return example


def _check_texts(where: str, example: dict) -> None:
  for field in ('text', 'text_pair'):
    if field in example and not example[field].strip():
      raise DataError(f'{where}: empty {field.replace("_", " ")}; give every example its text or remove the line')


def _read_jsonl(path, text: str, keys) -> list[dict]:
  """JSON Lines (one object per line, blank lines skipped) as examples; every line's problem reported at once."""
  examples, problems = [], []
  for number, raw in enumerate(_lines(text), 1):
    if not raw.strip():
      continue
    try:
      examples.append(_jsonl_example(located(path, number), raw, keys, first=not examples and not problems))
      examples[-1]['line'] = number
    except DataError as problem:
      if isinstance(problem, MissingColumn) and not examples and not problems:
        raise  # the config's column, not the file's lines
      problems.append(str(problem))
  if problems:
    raise _problems(path, problems)
  if not examples:
    raise DataError(f'{path}: has no examples (no JSON objects); check data.path and data.files')
  return examples


def _jsonl_example(where: str, raw: str, keys, *, first: bool) -> dict:
  try:
    record = json.loads(raw)
  except json.JSONDecodeError as e:
    hint = ('; the file looks like one JSON array, convert it to JSON Lines (one object per line)'
            if first and raw.lstrip().startswith('[') else '')
    raise DataError(f'{where}: not valid JSON ({e.msg} at column {e.colno}){hint}; fix the line') from None
  except ValueError as e:  # a number of more than 4300 digits, which Python refuses to convert
    raise DataError(f'{where}: a value JSON cannot read ({str(e).split(";")[0]}); fix the line') from None
  if not isinstance(record, dict):
    raise DataError(f'{where}: expected a JSON object, got a JSON {_json_type(record)}; '
                    'write one object per line, e.g. {"text": ..., "label": ...}')
  example = {}
  for field, column, key in keys:
    if column not in record or not column:
      raise _missing_column(where, column, key, list(record), what='keys')
    value = record[column]
    if field == 'label':
      example[field] = _label_string(where, value)
    elif field == 'group' and isinstance(value, int) and not isinstance(value, bool):
      example[field] = str(value)  # an id
    elif isinstance(value, str):
      example[field] = value
    else:
      raise DataError(f'{where}: {column!r} is a JSON {_json_type(value)}, not a string; '
                      f'correct the file or set {key} to the text column')
  _check_texts(where, example)
  return example


def read_text_classification(path, *, text_column: str, label_column: str, text_pair_column: str = '',
                             group_column: str = '', file_format: str = 'auto') -> list[dict]:
  """Examples {'text', 'label', 'line'} (+ 'text_pair', 'group') from a CSV/TSV file with a header row, or JSON
  Lines.

  Labels stay strings as written in the file (surrounding whitespace stripped; JSON integers as str(int)).
  """
  fmt = _text_format(path, file_format)
  keys = _column_keys(text_column, label_column, text_pair_column, group_column)
  columns = [column for _, column, _ in keys]
  if len(set(columns)) != len(columns):
    raise DataError(f'{path}: the same column is used twice ({", ".join(repr(c) for c in columns)}); '
                    'set data.text.text_column, data.text.label_column, data.text.text_pair_column and '
                    'data.group_column to different columns')
  text = _checked_text(path, _decode(path, _read_bytes(path)))
  examples = _read_jsonl(path, text, keys) if fmt == 'jsonl' else _read_delimited(path, text, fmt, keys)
  _whole_floats_as_integers(path, examples)
  return examples


def label_ids(examples: list[dict], label_names: tuple[str, ...], *, path) -> list[int]:
  """The index in `label_names` of each example's label: its name, or else an integer string 0 <= i < len."""
  index = {}
  for i, name in enumerate(label_names):
    if name in index:
      raise DataError(f'data.text.label_names: {name!r} appears twice in {list(label_names)}; list each label once')
    index[name] = i
  ids = []
  for example in examples:
    label = example['label']
    if label in index:
      ids.append(index[label])
      continue
    if _INT.fullmatch(label) and len(label) <= 18 and 0 <= int(label) < len(label_names):  # int() refuses long ones
      ids.append(int(label))
      continue
    raise DataError(f'{located(path, example.get("line"))}: label {label!r} is not in the label set '
                    f'{list(label_names)} (nor an index 0..{len(label_names) - 1}); '
                    'add it to data.text.label_names or correct the file')
  return ids


def infer_label_names(examples: list[dict], *, path='the data') -> tuple[str, ...]:
  """('0', ..., str(max)) when every label is a non-negative integer string, else the sorted unique labels."""
  labels = {example['label'] for example in examples}
  if labels and all(label.isascii() and label.isdigit() for label in labels):
    largest = max((label.lstrip('0') or '0' for label in labels), key=lambda digits: (len(digits), digits))
    if len(largest) > len(str(_MAX_INFERRED_CLASSES)) or int(largest) >= _MAX_INFERRED_CLASSES:
      shown = largest if len(largest) <= 20 else f'{largest[:20]}... ({len(largest)} digits)'
      raise DataError(f'{path}: the labels are integers, read as class ids 0..max, and the largest is {shown}: more '
                      f'than the {_MAX_INFERRED_CLASSES:,} classes ftlab infers; list the label set in '
                      'data.text.label_names (the integers index it), or renumber the labels 0..k-1')
    return tuple(str(i) for i in range(int(largest) + 1))
  return tuple(sorted(labels))


def _split_tag(where: str, tag: str) -> tuple[str, str]:
  """('O', '') or ('B'|'I', type) for a valid IOB tag."""
  if tag == 'O':
    return 'O', ''
  prefix, dash, kind = tag.partition('-')
  if prefix in ('B', 'I') and dash and kind:
    return prefix, kind
  raise DataError(f"{where}: tag {tag!r} is not an IOB tag ('O', 'B-<type>' or 'I-<type>'); correct the file or "
                  'set data.conll.tag_column to the column that holds the tags')


def _to_iob2(path, tags: list[str], lines: list[int], scheme: str) -> list[str]:
  """The sentence's tags in IOB2: IOB1 span starts become B-; in iob2/bio an I- that starts a span is an error."""
  out, previous = [], ''
  for tag, number in zip(tags, lines):
    where = located(path, number)
    prefix, kind = _split_tag(where, tag)
    if prefix == 'I' and kind != previous:
      if scheme == 'iob1':
        tag = f'B-{kind}'
      else:
        after = f'after {out[-1]!r}' if out else 'at the start of a sentence'
        raise DataError(f"{where}: tag {tag!r} {after} does not continue a {kind} span, which {scheme} does not "
                        "allow; if the file is IOB1 (I- starts spans), set data.conll.scheme='iob1'")
    out.append(tag)
    previous = kind
  return out


def _resolve_column(path, number: int, index: int, count: int, key: str) -> int:
  """`index` (negative counts from the end) as a column in 0..count-1."""
  if not -count <= index < count:
    raise DataError(f'{located(path, number)}: {key}={index} is out of range, the file has {count} columns '
                    f'(0..{count - 1}, or -1 for the last); set {key} to one of them')
  return index % count


def read_conll(path, *, word_column: int = 0, tag_column: int = -1, scheme: str = 'iob1') -> list[dict]:
  """Sentences {'tokens', 'tags' (IOB2), 'line'} from a CoNLL file; -DOCSTART- lines are skipped. Every bad line
(a column count unlike the first token line's, a tag that is not IOB) is reported in one error."""
  if scheme not in _CONLL_SCHEMES:
    raise DataError(f'{path}: data.conll.scheme={scheme!r} is not a scheme; use one of {", ".join(_CONLL_SCHEMES)}')
  text = _checked_text(path, _decode(path, _read_bytes(path)))
  sentences, tokens, tags, lines, problems = [], [], [], [], []
  columns = word = tag = None

  def finish():
    if tokens:
      try:
        sentences.append({'tokens': list(tokens), 'tags': _to_iob2(path, tags, lines, scheme), 'line': lines[0]})
      except DataError as problem:
        problems.append(str(problem))
      tokens.clear(), tags.clear(), lines.clear()

  for number, raw in enumerate(_lines(text), 1):
    fields = raw.split()
    if not fields or fields[0] == '-DOCSTART-':
      finish()
      continue
    if columns is None:
      columns = len(fields)
      word = _resolve_column(path, number, word_column, columns, 'data.conll.word_column')
      tag = _resolve_column(path, number, tag_column, columns, 'data.conll.tag_column')
      if word == tag:
        raise DataError(f'{path}: data.conll.word_column={word_column} and data.conll.tag_column={tag_column} are '
                        f'the same column of {columns}; set them to different columns')
    elif len(fields) != columns:
      problems.append(f'{located(path, number)}: expected {columns} columns (as on the first token line), '
                      f'found {len(fields)}; every token line needs the same columns separated by whitespace, '
                      'fix the line (a token with a space in it?)')
      continue
    tokens.append(fields[word])
    tags.append(fields[tag])
    lines.append(number)
  finish()
  if problems:
    raise _problems(path, problems)
  if not sentences:
    raise DataError(f'{path}: has no sentences (no token lines); check data.path and data.files')
  return sentences


def conll_tag_names(sentences: list[dict]) -> tuple[str, ...]:
  """'O', then 'B-T', 'I-T' for each entity type T in sorted order."""
  kinds = sorted({tag[2:] for sentence in sentences for tag in sentence['tags'] if tag != 'O'})
  return ('O',) + tuple(name for kind in kinds for name in (f'B-{kind}', f'I-{kind}'))


def _idx_bytes(path) -> bytes:
  """The IDX bytes of `path`, gunzipped when the name ends with .gz."""
  data = _read_bytes(path)
  if not str(path).endswith('.gz'):
    return data
  if not data.startswith(b'\x1f\x8b'):
    raise DataError(f'{path}: named .gz but is not gzip-compressed; rename it without .gz (or gzip it)')
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f'{path}: the gzip data is damaged or truncated ({e}); download the file again') from None


def _idx_array(path, magic: int, dims: int) -> np.ndarray:
  """The IDX array of `path` with header `magic` and `dims` dimensions (uint8 payload)."""
  data = _idx_bytes(path)
  kinds = {_IDX_IMAGES: 'images', _IDX_LABELS: 'labels'}
  header = 4 + 4 * dims
  if len(data) < 4:
    raise DataError(f'{path}: truncated, {len(data)} bytes is less than the 4-byte IDX magic; download it again')
  found = struct.unpack('>I', data[:4])[0]
  if found != magic:
    if found in kinds:
      hint = f'this is an IDX {kinds[found]} file; are the images and labels files swapped? check data.files'
    elif data.startswith(b'\x1f\x8b'):
      hint = 'the file is gzip-compressed; name it with .gz'
    else:
      hint = f'point data.files at the IDX {kinds[magic]} file'
    raise DataError(f'{path}: IDX magic {found} (0x{found:08x}) found, expected {magic} (0x{magic:08x}) for '
                    f'{kinds[magic]}; {hint}')
  if len(data) < header:
    raise DataError(f'{path}: truncated, {len(data)} bytes is less than the {header}-byte header; download it again')
  shape = struct.unpack(f'>{dims}I', data[4:header])
  expected = math.prod(shape)  # exact: an int64 product of three uint32 dimensions can wrap around
  payload = len(data) - header
  if payload != expected:
    what = 'truncated' if payload < expected else 'longer than declared'
    raise DataError(f'{path}: {what}, the header declares {" x ".join(map(str, shape))} = {expected} bytes of data '
                    f'but the file has {payload}; download it again')
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_idx(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [N, rows, cols, 1], int64 labels [N]) from IDX files (gzip when named .gz)."""
  images = _idx_array(images_path, _IDX_IMAGES, 3)[..., None]
  labels = _idx_array(labels_path, _IDX_LABELS, 1).astype(np.int64)
  if len(images) != len(labels):
    raise DataError(f'{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; '
                    'pair each images file with its own labels file in data.files')
  return images, labels


def _hidden(name: str) -> bool:
  return name.startswith('.')


def read_image_folder(root, *, extensions=('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
                      ) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
  """([(file, class index)], class names) for root/<class>/**/<image>; classes and files sorted."""
  base = pathlib.Path(root)
  if not base.is_dir():
    what = 'is a file, not a folder' if base.exists() else 'does not exist'
    raise DataError(f'{root}: {what}; set data.path to a folder with one sub-folder of images per class')
  classes = tuple(sorted(p.name for p in base.iterdir() if p.is_dir() and not _hidden(p.name)))
  if not classes:
    raise DataError(f'{root}: has no class sub-folders; put the images in {root}/<class name>/ '
                    '(one folder per class) or set data.path to that folder')
  wanted = {e.lower() for e in extensions}
  items = []
  for index, name in enumerate(classes):
    files = []
    for folder, dirs, names in os.walk(base / name):
      dirs[:] = [d for d in dirs if not _hidden(d)]
      files += [os.path.join(folder, f) for f in names
                if not _hidden(f) and os.path.splitext(f)[1].lower() in wanted]
    if not files:
      raise DataError(f'{base / name}: class folder {name!r} has no images ({", ".join(sorted(wanted))}); '
                      'add images or remove the folder')
    items += [(f, index) for f in sorted(files)]
  return items, classes


def decode_image(data: bytes, *, where: str, channels: int = 3) -> np.ndarray:
  """uint8 [H, W, channels] pixels of an encoded image (RGB for 3 channels, grayscale for 1)."""
  from PIL import Image
  if channels not in (1, 3):
    raise DataError(f'{where}: channels={channels} is not supported; use 1 (grayscale) or 3 (RGB)')
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.mode == 'P' and 'transparency' in image.info:
        image = image.convert('RGBA')
      pixels = np.asarray(image.convert('RGB' if channels == 3 else 'L'), np.uint8)
  except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ValueError, ...)
    raise DataError(f'{where}: not a readable image ({type(e).__name__}: {e}); remove or replace the file') from None
  return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def _ignored(name: str) -> bool:
  """Files that are documentation, not data: SOURCE.txt, README*, LICENSE*, hidden files."""
  lower = name.lower()
  return _hidden(name) or lower == 'source.txt' or lower.startswith(('readme', 'license'))


def _split_words(name: str) -> set[str]:
  """The words a file name is matched on: the part before the first dot and the last suffix."""
  lower = name.lower()
  return {lower.split('.')[0], lower.rsplit('.', 1)[-1]} if '.' in lower else {lower}


def find_split_files(path, files: dict[str, str]) -> dict[str, pathlib.Path]:
  """{split: file} under the folder `path`: explicit names/globs from `files`; '' (or absent) found by aliases.

  A single file is the train split. Splits not found are left out, except train, which must exist.
  """
  base = pathlib.Path(path)
  if not base.exists():
    raise DataError(f'{path}: does not exist; set data.path to the dataset folder or file')
  if base.is_file():
    return {'train': base}
  unknown = sorted(set(files) - set(_SPLIT_ALIASES))
  if unknown:
    raise DataError(f'data.files: unknown split(s) {unknown}; use {", ".join(_SPLIT_ALIASES)}')
  present = sorted(p.name for p in base.iterdir() if p.is_file() and not _ignored(p.name))
  listing = ', '.join(present) or '(no data files)'
  found = {}
  for split, name in files.items():
    if not name:
      continue
    key = f'data.files.{split}'
    if any(c in name for c in '*?['):
      matches = sorted(p for p in base.glob(name) if p.is_file())
      if not matches:
        raise DataError(f'{base}: {key}={name!r} matches no file (files here: {listing}); correct {key}')
      if len(matches) > 1:
        raise DataError(f'{base}: {key}={name!r} matches {len(matches)} files '
                        f'({", ".join(str(m.relative_to(base)) for m in matches)}); make {key} match one file')
      found[split] = matches[0]
    else:
      target = base / name
      if not target.is_file():
        raise DataError(f'{target}: no such file for {key}={name!r} (files here: {listing}); correct {key}')
      found[split] = target
  taken = {p.resolve() for p in found.values()}
  for split, aliases in _SPLIT_ALIASES.items():
    if files.get(split, ''):
      continue
    matches = [n for n in present if _split_words(n) & set(aliases) and (base / n).resolve() not in taken]
    if len(matches) > 1:
      raise DataError(f'{base}: several files look like the {split} split ({", ".join(matches)}); '
                      f'name one in data.files.{split}')
    if matches:
      found[split] = base / matches[0]
  by_file = {}
  for split, p in found.items():
    other = by_file.setdefault(p.resolve(), split)
    if other != split:
      raise DataError(f'{p}: is both the {other} and the {split} split; set data.files.{other} and '
                      f'data.files.{split} to different files')
  if 'train' not in found:
    raise DataError(f'{base}: no train file found (files here: {listing}); name a file train.* (or *.train) '
                    'or set data.files.train')
  return {split: found[split] for split in _SPLIT_ALIASES if split in found}
