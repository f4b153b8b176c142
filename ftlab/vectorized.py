"""Vectorised trials: K runs that differ only in traced hyperparameters, trained as one vmapped train step.

A sweep's trials often leave the accelerator idle: a small model's step is short and the Python loop around it
(dispatch, metrics, logging) dominates. Runs whose configs differ only in values the state carries as traced
numbers (learning rate, weight decay, dropout rates, label smoothing, class weights, the schedule's numbers such
as warm-up length, end factor or decay rate, and with optimizer.traced_freezing which groups are frozen) or in what
only sets the initial state and the data order (seed, pretrained weights) share one compiled train step (see
step_cache). Here
their states are stacked on a leading trial axis and stepped together by `jax.vmap(train_step)`: one dispatch per
step for all K trials, one compilation in total.

Each trial stays a normal ftlab run in its own workdir: its own config.json, data iterator (the batch is shared
when every trial has the same seed, else stacked [K, B, ...]), train metrics, evaluations, early stopping,
checkpoints, metrics.jsonl and summary.json, as `train.execute` writes them; the rows agree with trials run one by
one to float tolerance (batched matmuls may sum in another order). A trial that stops (early stopping, pruned by
its `on_eval`, diverged) is masked: its state no longer changes while the others go on, and nothing recompiles.
With `shard_trials`, the trial axis of the stacked state is split over the devices instead of the batch.

A group starts at one step: every trial new, or every trial resuming from a checkpoint at the same step (the
sweep runner groups trials so; `group_key` says which may share a group).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ftlab import checkpoints as ckpt_lib
from ftlab import config as config_lib
from ftlab import data as data_lib
from ftlab import metrics as metrics_lib
from ftlab import faults, parallel, preemption, step_cache, train, writers
from ftlab.optim import builder, schedules


def static_key(p: train.RunPlan) -> str:
  return step_cache.static_key(p.config, model=p.model, task=p.task, steps_per_epoch=p.steps_per_epoch,
                               total_steps=p.total_steps)


def start_step(p: train.RunPlan) -> int | None:
  """The step a planned run would resume from (its latest checkpoint), or None for a new run."""
  directory = os.path.join(p.workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return None
  ckpts = ckpt_lib.Checkpoints(directory, keep=p.config.checkpoint.keep, mode=config_lib.eval_mode(p.config),
                               read_only=True)
  try:
    return ckpts.latest_step()
  finally:
    ckpts.close()


def group_key(p: train.RunPlan) -> tuple:
  """Plans with equal keys may run as one vectorised group: the same compiled step and the same start. A run that
  skips non-finite steps (train.skip_nonfinite) runs alone, through train.execute, which counts its skips."""
  return static_key(p), start_step(p), p.workdir if p.config.train.skip_nonfinite else ''


def layout_problem(config) -> str:
  """Why a config's device layout cannot run vectorised trials, or ''."""
  par = config.parallel
  if par.mode != 'jit' or par.fsdp:
    return (f"sweep.vectorize: vectorised trials use parallel.mode='jit' without FSDP (the trial axis is vmapped "
            f"over a replicated or trial-sharded state); this config has parallel.mode={par.mode!r}, "
            f"parallel.fsdp={par.fsdp}. Set parallel.mode='jit' and parallel.fsdp=False, or drop vectorize")
  return ''


def stack(trees: list):
  """Pytrees of one structure -> one host pytree with a leading trial axis (stacked in numpy: no device program to
  compile; PRNG keys through their key data)."""
  def one(*xs):
    if jax.dtypes.issubdtype(xs[0].dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(np.stack([np.asarray(jax.random.key_data(x)) for x in xs]),
                                      impl=jax.random.key_impl(xs[0]))
    return np.stack([np.asarray(x) for x in xs])
  return jax.tree.map(one, *trees)


@jax.jit
def index(tree, i):
  """Trial `i` of a stacked pytree (`i` is traced: one compilation serves every trial)."""
  return jax.tree.map(lambda x: x[i], tree)


def host_lane(states, i: int):
  """Trial `i` of the stacked state, fetched to the host: what the trial saves (orbax saves host arrays in about
  55 ms here, device ones in about 85; they restore into any template as device arrays). One trial at a time, so
  the host holds one trial's copy, not K."""
  return jax.device_get(index(states, i))


def host_index(tree, i: int):
  """Trial `i` of a stacked pytree already fetched to the host, as jax arrays again (metrics: no device program
  per trial, and their summaries compute in float32 as a single run's do)."""
  return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[i]), tree)


