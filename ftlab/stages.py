"""A run's stages: with init.pretrain, a source-task run first (ftlab/pretrained/source_task.py), then the
fine-tuning run it initialises. `plan_stages` plans both before any compute (all problems of both at once);
`run_sources` trains the source stage once however many processes want it; `run` is the whole of one
`python -m ftlab.main`: plan, take the workdir's lock, train the stages."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable

import jax

from ftlab import config as config_lib
from ftlab import locks, loop, predictions
from ftlab.plan import Plan, make_plan
from ftlab.pretrained import source_task


@dataclasses.dataclass(frozen=True)
class Stages:
  sources: list[Plan]  # the source-task run still to train (none, or one)
  final: Plan


def plan_stages(config, workdir: str, *, pretrain_dir: str = '', make: Callable[..., Plan] = make_plan) -> Stages:
  """Plans the source-task run (unless it has finished) and the fine-tuning run; raises ConfigError listing every
  problem of both. The source-task run goes into `pretrain_dir` (default <workdir>/pretrain; a sweep shares one
  between trials whose source runs are identical). `make` plans each run (a sweep's planner plans each once)."""
  sources, problems = [], []
  init_from = config.init.checkpoint
  if config.init.pretrain.enabled:
    init_from = pretrain_dir or source_task.directory(workdir)
    if not source_task.is_finished(init_from):
      try:
        sources.append(make(source_task.source_config(config), init_from))
      except config_lib.ConfigError as err:
        problems += [f'init.pretrain (the source-task run): {p}' for p in err.problems]
  try:
    final = make(config, workdir, init_from=init_from)
  except config_lib.ConfigError as err:
    problems += err.problems
  if problems:
    raise config_lib.ConfigError(problems)
  return Stages(sources, final)


def run_sources(stages: Stages) -> None:
  """Trains the planned source-task runs, each under a lock, so that two independent processes (sweep workers)
  never train the same one at once. The processes of one multi-host run train it together, so they take no lock
  (one would hold it while the others wait outside the collective)."""
  for plan in stages.sources:
    lock = (locks.waiting(plan.workdir.rstrip('/') + '.lock') if jax.process_count() == 1
            else contextlib.nullcontext())
    with lock:
      if not source_task.is_finished(plan.workdir):  # another process may have finished it meanwhile
        print(f'ftlab: pretraining on the source task in {plan.workdir}', flush=True)
        loop.train_and_evaluate(plan)


def one_writer(workdir: str):
  """The workdir's one-writer lock, held by process 0 of a multi-host run, the only writer."""
  return locks.one_writer(workdir) if jax.process_index() == 0 else contextlib.nullcontext()


def run(config, workdir: str) -> dict:
  """Plans every stage (raising ConfigError with all problems), then trains them under the workdir's lock; returns
  the fine-tuning run's summary (or raises Diverged). A run with predictions.jsonl gets its error analysis page
  (a sweep's trials do not: its report writes the best configuration's)."""
  stages = plan_stages(config, workdir)
  with one_writer(workdir):
    run_sources(stages)
    summary = loop.train_and_evaluate(stages.final)
    if jax.process_index() == 0 and os.path.exists(os.path.join(workdir, predictions.FILE)):
      from ftlab import analysis_report  # matplotlib: imported when there is a page to draw
      analysis_report.write(workdir, summary['class_names'], title=workdir)
    return summary
