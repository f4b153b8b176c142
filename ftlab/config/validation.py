"""Validation of a config before any compute: `validate(config)` checks it against the schema (unknown keys with the
closest valid one, wrong types, then out-of-range values, ftlab/config/ranges.py) and `check_run(config, ...)` adds
the checks that need the data size and device count. Both return every problem at once, as
'key: what is wrong and what to do'.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import ml_collections

from ftlab import metrics
from ftlab.config.keys import closest_key, flatten
from ftlab.config.ranges import range_problems
from ftlab.config.schema import DURATION_KEYS, DURATION_LIST_KEYS, LIST_KEYS, defaults
from ftlab.optim import schedules


def _has_huge_int(value: Any) -> bool:
  """Whether `value` is or holds (in lists, tuples, sets, dicts) an int beyond 64 bits."""
  if isinstance(value, int):
    return not -2**63 <= value < 2**63
  if isinstance(value, dict):
    return any(_has_huge_int(k) or _has_huge_int(v) for k, v in value.items())
  return isinstance(value, (list, tuple, set, frozenset)) and any(_has_huge_int(v) for v in value)


def _type_problem(key: str, value: Any, default: Any) -> str | None:
  """A message when `value` does not have the schema's type for `key`."""
  if _has_huge_int(value):  # no key takes one, and str() refuses ints of more than 4300 digits: not printed
    return f'{key}: holds an integer beyond 64 bits; use values between -2**63 and 2**63 - 1'

  def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)

  def is_duration(v):
    return is_int(v) or isinstance(v, str)

  if key in DURATION_KEYS:
    ok, want = is_duration(value), "a duration (int steps, or a string like '500 steps', '3 epochs', '10%')"
  elif key in DURATION_LIST_KEYS:
    ok = isinstance(value, (list, tuple)) and all(is_duration(v) for v in value)
    want = 'a list of durations'
  elif key in LIST_KEYS:
    elem = LIST_KEYS[key]
    check = {int: is_int, str: lambda v: isinstance(v, str)}.get(elem, lambda v: is_int(v) or isinstance(v, float))
    ok, want = isinstance(value, (list, tuple)) and all(check(v) for v in value), f'a list of {elem.__name__}'
  elif isinstance(default, bool):
    ok, want = isinstance(value, bool), 'true or false'
  elif is_int(default):
    ok, want = is_int(value), 'an int'
  elif isinstance(default, float):
    ok, want = is_int(value) or isinstance(value, float), 'a number'
  elif isinstance(default, str):
    ok, want = isinstance(value, str), 'a string'
  else:
    ok, want = True, ''
  if not ok:
    return f'{key}: expected {want}, got {value!r} ({type(value).__name__})'
  if _non_finite(value):  # inf passes every `> 0` check and nan fails them with a puzzling message
    return (f'{key}: must be a finite number, got {list(value) if isinstance(value, (list, tuple)) else value!r}; '
            f'set a finite value (the default is {default!r})')
  return None