def masked_train_step(states, batch, active, *, step, batch_axis):
  """K train steps at once; trials whose `active` entry is False come back unchanged (bit for bit)."""
  stepped, metrics = jax.vmap(step, in_axes=(0, batch_axis))(states, batch)

  def keep(new, old):
    return jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)

  return jax.tree.map(keep, stepped, states), metrics


@dataclasses.dataclass
class Outcome:
  """How one trial of a group ended: its summary, or the Stop / Diverged it raised."""
  summary: dict | None = None
  error: BaseException | None = None
  seconds: float = 0.0  # wall time of the run, or of its group


class _Trial:
  """One run's side of the vectorised loop: the bookkeeping train.execute does for a single run."""

  def __init__(self, p: train.RunPlan, on_eval: Callable | None):
    self.p, self.c, self.on_eval = p, p.config, on_eval
    self.is_writer = jax.process_index() == 0
    os.makedirs(p.workdir, exist_ok=True)
    if self.is_writer and not p.resuming:
      writers.write_json_atomic(os.path.join(p.workdir, 'config.json'), self.c.to_dict())
    self.mode = config_lib.eval_mode(self.c)
    self.ckpts = ckpt_lib.Checkpoints(os.path.join(p.workdir, 'checkpoints'), keep=self.c.checkpoint.keep,
                                      mode=self.mode)
    self.state, self.tx, self.frozen = train.initial_state(p, load_pretrained=self.ckpts.latest_step() is None)
    if self.is_writer:
      train.describe_run(p, self.state.params, echo=False)
    self.iterator = data_lib.train_iterator(p.splits.train, batch_size=self.c.train.batch_size, seed=self.c.seed,
                                            **data_lib.stream_options(self.c.data))
    self.loop = {'best': None, 'bad_evals': 0, 'stopped_early': False}
    self.start, restored, saved_loop = self.ckpts.restore_latest(self.state, self.iterator)
    self.carried = None  # as in train.execute
    if self.start is not None:
      self.state, self.loop = restored, saved_loop
      self.carried = self.loop.pop('train_metrics', None)
      print(f'ftlab: resuming {p.workdir} from step {self.start}', flush=True)
    self.writer = writers.MetricWriter(p.workdir, resume_step=self.start or 0, enabled=self.is_writer)
    self.last_good = self.start
    self.final_step = self.start or 0
    self.error: BaseException | None = None

  @property
  def active(self) -> bool:
    return self.error is None and not self.loop['stopped_early']

  def check_finite(self, step: int, loss_total) -> bool:
    total = float(loss_total)
    if not math.isfinite(total):
      self.error = train.Diverged(step, total, self.p.workdir, self.last_good)
    return self.error is None

  def save(self, step: int, state, iterator, train_metrics, *, metric=None, preempted: bool = False):
    """Saves this trial's checkpoint as train.execute does (`train_metrics`: its own, on the host, or None)."""
    loop = {**self.loop, 'train_metrics': train.metrics_to_json(train_metrics)}
    self.ckpts.save(step, state, iterator, loop, metric=metric, preempted=preempted)
    self.last_good = step
    faults.point('save', step, self.p.workdir)

  def close(self):
    self.ckpts.wait()
    self.writer.close()
    self.ckpts.close()


