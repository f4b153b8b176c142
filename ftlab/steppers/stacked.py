"""The stepper of a vectorised group: K runs with one static key (ftlab/traced.py), their states stacked on a leading
trial axis and stepped together by one vmapped train step, compiled once.

Trials that stop (early stopping, pruned, diverged), or wait for the group to reach their checkpoint, are masked:
their lanes do not change while the others go on, and nothing recompiles. The batch is shared when every trial has
the same seed (the same data order), else stacked [K, B, ...] from each trial's iterator (a masked lane gets a copy
of another's batch). Parameters frozen for the whole run and equal in every trial (a LoRA group's base) are held
once, not stacked (ftlab/steppers/held_once.py). The state is replicated over the devices and the batch split, or
with `shard_trials` (K a multiple of the device count) the trial axis is split over the devices instead. The group
saves its stacked state once per save step (ftlab/group_checkpoints.py), and each trial's own folder gets its lane
at the end (its last checkpoint straight from the live lane); its results agree with the run trained alone to float
tolerance (batched matmuls may sum in another order).
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ftlab import compiled, parallel, steps
from ftlab import data as data_lib
from ftlab import metrics as metrics_lib
from ftlab.loop_state import metrics_from_json
from ftlab.steppers import held_once, lane_chunks


def layout_problem(config) -> str:
  """Why a config's device layout cannot run vectorised trials, or ''."""
  par = config.parallel
  if par.mode != 'jit' or par.fsdp:
    return (f"sweep.vectorize: vectorised trials use parallel.mode='jit' without FSDP (the trial axis is vmapped "
            f"over a replicated or trial-sharded state); this config has parallel.mode={par.mode!r}, "
            f"parallel.fsdp={par.fsdp}. Set parallel.mode='jit' and parallel.fsdp=False, or drop vectorize")
  return ''


def stack(trees: list):
  """Pytrees of one structure -> one host pytree with a leading trial axis on every leaf."""
  return held_once.Layout.none(trees[0]).stack(trees)


def host_lane(states, i: int, layout: held_once.Layout | None = None):
  """Trial `i` of the stacked state, fetched to the host: what the trial saves at the run's last step (they restore
  into any template as device arrays). One trial at a time, so the host holds one trial's copy, not K."""
  return jax.device_get((layout or held_once.Layout.none(states)).index(states, i))


def host_index(tree, i: int):
  """Trial `i` of a stacked pytree already fetched to the host, as jax arrays again (metrics: no device program
  per trial, and their summaries compute in float32 as a single run's do)."""
  return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[i]), tree)


