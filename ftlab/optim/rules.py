"""The optimizer's rules: config.optimizer's freeze regex, groups and layer-wise decay resolved per parameter.

Each parameter gets a label, and each label a Rule (learning-rate and weight-decay multipliers, when it is frozen,
schedule overrides). Freezing over time (LP-FT, gradual unfreezing, a group frozen for a step range) is a set of
step ranges per label, tested against the traced step inside the compiled step, so phase changes never recompile.
The builder makes one optax branch per label, `frozen_masks` are what the train step keeps bit-identical, and
`describe` is the table printed at the start of a run and saved as <workdir>/optimizer_plan.txt.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ftlab.optim import schedules
from ftlab.optim.groups import assign, map_paths, param_paths, path_str


SETTINGS = {'lr_mult': (int, float), 'wd_mult': (int, float), 'frozen': (bool,), 'schedule': (dict,),
            'frozen_steps': (list, tuple)}
ALWAYS = ((0, sys.maxsize),)  # the frozen ranges of a parameter frozen for the whole run


@dataclasses.dataclass(frozen=True)
class Freezing:
  """When a parameter is frozen: half-open step ranges [start, end). A plain object, not a pytree node, so a tree
  of them can sit beside the parameters as a static mask."""
  ranges: tuple = ()

  @property
  def always(self) -> bool:
    return self.ranges == ALWAYS

  @property
  def never(self) -> bool:
    return not self.ranges

  def trained_at(self, step) -> jax.Array:
    """Whether the parameter trains at `step`, a traced or concrete step count."""
    if self.always:  # (its end, sys.maxsize, is no int32: a traced comparison with it would overflow)
      return jnp.zeros((), bool)
    frozen = jnp.zeros((), bool)
    for start, end in self.ranges:
      frozen = frozen | ((step >= start) & (step < min(end, np.iinfo(np.int32).max)))
    return ~frozen

  def describe(self) -> str:
    if self.never:
      return 'trained'
    if self.always:
      return 'frozen for the whole run'
    return 'frozen at steps ' + ', '.join(f'[{a}, {b})' for a, b in self.ranges) + ', trained otherwise'


@dataclasses.dataclass(frozen=True)
class Rule:
  """What the optimizer does to one label's parameters: a group's settings at one layer."""
  group: str  # the group's name in optimizer_plan.txt: 'freeze', 'groups[0]', ... or 'all'
  pattern: str
  lr_mult: float = 1.0  # the group's multiplier times the layer-wise decay factor
  wd_mult: float = 1.0
  freezing: Freezing = Freezing()
  schedule: tuple = ()  # (key, value) overrides of config.schedule for this group
  layer: int | None = None  # with layer-wise settings: 0 = embeddings ... L = head

  @property
  def frozen(self) -> bool:
    """Frozen for the whole run: such parameters keep no optimizer state at all."""
    return self.freezing.always


def group_specs(opt, lora=None) -> list[tuple[str, str, dict]]:
  """Ordered (name, pattern, settings) from optimizer.freeze (first) and optimizer.groups; 'all' if no groups.
  With LoRA on (config.lora given, target set): the adapters, lora.train, then the rest of the base, frozen."""
  specs = [('freeze', opt.freeze, {'frozen': True})] if opt.freeze else []
  if lora is not None and lora.target:
    specs += [('lora adapters', '^lora/', {})] + ([('lora.train', lora.train, {})] if lora.train else [])
    return specs + [('frozen base', '', {'frozen': True})]
  specs += [(f'groups[{i}]', pattern, dict(settings)) for i, (pattern, settings) in enumerate(opt.groups)]
  return specs if opt.groups else specs + [('all', '', {})]


def check_groups_config(groups_value, schedule_keys) -> list[str]:
  """Static problems of optimizer.groups: shape, regexes, setting names, types and ranges."""
  problems = []
  if not isinstance(groups_value, (list, tuple)):
    return [f'optimizer.groups: expected a list of (regex, settings) pairs, got {groups_value!r}']
  for i, item in enumerate(groups_value):
    key = f'optimizer.groups[{i}]'
    if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], dict)):
      problems.append(f"{key}: expected (regex, settings), e.g. ('^head/', {{'lr_mult': 10.0}}), got {item!r}")
      continue
    pattern, settings = item
    try:
      re.compile(pattern)
    except re.error as err:
      problems.append(f'{key}: {pattern!r} is not a valid regex ({err})')
    for name, value in settings.items():
      if name not in SETTINGS:
        problems.append(f'{key}: unknown setting {name!r}; use {", ".join(SETTINGS)}')
      elif not isinstance(value, SETTINGS[name]) or (name != 'frozen' and isinstance(value, bool)):
        problems.append(f'{key}: {name} must be {"/".join(t.__name__ for t in SETTINGS[name])}, got {value!r}')
      elif name == 'lr_mult' and value <= 0:
        problems.append(f'{key}: lr_mult must be > 0 (to stop training a group, set frozen), got {value}')
      elif name == 'wd_mult' and value < 0:
        problems.append(f'{key}: wd_mult must be >= 0, got {value}')
      elif name == 'schedule':
        problems += [f'{key}: schedule has no key {k!r}' for k in value if k not in schedule_keys]
      elif name == 'frozen_steps':
        for r in value:
          if not (isinstance(r, (list, tuple)) and len(r) == 2):
            problems.append(f"{key}: frozen_steps holds (start, end) pairs, e.g. [(0, '2 epochs')], got {r!r}")
            continue
          for d in r:
            try:
              schedules.parse_duration(d, steps_per_epoch=1, total_steps=1)
            except schedules.DurationError as err:
              problems.append(f'{key}: frozen_steps: {err}')
  return problems


def layer_index(path: str, *, layer_pattern: str, head_pattern: str) -> int | None:
  """A parameter's layer for layer-wise decay: None for the head, index + 1 where `layer_pattern`'s first group
  matches an index, 0 otherwise (embeddings and anything below the first layer)."""
  if head_pattern and re.search(head_pattern, path):
    return None
  match = re.search(layer_pattern, path)
  return int(match.group(1)) + 1 if match else 0


def _merge(ranges) -> tuple:
  """Step ranges sorted, with overlapping or touching ones joined and empty ones dropped."""
  out = []
  for a, b in sorted(r for r in ranges if r[1] > r[0]):
    if out and a <= out[-1][1]:
      out[-1] = (out[-1][0], max(out[-1][1], b))
    else:
      out.append((a, b))
  return tuple(out)


def resolve(opt, params, *, steps_per_epoch: int = 1, total_steps: int = 1, lora=None
            ) -> tuple[Any, dict[str, Rule]]:
  """(a pytree of labels like `params`, {label: Rule}) for config.optimizer; raises GroupError naming patterns
  that match nothing and parameters left uncovered. The run length turns the durations of LP-FT, gradual
  unfreezing and frozen_steps into steps; `lora` is config.lora."""
  return _resolve(opt, params, group_specs(opt, lora), steps_per_epoch=steps_per_epoch, total_steps=total_steps)


def resolve_traced_freezing(opt, params, *, steps_per_epoch: int = 1, total_steps: int = 1, lora=None
                            ) -> tuple[Any, dict[str, Rule], Any]:
  """The rules of optimizer.traced_freezing: (labels, {label: Rule}, a tree of bools like `params`, True where the
  parameter trains). Which parameters are frozen for the whole run (optimizer.freeze, a group's `frozen`, LoRA's
  frozen base) is taken out of the labels and rules and given as the bools, which the builder makes a traced 0/1
  per parameter; so runs that differ only in it have the same labels and rules. The labels are those of the groups
  with `freeze` left out ('freeze' labels the parameters only optimizer.freeze covers). Freezing over time
  (frozen_steps, LP-FT, gradual unfreezing) stays in the rules. Raises GroupError as `resolve` does."""
  labels, rules = resolve(opt, params, steps_per_epoch=steps_per_epoch, total_steps=total_steps, lora=lora)
  trained = jax.tree.map(lambda name: not rules[name].frozen, labels)
  specs = [(name, pattern, {k: v for k, v in settings.items() if k != 'frozen'})
           for name, pattern, settings in group_specs(opt, lora) if name != 'freeze']
  if any(not any(re.search(pattern, p) for _, pattern, _ in specs) for p in param_paths(params)):
    specs.append(('freeze', '', {}))
  labels, rules = _resolve(opt, params, specs, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  return labels, rules, trained


def _resolve(opt, params, specs, *, steps_per_epoch: int, total_steps: int) -> tuple[Any, dict[str, Rule]]:
  steps = functools.partial(schedules.parse_duration, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  group_of = assign(params, [(name, pattern) for name, pattern, _ in specs], origin='optimizer.groups')
  by_name = {name: (pattern, settings) for name, pattern, settings in specs}
  decay = opt.layer_decay
  layers, top = {}, 0  # layer of each parameter path, and the head's (L), when a layer-wise setting is on
  if decay != 1.0 or opt.unfreeze_every or opt.lp_ft:
    layers = {p: layer_index(p, layer_pattern=opt.layer_pattern, head_pattern=opt.head_pattern)
              for p in param_paths(params)}
    top = max([l for l in layers.values() if l is not None], default=0) + 1
    layers = {p: top if l is None else l for p, l in layers.items()}
  lp_ft = steps(opt.lp_ft) if opt.lp_ft else 0
  every = steps(opt.unfreeze_every) if opt.unfreeze_every else 0
  rules = {}

  def label(key_path, group):
    path = path_str(key_path)
    pattern, settings = by_name[group]
    layer = layers.get(path)
    ranges = list(ALWAYS) if settings.get('frozen') else []
    ranges += [(steps(a), steps(b)) for a, b in settings.get('frozen_steps', [])]
    if layer is not None and layer < top:  # LP-FT freezes all but the head; ULMFiT unfreezes from the top down
      ranges += [(0, lp_ft), (0, (top - layer) * every)]
    lr_mult = float(settings.get('lr_mult', 1.0)) * (decay ** (top - layer) if layer is not None else 1.0)
    rule = Rule(group=group, pattern=pattern, lr_mult=lr_mult, wd_mult=float(settings.get('wd_mult', 1.0)),
                freezing=Freezing(_merge(ranges)), schedule=tuple(sorted(settings.get('schedule', {}).items())),
                layer=layer)
    name = group if layer is None else f'{group}@layer{layer}'
    rules[name] = rule
    return name

  labels = jax.tree_util.tree_map_with_path(label, group_of)
  return labels, rules


def freezing_tree(labels, rules: dict[str, Rule]):
  """A tree like the parameters holding each one's Freezing: the static mask the train step applies."""
  return jax.tree.map(lambda name: rules[name].freezing, labels)


