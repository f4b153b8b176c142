"""Why a sweep's trial failed, as its row records it ('cause'): the 'trial' itself (its config, its data, a bug:
running it again gives the same failure) or its 'environment' (memory, I/O, the network, the Optuna storage's
connection: running it again may well succeed). A rerun of the sweep runs environmental failures again, up to
records.RETRIES times; a disk that is full or cannot be written stops the sweep before the trial is recorded at all
(ftlab/sweeps/runner.py)."""
from __future__ import annotations

import errno

import jax

ENVIRONMENT, TRIAL = 'environment', 'trial'

_ERRNOS = {errno.EIO, errno.ENOMEM, errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.ETIMEDOUT, errno.EPIPE,
           errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH,
           errno.EHOSTUNREACH}
_STORAGE_ERRORS = ('OperationalError', 'InterfaceError', 'DisconnectionError')  # SQLAlchemy / DB-API: it went away
_XLA_STATUSES = ('RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'ABORTED')  # out of memory, a lost device


def cause_of(err: BaseException) -> str:
  """ENVIRONMENT when anything in `err`'s chain of causes failed outside the trial, else TRIAL."""
  seen = set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    if _outside(err):
      return ENVIRONMENT
    err = err.__cause__ or err.__context__
  return TRIAL


def _outside(err: BaseException) -> bool:
  if isinstance(err, (MemoryError, ConnectionError, TimeoutError)):
    return True
  if isinstance(err, OSError):
    return err.errno in _ERRNOS
  if isinstance(err, jax.errors.JaxRuntimeError):
    return str(err).startswith(_XLA_STATUSES)
  return type(err).__name__ in _STORAGE_ERRORS
