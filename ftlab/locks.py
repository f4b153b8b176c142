"""File locks: a run's one-writer lock on its workdir, and the waiting lock that serialises short critical sections
between processes (a sweep's records and set-up, a source-task stage that several workers would train).

`one_writer(workdir)` holds an exclusive flock on <workdir>/.ftlab.lock for the whole run and writes the holder
(pid, host, start time) into it. A second run on the same workdir fails at once with `Busy`, naming the holder (a
sweep's trial waits for it instead: the holder is another worker training that trial). The
kernel drops a flock when its process dies, however it dies, so a lock left by a killed run is free: the next run
takes it over and says whose it was. On file systems without flock the pid is checked instead (same host only).

`waiting(path)` holds an exclusive flock on `path` for a block, waiting for the process that holds it.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket

LOCK_NAME = '.ftlab.lock'


class Busy(RuntimeError):
  """Another live process holds the workdir's lock."""


@contextlib.contextmanager
def one_writer(workdir: str, *, wait: bool = False):
  """Holds `workdir`'s one-writer lock (creating the workdir) for the `with` block. A lock another live process
  holds raises Busy, or with `wait` is waited for (saying whose it is)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    previous = _take(fd, workdir, wait=wait)
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


def _take(fd: int, workdir: str, *, wait: bool) -> str:
  """Flocks the open lock file `fd`; returns the holder it names once taken ('' when released cleanly)."""
  previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    if not wait:
      raise Busy(_busy_message(workdir, previous)) from None
    print(f'ftlab: {workdir} is in use by another ftlab run ({previous or "holder unknown"}); waiting for it',
          flush=True)
    fcntl.flock(fd, fcntl.LOCK_EX)
    previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
  except OSError as err:  # no flock here (some network file systems): trust a live pid on this host
    if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS) or _alive(previous):
      raise Busy(_busy_message(workdir, previous)) from err
  return previous


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


@contextlib.contextmanager
def waiting(path: str):
  """An exclusive advisory lock on `path` (created if missing), held for the block; waits for its holder."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
