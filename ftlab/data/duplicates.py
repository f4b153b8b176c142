"""Evaluation examples whose input is also a training example's: real datasets hold natural duplicates (SST-2's
dev set repeats some training phrases), and each inflates its split's score a little. Counted per split by the
input's value (text and its pair, a sentence's words, an image's pixels), reported as a warning and kept in the
data report (summary.json's 'data' -> 'duplicates'); data.allow_split_overlap does not silence it, since these are
rows the splits do not share by their specification (that is refused before: ftlab/data/splits.py)."""
from __future__ import annotations

import hashlib
import sys

import numpy as np


def _key(x) -> bytes:
  if isinstance(x, str):
    return x.encode('utf-8', 'surrogatepass')
  if isinstance(x, (list, tuple)):
    return b'\x1f'.join(_key(y) for y in x)
  array = np.asarray(x)
  return hashlib.blake2b(array.tobytes() + str(array.shape).encode(), digest_size=16).digest()


def _inputs(columns: dict, task: str) -> list | None:
  """Each example's input in `columns` (a split's), or None where ftlab does not hold it (images left on disk)."""
  if task == 'text':
    pairs = columns.get('text_pair')
    return list(columns['text']) if pairs is None else list(zip(columns['text'], pairs))
  if task == 'tags':
    return [tuple(words) for words in columns['tokens']]
  return list(columns['image']) if task == 'image' and 'image' in columns else None


def _shown(x) -> str:
  if isinstance(x, str):
    return repr(x[:80] + ('...' if len(x) > 80 else ''))
  if isinstance(x, tuple) and all(isinstance(y, str) for y in x):
    return repr(' '.join(x)[:80])
  return 'an image'


def found(columns: dict[str, dict], task: str) -> dict:
  """{role: {'count', 'of', 'example'}} for the validation and test splits that repeat training inputs; printed as a
  warning."""
  train = _inputs(columns['train'], task)
  if train is None:
    return {}
  seen = {_key(x) for x in train}
  out = {}
  for role in ('validation', 'test'):
    xs = _inputs(columns[role], task)
    hits = [x for x in xs if _key(x) in seen]
    if hits:
      out[role] = {'count': len(hits), 'of': len(xs), 'example': _shown(hits[0])}
      print(f'ftlab: warning: {len(hits)} of {len(xs)} {role} examples have the input of a training example (e.g. '
            f'{out[role]["example"]}); natural duplicates, but they raise the {role} score a little',
            file=sys.stderr, flush=True)
  return out
