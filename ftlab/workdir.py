"""Where a run may write, and what a command says when it stops: paths kept inside a root, exit statuses, and errors
that say what to do when a workdir cannot be written (its one-writer lock is in ftlab/locks.py).

`inside(root, *parts)` joins a path that must stay under `root` (a trial id read from a shared storage, say).

`write_problem(exc)` finds a permission-denied, read-only or disk-full error in an exception's chain and returns the
message to print, or None.
"""
from __future__ import annotations

import errno
import os
import re
import sys

EXIT_STATUS = 4  # a workdir that cannot be written or is in use: nothing was trained


def inside(root: str, *parts: str) -> str:
  """os.path.join(root, *parts), refused (ValueError) when it would lead outside `root` ('..', an absolute part, a
  symlink out): names that come from data ftlab did not write itself never choose where ftlab writes."""
  path = os.path.join(root, *parts)
  real_root = os.path.realpath(root)
  if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
    raise ValueError(f'{os.path.join(*parts)!r} would lead outside {root}; a trial id or path must be a plain name '
                     'inside it (was the sweep storage written by something other than ftlab?)')
  return path


def stopped(err: BaseException, workdir: str, prog: str) -> int | None:
  """For ftlab.main and ftlab.sweep: prints why a command stopped on `err` and returns its exit status (3 diverged,
  4 workdir busy / unwritable / without a readable checkpoint, 143 preempted), or None for an error of another kind
  (a bug: let its traceback show)."""
  from ftlab import checkpoints, locks, outcome, preemption  # the commands' modules, not this one's
  status = {outcome.Diverged: 3, preemption.Preempted: preemption.EXIT_STATUS, locks.Busy: EXIT_STATUS,
            checkpoints.CheckpointError: EXIT_STATUS}.get(type(err))
  message = str(err) if status is not None else write_problem(err, workdir)
  if message is None:
    return None
  print(f'{prog}: {message}', file=sys.stderr)
  return EXIT_STATUS if status is None else status


_WRITE_ERRORS = {errno.EACCES: 'permission denied', errno.EPERM: 'permission denied', errno.EROFS: 'read-only',
                 errno.ENOSPC: 'disk full', errno.EDQUOT: 'disk quota exceeded'}


def _disk_full(exc: BaseException) -> bool:
  """A full disk that orbax / tensorstore report in another exception: ValueError('RESOURCE_EXHAUSTED: ...') (XLA's
  out-of-memory errors are XlaRuntimeError, not ValueError), or the OS's words in any message."""
  text = str(exc)
  return not isinstance(exc, OSError) and ('No space left on device' in text or
                                           (isinstance(exc, ValueError) and 'RESOURCE_EXHAUSTED' in text))


def _written(text: str) -> str:
  """The file a tensorstore write error names ('Error writing local file "PATH"'), a checkpoint's as the step's
  folder (orbax writes it under STEP.orbax-checkpoint-tmp), or ''."""
  found = re.search(r'Error writing local file "([^"]+)"', text)
  if not found:
    return ''
  step = re.match(r'(.*/checkpoints/\d+)\.orbax-checkpoint-tmp/', found.group(1))
  return f'{step.group(1)} (a checkpoint)' if step else found.group(1)


def write_problem(exc: BaseException, workdir: str) -> str | None:
  """The message for a workdir that cannot be written (found anywhere in `exc`'s cause/context chain), or None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
      what = _WRITE_ERRORS[exc.errno]
      where = exc.filename or workdir
      if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = ('free space on that disk (old checkpoints: lower checkpoint.keep) or choose another --workdir, then '
               'rerun the same command: it resumes from the last complete checkpoint')
      else:
        fix = 'make the workdir writable by this user or choose another --workdir'
      return f'cannot write {where}: {what} ({exc.strerror}); {fix}'
    if _disk_full(exc):
      return write_problem(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), _written(str(exc)) or workdir), workdir)
    exc = exc.__cause__ or exc.__context__
  return None
