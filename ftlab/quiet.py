"""Library messages that say nothing to a person running ftlab, dropped from absl's logger (where TFDS and orbax
log): each is logged on every normal run by ftlab's own, correct use of the library.

- TFDS's 'Using custom data configuration': every local dataset is a custom configuration; and 'Variant folder ...
  has no dataset_info.json': a local dataset's folder before ftlab has prepared it (ftlab says what it prepares,
  ftlab/data/builders.py, and a half-prepared folder is prepared again).
- orbax's 'Metadata file does not exist': a source-task run's parameters are read from their item folder
  (checkpoints/N/state), below the step's metadata file, which is not needed to read them.
- orbax's 'Requested `tracked_metric`; did not provide metrics': a checkpoint saved between evaluations (or on
  SIGTERM) has no metric by design; it ranks last for 'best' (ftlab/checkpoints.py).
- orbax's 'Given directory is read only' and 'CheckpointManagerOptions.read_only=True, setting
  save_interval_steps=0': ftlab.evaluate, ftlab.explain and ftlab.export open a run's checkpoints read-only on
  purpose, so that nothing of the run is written.

A full disk is also dropped from absl's logger (orbax logs it with its traceback from each of its writing threads,
hundreds of lines; asyncio logs its tasks' failures too): the exception reaches the command, which says it in
one line (ftlab/workdir.py:write_problem).
So is the "RuntimeError: Event loop is closed" that Python reports as unraisable when a write tensorstore
finishes after orbax's save failed calls back into the event loop orbax has already closed (sys.unraisablehook).
"""
from __future__ import annotations

import logging
import sys
import traceback

BENIGN = ('Using custom data configuration', 'has no dataset_info.json', 'Metadata file does not exist',
          'Given directory is read only', 'CheckpointManagerOptions.read_only=True',
          'Requested `tracked_metric`; did not provide metrics')
DISK_FULL = ('No space left on device', 'Disk quota exceeded')  # ENOSPC, EDQUOT, as the OS and tensorstore say them


class _Benign:
  """absl's records: drops the benign ones and those of a full disk."""

  def filter(self, record) -> bool:
    message = _text(record)
    return not any(text in message for text in BENIGN + DISK_FULL)


class _AfterFailedSave:
  """asyncio's records ('Task exception was never retrieved') of orbax's writes that a full disk failed."""

  def filter(self, record) -> bool:
    message = _text(record)
    return not any(text in message for text in DISK_FULL + ('Event loop is closed',))


def _text(record) -> str:
  """A log record's message and its exception's chain of messages."""
  message = record.getMessage()
  if record.exc_info and record.exc_info[1] is not None:
    message += '\n' + _chain_text(record.exc_info[1])
  return message


def _chain_text(exc: BaseException) -> str:
  """The messages of `exc` and of its causes and contexts."""
  texts, seen = [], set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    texts.append(f'{exc}')
    exc = exc.__cause__ or exc.__context__
  return '\n'.join(texts)


def install() -> None:
  """Adds the filters to absl's and asyncio's loggers and the late-callback one to sys.unraisablehook (once each)."""
  for name, kind in (('absl', _Benign), ('asyncio', _AfterFailedSave)):
    logger = logging.getLogger(name)
    if not any(isinstance(f, kind) for f in logger.filters):
      logger.addFilter(kind())
  if not isinstance(sys.unraisablehook, _LateCallbacks):
    sys.unraisablehook = _LateCallbacks(sys.unraisablehook)


class _LateCallbacks:
  """sys.unraisablehook without the "Event loop is closed" of a callback into a loop that a failed save closed."""

  def __init__(self, hook):
    self.hook = hook

  def __call__(self, unraisable):
    tb = unraisable.exc_traceback
    last = traceback.extract_tb(tb)[-1:] if tb is not None else []
    late = (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == 'Event loop is closed'
            and any(frame.name == '_check_closed' and 'asyncio' in frame.filename for frame in last))
    if not late:
      self.hook(unraisable)