def _non_finite(value: Any) -> bool:
  """Whether `value` is, or is a list holding, an infinite or NaN float."""
  if isinstance(value, float):
    return not math.isfinite(value)
  return isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v) for v in value)


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Every problem of `config` against the schema: unknown keys, wrong types, then (if types are right) ranges."""
  schema = dict(flatten(defaults()))
  given = dict(flatten(config))
  valid = sorted(schema)
  problems = [f'{k}: unknown key{closest_key(k, valid)}' for k in given if k not in schema]
  problems += [f'{k}: missing (the schema default is {schema[k]!r})' for k in schema if k not in given]
  typed = {k: _type_problem(k, v, schema[k]) for k, v in given.items() if k in schema}
  problems += [m for m in typed.values() if m]
  # Ranges of every well-typed key: ill-typed or absent keys are checked at their defaults and not reported twice.
  checkable = defaults()
  for key, value in given.items():
    if key in schema and not typed[key]:
      *sections, leaf = key.split('.')
      node = checkable
      for s in sections:
        node = node[s]
      node[leaf] = value
  bad_keys = {k for k, m in typed.items() if m}
  problems += [m for m in range_problems(checkable) if not any(m.startswith(k + ':') for k in bad_keys)]
  return problems


def eval_mode(config) -> str:
  """'min' or 'max' for the selection metric."""
  mode = config.eval.mode
  return metrics.METRIC_MODES[config.eval.metric] if mode == 'auto' else mode


def check_run(config, *, num_devices: int, total_steps: int, steps_per_epoch: int) -> list[str]:
  """Checks that need the device count and the run length (known once the data source is open)."""
  return (_device_problems(config, num_devices) + _length_problems(config, total_steps, steps_per_epoch)
          + _init_checkpoint_problems(config.init.checkpoint))


def _device_problems(config, num_devices: int) -> list[str]:
  problems = []
  for key in ('train.batch_size', 'eval.batch_size'):
    section, leaf = key.split('.')
    size = config[section][leaf]
    if size % num_devices:
      problems.append(f'{key}: {size} does not divide by the {num_devices} devices; use a multiple of {num_devices}')
  accum, batch = config.train.grad_accum_steps, config.train.batch_size
  if accum > 1 and batch % (accum * num_devices):
    problems.append(f'train.grad_accum_steps: train.batch_size {batch} does not split into {accum} micro-batches '
                    f'over {num_devices} devices; make it a multiple of {accum * num_devices}')
  return problems


def _length_problems(config, total_steps: int, steps_per_epoch: int) -> list[str]:
  problems = []
  every = config.eval.every_steps or steps_per_epoch
  if every > total_steps:
    problems.append(f'eval.every_steps: {every} is larger than the run ({total_steps} steps); lower it or lengthen '
                    'the run')
  if config.checkpoint.every_steps > total_steps:
    problems.append(f'checkpoint.every_steps: {config.checkpoint.every_steps} is larger than the run '
                    f'({total_steps} steps)')
  lp_ft = config.optimizer.lp_ft
  try:
    probe_steps = lp_ft != '' and schedules.parse_duration(lp_ft, steps_per_epoch=steps_per_epoch,
                                                           total_steps=total_steps)
  except schedules.DurationError:  # validate() reports it
    probe_steps = 0
  if probe_steps and probe_steps >= total_steps:
    problems.append(f'optimizer.lp_ft: {lp_ft!r} ({probe_steps} steps) is not shorter than the run ({total_steps} '
                    'steps), so the phase that trains everything never starts; shorten it or lengthen the run (for a '
                    "linear probe alone, freeze the backbone with optimizer.freeze and set lp_ft to '')")
  return problems


def _init_checkpoint_problems(src: str) -> list[str]:
  """init.checkpoint must be a finished ftlab run."""
  if not src:
    return []
  if not os.path.isdir(os.path.join(src, 'checkpoints')):
    return [f'init.checkpoint: {src!r} is not an ftlab run directory (no checkpoints/ in it); point init.checkpoint '
            'at the --workdir of a finished ftlab run']
  summary = os.path.join(src, 'summary.json')
  try:
    with open(summary, encoding='utf-8') as f:
      best_step = json.load(f).get('best_step')
    if not isinstance(best_step, int) or isinstance(best_step, bool):
      raise ValueError('no integer best_step')
  except FileNotFoundError:
    return [f'init.checkpoint: {src!r} holds no summary.json: that run has not finished; finish that run (rerun its '
            'command) or point init.checkpoint at a finished one']
  except (OSError, ValueError, AttributeError) as err:  # unreadable, not JSON, not an object, no best step
    return [f'init.checkpoint: {summary} is not a finished run\'s summary ({err}); rerun that run to rewrite it, '
            'or point init.checkpoint at another finished run']
  return []
