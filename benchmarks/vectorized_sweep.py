"""Vectorised vs sequential trials: an 8-trial learning-rate x weight-decay sweep on the quickstart. Run by hand:

    python benchmarks/vectorized_sweep.py [--epochs 15] [--eval-every 50] [--workdir /tmp/ftlab_vectorized_bench]

Runs `python -m ftlab.sweep` on configs/quickstart.py with a 4 x 2 grid (learning rate 3e-4, 1e-3, 3e-3, 1e-2 x
weight decay 0, 1e-2; one seed) twice in fresh processes and fresh sweep folders: sequential (vectorize 1) and
vectorised (vectorize 8), with jax's persistent compilation cache off so that each compiles from scratch. Both
start from the same source-task run (the quickstart pretrains on digits 0-4), made once beforehand and copied into
each sweep folder, so that the comparison is of the trials. --epochs and --eval-every lengthen the trials and
space their evaluations (and checkpoints) out, to show where the time of a trial goes.

Prints per mode: the process's wall time end to end (Python start, imports, planning every trial, training,
evaluating, checkpointing, writing; no report), the trials' own wall time (from trials.jsonl: a vectorised group
counts once), the number of XLA compilations and of train-step compilations (from JAX_LOG_COMPILES), and how many
trials end with the same status, best and final step in both modes, with the largest objective difference.

--profile then runs both sweeps once more under cProfile (slower: not the timed runs) and prints where each one's
time goes: the seconds inside imports, planning, Optuna's storage, initial states, XLA compilation and the train
loops, and within the loops evaluations, checkpoint saves (a group's: one per save step), the end of a group (its
trials' checkpoints written into their own folders), restores, metric rows and the rest (steps, train metrics,
bookkeeping). Compilation happens inside initial states and the loops' first steps, so the rows overlap.
"""
import argparse
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP_FILE = '''
import importlib.util

_spec = importlib.util.spec_from_file_location('quickstart', {quickstart!r})
_quickstart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_quickstart)


def get_config(arg=None):
  config = _quickstart.get_config(arg)
  config.train.num_epochs = {epochs}
  config.eval.every_steps = {eval_every} or config.eval.every_steps
  return config


def get_sweep(arg=None):
  return {{'kind': 'grid', 'seeds': [0], 'params': {{'optimizer.learning_rate': [3e-4, 1e-3, 3e-3, 1e-2],
                                                   'optimizer.weight_decay': [0.0, 1e-2]}}}}
'''


# (label, pstats pattern 'file:line(function)'): where a sweep's time goes, as --profile prints it
PROFILE = (
    ('planning the trials (make_plan)', r'ftlab/plan\.py:\d+\(make_plan\)'),
    ('optuna storage (sqlite)', r'optuna/storages/_rdb/storage\.py:\d+\(__init__\)'),
    ('initial states (init, source weights, optimizer)', r'ftlab/initial_state\.py:\d+\(initial_state\)'),
    ('XLA compilation (every program)', r'compiler\.py:\d+\(backend_compile_and_load\)'),
    ('train loops (loop._Run.train and .finish)', r'ftlab/loop\.py:\d+\((train|finish)\)'),
)
LOOP_PARTS = (
    ('  evaluations', r'ftlab/evaluation\.py:\d+\(evaluate_splits\)'),
    ('  checkpoint saves (orbax, blocking part)', r'ftlab/(group_checkpoints|trial)\.py:\d+\(save\)'),
    ("  a group's end: its trials' checkpoints into their folders", r'ftlab/group_checkpoints\.py:\d+\(end\)'),
    ('  waiting for async saves', r'ftlab/checkpoints\.py:\d+\(wait\)'),
    ('  checkpoint restores', r'ftlab/checkpoints\.py:\d+\(restore\)'),
    ('  metric rows (jsonl, TensorBoard)', r'ftlab/writers\.py:\d+\(write\)'),
)


def profile_table(path: str) -> dict:
  """{label: cumulative seconds} from a cProfile file: for each pattern, the time of the calls entered from
  outside it (a nested call is not counted twice); the loop's parts, and the rest of it (steps, metrics,
  bookkeeping)."""
  stats = pstats.Stats(path).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

  def seconds(pattern: str) -> float:
    rx = re.compile(pattern)
    named = {f for f in stats if rx.search(f'{f[0]}:{f[1]}({f[2]})')}
    return sum(t for f in named for caller, (_, _, _, t) in stats[f][4].items() if caller not in named)

  module, main = seconds(r'ftlab/sweep\.py:1\(<module>\)'), seconds(r'ftlab/sweep\.py:\d+\(main\)')
  out = {'total (cProfile)': max(v[3] for v in stats.values()), 'imports (before the sweep starts)': module - main}
  out.update((label, seconds(pattern)) for label, pattern in PROFILE)
  parts = {label: seconds(pattern) for label, pattern in LOOP_PARTS}
  out.update(parts)
  out['  the rest: steps (the first compiles), train metrics, bookkeeping'] = (
      out[PROFILE[-1][0]] - sum(parts.values()))
  return out


