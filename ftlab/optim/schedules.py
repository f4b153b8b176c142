"""Learning-rate schedules, as multipliers of the peak learning rate.

A schedule here returns a *factor* (1.0 = the peak), never a rate: the peak (`optimizer.learning_rate`) is a traced
value kept in the optimizer state, so changing it does not recompile; the rate at step t is `peak * schedule(t)`.
Every schedule is a jittable `count -> float32 scalar` built from optax schedule functions where optax has them.

Durations (`schedule.warmup`, `transition`, `every`, `timescale`, and each of `boundaries`) are written as
  an int, or '500' / '500 steps'  optimizer steps
  '3 epochs' / '1.5 epochs'      epochs, rounded to the nearest step
  '10%'                          a fraction of the run's total steps (for `transition`: of the decay phase)
and converted to steps by `parse_duration` once the run length is known.
"""
from __future__ import annotations

import math
import numbers
import re

import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ('constant', 'linear', 'cosine', 'exponential', 'step', 'piecewise', 'inverse_sqrt', 'one_cycle')
DURATION_FORMS = "an int >= 0, or a string like '500', '500 steps', '3 epochs', '1.5 epochs' or '10%'"
_DURATION_RE = re.compile(r'^\s*([-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*(steps?|epochs?|%)?\s*$', re.IGNORECASE)


class DurationError(ValueError):
  """A duration that cannot be read; the message quotes it and lists the accepted forms."""


def _split_duration(value) -> tuple[float, str]:
  """`value` -> (amount, unit) with unit in 'steps', 'epochs', '%'; raises DurationError."""
  bad = DurationError(f'{value!r} is not a duration; use {DURATION_FORMS}')
  if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
    raise bad  # bools are a mistake, python floats are ambiguous (steps? epochs?)
  if isinstance(value, numbers.Integral):
    amount, unit = float(value), 'steps'
  else:
    match = _DURATION_RE.match(value)
    if not match:
      raise bad
    amount, unit = float(match.group(1)), (match.group(2) or 'steps').lower()
    unit = unit if unit == '%' else unit.rstrip('s') + 's'
    if unit == 'steps' and not amount.is_integer():
      raise bad
  if amount < 0:
    raise DurationError(f'{value!r} is negative; a duration is {DURATION_FORMS}')
  return amount, unit


def parse_duration(value, *, steps_per_epoch: int, total_steps: int) -> int:
  """A duration in the config -> a number of optimizer steps (see the module docstring for the forms)."""
  amount, unit = _split_duration(value)
  if unit == 'steps':
    return int(amount)
  scaled = amount * (steps_per_epoch if unit == 'epochs' else total_steps / 100)
  return int(math.floor(scaled + 0.5))  # nearest, halves up


def schedule_defaults() -> ml_collections.ConfigDict:
  """The `config.schedule` section with its defaults (a constant factor of 1, no warm-up)."""
  return ml_collections.ConfigDict({
      'name': 'constant',  # one of SCHEDULES
      'warmup': '0',  # linear ramp from warmup_init to 1 over this duration, then the named schedule
      'warmup_init': 0.0,
      'end_factor': 0.0,  # linear, cosine: the factor at the last step
      'decay_rate': 0.1, 'transition': '100%', 'staircase': False,  # exponential: decay_rate ** (t / transition)
      'every': '1 epochs', 'gamma': 0.1,  # step: multiply by gamma every `every` (counted after warm-up)
      'boundaries': [], 'values': [],  # piecewise: values[i] between boundaries (absolute steps); one more value
      'timescale': '0',  # inverse_sqrt: sqrt(ts / max(step, ts)), ts = max(warmup, timescale, 1 step)
      'pct_start': 0.3, 'div_factor': 25.0, 'final_div_factor': 1e4,  # one_cycle (its own warm-up: no warmup)
  }, type_safe=False)


