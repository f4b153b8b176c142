"""The stepper of a run trained alone: its compiled steps in its device layout (jit, FSDP or the per-device 'pmap'
program; see ftlab/parallel.py), compiled once per static key."""
from __future__ import annotations

import jax
import numpy as np

from ftlab import compiled, faults, parallel, steps
from ftlab import data as data_lib
from ftlab import metrics as metrics_lib
from ftlab.loop_state import metrics_from_json


class SingleStepper:
  size = 1

  def __init__(self, plan):
    self.layout = parallel.Layout.of(plan.config.parallel)
    self.eval_batch_size = plan.config.eval.batch_size
    self.buckets = data_lib.eval_buckets(plan)
    self.train_fn, self.eval_fn = compiled.cached(('steps', plan.static_key), lambda: self._compile(plan))

  def _compile(self, plan):
    train_fn, eval_fn = self.layout.wrap_steps(*steps.bind(plan))
    return jax.jit(train_fn, donate_argnums=0), jax.jit(eval_fn)

  def admit(self, trials) -> None:
    """Nothing to share with one trial."""

  def start(self, trials):
    """The live state on the devices, from the trial's initial or restored one."""
    return self.layout.place_state(trials[0].take_state())

  def next_batch(self, trials, active: np.ndarray):
    del active
    return self.layout.place_batch(next(trials[0].iterator))

  def step(self, state, batch, active: np.ndarray):
    del active  # a run alone stops its loop instead
    return self.train_fn(state, batch)

  def loss_totals(self, metrics) -> np.ndarray:
    """The summed loss of the step (a transfer of one number, no computation dispatched), per trial."""
    return np.array([float(metrics.loss.total)])

  def mean_loss(self, metrics, active: np.ndarray) -> float:
    del active
    return float(metrics.loss.compute())

  def evaluate(self, state, source, limit: int | None = None) -> list[dict]:
    """Summarised metrics of `state` over every example of `source` (or its first `limit`)."""
    return self.evaluate_predicting(state, source, limit=limit, keep=False)[0]

  def evaluate_predicting(self, state, source, limit: int | None = None, *, keep: bool = True):
    """(evaluate's [metrics], [[(host batch, its host predictions) for each batch]]) in one pass over `source`; the
    predictions are fetched only with `keep` (else [None])."""
    total, kept = None, []
    for batch in data_lib.eval_batches(source, batch_size=self.eval_batch_size, limit=limit, buckets=self.buckets):
      batch_metrics, predicted = self.eval_fn(state, self.layout.place_batch(batch))
      total = batch_metrics if total is None else total.merge(batch_metrics)
      if keep:
        kept.append((batch, self._rows(jax.device_get(predicted))))
      faults.point('eval')
    return [metrics_lib.summarize(total)], [kept if keep else None]

  def _rows(self, predicted):
    """Host predictions as [rows, ...] ('pmap' gives [devices, rows per device, ...])."""
    if self.layout.mode != 'pmap':
      return predicted
    return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), predicted)

  def accumulate(self, total, metrics, accepted: np.ndarray):
    """The train metrics since the last evaluation, with an accepted step's merged in (a skipped one's not)."""
    if not accepted[0]:
      return total
    return metrics if total is None else total.merge(metrics)

  def carried(self, saved: list, like):
    """The train metrics a resumed checkpoint carried (metrics_to_json), structured like a step's `like`."""
    return metrics_from_json(saved[0], like=like)

  def fetch(self, total):
    return total

  def lane(self, total, i: int):
    del i
    return total

  def state_to_save(self, state, i: int):
    del i
    return state

  def iterator(self, trials, i: int):
    return trials[i].iterator

  def best(self, state, trials, done: list[int]):
    """(the state at the trial's best checkpoint, [its parameters]): the live one when it is that checkpoint's."""
    del done
    trial = trials[0]
    best_step = trial.ckpts.best_step()
    if best_step != trial.ckpts.latest_step() or best_step != trial.final_step:
      state = self.layout.place_state(trial.ckpts.restore(best_step, state)[0])
    return state, [state.params]
