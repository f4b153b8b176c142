"""The optimizer of a run as one optax chain, built from config.optimizer, config.schedule and the optimizer's rules.

    inject_hyperparams(learning_rate, weight_decay, schedule_*, [trained])(chain(
        zero the gradients of frozen parameters,        # so they take no share of the clipping norm
        clip_by_global_norm,
        multi_transform({label: chain(core, decayed weights * wd_mult (masked), -lr * lr_mult * schedule)
                         or set_to_zero() for frozen labels}, labels)))

Labels and their multipliers come from `rules.resolve` (optimizer.freeze, optimizer.groups, layer-wise decay).
Frozen parameters get exactly zero updates, keep no optimizer state and get no weight decay. Parameters frozen
for part of the run (LP-FT, gradual unfreezing, frozen_steps) are gated by the step count before clipping and
after the branches; they keep their optimizer state for when they train, and Adam's bias correction runs on the
global count, so a layer unfrozen late starts with small steps (a built-in warm-up).

Traced (held in the optimizer state's `hyperparams`, so a sweep changes them without recompiling): the peak
learning rate, the weight decay, and the numbers of the schedules (`schedule_<name>` for config.schedule,
`groups<i>_schedule_<name>` for a group's own schedule; see schedules.resolve for the names). With
optimizer.traced_freezing, whether each parameter trains is traced too: `trained` holds one 0/1 per parameter leaf
(1 trains, 0 frozen for the whole run), every label keeps a full branch and its optimizer state, and the frozen
leaves have their gradients zeroed before clipping, their optimizer state held as it was (moments stay zero) and
their updates zeroed after the branches (so no weight decay either). Static: the labels, the per-label
multipliers, the schedules' names and freezing over time.
"""
from __future__ import annotations

import copy
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftlab.optim import groups, schedules
from ftlab.optim import lazy as lazy_lib
from ftlab.optim.rules import Rule, freezing_tree

SCHEDULE_PREFIX = 'schedule_'


def _core(opt) -> optax.GradientTransformation:
  """The update direction of config.optimizer.name, before decay and learning rate."""
  if opt.name == 'adamw':
    return optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)
  if opt.name == 'sgd':
    return optax.trace(decay=opt.momentum, nesterov=opt.nesterov) if opt.momentum else optax.identity()
  if opt.name == 'adafactor':
    return optax.scale_by_factored_rms()
  raise ValueError(f'optimizer.name: unknown optimizer {opt.name!r}')


def merged_schedule(sched, rule: Rule):
  """config.schedule with a group's overrides applied (the same ConfigDict when the group has none)."""
  if not rule.schedule:
    return sched
  merged = copy.deepcopy(sched)
  for key, value in rule.schedule:
    merged[key] = value
  return merged


def schedule_prefix(rule: Rule) -> str:
  """The prefix of a rule's traced schedule numbers: 'schedule_' for config.schedule, 'groups<i>_schedule_' for the
  own schedule of optimizer.groups[i]."""
  return re.sub(r'\W', '', rule.group) + '_' + SCHEDULE_PREFIX if rule.schedule else SCHEDULE_PREFIX


def schedule_values(sched, rules: dict[str, Rule], *, total_steps: int, steps_per_epoch: int
                    ) -> dict[str, np.ndarray]:
  """The traced numbers of config.schedule and of the groups' own schedules, by hyperparameter name (see
  schedules.resolve); what `set_hyperparams` takes to give a built optimizer another schedule of the same kind."""
  out, seen = {}, set()
  for rule in rules.values():
    prefix = schedule_prefix(rule)
    if prefix in seen:
      continue
    seen.add(prefix)
    try:
      values = schedules.resolve(merged_schedule(sched, rule), total_steps=total_steps,
                                 steps_per_epoch=steps_per_epoch)
    except ValueError as err:
      if not rule.schedule:
        raise
      raise ValueError(f'optimizer.groups ({rule.group} schedule): {err}') from err
    out.update({prefix + k: np.asarray(v) for k, v in values.items()})
  return out


