"""The one training loop: K >= 1 trials (ftlab/trial.py) trained to their end by a stepper (ftlab/steppers/). A run
alone is K = 1 with the single-run stepper; a vectorised group is K trials with the stacked one. The loop only asks
the stepper; each trial does its own bookkeeping.

Each step: dispatch it, then check the step before (one step behind the dispatch: no stall): a NaN or Inf loss
ends its trial with Diverged, or with train.skip_nonfinite counts the step as skipped; a finite step's train metrics
are merged into the trial's train row. Before an evaluation or a save the step's own loss is checked the same way,
so no checkpoint ever holds a diverged state. At evaluations every trial still training writes its train and
evaluation rows and updates early stopping; at saves it checkpoints its state, data position and LoopState (with
the train metrics since the last evaluation, so that a resumed run writes the same train rows; a group's trials in
one checkpoint of the group, ftlab/group_checkpoints.py, written into their own folders at the end); its on_eval
callback may then stop it (a pruned sweep trial). On SIGTERM every trial still training saves a checkpoint (outside
checkpoint.keep's count) and Preempted is raised. At the end each trial that neither diverged nor was stopped is
evaluated at its best checkpoint, on validation and test, and writes its predictions (ftlab/predictions.py) and
summary; each split is read once: the evaluations return the predictions of their own forward pass, and where the
final step is the best, its evaluation (which kept them) stands for the one at the best checkpoint.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np

from ftlab import faults, group_checkpoints, predictions, preemption, steppers
from ftlab import metrics as metrics_lib
from ftlab.evaluation import each, evaluate_splits
from ftlab.loop_state import metrics_to_json
from ftlab.outcome import Outcome
from ftlab.plan import Plan
from ftlab.progress import Progress
from ftlab.trial import Trial


def train_and_evaluate(plan: Plan, *, on_eval: Callable | None = None) -> dict:
  """Trains (or resumes, or only re-evaluates when finished) one planned run; returns summary.json's contents.
  Raises Diverged, or the Stop its `on_eval(step, validation_row)` raised."""
  return run_plans([plan], on_evals=[on_eval])[0].result()


def run_plans(plans: list[Plan], *, on_evals: list[Callable | None] | None = None,
              shard_trials: bool = False, lanes_at_once: int = 0) -> list[Outcome]:
  """Trains the planned runs together (one alone, several as a vectorised group); returns each one's Outcome, in
  order. Raises ValueError when the plans cannot share a group."""
  stepper = steppers.for_plans(plans, shard_trials=shard_trials, lanes_at_once=lanes_at_once)
  group_checkpoints.settle_pointed(plans)  # a group killed or preempted before its end
  trials, run = [], None
  try:
    for plan, on_eval in zip(plans, on_evals or [None] * len(plans)):
      trials.append(Trial(plan, on_eval=on_eval, echo=len(plans) == 1))
      stepper.admit(trials)
    run = _Run(trials, stepper)
    return run.finish(run.train())
  finally:
    if run is not None and run.group is not None:
      run.group.close()
    for trial in trials:
      trial.close()


class _Run:
  """The loop's own state: the live states, the step, the step awaiting its loss check, the train metrics.

  The trials of a group may resume from different steps (a kill between their saves): the group starts at the
  earliest, and a trial whose checkpoint is later waits, masked, until the group reaches it. Every lane then takes
  the same compiled program, with the same lanes, as a group that never stopped."""

  def __init__(self, trials: list[Trial], stepper):
    self.trials, self.stepper = trials, stepper
    self.plan = plan = trials[0].plan  # the group's shared run length, cadence and data
    self.lanes = _lane_splits(trials)
    self.states = stepper.start(trials)
    # a group saves its trials in one checkpoint per save step (ftlab/group_checkpoints.py)
    self.group = None if len(trials) == 1 else group_checkpoints.Group(
        [trial.workdir for trial in trials], self.states, stepper.layout.once,
        keep=plan.config.checkpoint.keep, mode=plan.eval_mode)
    self.step = min(trial.start_step for trial in trials)
    self.progress = Progress(plan.total_steps, self.step, eval_every=plan.eval_every)
    self.pending = None  # (step, metrics, active) of the last step dispatched, before its loss is checked
    carried = [trial.loop.train_metrics for trial in trials]  # what resumed checkpoints held since an evaluation
    self.carried = carried if any(saved is not None for saved in carried) else None
    self.has_train_metrics = np.array([saved is not None for saved in carried])
    self.train_metrics = None  # since the last evaluation (stacked for a group)
    # eval.predictions: the final evaluation keeps its predictions, which the end reuses where it is the best
    self.keep = bool(plan.config.eval.predictions) and predictions.applies(plan) and trials[0].is_writer
    self.final: dict[int, tuple] = {}  # {trial index: (its rows, its validation predictions)} of the final step

  def trainable(self) -> np.ndarray:
    """The trials that neither diverged nor stopped."""
    return np.array([trial.active for trial in self.trials])

  def stepping(self) -> np.ndarray:
    """The trials the next step trains: trainable, and at or past their start."""
    return self.trainable() & np.array([self.step >= trial.start_step for trial in self.trials])

  def train(self) -> float:
    """Steps until the run's end or until no trial trains; returns the seconds it took."""
    t0 = time.perf_counter()
    notice = preemption.Notice().install()
    try:
      while self.step < self.plan.total_steps and self.trainable().any():
        self._one_step(notice)
      self._accept_pending()
    finally:
      notice.uninstall()
    self._wait_for_saves()
    return time.perf_counter() - t0

  def _wait_for_saves(self) -> None:
    for trial in self.trials:
      trial.ckpts.wait()
    if self.group is not None:
      self.group.wait()

  def _one_step(self, notice) -> None:
    active = self.stepping()
    batch = self.stepper.next_batch(self.trials, active)
    self.states, metrics = self.stepper.step(self.states, batch, active)
    self._accept_pending()
    self.step += 1
    for trial, trained in zip(self.trials, active):
      if trained:
        trial.final_step = self.step
    self.pending = (self.step, metrics, active)
    self._log(metrics, active)
    config = self.plan.config
    evaluating = self.step % self.plan.eval_every == 0 or self.step == self.plan.total_steps
    saving = evaluating or bool(config.checkpoint.every_steps and self.step % config.checkpoint.every_steps == 0)
    if saving:
      self._accept_pending()
    live = active & self.trainable()  # trained this step and neither diverged nor stopped before it
    with self.progress.paused(evaluation=evaluating):  # not counted in the console's steps/s
      rows = self._evaluate(live) if evaluating and live.any() else {}
      if saving:
        self._save(live, {i: rows_i['validation'][config.eval.metric] for i, rows_i in rows.items()}, evaluating)
    for i, rows_i in rows.items():
      self.trials[i].called_back(self.step, rows_i['validation'])
    for trial, trained in zip(self.trials, live):
      if trained:  # tests: die here as a preempted VM does, with no chance to clean up
        faults.point('step', self.step, trial.workdir)
    if notice.requested(self.step) and self.step < self.plan.total_steps and self.trainable().any():
      self._preempt(saved=saving)

  def _accept_pending(self) -> None:
    """Checks the pending step's losses; merges the train metrics of the trials whose step counts."""
    if self.pending is None:
      return
    step, metrics, active = self.pending
    self.pending = None
    if self.carried is not None:  # exact: the same merges, in the same order, as a run that never stopped
      self.train_metrics, self.carried = self.stepper.carried(self.carried, like=metrics), None
    totals = self.stepper.loss_totals(metrics)
    accepted = np.array([bool(trained) and trial.error is None and trial.accept(step, totals[i])
                         for i, (trial, trained) in enumerate(zip(self.trials, active))])
    # lanes of trials that ended may merge anything: they never write a train row again
    self.train_metrics = self.stepper.accumulate(self.train_metrics, metrics, accepted | ~self.trainable())
    self.has_train_metrics |= accepted

  def _train_metrics_of(self, host, i: int):
    return self.stepper.lane(host, i) if host is not None and self.has_train_metrics[i] else None

  def _evaluate(self, live: np.ndarray) -> dict[int, dict]:
    """Evaluates, writes each live trial's train and evaluation rows and updates its early stopping; returns
    {trial index: its rows}."""
    config = self.plan.config
    final = self.step == self.plan.total_steps
    rows, outputs = evaluate_splits(self.stepper, self.states, self.lanes, train_subset=config.eval.train_subset,
                                    keep=self.keep and final)
    host = None if self.train_metrics is None else self.stepper.fetch(self.train_metrics)
    for i in map(int, np.flatnonzero(live)):
      trial = self.trials[i]
      faults.point('evaluated', self.step, trial.workdir)
      train_metrics = self._train_metrics_of(host, i)
      trial.evaluated(self.step, None if train_metrics is None else metrics_lib.summarize(train_metrics), rows[i])
    self.train_metrics, self.has_train_metrics = None, np.zeros(len(self.trials), bool)
    if final:
      self.final = {i: (rows[i], outputs[i]) for i in map(int, np.flatnonzero(live))}
    if self.trials[0].is_writer:
      print(_eval_line(self.step, config.eval.metric, rows, live), flush=True)
    return {i: rows[i] for i in map(int, np.flatnonzero(live))}

  def _save(self, live: np.ndarray, metric_values: dict, evaluating: bool, *, preempted: bool = False) -> None:
    """Each live trial checkpoints its state, data position and loop state: a run alone in its folder, a group's
    trials in one checkpoint of the group (at the run's last step, each in its own folder once the group's
    checkpoints are there)."""
    host = None if evaluating or self.train_metrics is None else self.stepper.fetch(self.train_metrics)
    loops = {}
    for i in map(int, np.flatnonzero(live)):
      train_metrics = self._train_metrics_of(host, i)
      loops[i] = self.trials[i].loop_to_save(None if train_metrics is None else metrics_to_json(train_metrics))
    metric = {i: None if metric_values.get(i) is None else float(metric_values[i]) for i in loops}
    if self.group is not None and self.step == self.plan.total_steps and not preempted:
      # the run's last save: the group's checkpoints go into the trials' folders, then each saves its last itself
      # (not once more into the group's folder, to be read back at once)
      self.group.end({trial.workdir: trial.ckpts for trial in self.trials},
                     then={self.trials[i].workdir: (self.step, metric[i]) for i in loops})
      self.group = None
    if self.group is not None:
      self._save_in_group(loops, metric, preempted=preempted)
      return
    for i, loop in loops.items():
      self.trials[i].save(self.step, self.stepper.state_to_save(self.states, i), self.stepper.iterator(self.trials, i),
                          loop, metric=metric[i], preempted=preempted)

  def _save_in_group(self, loops: dict, metric: dict, *, preempted: bool) -> None:
    """The trials of `loops` ({trial index: its loop state}) in one checkpoint of the group."""
    self.group.save(self.step, self.states, {
        i: {'loop': loop, 'data': self.stepper.iterator(self.trials, i).get_state(), 'metric': metric[i]}
        for i, loop in loops.items()}, preempted=preempted)
    for i in loops:
      self.trials[i].saved(self.step)

  def _preempt(self, *, saved: bool) -> None:
    """SIGTERM: every trial still training saves a checkpoint at this step (unless it saved one here already),
    then Preempted."""
    self._accept_pending()
    if not self.trainable().any():  # the step checked last diverged: that ends the run instead
      return
    if not saved:  # the trials that trained to this step (one waiting for the group holds a later checkpoint)
      started = np.array([trial.start_step < self.step for trial in self.trials])
      self._save(self.trainable() & started, {}, False, preempted=True)
    self._wait_for_saves()
    workdir = self.trials[0].workdir
    if self.group is None:
      raise preemption.Preempted(self.step, workdir)
    raise preemption.Preempted(self.step, os.path.join(os.path.dirname(workdir), '*'),  # a sweep's DIR/trials/*
                               folder=f'{self.group.directory} (the group\'s one checkpoint of its trials)')

  def _log(self, metrics, active: np.ndarray) -> None:
    every = self.plan.config.train.log_every_steps
    self.progress.stepped(self.step)
    if self.trials[0].is_writer and (self.step % every == 0 or self.step == self.plan.total_steps):
      print(self.progress.line(self.step, self.stepper.mean_loss(metrics, active)), flush=True)

  def finish(self, train_seconds: float) -> list[Outcome]:
    """Evaluates every trial that did not fail at its best checkpoint (validation, test) and writes its
    predictions and summary."""
    outcomes = [Outcome(error=trial.error) for trial in self.trials]
    if self.group is not None:  # every trial's checkpoints into its own folder, as a run alone keeps them
      self.group.end({trial.workdir: trial.ckpts for trial in self.trials})
    done = [i for i, trial in enumerate(self.trials) if trial.error is None]
    if not done:
      return outcomes
    states, params = self.stepper.best(self.states, self.trials, done)
    lanes = [self.lanes[i] for i in done]
    lanes += [lanes[0]] * (self.stepper.size - len(lanes))  # the lanes stepper.best pads with the first
    at_best, validation = self._at_best(done, states, lanes)
    tests, test = self.stepper.evaluate_predicting(states, each(lanes, 'test'), keep=self.keep)
    for j, i in enumerate(done):
      trial = self.trials[i]
      splits = trial.plan.splits
      predicted = [predictions.rows(trial.plan, splits.validation, 'validation', validation[j]),
                   predictions.rows(trial.plan, splits.test, 'test', test[j])] if self.keep else None
      outcomes[i] = Outcome(summary=trial.finish(best_step=trial.ckpts.best_step(), at_best=at_best[j],
                                                 test=tests[j], best_params=params[j], train_seconds=train_seconds,
                                                 predicted=predicted))
    return outcomes

  def _at_best(self, done: list[int], states, lanes: list):
    """The done trials' evaluation rows at their best checkpoints, and their validation predictions (with
    eval.predictions): the final step's evaluation where that step is every one's best (the same state, read
    once), else evaluated now."""
    if all(i in self.final and self.trials[i].ckpts.best_step() == self.plan.total_steps for i in done):
      return [self.final[i][0] for i in done], [self.final[i][1] for i in done]
    return evaluate_splits(self.stepper, states, lanes, train_subset=self.plan.config.eval.train_subset,
                           keep=self.keep)


