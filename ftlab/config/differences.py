"""What differs between a workdir's saved config and the one given now: a rerun may change only the run's length
and its device layout; anything else is another run."""
from __future__ import annotations

import json

from ftlab.config.keys import flatten
from ftlab.config.schema import RESUMABLE_SECTIONS, RUN_LENGTH_KEYS, defaults


def _same(x, y) -> bool:
  return json.loads(json.dumps(x)) == json.loads(json.dumps(y))


def config_differences(saved: dict, current: dict) -> list[str]:
  """Keys whose values differ between a saved run config and the current one, ignoring run length."""
  a, b = dict(flatten(saved)), dict(flatten(current))
  schema = dict(flatten(defaults()))
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in RUN_LENGTH_KEYS or key.startswith(RESUMABLE_SECTIONS):
      continue
    if key not in a and key in schema and _same(b.get(key), schema[key]):
      continue  # a key added to ftlab after the run was saved, left at its default: the run is the same
    # Through JSON, as the saved config was: tuples become lists at any depth.
    va, vb = (json.loads(json.dumps(d.get(key, '<absent>'))) for d in (a, b))
    if va != vb:
      diffs.append(f'{key}: {va!r} in the workdir, {vb!r} now')
  return diffs
