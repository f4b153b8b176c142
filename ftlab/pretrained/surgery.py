"""Param surgery: put pretrained parameters into a freshly initialised tree, by path, with a report.

The models issue adds weight import from Hugging Face / timm files on top of `merge`.
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


def _flat(tree) -> dict[str, object]:
  return {groups.path_str(kp): v for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def merge(fresh, loaded, *, reinit: str = '') -> tuple[object, dict[str, list[str]]]:
  """`fresh` with each parameter replaced by `loaded`'s at the same path, except those matching `reinit`.

  Returns (params, report) with report lists 'loaded', 'reinitialised', 'missing' (in the model, not in the
  checkpoint: left fresh) and 'unexpected' (in the checkpoint, not in the model: ignored). A shape mismatch on a
  parameter that is not re-initialised is an error naming it, both shapes, and the config key to change.
  """
  source = _flat(loaded)
  report = {'loaded': [], 'reinitialised': [], 'missing': [], 'unexpected': []}
  mismatched = []

  def take(key_path, value):
    path = groups.path_str(key_path)
    if reinit and re.search(reinit, path):
      report['reinitialised'].append(path)
      return value
    if path not in source:
      report['missing'].append(path)
      return value
    new = np.asarray(source[path])
    if new.shape != value.shape:
      mismatched.append(f'{path}: checkpoint {new.shape} vs model {value.shape}')
      return value
    report['loaded'].append(path)
    return jax.numpy.asarray(new, dtype=value.dtype)

  params = jax.tree_util.tree_map_with_path(take, fresh)
  if mismatched:
    raise SurgeryError('pretrained shapes differ from the model: ' + '; '.join(mismatched) +
                       '. Re-initialise them with init.reinit (a regex over parameter paths) or change model.*')
  report['unexpected'] = sorted(set(source) - set(_flat(fresh)))
  return params, report


def load_run_params(run_dir: str, fresh, *, reinit: str):
  """`fresh` initialised from the best checkpoint of the finished ftlab run in `run_dir` (its summary.json)."""
  summary_path = os.path.join(run_dir, 'summary.json')
  if not os.path.exists(summary_path):
    raise SurgeryError(f'{run_dir}: no summary.json; finish that run before fine-tuning from it')
  with open(summary_path) as f:
    best_step = json.load(f)['best_step']
  loaded = checkpoints.restore_params(os.path.join(run_dir, 'checkpoints'), best_step)
  params, report = merge(fresh, loaded, reinit=reinit)
  counts = ', '.join(f'{len(v)} {k}' for k, v in report.items())
  print(f'ftlab: initialised from {run_dir} (step {best_step}): {counts}'
        + (f'; re-initialised: {", ".join(report["reinitialised"])}' if report['reinitialised'] else ''), flush=True)
  return params
