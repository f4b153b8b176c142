"""1 vs 8 virtual CPU devices: the same quickstart run, the same results. Run by hand:

    python benchmarks/devices.py [--steps 240] [--workdir /tmp/ftlab_devices_bench]

Runs `python -m ftlab.main --config configs/quickstart.py` (source-task run off, dropout kept) for --steps steps in
fresh processes: on 1 device, then on 8 virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)
with parallel.mode 'jit' (batch sharded, state replicated), 'jit' with FSDP, and 'pmap'. Prints each run's wall
time, its test accuracy and the largest difference of any final parameter from the 1-device run.

Speed caveat: 8 virtual devices on one CPU split the same cores 8 ways and add collectives, so they are slower,
not faster; they show that the sharded programs compute the same thing (pmap draws dropout masks per device, so
its parameters differ as a different seed's would, and are compared with dropout 0 in tests/test_parallel.py).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from ftlab import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(workdir: str, steps: int, devices: int, extra: list[str]) -> dict:
  env = {**os.environ, 'FTLAB_COMPILATION_CACHE': 'off',
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}' if devices > 1 else ''}
  cmd = [sys.executable, '-m', 'ftlab.main', '--config', 'configs/quickstart.py', '--workdir', workdir,
         '--config.init.pretrain.enabled=False', '--config.init.reinit=', f'--config.train.num_steps={steps}', '--config.train.num_epochs=0',
         f'--config.eval.every_steps={steps}', *extra]
  t0 = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if out.returncode:
    sys.exit(f'{" ".join(cmd)} failed:\n{out.stderr[-3000:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  params = checkpoints.restore_params(os.path.join(workdir, 'checkpoints'), steps)
  return {'wall': wall, 'test_accuracy': summary['test']['accuracy'], 'params': params}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', type=int, default=240)
  parser.add_argument('--workdir', default='')
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix='ftlab_devices_bench_')
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  cases = [('1 device', 1, []), ('8 devices, jit', 8, []), ('8 devices, jit + FSDP', 8,
           ['--config.parallel.fsdp=True', '--config.parallel.fsdp_min_size=0']),
           ('8 devices, pmap', 8, ['--config.parallel.mode=pmap'])]
  results = {name: run(os.path.join(root, str(i)), args.steps, n, extra) for i, (name, n, extra) in enumerate(cases)}
  base = results['1 device']['params']
  leaves = lambda p: dict(checkpoints_flat(p))
  print(f'\nquickstart MLP on digits 5-9, {args.steps} steps, batch 32, dropout 0.1; 2 CPU cores\n')
  print(f'{"layout":<24} {"wall s":>7} {"test accuracy":>14} {"max |param - 1-device param|":>30}')
  for name, r in results.items():
    diff = max(float(np.max(np.abs(leaves(r['params'])[k] - v))) for k, v in leaves(base).items())
    print(f'{name:<24} {r["wall"]:>7.1f} {r["test_accuracy"]:>14.4f} {diff:>30.2e}')


def checkpoints_flat(tree, prefix=''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from checkpoints_flat(value, f'{prefix}{key}/')
    else:
      yield f'{prefix}{key}', np.asarray(value)


if __name__ == '__main__':
  main()