def execute_group(plans: list[train.RunPlan], *, on_evals: list[Callable | None] | None = None,
                  shard_trials: bool = False) -> list[Outcome]:
  """Trains the planned runs together (see the module docstring); returns each one's Outcome, in order.

  Raises ValueError when the plans cannot share a group (different compiled steps or start steps)."""
  if not plans:
    return []
  keys = {static_key(p) for p in plans}
  if len(keys) != 1:
    raise ValueError('vectorised trials must differ only in traced hyperparameters (learning rate, weight decay, '
                     'dropout, label smoothing, class weights, schedule numbers, seed, and with '
                     'optimizer.traced_freezing the frozen groups); group them with vectorized.group_key')
  if jax.process_count() > 1:
    raise ValueError('vectorised trials run in one process; run a multi-host sweep with vectorize 1')
  problem = layout_problem(plans[0].config)
  if problem:
    raise ValueError(problem)
  on_evals = on_evals or [None] * len(plans)
  trials = [_Trial(p, f) for p, f in zip(plans, on_evals)]
  try:
    return _run(trials, shard_trials=shard_trials)
  finally:
    for t in trials:
      t.close()


def _run(trials: list[_Trial], *, shard_trials: bool) -> list[Outcome]:
  starts = {t.start for t in trials}
  if len(starts) != 1:
    raise ValueError(f'vectorised trials must start at one step; these resume from {sorted(map(str, starts))}')
  first = trials[0]
  p, c = first.p, first.c
  k = len(trials)
  mesh = parallel.data_mesh()
  shared_batch = len({t.c.seed for t in trials}) == 1  # same seed, same data order: one iterator feeds all
  batch_axis = None if shared_batch else 0
  n = mesh.devices.size
  trial_sharded = shard_trials and n > 1 and k % n == 0
  state_sharding = NamedSharding(mesh, P(parallel.DATA_AXIS) if trial_sharded else P())
  batch_sharding = NamedSharding(mesh, P() if trial_sharded else
                                 P(parallel.DATA_AXIS) if shared_batch else P(None, parallel.DATA_AXIS))
  states = jax.device_put(stack([t.state for t in trials]), state_sharding)
  for t in trials:
    t.state = None  # the stacked copy is the live one

  key = (static_key(p), k, batch_axis, trial_sharded)
  step_fn, eval_fn = step_cache.steps(repr(key), lambda: (
      functools.partial(masked_train_step, step=functools.partial(
          train.train_step, model=p.model, task=p.task, tx=first.tx, frozen=first.frozen,
          accum_steps=c.train.grad_accum_steps), batch_axis=batch_axis),
      jax.vmap(functools.partial(train.eval_step, model=p.model, task=p.task), in_axes=(0, None))))

  def run_eval(states, source, limit=None) -> list[dict]:
    total = None
    for batch in data_lib.eval_batches(source, batch_size=c.eval.batch_size, limit=limit):
      m = eval_fn(states, jax.device_put(batch, NamedSharding(mesh, P() if trial_sharded else P(parallel.DATA_AXIS))))
      total = m if total is None else total.merge(m)
    total = jax.device_get(total)
    return [metrics_lib.summarize(host_index(total, i)) for i in range(k)]

  def evaluate_splits(states) -> list[dict]:
    val = run_eval(states, p.splits.validation)
    if not c.eval.train_subset:
      return [{'validation': v} for v in val]
    train_eval = run_eval(states, p.splits.train, limit=c.eval.train_subset)
    return [{'train_eval': te, 'validation': train.with_gap(v, te)} for v, te in zip(val, train_eval)]

  schedules_of = [schedules.build_schedule(t.c.schedule, total_steps=p.total_steps, steps_per_epoch=p.steps_per_epoch)
                  for t in trials]  # each trial's own numbers (traced), of the group's one kind
  step = first.start or 0
  progress = writers.Progress(p.total_steps, step)
  pending = None
  train_metrics = None  # stacked; resumed between evaluations: the trials' carried sums, merged with the first step's
  carried = [t.carried for t in trials]
  t0 = time.perf_counter()
  notice = preemption.Notice().install()
  try:
    while step < p.total_steps and any(t.active for t in trials):
      active = np.array([t.active for t in trials])
      if shared_batch:  # every trial's iterator is at the same position: the first one's stands for all
        batch = next(first.iterator)
      else:
        batch = {name: np.stack([b[name] for b in bs]) for bs in [[next(t.iterator) for t in trials]]
                 for name in bs[0]}
      states, m = step_fn(states, jax.device_put(batch, batch_sharding), jnp.asarray(active))
      if pending is not None:
        _check(trials, *pending)
      if carried[0] is not None:  # exact: the same merges, in the same order, as a run that never stopped
        train_metrics = jax.tree.map(lambda *xs: np.stack(xs), *[train.metrics_from_json(x, like=m) for x in carried])
        carried = [None] * k
      step += 1
      # Stacked: a lane that stopped keeps merging, but a stopped trial never writes a train row again.
      train_metrics = m if train_metrics is None else train_metrics.merge(m)
      for i, t in enumerate(trials):
        if active[i]:
          t.final_step = step
      pending = (step, m, active)
      if first.is_writer and (step % c.train.log_every_steps == 0 or step == p.total_steps):
        losses = np.asarray(m.loss.compute())
        print(progress.line(step, float(np.nanmean(np.where(active, losses, np.nan)))), flush=True)
      evaluating = step % p.eval_every == 0 or step == p.total_steps
      saving = evaluating or (c.checkpoint.every_steps and step % c.checkpoint.every_steps == 0)
      if saving:
        _check(trials, *pending)
      active = [bool(a) and t.active for a, t in zip(active, trials)]
      if evaluating and any(active):
        rows = evaluate_splits(states)
      if saving and any(active):  # one transfer for every trial's train row and checkpoint
        train_host = jax.device_get(train_metrics)
      if evaluating:  # the rate each trial's last step used: its own peak and schedule
        peaks = np.asarray(jax.device_get(builder.hyperparams(states.opt_state)['learning_rate']))
        factors = [float(s(step - 1)) for s in schedules_of]
      for i, t in enumerate(trials):
        if not active[i]:
          continue
        metric_value = None
        if evaluating:
          lr = float(np.float32(peaks[i]) * np.float32(factors[i]))
          t.writer.write(step, 'train', {**metrics_lib.summarize(host_index(train_host, i)), 'learning_rate': lr})
          for split, row in rows[i].items():
            t.writer.write(step, split, row)
          metric_value = rows[i]['validation'][t.c.eval.metric]
          t.loop = train._early_stopping(t.loop, metric_value, t.c.early_stopping, t.mode)
        if saving:
          t.save(step, host_lane(states, i), first.iterator if shared_batch else t.iterator,
                 None if evaluating else host_index(train_host, i), metric=metric_value)
        if evaluating and t.on_eval is not None:
          try:
            t.on_eval(step, rows[i]['validation'])
          except train.Stop as stop:
            t.error = stop
      if evaluating:
        train_metrics = None
        if first.is_writer and any(active):
          print(f'  eval @ {step}: validation {c.eval.metric} '
                + ' '.join(f'{r["validation"][c.eval.metric]:.4f}' if a else '-' for r, a in zip(rows, active)),
                flush=True)
      for t in trials:  # tests: die here as a preempted VM does, with no chance to clean up
        faults.point('step', step, t.p.workdir)
      if notice.requested(step) and step < p.total_steps and any(t.active for t in trials):
        _preempt(trials, step, states, m, train_metrics, shared_batch=shared_batch, saved=saving)
    if pending is not None:
      _check(trials, *pending)
    train_seconds = time.perf_counter() - t0
    for t in trials:
      t.ckpts.wait()

    done = [t for t in trials if t.error is None]
    outcomes = [Outcome(error=t.error) for t in trials]
    if not done:
      return outcomes
    # A trial's lane holds the state of its last checkpoint (the final step, or the evaluation it stopped at): where
    # that is its best one, it is used as it is; otherwise the best checkpoint is restored.
    held = [t.ckpts.best_step() == t.ckpts.latest_step() == t.final_step for t in done]
    best = []
    for t, h in zip(done, held):
      i = trials.index(t)
      lane = index(states, i)
      best.append(lane if h else t.ckpts.restore(t.ckpts.best_step(), lane)[0])
    if len(done) == k and all(held):
      best_states = states
    else:  # re-stack only the finished trials (padded with the first to keep K, and the compiled eval step)
      padded = best + [best[0]] * (k - len(best))
      best_states = jax.device_put(stack(padded), state_sharding)
    at_best = evaluate_splits(best_states)
    tests = run_eval(best_states, p.splits.test)
    for j, t in enumerate(done):
      best_step = t.ckpts.best_step()
      t.writer.write(best_step, 'test', tests[j])
      outcomes[trials.index(t)] = Outcome(summary=train.finish(
          t.p, best_step=best_step, final_step=t.final_step, stopped_early=t.loop['stopped_early'],
          at_best=at_best[j], test=tests[j], best_params=best[j].params, train_seconds=train_seconds))
    return outcomes

  finally:
    notice.uninstall()

