"""One run's side of the training loop: its workdir, checkpoints, metric writer, data iterator and LoopState, and the
bookkeeping the loop asks of it (accept or skip a step, an evaluation's rows and early stopping, saves, the end).

The same for a run trained alone and for a trial of a vectorised group: the loop (ftlab/loop.py) only differs in
its stepper. Opening a trial writes config.json (if absent) and optimizer_plan.txt, makes the initial state (with
the pretrained weights, unless a checkpoint will replace them) and resumes from the latest checkpoint that reads
back.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import jax

from ftlab import checkpoints as ckpt_lib
from ftlab import data as data_lib
from ftlab import faults, outputs, predictions, trackers, writers
from ftlab.initial_state import initial_state
from ftlab.loop_state import LoopState
from ftlab.outcome import Diverged, Stop
from ftlab.plan import Plan


class Trial:

  def __init__(self, plan: Plan, *, on_eval: Callable | None = None, echo: bool = True):
    """Opens the run's workdir (see the module docstring). `on_eval(step, validation_row)` is called after each
    evaluation and may raise Stop; `echo` prints the data and the optimizer plan."""
    self.plan, self.config, self.on_eval = plan, plan.config, on_eval
    self.workdir = plan.workdir
    self.is_writer = jax.process_index() == 0
    self.prefix = '' if echo else f'{self.workdir}: '  # in a group's console lines
    os.makedirs(self.workdir, exist_ok=True)
    if self.is_writer and not os.path.exists(os.path.join(self.workdir, 'config.json')):
      writers.write_json_atomic(os.path.join(self.workdir, 'config.json'), self.config.to_dict())
    self.ckpts = ckpt_lib.Checkpoints(os.path.join(self.workdir, 'checkpoints'), keep=self.config.checkpoint.keep,
                                      mode=plan.eval_mode)
    self.state = initial_state(plan, load_pretrained=self.ckpts.latest_step() is None)
    if self.is_writer:
      outputs.write_optimizer_plan(plan, echo=echo)
    self.iterator = data_lib.train_iterator(plan.splits.train, batch_size=self.config.train.batch_size,
                                            seed=self.config.seed, **data_lib.stream_options(self.config.data))
    self.start, restored, saved = self.ckpts.restore_latest(self.state, self.iterator)
    self.loop = LoopState()
    if self.start is not None:
      self.state, self.loop = restored, LoopState.from_json(saved)
      print(f'ftlab: resuming {self.workdir} from step {self.start}', flush=True)
    self.trackers = trackers.open_runs(self.config, self.workdir) if self.is_writer else []
    self.writer = writers.MetricWriter(self.workdir, resume_step=self.start or 0, enabled=self.is_writer,
                                       tensorboard='tensorboard' in self.config.log.backends, trackers=self.trackers)
    self.last_good = self.start  # the last step saved: no checkpoint ever holds a diverged state
    self.final_step = self.start or 0
    self.error: BaseException | None = None  # Diverged, or the Stop of its on_eval
    self._closed = False

  @property
  def active(self) -> bool:
    """Neither diverged nor stopped (early stopping, pruned): it trains on from its start step."""
    return self.error is None and not self.loop.stopped_early

  @property
  def start_step(self) -> int:
    """The step it resumes from (its latest checkpoint), 0 for a new run."""
    return self.start or 0

  def take_state(self):
    """The initial (or restored) state, handed to the stepper, which holds the live one from then on."""
    state, self.state = self.state, None
    return state

  def accept(self, step: int, loss_total: float) -> bool:
    """Whether the step's loss is finite; if not, the step counts as skipped (train.skip_nonfinite) or the trial
    ends with Diverged."""
    total = float(loss_total)
    finite = math.isfinite(total)
    budget = self.config.train.skip_nonfinite
    if not finite and self.loop.skipped_in_a_row >= budget:
      self.error = Diverged(step, total, self.workdir, self.last_good, in_a_row=self.loop.skipped_in_a_row)
      return False
    self.loop = self.loop.stepped(finite)
    if not finite:
      print(f'ftlab: {self.prefix}step {step}: the loss is {total}; the step was skipped '
            f'({self.loop.skipped_in_a_row} in a row, {self.loop.skipped} in all; train.skip_nonfinite={budget})',
            flush=True)
    return finite

  def evaluated(self, step: int, train_metrics: dict | None, rows: dict[str, dict]) -> float:
    """Writes the train row (`train_metrics`: summarised, None when every step since the last evaluation was
    skipped) and the evaluation's rows; updates early stopping; returns the selection metric's value."""
    row = {'learning_rate': self.plan.learning_rate(step - 1)}  # the rate the last step used
    if self.config.train.skip_nonfinite:
      row['skipped_steps'] = self.loop.skipped
    self.writer.write(step, 'train', {**(train_metrics or {}), **row})
    for split, values in rows.items():
      self.writer.write(step, split, values)
    value = rows['validation'][self.config.eval.metric]
    self.loop = self.loop.evaluated(step, value, self.config.early_stopping, self.plan.eval_mode)
    return value

  def save(self, step: int, state, iterator, loop: dict, *, metric: float | None = None,
           preempted: bool = False) -> None:
    """Checkpoints `state` (this trial's), the data position and `loop` (loop_to_save's) in its own folder."""
    self.ckpts.save(step, state, iterator, loop, metric=metric, preempted=preempted)
    self.saved(step)

  def loop_to_save(self, train_metrics: dict | None) -> dict:
    """The loop state a checkpoint holds, with `train_metrics` (JSON: the train metrics since the last
    evaluation)."""
    return dataclasses.replace(self.loop, train_metrics=train_metrics).to_json()

  def saved(self, step: int) -> None:
    """Its checkpoint at `step` was issued (by itself or by its group)."""
    self.last_good = step
    faults.point('save', step, self.workdir)

  def called_back(self, step: int, validation: dict) -> None:
    """Calls on_eval; a Stop it raises ends the trial."""
    if self.on_eval is None:
      return
    try:
      self.on_eval(step, validation)
    except Stop as stop:
      self.error = stop

  def finish(self, *, best_step: int, at_best: dict, test: dict, best_params, train_seconds: float,
             predicted: list[list[dict]] | None = None) -> dict:
    """Writes the test row (at the best step), closes, writes predictions.jsonl (`predicted`: the validation and
    test rows, with eval.predictions) and summary.json; returns the summary."""
    self.writer.write(best_step, 'test', test)
    self.close()
    if predicted is not None and self.is_writer:
      predictions.write(self.plan, predicted)
    skip = self.config.train.skip_nonfinite
    summary = outputs.write_summary(self.plan, best_step=best_step, final_step=self.final_step,
                                    stopped_early=self.loop.stopped_early, at_best=at_best, test=test,
                                    best_params=best_params, train_seconds=train_seconds,
                                    skipped_steps=self.loop.skipped if skip else None)
    for tracker in self.trackers:
      for name in ('summary.json', 'analysis.md'):
        tracker.log_file(os.path.join(self.workdir, name))
      tracker.end('FINISHED')
    self.trackers = []
    return summary

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    self.ckpts.wait()
    self.writer.close()
    self.ckpts.close()
    if self.error is not None:  # ended without a summary (a preempted run goes on: its trackers' runs stay open)
      for tracker in self.trackers:
        tracker.end('KILLED' if isinstance(self.error, Stop) else 'FAILED')
      self.trackers = []
