"""Param surgery on plain pytrees: merge pretrained parameters into a freshly initialised tree by path (with a
report), drop or re-initialise by regex, resize embedding tables, cast. Weight import (ftlab.pretrained.hf, .vision)
renames a checkpoint's tensors to ftlab's paths and then calls `merge`.
"""
from __future__ import annotations

import json
import os
import re

import jax
import numpy as np

from ftlab import checkpoints
from ftlab.optim import groups


class SurgeryError(ValueError):
  """Pretrained parameters that cannot go into the model as asked."""


def flat(tree) -> dict[str, object]:
  """{'a/b/c': leaf} of a parameter tree (the inverse of `unflatten`)."""
  return {groups.path_str(kp): v for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


MISMATCH_FIX = ('. Re-initialise them with init.reinit (a regex over parameter paths, e.g. \'^head/\' for a head '
                'with another label count) or change model.* to the checkpoint\'s shape')


def mismatches(fresh, loaded, *, reinit: str = '') -> list[str]:
  """'path: checkpoint (shape) vs model (shape)' for each parameter both trees hold with different shapes, except
  those matching `reinit`. `fresh` may hold jax.ShapeDtypeStructs (checked before any compute)."""
  source = flat(loaded)
  return [f'{path}: checkpoint {tuple(np.shape(source[path]))} vs model {tuple(value.shape)}'
          for path, value in flat(fresh).items()
          if path in source and not (reinit and re.search(reinit, path))
          and tuple(np.shape(source[path])) != tuple(value.shape)]


def merge(fresh, loaded, *, reinit: str = '') -> tuple[object, dict[str, list[str]]]:
  """`fresh` with each parameter replaced by `loaded`'s at the same path (cast to fresh's dtype), except those
  matching `reinit`.

  Returns (params, report) with report lists 'loaded', 'reinitialised', 'missing' (in the model, not in the
  checkpoint: left fresh) and 'unexpected' (in the checkpoint, not in the model: ignored). A shape mismatch on a
  parameter that is not re-initialised is an error naming it, both shapes, and the config key to change.
  """
  bad = mismatches(fresh, loaded, reinit=reinit)
  if bad:
    raise SurgeryError('pretrained shapes differ from the model: ' + '; '.join(bad) + MISMATCH_FIX)
  source = flat(loaded)
  report = {'loaded': [], 'reinitialised': [], 'missing': [], 'unexpected': []}

  def take(key_path, value):
    path = groups.path_str(key_path)
    if reinit and re.search(reinit, path):
      report['reinitialised'].append(path)
      return value
    if path not in source:
      report['missing'].append(path)
      return value
    report['loaded'].append(path)
    return jax.numpy.asarray(np.asarray(source[path]), dtype=value.dtype)

  params = jax.tree_util.tree_map_with_path(take, fresh)
  report['unexpected'] = sorted(set(source) - set(flat(fresh)))
  return params, report


def unflatten(flat: dict[str, object]) -> dict:
  """A nested tree from {'a/b/c': value}."""
  tree = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def drop(tree, pattern: str) -> dict:
  """`tree` without the parameters whose path matches `pattern` (e.g. a checkpoint's old head before merging)."""
  return unflatten({p: v for p, v in flat(tree).items() if not re.search(pattern, p)})


def reinit(params, fresh, pattern: str) -> dict:
  """`params` with the parameters matching `pattern` taken from `fresh` (a newly initialised tree like it)."""
  new = flat(fresh)
  return unflatten({p: new[p] if re.search(pattern, p) else v for p, v in flat(params).items()})


def cast(tree, dtype, pattern: str = '') -> dict:
  """`tree` with the floating parameters matching `pattern` ('' = all) cast to `dtype` (e.g. to store bfloat16)."""
  def one(path, v):
    if pattern and not re.search(pattern, path) or not jax.numpy.issubdtype(v.dtype, jax.numpy.floating):
      return v
    return jax.numpy.asarray(v, dtype)
  return unflatten({p: one(p, v) for p, v in flat(tree).items()})


def resize_rows(table, rows: int, fresh_rows=None, *, path: str = 'parameter'):
  """An embedding table [N, D] cut or grown to `rows` (a tokenizer with more or fewer tokens); new rows come from
  `fresh_rows` (a fresh init of at least `rows` rows), else zeros."""
  table = np.asarray(table)
  if table.ndim != 2:
    raise SurgeryError(f'{path}: resize_rows takes a 2-D embedding table, got shape {table.shape}')
  if rows <= len(table):
    return table[:rows]
  extra = np.asarray(fresh_rows)[len(table):rows] if fresh_rows is not None else np.zeros(
      (rows - len(table), table.shape[1]), table.dtype)
  return np.concatenate([table, extra.astype(table.dtype)])


def _best_step(run_dir: str) -> int:
  summary_path = os.path.join(run_dir, 'summary.json')
  if not os.path.exists(summary_path):
    raise SurgeryError(f'{run_dir}: no summary.json; finish that run before fine-tuning from it')
  with open(summary_path) as f:
    return json.load(f)['best_step']


def check_run_params(run_dir: str, abstract, *, reinit: str, key: str = 'init.checkpoint') -> list[str]:
  """Problems of initialising parameters shaped like `abstract` from the finished run in `run_dir`, from the
  checkpoint's metadata alone (before any compute): shape mismatches name the parameter and both shapes."""
  try:
    saved = checkpoints.params_shapes(os.path.join(run_dir, 'checkpoints'), _best_step(run_dir))
  except (SurgeryError, OSError, ValueError, KeyError) as err:
    return [f'{key}: {run_dir} cannot be read ({err}); point {key} at the --workdir of a finished ftlab run']
  bad = mismatches(abstract, saved, reinit=reinit)
  return [f'{key}: shapes differ from the model: {"; ".join(bad)}{MISMATCH_FIX}'] if bad else []


def load_run_params(run_dir: str, fresh, *, reinit: str):
  """`fresh` initialised from the best checkpoint of the finished ftlab run in `run_dir` (its summary.json)."""
  best_step = _best_step(run_dir)
  loaded = checkpoints.restore_params(os.path.join(run_dir, 'checkpoints'), best_step)
  params, report = merge(fresh, loaded, reinit=reinit)
  counts = ', '.join(f'{len(v)} {k}' for k, v in report.items())
  print(f'ftlab: initialised from {run_dir} (step {best_step}): {counts}'
        + (f'; re-initialised: {", ".join(report["reinitialised"])}' if report['reinitialised'] else ''), flush=True)
  return params
