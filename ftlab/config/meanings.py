"""What each config key means, read from the comments of ftlab/config/schema.py (the one place they are written), and
the resolved config printed with them: `python -m ftlab.main --config FILE [--config.KEY=VALUE ...] --show-config`.

A key's meaning is the comment on its own line in `defaults()` ('rank': 8,  # ...) or, failing that, the comment
block just above it; a section's is the comment above its opening brace.
"""
from __future__ import annotations

import inspect
import re

from ftlab.config import keys, schema

_KEY = re.compile(r"^(\s*)'(\w+)':\s*(.*)$")
WIDTH = 110  # a meaning is cut to this many characters


def meanings() -> dict[str, str]:
  """{dotted key or section: its meaning} for every commented key of the schema."""
  lines = inspect.getsource(schema.defaults).splitlines()
  out, path, above = {}, [], []  # path: [(indent, name)] of the open sections
  for line in lines:
    stripped = line.strip()
    if stripped.startswith('#'):
      above.append(stripped.lstrip('# ').strip())
      continue
    m = _KEY.match(line)
    if not m:
      above = []
      continue
    indent, name, rest = len(m.group(1)), m.group(2), m.group(3)
    path = [(i, n) for i, n in path if i < indent]
    dotted = '.'.join([n for _, n in path] + [name])
    _, _, trailing = rest.partition('  # ')
    text = trailing.strip() or ' '.join(above)
    if text:
      out[dotted] = text
    if rest.startswith('{') and not rest.rstrip(',').endswith('}'):
      path.append((indent, name))
    above = []
  return out


def show(config) -> str:
  """The config, one key a line: `key = value` ('*' where it differs from the schema's default) and its meaning."""
  said, default = meanings(), dict(keys.flatten(schema.defaults().to_dict()))
  rows = []
  for key, value in keys.flatten(config.to_dict()):
    mark = '*' if key not in default or default[key] != value else ' '
    meaning = said.get(key) or _section_meaning(said, key)
    text = f'{mark} {key} = {value!r}'
    rows.append(text + (f'  # {_cut(meaning)}' if meaning else ''))
  return '\n'.join(['# the resolved config (* differs from the default); ftlab/config/schema.py says more'] + rows)


def _section_meaning(said: dict, key: str) -> str:
  """A key without a comment of its own: its section's, marked as such."""
  section = key.rpartition('.')[0]
  return f'({section}) {said[section]}' if section in said else ''


def _cut(text: str) -> str:
  return text if len(text) <= WIDTH else text[:WIDTH - 3].rstrip() + '...'
