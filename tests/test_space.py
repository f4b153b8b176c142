"""Sweep definitions: the values grid, zip, random and Bayesian spaces produce, seeded and reproducible, and the
errors a bad definition gets."""
import math

import optuna
import pytest

from ftlab import config as config_lib
from ftlab.sweeps import space
from ftlab.sweeps.space import choice, integer, loguniform, uniform, variants


def parse(definition, **overrides):
  return space.parse(definition, config_lib.defaults(), overrides)


def test_grid_is_the_product_in_order_with_stable_ids():
  s = parse({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3, 1e-2], 'schedule.name': ['cosine', 'linear',
                                                                                                  'constant']}})
  points = space.configurations(s)
  assert [p.config_id for p in points] == [f'c{i:03d}' for i in range(6)]
  assert [tuple(p.values.values()) for p in points] == [(a, b) for a in (1e-3, 1e-2)
                                                         for b in ('cosine', 'linear', 'constant')]
  assert points[4].run_id(2) == 'c004-s2'
  assert s.seeds == (0,) and s.metric == 'f1_macro' and s.direction == 'max'


def test_zip_pairs_lists_and_variants_expand_to_their_keys():
  s = parse({'kind': 'zip', 'params': {
      'train.batch_size': [16, 32, 64],
      'scaling': variants(low={'optimizer.learning_rate': 1e-3}, mid={'optimizer.learning_rate': 2e-3},
                          high={'optimizer.learning_rate': 4e-3, 'schedule.warmup': '1 epochs'})}})
  points = space.configurations(s)
  assert [p.values for p in points] == [{'train.batch_size': 16, 'scaling': 'low'},
                                        {'train.batch_size': 32, 'scaling': 'mid'},
                                        {'train.batch_size': 64, 'scaling': 'high'}]
  assert points[2].overrides == {'train.batch_size': 64, 'optimizer.learning_rate': 4e-3, 'schedule.warmup': '1 epochs'}
  config = space.apply(config_lib.defaults(), points[2].overrides, seed=7)
  assert config.train.batch_size == 64 and config.optimizer.learning_rate == 4e-3 and config.seed == 7
  assert config_lib.defaults().train.batch_size != 64  # the base is not changed


def test_random_draws_are_seeded_in_range_and_of_the_asked_kind():
  definition = {'kind': 'random', 'num_trials': 200, 'params': {
      'optimizer.learning_rate': loguniform(1e-5, 1e-1), 'model.dropout_rate': uniform(0.0, 0.5),
      'train.batch_size': integer(8, 12), 'schedule.name': choice('cosine', 'linear')}}
  a = space.configurations(parse(definition))
  b = space.configurations(parse(definition))
  c = space.configurations(parse({**definition, 'sampler': {'seed': 1}}))
  assert [p.values for p in a] == [p.values for p in b]  # same definition, same trials
  assert [p.values for p in a] != [p.values for p in c]
  lrs = [p.values['optimizer.learning_rate'] for p in a]
  assert all(1e-5 <= v <= 1e-1 for v in lrs)
  below = sum(v < 1e-3 for v in lrs) / len(lrs)  # log-uniform: half the mass below the geometric middle
  assert 0.35 < below < 0.65
  assert all(0.0 <= p.values['model.dropout_rate'] <= 0.5 for p in a)
  sizes = {p.values['train.batch_size'] for p in a}
  assert sizes == {8, 9, 10, 11, 12} and all(isinstance(v, int) for v in sizes)  # both ends included
  assert {p.values['schedule.name'] for p in a} == {'cosine', 'linear'}


def test_bayes_suggestions_follow_the_distributions_and_the_sampler_seed():
  s = parse({'kind': 'bayes', 'num_trials': 6, 'params': {
      'optimizer.learning_rate': loguniform(1e-4, 1e-1), 'train.batch_size': integer(8, 64),
      'strategy': variants(full={}, frozen={'optimizer.freeze': '^backbone/'})}})

  def draws(seed):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=2), direction='maximize')
    out = []
    for i in range(6):
      trial = study.ask()
      point = space.suggest(s, trial, f'b{i:03d}')
      out.append(point)
      study.tell(trial, -abs(math.log10(point.values['optimizer.learning_rate']) + 2))  # best near 1e-2
    return out

  a, b = draws(0), draws(0)
  assert [p.values for p in a] == [p.values for p in b]
  assert [p.values for p in a] != [p.values for p in draws(1)]
  for p in a:
    assert 1e-4 <= p.values['optimizer.learning_rate'] <= 1e-1
    assert 8 <= p.values['train.batch_size'] <= 64 and isinstance(p.values['train.batch_size'], int)
    assert p.values['strategy'] in ('full', 'frozen')
    assert p.overrides.get('optimizer.freeze') == ('^backbone/' if p.values['strategy'] == 'frozen' else None)
  log_dist = space.distributions(s.params)['optimizer.learning_rate']
  assert log_dist.log and (log_dist.low, log_dist.high) == (1e-4, 1e-1)


