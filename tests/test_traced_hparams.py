"""Traced schedule numbers and traced freezing (optimizer.traced_freezing): trials that differ only in them share one
compiled train step, sequential or vectorised, and end where the static formulation ends."""
import functools
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_config

from ftlab import checkpoints, compiled, data, steps, traced
from ftlab.initial_state import initial_state
from ftlab.optim import builder, groups, rules as optim_rules, schedules
from ftlab.plan import make_plan
from ftlab.sweeps import runner


def _optax_schedule(sched, *, total_steps, steps_per_epoch):
  """The static formulation: config.schedule as optax's schedule functions with its numbers as constants."""
  steps = functools.partial(schedules.parse_duration, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  warmup = steps(sched.warmup)
  decay = max(total_steps - warmup, 1)
  if sched.name == 'linear':
    main = optax.linear_schedule(1.0, sched.end_factor, decay)
  elif sched.name == 'cosine':
    main = optax.cosine_decay_schedule(1.0, decay, alpha=sched.end_factor)
  elif sched.name == 'exponential':
    transition = schedules.parse_duration(sched.transition, steps_per_epoch=steps_per_epoch, total_steps=decay)
    main = optax.exponential_decay(1.0, transition, sched.decay_rate, staircase=sched.staircase)
  elif sched.name == 'step':
    main = optax.exponential_decay(1.0, steps(sched.every), sched.gamma, staircase=True)
  elif sched.name == 'piecewise':
    pieces = optax.join_schedules([optax.constant_schedule(float(v)) for v in sched['values']],
                                  [steps(b) for b in sched.boundaries])
    main = lambda t: pieces(t + warmup)
  else:
    assert sched.name == 'one_cycle'
    main = optax.cosine_onecycle_schedule(total_steps, 1.0, sched.pct_start, sched.div_factor,
                                          sched.final_div_factor)
  if warmup:
    main = optax.join_schedules([optax.linear_schedule(sched.warmup_init, 1.0, warmup), main], [warmup])
  return lambda count: jnp.asarray(main(count), jnp.float32)


# (a run's schedule, another of the same kind and list lengths)
SCHEDULES = [
    (dict(name='cosine', warmup='3 steps', end_factor=0.1), dict(name='cosine', warmup=0, end_factor=0.0)),
    (dict(name='linear', warmup=0, end_factor=0.2), dict(name='linear', warmup=5, warmup_init=0.1, end_factor=0.6)),
    (dict(name='exponential', warmup=2, decay_rate=0.3, transition='25%', staircase=True),
     dict(name='exponential', warmup=0, decay_rate=0.7, transition=3, staircase=True)),
    (dict(name='piecewise', warmup=2, boundaries=[5, '1 epochs'], values=[1.0, 0.3, 0.1]),
     dict(name='piecewise', warmup=0, boundaries=['10%', 12], values=[0.5, 1.0, 0.25])),
    (dict(name='one_cycle', warmup=0, pct_start=0.25),
     dict(name='one_cycle', warmup=0, pct_start=0.5, div_factor=10.0, final_div_factor=100.0)),
]


@pytest.mark.parametrize('fields, other', SCHEDULES, ids=[f['name'] for f, _ in SCHEDULES])
def test_traced_schedule_numbers_match_the_static_schedule_and_change_without_recompiling(monkeypatch, fields,
                                                                                       other):
  total, spe = 20, 8
  params = {'dense': {'kernel': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'bias': jnp.zeros(4)}}
  loss = lambda p: jnp.sum((p['dense']['kernel'] - 0.5) ** 2) + jnp.sum(p['dense']['bias'] ** 2 - p['dense']['bias'])

  def config_of(f):
    return small_config(**{f'schedule__{k}': v for k, v in f.items()})

  def build(config, static=False):
    labels, rules = optim_rules.resolve(config.optimizer, params, steps_per_epoch=spe, total_steps=total)
    with monkeypatch.context() as m:
      if static:  # the optimizer reads the optax schedule with constants instead of its traced numbers
        reference = _optax_schedule(config.schedule, total_steps=total, steps_per_epoch=spe)
        m.setattr(schedules, 'schedule_fn', lambda *a, **k: lambda values, count: reference(count))
      tx = builder.build(config.optimizer, config.schedule, labels, rules, total_steps=total, steps_per_epoch=spe,
                         batch_size=32)
    return tx, rules

  def trajectory(tx):
    def run(opt_state, p):
      def body(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, u), s), None
      return jax.lax.scan(body, (p, opt_state), None, length=total)[0][0]
    return jax.jit(run)

  a, b = config_of(fields), config_of(other)
  tx, rules = build(a)
  run = trajectory(tx)
  for config in (a, b):
    state = builder.set_hyperparams(tx.init(params), **builder.schedule_values(
        config.schedule, rules, total_steps=total, steps_per_epoch=spe))
    traced = run(state, params)
    static_tx, _ = build(config, static=True)
    static = trajectory(static_tx)(static_tx.init(params), params)
    for x, y in zip(jax.tree.leaves(traced), jax.tree.leaves(static)):
      # bit-identical on CPU but for one_cycle's second schedule (XLA folds constants of its two equal phases
      # further); a tolerance, as XLA may fuse constants differently elsewhere
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    assert not np.allclose(traced['dense']['kernel'], params['dense']['kernel'])
  assert run._cache_size() == 1  # the other schedule's numbers: no recompilation


