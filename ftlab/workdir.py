"""A run's workdir: one writer at a time, and errors that say what to do when it cannot be written.

`lock(workdir)` holds an exclusive flock on <workdir>/.ftlab.lock for the whole run and writes the holder (pid, host,
start time) into it. A second run on the same workdir fails at once with `Busy`, naming the holder. The kernel
drops a flock when its process dies, however it dies, so a lock left by a killed run is free: the next run takes
it over and says whose it was. On file systems without flock the pid is checked instead (same host only).

`inside(root, *parts)` joins a path that must stay under `root` (a trial id read from a shared storage, say).

`write_problem(exc)` finds a permission-denied, read-only or disk-full error in an exception's chain and returns the
message to print, or None.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
import sys

LOCK_NAME = '.ftlab.lock'
EXIT_STATUS = 4  # a workdir that cannot be written or is in use: nothing was trained


class Busy(RuntimeError):
  """Another live process holds the workdir's lock."""


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `workdir`'s one-writer lock (creating the workdir) for the `with` block."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise Busy(_busy_message(workdir, previous)) from None
    except OSError as err:  # no flock here (some network file systems): trust a live pid on this host
      if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS) or _alive(previous):
        raise Busy(_busy_message(workdir, previous)) from err
    if previous:
      print(f'ftlab: taking over {workdir}: its lock was left by a process that is no longer running ({previous})',
            flush=True)
    holder = (f'pid {os.getpid()} on {socket.gethostname()} since '
              f'{datetime.datetime.now().astimezone().isoformat(timespec="seconds")}')
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode() + b'\n', 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # released cleanly: an empty lock file is a free one
  finally:
    os.close(fd)  # also drops the flock


def _busy_message(workdir: str, holder: str) -> str:
  pid = _pid(holder)
  stop = f'stop it (kill {pid}) ' if pid else 'stop it '
  return (f'{workdir} is in use by another ftlab run ({holder or "holder unknown"}); wait for it to finish, {stop}'
          'or choose another --workdir')


def _pid(holder: str) -> int | None:
  parts = holder.split()
  return int(parts[1]) if len(parts) > 3 and parts[0] == 'pid' and parts[1].isdigit() else None


def _alive(holder: str) -> bool:
  """Whether the process named by `holder` may still run (a pid on another host cannot be checked: assume so)."""
  pid = _pid(holder)
  if pid is None:
    return False
  if holder.split()[3] != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


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
  from ftlab import checkpoints, preemption, train  # the commands' modules, not this one's
  status = {train.Diverged: 3, preemption.Preempted: preemption.EXIT_STATUS, Busy: EXIT_STATUS,
            checkpoints.CheckpointError: EXIT_STATUS}.get(type(err))
  message = str(err) if status is not None else write_problem(err, workdir)
  if message is None:
    return None
  print(f'{prog}: {message}', file=sys.stderr)
  return EXIT_STATUS if status is None else status


_WRITE_ERRORS = {errno.EACCES: 'permission denied', errno.EPERM: 'permission denied', errno.EROFS: 'read-only',
                 errno.ENOSPC: 'disk full', errno.EDQUOT: 'disk quota exceeded'}


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
    exc = exc.__cause__ or exc.__context__
  return None
