"""Packing examples into rows: several short examples share one row of a fixed number of tokens (a decoder's SFT
rows, an encoder's packed training batches), each kept whole and in one row."""
from __future__ import annotations

import numpy as np
from sortedcontainers import SortedList


def pack(lengths: np.ndarray, row_length: int) -> list[np.ndarray]:
  """Example indices per row: best-fit decreasing (each example, longest first, into the fullest row it fits)."""
  order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
  free = SortedList()  # (free tokens, row)
  rows: list[list[int]] = []
  for i in order:
    need = int(lengths[i])
    at = free.bisect_left((need, -1))
    if at < len(free):
      space, row = free.pop(at)
    else:
      space, row = row_length, len(rows)
      rows.append([])
    rows[row].append(i)
    if space - need > 0:
      free.add((space - need, row))
  return [np.asarray(sorted(r), np.int64) for r in rows]
