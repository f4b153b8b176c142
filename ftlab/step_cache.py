"""Compiled train and eval steps shared by the runs of one process, so that a sweep over traced hyperparameters
compiles its train step once in total.

A run's steps are jax.jit of train_step / eval_step with static parts bound (model, task, optimizer, freezing
masks). Two runs whose configs differ only in values that the state carries as traced numbers (learning rate,
weight decay, dropout rates, label smoothing, class weights, the schedule's numbers: warm-up, end factor, decay
rate, boundaries and values...; with optimizer.traced_freezing, which groups are frozen), or in what only changes
the initial state, the data order or the loop around the step (seed, pretrained weights, evaluation, early
stopping, checkpointing), build identical static parts. They get the same jitted functions, which jax compiled for the first run, instead of fresh
ones. The optimizer is safe to share because its hyperparameters are injected: its update reads them from the
optimizer state of the run at hand, not from the run it was built for.

Any other difference (model, data shapes, the schedule's name or list lengths, parameter groups, run length...)
makes a new entry. The last MAX_ENTRIES are kept.

Across processes, jax's persistent compilation cache (on by default, in <workdir's parent>/.jax_cache; the
environment variable FTLAB_COMPILATION_CACHE gives another folder, or 'off') lets a rerun or another worker of a
sweep load what an earlier process compiled.
"""
from __future__ import annotations

import collections
import json
import os
from typing import Any, Callable

import jax

from ftlab import config as config_lib
from ftlab.optim import schedules

# Config keys that never change a compiled step: traced values, or the initial state / loop only. The schedule's
# numbers are traced (resolved to steps on the host first); the lengths of its lists still count (LENGTH_KEYS).
UNSTATIC_KEYS = ('seed', 'optimizer.learning_rate', 'optimizer.weight_decay', 'optimizer.lr_batch_scaling',
                 'optimizer.base_batch_size', 'model.dropout_rate', 'model.attention_dropout_rate',
                 'model.head_dropout_rate', 'model.pretrained', 'model.download', 'train.label_smoothing',
                 'train.class_weights', 'train.balance_classes', 'train.log_every_steps',
                 *(f'schedule.{k}' for k in schedules.TRACED_KEYS))
LENGTH_KEYS = tuple(f'schedule.{k}' for k in schedules.LIST_KEYS)
# With optimizer.traced_freezing: what selects the groups frozen for the whole run (a traced 0/1 per parameter).
TRACED_FREEZING_KEYS = ('optimizer.freeze',)
UNSTATIC_SECTIONS = ('init.', 'eval.', 'early_stopping.', 'checkpoint.')
MAX_ENTRIES = 8

_entries: collections.OrderedDict[str, tuple[Callable, Callable]] = collections.OrderedDict()


def static_key(config, *, model, task, steps_per_epoch: int, total_steps: int) -> str:
  """What the compiled steps of a run depend on, as text: the config without UNSTATIC keys, the model and task
  (their dataclass reprs name every field) and the run's step counts."""
  flat = dict(config_lib.flatten(config.to_dict()))
  traced_freezing = bool(flat.get('optimizer.traced_freezing'))
  static = {k: v for k, v in flat.items() if k not in UNSTATIC_KEYS and not k.startswith(UNSTATIC_SECTIONS)
            and not (traced_freezing and k in TRACED_FREEZING_KEYS)}
  static.update({f'len({k})': len(flat[k]) for k in LENGTH_KEYS if k in flat})
  if 'optimizer.groups' in static:
    static['optimizer.groups'] = _static_groups(static['optimizer.groups'], traced_freezing=traced_freezing)
  return json.dumps([static, repr(model), repr(task), steps_per_epoch, total_steps], sort_keys=True, default=repr)


def _static_groups(value, *, traced_freezing: bool):
  """optimizer.groups without what is traced: a group's own schedule reduced to whether it has one, its name,
  staircase and list lengths; with traced freezing, without `frozen`."""
  if not isinstance(value, (list, tuple)):
    return value
  out = []
  for item in value:
    if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict)):
      out.append(item)
      continue
    pattern, settings = item
    settings = {k: v for k, v in settings.items() if not (traced_freezing and k == 'frozen')}
    sched = settings.pop('schedule', None)
    if isinstance(sched, dict) and sched:
      settings['schedule'] = {'own': True, **{k: len(v) if k in schedules.LIST_KEYS else v for k, v in sched.items()
                                              if k not in schedules.TRACED_KEYS or k in schedules.LIST_KEYS}}
    elif sched is not None and not isinstance(sched, dict):
      settings['schedule'] = sched
    out.append([pattern, settings])
  return out


def steps(key: str, build: Callable[[], tuple[Any, Any]]) -> tuple[Callable, Callable]:
  """(train step, eval step) jitted for `key`; `build()` -> (train partial, eval partial) makes them when new."""
  if key in _entries:
    _entries.move_to_end(key)
    return _entries[key]
  train_fn, eval_fn = build()
  _entries[key] = (jax.jit(train_fn, donate_argnums=0), jax.jit(eval_fn))
  while len(_entries) > MAX_ENTRIES:
    _entries.popitem(last=False)
  return _entries[key]


_functions: collections.OrderedDict[Any, Callable] = collections.OrderedDict()


def jitted(key, build: Callable[[], Callable]) -> Callable:
  """jax.jit(build()) once per hashable `key` (the last MAX_ENTRIES kept): for functions every run calls with
  the same static parts, such as a model's initialisation, which would otherwise run op by op."""
  if key not in _functions:
    _functions[key] = jax.jit(build())
    while len(_functions) > MAX_ENTRIES:
      _functions.popitem(last=False)
  _functions.move_to_end(key)
  return _functions[key]


def clear() -> None:
  _entries.clear()
  _functions.clear()



def enable_persistent_cache(workdir: str) -> str:
  """Turns on jax's persistent compilation cache for this process, once (the first workdir's parent wins); returns
  its folder, or '' when FTLAB_COMPILATION_CACHE is 'off'."""
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  folder = os.environ.get('FTLAB_COMPILATION_CACHE', '')
  if folder.lower() == 'off':
    return ''
  folder = folder or os.path.join(os.path.dirname(os.path.abspath(workdir.rstrip('/'))), '.jax_cache')
  jax.config.update('jax_compilation_cache_dir', folder)
  # jax caches only compilations over 1 s by default; a resumed run (after a preemption) recompiles its many small
  # programs (init, steps, evaluation shapes) otherwise, which for small models is most of its start-up
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return folder
