"""Are two runs the same, bit for bit? `python -m ftlab.compare RUN_A RUN_B` (exit status 0 when they are, 1 when not).

Compares what a run leaves that must not depend on how often it was interrupted or on which machine it ran (for
determinism checks): metrics.jsonl, summary.json (without its timing), the set of kept checkpoint steps and, in
each, every leaf of the train state, the loop state and the data-iterator position. Used by the preemption tests
and benchmarks/preemption_soak.py.
"""
from __future__ import annotations

import json
import os
import sys

IGNORED_FILES = ('commit_success.txt',)  # orbax: names the temporary directory the checkpoint was written in


def outputs(workdir: str) -> dict:
  """{name: bytes or value} of everything compared, for one run."""
  out = {}
  if os.path.exists(os.path.join(workdir, 'metrics.jsonl')):  # not for a run that diverged before evaluating
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      out['metrics.jsonl'] = f.read()
  if os.path.exists(os.path.join(workdir, 'summary.json')):  # not for a diverged run
    with open(os.path.join(workdir, 'summary.json')) as f:
      out['summary.json'] = json.load(f)
    out['summary.json'].pop('train_seconds_this_session', None)
  return {**out, **_checkpoints(workdir)}


def _checkpoints(workdir: str) -> dict:
  import jax
  import numpy as np
  import orbax.checkpoint as ocp
  directory = os.path.join(workdir, 'checkpoints')
  out = {'checkpoint steps': sorted(s for s in os.listdir(directory) if s.isdigit()) if os.path.isdir(directory)
         else []}
  for step in out['checkpoint steps']:
    state = ocp.StandardCheckpointer().restore(os.path.join(directory, step, 'state'))
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
      if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
      out[f'checkpoints/{step}/state{jax.tree_util.keystr(path)}'] = np.asarray(leaf).tobytes()
    for item in ('loop', 'data'):
      for root, _, files in os.walk(os.path.join(directory, step, item)):
        for name in files:
          if name not in IGNORED_FILES:
            with open(os.path.join(root, name), 'rb') as f:
              out[os.path.relpath(os.path.join(root, name), workdir)] = f.read()
  return out


def differences(a: str, b: str) -> list[str]:
  """What differs between the runs in workdirs `a` and `b` ([] when they are the same)."""
  x, y = outputs(a), outputs(b)
  found = [f'{k}: only in {a if k in x else b}' for k in sorted(set(x) ^ set(y))]
  return found + [f'{k}: differs' for k in sorted(set(x) & set(y)) if x[k] != y[k]]


def main(argv: list[str]) -> int:
  from ftlab import cli
  if cli.asked_for_help(argv, __doc__):
    return 0
  if len(argv) != 2:
    print('usage: python -m ftlab.compare RUN_A RUN_B', file=sys.stderr)
    return 2
  found = differences(*argv)
  for line in found:
    print(line)
  print(f'ftlab.compare: {"the same" if not found else f"{len(found)} differences"}')
  return 1 if found else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
