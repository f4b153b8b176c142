"""Parallel layouts: sharded jit, FSDP and the per-device 'pmap' program on 8 virtual CPU devices train like one
device, a run resumes under another layout, the FSDP shardings survive the jitted step; config checks and the
multi-host arguments.

The device count is fixed when jax starts, so the 8-device runs go to one subprocess (XLA_FLAGS); the one-device
reference runs here. Tolerance: float32 summation order only (the gradient sum over devices, the loss weight), so
parameters and every metric agree to RTOL / ATOL.
"""
import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import ROOT, run_ftlab, small_config
from ftlab import checkpoints, loop, main, parallel
from ftlab import config as config_lib
from ftlab.optim import groups
from ftlab.plan import make_plan

RTOL, ATOL = 1e-5, 1e-6
EIGHT = '--xla_force_host_platform_device_count=8'


def write_config(tmp_path, **overrides) -> str:
  """A config file: small_config(**overrides) ('a__b': value), for `--config=` of subprocess runs."""
  path = tmp_path / 'parallel_config.py'
  path.write_text('from conftest import small_config\n\n'
                  f'def get_config(arg=None):\n  return small_config(**{overrides!r})\n')
  return str(path)


def final_params(workdir, step) -> dict:
  tree = checkpoints.restore_params(os.path.join(workdir, 'checkpoints'), step)
  return {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def outputs(workdir) -> tuple[list, dict]:
  """(metrics.jsonl rows, summary.json without its wall time)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  summary.pop('train_seconds_this_session')
  return rows, summary


def assert_close(expected, actual, where=''):
  """Equal structure, strings and flags; numbers within RTOL / ATOL."""
  if isinstance(expected, dict):
    assert sorted(expected) == sorted(actual), where
    for key in expected:
      assert_close(expected[key], actual[key], f'{where}.{key}')
  elif isinstance(expected, (list, tuple)):
    assert len(expected) == len(actual), where
    for i, (e, a) in enumerate(zip(expected, actual)):
      assert_close(e, a, f'{where}[{i}]')
  elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=where)
  else:
    assert expected == actual, where


def assert_same_run(reference: str, other: str, step: int):
  a, b = final_params(reference, step), final_params(other, step)
  assert a.keys() == b.keys()
  for path in a:
    np.testing.assert_allclose(b[path], a[path], rtol=RTOL, atol=ATOL, err_msg=f'{other}: {path}')
  assert_close(outputs(reference), outputs(other), other)


# Runs in the 8-device subprocess: each argv through ftlab.main (as the command line), then the FSDP check.
EIGHT_DEVICE_SCRIPT = '''
import json, sys
import jax
from ftlab import config as config_lib, data, main, parallel
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.steppers import SingleStepper
runs, fsdp_config = json.loads(sys.argv[1])
for argv in runs:
  assert main.main(argv) == 0, argv
config = config_lib.load_config_file(fsdp_config[0])
for key, value in fsdp_config[1].items():
  config_lib.set_key(config, key, value)
p = make_plan(config, fsdp_config[2])
state = initial_state(p)
stepper = SingleStepper(p)  # the run's own compiled step in its layout
layout, step_fn = stepper.layout, stepper.train_fn
state = layout.place_state(state)
specs = lambda tree: [str(x.sharding.spec) for x in jax.tree.leaves(tree)]
before = specs(state)
it = data.train_iterator(p.splits.train, batch_size=config.train.batch_size, seed=0)
for _ in range(2):
  state, metrics = step_fn(state, layout.place_batch(next(it)))
print('FSDP ' + json.dumps({'devices': jax.device_count(), 'before': before, 'after': specs(state),
                            'params': specs(state.params), 'metrics': specs(metrics)}))
'''


def test_jit_fsdp_and_pmap_on_eight_devices_train_like_one_and_resume_across_layouts(tmp_path):
  """One config (dropout 0: the 'pmap' program draws its masks per device) trained 20 steps on one device here, and
  on 8 devices as sharded jit, FSDP and 'pmap'; the 'pmap' run is then resumed to 30 steps under FSDP, as the
  one-device run is resumed (train.num_steps raised). Same parameters, metrics.jsonl and summary.json."""
  overrides = {'model__dropout_rate': 0.0, 'train__num_steps': 20, 'eval__every_steps': 10}
  config_path = write_config(tmp_path, **overrides)
  single = str(tmp_path / 'single')
  loop.train_and_evaluate(make_plan(small_config(**overrides), single))
  fsdp = ['--config.parallel.fsdp=True', '--config.parallel.fsdp_min_size=0']  # every divisible leaf splits
  run = lambda name, *extra: [f'--config={config_path}', f'--workdir={tmp_path / name}', *extra]
  runs = [run('jit'), run('fsdp', *fsdp), run('pmap', '--config.parallel.mode=pmap'),
          run('pmap', '--config.train.num_steps=30', *fsdp)]
  check = [config_path, {'parallel.fsdp': True, 'parallel.fsdp_min_size': 0}, str(tmp_path / 'unused')]
  result = run_ftlab(EIGHT_DEVICE_SCRIPT, [json.dumps([runs, check])], env={'XLA_FLAGS': EIGHT}, cwd=ROOT,
                     log_base=str(tmp_path / 'eight'))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  for name in ('jit', 'fsdp'):
    assert_same_run(single, str(tmp_path / name), 20)
  a, b = final_params(single, 20), final_params(str(tmp_path / 'pmap'), 20)  # the 'pmap' run's own 20 steps
  for path in a:
    np.testing.assert_allclose(b[path], a[path], rtol=RTOL, atol=ATOL, err_msg=path)
  assert f'resuming {tmp_path / "pmap"} from step 20' in result.stdout
  loop.train_and_evaluate(make_plan(small_config(**{**overrides, 'train__num_steps': 30}), single))
  assert_same_run(single, str(tmp_path / 'pmap'), 30)  # rows of steps 10-20 from 'pmap', 30 from FSDP

  report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith('FSDP '))[5:])
  assert report['devices'] == 8
  assert report['after'] == report['before']  # the jitted step hands the state back laid out as it took it
  assert "P('data',)" in report['params'] and 'P()' in report['params']  # the head bias [5]
  assert set(report['metrics']) == {'P()'}


def test_fsdp_splits_each_leaf_on_its_largest_divisible_dimension():
  spec = parallel.fsdp_spec
  assert spec((64, 32), 8, 0) == P('data')
  assert spec((24, 64, 3), 8, 0) == P(None, 'data')
  assert spec((64, 64), 8, 0) == P('data')  # ties: the first
  assert spec((12, 5), 8, 0) == P()  # nothing divides by 8: replicated
  assert spec((64, 32), 8, 4096) == P()  # below the size threshold: replicated
  assert spec((), 8, 0) == P() and spec((64, 32), 1, 0) == P()


def _problems(**overrides):
  return config_lib.validate(small_config(**overrides))


def test_parallel_config_problems_name_the_key_and_the_fix():
  assert _problems() == []
  assert _problems(parallel__mode='shard_map') == [
      "parallel.mode: 'shard_map' is not a mode; choose 'jit' (sharded jax.jit, the default) or 'pmap' (a "
      "per-device program)"]
  assert _problems(parallel__mode='pmap', parallel__fsdp=True)[0].startswith(
      "parallel.fsdp: needs parallel.mode='jit'")
  assert _problems(parallel__fsdp_min_size=-1) == ['parallel.fsdp_min_size: must be >= 0 elements, got -1']
  assert _problems(parallel__mode=3) == ["parallel.mode: expected a string, got 3 (int)"]
  enabled = {'parallel__distributed__enabled': True}
  assert _problems(**enabled, parallel__distributed__coordinator_address='localhost')[0].startswith(
      "parallel.distributed.coordinator_address: 'localhost' is not 'host:port'")
  assert _problems(**enabled, parallel__distributed__coordinator_address='10.0.0.2:1234') == []
  assert _problems(**enabled, parallel__distributed__num_processes=2, parallel__distributed__process_id=2)[0] \
      .startswith('parallel.distributed.process_id: 2 is not in 0..num_processes-1')
  assert _problems(parallel__distributed__num_processes=2) == [
      'parallel.distributed.enabled: is False, but parallel.distributed.num_processes is set; set '
      'parallel.distributed.enabled=True to run on several processes (or unset it)']
  # the device count: the same check for both modes, with the multiple to use
  run_problems = config_lib.check_run(small_config(parallel__mode='pmap', train__batch_size=36), num_devices=8,
                                      total_steps=40, steps_per_epoch=10)
  assert 'train.batch_size: 36 does not divide by the 8 devices; use a multiple of 8' in run_problems
  # a resumed run may change its layout (not its results beyond float order): no difference is reported
  saved = small_config().to_dict()
  assert config_lib.config_differences(saved, small_config(parallel__mode='pmap', parallel__fsdp=False).to_dict()) \
      == []


def test_distributed_arguments_come_from_the_config_then_the_environment():
  d = small_config().parallel.distributed
  env = {'JAX_COORDINATOR_ADDRESS': 'h0:1234', 'JAX_NUM_PROCESSES': '4', 'JAX_PROCESS_ID': '3',
         'JAX_LOCAL_DEVICE_IDS': '0,1'}
  assert parallel.distributed_arguments(d, env) is None  # off unless enabled
  d.enabled = True
  assert parallel.distributed_arguments(d, {}) == {  # all None: jax's cluster detection fills them in
      'coordinator_address': None, 'num_processes': None, 'process_id': None, 'local_device_ids': None,
      'initialization_timeout': 300}
  assert parallel.distributed_arguments(d, env) == {
      'coordinator_address': 'h0:1234', 'num_processes': 4, 'process_id': 3, 'local_device_ids': [0, 1],
      'initialization_timeout': 300}
  d.coordinator_address, d.num_processes, d.process_id, d.local_device_ids = 'h1:99', 2, 0, [1]
  assert parallel.distributed_arguments(d, env) == {
      'coordinator_address': 'h1:99', 'num_processes': 2, 'process_id': 0, 'local_device_ids': [1],
      'initialization_timeout': 300}


@pytest.mark.skipif(any(k in os.environ for k in ('SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE', 'JAX_COORDINATOR_ADDRESS',
                                                  'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')),
                    reason='a cluster environment would fill in the distributed arguments')
def test_distributed_without_coordinator_or_cluster_is_a_clear_error(tmp_path):
  # In a fresh process (jax.distributed.initialize refuses to run once jax is in use, as it is in this one).
  script = ('from conftest import small_config\nfrom ftlab import parallel\n'
            'try:\n  parallel.initialize(small_config(parallel__distributed__enabled=True).parallel.distributed)\n'
            'except ValueError as err:\n  print(err)\n')
  result = run_ftlab(script, [], log_base=str(tmp_path / 'script'))
  assert result.stdout.startswith('parallel.distributed.enabled: coordinator_address should be defined. No cluster '
                                  'was detected'), result.stdout + result.stderr
  assert 'set parallel.distributed.coordinator_address (host:port of process 0), num_processes' in result.stdout
  # ftlab.main reports it (or, here, that jax is already in use) as a config problem: exit status 2, nothing run
  with pytest.raises(config_lib.ConfigError) as err:
    main.start_processes(small_config(parallel__distributed__enabled=True))
  assert err.value.problems[0].startswith('parallel.distributed.enabled: ')
  assert not jax.distributed.is_initialized()
