"""Checkpoints with orbax: train state, data-iterator position and loop state saved together, atomically.

Keeps the latest `keep` checkpoints plus the best one by the selection metric (orbax preservation policies).
orbax writes each step to a temporary directory and renames it when complete, so a run killed mid-write
never takes a partial checkpoint for the latest (the leftover temporary directory is removed when the manager next
opens). A committed checkpoint that no longer reads back (a truncated or damaged file) is moved aside by
`restore_latest`, which resumes from the newest one that does and warns, naming both.

The state is saved as the loop holds it, unreplicated: in every parallel.Layout (replicated, FSDP-sharded, the
per-device 'pmap' program) it is one global array per leaf, so a checkpoint restores under any layout and device
count (restore takes the shardings of its template). Multi-host: every process calls save and restore, which orbax
coordinates (each process writes the shards it holds; process 0 commits the step); grain writes one iterator file
per process, data/process_<i>-of-<n>.json, so a run resumes with the number of processes it was saved with.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import grain.checkpoint as grain_checkpoint
import jax
import numpy as np
import orbax.checkpoint as ocp

from ftlab import quiet

_policies = ocp.checkpoint_managers
quiet.install()


def _metric_fn(mode: str):
  """The selection metric of a checkpoint's metrics; a preemption checkpoint (no metric) ranks last."""
  worst = -math.inf if mode == 'max' else math.inf
  return lambda metrics: metrics.get('value', worst)


@dataclasses.dataclass
class _LatestRegular:
  """orbax LatestN over the regular checkpoints: one saved on SIGTERM (metrics {'preempted': 1}) counts for nothing
  and is kept until the run deletes it, so a preempted run keeps the same checkpoints as one that never stopped."""
  n: int

  def should_preserve(self, checkpoints, *, context):
    del context
    preempted = [bool((c.metrics or {}).get('preempted')) for c in checkpoints]
    regular = [i for i, p in enumerate(preempted) if not p]
    keep = set(regular[-self.n:])
    return [p or i in keep for i, p in enumerate(preempted)]