def check_schedule_config(sched) -> list[str]:
  """Static checks on `config.schedule` (no run length needed); returns problems as 'schedule.key: ...'."""
  p = []
  if sched.name not in SCHEDULES:
    p.append(f'schedule.name: {sched.name!r} is not a schedule; choose one of {", ".join(SCHEDULES)}')
  amounts = {}
  for key in ('warmup', 'transition', 'every', 'timescale'):
    try:
      amounts[key] = _split_duration(sched[key])[0]
    except DurationError as err:
      p.append(f'schedule.{key}: {err}')
  for i, b in enumerate(sched.boundaries):
    try:
      _split_duration(b)
    except DurationError as err:
      p.append(f'schedule.boundaries[{i}]: {err}')
  for key in ('transition', 'every'):
    if amounts.get(key) == 0:
      p.append(f'schedule.{key}: must be longer than 0 steps, got {sched[key]!r}')

  def need(ok, msg):
    if not ok:
      p.append(msg)

  values = sched['values']  # by key: `sched.values` is ConfigDict.values()
  need(sched.end_factor >= 0, f'schedule.end_factor: must be >= 0, got {sched.end_factor}')
  need(sched.decay_rate > 0, f'schedule.decay_rate: must be > 0, got {sched.decay_rate}')
  need(sched.gamma > 0, f'schedule.gamma: must be > 0, got {sched.gamma}')
  need(sched.name != 'piecewise' or len(values) == len(sched.boundaries) + 1,
       f'schedule.values: piecewise needs one more value than boundaries, got {len(values)} values '
       f'for {len(sched.boundaries)} boundaries')
  need(sched.name != 'one_cycle' or amounts.get('warmup', 0) == 0,
       f'schedule.warmup: one_cycle has its own warm-up (schedule.pct_start); set warmup to 0, got {sched.warmup!r}')
  need(0 < sched.pct_start < 1, f'schedule.pct_start: must be in (0, 1), got {sched.pct_start}')
  need(sched.div_factor > 0, f'schedule.div_factor: must be > 0, got {sched.div_factor}')
  need(sched.final_div_factor > 0, f'schedule.final_div_factor: must be > 0, got {sched.final_div_factor}')
  return p


def _inverse_sqrt(timescale: int, offset: int):
  """sqrt(ts / max(offset + t, ts)): 1 until step ts, then decaying as 1/sqrt(step)."""
  ts = float(timescale)
  return lambda t: jnp.sqrt(ts / jnp.maximum(jnp.asarray(t, jnp.float32) + offset, ts))


def build_schedule(sched, *, total_steps: int, steps_per_epoch: int):
  """`config.schedule` -> optax schedule `count -> float32 multiplier`; raises ValueError naming the key."""
  problems = check_schedule_config(sched)
  if problems:
    raise ValueError('; '.join(problems))

  def steps(key, value, total=total_steps):
    try:
      return parse_duration(value, steps_per_epoch=steps_per_epoch, total_steps=total)
    except DurationError as err:
      raise DurationError(f'schedule.{key}: {err}') from None

  warmup = steps('warmup', sched.warmup)
  if warmup > total_steps:
    raise ValueError(f'schedule.warmup: {sched.warmup!r} is {warmup} steps, longer than the run ({total_steps} steps)')
  decay = max(total_steps - warmup, 1)  # length of the phase after warm-up
  name = sched.name
  if name == 'constant':
    main = optax.constant_schedule(1.0)
  elif name == 'linear':
    main = optax.linear_schedule(1.0, sched.end_factor, decay)
  elif name == 'cosine':
    main = optax.cosine_decay_schedule(1.0, decay, alpha=sched.end_factor)
  elif name == 'exponential':
    transition = steps('transition', sched.transition, total=decay)
    if transition < 1:
      raise ValueError(f'schedule.transition: {sched.transition!r} is less than one step')
    main = optax.exponential_decay(1.0, transition, sched.decay_rate, staircase=sched.staircase)
  elif name == 'step':
    every = steps('every', sched.every)
    if every < 1:
      raise ValueError(f'schedule.every: {sched.every!r} is less than one step')
    main = optax.exponential_decay(1.0, every, sched.gamma, staircase=True)
  elif name == 'piecewise':
    bounds = [steps(f'boundaries[{i}]', b) for i, b in enumerate(sched.boundaries)]
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
      raise ValueError(f'schedule.boundaries: must be increasing once converted to steps, got {bounds} '
                       f'from {list(sched.boundaries)}')
    values = sched['values']  # by key: `sched.values` is ConfigDict.values()
    pieces = optax.join_schedules([optax.constant_schedule(float(v)) for v in values], bounds)
    main = lambda t: pieces(t + warmup)  # boundaries are absolute steps of the run
  elif name == 'inverse_sqrt':
    timescale = max(warmup, steps('timescale', sched.timescale), 1)
    main = _inverse_sqrt(timescale, offset=warmup)  # absolute step: 1 at the end of warm-up
  else:  # one_cycle (check_schedule_config has ruled out a warm-up)
    main = optax.cosine_onecycle_schedule(total_steps, 1.0, sched.pct_start, sched.div_factor,
                                          sched.final_div_factor)
  if warmup > 0:
    main = optax.join_schedules([optax.linear_schedule(sched.warmup_init, 1.0, warmup), main], [warmup])
  return lambda count: jnp.asarray(main(count), jnp.float32)