def test_bayes_edges_cover_every_bound_and_choice():
  s = parse({'kind': 'bayes', 'num_trials': 3, 'params': {
      'optimizer.learning_rate': loguniform(1e-4, 1e-1), 'schedule.name': choice('cosine', 'linear', 'constant')}})
  points = space.corner_points(s)
  assert {p['optimizer.learning_rate'] for p in points} == {1e-4, 1e-1}
  assert {p['schedule.name'] for p in points} == {'cosine', 'linear', 'constant'}


@pytest.mark.parametrize('definition, overrides, expected', [
    ({'kind': 'grid', 'params': {'optimizer.learning_rat': [1e-3]}}, {}, 'did you mean optimizer.learning_rate'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': 1e-3}}, {}, 'takes a non-empty list'),
    ({'kind': 'zip', 'params': {'optimizer.learning_rate': [1e-3, 1e-2], 'train.batch_size': [8]}}, {}, 'one length'),
    ({'kind': 'random', 'params': {'optimizer.learning_rate': loguniform(0.0, 1.0)}, 'num_trials': 3}, {},
     'loguniform needs low > 0'),
    ({'kind': 'random', 'params': {'optimizer.learning_rate': uniform(1.0, 0.1)}, 'num_trials': 3}, {}, 'low < high'),
    ({'kind': 'bayes', 'params': {'optimizer.learning_rate': loguniform(1e-4, 1e-2)}}, {}, 'budget of at least 1'),
    ({'kind': 'random', 'params': {'optimizer.learning_rate': [1e-3]}, 'num_trials': 2}, {}, 'takes a distribution'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}, 'metric': 'f1'}, {}, 'not a validation metric'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}, 'seeds': [0, 0]}, {}, 'distinct integers'),
    ({'kind': 'grid', 'params': {'s': variants(a={'optimizer.frez': 'x'})}}, {}, 'did you mean optimizer.freeze'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}, 'pruner': {'name': 'median', 'patience': 2}}, {},
     'not an option of the median pruner'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}}, {'num_trial': 3}, 'unknown sweep option'),
    ({'kind': 'hyperband', 'params': {'optimizer.learning_rate': [1e-3]}}, {}, "'hyperband' is not one of"),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}, 'vectorize': 0}, {}, 'an integer >= 1'),
    ({'kind': 'bayes', 'params': {'optimizer.learning_rate': loguniform(1e-4, 1e-2)}, 'num_trials': 4}, {'vectorize': 4},
     'asks its sampler for one configuration at a time'),
    ({'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3]}, 'shard_trials': 'yes'}, {}, 'use True or False'),
])
def test_bad_definitions_name_the_key_and_the_fix(definition, overrides, expected):
  with pytest.raises(space.SweepError) as err:
    parse(definition, **overrides)
  assert expected in str(err.value)


def test_command_line_overrides_replace_definition_keys():
  s = parse({'kind': 'random', 'params': {'optimizer.learning_rate': loguniform(1e-4, 1e-2)}, 'num_trials': 3},
            num_trials=5, seeds=[3, 4])
  assert s.num_trials == 5 and s.seeds == (3, 4)
  assert len(space.configurations(s)) == 5


def test_bayes_choices_of_lists_come_back_as_lists():
  s = parse({'kind': 'bayes', 'num_trials': 4, 'params': {'model.features': choice([64], [128, 64])}})
  study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
  seen = [space.suggest(s, study.ask(), f'b{i}').values['model.features'] for i in range(8)]
  assert all(v in ([64], [128, 64]) for v in seen) and len({tuple(v) for v in seen}) == 2
