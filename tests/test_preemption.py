"""Preemption: a run killed (SIGKILL) at random moments, or told to stop (SIGTERM), and resumed each time ends
bit-identical to a run that never stopped; a damaged latest checkpoint is set aside for the one before it; one
writer per workdir.

The kills come from ftlab.faults (FTLAB_TEST_KILL=POINT@N: the process SIGKILLs itself the N-th time it passes
POINT): mid-step, right after a checkpoint save is issued (its files still being written by orbax's background
thread), mid-evaluation, right after a metrics row, and between the final evaluation and summary.json. The moments
are drawn from a seeded generator, so the test is the same every time and never waits on the clock.
"""
import collections
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys

import pytest

from conftest import assert_same_run, run_ftlab
from ftlab import faults, locks
from ftlab import main as ftlab_main
from ftlab import workdir as workdir_lib

STEPS = 40  # evaluation (and checkpoint) every 8 steps, another checkpoint every 5: some fall between evaluations
_runs = itertools.count()
SAVES = sorted({*range(5, STEPS + 1, 5), *range(8, STEPS + 1, 8)})
EVALS = list(range(8, STEPS + 1, 8))


def _kill_moments(rng: random.Random) -> list[str]:
  """Ten FTLAB_TEST_KILL specs spread over the run, each later than the one before (a resumed run starts from a
  checkpoint before the previous kill, so each is reached): mid-step, right after a save is issued (its files half
  written), after an evaluation with none of its rows written, after the first metrics row of an evaluation; the
  tenth between the final evaluation and summary.json."""
  moments, previous = [], 0
  kinds = rng.sample(4 * ['step'] + 2 * ['save'] + 2 * ['metrics'] + ['evaluated'], 9)
  for target, kind in zip(sorted(rng.sample(range(1, STEPS - 4), 9)), kinds):
    at = max(target, previous + 1)
    later = [s for s in (SAVES if kind == 'save' else EVALS) if s >= at]
    if kind != 'step' and later and later[0] < STEPS:
      at = later[0]
    else:
      kind = 'step'
    moments.append(f'{kind}={at}')
    previous = at
  assert previous < STEPS, moments
  return moments + ['summary@1']


def _write_config(folder) -> str:
  path = os.path.join(folder, 'tiny.py')
  with open(path, 'w') as f:
    f.write('from conftest import small_config\n\n'
            f'def get_config(arg=None):\n  return small_config(train__num_steps={STEPS}, eval__every_steps=8, '
            f'checkpoint__every_steps=5, checkpoint__keep=2)\n')
  return path


