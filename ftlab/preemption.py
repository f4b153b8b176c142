"""SIGTERM, the notice a cloud VM gets before it is preempted: finish the step, save a checkpoint, exit cleanly.

`Notice()` is installed around a run's loop. Inside it, SIGTERM only sets a flag, which the loop reads at
each step boundary with `requested(step)`; the loop then saves and raises `Preempted`, which `ftlab.main` and
`ftlab.sweep` turn into a message and exit status 143 (128 + SIGTERM, as a process killed by it) so that a
scheduler sees the run as unfinished. Rerunning the same command resumes from that checkpoint.

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


class Preempted(Exception):
  """A run stopped on SIGTERM after saving its checkpoint at `step`."""

  def __init__(self, step: int, workdir: str):
    self.step, self.workdir = step, workdir
    super().__init__(f'preempted (SIGTERM): saved a checkpoint at step {step} in {workdir}/checkpoints and stopped; '
                     'rerun the same command to resume from it')


class Notice:
  """Catches SIGTERM between `install()` and `uninstall()` (or in a `with` block); `requested(step)` says whether to
  stop after `step`."""

  def __init__(self):
    self.received = False
    self._previous = None
    self._multihost = jax.process_count() > 1

  def install(self) -> Notice:
    if not self._multihost and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def __enter__(self) -> Notice:
    return self.install()

  def __exit__(self, *exc) -> None:
    self.uninstall()

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.received = True

  def requested(self, step: int) -> bool:
    if self._multihost:
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self.received
