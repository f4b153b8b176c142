"""Sweep definitions: what a configs/*.py file's get_sweep(arg) returns, checked, and the trials it asks for.

A definition is a plain dict (so that it is saved in sweep.json and compared when a sweep is rerun):

    def get_sweep(arg=None):
      return {
          'kind': 'grid',   # 'grid' (product of the value lists), 'zip' (lists paired), 'random', 'bayes' (Optuna)
          'params': {
              'optimizer.learning_rate': [1e-4, 1e-3, 1e-2],      # grid / zip: a list of values
              'schedule.name': ['cosine', 'linear'],
              'strategy': variants(frozen={'optimizer.freeze': '^backbone/'}, full={}),  # named bundles of keys
          },
          'seeds': [0, 1, 2],        # every configuration runs once per seed (mean and std in the report)
          'folds': 5,                # k-fold cross-validation: each (configuration, seed) once per fold
          'refit': True,             # with folds: the best configuration trained on every fold, then tested
          'metric': 'f1_macro',      # the objective (default: the config's eval.metric); 'direction' max/min
          'num_trials': 20,          # random / bayes: the number of configurations
          'pruner': {'name': 'median'},   # Optuna pruning from the validation metric at each evaluation
          'vectorize': 8,            # grid / zip / random: up to 8 trials at once as one vmapped train step
      }

random and bayes take distributions instead of lists: loguniform(lo, hi), uniform(lo, hi), integer(lo, hi),
choice(*values), or variants(...). Any key of the config schema can be swept, nested ones included; a variant
is a bundle of keys under one label (a freezing strategy is several keys at once). Random trials are drawn by a
numpy generator seeded from sampler.seed, so the same definition gives the same trials.

`vectorize: K` trains up to K trials that differ only in traced hyperparameters (learning rate, weight decay,
dropout, label smoothing, class weights, seed, the schedule's numbers, and with optimizer.traced_freezing the
frozen groups: see ftlab/traced.py) as one vmapped train step (ftlab/steppers/stacked.py); `shard_trials`
splits those trials over the devices instead of splitting the batch; `lanes_at_once: n` takes the group's train
step n trials at a time inside its one program (ftlab/steppers/lane_chunks.py: the memory of n trials'
activations, not K's). They change how trials run, not their results, so a rerun may change them.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
from typing import Any

import numpy as np

from ftlab import config as config_lib
from ftlab import metrics as metrics_lib

KINDS = ('grid', 'zip', 'random', 'bayes')
DISTRIBUTIONS = ('loguniform', 'uniform', 'int', 'choice', 'variants')
PRUNERS = ('none', 'median', 'halving')
SAMPLERS = ('tpe', 'random')
TOP_KEYS = ('kind', 'params', 'seeds', 'folds', 'refit', 'metric', 'direction', 'num_trials', 'sampler', 'pruner',
            'vectorize', 'shard_trials', 'lanes_at_once')
# How the trials run, not which: a rerun may change these (they are left out when a sweep is compared).
EXECUTION_KEYS = ('vectorize', 'shard_trials', 'lanes_at_once')
PRUNER_KEYS = {'none': (), 'median': ('n_startup_trials', 'n_warmup_steps'),
               'halving': ('min_resource', 'reduction_factor')}
SAMPLER_KEYS = ('name', 'seed', 'n_startup_trials')


def loguniform(low: float, high: float) -> dict:
  return {'loguniform': [low, high]}


def uniform(low: float, high: float) -> dict:
  return {'uniform': [low, high]}


def integer(low: int, high: int) -> dict:
  """An integer in [low, high], both included."""
  return {'int': [low, high]}


def choice(*values) -> dict:
  return {'choice': list(values)}


def variants(**bundles: dict) -> dict:
  """Named bundles of config keys swept as one parameter, e.g. variants(frozen={'optimizer.freeze': '^backbone/'},
  full={}); the trial's value is the name."""
  return {'variants': {name: dict(keys) for name, keys in bundles.items()}}