def test_the_key_leaves_out_schedule_numbers_and_with_traced_freezing_the_frozen_groups():
  key = lambda c: traced.static_key(c, model='m', task='t', steps_per_epoch=10, total_steps=100)
  base = small_config(schedule__name='piecewise', schedule__boundaries=[10], schedule__values=[1.0, 0.1],
                      optimizer__groups=[('^head/', {'lr_mult': 2.0, 'schedule': {'warmup': 3}}), ('', {})])
  same = small_config(schedule__name='piecewise', schedule__boundaries=['1 epochs'], schedule__values=[0.5, 0.2],
                      schedule__warmup='10%', schedule__warmup_init=0.1, schedule__end_factor=0.3,
                      optimizer__groups=[('^head/', {'lr_mult': 2.0, 'schedule': {'warmup': 7, 'gamma': 0.3}}),
                                         ('', {})])
  assert key(base) == key(same)
  for changes in (dict(schedule__name='cosine'), dict(schedule__staircase=True),
                  dict(schedule__boundaries=[10, 20], schedule__values=[1.0, 0.5, 0.1]),
                  dict(optimizer__groups=[('^head/', {'lr_mult': 2.0}), ('', {})]),  # no own schedule
                  dict(optimizer__groups=[('^head/', {'lr_mult': 2.0, 'schedule': {'name': 'linear'}}), ('', {})]),
                  dict(optimizer__freeze='^backbone/')):
    overrides = {'schedule__name': 'piecewise', 'schedule__boundaries': [10], 'schedule__values': [1.0, 0.1],
                 'optimizer__groups': base.optimizer.groups, **changes}
    assert key(small_config(**overrides)) != key(base), changes
  freezing = lambda **kw: small_config(optimizer__traced_freezing=True, **kw)
  assert key(freezing(optimizer__freeze='^backbone/')) == key(freezing()) != key(small_config())
  assert (key(freezing(optimizer__groups=[('^head/', {'frozen': True}), ('', {})]))
          == key(freezing(optimizer__groups=[('^head/', {}), ('', {})]))
          != key(freezing(optimizer__groups=[('^head/', {'lr_mult': 2.0}), ('', {})])))


