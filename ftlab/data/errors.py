"""The one error type of the data layer: what is wrong, where (file, line, record, config key) and the fix."""
from __future__ import annotations


class DataError(ValueError):
  """Bad data or a data config that cannot work. The message names the file/line/record and what to change."""


def located(path, line: int | None = None) -> str:
  """'path' or 'path:line' for messages (line is 1-based)."""
  return f'{path}:{line}' if line is not None else str(path)
