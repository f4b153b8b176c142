"""One ftlab run: `python -m ftlab.main --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]`.

Every problem with the config, the workdir or the command line is reported at once before any compute, with exit
status 2 and nothing written. With init.pretrain enabled the source-task run goes first, into DIR/pretrain.
Rerunning the same command on the same DIR resumes.
"""
from __future__ import annotations

import sys

from ftlab import cli
from ftlab import config as config_lib
from ftlab import train
from ftlab.pretrained import source_task


def run(config, workdir: str) -> dict:
  """Plans every stage (raising ConfigError with all problems), then runs them; returns the run's summary."""
  stages = []
  problems = []
  init_from = config.init.checkpoint
  if config.init.pretrain.enabled:
    init_from = source_task.directory(workdir)
    if not source_task.is_finished(workdir):
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
  for stage in stages:
    print(f'ftlab: pretraining on the source task in {stage.workdir}', flush=True)
    train.execute(stage)
  return train.execute(final)


def main(argv: list[str]) -> int:
  try:
    config, workdir = cli.parse(argv)
    run(config, workdir)
  except config_lib.ConfigError as err:
    cli.exit_on_config_error(err)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
