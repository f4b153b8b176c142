"""A vectorised group's checkpoints: one write per save step for all its K trials, each trial's own checkpoints/
filled when the group ends.

At each save step a group (ftlab/steppers/stacked.py) saves its stacked state as it holds it (the leaves held once
unstacked) with every saved trial's loop state, data position and selection metric, as one orbax checkpoint in a
folder of its own, <the trials' parent>/.groups/<id> (members.json names its trials), instead of K checkpoints in K
folders: orbax's fixed cost per checkpoint (directories, metadata, commit; tens of milliseconds) is paid once. While
the group runs, each trial's group_checkpoint.json names that folder, which keeps for each trial what the trial's
own folder would keep (its checkpoint.keep latest, every step tied for its best, one saved on SIGTERM).

When the group ends (ftlab/loop.py), and before a trial opens whose group did not end (killed, preempted), the
trial's checkpoints in the group's folder are written into its own checkpoints/, in step order, as its own saves
would have written them (the same state leaves, loop state and data-position file): each trial is then a normal run
folder to every reader (a run resumed alone or in another group, ftlab.evaluate, export, compare, a source run).
Its group_checkpoint.json then goes, and the group's folder with the last of its trials.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import uuid

import jax
import orbax.checkpoint as ocp

from ftlab import faults, writers
from ftlab.checkpoints import Checkpoints, first_line

POINTER = 'group_checkpoint.json'  # in a trial's workdir: {"group": its group's folder, relative to the workdir}
MEMBERS = 'members.json'  # in a group's folder: {"trials": the trials' workdirs, relative to the folder}


class Group:
  """The write side: the group's folder, and one checkpoint per save step."""

  def __init__(self, workdirs: list[str], states, once: tuple[bool, ...], *, keep: int, mode: str):
    """Makes the folder and points every trial (`workdirs`, in lane order) at it. `states`: the stacked live
    states; `once`: per leaf, held once (ftlab/steppers/held_once.py)."""
    self.workdirs = [os.path.abspath(w) for w in workdirs]
    self.directory = os.path.join(os.path.dirname(self.workdirs[0]), '.groups', uuid.uuid4().hex[:12])
    os.makedirs(self.directory)
    writers.write_json_atomic(os.path.join(self.directory, MEMBERS),
                              {'trials': [os.path.relpath(w, self.directory) for w in self.workdirs]})
    for workdir in self.workdirs:
      writers.write_json_atomic(os.path.join(workdir, POINTER), {'group': os.path.relpath(self.directory, workdir)})
    self.once = [list(name) for name, o in zip(_names(states), once) if o]
    self.saves: dict[int, dict[int, tuple]] = {}  # {step: {lane: (metric, preempted)}}
    options = ocp.CheckpointManagerOptions(preservation_policy=_EachTrialKeeps(keep, mode, self.saves))
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._closed = False

  def save(self, step: int, states, lanes: dict[int, dict], *, preempted: bool = False) -> None:
    """One checkpoint of the stacked `states` (host copies, as a trial saves) and `lanes`: {lane: {'loop': its
    loop state's JSON, 'data': its data position, 'metric': its selection metric or None}} of the trials saved."""
    self.saves[step] = {i: (lane['metric'], preempted) for i, lane in lanes.items()}
    trials = {os.path.relpath(self.workdirs[i], self.directory): {'lane': i, **lane, 'preempted': preempted}
              for i, lane in lanes.items()}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(jax.device_get(states)),
        trials=ocp.args.JsonSave({'once': self.once, 'trials': trials})))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    if not self._closed:
      self._closed = True
      self.manager.wait_until_finished()
      self.manager.close()

  def end(self, targets: dict[str, Checkpoints], *, then: dict[str, tuple] | None = None) -> None:
    """The group has ended: writes each trial's checkpoints into its own folder (`targets`: {workdir: its
    Checkpoints}), then removes the group's folder. `then`: {workdir: (step, metric)} of the checkpoint each will
    save itself next (the run's last), which the choice of the steps it keeps counts."""
    self.close()
    settle(self.directory, {os.path.abspath(w): c for w, c in targets.items()},
           then={os.path.abspath(w): last for w, last in (then or {}).items()})


