"""Dotted keys of nested configs ('optimizer.learning_rate'): flattening, setting, and the closest valid key to a
typo."""
from __future__ import annotations

import difflib
from typing import Any, Iterator

import ml_collections


def set_key(config, key: str, value) -> None:
  """Sets the dotted `key` ('optimizer.learning_rate') of a (nested) ConfigDict to `value`."""
  *sections, leaf = key.split('.')
  node = config
  for s in sections:
    node = node[s]
  node[leaf] = value


def flatten(config: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
  """Leaves of a (nested) ConfigDict or dict as ('a.b.c', value)."""
  items = config.items() if hasattr(config, 'items') else []
  for key, value in items:
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from flatten(value, path + '.')
    else:
      yield path, value


def closest_key(key: str, valid: list[str]) -> str:
  """' (did you mean x.y?)' for the closest valid key, or '' when none is close."""
  section, _, leaf = key.rpartition('.')
  initials = [k for k in valid if k.rpartition('.')[0] == section and len(leaf) > 1 and '_' not in leaf
              and ''.join(w[:1] for w in k.rpartition('.')[2].split('_')) == leaf.lower()]
  if len(initials) == 1:  # an abbreviation: 'optimizer.lr', 'optimizer.wd', 'train.bs'
    return f' (did you mean {initials[0]}?)'
  match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
  if not match:  # a typo in the last part only: compare within the same section
    same = [k for k in valid if k.rpartition('.')[0] == section]
    leaves = difflib.get_close_matches(leaf, [k.rpartition('.')[2] for k in same], n=1, cutoff=0.5)
    match = [f'{section}.{leaves[0]}' if section else leaves[0]] if leaves else []
  return f' (did you mean {match[0]}?)' if match else ''