def _run(config_path, workdir, env=None, logs=None):
  log = f'{logs or workdir}.log{next(_runs)}'
  return run_ftlab('ftlab.main', [f'--config={config_path}', f'--workdir={workdir}'], env=env, log_base=log)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(folder, config path, the workdir of an uninterrupted run)."""
  folder = tmp_path_factory.mktemp('preemption')
  config_path = _write_config(folder)
  whole = str(folder / 'whole')
  done = _run(config_path, whole)
  assert done.returncode == 0, done.stderr[-3000:]
  return folder, config_path, whole


def test_ten_sigkills_at_random_moments_end_bit_identical(runs):
  folder, config_path, whole = runs
  killed = str(folder / 'killed')
  moments = _kill_moments(random.Random(2026))
  for i, spec in enumerate(moments):
    run = _run(config_path, killed, env={'FTLAB_TEST_KILL': spec})
    assert run.returncode == -signal.SIGKILL, (spec, run.stderr[-3000:])
    if i:  # the lock the killed process held is free, and says whose it was
      assert 'its lock was left by a process that is no longer running' in run.stdout
  assert len(moments) == 10
  final = _run(config_path, killed)
  assert final.returncode == 0, final.stderr[-3000:]
  print('killed at', moments)
  assert_same_run(whole, killed)


@contextlib.contextmanager
def _small_disk(folder, size: str):
  """A tmpfs of `size` mounted on `folder` (a real full disk), unmounted after; skips where mounting needs rights
  this process lacks (not root, a container without CAP_SYS_ADMIN)."""
  os.makedirs(folder)
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)], capture_output=True,
                           text=True)
  if mounted.returncode:
    pytest.skip(f'a real full disk needs a small tmpfs, and mount refused: {mounted.stderr.strip()} (run as root)')
  try:
    yield str(folder)
  finally:
    subprocess.run(['umount', str(folder)], check=True)


def test_a_real_full_disk_stops_the_run_with_one_line_and_the_rerun_resumes_bit_identical(runs, tmp_path):
  _, config_path, whole = runs
  # Room for the step-5 checkpoint (its save peaks near 220 KiB here), not for all three of steps 5, 8 and 10. Whether
  # step 8's fits too depends on how many 4 KiB-page files tensorstore's writes come out in, so the resume is checked
  # against the newest checkpoint the full run completed, whichever that is.
  with _small_disk(tmp_path / 'disk', '300k') as disk:
    run = os.path.join(disk, 'run')
    full = _run(config_path, run, logs=tmp_path / 'run')  # the logs off the full disk
    assert full.returncode == workdir_lib.EXIT_STATUS, full.stderr[-3000:]
    assert full.stderr.splitlines() == [full.stderr.strip()]  # one line: no library's traceback
    assert 'disk full (No space left on device); free space on that disk' in full.stderr
    assert 'rerun the same command: it resumes from the last complete checkpoint' in full.stderr
    complete = sorted(int(d) for d in os.listdir(os.path.join(run, 'checkpoints')) if d.isdigit())
    assert complete and complete[-1] < STEPS, f'the disk filled with checkpoints {complete} complete'
    subprocess.run(['mount', '-o', 'remount,size=64m', disk], check=True)  # space freed
    again = _run(config_path, run, logs=tmp_path / 'run')
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'resuming {run} from step {complete[-1]}' in again.stdout
    assert_same_run(whole, run)


@pytest.mark.parametrize('site', ['metrics=16', 'summary@1'])
def test_a_full_disk_at_a_runs_other_write_sites_is_one_line_and_the_rerun_resumes_bit_identical(
    site, runs, tmp_path, monkeypatch, capsys):
  _, config_path, whole = runs
  run, argv = str(tmp_path / 'run'), [f'--config={config_path}', f'--workdir={tmp_path / "run"}']
  monkeypatch.setattr(faults, '_passes', collections.Counter())
  monkeypatch.setenv('FTLAB_TEST_ENOSPC', site)  # a metrics.jsonl row, summary.json
  assert ftlab_main.main(argv) == workdir_lib.EXIT_STATUS
  err = capsys.readouterr().err
  assert err.splitlines() == [err.strip()] and 'disk full (No space left on device)' in err, err[-3000:]
  monkeypatch.delenv('FTLAB_TEST_ENOSPC')
  assert ftlab_main.main(argv) == 0
  assert_same_run(whole, run)


def test_sigterm_saves_between_evaluations_and_the_rerun_ends_bit_identical(runs):
  folder, config_path, whole = runs
  stopped = str(folder / 'sigterm')
  first = _run(config_path, stopped, env={'FTLAB_TEST_TERM': 'step=37'})
  assert first.returncode == 128 + signal.SIGTERM, first.stderr[-3000:]
  assert 'preempted (SIGTERM): saved a checkpoint at step 37' in first.stderr
  assert 'rerun the same command to resume' in first.stderr
  assert not os.path.exists(os.path.join(stopped, 'summary.json'))
  assert '37' in os.listdir(os.path.join(stopped, 'checkpoints'))  # not a checkpoint step otherwise (35, 40)
  second = _run(config_path, stopped)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f'resuming {stopped} from step 37' in second.stdout
  # The train row at step 40 includes steps 33-37 (carried over in the checkpoint), and step 37's checkpoint is
  # gone once step 40's is committed: the kept ones are 35 and 40, as in the run that never stopped.
  assert_same_run(whole, stopped)


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(runs):
  folder, config_path, whole = runs
  damaged = str(folder / 'damaged')
  first = _run(config_path, damaged, env={'FTLAB_TEST_KILL': 'step=33'})
  assert first.returncode == -signal.SIGKILL
  checkpoints = os.path.join(damaged, 'checkpoints')
  step = max((s for s in os.listdir(checkpoints) if s.isdigit()), key=int)  # the latest committed: 30 or 32
  ocdbt = os.path.join(checkpoints, step, 'state', 'd')
  for name in os.listdir(ocdbt):  # truncate its array data
    with open(os.path.join(ocdbt, name), 'r+b') as f:
      f.truncate(os.path.getsize(f.name) // 3)
  second = _run(config_path, damaged)
  assert second.returncode == 0, second.stderr[-3000:]
  previous = sorted((int(s) for s in os.listdir(checkpoints + '.corrupt')), reverse=True)
  assert previous == [int(step)]
  assert f'the checkpoint at step {step} in {checkpoints} cannot be read' in second.stderr
  resumed = [line for line in second.stdout.splitlines() if 'resuming' in line]
  assert len(resumed) == 1 and int(resumed[0].split()[-1]) < int(step), second.stdout
  assert f'kept in {checkpoints}.corrupt/{step}' in second.stderr
  assert_same_run(whole, damaged)


def _tree_hashes(folder) -> dict:
  import hashlib
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_a_second_run_on_a_workdir_in_use_refuses_naming_the_holder(runs, capsys, no_persistent_cache):
  folder, config_path, whole = runs
  before = _tree_hashes(whole)
  with locks.one_writer(whole):  # this process holds it, as another run would
    status = ftlab_main.main([f'--config={config_path}', f'--workdir={whole}'])
    err = capsys.readouterr().err
  assert status == workdir_lib.EXIT_STATUS
  assert f'{whole} is in use by another ftlab run (pid {os.getpid()} on' in err
  assert f'stop it (kill {os.getpid()})' in err and 'choose another --workdir' in err
  after = _tree_hashes(whole)
  assert after == before


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
  holder = f'pid {dead.stdout.strip()} on {os.uname().nodename} since 2026-11-24T00:00:00+00:00'
  (tmp_path / locks.LOCK_NAME).write_text(holder + '\n')
  with locks.one_writer(str(tmp_path)):
    out = capsys.readouterr().out
    assert f'taking over {tmp_path}: its lock was left by a process that is no longer running ({holder})' in out
    assert (tmp_path / locks.LOCK_NAME).read_text().startswith(f'pid {os.getpid()} on ')
  assert (tmp_path / locks.LOCK_NAME).read_text() == ''  # released


@pytest.mark.parametrize('error, problem, fix', [
    (PermissionError(13, 'Permission denied', '/runs/x/metrics.jsonl'),
     'cannot write /runs/x/metrics.jsonl: permission denied', 'make the workdir writable by this user'),
    (OSError(28, 'No space left on device', '/runs/x/checkpoints/8'),
     'cannot write /runs/x/checkpoints/8: disk full', 'free space on that disk'),
    (OSError(30, 'Read-only file system', '/runs/x/config.json'), 'read-only', 'choose another --workdir'),
])
def test_a_workdir_that_cannot_be_written_gives_a_clear_error(error, problem, fix, tmp_path, monkeypatch, capsys,
                                                              no_persistent_cache):
  from ftlab import loop

  def fail(*args, **kwargs):
    try:
      raise error
    except OSError as inner:
      raise RuntimeError('orbax: the save failed') from inner  # as libraries wrap it

  monkeypatch.setattr(loop, 'train_and_evaluate', fail)
  config_path = _write_config(tmp_path)
  status = ftlab_main.main([f'--config={config_path}', f'--workdir={tmp_path / "run"}'])
  err = capsys.readouterr().err
  assert status == workdir_lib.EXIT_STATUS
  assert problem in err and fix in err


@pytest.mark.parametrize('name', ['../escape', '/etc', 'a/../../b', 'link'])
def test_names_from_outside_cannot_lead_ftlab_to_write_outside_the_workdir(name, tmp_path):
  (tmp_path / 'sweep' / 'trials').mkdir(parents=True)
  os.symlink(str(tmp_path), str(tmp_path / 'sweep' / 'trials' / 'link'))
  trials = str(tmp_path / 'sweep' / 'trials')
  with pytest.raises(ValueError, match='would lead outside'):
    workdir_lib.inside(trials, name)
  assert workdir_lib.inside(trials, 'c000-s0') == os.path.join(trials, 'c000-s0')
