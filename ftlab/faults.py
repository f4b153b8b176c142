"""Fault injection for the preemption tests: a process that kills or signals itself at a named point.

    FTLAB_TEST_KILL=POINT@N[/TEXT][,...]    SIGKILL the N-th time this process passes POINT
    FTLAB_TEST_KILL=POINT=V[/TEXT][,...]    SIGKILL when POINT is passed with value V (e.g. step=37)
    FTLAB_TEST_TERM=...                     the same, with SIGTERM (a cloud VM's preemption notice)
    FTLAB_TEST_ENOSPC=...                   the same, raising OSError ENOSPC there instead (a full disk)
    FTLAB_TEST_EIO=...                      the same, raising OSError EIO (a flaky disk or network file system)

/TEXT restricts an entry to passes whose `where` (a workdir or a file in it) contains TEXT. The points, with their
values:
  step       a train step dispatched and its checkpoint (if any) issued      the step
  save       a checkpoint save issued; orbax is still writing its files     the step
  settle     a group's checkpoint issued into a trial's own folder          the step
  evaluated  an evaluation computed, none of its rows written yet           the step
  metrics    a metrics.jsonl row written (the rows of one step follow)      the row's step
  eval       one evaluation batch done (no workdir: /TEXT never matches)    -
  summary    a run's final evaluation done, summary.json not yet written     -
  record     a sweep trial finished, its trials.jsonl row not yet written    - (where: the trial id)
  report     a sweep's plots drawn, its report.md not yet written            - (where: the sweep dir)
Unset, `point` costs two dictionary lookups.
"""
from __future__ import annotations

import collections
import errno
import os
import signal

_ENV = {'FTLAB_TEST_KILL': signal.SIGKILL, 'FTLAB_TEST_TERM': signal.SIGTERM}
_ERRORS = {'FTLAB_TEST_ENOSPC': errno.ENOSPC, 'FTLAB_TEST_EIO': errno.EIO}
_passes: collections.Counter = collections.Counter()


def point(name: str, value=None, where: str = '') -> None:
  """Passes the fault point `name` (with `value`, in `where`): sends this process the signal an entry asks for, or
  raises the disk-full error."""
  for variable, sig in _ENV.items():
    spec = os.environ.get(variable)
    if spec and _matches(spec, name, value, where):
      os.kill(os.getpid(), sig)
  for variable, code in _ERRORS.items():
    spec = os.environ.get(variable)
    if spec and _matches(spec, name, value, where):
      raise OSError(code, os.strerror(code), where or None)


def _matches(spec: str, name: str, value, where: str) -> bool:
  hit = False
  for entry in spec.split(','):
    entry, _, text = entry.partition('/')
    if text and text not in where:
      continue
    if '@' in entry:
      point_name, _, n = entry.partition('@')
      if point_name == name:
        _passes[entry, text] += 1
        hit |= _passes[entry, text] == int(n)
    else:
      point_name, _, v = entry.partition('=')
      hit |= point_name == name and value is not None and str(value) == v
  return hit