def _preempt(trials: list[_Trial], step: int, states, m, train_metrics, *, shared_batch: bool, saved: bool):
  """SIGTERM: every trial still training saves a checkpoint at `step` (unless it saved one there already, or its
  loss is not finite), then Preempted."""
  active = [t.active for t in trials]
  _check(trials, step, m, np.array(active))
  host = None if train_metrics is None else jax.device_get(train_metrics)
  for i, t in enumerate(trials):
    if active[i] and t.error is None and not saved:
      t.save(step, host_lane(states, i), trials[0].iterator if shared_batch else t.iterator,
             None if host is None else host_index(host, i), preempted=True)
  for t in trials:
    t.ckpts.wait()
  raise preemption.Preempted(step, os.path.join(os.path.dirname(trials[0].p.workdir), '*'))  # DIR/trials/*


def _check(trials: list[_Trial], step: int, m, active):
  """Marks each active trial whose loss sum at `step` is NaN or Inf as diverged."""
  totals = np.asarray(m.loss.total)
  for i, t in enumerate(trials):
    if active[i] and t.error is None:
      t.check_finite(step, totals[i])


def run_groups(plans: list[train.RunPlan], *, on_evals=None, vectorize: int = 1 << 30,
               shard_trials: bool = False, on_outcome: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
  """Runs any plans, in groups of at most `vectorize` that share a group_key (vectorised), a plan alone through
  train.execute; returns each one's Outcome, in order, and gives each to `on_outcome(index, outcome)` as soon as
  its group ends. An exception other than Stop / Diverged ends the outcome of every run of its group with it,
  and the other groups still run."""
  on_evals = on_evals or [None] * len(plans)
  by_key: dict[Any, list[int]] = {}
  for i, p in enumerate(plans):
    by_key.setdefault(group_key(p), []).append(i)
  groups = [members[j:j + vectorize] for members in by_key.values() for j in range(0, len(members), vectorize)]
  outcomes: list[Outcome | None] = [None] * len(plans)
  for members in sorted(groups):
    t0 = time.perf_counter()
    try:
      if len(members) == 1:
        i = members[0]
        try:
          results = [Outcome(summary=train.execute(plans[i], on_eval=on_evals[i]))]
        except (train.Stop, train.Diverged) as err:
          results = [Outcome(error=err)]
      else:
        results = execute_group([plans[i] for i in members], on_evals=[on_evals[i] for i in members],
                                shard_trials=shard_trials)
    except preemption.Preempted:
      raise  # the sweep stops here; the group's trials resume from their checkpoints
    except Exception as err:  # pylint: disable=broad-except
      results = [Outcome(error=err) for _ in members]
    seconds = time.perf_counter() - t0
    for i, o in zip(members, results):
      o.seconds = seconds
      outcomes[i] = o
      if on_outcome is not None:
        on_outcome(i, o)
  return outcomes
