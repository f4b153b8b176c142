"""The optimizer of a run as one optax chain, built from config.optimizer and config.schedule.

    multi_transform({
        'trainable': inject_hyperparams(chain(clip, core, decayed weights (masked), -lr * schedule)),
        'frozen':    set_to_zero(),
    }, labels)

Frozen parameters (optimizer.freeze) get exactly zero updates, keep no optimizer state, take no part in clipping
and get no weight decay, because the trainable chain never sees them. The peak learning rate and the weight decay
are injected hyperparameters: traced values in the optimizer state, so a sweep changes them without recompiling.
"""
from __future__ import annotations

import re

import optax

from ftlab.optim import groups, schedules

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


def freeze_labels(opt, params):
  """'frozen' / 'trainable' per parameter from optimizer.freeze (errors if the pattern matches nothing)."""
  spec = ([('frozen', opt.freeze)] if opt.freeze else []) + [('trainable', '')]
  return groups.assign(params, spec, origin='optimizer.freeze')


def build(opt, sched, params, *, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """config.optimizer + config.schedule + the parameter tree -> the run's optax transformation."""
  schedule = schedules.build_schedule(sched, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  no_decay = re.compile(opt.no_decay) if opt.no_decay else None

  def decay_mask(tree):  # a callable: inside multi_transform the tree has MaskedNode leaves for frozen params
    return groups.map_paths(lambda p: no_decay is None or not no_decay.search(p), tree)

  def trainable(learning_rate, weight_decay):
    parts = [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.grad_clip_norm else []
    parts += [_core(opt),
              optax.add_decayed_weights(weight_decay, mask=decay_mask),
              optax.scale_by_learning_rate(lambda count: learning_rate * schedule(count))]
    return optax.chain(*parts)

  labels = freeze_labels(opt, params)
  transforms = {'trainable': optax.inject_hyperparams(trainable)(
      learning_rate=opt.learning_rate, weight_decay=opt.weight_decay)}
  if opt.freeze:
    transforms['frozen'] = optax.set_to_zero()
  return optax.multi_transform(transforms, labels)


def hyperparams(opt_state) -> dict[str, float]:
  """The traced optimizer hyperparameters held in `opt_state`."""
  return {name: optax.tree_utils.tree_get(opt_state, name) for name in TRACED}


def set_hyperparams(opt_state, **values):
  """`opt_state` with new values of traced hyperparameters (same shapes and dtypes: no recompilation)."""
  unknown = set(values) - set(TRACED)
  if unknown:
    raise KeyError(f'not traced optimizer hyperparameters: {sorted(unknown)}; traced are {TRACED}')
  return optax.tree_utils.tree_set(opt_state, **values)
