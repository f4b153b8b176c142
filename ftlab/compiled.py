"""Compiled programs shared by the runs of one process, and jax's persistent compilation cache across processes.

A run's train and eval steps are jax.jit of the pure steps with its static parts bound (see ftlab/steps.py). Two
runs with the same static key (ftlab/traced.py: they differ only in traced hyperparameters or in what only sets
the initial state and the loop) bind identical static parts, so they get the same jitted functions, which jax
compiled for the first run: a sweep over traced hyperparameters compiles its train step once in total. The
optimizer is safe to share because its hyperparameters are injected: its update reads them from the optimizer state
of the run at hand, not from the run it was built for. A model's initialisation is shared the same way. The last
MAX_ENTRIES programs are kept.

Across processes, jax's persistent compilation cache (on by default, in <workdir's parent>/.jax_cache; the
environment variable FTLAB_COMPILATION_CACHE gives another folder, or 'off') lets a rerun or another worker of a
sweep load what an earlier process compiled.
"""
from __future__ import annotations

import collections
import os
from typing import Any, Callable

import jax

MAX_ENTRIES = 8

_programs: collections.OrderedDict[Any, Any] = collections.OrderedDict()


def cached(key, build: Callable[[], Any]):
  """`build()` (jitted functions) once per hashable `key`; the last MAX_ENTRIES are kept."""
  if key not in _programs:
    _programs[key] = build()
    while len(_programs) > MAX_ENTRIES:
      _programs.popitem(last=False)
  _programs.move_to_end(key)
  return _programs[key]


def clear() -> None:
  _programs.clear()


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
