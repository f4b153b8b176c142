"""One ftlab run: `python -m ftlab.main --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]`.

`--show-config` (no --workdir needed) prints the resolved config instead, each key with its value, a '*' where it
differs from the default, and its one-line meaning, and runs nothing.

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

import sys

from ftlab import cli, compiled, malloc
from ftlab import config as config_lib
from ftlab import parallel, preemption, stages
from ftlab import workdir as workdir_lib


def start_processes(config) -> None:
  """Joins a multi-host run (config.parallel.distributed) before anything touches jax's devices: validation does
  not, planning does (it checks the batch against the device count, which must then be the global one)."""
  try:
    parallel.initialize(config.parallel.distributed)
  except ValueError as err:
    raise config_lib.ConfigError([str(err)]) from err


def main(argv: list[str]) -> int:
  if cli.asked_for_help(argv, __doc__):
    return 0
  workdir = ''
  try:
    if '--show-config' in argv:
      from ftlab.config import meanings
      print(meanings.show(cli.parse([a for a in argv if a != '--show-config'], need_workdir=False)[0]))
      return 0
    config, workdir = cli.parse(argv)
    start_processes(config)
    preemption.install()  # after jax.distributed: a multi-host run leaves SIGTERM to jax's preemption service
    compiled.enable_persistent_cache(workdir)
    stages.run(config, workdir)
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
