"""Where a run's numbers go: metrics.jsonl, TensorBoard event files (tensorboardX, no TensorFlow), the console."""
from __future__ import annotations

import json
import os

import numpy as np
from tensorboardX import SummaryWriter

from ftlab import faults

SCALARS = ('loss', 'accuracy', 'precision_macro', 'recall_macro', 'f1_macro', 'learning_rate')


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: readers never see half a file."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_safetensors_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Arrays by name into a .safetensors file (PyTorch's metadata, as transformers writes them), through a rename."""
  from safetensors.numpy import save_file
  tmp = f'{path}.tmp'
  save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata={'format': 'pt'})
  os.replace(tmp, path)


def write_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Arrays by name into an .npz (no pickles: load with allow_pickle=False), through a rename."""
  tmp = f'{path}.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def write_json_atomic(path: str, obj) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def _row(line: bytes, path: str, number: int, *, last: bool) -> dict | None:
  """One metrics.jsonl row; None for a last line a kill cut short."""
  try:
    row = json.loads(line)
    if isinstance(row, dict) and isinstance(row.get('step'), int) and isinstance(row.get('split'), str):
      return row
  except ValueError:
    pass
  if last:
    return None
  raise ValueError(f'{path}, line {number}: not a metrics row ({line[:80]!r}); it was changed by something other '
                   'than ftlab: restore the file, or move the workdir aside and start the run over')


class MetricWriter:
  """Appends rows {'step', 'split', metric...} to <workdir>/metrics.jsonl and scalars to TensorBoard.

  Opened at `resume_step`, it first drops rows a killed run wrote after its last checkpoint (and any final
  'test' rows, and a last line cut short by the kill), so a resumed run's file ends exactly like an uninterrupted
  run's. A damaged line before the last is not the kill's doing: it is reported with its line number.
  """

  def __init__(self, workdir: str, *, resume_step: int, enabled: bool = True, tensorboard: bool = True,
               trackers: list = ()):
    """`tensorboard`: event files too (log.backends); `trackers`: trackers' runs (ftlab/trackers.py) given every
    row."""
    self.enabled, self.trackers = enabled, list(trackers)
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if not enabled:
      return
    if os.path.exists(self.path):
      with open(self.path, 'rb') as f:
        lines = [line for line in f.read().split(b'\n') if line.strip()]
      rows = [_row(line, self.path, i + 1, last=i == len(lines) - 1) for i, line in enumerate(lines)]
      keep = [r for r in rows if r is not None and r['step'] <= resume_step and r['split'] != 'test']
      if len(keep) != len(rows):
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
          f.writelines(json.dumps(r) + '\n' for r in keep)
        os.replace(tmp, self.path)
    self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=resume_step + 1) \
        if tensorboard else None

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), 'split': split, **values}
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    faults.point('metrics', step, self.path)
    scalars = {name: float(value) for name, value in values.items()
               if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)}
    for tracker in self.trackers:
      tracker.log_row(step, split, scalars)
    for name, value in scalars.items():
      if self.tensorboard is not None:
        self.tensorboard.add_scalar(f'{split}/{name}', value, int(step))

  def close(self) -> None:
    if self.enabled and self.tensorboard is not None:
      try:
        self.tensorboard.close()
      except OSError:  # a full disk: its flush failed before its thread was stopped, which would fail at exit
        _stop_threads(self.tensorboard)
        raise


def _stop_threads(tensorboard) -> None:
  """Stops the event-writing threads of a tensorboardX SummaryWriter whose close() failed."""
  for file_writer in (tensorboard.all_writers or {}).values():
    worker = getattr(file_writer.event_writer, '_worker', None)
    if worker is not None and worker.is_alive():
      worker.stop()
