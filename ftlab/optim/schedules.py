"""Learning-rate schedules, as multipliers of the peak learning rate.

A schedule here returns a *factor* (1.0 = the peak), never a rate: the peak (`optimizer.learning_rate`) is a traced
value kept in the optimizer state, so changing it does not recompile; the rate at step t is `peak * schedule(t)`.
The schedule's own numbers (warm-up length, end factor, decay rate, boundaries...) are traced too: `resolve` turns
config.schedule into them on the host, and `schedule_fn(name)` is a jittable `(values, count) -> float32 scalar`
that reads them, with the float operations XLA compiled the optax schedule it follows to when those numbers were
constants (so traced runs keep the bits of the former static ones, but where XLA fuses a constant differently, as
for a linear decay to 0 after a warm-up: the last bit of some factors). Only the schedule's name, `staircase` and
the lengths of its lists shape the compiled program.

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
import numpy as np

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


# The numbers each schedule reads at run time, besides the warm-up's ('warmup' steps and 'warmup_span'), by the
# schedule's name. They are traced (held in the optimizer state by the builder), so runs that differ only in them
# share one compiled step; the name, `staircase` and the lengths of `boundaries` / `values` shape the program.
TRACED_VALUES = {
    'constant': (),
    'linear': ('decay_steps', 'end_factor', 'end_span'),
    'cosine': ('decay_steps', 'end_factor', 'end_span'),
    'exponential': ('transition', 'decay_rate'),
    'step': ('every', 'gamma'),
    'piecewise': ('boundaries', 'values'),
    'inverse_sqrt': ('timescale',),
    'one_cycle': ('peak_step', 'start_factor', 'div_factor', 'end_scale'),
}
# config.schedule keys that shape the compiled program (with the lengths of LIST_KEYS); every other key only
# reaches the traced numbers (see ftlab/traced.py).
SHAPING_KEYS = ('name', 'staircase')
LIST_KEYS = ('boundaries', 'values')


def resolve(sched, *, total_steps: int, steps_per_epoch: int) -> dict[str, np.ndarray]:
  """`config.schedule` -> the numbers its schedule reads at run time (see TRACED_VALUES), resolved on the host:
  durations in steps (int32), factors as float32. Derived constants (`warmup_span` = warmup_init - 1, `end_span` =
  1 - end_factor, one_cycle's factors) are computed in float64 and rounded once, as optax's schedules computed them
  from Python floats. Raises ValueError naming the key."""
  problems = check_schedule_config(sched)
  if problems:
    raise ValueError('; '.join(problems))

  def steps(key, value, total=total_steps):
    try:
      return parse_duration(value, steps_per_epoch=steps_per_epoch, total_steps=total)
    except DurationError as err:
      raise DurationError(f'schedule.{key}: {err}') from None

  i32, f32 = np.int32, np.float32
  warmup = steps('warmup', sched.warmup)
  if warmup > total_steps:
    raise ValueError(f'schedule.warmup: {sched.warmup!r} is {warmup} steps, longer than the run ({total_steps} steps)')
  decay = max(total_steps - warmup, 1)  # length of the phase after warm-up
  out = {'warmup': i32(warmup), 'warmup_span': f32(sched.warmup_init - 1.0)}
  name = sched.name
  if name in ('linear', 'cosine'):
    out.update(decay_steps=i32(decay), end_factor=f32(sched.end_factor), end_span=f32(1.0 - sched.end_factor))
  elif name == 'exponential':
    transition = steps('transition', sched.transition, total=decay)
    if transition < 1:
      raise ValueError(f'schedule.transition: {sched.transition!r} is less than one step')
    out.update(transition=i32(transition), decay_rate=f32(sched.decay_rate))
  elif name == 'step':
    every = steps('every', sched.every)
    if every < 1:
      raise ValueError(f'schedule.every: {sched.every!r} is less than one step')
    out.update(every=i32(every), gamma=f32(sched.gamma))
  elif name == 'piecewise':
    bounds = [steps(f'boundaries[{i}]', b) for i, b in enumerate(sched.boundaries)]
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
      raise ValueError(f'schedule.boundaries: must be increasing once converted to steps, got {bounds} '
                       f'from {list(sched.boundaries)}')
    values = sched['values']  # by key: `sched.values` is ConfigDict.values()
    out.update(boundaries=np.asarray(bounds, np.int32).reshape(-1),
               values=np.asarray([float(v) for v in values], np.float32))
  elif name == 'inverse_sqrt':
    out.update(timescale=i32(max(warmup, steps('timescale', sched.timescale), 1)))
  elif name == 'one_cycle':  # check_schedule_config has ruled out a warm-up
    div, final = sched.div_factor, sched.final_div_factor
    out.update(peak_step=i32(int(sched.pct_start * total_steps)), start_factor=f32(1.0 / div), div_factor=f32(div),
               end_scale=f32(1.0 / (div * final)))
  return out


def _reciprocal(steps):
  """1 / steps in float32. A division by a compile-time constant is compiled by XLA as a multiplication by its
  float32 reciprocal; the traced schedules multiply by the same reciprocal, so they keep the static bits."""
  return jnp.float32(1.0) / jnp.asarray(steps).astype(jnp.float32)


def _ramp(count, steps, span, end):
  """optax.linear_schedule(end + span, end, steps) at `count`, for steps > 0."""
  count = jnp.clip(count, 0, steps)
  frac = 1 - count.astype(jnp.float32) * _reciprocal(steps)
  return span * frac + end


def _cosine(count, steps, span, end):
  """optax.cosine_decay_schedule(1.0, steps, alpha=end) at `count`; span = 1 - end."""
  count = jnp.minimum(count, jnp.asarray(steps).astype(jnp.float32))
  # pi * count / steps, as XLA compiles it with constant steps: count * (pi * (1 / steps)), the constants folded
  cosine_decay = 0.5 * (1 + jnp.cos(count * (jnp.float32(jnp.pi) * _reciprocal(steps))))
  return 1.0 * (span * cosine_decay ** 1.0 + end)


def _exponential(count, steps, rate, staircase: bool):
  """optax.exponential_decay(1.0, steps, rate, staircase=staircase) at `count`."""
  p = count.astype(jnp.float32) * _reciprocal(steps)
  if staircase:
    p = jnp.floor(p)
  return jnp.where(count <= 0, 1.0, 1.0 * jnp.power(rate, p))


def _one_cycle(count, v, total_steps: int):
  """optax.cosine_onecycle_schedule(total_steps, 1.0, pct_start, div_factor, final_div_factor) at `count`."""
  bounds = jnp.stack([jnp.zeros((), jnp.int32), jnp.asarray(v['peak_step'], jnp.int32), jnp.int32(total_steps)])
  values = jnp.cumprod(jnp.stack([jnp.asarray(v[k], jnp.float32) for k in ('start_factor', 'div_factor', 'end_scale')]))
  interval_sizes = jnp.maximum(bounds[1:] - bounds[:-1], 1)
  indicator = jnp.logical_and(bounds[:-1] <= count, count < bounds[1:])
  pct = (count - bounds[:-1]) * _reciprocal(interval_sizes)
  start, end = values[:-1], values[1:]
  interp = end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
  return indicator.dot(interp) + (bounds[-1] <= count) * values[-1]


def schedule_fn(name: str, *, staircase: bool = False, total_steps: int):
  """The schedule `name` as a function (values, count) -> float32 multiplier, where `values` holds the numbers
  `resolve` gives (numpy constants, or traced arrays read from the optimizer state)."""
  if name not in SCHEDULES:
    raise ValueError(f'schedule.name: {name!r} is not a schedule; choose one of {", ".join(SCHEDULES)}')

  def main(v, t):  # t: steps since the end of the warm-up
    if name == 'constant':
      return jnp.float32(1.0)
    if name == 'linear':
      return _ramp(t, v['decay_steps'], v['end_span'], v['end_factor'])
    if name == 'cosine':
      return _cosine(t, v['decay_steps'], v['end_span'], v['end_factor'])
    if name == 'exponential':
      return _exponential(t, v['transition'], v['decay_rate'], staircase)
    if name == 'step':
      return _exponential(t, v['every'], v['gamma'], True)
    if name == 'piecewise':  # boundaries are absolute steps of the run
      step, values = t + v['warmup'], jnp.asarray(v['values'])
      out = values[0]
      for i in range(values.shape[0] - 1):
        out = jnp.where(step < v['boundaries'][i], out, values[i + 1])
      return out
    if name == 'inverse_sqrt':  # sqrt(ts / max(step, ts)): 1 until step ts, then decaying as 1/sqrt(step)
      ts = jnp.asarray(v['timescale']).astype(jnp.float32)
      return jnp.sqrt(ts / jnp.maximum(t.astype(jnp.float32) + jnp.asarray(v['warmup']).astype(jnp.float32), ts))
    return _one_cycle(t, v, total_steps)

  def schedule(values, count):
    count = jnp.asarray(count, jnp.int32)
    warmup = values['warmup']
    # optax.join_schedules([linear ramp from warmup_init to 1, main], [warmup]); with no warm-up the ramp (over at
    # least one step, so finite) is never selected.
    ramp = _ramp(count, jnp.maximum(warmup, 1), values['warmup_span'], 1.0)
    out = jnp.where(count < warmup, ramp, main(values, count - warmup))
    return jnp.asarray(out, jnp.float32)

  return schedule


def build_schedule(sched, *, total_steps: int, steps_per_epoch: int):
  """`config.schedule` -> optax schedule `count -> float32 multiplier`; raises ValueError naming the key. Its
  numbers are constants here; the optimizer reads the same ones from its state (see `resolve`, `schedule_fn`)."""
  values = resolve(sched, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  fn = schedule_fn(sched.name, staircase=bool(sched.staircase), total_steps=total_steps)
  return lambda count: fn(values, count)
