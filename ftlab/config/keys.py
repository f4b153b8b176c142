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
  same = difflib.get_close_matches(leaf, [k.rpartition('.')[2] for k in valid if k.rpartition('.')[0] == section],
                                   n=1, cutoff=0.75)
  elsewhere = '' if same else _in_another_section(section, leaf, valid)
  if elsewhere:  # 'optimizer.schedule', 'optimizer.warmup_steps': a section or a key of its own elsewhere
    return f' (did you mean {elsewhere}?)'
  match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
  if not match:  # a typo in the last part only: compare within the same section
    same = [k for k in valid if k.rpartition('.')[0] == section]
    leaves = difflib.get_close_matches(leaf, [k.rpartition('.')[2] for k in same], n=1, cutoff=0.5)
    match = [f'{section}.{leaves[0]}' if section else leaves[0]] if leaves else []
  return f' (did you mean {match[0]}?)' if match else ''


def _in_another_section(section: str, leaf: str, valid: list[str]) -> str:
  """The key that `leaf` names outside `section`: the first key of a section called `leaf` ('schedule' ->
  'schedule.name'), or a key named as `leaf`'s first word or close to it ('warmup_steps' -> 'schedule.warmup');
  or ''."""
  if not section:
    return ''
  sections = [k for k in valid if k.split('.')[0] == leaf and '.' in k]
  if sections:
    return f'{leaf}.name' if f'{leaf}.name' in sections else sections[0]
  others = {k.rpartition('.')[2]: k for k in valid if k.rpartition('.')[0] != section}
  if leaf.split('_')[0] in others:  # 'warmup_steps' -> 'warmup'
    return others[leaf.split('_')[0]]
  close = difflib.get_close_matches(leaf, list(others), n=1, cutoff=0.8 if len(leaf) < 8 else 0.65)
  return others[close[0]] if close else ''