class Checkpoints:
  """One run's checkpoint directory. `mode` ('min'/'max') orders the metric given to `save`. `read_only`: only to
  look (latest_step), never to save; such a manager leaves temporary directories alone (a writer's cleanup, run in
  the background, would otherwise race with another manager's save in progress)."""

  def __init__(self, directory: str, *, keep: int, mode: str, read_only: bool = False):
    policy = _policies.AnyPreservationPolicy([
        _LatestRegular(n=keep),
        _policies.BestN(get_metric_fn=_metric_fn(mode), reverse=(mode == 'min'), n=1,
                        keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_metric_fn(mode), best_mode=mode, preservation_policy=policy,
                                           create=not read_only, cleanup_tmp_directories=not read_only,
                                           read_only=read_only)
    self.keep, self.mode = keep, mode
    self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)
    self._transient = None  # the SIGTERM checkpoint a run resumed from: deleted once the next one is committed

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    return self.manager.best_step()

  def save(self, step: int, state, data_iterator, loop: dict, *, metric: float | None = None,
           preempted: bool = False):
    """Saves `state` (a pytree), the grain iterator's position and the JSON `loop` state at `step`. `preempted`: a
    checkpoint saved on SIGTERM, outside checkpoint.keep's count; a run resumed from one deletes it once its next
    checkpoint is committed, so a preempted run keeps the same checkpoints as one that never stopped."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=grain_checkpoint.CheckpointSave(data_iterator),
                              loop=ocp.args.JsonSave({**loop, 'preempted': preempted}))
    metrics = {'preempted': 1.0} if preempted else None if metric is None else {'value': float(metric)}
    self.manager.save(step, args=args, metrics=metrics)
    if self._transient is not None and not preempted:
      self.manager.wait_until_finished()
      self.manager.delete(self._transient)
      self._transient = None

  def restore(self, step: int, state_template, data_iterator=None):
    """(state shaped like `state_template`, loop dict) at `step`; sets `data_iterator`'s position if given."""
    state, loop, _ = self._restore(step, state_template, data_iterator)
    return state, loop

  def _restore(self, step: int, state_template, data_iterator):
    """restore's (state, loop), and whether the checkpoint was saved on SIGTERM (this class's own mark)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    items = {'state': ocp.args.StandardRestore(abstract), 'loop': ocp.args.JsonRestore()}
    if data_iterator is not None:
      self._check_processes(step)
      items['data'] = grain_checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    loop = dict(restored.loop)
    preempted = loop.pop('preempted', False)
    return restored.state, loop, preempted

  def restore_latest(self, state_template, data_iterator=None):
    """(step, state, loop) from the newest checkpoint that reads back, or (None, None, None) when there is none.

    A checkpoint that fails to restore is skipped for the one before it, and once one succeeds every skipped one
    is moved to <checkpoints>.corrupt/<step> (kept, not deleted) with a warning naming both steps. When none
    restores, nothing is moved and CheckpointError says what to do."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    failed = []
    for step in steps:
      if data_iterator is not None:
        self._check_processes(step)
      try:
        state, loop, preempted = self._restore(step, state_template, data_iterator)
      except Exception as err:  # orbax, tensorstore and the OS raise many kinds for a damaged checkpoint
        failed.append((step, err))
        continue
      if failed:
        self._set_aside(failed, good=step)
      self._transient = step if preempted else None
      return step, state, loop
    if failed:
      directory = str(self.manager.directory)
      raise CheckpointError(
          f'{directory}: no checkpoint reads back (steps {", ".join(str(s) for s, _ in failed)}; the latest fails '
          f'with: {first_line(failed[0][1])}). Move {directory} aside to start the run over, or restore it from a '
          'backup')
    return None, None, None

  def _set_aside(self, failed: list, *, good: int) -> None:
    """Moves the `failed` steps' folders aside (process 0 of a multi-host run; the others wait for it)."""
    if jax.process_index() == 0:
      self._move_aside(failed, good=good)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('ftlab: damaged checkpoints set aside')
    self.manager.reload()

  def _move_aside(self, failed: list, *, good: int) -> None:
    directory = str(self.manager.directory)
    aside = directory.rstrip('/') + '.corrupt'
    os.makedirs(aside, exist_ok=True)
    for step, err in failed:
      target = os.path.join(aside, str(step))
      n = 1
      while os.path.exists(target):  # an earlier run set the same step aside: keep both
        target, n = os.path.join(aside, f'{step}.{n}'), n + 1
      os.rename(os.path.join(directory, str(step)), target)
      print(f'ftlab: warning: the checkpoint at step {step} in {directory} cannot be read '
            f'({first_line(err)}); resuming from step {good}, the newest good one. The unreadable checkpoint is '
            f'kept in {target}', file=sys.stderr, flush=True)

  def _check_processes(self, step: int):
    """grain restores the iterator from this process's file of the same process count: say so clearly when the
    checkpoint was written by another number of processes."""
    data = os.path.join(str(self.manager.directory), str(step), 'data')
    count = jax.process_count()
    if not os.path.isdir(data) or os.path.exists(os.path.join(data, f'process_{jax.process_index()}-of-{count}.json')):
      return
    saved = sorted({name.rpartition('-of-')[2].removesuffix('.json') for name in os.listdir(data)
                    if name.startswith('process_')})
    raise ValueError(f'{data}: the checkpoint at step {step} was written by {" or ".join(saved)} processes, this run '
                     f'has {count}; resume it with {saved[0] if saved else "the same number of"} processes')

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


class CheckpointError(RuntimeError):
  """No checkpoint of a run reads back."""


def first_line(err: BaseException) -> str:
  text = str(err).strip().splitlines()
  return f'{type(err).__name__}: {text[0][:300] if text else ""}'


def _state_dir(directory: str, step: int) -> tuple[str, tuple]:
  """A committed checkpoint's state folder, and what identifies its contents: the path, and the step's orbax
  metadata file, which holds its commit time in nanoseconds (a committed step is never rewritten in place; a new
  run there commits a new one)."""
  path = os.path.join(os.path.abspath(directory), str(step), 'state')
  if not os.path.isdir(path):
    steps = sorted(int(s) for s in os.listdir(directory) if s.isdigit()) if os.path.isdir(directory) else []
    raise FileNotFoundError(f'{directory}: no checkpoint at step {step} (it has {steps})')
  try:
    with open(os.path.join(os.path.dirname(path), '_CHECKPOINT_METADATA'), 'rb') as f:
      commit = f.read()
  except OSError:
    commit = None  # not cached (see _cached)
  return path, (path, commit)


_read_cache: dict = {}  # (what, identity) -> value: a sweep's trials read the same source-task checkpoint


def _cached(what: str, identity: tuple, read):
  if identity[-1] is None:
    return read()
  key = (what, identity)
  if key not in _read_cache:
    if len(_read_cache) >= 4:  # a source run's parameters, and their shapes: a few at a time
      _read_cache.pop(next(iter(_read_cache)))
    _read_cache[key] = read()
  return _read_cache[key]


def run_step(run: str, checkpoint: str) -> int:
  """The step of a run's checkpoint named by `checkpoint`: 'best' (summary.json's), 'latest', or a kept step;
  CheckpointError saying what there is otherwise."""
  folder = os.path.join(run, 'checkpoints')
  steps = sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []
  _check_not_in_a_group(run, checkpoint)
  if checkpoint == 'latest':
    if not steps:
      raise CheckpointError(f'{run}: no checkpoint yet; run it first')
    return steps[-1]
  if checkpoint == 'best':
    summary = os.path.join(run, 'summary.json')
    if not os.path.exists(summary):
      raise CheckpointError(f'{run}: no summary.json, so no best checkpoint yet; finish the run or pass '
                            '--checkpoint latest')
    with open(summary) as f:
      return int(json.load(f)['best_step'])
  if not checkpoint.isdigit() or int(checkpoint) not in steps:
    raise CheckpointError(f'--checkpoint {checkpoint!r}: {run} keeps steps {steps}; give best, latest or one of them')
  return int(checkpoint)


def _check_not_in_a_group(run: str, checkpoint: str) -> None:
  """A trial of a vectorised group that has not ended (killed, preempted) keeps its newest checkpoints in the
  group's folder: say so rather than read an older one."""
  from ftlab import group_checkpoints
  group = group_checkpoints.pointed(run)
  if group is not None and checkpoint != 'best':
    raise CheckpointError(f'{run}: its newest checkpoints are in its vectorised group\'s folder {group} until the '
                          'group ends (or, after a kill, until its trials next run); let the sweep finish, or rerun '
                          'its command')


def params_shapes(directory: str, step: int, item: str = 'params') -> dict:
  """The 'params' tree (or the state's `item`) saved at `step` as shape-and-dtype metadata, read without loading
  any array."""
  path, identity = _state_dir(directory, step)
  return _cached(f'shapes of {item}', identity, lambda: ocp.PyTreeCheckpointer().metadata(path).item_metadata[item])


def restore_params(directory: str, step: int, item: str = 'params') -> dict:
  """The 'params' tree (or the state's `item`: 'model_state') saved at `step` in a run's checkpoint directory, as
  numpy arrays, without a template.

  Restored as host arrays, so parameters saved on any device topology load into any other. Read once per process
  (the trials of a sweep share a source-task run): the arrays are read-only.
  """
  path, identity = _state_dir(directory, step)

  def read():
    meta = params_shapes(directory, step, item)
    target = {item: jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), meta)}
    restore_args = {item: jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)}
    restored = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))[item]
    for leaf in jax.tree.leaves(restored):
      leaf.flags.writeable = False
    return restored
  return _cached(item, identity, read)
