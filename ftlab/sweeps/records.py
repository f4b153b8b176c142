"""The files of a sweep directory: sweep.json (what was asked) and trials.jsonl (one row per finished trial).

trials.jsonl is appended by every worker of a sweep, possibly at once and possibly killed mid-write. Appends hold
an exclusive lock (fcntl on trials.jsonl.lock) and first cut off a half-written last line left by a killed writer;
a row is written once per trial id (a second write of the same id is a no-op), so a worker that resumes a trial
whose row already landed does not duplicate it; the one exception is a trial that failed for a cause outside itself
(`retryable`): a rerun runs it again and appends its next attempt, which readers take in its place. Readers report a
line that is not JSON with its file and line number instead of a traceback.

A row: {'id', 'config_id', 'values' (the swept values by key), 'seed', 'status' ('complete', 'pruned', 'diverged'
or 'failed'), 'step' (complete: the best step; pruned / diverged: the step it stopped at), 'best_step',
'final_step', 'objective' (the sweep's metric at the best step, or None), 'validation', 'test', 'train_eval'
(metric dicts or None), 'wall_seconds', 'workdir' (relative to the sweep directory), 'message'}; a failed row also
has 'cause' ('environment': I/O, memory, the network or storage; 'trial': its config, data or code;
ftlab/sweeps/causes.py), and a trial run again 'attempt' (2, 3, ...).
"""
from __future__ import annotations

import json
import os

from ftlab import locks

STATUSES = ('complete', 'pruned', 'diverged', 'failed')
RETRIES = 2  # the times a rerun runs again a trial that failed for a cause outside itself
WORKER_DEATHS = 4  # the times a trial's worker may die while running it (SIGKILL, the kernel) before it is failed
TRIALS = 'trials.jsonl'
SWEEP = 'sweep.json'


class RecordError(ValueError):
  """A sweep file that cannot be read: names the file, the line and what to do."""


def read(sweep_dir: str) -> list[dict]:
  """The rows of sweep_dir/trials.jsonl in file order, each trial's latest attempt in the place of its first ([]
  when there is none). A half-written last line (no newline: its writer was killed) is ignored; any other line that
  is not a JSON object raises RecordError."""
  path = os.path.join(sweep_dir, TRIALS)
  if not os.path.exists(path):
    return []
  if not os.path.isfile(path):
    raise RecordError(f'{path}: a folder, not the file of trial records; move it aside and rerun (the finished '
                      'trials are then read from their own folders again as they are rerun)')
  with open(path, 'rb') as f:
    data = f.read()
  lines = data.split(b'\n')
  complete, tail = lines[:-1], lines[-1]  # `tail` is b'' when the file ends with a newline
  rows = []
  for number, line in enumerate(complete, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line.decode('utf-8'))
    except UnicodeDecodeError as err:
      raise RecordError(f'{path}, line {number}: not UTF-8 text (byte {line[err.start]:#04x} at column '
                        f'{err.start + 1}); delete or repair that line and rerun (its trial is then run again)') from err
    except json.JSONDecodeError as err:
      raise RecordError(f'{path}, line {number}: not a JSON row ({err.msg}); delete or repair that line and rerun '
                        '(its trial is then run again)') from err
    if not isinstance(row, dict) or 'id' not in row or row.get('status') not in STATUSES:
      raise RecordError(f'{path}, line {number}: not a trial row (needs an "id" and a "status" in {STATUSES}); '
                        'delete or repair that line and rerun')
    rows.append(row)
  del tail  # a killed writer's partial row: not a result; append() cuts it off
  return list(by_id_of(rows).values())


def by_id_of(rows: list[dict]) -> dict[str, dict]:
  """{id: the trial's last row}, in the order the ids first appear."""
  latest: dict[str, dict] = {}
  for row in rows:
    latest[row['id']] = row
  return latest


def by_id(sweep_dir: str) -> dict[str, dict]:
  return by_id_of(read(sweep_dir))


def retryable(row: dict | None) -> bool:
  """Whether a rerun runs the trial of `row` again: it failed for a cause outside itself, with retries left."""
  return (row is not None and row.get('status') == 'failed' and row.get('cause') == 'environment'
          and row.get('attempt', 1) <= RETRIES)


def append(sweep_dir: str, row: dict) -> bool:
  """Appends `row` unless a row with its id is already there (or the one there is retryable and `row` its next
  attempt); returns whether it was written."""
  if row.get('status') not in STATUSES:
    raise ValueError(f'trial row status {row.get("status")!r} is not one of {STATUSES}')
  path = os.path.join(sweep_dir, TRIALS)
  with locks.waiting(path + '.lock'):
    there = by_id(sweep_dir).get(row['id'])
    if there is not None and not (retryable(there) and row.get('attempt', 1) > there.get('attempt', 1)):
      return False
    if os.path.exists(path):
      with open(path, 'rb+') as f:  # cut a half-written last line (a killed writer's)
        data = f.read()
        if data and not data.endswith(b'\n'):
          f.truncate(data.rfind(b'\n') + 1)
    with open(path, 'a') as f:
      f.write(json.dumps(row, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
  return True


def read_sweep(sweep_dir: str) -> dict | None:
  """sweep.json's contents, or None when the directory holds no sweep yet."""
  path = os.path.join(sweep_dir, SWEEP)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  except UnicodeDecodeError as err:
    raise RecordError(f'{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); restore '
                      'it, or start the sweep in a new --workdir') from err
  except json.JSONDecodeError as err:
    raise RecordError(f'{path}: not valid JSON ({err.msg} at line {err.lineno}); restore it, or start the sweep in a '
                      'new --workdir') from err
  if not isinstance(record, dict):
    raise RecordError(f'{path}: holds a JSON {type(record).__name__}, not the sweep record (an object); restore it, '
                      'or start the sweep in a new --workdir')
  return record


def read_metrics(sweep_dir: str, row: dict) -> list[dict]:
  """The metrics.jsonl rows of a trial ([] when its run wrote none). A last line that is not a whole row (a killed
  run's) is ignored; any other line that is not a JSON object raises RecordError naming it."""
  path = os.path.join(sweep_dir, row['workdir'], 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    lines = [(number, line) for number, line in enumerate(f.read().split(b'\n'), 1) if line.strip()]
  out = []
  for k, (number, line) in enumerate(lines):
    try:
      value = json.loads(line.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
      if k == len(lines) - 1:
        break  # a killed run's last line; the rows before it are whole
      raise RecordError(f'{path}, line {number}: not a JSON row ({err}); delete that line, or rerun the trial in a '
                        'new sweep --workdir') from err
    if not isinstance(value, dict):
      raise RecordError(f'{path}, line {number}: holds a JSON {type(value).__name__}, not a metrics row (an object); '
                        'delete that line, or rerun the trial in a new sweep --workdir')
    out.append(value)
  return out