class SweepError(ValueError):
  def __init__(self, problems: list[str]):
    self.problems = list(dict.fromkeys(problems))
    super().__init__('\n'.join(self.problems))


@dataclasses.dataclass(frozen=True)
class Sweep:
  kind: str
  params: dict  # key -> list (grid / zip) or distribution dict
  seeds: tuple
  metric: str
  direction: str  # 'max' or 'min'
  num_trials: int
  sampler: dict
  pruner: dict
  vectorize: int = 1
  shard_trials: bool = False
  folds: int = 0  # k-fold cross-validation (data.folds of every trial); 0: none
  refit: bool = False  # with folds: the best configuration trained on every fold and evaluated on the test split
  lanes_at_once: int = 0  # a vectorised group's train step takes this many trials at a time (0: all at once)

  def replicates(self) -> list[tuple[int, int | None]]:
    """The (seed, fold) runs of every configuration: each seed, and with folds each fold of it (fold None
    without)."""
    return [(seed, fold) for seed in self.seeds for fold in (range(self.folds) if self.folds else [None])]

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['seeds'] = list(self.seeds)
    return json.loads(json.dumps(d))  # tuples -> lists, as sweep.json holds it


@dataclasses.dataclass(frozen=True)
class Configuration:
  """One point of the space: its id, the swept values as the report shows them, and the config keys they set."""
  config_id: str
  values: dict
  overrides: dict

  def run_id(self, seed: int, fold: int | None = None) -> str:
    return f'{self.config_id}-s{seed}' + ('' if fold is None else '-refit' if fold == -1 else f'-f{fold}')


