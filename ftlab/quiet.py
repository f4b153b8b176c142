"""Library messages that say nothing to a person running ftlab, dropped from absl's logger (where TFDS and orbax
log): each is logged on every normal run by ftlab's own, correct use of the library.

- TFDS's 'Using custom data configuration': every local dataset is a custom configuration; and 'Variant folder ...
  has no dataset_info.json': a local dataset's folder before ftlab has prepared it (ftlab says what it prepares,
  ftlab/data/builders.py, and a half-prepared folder is prepared again).
- orbax's 'Metadata file does not exist': a source-task run's parameters are read from their item folder
  (checkpoints/N/state), below the step's metadata file, which is not needed to read them.
- orbax's 'Given directory is read only' and 'CheckpointManagerOptions.read_only=True, setting
  save_interval_steps=0': ftlab.evaluate, ftlab.explain and ftlab.export open a run's checkpoints read-only on
  purpose, so that nothing of the run is written.
"""
from __future__ import annotations

import logging

BENIGN = ('Using custom data configuration', 'has no dataset_info.json', 'Metadata file does not exist',
          'Given directory is read only', 'CheckpointManagerOptions.read_only=True')


class _Benign:

  def filter(self, record) -> bool:
    message = record.getMessage()
    return not any(text in message for text in BENIGN)


def install() -> None:
  """Adds the filter to absl's logger (once)."""
  logger = logging.getLogger('absl')
  if not any(isinstance(f, _Benign) for f in logger.filters):
    logger.addFilter(_Benign())
