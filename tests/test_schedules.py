"""Schedules against their closed forms, duration parsing, static config checks, and jit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.optim import schedules


def make(total_steps=100, steps_per_epoch=10, **fields):
  sched = schedules.schedule_defaults()
  for key, value in fields.items():
    sched[key] = value
  return schedules.build_schedule(sched, total_steps=total_steps, steps_per_epoch=steps_per_epoch)


def check(schedule, expected: dict, atol=0.0):
  steps = sorted(expected)
  got = [float(schedule(t)) for t in steps]
  np.testing.assert_allclose(got, [expected[t] for t in steps], rtol=1e-6, atol=atol)


def test_constant_with_warmup():
  s = make(name='constant', warmup=10, warmup_init=0.1)
  check(s, {0: 0.1, 5: 0.1 + 0.9 * 0.5, 10: 1.0, 50: 1.0, 100: 1.0})


def test_constant_without_warmup_is_one():
  check(make(), {0: 1.0, 7: 1.0, 100: 1.0})


def test_linear_decays_over_remaining_steps():
  s = make(name='linear', warmup='2 epochs', end_factor=0.1)  # warm-up 20 steps, decay over 80
  lin = lambda t: 1.0 + (0.1 - 1.0) * min((t - 20) / 80, 1.0)
  check(s, {0: 0.0, 10: 0.5, **{t: lin(t) for t in (20, 40, 60, 99, 100, 150)}})


@pytest.mark.parametrize('end_factor', [0.0, 0.2])
def test_cosine(end_factor):
  s = make(name='cosine', end_factor=end_factor)
  cos = lambda t: end_factor + (1 - end_factor) * 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))
  # atol: near the end 1 + cos(.) cancels in float32 (absolute error ~1e-8 on a value ~2e-4)
  check(s, {t: cos(t) for t in (0, 25, 50, 75, 99, 100, 130)}, atol=1e-7)


@pytest.mark.parametrize('staircase', [False, True])
def test_exponential(staircase):
  # warm-up 10 steps; '50%' of the 90-step decay phase = 45 steps per factor of decay_rate
  s = make(name='exponential', warmup=10, decay_rate=0.5, transition='50%', staircase=staircase)
  p = (lambda t: math.floor((t - 10) / 45)) if staircase else (lambda t: (t - 10) / 45)
  check(s, {5: 0.5, **{t: 0.5 ** p(t) for t in (10, 30, 55, 56, 80, 100)}})


def test_exponential_default_transition_is_whole_decay_phase():
  s = make(name='exponential', warmup=20, decay_rate=0.01)
  check(s, {t: 0.01 ** ((t - 20) / 80) for t in (20, 60, 100)})


def test_step_counts_from_end_of_warmup():
  s = make(name='step', warmup=5, every='2 epochs', gamma=0.5)  # every 20 steps
  check(s, {0: 0.0, **{t: 0.5 ** math.floor((t - 5) / 20) for t in (5, 24, 25, 44, 45, 99)}})


def test_piecewise_boundaries_are_absolute():
  s = make(name='piecewise', warmup=5, boundaries=['1 epochs', 30, '50%'], values=[1.0, 0.5, 0.0, 0.25])
  check(s, {0: 0.0, 4: 0.8, 5: 1.0, 9: 1.0, 10: 0.5, 29: 0.5, 30: 0.0, 49: 0.0, 50: 0.25, 99: 0.25})


def test_piecewise_boundaries_must_increase():
  with pytest.raises(ValueError, match='schedule.boundaries'):
    make(name='piecewise', boundaries=['5 epochs', 30], values=[1.0, 0.5, 0.1])  # 50 then 30


def test_inverse_sqrt_after_warmup():
  s = make(total_steps=1000, name='inverse_sqrt', warmup=16)
  check(s, {0: 0.0, 8: 0.5, **{t: math.sqrt(16 / t) for t in (16, 64, 100, 999)}})


def test_inverse_sqrt_timescale():
  check(make(name='inverse_sqrt', timescale=25), {0: 1.0, 25: 1.0, 100: 0.5})
  check(make(name='inverse_sqrt'), {0: 1.0, 1: 1.0, 4: 0.5, 16: 0.25})  # timescale of 1 step


def test_one_cycle():
  s = make(total_steps=100, name='one_cycle', pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
  start, end = 1 / 25, 1 / (25 * 1e4)
  anneal = lambda a, b, frac: b + (a - b) * 0.5 * (1 + math.cos(math.pi * frac))
  check(s, {0: start, 15: anneal(start, 1.0, 0.5), 30: 1.0, 65: anneal(1.0, end, 0.5), 100: end})


@pytest.mark.parametrize('fields', [
    dict(name='constant', warmup=10), dict(name='linear', warmup=10), dict(name='cosine', end_factor=0.1),
    dict(name='exponential', staircase=True, transition=30), dict(name='step', every=20),
    dict(name='piecewise', warmup=5, boundaries=[20, 60], values=[1.0, 0.3, 0.1]),
    dict(name='inverse_sqrt', warmup=10), dict(name='one_cycle'),
])
def test_jit_matches_eager(fields):
  s = make(**fields)
  jitted = jax.jit(s)
  for k in (0, 3, 10, 21, 59, 60, 100):
    out = jitted(jnp.int32(k))
    assert out.dtype == jnp.float32 and out.shape == ()
    np.testing.assert_allclose(float(out), float(s(k)), rtol=1e-6)


@pytest.mark.parametrize('value, expected', [
    (500, 500), ('500', 500), ('500 steps', 500), ('500steps', 500), (' 1 step ', 1), ('0', 0),
    ('3 epochs', 30), ('3epochs', 30), ('1 epoch', 10), ('1.5 epochs', 15), ('0.25 epochs', 3),
    ('10%', 20), (' 2.5 % ', 5), ('100%', 200),
])
def test_parse_duration(value, expected):
  assert schedules.parse_duration(value, steps_per_epoch=10, total_steps=200) == expected


def test_parse_duration_rounds_to_nearest():
  assert schedules.parse_duration('1.5 epochs', steps_per_epoch=7, total_steps=1) == 11  # 10.5
  assert schedules.parse_duration('10%', steps_per_epoch=1, total_steps=94) == 9  # 9.4


@pytest.mark.parametrize('value', [-1, '-5', '-2 epochs', True, 1.5, 2.0, None, '', '3 weeks', '1.5 steps',
                                   'epochs', '10 %%'])
def test_parse_duration_rejects(value):
  with pytest.raises(schedules.DurationError) as err:
    schedules.parse_duration(value, steps_per_epoch=10, total_steps=100)
  message = str(err.value)
  assert repr(value) in message
  assert 'epochs' in message and '%' in message  # lists the accepted forms


def test_check_defaults_are_clean():
  assert schedules.check_schedule_config(schedules.schedule_defaults()) == []


def _problems(**fields):
  sched = schedules.schedule_defaults()
  for key, value in fields.items():
    sched[key] = value
  return schedules.check_schedule_config(sched)


def test_check_bad_name():
  (problem,) = _problems(name='cosin')
  assert problem.startswith('schedule.name:') and "'cosin'" in problem
  assert all(name in problem for name in schedules.SCHEDULES)


def test_check_one_cycle_with_warmup():
  (problem,) = _problems(name='one_cycle', warmup='10%')
  assert problem.startswith('schedule.warmup:')
  assert _problems(name='one_cycle', warmup='0 steps') == []


def test_check_piecewise_lengths():
  (problem,) = _problems(name='piecewise', boundaries=[10, 20], values=[1.0, 0.5])
  assert problem.startswith('schedule.values:')
  assert _problems(name='piecewise', boundaries=[10, 20], values=[1.0, 0.5, 0.1]) == []


def test_check_ranges_and_durations():
  problems = _problems(every='2 weeks', boundaries=[10, 'x'], end_factor=-0.1, decay_rate=0.0, gamma=-1.0,
                       pct_start=1.0, div_factor=0.0, final_div_factor=-1.0)
  keys = sorted(p.split(':')[0] for p in problems)
  assert keys == sorted(['schedule.every', 'schedule.boundaries[1]', 'schedule.end_factor', 'schedule.decay_rate',
                         'schedule.gamma', 'schedule.pct_start', 'schedule.div_factor',
                         'schedule.final_div_factor'])
  assert any("'2 weeks'" in p for p in problems)


def test_build_reports_key_of_bad_input():
  with pytest.raises(ValueError, match='schedule.name'):
    make(name='cosin')
  with pytest.raises(ValueError, match='schedule.warmup'):
    make(warmup=500)
