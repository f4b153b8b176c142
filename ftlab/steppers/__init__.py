"""Steppers: what the one training loop (ftlab/loop.py) asks of the compiled program that trains K >= 1 trials.

`SingleStepper(plan)` trains one run in its device layout (jit, FSDP or pmap); `StackedStepper(plans)` trains a
vectorised group as one vmapped step with an active mask. Both give the loop the same operations:
  admit(trials) -> the trial just opened shares what it can  start(trials) -> the live state(s) on the devices
  next_batch(trials, active) -> a batch on the devices
  step(states, batch, active) -> (states, metrics)         loss_totals(metrics) -> [K] host floats
  mean_loss(metrics, active) -> float (the console line)   evaluate(states, source, limit) -> [K] metric dicts
  accumulate(total, metrics, accepted) -> the train metrics since the last evaluation
  carried(saved, like) -> those a resumed checkpoint held  fetch(total) / lane(host, i) -> trial i's on the host
  iterator(trials, i) -> trial i's data position            state_to_save(states, i) -> what trial i checkpoints itself
  layout (a group) -> which leaves it holds once, as its one checkpoint per save step stores them
  best(states, trials, done) -> (the done trials' best states, [their parameters])
"""
from ftlab.steppers.single import SingleStepper
from ftlab.steppers.stacked import StackedStepper


def for_plans(plans: list, *, shard_trials: bool = False, lanes_at_once: int = 0):
  """The stepper of one plan trained alone, or of several as a vectorised group (`shard_trials`, `lanes_at_once`:
  StackedStepper's)."""
  if len(plans) == 1:
    return SingleStepper(plans[0])
  return StackedStepper(plans, shard_trials=shard_trials, lanes_at_once=lanes_at_once)