def pointed(workdir: str) -> str | None:
  """The folder of the group that holds a trial's newest checkpoints, or None."""
  path = os.path.join(workdir, POINTER)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return os.path.normpath(os.path.join(os.path.abspath(workdir), json.load(f)['group']))


def settle_pointed(plans: list) -> None:
  """Before trials open: each of `plans` whose workdir names a group that did not end (killed, preempted) gets its
  checkpoints there written into its own folder, each group's steps read once for all of them."""
  by_group: dict[str, list] = {}
  for plan in plans:
    group = pointed(plan.workdir)
    if group is not None:
      by_group.setdefault(group, []).append(plan)
  for group, members in by_group.items():
    targets = {os.path.abspath(p.workdir): Checkpoints(os.path.join(p.workdir, 'checkpoints'),
                                                       keep=p.config.checkpoint.keep, mode=p.eval_mode)
               for p in members}
    try:
      settle(group, targets)
    finally:
      for ckpts in targets.values():
        ckpts.close()


def settle(directory: str, targets: dict[str, Checkpoints], *, then: dict[str, tuple] | None = None) -> None:
  """Writes into each target's own folder ({absolute workdir: its Checkpoints}) its checkpoints kept in the group's
  `directory` after its own latest, in step order (`then`: Group.end's); then drops its pointer, and the folder once
  no trial names it."""
  if os.path.isdir(directory):
    manager = _reader(directory)
    try:
      saved = _read_saves(manager)
      due = _due(saved, targets, then or {})
      for step in sorted(due):
        _write_step(manager, step, saved[step], {w: targets[w] for w in due[step]})
    finally:
      manager.close()
  else:
    for workdir in targets:
      print(f'ftlab: warning: {workdir} names its vectorised group\'s checkpoints in {directory}, which is gone; it '
            'resumes from its own latest checkpoint, if any', file=sys.stderr, flush=True)
  for workdir, ckpts in targets.items():
    ckpts.wait()
    if pointed(workdir) == os.path.normpath(directory):
      os.remove(os.path.join(workdir, POINTER))
  _collect(directory)


def _reader(directory: str):
  return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True, create=False, cleanup_tmp_directories=False))


def _read_saves(manager) -> dict[int, dict]:
  """{step: {'once': ..., 'trials': {absolute workdir: its entry}}} of every committed checkpoint in a group's
  folder (the small JSON item only); a damaged one is left out with a warning."""
  directory = str(manager.directory)
  saved = {}
  for step in manager.all_steps():
    try:
      record = manager.restore(step, args=ocp.args.Composite(trials=ocp.args.JsonRestore())).trials
    except Exception as err:  # its trials resume from an earlier one
      _unreadable(manager, step, err)
      continue
    saved[step] = {'once': record['once'], 'trials': {os.path.normpath(os.path.join(directory, rel)): entry
                                                       for rel, entry in record['trials'].items()}}
  return saved


def _due(saved: dict[int, dict], targets: dict[str, Checkpoints], then: dict[str, tuple]) -> dict[int, list[str]]:
  """{step: the targets that take it}: the steps a target's own rule keeps (counting the one it saves `then`),
  after its own latest."""
  due: dict[int, list[str]] = {}
  for workdir, ckpts in targets.items():
    mine = [(step, saved[step]['trials'][workdir]) for step in sorted(saved) if workdir in saved[step]['trials']]
    last = [(*then[workdir], False)] if workdir in then else []
    keep = kept_steps([(s, e['metric'], e['preempted']) for s, e in mine] + last, ckpts.keep, ckpts.mode)
    latest = ckpts.latest_step()
    for step, _ in mine:
      if step in keep and (latest is None or step > latest):
        due.setdefault(step, []).append(workdir)
  return due