def lane_batch_size(batch_size: int, k: int, devices: int) -> int:
  """Each lane's evaluation batch: eval.batch_size examples over all K lanes (a multiple of the device count, at
  least one per device), so that a group's evaluation holds about one run's activations, not K runs'."""
  return max(devices, batch_size // k // devices * devices)


def masked_train_step(states, batch, active, *, step, batch_axis, layout: held_once.Layout, lanes: int = 0):
  """K train steps at once (`lanes` > 0: that many lanes at a time, ftlab/steppers/lane_chunks.py); trials whose
  `active` entry is False come back unchanged (bit for bit). The leaves `layout` holds once go in and come out
  unstacked (vmap raises if the step changed one)."""
  axes = layout.axes(states)
  vmapped = jax.vmap(step, in_axes=(axes, batch_axis), out_axes=(axes, 0))
  stepped, metrics = lane_chunks.in_chunks(vmapped, states, batch, once=layout.once, batch_axis=batch_axis,
                                           lanes=lanes)
  return layout.map(lambda new, old: _where(active, new, old), stepped, states), metrics


def _where(mask, new, old):
  """`new` where the trial's entry of `mask` [K] is True, else `old` (arrays with a leading trial axis)."""
  return jnp.where(jnp.asarray(mask).reshape(mask.shape + (1,) * (jnp.ndim(new) - 1)), new, old)


class StackedStepper:

  def __init__(self, plans: list, *, shard_trials: bool = False, lanes_at_once: int = 0):
    """Raises ValueError when the plans cannot share a group (different compiled steps, several processes, or a
    device layout other than replicated 'jit')."""
    if len({plan.static_key for plan in plans}) != 1:
      raise ValueError('vectorised trials must differ only in traced hyperparameters (learning rate, weight decay, '
                       'dropout, label smoothing, class weights, schedule numbers, seed, and with '
                       'optimizer.traced_freezing the frozen groups); group them by their plans\' static_key')
    if jax.process_count() > 1:
      raise ValueError('vectorised trials run in one process; run a multi-host sweep with vectorize 1')
    problem = layout_problem(plans[0].config)
    if problem:
      raise ValueError(problem)
    self.size = k = len(plans)
    self.mesh = mesh = parallel.data_mesh()
    self.eval_batch_size = lane_batch_size(plans[0].config.eval.batch_size, k, mesh.devices.size)
    self.buckets = data_lib.eval_buckets(plans[0])  # a shared split's (lanes of their own stack: one length)
    # the same seed and fold: the same data in the same order, one iterator (the folds of a cross-validated
    # configuration read different training data, each from its own iterator)
    self.shared_batch = len({(plan.config.seed, plan.config.data.fold) for plan in plans}) == 1
    batch_axis = None if self.shared_batch else 0
    self.trial_sharded = shard_trials and mesh.devices.size > 1 and k % mesh.devices.size == 0
    self.state_sharding = NamedSharding(mesh, P(parallel.DATA_AXIS) if self.trial_sharded else P())
    self.replicated = NamedSharding(mesh, P())  # the leaves held once
    self.batch_sharding = NamedSharding(mesh, P() if self.trial_sharded else
                                        P(parallel.DATA_AXIS) if self.shared_batch else P(None, parallel.DATA_AXIS))
    self.eval_sharding = NamedSharding(mesh, P() if self.trial_sharded else P(parallel.DATA_AXIS))
    # per-lane evaluation batches [K, B, ...]
    self.lane_sharding = NamedSharding(mesh, P() if self.trial_sharded else P(None, parallel.DATA_AXIS))
    self.plan, self.batch_axis = plans[0], batch_axis
    self.lanes = 0 if self.trial_sharded else lane_chunks.chunk_size(k, lanes_at_once)  # the train step's chunks

  def admit(self, trials) -> None:
    """The last of `trials` was just opened: where its base equals the first trial's, it takes the first's arrays,
    so that the host holds a shared base once while the group's trials open, not K times."""
    if len(trials) > 1:
      trials[-1].state = held_once.sharing(trials[0].state, trials[-1].state, self.plan.frozen['params'])

  def start(self, trials):
    """The stacked live states, and the group's programs for their layout. The lead is a trial that starts with the
    group (at its earliest step): its iterator feeds a shared batch, and every trial saves its position."""
    self.lead = min(trials, key=lambda trial: trial.start_step)
    states = [trial.take_state() for trial in trials]
    self.layout = held_once.Layout.of(self.plan.frozen['params'], states)
    key = ('stacked', self.plan.static_key, self.size, self.batch_axis, self.trial_sharded, self.layout, self.lanes)
    self.train_fn, self.eval_fn, self.eval_each_fn = compiled.cached(
        key, lambda: _compile(self.plan, self.batch_axis, self.layout, self.lanes))
    return self._put(self.layout.stack(states))

  def _put(self, host_states):
    return jax.device_put(host_states, self.layout.shardings(host_states, self.state_sharding, self.replicated))

  def next_batch(self, trials, active: np.ndarray):
    if self.shared_batch:  # the trials that train are where the lead is in the same data order
      batch = next(self.lead.iterator)
    else:
      each = [next(trial.iterator) if trains else None for trial, trains in zip(trials, active)]
      trained = [b for b in each if b is not None]
      filler = trained[0] if trained else next(self.lead.iterator)  # the lead's position matters no more
      batch = {name: np.stack([(filler if b is None else b)[name] for b in each]) for name in filler}
    return jax.device_put(batch, self.batch_sharding)

  def step(self, states, batch, active: np.ndarray):
    return self.train_fn(states, batch, jnp.asarray(active))

  def loss_totals(self, metrics) -> np.ndarray:
    return np.asarray(metrics.loss.total)

  def mean_loss(self, metrics, active: np.ndarray) -> float:
    return float(np.nanmean(np.where(active, np.asarray(metrics.loss.compute()), np.nan)))

  def evaluate(self, states, source, limit: int | None = None) -> list[dict]:
    """Each trial's metrics over `source`, or over its own of a list of K sources (evaluation.each)."""
    return self.evaluate_predicting(states, source, limit=limit, keep=False)[0]

  def evaluate_predicting(self, states, source, limit: int | None = None, *, keep: bool = True):
    """(evaluate's [metrics], per trial [(its host batch, its host predictions) for each batch]) in one pass; the
    predictions are fetched only with `keep` (else None per trial)."""
    per_lane = isinstance(source, list)
    if per_lane:
      batches = ((self.eval_each_fn, batch, self.lane_sharding) for batch in self._lane_batches(source, limit))
    else:
      batches = ((self.eval_fn, batch, self.eval_sharding)
                 for batch in data_lib.eval_batches(source, batch_size=self.eval_batch_size, limit=limit,
                                                    buckets=self.buckets))
    total, kept = None, [[] for _ in range(self.size)]
    for fn, batch, sharding in batches:
      batch_metrics, predicted = fn(states, jax.device_put(batch, sharding))
      total = batch_metrics if total is None else total.merge(batch_metrics)
      if keep:
        predicted = jax.device_get(predicted)
        for i, lane in enumerate(kept):
          lane.append(({k: v[i] for k, v in batch.items()} if per_lane else batch,
                       jax.tree.map(lambda x, i=i: x[i], predicted)))
    total = jax.device_get(total)
    return ([metrics_lib.summarize(host_index(total, i)) for i in range(self.size)],
            kept if keep else [None] * self.size)

  def _lane_batches(self, sources: list, limit: int | None):
    """Stacked [K, B, ...] evaluation batches, lane i's rows from sources[i]; a lane with fewer batches than the
    longest gets its first batch again with every row masked (counted nowhere)."""
    lanes = [data_lib.eval_batches(s, batch_size=self.eval_batch_size, limit=limit) for s in sources]
    firsts = [next(lane) for lane in lanes]  # every split has an example
    masked = [{**first, 'mask': np.zeros_like(first['mask'])} for first in firsts]
    for rows in itertools.zip_longest(*[itertools.chain([first], lane) for first, lane in zip(firsts, lanes)]):
      rows = [m if r is None else r for r, m in zip(rows, masked)]
      yield {name: np.stack([r[name] for r in rows]) for name in rows[0]}

  def accumulate(self, total, metrics, accepted: np.ndarray):
    """The stacked train metrics with the step's merged into the lanes of `accepted` (the others kept)."""
    if accepted.all():
      return metrics if total is None else total.merge(metrics)
    if total is None:
      return jax.tree.map(lambda leaf: _where(accepted, leaf, jnp.zeros_like(leaf)), metrics)
    return jax.tree.map(lambda new, old: _where(accepted, new, old), total.merge(metrics), total)

  def carried(self, saved: list, like):
    """The stacked train metrics resumed checkpoints carried (zeros for a trial that carried none)."""
    lane = host_index(jax.device_get(like), 0)
    return stack([jax.tree.map(np.zeros_like, lane) if s is None else metrics_from_json(s, like=lane)
                  for s in saved])

  def fetch(self, total):
    """The stacked train metrics on the host: one transfer for every trial's row and checkpoint."""
    return jax.device_get(total)

  def lane(self, host_total, i: int):
    return host_index(host_total, i)

  def state_to_save(self, states, i: int):
    return host_lane(states, i, self.layout)

  def iterator(self, trials, i: int):
    return self.lead.iterator if self.shared_batch else trials[i].iterator

  def best(self, states, trials, done: list[int]):
    """(the best states of the `done` trials, stacked and padded to K with the first, [their parameters]). A trial's
    lane holds the state of its last checkpoint (the final step, or the evaluation it stopped at): where that is
    its best, it is used as it is; otherwise the best checkpoint is restored."""
    best, held = [], []
    for i in done:
      ckpts = trials[i].ckpts
      held.append(ckpts.best_step() == ckpts.latest_step() == trials[i].final_step)
      lane = self.layout.index(states, i)
      best.append(lane if held[-1] else self.layout.shared(states, ckpts.restore(ckpts.best_step(), lane)[0]))
    if len(done) == self.size and all(held):
      return states, [b.params for b in best]
    padded = best + [best[0]] * (self.size - len(best))  # K lanes keep the compiled eval step
    return self._put(self.layout.restack(padded, states)), [b.params for b in best]


def _compile(plan, batch_axis, layout: held_once.Layout, lanes: int):
  """(the masked train step, the evaluation on a shared batch, the evaluation on per-lane batches); jit compiles
  each when first called."""
  train_fn, eval_fn = steps.bind(plan)

  def evaluation(batch_axis):
    return jax.jit(lambda states, batch: jax.vmap(eval_fn, in_axes=(layout.axes(states), batch_axis))(states, batch))
  train = functools.partial(masked_train_step, step=train_fn, batch_axis=batch_axis, layout=layout, lanes=lanes)
  return jax.jit(train, donate_argnums=0), evaluation(None), evaluation(0)