def _lane_splits(trials: list[Trial]) -> list:
  """Each trial's Splits, one object for the trials with the same data config (however they were planned), so
  that a group evaluates them on one shared batch, and only trials that read other data (folds) lane by lane."""
  first: dict[str, object] = {}
  return [first.setdefault(json.dumps(t.plan.config.data.to_dict(), sort_keys=True, default=repr), t.plan.splits)
          for t in trials]


def _eval_line(step: int, metric: str, rows: list[dict], live: np.ndarray) -> str:
  """One run's: each metric on the training subset and validation side by side with their gap (eval.train_subset),
  or validation alone; a group's: each trial's validation metric."""
  if len(rows) == 1:
    val, train = rows[0]['validation'], rows[0].get('train_eval')
    names = [metric] + [k for k in ('loss', 'accuracy') if k in val and k != metric]  # detection has no accuracy
    if train is None:
      return f'  eval @ {step}: validation ' + '  '.join(f'{k} {val[k]:.4f}' for k in names)
    return f'  eval @ {step}: train / validation ' + '  '.join(
        f'{k} {train[k]:.4f} / {val[k]:.4f} (gap {train[k] - val[k]:+.4f})' for k in names)
  return f'  eval @ {step}: validation {metric} ' + ' '.join(
      f'{row["validation"][metric]:.4f}' if trained else '-' for row, trained in zip(rows, live))