def sweep(config_file: str, workdir: str, vectorize: int, pretrain_from: str, profile: str = '') -> dict:
  if pretrain_from:  # with the first sweep's sweep.json: a folder holding pretrain/ alone reads as a run's folder
    shutil.copytree(pretrain_from, os.path.join(workdir, 'pretrain'))
    shutil.copy(os.path.join(os.path.dirname(pretrain_from), 'sweep.json'), workdir)
  env = {**os.environ, 'FTLAB_COMPILATION_CACHE': 'off', 'JAX_LOG_COMPILES': '1'}
  cmd = [sys.executable, *(['-m', 'cProfile', '-o', profile] if profile else []), '-m', 'ftlab.sweep', '--config',
         config_file, '--workdir', workdir, '--report=false', f'--sweep.vectorize={vectorize}']
  t0 = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if out.returncode:
    sys.exit(f'{" ".join(cmd)} failed:\n{out.stderr[-3000:]}')
  compiled = re.findall(r'Finished XLA compilation of (\S+)', out.stderr)
  with open(os.path.join(workdir, 'trials.jsonl')) as f:
    rows = {r['id']: r for r in map(json.loads, f)}
  return {'wall': wall, 'trials': sum(set(r['wall_seconds'] for r in rows.values())), 'compilations': len(compiled),
          'train_step_compilations': sum(1 for c in compiled if 'train_step' in c), 'rows': rows}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--epochs', type=float, default=15.0, help="the quickstart's train.num_epochs")
  parser.add_argument('--eval-every', type=int, default=0, help="eval.every_steps (0: the quickstart's 50)")
  parser.add_argument('--workdir', default='')
  parser.add_argument('--profile', action='store_true', help='then profile both sweeps and print where time goes')
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix='ftlab_vectorized_bench_')
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  config_file = os.path.join(root, 'lr_wd_sweep.py')
  with open(config_file, 'w') as f:
    f.write(SWEEP_FILE.format(quickstart=os.path.join(ROOT, 'configs', 'quickstart.py'), epochs=args.epochs,
                                 eval_every=args.eval_every))
  # The shared source-task run, made once by a first (vectorised) sweep, which also warms the file system cache.
  t0 = time.perf_counter()
  sweep(config_file, os.path.join(root, 'warm'), 8, '')
  pretrain = os.path.join(root, 'warm', 'pretrain')
  print(f'the source-task run and a first sweep (to make it): {time.perf_counter() - t0:.1f} s')
  results = {}
  for name, k in (('sequential', 1), ('vectorised', 8)):
    results[name] = sweep(config_file, os.path.join(root, name), k, pretrain)
  seq, vec = results['sequential'], results['vectorised']
  print(f'\n8-trial lr x wd sweep on the quickstart ({args.epochs:g} epochs per trial, '
        f'{next(iter(seq["rows"].values()))["final_step"]} steps), 2 CPU cores\n')
  print(f'{"mode":<12} {"end to end s":>13} {"trials s":>9} {"compilations":>13} {"train-step compilations":>24}')
  for name, r in results.items():
    print(f'{name:<12} {r["wall"]:>13.1f} {r["trials"]:>9.1f} {r["compilations"]:>13} '
          f'{r["train_step_compilations"]:>24}')
  print(f'\nspeed-up: end to end {seq["wall"] / vec["wall"]:.2f}x, trials {seq["trials"] / vec["trials"]:.2f}x '
        f'(target: >= 4x end to end: {"PASS" if seq["wall"] / vec["wall"] >= 4 else "MISS"})')
  same, worst = [], 0.0
  for rid, a in seq['rows'].items():
    b = vec['rows'][rid]
    same.append((a['status'], a['best_step'], a['final_step']) == (b['status'], b['best_step'], b['final_step']))
    worst = max(worst, abs(a['objective'] - b['objective']))
  print(f'{sum(same)} of {len(same)} trials with the same status, best and final step; largest objective difference '
        f'{worst:.2e} (vmapped matmuls sum in another order: differences of 1e-7 per step, which long runs at high '
        'learning rates can amplify)')
  if args.profile:
    tables = {}
    for name, k in (('sequential', 1), ('vectorised', 8)):
      prof = os.path.join(root, f'{name}.prof')
      sweep(config_file, os.path.join(root, f'{name}_profiled'), k, pretrain, profile=prof)
      tables[name] = profile_table(prof)
    print(f'\nwhere the time goes, under cProfile (seconds; categories overlap, see the docstring)\n')
    width = max(map(len, tables['sequential']))
    print(f'{"":<{width}} {"sequential":>11} {"vectorised":>11}')
    for label in tables['sequential']:
      print(f'{label:<{width}} {tables["sequential"][label]:>11.2f} {tables["vectorised"][label]:>11.2f}')


if __name__ == '__main__':
  main()