def run_schedule(sched, values: dict, *, total_steps: int):
  """config.schedule as `count -> float32 factor`, reading its numbers from `values` (schedule_values' result):
  the factor of the peak learning rate that the train step's optimizer applies to parameters of no own schedule."""
  fn = schedules.schedule_fn(sched.name, staircase=bool(sched.staircase), total_steps=total_steps)
  own = {k[len(SCHEDULE_PREFIX):]: v for k, v in values.items() if k.startswith(SCHEDULE_PREFIX)}
  return lambda count: fn(own, count)


def gate_by_step(freezing) -> optax.GradientTransformation:
  """Zeroes the updates of parameters inside one of their frozen step ranges (`freezing`: a tree of
  rules.Freezing like the parameters). Counts steps itself; the phase is computed from the traced count."""

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


def _frozen_zeroed(mask) -> optax.GradientTransformation:
  """Zeroes the updates of leaves whose entry of `mask` (a tree like the updates of traced bools) is False."""
  return optax.stateless(lambda updates, params: jax.tree.map(
      lambda m, u: jnp.where(m, u, jnp.zeros_like(u)), mask, updates))


def _holding_frozen_state(inner: optax.GradientTransformation, mask) -> optax.GradientTransformation:
  """`inner` whose state entries of leaves whose `mask` entry (a traced bool, in a tree like the updates inner
  sees: MaskedNode for other labels) is False stay as they were: every part of the state shaped like the updates
  (moments, factored statistics), so a frozen leaf's state never changes (zero gradients alone would still move
  Adafactor's statistics by its epsilon)."""

  def update(updates, state, params=None):
    new_updates, new_state = inner.update(updates, state, params)
    return new_updates, lazy_lib.held(new_state, state, mask, jax.tree.structure(updates))

  return optax.GradientTransformation(inner.init, update)


