"""Compile once: a sweep over traced hyperparameters compiles its train step once in total, and sharing the
compiled step changes no result."""
import textwrap
import types

import pytest

from ftlab import compiled, stages, traced
from ftlab import config as config_lib
from ftlab.sweeps import runner, space

SWEEP_FILE = '''
from ftlab.config import defaults


def get_config(arg=None):
  c = defaults()
  c.model.features = [32]
  c.data.source = 'digits'
  c.train.num_steps = 30
  c.train.num_epochs = 0.0
  c.eval.every_steps = 15
  c.eval.train_subset = 0
  c.eval.predictions = False  # what these sweeps test is not the predictions
  return c


def get_sweep(arg=None):
  return {'kind': 'grid', 'seeds': [0, 1], 'params': {
      'optimizer.learning_rate': [1e-3, 3e-3], 'optimizer.weight_decay': [0.0, 1e-2], 'model.dropout_rate': [0.0, 0.2]}}
'''


def test_eight_traced_trials_compile_the_train_step_once_and_match_fresh_runs(tmp_path, train_step_traces):
  traces = train_step_traces
  path = tmp_path / 'traced_sweep.py'
  path.write_text(textwrap.dedent(SWEEP_FILE))
  compiled.clear()
  sweep_dir = str(tmp_path / 'sweep')
  rows = runner.run(str(path), sweep_dir, sweep_overrides={'seeds': [0]}, options=runner.Options(report=False))
  assert len(rows) == 8 and all(r['status'] == 'complete' for r in rows)
  assert len(traces) == 1  # 8 trials (lr x wd x dropout), one compilation

  # The last trial, run alone with a fresh compiled step, ends exactly where the shared step took it.
  compiled.clear()
  base = config_lib.load_config_file(str(path))
  definition = space.parse({'kind': 'grid', 'params': {'optimizer.learning_rate': [3e-3], 'optimizer.weight_decay':
                                                        [1e-2], 'model.dropout_rate': [0.2]}}, base)
  point = space.configurations(definition)[0]
  summary = stages.run(space.apply(base, point.overrides, 0), str(tmp_path / 'alone'))
  shared = next(r for r in rows if r['values'] == point.values)
  assert shared['validation']['loss'] == summary['validation']['loss']
  assert shared['objective'] == summary['validation']['f1_macro']
  assert len(traces) == 2  # the fresh step compiled again


def test_the_key_ignores_traced_values_and_sees_the_rest():
  base = config_lib.defaults()
  key = lambda c: traced.static_key(c, model='m', task='t', steps_per_epoch=10, total_steps=100)
  other = config_lib.defaults()
  other.optimizer.learning_rate, other.model.dropout_rate, other.seed = 0.5, 0.3, 7
  other.eval.every_steps, other.early_stopping.enabled = 3, True
  assert key(base) == key(other)
  for name, value in (('optimizer.freeze', '^backbone/'), ('schedule.name', 'linear'), ('train.batch_size', 8),
                      ('optimizer.grad_clip_norm', 0.0)):
    changed = config_lib.defaults()
    section, leaf = name.split('.')
    changed[section][leaf] = value
    assert key(changed) != key(base), name
  assert traced.static_key(base, model='m', task='t', steps_per_epoch=10, total_steps=101) != key(base)


def test_the_persistent_cache_goes_beside_the_workdir_once(tmp_path, monkeypatch):
  class FakeConfig:  # jax.config's attributes cannot be patched; the module's handle on jax can
    jax_compilation_cache_dir = None

    def update(self, name, value):
      setattr(self, name, value)

  fake = FakeConfig()
  monkeypatch.setattr(compiled, 'jax', types.SimpleNamespace(config=fake))
  monkeypatch.delenv('FTLAB_COMPILATION_CACHE', raising=False)
  folder = compiled.enable_persistent_cache(str(tmp_path / 'runs' / 'a'))
  assert folder == str(tmp_path / 'runs' / '.jax_cache') == fake.jax_compilation_cache_dir
  assert fake.jax_persistent_cache_min_compile_time_secs == 0.0  # a resumed run finds even its small programs
  assert compiled.enable_persistent_cache(str(tmp_path / 'elsewhere' / 'b')) == folder  # the first one stays
  fake.jax_compilation_cache_dir = None
  monkeypatch.setenv('FTLAB_COMPILATION_CACHE', 'off')
  assert compiled.enable_persistent_cache(str(tmp_path / 'c')) == '' and fake.jax_compilation_cache_dir is None


def test_eight_traced_trials_vectorised_compile_the_train_step_once_and_match_sequential(tmp_path, train_step_traces):
  traces = train_step_traces
  path = tmp_path / 'traced_sweep.py'
  path.write_text(textwrap.dedent(SWEEP_FILE))
  compiled.clear()
  sequential = runner.run(str(path), str(tmp_path / 'sequential'), sweep_overrides={'seeds': [0]},
                          options=runner.Options(report=False))
  traces.clear()  # vmapped: traced once for all 8 trials
  compiled.clear()
  rows = runner.run(str(path), str(tmp_path / 'vectorised'), sweep_overrides={'seeds': [0], 'vectorize': 8},
                    options=runner.Options(report=False))
  assert len(traces) == 1  # 8 trials (lr x wd x dropout) in one vmapped step, compiled once
  assert len({r['wall_seconds'] for r in rows}) == 1  # one group
  by_id = {r['id']: r for r in sequential}
  for row in rows:
    alone = by_id[row['id']]
    assert row['status'] == alone['status'] == 'complete' and row['best_step'] == alone['best_step']
    assert row['objective'] == pytest.approx(alone['objective'], abs=1e-6)
    assert row['validation']['loss'] == pytest.approx(alone['validation']['loss'], abs=1e-5)


def test_trials_of_one_architecture_plan_without_tracing_the_model_again(tmp_path, monkeypatch):
  """make_plan traces a model's initialisation once per architecture and input shape (plan.fresh_shapes): a
  second trial of the same architecture reuses the shapes, another architecture gets its own."""
  from conftest import small_config
  from ftlab import plan as plan_lib
  traced_inits = []
  init = plan_lib.init_variables
  monkeypatch.setattr(plan_lib, 'init_variables', lambda *a: (traced_inits.append(1), init(*a))[1])
  plan_lib._shapes.clear()
  first = plan_lib.make_plan(small_config(optimizer__learning_rate=1e-3), str(tmp_path / 'a'))
  second = plan_lib.make_plan(small_config(optimizer__learning_rate=3e-3, seed=1), str(tmp_path / 'b'))
  assert len(traced_inits) == 1 and second.variables is first.variables
  wider = plan_lib.make_plan(small_config(model__features=[48, 16]), str(tmp_path / 'c'))
  assert len(traced_inits) == 2
  assert wider.variables['params']['backbone']['dense_0']['kernel'].shape[-1] == 48