def parse(definition: Any, base_config, overrides: dict | None = None) -> Sweep:
  """Checks a get_sweep() definition (with --sweep.KEY=VALUE `overrides`) against the config schema; raises
  SweepError listing every problem."""
  if not isinstance(definition, dict):
    raise SweepError([f'get_sweep: returned {type(definition).__name__}; return a dict with kind and params'])
  d = copy.deepcopy(definition)
  problems = []
  for key, value in (overrides or {}).items():
    if key not in TOP_KEYS:
      problems.append(f'--sweep.{key}: unknown sweep option; use one of {", ".join(TOP_KEYS)}')
    else:
      d[key] = value
  for key in d:
    if key not in TOP_KEYS:
      problems.append(f'sweep.{key}: unknown key; a sweep has {", ".join(TOP_KEYS)}')
  kind = d.get('kind', 'grid')
  if kind not in KINDS:
    problems.append(f'sweep.kind: {kind!r} is not one of {", ".join(KINDS)}')
  params = d.get('params')
  if not isinstance(params, dict) or not params:
    problems.append("sweep.params: give a dict of config key -> values, e.g. {'optimizer.learning_rate': [1e-3, 1e-2]}")
    params = {}
  schema = dict(config_lib.flatten(config_lib.defaults()))
  for key, spec in params.items():
    problems += _param_problems(key, spec, kind, schema)
  if kind == 'zip':
    lengths = {k: len(v) for k, v in params.items() if isinstance(v, list)}
    if len(set(lengths.values())) > 1:
      problems.append(f'sweep.params: zip pairs its lists, which need one length; got {lengths}')
  seeds = d.get('seeds', [base_config.seed])
  if (not isinstance(seeds, (list, tuple)) or not seeds or not all(_is_int(s) for s in seeds)
      or len(set(seeds)) != len(seeds)):
    problems.append(f'sweep.seeds: {seeds!r}; give a non-empty list of distinct integers, e.g. [0, 1, 2]')
    seeds = [0]
  metric = d.get('metric', base_config.eval.metric)
  if metric not in metrics_lib.METRIC_MODES:
    problems.append(f'sweep.metric: {metric!r} is not a validation metric; use one of '
                    f'{", ".join(metrics_lib.METRIC_MODES)}')
  direction = d.get('direction', metrics_lib.METRIC_MODES.get(metric, 'max'))
  if direction not in ('max', 'min'):
    problems.append(f"sweep.direction: {direction!r}; use 'max' or 'min'")
  num_trials = d.get('num_trials', 0)
  if kind in ('random', 'bayes') and (not _is_int(num_trials) or num_trials < 1):
    problems.append(f'sweep.num_trials: {num_trials!r}; {kind} search needs a budget of at least 1 configuration')
  if kind in ('grid', 'zip') and num_trials:
    problems.append(f'sweep.num_trials: a {kind} sweep runs every point of its lists; drop num_trials or use '
                    "kind 'random' / 'bayes'")
  sampler = {'name': 'tpe' if kind == 'bayes' else 'random', 'seed': 0, **(d.get('sampler') or {})}
  problems += [f'sweep.sampler.{k}: unknown; use {", ".join(SAMPLER_KEYS)}' for k in sampler if k not in SAMPLER_KEYS]
  if sampler['name'] not in SAMPLERS:
    problems.append(f'sweep.sampler.name: {sampler["name"]!r}; use one of {", ".join(SAMPLERS)}')
  pruner = {'name': 'none', **(d.get('pruner') or {})}
  if pruner['name'] not in PRUNERS:
    problems.append(f'sweep.pruner.name: {pruner["name"]!r}; use one of {", ".join(PRUNERS)}')
  else:
    problems += [f'sweep.pruner.{k}: not an option of the {pruner["name"]} pruner; use '
                 f'{", ".join(PRUNER_KEYS[pruner["name"]]) or "none"}'
                 for k in pruner if k != 'name' and k not in PRUNER_KEYS[pruner['name']]]
  vectorize = d.get('vectorize', 1)
  if not _is_int(vectorize) or vectorize < 1:
    problems.append(f'sweep.vectorize: {vectorize!r}; give the number of trials to train at once, an integer >= 1')
  elif vectorize > 1 and kind == 'bayes':
    problems.append('sweep.vectorize: a bayes sweep asks its sampler for one configuration at a time; drop '
                    "vectorize, or use kind 'random' to run many trials at once")
  shard_trials = d.get('shard_trials', False)
  if not isinstance(shard_trials, bool):
    problems.append(f'sweep.shard_trials: {shard_trials!r}; use True or False')
  lanes_at_once = d.get('lanes_at_once', 0)
  if not _is_int(lanes_at_once) or lanes_at_once < 0:
    problems.append(f'sweep.lanes_at_once: {lanes_at_once!r}; give how many trials of a vectorised group a train '
                    'step takes at a time, an integer >= 1 (0: all of them)')
  elif lanes_at_once and shard_trials:
    problems.append('sweep.lanes_at_once and sweep.shard_trials: trials sharded over the devices already run a '
                    'few per device; drop one of them')
  folds, refit = d.get('folds', 0), d.get('refit', False)
  if not _is_int(folds) or folds == 1 or folds < 0:
    problems.append(f'sweep.folds: {folds!r}; give the number of cross-validation folds (>= 2), or 0 for none')
  if not isinstance(refit, bool) or (refit and not folds):
    problems.append(f'sweep.refit: {refit!r}; True (with folds: the best configuration retrained on every fold) '
                    'or False')
  if folds and base_config.data.splits.validation not in ('', 'auto'):
    problems.append(f'sweep.folds: the folds make each trial\'s validation split, but the config names '
                    f"data.splits.validation={base_config.data.splits.validation!r}; set it to ''")
  if problems:
    raise SweepError(problems)
  return Sweep(kind, params, tuple(int(s) for s in seeds), metric, direction, int(num_trials or 0), sampler, pruner,
               int(vectorize), shard_trials, int(folds), refit, int(lanes_at_once))


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _param_problems(key: str, spec, kind: str, schema: dict) -> list[str]:
  where = f'sweep.params[{key!r}]'
  dist = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
  if dist == 'variants':
    bundles = spec['variants']
    if not isinstance(bundles, dict) or not bundles:
      return [f'{where}: variants need at least one named bundle of config keys']
    out = []
    for name, keys in bundles.items():
      if not isinstance(keys, dict):
        out.append(f'{where}: variant {name!r} is {keys!r}; give a dict of config key -> value')
        continue
      out += [f'{where}: variant {name!r} sets {k!r}, not a config key{config_lib.closest_key(k, sorted(schema))}'
              for k in keys if k not in schema]
    return out
  if key not in schema:
    return [f'{where}: not a config key{config_lib.closest_key(key, sorted(schema))}; a swept key is a dotted '
            "config key, or a free name whose value is variants(...)"]
  if kind in ('grid', 'zip'):
    if not isinstance(spec, list) or not spec:
      return [f'{where}: a {kind} sweep takes a non-empty list of values (or variants(...)); got {spec!r}']
    return []
  if dist not in DISTRIBUTIONS:
    return [f'{where}: a {kind} sweep takes a distribution: loguniform(lo, hi), uniform(lo, hi), integer(lo, hi), '
            f'choice(...) or variants(...); got {spec!r}']
  args = spec[dist]
  if dist == 'choice':
    return [] if isinstance(args, list) and args else [f'{where}: choice needs at least one value']
  if not (isinstance(args, (list, tuple)) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)):
    return [f'{where}: {dist} needs [low, high]; got {args!r}']
  low, high = args
  if not all(_finite(a) for a in args):
    return [f'{where}: {dist} needs finite bounds; got {low} and {high}']
  if not low < high:
    return [f'{where}: {dist} needs low < high; got {low} and {high}']
  if dist == 'loguniform' and low <= 0:
    return [f'{where}: loguniform needs low > 0; got {low}']
  if dist == 'int' and not (_is_int(low) and _is_int(high)):
    return [f'{where}: integer needs integer bounds; got {low} and {high}']
  if dist == 'int' and not -2**63 <= low <= high < 2**63 - 1 or dist == 'uniform' and not _finite(high - low):
    return [f'{where}: {dist} needs a range the sampler can draw from; got {low} and {high}, use bounds of a '
            'sensible size']
  return []


