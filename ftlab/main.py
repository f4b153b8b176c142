"""One ftlab run: `python -m ftlab.main --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]`.

Every problem with the config, the workdir or the command line is reported at once before any compute, with exit
status 2 and nothing written. With init.pretrain enabled the source-task run goes first, into DIR/pretrain.
Rerunning the same command on the same DIR resumes. Exit statuses:
  0    finished
  2    a problem with the config or the command line (nothing written)
  3    diverged: the loss became NaN or Inf (the message names the step and the last good checkpoint)
  4    the workdir is in use by another run, cannot be written (permission denied, read-only, disk full), or
       has no checkpoint that reads back
  143  preempted: SIGTERM arrived; a checkpoint was saved and rerunning the same command resumes from it
"""
from __future__ import annotations

import contextlib
import sys

import jax

from ftlab import cli, malloc
from ftlab import config as config_lib
from ftlab import parallel, preemption, step_cache, train
from ftlab import workdir as workdir_lib
from ftlab.pretrained import source_task
from ftlab.sweeps import records


def plan(config, workdir: str, *, pretrain_dir: str = '') -> tuple[list, object]:
  """(source-task stages still to run, the fine-tuning RunPlan); raises ConfigError listing every problem of both.

  The source-task run (init.pretrain) goes into `pretrain_dir` (default <workdir>/pretrain; a sweep shares one
  between trials whose source runs are identical)."""
  stages = []
  problems = []
  init_from = config.init.checkpoint
  if config.init.pretrain.enabled:
    init_from = pretrain_dir or source_task.directory(workdir)
    if not source_task.is_finished(init_from):
      try:
        stages.append(train.plan(source_task.source_config(config), init_from))
      except config_lib.ConfigError as err:
        problems += [f'init.pretrain (the source-task run): {p}' for p in err.problems]
  try:
    final = train.plan(config, workdir, init_from=init_from)
  except config_lib.ConfigError as err:
    problems += err.problems
  if problems:
    raise config_lib.ConfigError(problems)
  return stages, final


def run(config, workdir: str, *, pretrain_dir: str = '', on_eval=None) -> dict:
  """Plans every stage (raising ConfigError with all problems), then runs them; returns the run's summary.

  `on_eval` is passed to train.execute for the fine-tuning run.
  """
  stages, final = plan(config, workdir, pretrain_dir=pretrain_dir)
  with writer_lock(workdir):
    run_stages(stages)
    return train.execute(final, on_eval=on_eval)


def writer_lock(workdir: str):
  """The workdir's one-writer lock (workdir.lock), held by process 0 of a multi-host run, the only writer."""
  return workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()


def run_stages(stages: list) -> None:
  """Runs planned source-task stages, each under a lock, so that two independent processes (sweep workers) never
  train the same one at once. The processes of one multi-host run train it together, so they take no lock (one
  would hold it while the others wait outside the collective)."""
  for stage in stages:
    lock = (records.locked(stage.workdir.rstrip('/') + '.lock') if jax.process_count() == 1
            else contextlib.nullcontext())
    with lock:
      if not source_task.is_finished(stage.workdir):  # another process may have finished it meanwhile
        print(f'ftlab: pretraining on the source task in {stage.workdir}', flush=True)
        train.execute(train.plan(stage.config, stage.workdir))


def start_processes(config) -> None:
  """Joins a multi-host run (config.parallel.distributed) before anything touches jax's devices: validation does
  not, planning does (it checks the batch against the device count, which must then be the global one)."""
  try:
    parallel.initialize(config.parallel.distributed)
  except ValueError as err:
    raise config_lib.ConfigError([str(err)]) from err


def main(argv: list[str]) -> int:
  workdir = ''
  try:
    config, workdir = cli.parse(argv)
    start_processes(config)
    preemption.install()  # after jax.distributed: a multi-host run leaves SIGTERM to jax's preemption service
    step_cache.enable_persistent_cache(workdir)
    run(config, workdir)
  except config_lib.ConfigError as err:
    cli.exit_on_config_error(err)
  except Exception as err:
    status = workdir_lib.stopped(err, workdir, 'ftlab')
    if status is None:
      raise
    return status
  return 0


if __name__ == '__main__':
  malloc.tune()  # before jax starts its threads (see ftlab/malloc.py)
  sys.exit(main(sys.argv[1:]))
