"""Reading an interaction log: (user, item, rating, timestamp) rows from CSV or TSV with a header, a headerless TSV
(MovieLens 100K's u.data), '::'-separated .dat (MovieLens 1M / 10M) or JSONL, with the columns named by
data.interactions.*_column (and data.interactions.names for a file without a header).

Users and items keep the ids the file writes (as strings); ftlab numbers them later. Ratings are numbers (a log of
implicit events sets rating_column ''); timestamps are integer seconds or ISO 8601 date-times. Every row problem is
reported with its file and line (the first ten of them, and how many in all) before anything else happens.
Duplicate rows are dropped, keeping the last, with a warning counted in the report: the same user, item and timestamp
(the same event logged twice, or its rating corrected). Without timestamps nothing tells a repeat from a duplicate:
the same user, item and rating count as one row (a changed rating is kept as a second one).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import pathlib

import numpy as np

from ftlab.data import formats
from ftlab.data.errors import DataError, located

FORMATS = ('csv', 'tsv', 'psv', 'dat', 'jsonl')  # psv: '|'-separated (MovieLens 100K's u.item)
_SUFFIXES = {'.csv': 'csv', '.tsv': 'tsv', '.data': 'tsv', '.psv': 'psv', '.item': 'psv', '.dat': 'dat',
             '.jsonl': 'jsonl', '.json': 'jsonl'}
_DELIMITERS = {'tsv': '\t', 'psv': '|'}
ROLES = ('user', 'item', 'rating', 'timestamp')


@dataclasses.dataclass(frozen=True)
class Log:
  """The rows of a log, in file order (exact duplicates dropped)."""
  users: np.ndarray  # [n] str: the user ids as written
  items: np.ndarray  # [n] str
  ratings: np.ndarray | None  # [n] float32, or None for an implicit log
  times: np.ndarray | None  # [n] int64 seconds, or None where the log has no timestamps
  path: str
  duplicates: int  # exact duplicate rows dropped

  def __len__(self) -> int:
    return len(self.users)


def file_format(path, given: str, key: str = 'data.interactions.format') -> str:
  if given in FORMATS:
    return given
  suffix = pathlib.Path(path).suffix.lower()
  if given == 'auto' and suffix in _SUFFIXES:
    return _SUFFIXES[suffix]
  if given != 'auto':
    raise DataError(f'{key}={given!r}: not a format ftlab reads; use one of auto, {", ".join(FORMATS)}')
  raise DataError(f'{path}: cannot tell the format from the suffix {suffix or "(none)"!r}; set {key} to one of '
                  f'{", ".join(FORMATS)}')


def _columns(ic) -> dict[str, str]:
  """{role: column name} of the roles the config reads (rating and timestamp may be '')."""
  named = {role: ic[f'{role}_column'] for role in ROLES}
  return {role: column for role, column in named.items() if column}


def records(path, text: str, fmt: str, names: list[str]) -> tuple[list[str], list[tuple[int, list]]]:
  """(column names, [(line, values)]) of a delimited file; the header line gives the names unless `names` does."""
  lines = formats._lines(text)
  if fmt == 'dat':
    rows = [(n, line.split('::')) for n, line in enumerate(lines, 1) if line.strip()]
  else:
    options = {'delimiter': _DELIMITERS[fmt], 'quoting': csv.QUOTE_NONE} if fmt in _DELIMITERS else {}
    reader = csv.reader(io.StringIO(text, newline=''), **options)
    try:
      rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
      raise DataError(f'{located(path, reader.line_num)}: not valid CSV ({err}); fix the quoting') from None
  if names:
    return list(names), rows
  if not rows:
    raise DataError(f'{path}: the log is empty; point data.path at a file of interactions')
  return [c.strip() for c in rows[0][1]], rows[1:]


def json_records(path, text: str) -> tuple[list[str], list[tuple[int, dict]]]:
  rows, keys = [], {}
  for n, line in enumerate(formats._lines(text), 1):
    if not line.strip():
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError as err:
      raise DataError(f'{located(path, n)}: not valid JSON ({err.msg}); fix the line or remove it') from None
    if not isinstance(value, dict):
      raise DataError(f'{located(path, n)}: a JSON {type(value).__name__}, not an object; write one object per line')
    keys.update(dict.fromkeys(value))
    rows.append((n, value))
  return list(keys), rows


def _number(value, what: str, where: str, problems: list) -> float:
  try:
    number = float(value)
  except (TypeError, ValueError):
    number = math.nan
    problems.append(f'{where}: {what} {value!r} is not a number; correct the row, or set '
                    f'data.interactions.{what}_column to the {what} column')
    return number
  if not math.isfinite(number):
    problems.append(f'{where}: {what} {value!r} is not finite; correct the row or remove it')
  return number


def _seconds(value, where: str, problems: list) -> int:
  """Integer seconds of a timestamp: a number, or an ISO 8601 date-time (UTC unless it names a zone)."""
  if isinstance(value, str) and value.strip() and not value.strip().lstrip('-').replace('.', '', 1).isdigit():
    try:
      moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
      problems.append(f'{where}: timestamp {value!r} is neither seconds nor an ISO 8601 date-time; correct it')
      return 0
    moment = moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())
  number = _number(value, 'timestamp', where, problems)
  return int(number) if math.isfinite(number) else 0


def read(path: str, ic) -> Log:
  """The log at `path` under config.data.interactions `ic`; DataError naming the file and line of every problem."""
  fmt = file_format(path, ic.format)
  text = formats._checked_text(path, formats._decode(path, formats._read_bytes(path)))
  if fmt == 'dat' and not ic.names:
    raise DataError(f"{path}: a .dat log has no header; name its columns in data.interactions.names, e.g. ['user', "
                    "'item', 'rating', 'timestamp'] for MovieLens ratings.dat")
  header, rows = json_records(path, text) if fmt == 'jsonl' else records(path, text, fmt, list(ic.names))
  wanted = _columns(ic)
  for role, column in wanted.items():
    if column not in header:
      raise formats._missing_column(str(path), column, f'data.interactions.{role}_column', header,
                                    'keys' if fmt == 'jsonl' else 'columns')
  at = {role: header.index(column) for role, column in wanted.items()} if fmt != 'jsonl' else dict(wanted)
  values = {role: [] for role in wanted}
  problems = []
  for n, row in rows:
    where = located(path, n)
    if fmt != 'jsonl' and len(row) != len(header):
      problems.append(f'{where}: {len(row)} fields, the header has {len(header)}; correct the row')
      continue
    if fmt == 'jsonl' and any(column not in row for column in wanted.values()):
      missing = [column for column in wanted.values() if column not in row]
      problems.append(f'{where}: no {", ".join(map(repr, missing))}; give every object the same keys')
      continue
    cell = {role: row[key] for role, key in at.items()}
    values['user'].append(str(cell['user']).strip())
    values['item'].append(str(cell['item']).strip())
    if 'rating' in cell:
      values['rating'].append(_number(cell['rating'], 'rating', where, problems))
    if 'timestamp' in cell:
      values['timestamp'].append(_seconds(cell['timestamp'], where, problems))
  if problems:
    raise formats._problems(str(path), problems)
  if not values['user']:
    raise DataError(f'{path}: the log has no rows; point data.path at a file of interactions')
  return _without_duplicates(path, values)


def _without_duplicates(path, values: dict) -> Log:
  users, items = np.asarray(values['user'], dtype=object), np.asarray(values['item'], dtype=object)
  ratings = np.asarray(values['rating'], np.float32) if 'rating' in values else None
  times = np.asarray(values['timestamp'], np.int64) if 'timestamp' in values else None
  blank = np.zeros(len(users), np.int64)
  third = times if times is not None else ratings if ratings is not None else blank
  keys = list(zip(users, items, third))
  last = {key: i for i, key in enumerate(keys)}
  keep = np.fromiter(sorted(last.values()), np.int64)
  take = lambda a: None if a is None else a[keep]
  return Log(take(users), take(items), take(ratings), take(times), str(path), duplicates=len(keys) - len(keep))