def _finite(value) -> bool:
  """Whether a bound is a finite number (an int too large for a float is not)."""
  try:
    return math.isfinite(value)
  except OverflowError:
    return False


def expand(sweep: Sweep, values: dict) -> dict:
  """The swept values of one configuration -> the config keys they set (variants expanded)."""
  out = {}
  for key, value in values.items():
    spec = sweep.params[key]
    if isinstance(spec, dict) and 'variants' in spec:
      out.update(spec['variants'][value])
    else:
      out[key] = value
  return out


def _point(sweep: Sweep, config_id: str, values: dict) -> Configuration:
  return Configuration(config_id, values, expand(sweep, values))


def _choices(spec) -> list:
  if isinstance(spec, dict) and 'variants' in spec:
    return list(spec['variants'])
  return list(spec)


def configurations(sweep: Sweep) -> list[Configuration]:
  """Every configuration of a grid, zip or random sweep, in a fixed order with ids c000, c001, ..."""
  keys = list(sweep.params)
  if sweep.kind == 'grid':
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(_choices(sweep.params[k]) for k in keys))]
  elif sweep.kind == 'zip':
    points = [dict(zip(keys, combo)) for combo in zip(*(_choices(sweep.params[k]) for k in keys))]
  elif sweep.kind == 'random':
    rng = np.random.default_rng(sweep.sampler['seed'])
    points = [{k: sample(sweep.params[k], rng) for k in keys} for _ in range(sweep.num_trials)]
  else:
    raise ValueError('a bayes sweep asks Optuna for its configurations one at a time (see suggest)')
  return [_point(sweep, f'c{i:03d}', values) for i, values in enumerate(points)]