def _leaves(tree):
  return {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_traced_freezing_keeps_frozen_parameters_and_statistics_bit_identical_like_static_freezing(tmp_path):
  """A CNN with batch norm: conv_0 and its batch norm frozen by optimizer.freeze, the head by its group. Traced and
  static freezing end alike; the frozen leaves keep their bits (a -0.0 included) and zero moments."""
  overrides = dict(model__name='cnn', model__features=[4, 4], optimizer__freeze='^backbone/(conv_0|batchnorm_0)/',
                   optimizer__groups=[('^head/', {'frozen': True}), ('', {'lr_mult': 2.0})])
  frozen_path = lambda path: path.startswith(('backbone/conv_0/', 'backbone/batchnorm_0/', 'head/'))
  ends = {}
  for freezing_traced in (False, True):
    p = make_plan(small_config(optimizer__traced_freezing=freezing_traced, **overrides), str(tmp_path / str(freezing_traced)))
    state = initial_state(p)
    kernel = state.params['backbone']['conv_0']['kernel']
    state = state.replace(params={**state.params, 'backbone': {
        **state.params['backbone'], 'conv_0': {**state.params['backbone']['conv_0'], 'kernel': kernel.at[0].set(-0.0)}}})
    before = _leaves(state.params), _leaves(state.model_state)
    step_fn = jax.jit(functools.partial(steps.train_step, model=p.model, task=p.task, tx=p.tx, frozen=p.frozen))
    it = data.train_iterator(p.splits.train, batch_size=32, seed=0)
    for _ in range(3):
      state, _ = step_fn(state, next(it))
    ends[freezing_traced] = _leaves(state.params), _leaves(state.model_state)
    after = ends[freezing_traced]
    for path, value in before[0].items():
      if frozen_path(path):
        assert value.tobytes() == after[0][path].tobytes(), path
      else:
        assert not np.array_equal(value, after[0][path]), f'{path} did not train'
    for path, value in before[1].items():
      assert (value.tobytes() == after[1][path].tobytes()) == ('batchnorm_0' in path), path
    if freezing_traced:
      trained = builder.hyperparams(state.opt_state)['trained']
      np.testing.assert_array_equal(trained, [0.0 if frozen_path(q) else 1.0 for q in groups.param_paths(state.params)])
      moments = {q: v for q, v in _leaves(state.opt_state).items() if '/mu/' in q or '/nu/' in q}
      assert moments and all(frozen_path(q.split('/mu/')[-1].split('/nu/')[-1]) != bool(np.any(v))
                             for q, v in moments.items())
  for path, value in ends[False][0].items():
    np.testing.assert_allclose(ends[True][0][path], value, rtol=1e-6, atol=1e-7, err_msg=path)
  assert b'\x00\x00\x00\x80' == ends[True][0]['backbone/conv_0/kernel'].reshape(-1)[:1].tobytes()  # still -0.0


def test_traced_freezing_holds_adafactor_statistics_and_gives_frozen_leaves_no_clipping_share():
  config = small_config(optimizer__name='adafactor', optimizer__traced_freezing=True, optimizer__grad_clip_norm=1.0,
                        optimizer__freeze='^frozen/', schedule__name='constant', schedule__warmup=0)
  params = {'frozen': {'w': jnp.ones((4, 3))}, 'head': {'w': jnp.ones((4, 3))}}
  labels, rules, trained = optim_rules.resolve_traced_freezing(config.optimizer, params)
  tx = builder.build(config.optimizer, config.schedule, labels, rules, total_steps=10, steps_per_epoch=10,
                     batch_size=32, trained=trained)
  state = tx.init(params)
  grads = {'frozen': {'w': jnp.full((4, 3), 1e3)}, 'head': {'w': jnp.full((4, 3), 1e-3)}}
  updates, new_state = jax.jit(tx.update)(grads, state, params)
  assert not np.any(updates['frozen']['w'])
  alone = {'frozen': {'w': jnp.zeros((4, 3))}, 'head': grads['head']}  # the frozen leaf's huge gradient: no share
  np.testing.assert_array_equal(updates['head']['w'], jax.jit(tx.update)(alone, state, params)[0]['head']['w'])
  held = [(q, a, b) for (q, a), b in zip(_leaves(state).items(), _leaves(new_state).values()) if '/frozen/' in q]
  assert held and all(a.tobytes() == b.tobytes() for _, a, b in held), [q for q, _, _ in held]
  moved = [q for (q, a), b in zip(_leaves(state).items(), _leaves(new_state).values())
           if '/head/' in q and not np.array_equal(a, b)]
  assert moved  # the trained leaf's statistics did change


@pytest.mark.parametrize('traced', [False, True])
def test_a_group_frozen_for_the_run_beside_freezing_over_time(traced):
  """optimizer.freeze with a group frozen for its first step: the whole-run freezing once overflowed the step gate
  (its end, sys.maxsize, compared with the traced int32 count)."""
  config = small_config(optimizer__name='sgd', optimizer__momentum=0.0, optimizer__traced_freezing=traced,
                        optimizer__freeze='^frozen/', optimizer__groups=[('^head/', {'frozen_steps': [(0, 1)]}),
                                                                         ('', {})],
                        schedule__name='constant', schedule__warmup=0, optimizer__grad_clip_norm=0.0)
  params = {'frozen': {'w': jnp.ones(3)}, 'head': {'w': jnp.ones(3)}, 'rest': {'w': jnp.ones(3)}}
  resolve = optim_rules.resolve_traced_freezing if traced else lambda *a, **k: (*optim_rules.resolve(*a, **k), None)
  labels, rules, trained = resolve(config.optimizer, params, steps_per_epoch=5, total_steps=5)
  tx = builder.build(config.optimizer, config.schedule, labels, rules, total_steps=5, steps_per_epoch=5,
                     batch_size=32, trained=trained)
  state, update = tx.init(params), jax.jit(tx.update)
  grads = jax.tree.map(jnp.ones_like, params)
  first, state = update(grads, state, params)
  second, _ = update(grads, state, params)
  assert not np.any(first['frozen']['w']) and not np.any(second['frozen']['w'])
  assert not np.any(first['head']['w']) and np.all(second['head']['w'] != 0)  # frozen at step 0 only
  assert np.all(first['rest']['w'] != 0)


SWEEP_FILE = '''
from ftlab.config import defaults


def get_config(arg=None):
  c = defaults()
  c.model.features = [8]
  c.data.source = 'digits'
  c.train.num_steps, c.train.num_epochs = 4, 0.0
  c.eval.every_steps = 4
  c.eval.train_subset = 0
  c.eval.predictions = False  # what these sweeps test is not the predictions
  c.schedule.name = 'cosine'
  c.optimizer.traced_freezing = True
  return c


def get_sweep(arg=None):
  return {'kind': 'zip', 'params': {
      'schedule.warmup': [0, '25%'], 'schedule.end_factor': [0.0, 0.5], 'optimizer.freeze': ['', '^backbone/']}}
'''


def test_trials_differing_in_schedule_numbers_and_frozen_groups_compile_once_sequential_or_vectorised(
    tmp_path, train_step_traces):
  traces = train_step_traces
  path = tmp_path / 'sweep.py'
  path.write_text(textwrap.dedent(SWEEP_FILE))
  rows = {}
  for mode, overrides in (('sequential', {}), ('vectorised', {'vectorize': 2})):
    compiled.clear()
    traces.clear()
    sweep_dir = str(tmp_path / mode)
    rows[mode] = {r['id']: (r, sweep_dir) for r in runner.run(str(path), sweep_dir, sweep_overrides=overrides,
                                                              options=runner.Options(report=False))}
    assert len(rows[mode]) == 2 and all(r['status'] == 'complete' for r, _ in rows[mode].values())
    assert len(traces) == 1, mode  # two schedules and two freezing masks: one compilation
  assert len({r['wall_seconds'] for r, _ in rows['vectorised'].values()}) == 1  # one group

  def final(row, sweep_dir):
    return _leaves(checkpoints.restore_params(os.path.join(sweep_dir, row['workdir'], 'checkpoints'),
                                              row['final_step']))

  frozen = {'': (), '^backbone/': ('backbone/',)}
  for run_id, (alone, alone_dir) in rows['sequential'].items():
    together, together_dir = rows['vectorised'][run_id]
    assert together['best_step'] == alone['best_step'] and together['final_step'] == alone['final_step'] == 4
    assert together['validation']['loss'] == pytest.approx(alone['validation']['loss'], abs=1e-5)
    a, v = final(alone, alone_dir), final(together, together_dir)
    stuck = frozen[together['values']['optimizer.freeze']]
    for name in a:
      np.testing.assert_allclose(v[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
      if name.startswith(stuck):  # a frozen group of the vectorised trial: exactly the initial (and sequential) bits
        assert v[name].tobytes() == a[name].tobytes(), name