def module_freezing(labels, rules: dict[str, Rule]) -> dict[str, Freezing]:
  """{module path: Freezing} for modules whose parameters all freeze alike: their model state (batch-norm
  statistics, at 'module/mean') then stays fixed exactly when their parameters do."""
  by_module = {}
  for kp, name in jax.tree_util.tree_flatten_with_path(labels)[0]:
    by_module.setdefault(path_str(kp).rpartition('/')[0], set()).add(rules[name].freezing)
  return {module: next(iter(f)) for module, f in by_module.items() if len(f) == 1}


def frozen_masks(labels, rules, model_state, *, trained=None) -> dict:
  """The static masks train_step applies, trees of Freezing: {'params': like the labels, 'model_state': like
  model_state}. A model-state entry (batch-norm statistics) freezes exactly when all parameters of its module do;
  otherwise it never does.

  With traced freezing (`trained` given, see resolve_traced_freezing) also 'traced': for each parameter leaf
  and each model-state leaf (in tree order), the indices of the parameter leaves in the traced `trained` of which
  one must train for it to change: the leaf itself, or every parameter of the model-state entry's module."""
  modules = module_freezing(labels, rules)
  state_mask = lambda tree: map_paths(
      lambda path: modules.get(path.rpartition('/')[0], Freezing()), tree)
  masks = {'params': freezing_tree(labels, rules),
           'model_state': {name: state_mask(tree) for name, tree in model_state.items()}}
  if trained is not None:
    of_module = {}
    for i, path in enumerate(param_paths(labels)):
      of_module.setdefault(path.rpartition('/')[0], []).append(i)
    state_paths = [path.partition('/')[2] for path in param_paths(model_state)]  # without the collection
    masks['traced'] = {'params': tuple((i,) for i in range(len(jax.tree.leaves(labels)))),
                       'model_state': tuple(tuple(of_module.get(p.rpartition('/')[0], ())) for p in state_paths)}
  return masks


def describe(labels, rules: dict[str, Rule], params) -> str:
  """The table of optimizer_plan.txt: one row per label with its pattern, parameter count and settings; the
  trainable total."""
  counts = {name: 0 for name in rules}
  for lab, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(params)):
    counts[lab] += int(np.prod(leaf.shape))
  head = f'{"group":<24} {"pattern":<22} {"params":>10} {"lr mult":>9} {"wd mult":>8} {"schedule":<18} status'
  lines = [head, '-' * len(head)]
  for name, r in rules.items():
    sched = ', '.join(f'{k}={v}' for k, v in r.schedule) or 'run schedule'
    status = r.freezing.describe()
    lines.append(f'{name:<24} {r.pattern or "(everything else)":<22} {counts[name]:>10,} {r.lr_mult:>9.4g} '
                 f'{r.wd_mult:>8.4g} {sched:<18} {status}')
  trainable = sum(c for name, c in counts.items() if not rules[name].frozen)
  total = sum(counts.values())
  lines.append(f'trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.1f}%)')
  return '\n'.join(lines)
