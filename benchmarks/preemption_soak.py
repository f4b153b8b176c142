"""Preemption soak: one run killed at random wall-clock moments, many times, must end bit-identical to a run that
never stopped. Run by hand (it takes minutes); the tests kill at chosen fault points instead (tests/test_preemption.py).

    python benchmarks/preemption_soak.py [--config=configs/quickstart.py] [--kills=30] [--term-every=5] [--seed=0]

Every --term-every-th interruption is a SIGTERM (the run must save and exit with status 143); the others are
SIGKILLs at a moment drawn uniformly over the uninterrupted run's wall time, so they land mid-step, mid-save,
mid-evaluation and during start-up alike. When the run finishes before all the kills are spent, it starts over in a
new workdir (and that round is compared too). Prints one line per interruption and a table at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from ftlab import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(config: str, workdir: str, overrides: list[str]) -> list[str]:
  return [sys.executable, '-m', 'ftlab.main', f'--config={config}', f'--workdir={workdir}', *overrides]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs', 'quickstart.py'))
  parser.add_argument('--kills', type=int, default=30, help='interruptions in all')
  parser.add_argument('--term-every', type=int, default=5, help='every N-th interruption is a SIGTERM (0: none)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--root', default='', help='folder for the runs (default: a new temporary one)')
  parser.add_argument('overrides', nargs='*', help='--config.KEY=VALUE overrides for every run')
  args = parser.parse_args()
  root = args.root or tempfile.mkdtemp(prefix='ftlab-soak-')
  env = {**os.environ, 'PYTHONPATH': ROOT}
  rng = random.Random(args.seed)

  whole = os.path.join(root, 'whole')
  t0 = time.perf_counter()
  subprocess.run(command(args.config, whole, args.overrides), env=env, check=True, capture_output=True)
  reference = time.perf_counter() - t0
  print(f'uninterrupted: {reference:.1f} s ({whole})', flush=True)

  rounds, kills, terms, early_terms, overhead = [], 0, 0, 0, 0.0  # rounds: (workdir, its interruptions)
  workdir = os.path.join(root, 'round0')
  done = in_round = 0
  while done < args.kills:
    term = args.term_every and (done + 1) % args.term_every == 0
    at = rng.uniform(0.2, reference)
    t0 = time.perf_counter()
    proc = subprocess.Popen(command(args.config, workdir, args.overrides), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
      proc.wait(timeout=at)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGTERM if term else signal.SIGKILL)
    _, err = proc.communicate()
    overhead += time.perf_counter() - t0
    if proc.returncode == 0:  # finished before the moment came: compare this round, start another
      rounds.append((workdir, in_round))
      in_round = 0
      workdir = os.path.join(root, f'round{len(rounds)}')
      continue
    # SIGTERM before ftlab has installed its handler (while Python imports) takes the default action: -15
    expected = (128 + signal.SIGTERM, -signal.SIGTERM) if term else (-signal.SIGKILL,)
    if proc.returncode not in expected:
      raise SystemExit(f'interruption {done + 1}: exit status {proc.returncode}, expected {expected}\n{err[-3000:]}')
    done += 1
    in_round += 1
    kills += not term
    terms += proc.returncode == 128 + signal.SIGTERM
    early_terms += proc.returncode == -signal.SIGTERM
    print(f'{done:3d}: {"SIGTERM" if term else "SIGKILL"} after {at:5.1f} s: exit status {proc.returncode}', flush=True)
  t0 = time.perf_counter()
  subprocess.run(command(args.config, workdir, args.overrides), env=env, check=True, capture_output=True)
  overhead += time.perf_counter() - t0
  rounds.append((workdir, in_round))

  print(f'\n| round | interrupted runs | result vs uninterrupted |\n|---|---|---|')
  same = True
  for r, interruptions in rounds:
    found = [f'{run}: {d}' for run in ('', 'pretrain') if os.path.isdir(os.path.join(whole, run))
             for d in compare.differences(os.path.join(whole, run), os.path.join(r, run))]
    same &= not found
    print(f'| {os.path.basename(r)} | {interruptions} | {"bit-identical" if not found else "; ".join(found[:5])} |')
  print(f'\nSIGKILLs survived: {kills}; SIGTERMs saved and exited 143: {terms}, SIGTERMs during start-up (default '
        f'action, like a kill): {early_terms}; rounds (each finished, then compared, with its source-task '
        f'run when it has one): {len(rounds)}')
  print(f'wall time: uninterrupted {reference:.1f} s; all interrupted rounds {overhead:.1f} s')
  print('RESULT:', 'every round bit-identical to the uninterrupted run' if same else 'DIFFERENCES (see above)')
  sys.exit(0 if same else 1)


if __name__ == '__main__':
  main()