def sample(spec: dict, rng: np.random.Generator):
  """One value of a distribution, drawn with `rng`."""
  dist, args = next(iter(spec.items()))
  if dist == 'loguniform':
    return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
  if dist == 'uniform':
    return float(rng.uniform(args[0], args[1]))
  if dist == 'int':
    return int(rng.integers(args[0], args[1] + 1))
  options = _choices(spec) if dist == 'variants' else args
  return options[int(rng.integers(len(options)))]


def categorical(value):
  """A value as an Optuna categorical choice holds it: None, bool, int, float and str as they are, anything else
  (a list such as model.features) as its JSON text."""
  return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def distributions(params: dict) -> dict:
  """Optuna distributions of a sweep's params: loguniform / uniform -> FloatDistribution (log for loguniform), int
  -> IntDistribution; choice, variants and grid lists -> CategoricalDistribution (of `categorical` values)."""
  import optuna
  d = optuna.distributions
  out = {}
  for key, spec in params.items():
    dist = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else 'list'
    if dist == 'loguniform':
      out[key] = d.FloatDistribution(*spec[dist], log=True)
    elif dist == 'uniform':
      out[key] = d.FloatDistribution(*spec[dist])
    elif dist == 'int':
      out[key] = d.IntDistribution(*spec[dist])
    elif dist == 'variants':
      out[key] = d.CategoricalDistribution(list(spec[dist]))
    elif dist == 'choice' or isinstance(spec, list):
      out[key] = d.CategoricalDistribution([categorical(v) for v in (spec['choice'] if dist == 'choice' else spec)])
    else:
      raise SweepError([f'sweep.params[{key!r}] is {spec!r}: not a list nor a distribution (loguniform, uniform, '
                        'int, choice or variants)'])
  return out


def suggest(sweep: Sweep, trial, config_id: str) -> Configuration:
  """A bayes configuration from an Optuna trial (its sampler picks the values)."""
  import optuna
  values = {}
  for key, dist in distributions(sweep.params).items():
    if isinstance(dist, optuna.distributions.FloatDistribution):
      values[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    elif isinstance(dist, optuna.distributions.IntDistribution):
      values[key] = trial.suggest_int(key, dist.low, dist.high)
    else:
      picked = trial.suggest_categorical(key, list(dist.choices))
      spec = sweep.params[key]
      options = spec['choice'] if isinstance(spec, dict) and 'choice' in spec else []
      values[key] = next((v for v in options if categorical(v) == picked), picked)  # a list back from its text
  return _point(sweep, config_id, values)


def apply(base_config, overrides: dict, seed: int, fold: int | None = None, folds: int = 0):
  """A copy of `base_config` with the dotted `overrides` set, config.seed = seed and, for a cross-validated
  sweep, data.folds = folds and data.fold = fold (-1: a refit on every fold)."""
  config = copy.deepcopy(base_config)
  for key, value in overrides.items():
    config_lib.set_key(config, key, copy.deepcopy(value))
  config.seed = seed
  if fold is not None:
    config.data.folds, config.data.fold = folds, fold
  return config


def largest(sweep: Sweep, key: str):
  """The largest value the sweep gives config key `key` (a bayes sweep: its range's upper end), or None."""
  if sweep.kind == 'bayes':
    points = [expand(sweep, values) for values in corner_points(sweep)]
  else:
    points = [point.overrides for point in configurations(sweep)]
  return max((p[key] for p in points if key in p), default=None)


def corner_points(sweep: Sweep) -> list[dict]:
  """Values at the edges of a bayes space (every bound and every choice, others at their low end): validating
  these before the first trial catches a bad range before any compute."""
  def edges(spec):
    dist, args = next(iter(spec.items()))
    return _choices(spec) if dist == 'variants' else list(args)
  lows = {k: edges(s)[0] for k, s in sweep.params.items()}
  points = [lows]
  for key, spec in sweep.params.items():
    points += [{**lows, key: v} for v in edges(spec)[1:]]
  return points
