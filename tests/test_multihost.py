"""Multi-host on one machine: two `python -m ftlab.main` processes (forked from the tests' fork server) joined by jax.distributed (CPU collectives,
gloo), 2 virtual devices each, train, checkpoint, stop, resume (under another layout) and end like one process
with the same 4 devices; only process 0 writes the outputs.

Every subprocess has a deadline and is killed (SIGKILL: jax's distributed runtime catches SIGTERM) when it passes
it, so a hung collective fails the test instead of hanging the suite.
"""
import os
import socket

import pytest

from conftest import run_ftlab, small_config, start_ftlab
from ftlab import checkpoints, data
from test_parallel import assert_same_run, write_config

DEADLINE = 240  # seconds per launch; a launch takes ~20 s on 2 cores
DEVICES = '--xla_force_host_platform_device_count=2'  # per process


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def launch_two(tmp_path, name: str, argv: list[str]) -> list[str]:
  """Runs `python -m ftlab.main ARGV` as processes 0 and 1 of one run; returns their outputs (stdout + stderr)."""
  distributed = ['--config.parallel.distributed.enabled=True', '--config.parallel.distributed.num_processes=2',
                 f'--config.parallel.distributed.coordinator_address=localhost:{free_port()}',
                 '--config.parallel.distributed.initialization_timeout=120']
  procs = [start_ftlab('ftlab.main', [*argv, *distributed], env={'XLA_FLAGS': DEVICES, 'JAX_PROCESS_ID': str(i)},
                       log_base=str(tmp_path / f'{name}_process_{i}')) for i in range(2)]
  try:
    results = [p.wait(timeout=DEADLINE) for p in procs]
  finally:
    for p in procs:
      p.kill()
  codes = [r.returncode for r in results]
  texts = [r.stdout + r.stderr for r in results]
  assert codes == [0, 0], f'{name}: exit codes {codes}\n' + '\n'.join(t[-3000:] for t in texts)
  return texts


def test_two_processes_train_stop_resume_and_match_one_process(tmp_path):
  overrides = {'model__dropout_rate': 0.0, 'train__num_steps': 10, 'eval__every_steps': 5}
  data.load(small_config().data)  # the digits prepared once here, not by two processes at the same time
  config_path = write_config(tmp_path, **overrides)
  workdir, reference = tmp_path / 'two_processes', tmp_path / 'one_process'
  argv = [f'--config={config_path}', f'--workdir={workdir}']

  # Session 1: 10 steps, parameters and optimizer state sharded over both processes' devices (FSDP).
  first = launch_two(tmp_path, 'first', [*argv, '--config.parallel.fsdp=True', '--config.parallel.fsdp_min_size=0'])
  saved = workdir / 'checkpoints' / '10' / 'data'
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(os.listdir(saved))  # grain: a file per process
  # Session 2: resumed to 20 steps as the per-device 'pmap' program.
  second = launch_two(tmp_path, 'second', [*argv, '--config.train.num_steps=20', '--config.parallel.mode=pmap'])
  for text in second:
    assert f'resuming {workdir} from step 10' in text, text[-3000:]
  # Only process 0 reports (console) and writes (metrics.jsonl, summary.json: compared below, no doubled rows).
  for writer, other in (first, second):
    assert 'eval @ 10:' in writer or 'eval @ 20:' in writer
    assert 'eval @' not in other and 'best validation' not in other and 'optimizer plan' not in other

  # The same run in one process with the same 4 devices: 10 steps, then resumed to 20.
  script = ('import sys\nfrom ftlab import main\n'
            'for steps in (10, 20):\n'
            '  assert main.main([*sys.argv[1:], f"--config.train.num_steps={steps}"]) == 0\n')
  one = run_ftlab(script, [f'--config={config_path}', f'--workdir={reference}'], log_base=str(tmp_path / 'one'),
                  env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}, timeout=DEADLINE)
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
  assert_same_run(str(reference), str(workdir), 20)


def test_a_checkpoint_of_another_process_count_is_refused_with_the_count_to_use(tmp_path):
  """grain restores a process's iterator from the file of its own process count; ftlab says which count to use."""
  ckpts = checkpoints.Checkpoints(str(tmp_path / 'checkpoints'), keep=1, mode='max')
  data_dir = tmp_path / 'checkpoints' / '10' / 'data'
  data_dir.mkdir(parents=True)
  for i in range(2):
    (data_dir / f'process_{i}-of-2.json').write_text('{}')
  with pytest.raises(ValueError, match='written by 2 processes, this run has 1; resume it with 2 processes'):
    ckpts._check_processes(10)
  (data_dir / 'process_0-of-1.json').write_text('{}')
  ckpts._check_processes(10)  # this process's file exists
  ckpts.close()
