"""Sweep soak (issue 24): a 12-trial sweep on the quickstart run by three workers that share a PostgreSQL storage,
a random worker SIGKILLed every 20-40 s and started again, until the sweep is done. Every trial must be recorded
exactly once and end bit-identical (ftlab.compare: metrics, summary, predictions, checkpoints) to the same sweep run
by one uninterrupted worker on the default SQLite storage. Run by hand (minutes):

    python benchmarks/sweep_soak.py [--workers 3] [--kill-every 20,40] [--epochs 120] [--seed 0] [--root DIR]

The server is a throwaway PostgreSQL (tests/pg_server.py: the machine's initdb / pg_ctl, listening on a Unix socket
only). The grid: learning rate 3e-4, 1e-3, 3e-3, 1e-2 x weight decay 0, 1e-3, 1e-2, one seed, --epochs each with
early stopping off (the quickstart's source-task runs, one per weight decay, in DIR/pretrain, compared too).
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from ftlab import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP_FILE = '''
from ftlab import config as config_lib


def get_config(arg=None):
  config = config_lib.load_config_file({quickstart!r})
  config.train.num_epochs = {epochs}
  config.early_stopping.enabled = False  # every trial runs its length: time for the kills to land
  return config


def get_sweep(arg=None):
  return {{'kind': 'grid', 'seeds': [0], 'params': {{'optimizer.learning_rate': [3e-4, 1e-3, 3e-3, 1e-2],
                                                   'optimizer.weight_decay': [0.0, 1e-3, 1e-2]}}}}
'''


def pg_server():
  """tests/pg_server.py, loaded by its path (the tests folder is not a package)."""
  spec = importlib.util.spec_from_file_location('pg_server', os.path.join(ROOT, 'tests', 'pg_server.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sweep_command(config_file: str, sweep_dir: str, *extra: str) -> list[str]:
  return [sys.executable, '-m', 'ftlab.sweep', f'--config={config_file}', f'--workdir={sweep_dir}', '--report=false',
          *extra]


def soak(config_file: str, sweep_dir: str, url: str, args, rng: random.Random) -> tuple[int, float]:
  """Runs the workers, killing one at random every --kill-every seconds and starting it again; returns (kills,
  wall seconds) once every worker has exited 0 (nothing left to take)."""
  low, high = map(float, args.kill_every.split(','))
  log = open(os.path.join(os.path.dirname(sweep_dir), 'workers.log'), 'a')
  start = lambda: subprocess.Popen(sweep_command(config_file, sweep_dir, f'--storage={url}'), stdout=log,
                                   stderr=subprocess.STDOUT)
  workers, finished, kills = [start() for _ in range(args.workers)], set(), 0
  t0 = time.perf_counter()
  next_kill = t0 + rng.uniform(low, high)
  while len(finished) < len(workers):
    for i, worker in enumerate(workers):
      code = worker.poll()
      if code is not None and i not in finished:
        if code != 0:
          raise SystemExit(f'worker {i} exited {code} unasked; see {log.name}')
        finished.add(i)
    alive = [i for i in range(len(workers)) if i not in finished]
    if alive and time.perf_counter() >= next_kill:
      i = rng.choice(alive)
      workers[i].send_signal(signal.SIGKILL)
      workers[i].wait()
      kills += 1
      print(f'{time.perf_counter() - t0:6.1f} s: SIGKILL worker {i} (pid {workers[i].pid}); started again', flush=True)
      workers[i] = start()
      next_kill = time.perf_counter() + rng.uniform(low, high)
    time.sleep(0.5)
  return kills, time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workers', type=int, default=3)
  parser.add_argument('--kill-every', default='20,40', help='seconds between kills, drawn uniformly from LOW,HIGH')
  parser.add_argument('--epochs', type=float, default=120.0, help="each trial's train.num_epochs")
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--root', default='')
  args = parser.parse_args()
  root = args.root or tempfile.mkdtemp(prefix='ftlab-sweep-soak-')
  os.makedirs(root, exist_ok=True)
  config_file = os.path.join(root, 'soak_sweep.py')
  with open(config_file, 'w') as f:
    f.write(SWEEP_FILE.format(quickstart=os.path.join(ROOT, 'configs', 'quickstart.py'), epochs=args.epochs))
  reference, soaked = os.path.join(root, 'uninterrupted'), os.path.join(root, 'soaked')
  t0 = time.perf_counter()
  subprocess.run(sweep_command(config_file, reference), check=True, capture_output=True)
  print(f'uninterrupted, one worker, SQLite: {time.perf_counter() - t0:.1f} s', flush=True)
  with pg_server().server() as url:
    kills, wall = soak(config_file, soaked, url, args, random.Random(args.seed))
  with open(os.path.join(soaked, 'trials.jsonl')) as f:
    written = collections.Counter(json.loads(line)['id'] for line in f)
  with open(os.path.join(reference, 'trials.jsonl')) as f:
    expected = sorted(json.loads(line)['id'] for line in f)
  print(f'\n{args.workers} workers on PostgreSQL, {kills} SIGKILLs: {wall:.1f} s')
  same = sorted(written) == expected and set(written.values()) == {1}
  print(f'trials recorded: {len(written)} of {len(expected)}, each once: {set(written.values()) == {1}}')
  for name in ['pretrain/' + p for p in os.listdir(os.path.join(reference, 'pretrain')) if not p.endswith('.lock')] + [
      'trials/' + t for t in expected]:
    found = compare.differences(os.path.join(reference, name), os.path.join(soaked, name))
    same &= not found
    print(f'  {name}: {"bit-identical" if not found else "; ".join(found[:4])}')
  print('RESULT:', 'every trial once, each bit-identical to the uninterrupted sweep' if same else 'DIFFERENCES')
  sys.exit(0 if same else 1)


if __name__ == '__main__':
  main()