def build(opt, sched, labels, rules: dict[str, Rule], *, total_steps: int, steps_per_epoch: int,
          batch_size: int, trained=None, values: dict | None = None) -> optax.GradientTransformation:
  """config.optimizer + config.schedule + the rules (`rules.resolve`'s labels and rules) -> the run's
  optax transformation; its traced learning_rate is peak_learning_rate(opt, batch_size).

  `trained` (optimizer.traced_freezing: `rules.resolve_traced_freezing`'s tree of bools like the labels) makes
  whether each parameter trains a traced 0/1 (hyperparameter `trained`, one per leaf in tree order) instead of
  static: the rules then hold no label frozen for the whole run. `values`: schedule_values(sched, rules, ...),
  when the caller has them already."""
  if values is None:
    values = schedule_values(sched, rules, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  fns = {}
  for r in rules.values():
    merged = merged_schedule(sched, r)
    fns[schedule_prefix(r)] = schedules.schedule_fn(merged.name, staircase=bool(merged.staircase),
                                                     total_steps=total_steps)
  no_decay = re.compile(opt.no_decay) if opt.no_decay else None
  lazy = re.compile(opt.lazy_updates) if opt.lazy_updates else None
  frozen = jax.tree.map(lambda name: rules[name].frozen, labels)
  label_leaves, treedef = jax.tree.flatten(labels)
  hyper = {'learning_rate': peak_learning_rate(opt, batch_size), 'weight_decay': opt.weight_decay, **values}
  if trained is not None:
    hyper['trained'] = np.asarray(jax.tree.leaves(trained), np.float32).reshape(-1)

  def decay_mask(tree):  # a callable: inside multi_transform the tree has MaskedNode leaves for other labels
    return groups.map_paths(lambda p: no_decay is None or not no_decay.search(p), tree)

  def chain(**hp):
    learning_rate, weight_decay = hp['learning_rate'], hp['weight_decay']
    mask = None
    if trained is not None:
      mask = jax.tree.unflatten(treedef, [hp['trained'][i] != 0 for i in range(len(label_leaves))])

    def schedule(r):
      prefix = schedule_prefix(r)
      own = {k[len(prefix):]: v for k, v in hp.items() if k.startswith(prefix)}
      return lambda count: fns[prefix](own, count)

    def branch(name, r):
      if r.frozen:
        return optax.set_to_zero()
      core = _core(opt)
      if mask is not None:  # the label's leaves of the mask, as multi_transform hands them to the branch
        core = _holding_frozen_state(core, jax.tree.map(
            lambda label, m: m if label == name else optax.MaskedNode(), labels, mask))
      sched_fn = schedule(r)
      steps = optax.chain(core,
                          optax.add_decayed_weights(weight_decay * r.wd_mult, mask=decay_mask),
                          optax.scale_by_learning_rate(lambda count: learning_rate * r.lr_mult * sched_fn(count)))
      if lazy is None:
        return steps
      return lazy_lib.lazy_rows(steps, _label_tree(labels, name, lazy))

    parts = [optax.masked(optax.set_to_zero(), frozen)] if any(r.frozen for r in rules.values()) else []
    if mask is not None:  # zero gradients (no clipping share, moments stay zero), and zero updates (no decay)
      parts.append(_frozen_zeroed(mask))
    # Parameters frozen for part of the run: zero gradients (no clipping share, no moments) and zero updates
    # (no weight decay) while frozen.
    timed = any(not (r.freezing.always or r.freezing.never) for r in rules.values())
    gate = [gate_by_step(freezing_tree(labels, rules))] if timed else []
    if opt.grad_clip_norm:
      parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    parts.append(optax.multi_transform({name: branch(name, r) for name, r in rules.items()}, labels))
    if mask is not None:
      parts.append(_frozen_zeroed(mask))
    return optax.chain(*gate, *parts, *gate)

  # inject_hyperparams passes each numeric keyword as a traced value; the names vary with the schedule's kind.
  chain.__signature__ = inspect.Signature(
      [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in hyper])
  return optax.inject_hyperparams(chain)(**{k: v if isinstance(v, (int, float)) else np.asarray(v)
                                            for k, v in hyper.items()})


def _label_tree(labels, name: str, lazy):
  """For the branch of label `name`: True where a parameter of that label matches optimizer.lazy_updates, MaskedNode
  where a parameter has another label (multi_transform hands the branch only its own leaves)."""
  paths = groups.map_paths(lambda p: p, labels)
  return jax.tree.map(lambda label, p: bool(lazy.search(p)) if label == name else optax.MaskedNode(), labels, paths)


def hyperparams(opt_state) -> dict:
  """The traced optimizer hyperparameters held in `opt_state`: learning_rate, weight_decay, the schedules'
  numbers and, with traced freezing, `trained`."""
  return dict(opt_state.hyperparams)


def trained(opt_state):
  """The traced 0/1 per parameter leaf of optimizer.traced_freezing (1 trains), or None without it."""
  return opt_state.hyperparams.get('trained')


def set_hyperparams(opt_state, **values):
  """`opt_state` with new values of traced hyperparameters (same shapes and dtypes: no recompilation)."""
  current = opt_state.hyperparams
  unknown = set(values) - set(current)
  if unknown:
    raise KeyError(f'not traced optimizer hyperparameters: {sorted(unknown)}; traced are {sorted(current)}')
  bad = [k for k, v in values.items() if np.shape(v) != np.shape(current[k])]
  if bad:
    raise ValueError('traced hyperparameters keep their shapes (a new shape would recompile): '
                     + ', '.join(f'{k} {np.shape(values[k])} for {np.shape(current[k])}' for k in bad))
  new = {k: jnp.asarray(v, jnp.asarray(current[k]).dtype) for k, v in values.items()}
  return opt_state._replace(hyperparams={**current, **new})