def _write_step(manager, step: int, record: dict, targets: dict[str, Checkpoints]) -> None:
  """The group's checkpoint at `step`, read once, written as each target's own (its lane of the state)."""
  try:
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  except Exception as err:  # orbax, tensorstore and the OS raise many kinds for a damaged checkpoint
    _unreadable(manager, step, err)
    return
  once = {tuple(name) for name in record['once']}
  for workdir, ckpts in targets.items():
    entry = record['trials'][workdir]
    lane = jax.tree_util.tree_map_with_path(
        lambda path, x: x if _path_names(path) in once else x[entry['lane']], state)
    ckpts.save(step, lane, _Position(entry['data']), entry['loop'], metric=entry['metric'],
               preempted=entry['preempted'])
    faults.point('settle', step, workdir)


def _unreadable(manager, step: int, err: BaseException) -> None:
  print(f'ftlab: warning: the group checkpoint at step {step} in {manager.directory} cannot be read '
        f'({first_line(err)}); its trials resume from an earlier one',
        file=sys.stderr, flush=True)


def _collect(directory: str) -> None:
  """Removes a group's folder once none of its trials names it (some may not have opened since a kill)."""
  try:
    with open(os.path.join(directory, MEMBERS)) as f:
      members = json.load(f)['trials']
  except FileNotFoundError:
    return
  if any(pointed(os.path.join(directory, rel)) == os.path.normpath(directory) for rel in members):
    return
  shutil.rmtree(directory, ignore_errors=True)
  try:
    os.rmdir(os.path.dirname(directory))  # .groups, when it was the last group
  except OSError:
    pass


def kept_steps(saves: list[tuple], keep: int, mode: str) -> set[int]:
  """Of one trial's saves [(step, metric or None, preempted)] in step order, those its own folder may keep: the
  `keep` latest regular ones, every one tied for the best metric (orbax picks among ties), those saved on SIGTERM.
  A superset of what ftlab/checkpoints.py keeps, so that writing them in order leaves exactly that."""
  regular = [step for step, _, preempted in saves if not preempted]
  kept = set(regular[len(regular) - keep:] if keep > 0 else [])
  kept |= {step for step, _, preempted in saves if preempted}
  values = [(metric, step) for step, metric, preempted in saves if metric is not None and not preempted]
  finite = [metric for metric, _ in values if not math.isnan(metric)]
  best = (max(finite) if mode == 'max' else min(finite)) if finite else None
  kept |= {step for metric, step in values if metric == best or math.isnan(metric)}
  return kept


@dataclasses.dataclass
class _EachTrialKeeps:
  """orbax's preservation policy for a group's folder: a checkpoint stays while some trial's rule keeps it."""
  keep: int
  mode: str
  saves: dict  # Group.saves

  def should_preserve(self, checkpoints, *, context):
    del context
    kept = set()
    for lane in {lane for lanes in self.saves.values() for lane in lanes}:
      mine = [(step, *self.saves[step][lane]) for step in sorted(self.saves) if lane in self.saves[step]]
      kept |= kept_steps(mine, self.keep, self.mode)
    return [c.step in kept or c.step not in self.saves for c in checkpoints]


class _Position:
  """A saved data position, written as grain writes a DatasetIterator's (ftlab/checkpoints.py saves it)."""

  def __init__(self, state):
    self.state = state

  def get_state(self) -> bytes:
    return json.dumps(self.state, indent=4).encode()


def _names(tree) -> list[tuple]:
  """Each leaf's path as names (attribute, key or index, as text), in flatten order: the same for a TrainState
  and for the nested dicts orbax restores it as."""
  return [_path_names(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _path_names(path) -> tuple:
  return tuple(str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k)))) for k in path)
