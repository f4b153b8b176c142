"""What a --workdir may be, checked before anything is written: a folder path the file system can hold (no dangling
symbolic link or loop, no name too long, not under /proc, /sys or /dev), and either new, empty, or a folder ftlab
made for the same command: a run's folder for `ftlab.main` (the one-writer lock file, ftlab/locks.py, or
config.json), a sweep's for `ftlab.sweep` (sweep.json or sweep.lock). A folder with a user's own files is refused,
naming them, so that nothing there is overwritten; so is a run's folder given to the sweep and a sweep's given to a
run.
"""
from __future__ import annotations

import errno
import os

from ftlab.locks import LOCK_NAME

SWEEP_MARKS = ('sweep.json', 'sweep.lock')
RUN_MARKS = (LOCK_NAME, 'config.json', 'pretrain', 'pretrain.lock')  # config.json: compared before any write
KERNEL = ('/proc', '/sys', '/dev')
COMMANDS = {'run': 'python -m ftlab.main', 'sweep': 'python -m ftlab.sweep'}


def problems(workdir: str, kind: str) -> list[str]:
  """Why `workdir` cannot be the folder of a `kind` ('run' or 'sweep'), as one-line messages (none: it can)."""
  if not workdir.strip():
    return [f'--workdir: empty; give the folder of the {kind}, e.g. --workdir=runs/NAME (it is created if missing)']
  problem = _path_problem(workdir) or _contents_problem(workdir, kind)
  return [f'--workdir: {problem}'] if problem else []


def _path_problem(workdir: str) -> str:
  return _name_problem(workdir) or _link_problem(workdir) or _place_problem(workdir)


def _name_problem(workdir: str) -> str:
  long = next((part for part in workdir.split(os.sep) if len(part.encode()) > 255), None)
  if long is None:
    return ''
  return (f'the name {long[:40]}... is {len(long.encode())} bytes, more than the 255 a file system allows; give a '
          'shorter folder name')


def _link_problem(workdir: str) -> str:
  if not os.path.islink(workdir) or os.path.exists(workdir):
    return ''
  what = ('a loop of symbolic links' if _is_loop(workdir) else
          f'a symbolic link to {os.readlink(workdir)}, which does not exist')
  return f'{workdir} is {what}; point it at a folder, or give another path'


def _place_problem(workdir: str) -> str:
  """A path through a file, or into a kernel file system (judged at its nearest existing ancestor)."""
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing) and os.path.dirname(existing) != existing:
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = 'is a file' if existing == os.path.abspath(workdir) else f'is inside {existing}, a file'
    return f'{workdir} {where}, not a folder; give a folder path (it is created if missing), e.g. --workdir=runs/NAME'
  real = os.path.realpath(existing)
  if any(real == k or real.startswith(k + '/') for k in KERNEL):
    return (f"{workdir} is in the kernel's {real}, where no files can be kept; give a folder on a disk, e.g. "
            '--workdir=runs/NAME')
  return ''


def _is_loop(path: str) -> bool:
  try:
    os.stat(path)
  except OSError as err:
    return err.errno == errno.ELOOP
  return False


def _contents_problem(workdir: str, kind: str) -> str:
  if not os.path.isdir(workdir):
    return ''
  entries = sorted(os.listdir(workdir))
  if any(e in SWEEP_MARKS for e in entries):
    return '' if kind == 'sweep' else (f"{workdir} is a sweep's folder; resume it with {COMMANDS['sweep']} "
                                       '--workdir=... or give the run a folder of its own')
  if any(e in RUN_MARKS for e in entries):
    return '' if kind == 'run' else (f"{workdir} is a run's folder ({COMMANDS['run']}); give the sweep a folder of "
                                     'its own')
  visible = [e for e in entries if not e.startswith('.')]
  if not visible:
    return ''
  shown = ', '.join(visible[:4]) + (f' and {len(visible) - 4} more' if len(visible) > 4 else '')
  return (f'{workdir} holds files ftlab did not write ({shown}); give a new or empty folder (nothing there is '
          'touched)')
