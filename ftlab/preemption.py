"""SIGTERM, the notice a cloud VM gets before it is preempted: finish the step, save a checkpoint, exit cleanly.

`ftlab.main` and `ftlab.sweep` call `install()` first thing, so SIGTERM only sets a flag, whenever it comes: during
start-up, the data loading, a step or an evaluation. The training loop reads it at each step boundary through a
`Notice`, saves a checkpoint and raises `Preempted`; the sweep runner reads it before it takes another trial. Both
commands turn Preempted into a message and exit status 143 (128 + SIGTERM, as a process killed by it), so that a
scheduler sees the run as unfinished; rerunning the same command resumes. A SIGTERM that comes after the last step
lets the run finish its final evaluation (seconds). Called from Python without `install()` (a notebook, the tests),
a Notice installs the handler for the loop's duration itself.

In a multi-host run every process must stop at the same step, so there the decision is jax's preemption sync point
(`multihost_utils.reached_preemption_sync_point`, fed by the coordination service, which watches SIGTERM itself);
ftlab installs no handler of its own. Outside the main thread (no Python signal handlers there) nothing is installed
and SIGTERM keeps its default action; a SIGKILL'd run resumes from its last checkpoint either way.
"""
from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils

EXIT_STATUS = 128 + signal.SIGTERM

_received = threading.Event()
_installed = False


class Preempted(Exception):
  """A run stopped on SIGTERM after saving its checkpoint at `step` (None: a sweep, between trials)."""

  def __init__(self, step: int | None, workdir: str, *, folder: str = ''):
    """`folder`: where the checkpoint is, when not in workdir/checkpoints (a vectorised group's folder)."""
    self.step, self.workdir = step, workdir
    where = (f'saved a checkpoint at step {step} in {folder or workdir + "/checkpoints"} and stopped'
             if step is not None else f'stopped before starting another trial in {workdir}')
    super().__init__(f'preempted (SIGTERM): {where}; rerun the same command to resume')


def _handle(signum, frame) -> None:
  del signum, frame
  _received.set()


def _can_install() -> bool:
  return threading.current_thread() is threading.main_thread() and jax.process_count() == 1


def install() -> None:
  """Catches SIGTERM for the rest of the process (single-process runs, main thread; see the module docstring)."""
  global _installed
  if not _installed and _can_install():
    signal.signal(signal.SIGTERM, _handle)
    _installed = True


def received() -> bool:
  """Whether SIGTERM has arrived (in a single-process run)."""
  return _received.is_set()


class Notice:
  """The loop's view of SIGTERM: `requested(step)` says whether to stop after `step`. Installs the handler between
  `install()` and `uninstall()` when the process has not (a run started from Python)."""

  def __init__(self):
    self._previous = None
    self._multihost = jax.process_count() > 1

  def install(self) -> Notice:
    if not _installed and _can_install():
      self._previous = signal.signal(signal.SIGTERM, _handle)
    return self

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def requested(self, step: int) -> bool:
    if self._multihost:
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return received()
