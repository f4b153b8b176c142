"""Item side information (data.interactions.catalogue): one row per item, read for each item's text and its 0/1 flags
(multi-hot genres), in the order ftlab numbers the log's items.

The file is CSV / TSV / '|'-separated (MovieLens 100K's u.item, latin-1, no header) / '::' .dat / JSONL, its
columns named by its header or by catalogue.names. An item's text is catalogue.text, a template over its columns
('{title}'), where '{flags}' lists the names of its flag columns that hold 1 ('{title} | {flags}': 'Toy Story
(1995) | Animation, Children's, Comedy'). An item of the log that the file lacks gets an empty text and no flags,
counted in a warning.
"""
from __future__ import annotations

import dataclasses
import string

import numpy as np

from ftlab.data import formats, interaction_log
from ftlab.data.errors import DataError, located


@dataclasses.dataclass(frozen=True)
class Catalogue:
  """Per item index 1..N (entry 0 is the padding item's): its text and flags."""
  texts: tuple[str, ...]  # [N + 1]
  flags: np.ndarray  # [N + 1, F] float32 (F = len(flag_names))
  flag_names: tuple[str, ...]
  missing: int  # items of the log the file lacks


def _text(path, encoding: str) -> str:
  data = formats._read_bytes(path)
  try:
    return formats._checked_text(path, data.decode(encoding).lstrip('\ufeff'))
  except UnicodeDecodeError as err:
    line = data.count(b'\n', 0, err.start) + 1
    raise DataError(f'{located(path, line)}: not valid {encoding}; set data.interactions.catalogue.encoding to the '
                    "file's encoding (MovieLens 100K's u.item is 'latin-1')") from None
  except LookupError:
    raise DataError(f'data.interactions.catalogue.encoding={encoding!r}: not an encoding Python knows; use e.g. '
                    "'utf-8' or 'latin-1'") from None


def _fields(template: str) -> list[str]:
  try:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]
  except ValueError as err:
    raise DataError(f'data.interactions.catalogue.text={template!r}: not a template ({err}); write columns in braces, '
                    "e.g. '{title} | {flags}'") from None


def read(items_config, item_ids: tuple[str, ...]) -> Catalogue:
  """The catalogue of the items `item_ids` (the log's ids, in ftlab's order: item index i + 1 is item_ids[i])."""
  cfg = items_config
  path = cfg.path
  fmt = interaction_log.file_format(path, cfg.format, 'data.interactions.catalogue.format')
  text = _text(path, cfg.encoding)
  header, rows = (interaction_log.json_records(path, text) if fmt == 'jsonl'
                  else interaction_log.records(path, text, fmt, list(cfg.names)))
  wanted = [cfg.id_column] + list(cfg.flag_columns) + [f for f in _fields(cfg.text) if f != 'flags']
  for column in dict.fromkeys(wanted):
    if column not in header:
      role = 'id_column' if column == cfg.id_column else 'flag_columns' if column in cfg.flag_columns else 'text'
      key = f'data.interactions.catalogue.{role}'
      raise formats._missing_column(str(path), column, key, header, 'keys' if fmt == 'jsonl' else 'columns')
  by_id = {}
  for n, row in rows:
    values = row if fmt == 'jsonl' else dict(zip(header, row))
    if fmt != 'jsonl' and len(row) != len(header):
      raise DataError(f'{located(path, n)}: {len(row)} fields, the header (or catalogue.names) has {len(header)}; '
                      'correct the row or data.interactions.catalogue.names')
    by_id[str(values[cfg.id_column]).strip()] = values
  return _catalogue(cfg, item_ids, by_id, path)


def _catalogue(cfg, item_ids, by_id: dict, path) -> Catalogue:
  names = tuple(cfg.flag_columns)
  texts, flags, missing = [''], np.zeros((len(item_ids) + 1, len(names)), np.float32), 0
  for i, item in enumerate(item_ids, 1):
    values = by_id.get(item)
    if values is None:
      missing += 1
      texts.append('')
      continue
    on = [name for name in names if str(values[name]).strip() not in ('', '0', '0.0', 'False', 'false')]
    flags[i] = [name in on for name in names]
    fields = {k: str(v).strip() for k, v in values.items()}
    texts.append(cfg.text.format(**{**fields, 'flags': ', '.join(on)}).strip())
  if missing == len(item_ids):
    raise DataError(f'{path}: none of the log\'s items is in it (its ids are in '
                    f'data.interactions.catalogue.id_column={cfg.id_column!r}); check the column and the file')
  return Catalogue(tuple(texts), flags, names, missing)
