"""The optimizer of a run as one optax chain, built from config.optimizer, config.schedule and the optimizer plan.

    inject_hyperparams(learning_rate, weight_decay)(chain(
        zero the gradients of frozen parameters,        # so they take no share of the clipping norm
        clip_by_global_norm,
        multi_transform({label: chain(core, decayed weights * wd_mult (masked), -lr * lr_mult * schedule)
                         or set_to_zero() for frozen labels}, labels)))

Labels and their multipliers come from `plan.resolve` (optimizer.freeze, optimizer.groups, layer-wise decay).
Frozen parameters get exactly zero updates, keep no optimizer state and get no weight decay. Parameters frozen
for part of the run (LP-FT, gradual unfreezing, frozen_steps) are gated by the step count before clipping and
after the branches; they keep their optimizer state for when they train, and Adam's bias correction runs on the
global count, so a layer unfrozen late starts with small steps (a built-in warm-up). The peak learning
rate and the weight decay are injected hyperparameters: traced values in the optimizer state, so a sweep changes
them without recompiling; the per-label multipliers and schedules are static.
"""
from __future__ import annotations

import copy
import re

import jax
import jax.numpy as jnp
import optax

from ftlab.optim import groups, plan, schedules

TRACED = ('learning_rate', 'weight_decay')


def _core(opt) -> optax.GradientTransformation:
  """The update direction of config.optimizer.name, before decay and learning rate."""
  if opt.name == 'adamw':
    return optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)
  if opt.name == 'sgd':
    return optax.trace(decay=opt.momentum, nesterov=opt.nesterov) if opt.momentum else optax.identity()
  if opt.name == 'adafactor':
    return optax.scale_by_factored_rms()
  raise ValueError(f'optimizer.name: unknown optimizer {opt.name!r}')


def rule_schedule(sched, rule: plan.Rule, *, total_steps: int, steps_per_epoch: int):
  """config.schedule with a group's overrides applied, as an optax schedule."""
  if not rule.schedule:
    return schedules.build_schedule(sched, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  merged = copy.deepcopy(sched)
  for key, value in rule.schedule:
    merged[key] = value
  try:
    return schedules.build_schedule(merged, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  except ValueError as err:
    raise ValueError(f'optimizer.groups ({rule.group} schedule): {err}') from err


def gate_by_step(freezing) -> optax.GradientTransformation:
  """Zeroes the updates of parameters inside one of their frozen step ranges (`freezing`: a tree of
  plan.Freezing like the parameters). Counts steps itself; the phase is computed from the traced count."""

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    gated = jax.tree.map(lambda f, u: jnp.where(f.trained_at(state.count), u, jnp.zeros_like(u)), freezing, updates)
    return gated, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def peak_learning_rate(opt, batch_size: int) -> float:
  """optimizer.learning_rate, scaled with the batch size when optimizer.lr_batch_scaling asks: 'linear' multiplies
  it by batch_size / base_batch_size (Goyal et al. 2017), 'sqrt' by the square root of that (Adam-style rules);
  'none' leaves it."""
  ratio = batch_size / opt.base_batch_size
  return opt.learning_rate * {'none': 1.0, 'linear': ratio, 'sqrt': ratio ** 0.5}[opt.lr_batch_scaling]


def build(opt, sched, labels, rules: dict[str, plan.Rule], *, total_steps: int, steps_per_epoch: int,
          batch_size: int) -> optax.GradientTransformation:
  """config.optimizer + config.schedule + the optimizer plan (`plan.resolve`'s labels and rules) -> the run's
  optax transformation; its traced learning_rate is peak_learning_rate(opt, batch_size)."""
  fns = {name: rule_schedule(sched, r, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
         for name, r in rules.items() if not r.frozen}
  no_decay = re.compile(opt.no_decay) if opt.no_decay else None
  frozen = jax.tree.map(lambda name: rules[name].frozen, labels)

  def decay_mask(tree):  # a callable: inside multi_transform the tree has MaskedNode leaves for other labels
    return groups.map_paths(lambda p: no_decay is None or not no_decay.search(p), tree)

  def chain(learning_rate, weight_decay):
    def branch(name, r):
      if r.frozen:
        return optax.set_to_zero()
      return optax.chain(_core(opt),
                         optax.add_decayed_weights(weight_decay * r.wd_mult, mask=decay_mask),
                         optax.scale_by_learning_rate(lambda count: learning_rate * r.lr_mult * fns[name](count)))

    parts = [optax.masked(optax.set_to_zero(), frozen)] if any(r.frozen for r in rules.values()) else []
    # Parameters frozen for part of the run: zero gradients (no clipping share, no moments) and zero updates
    # (no weight decay) while frozen.
    timed = any(not (r.freezing.always or r.freezing.never) for r in rules.values())
    gate = [gate_by_step(plan.freezing_tree(labels, rules))] if timed else []
    if opt.grad_clip_norm:
      parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    parts.append(optax.multi_transform({name: branch(name, r) for name, r in rules.items()}, labels))
    return optax.chain(*gate, *parts, *gate)

  return optax.inject_hyperparams(chain)(learning_rate=peak_learning_rate(opt, batch_size),
                                         weight_decay=opt.weight_decay)


def hyperparams(opt_state) -> dict[str, float]:
  """The traced optimizer hyperparameters held in `opt_state`."""
  return {name: optax.tree_utils.tree_get(opt_state, name) for name in TRACED}


def set_hyperparams(opt_state, **values):
  """`opt_state` with new values of traced hyperparameters (same shapes and dtypes: no recompilation)."""
  unknown = set(values) - set(TRACED)
  if unknown:
    raise KeyError(f'not traced optimizer hyperparameters: {sorted(unknown)}; traced are {TRACED}')
  return optax.tree_utils.tree_set(opt_state, **values)
