"""The report of a sweep as Markdown: DIR/sweep.json and DIR/trials.jsonl -> DIR/report.md and DIR/plots/*.png.

The tables are pure functions of the trial rows (ftlab/sweeps/records.py), so they are tested without training
anything; write(DIR) reads the files, draws the figures (ftlab/sweeps/plots.py) and writes report.md. The sweep
runner calls write() when a sweep ends; `python -m ftlab.report DIR` does it by hand.

Configurations are ranked by the validation objective, mean over their complete seeds; test metrics are shown
beside it, never used to choose. Means and stds are over complete seeds only (population std, ddof=0): a pruned
or diverged seed has no final result, and counting its partial metrics would flatter or punish a configuration
for where it happened to stop. Those trials are listed in a section of their own.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex

import numpy as np

from ftlab import faults
from ftlab.sweeps import plots
from ftlab.sweeps import html_page, records, significance, space

VALIDATION_METRICS = ('accuracy', 'precision_macro', 'recall_macro', 'f1_macro', 'loss')
TEST_METRICS = ('accuracy', 'f1_macro')
# NER, segmentation, detection, rating prediction, ranking: shown when the runs have them
TASK_METRICS = ('entity_f1', 'miou', 'map50', 'map', 'rmse', 'mae', 'ndcg@10', 'hr@10', 'mrr', 'sampled_ndcg@10',
                'sampled_hr@10', 'coverage@10')
MIN_IMPORTANCE_CONFIGS = 4
PM = '±'


@dataclasses.dataclass(frozen=True)
class Spec:
  """What sweep.json says about the sweep, with its defaults filled in."""
  config: str
  kind: str
  params: dict  # key -> list of values (grid / zip) or a distribution dict
  seeds: list
  metric: str
  direction: str  # 'max' or 'min'
  overrides: dict
  folds: int = 0  # k-fold cross-validation: every (configuration, seed) once per fold
  storage: str = ''  # the Optuna storage URL the workers share ('' when sweep.json does not say)


@dataclasses.dataclass
class Configuration:
  """One configuration (config_id): its swept values and its trials, one per seed."""
  config_id: str
  values: dict
  trials: list  # every row of this config_id, in file order
  complete: list  # the rows with status 'complete'
  objectives: list  # the validation objective of each complete row (finite values only)

  @property
  def objective(self) -> float | None:
    return float(np.mean(self.objectives)) if self.objectives else None

  def by_replicate(self, metric: str) -> dict:
    """{(seed, fold): objective} of the complete runs: what a paired comparison pairs."""
    return {(r.get('seed'), r.get('fold')): v for r in self.complete
            if (v := objective(r, metric)) is not None}


def load(sweep_dir: str) -> tuple[Spec, list[dict]]:
  """(the sweep's Spec, its trial rows); raises records.RecordError naming the file and the fix when sweep_dir
  is not a sweep directory."""
  path = os.path.join(sweep_dir, records.SWEEP)
  if not os.path.isdir(sweep_dir):
    raise records.RecordError(f'{sweep_dir}: no such directory; give the directory of a sweep (the --workdir of '
                              'python -m ftlab.sweep, which holds sweep.json and trials.jsonl)')
  info = records.read_sweep(sweep_dir)
  if info is None:
    raise records.RecordError(f'{path}: not found, so {sweep_dir} is not a sweep directory; give the --workdir of '
                              'a sweep (python -m ftlab.sweep writes sweep.json there when it starts)')
  spec = spec_of(info, path)
  if spec.storage.startswith('sqlite:///') and spec.storage.endswith('/optuna.db'):  # moves with its folder
    spec = dataclasses.replace(spec, storage=f'sqlite:///{os.path.abspath(os.path.join(sweep_dir, "optuna.db"))}')
  return spec, records.read(sweep_dir)


def spec_of(info, path: str = records.SWEEP) -> Spec:
  """sweep.json's contents -> Spec; raises records.RecordError naming the missing or malformed entry."""
  sweep = info.get('sweep') if isinstance(info, dict) else None
  fix = 'restore the file, or rerun the sweep into a new --workdir'
  if not isinstance(sweep, dict):
    raise records.RecordError(f'{path}: has no "sweep" object (the sweep definition); {fix}')
  if not isinstance(sweep.get('params'), dict) or not sweep['params']:
    raise records.RecordError(f'{path}: "sweep.params" is missing or empty; {fix}')
  metric = sweep.get('metric')
  if not isinstance(metric, str):
    raise records.RecordError(f'{path}: "sweep.metric" (the objective) is missing; {fix}')
  direction = sweep.get('direction') or ('min' if metric.endswith('loss') else 'max')
  if direction not in ('max', 'min'):
    raise records.RecordError(f'{path}: "sweep.direction" is {direction!r}; it must be "max" or "min"')
  return Spec(config=str(info.get('config', '?')), kind=str(sweep.get('kind', 'grid')), params=sweep['params'],
              seeds=list(sweep.get('seeds') or []), metric=metric, direction=direction,
              overrides=dict(info.get('overrides') or {}), folds=int(sweep.get('folds') or 0),
              storage=str(info.get('storage') or ''))


def _number(value) -> float | None:
  return float(value) if plots.is_number(value) and math.isfinite(value) else None


def objective(row: dict, metric: str) -> float | None:
  """A trial's validation objective: validation[metric], else the row's 'objective'; None when neither is a
  finite number."""
  value = _number((row.get('validation') or {}).get(metric))
  return value if value is not None else _number(row.get('objective'))


def stat(rows: list[dict], split: str, metric: str) -> tuple[float, float] | None:
  """(mean, population std) of row[split][metric] over the rows that have it; None when none has."""
  values = [v for v in (_number((r.get(split) or {}).get(metric)) for r in rows) if v is not None]
  return (float(np.mean(values)), float(np.std(values))) if values else None


def summarize(rows: list[dict], spec: Spec) -> list[Configuration]:
  """The rows grouped by config_id, best first by the mean objective over complete seeds (spec.direction);
  configurations with no complete seed come last. Ties keep the order of first appearance."""
  groups = {}
  for row in rows:
    if not row.get('refit'):  # a cross-validated sweep's refit is reported on its own
      groups.setdefault(row.get('config_id', row['id']), []).append(row)
  configs = []
  for config_id, trials in groups.items():
    complete = [r for r in trials if r['status'] == 'complete']
    values = {k: trials[0].get('values', {}).get(k) for k in spec.params}
    objectives = [v for v in (objective(r, spec.metric) for r in complete) if v is not None]
    configs.append(Configuration(config_id, values, trials, complete, objectives))
  sign = -1 if spec.direction == 'max' else 1
  return sorted(configs, key=lambda c: (c.objective is None, sign * (c.objective or 0.0)))


def _fmt(value, digits: int = 4) -> str:
  return 'n/a' if value is None else f'{value:.{digits}f}'


def _fmt_stat(s: tuple[float, float] | None) -> str:
  return 'n/a' if s is None else f'{s[0]:.4f} {PM} {s[1]:.4f}'


def _cell(text: str) -> str:
  """Text made safe for one markdown table cell."""
  return str(text).replace('\\', '\\\\').replace('|', '\\|').replace('\n', ' ')


def table(header: list[str], rows: list[list[str]]) -> str:
  lines = ['| ' + ' | '.join(_cell(h) for h in header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(_cell(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def _has(configs: list[Configuration], split: str, metric: str) -> bool:
  return any(metric in (r.get(split) or {}) for c in configs for r in c.complete)


def columns(configs: list[Configuration], metric: str) -> list[tuple[str, str]]:
  """The (split, metric) columns of the main table: the validation objective first, the other main validation
  metrics (entity_f1, miou, map50, map, rmse, mae, the ranking metrics when the runs have them), then test
  accuracy, f1_macro and the objective."""
  task = [m for m in TASK_METRICS if m != metric and _has(configs, 'validation', m)]
  shown = lambda split, m: m == metric or not task or _has(configs, split, m)  # detection has no accuracy
  val = [m for m in dict.fromkeys([metric] + task + list(VALIDATION_METRICS)) if shown('validation', m)]
  test = [m for m in dict.fromkeys(TEST_METRICS + (metric,)) if shown('test', m)]
  return [('validation', m) for m in val] + [('test', m) for m in test]


def main_table(configs: list[Configuration], spec: Spec) -> str:
  """One row per configuration, best first: rank (★ on the best), swept values, runs complete/finished, mean ±
  std of the metrics over complete runs, the objective's standard error and its paired comparison with the best
  (ftlab/sweeps/significance.py), the mean best step, and the mean train-validation gap of the objective."""
  cols = columns(configs, spec.metric)
  name = lambda split, m: f'{"val" if split == "validation" else "test"} {m}'
  header = (['rank'] + list(spec.params) + ['runs (seed x fold) complete/finished' if spec.folds
                                            else 'seeds complete/finished']
            + [name(*cols[0]) + ' (objective)', 'SE', 'vs best: difference [95% CI]', 'p (paired t)']
            + [name(split, m) for split, m in cols[1:]] + ['best step', f'gap {spec.metric} (train - val)'])
  best = configs[0].by_replicate(spec.metric) if configs else {}
  out = []
  for rank, c in enumerate(configs, 1):
    starred = rank == 1 and c.objective is not None
    gap = stat(c.complete, 'validation', f'gap_{spec.metric}')
    steps = [s for s in (_number(r.get('best_step', r.get('step'))) for r in c.complete) if s is not None]
    out.append([f'★ {rank}' if starred else str(rank)] + [plots.format_value(c.values[k]) for k in spec.params]
               + [f'{len(c.complete)}/{len(c.trials)}', _fmt_stat(stat(c.complete, *cols[0])),
                  _fmt(significance.standard_error(c.objectives))]
               + (['-', '-'] if rank == 1 else _comparison(significance.paired(best, c.by_replicate(spec.metric))))
               + [_fmt_stat(stat(c.complete, split, m)) for split, m in cols[1:]]
               + [_fmt(float(np.mean(steps)), 1) if steps else 'n/a', _fmt(gap[0]) if gap else 'n/a'])
  return table(header, out)


def _comparison(c: significance.Comparison | None) -> list[str]:
  if c is None:
    return ['n/a (no run in common)', 'n/a']
  interval = f' [{c.low:+.4f}, {c.high:+.4f}]' if c.low is not None else ''
  return [f'{c.mean:+.4f}{interval} (n={c.n})', 'n/a' if c.p is None else f'{c.p:.3g}']


def _best_analysis(sweep_dir: str, configs: list[Configuration], out: str) -> list[str]:
  """A link to the error analysis (analysis.md: per-class scores, confusions, confident errors, calibration) of
  the best configuration's representative trial, written here from its predictions.jsonl (the one it has, when the
  report goes to a folder `out` of its own: nothing in sweep_dir is written then)."""
  if not configs or configs[0].objective is None:
    return []
  trial = representative(configs[0])
  folder = os.path.join(sweep_dir, trial.get('workdir') or '')
  summary = os.path.join(folder, 'summary.json')
  if not trial.get('workdir') or not os.path.exists(summary):
    return []
  from ftlab import analysis_report  # it draws with this module's tables
  if out == sweep_dir:
    with open(summary) as f:
      path = analysis_report.write(folder, json.load(f)['class_names'], title=f'trial {trial["id"]}')
  else:
    path = os.path.join(folder, analysis_report.FILE)
    path = path if os.path.exists(path) else None
  if path is None:  # the trial wrote no predictions
    return []
  return ['', f'Error analysis of the best configuration (trial {trial["id"]}: per-class scores, confusion matrix, '
          f'most confused pairs, most confident errors, calibration): [{os.path.relpath(path, out)}]'
          f'({os.path.relpath(path, out)}).']


def refit_table(rows: list[dict], spec: Spec) -> str:
  """A cross-validated sweep's refit: the best configuration trained on every fold, its test metrics."""
  refits = [r for r in rows if r.get('refit')]
  if not refits:
    return ''
  metrics = [m for m in dict.fromkeys(TEST_METRICS + (spec.metric,)) if any(m in (r.get('test') or {}) for r in refits)]
  body = [[str(r['id'])] + [plots.format_value((r.get('values') or {}).get(k)) for k in spec.params]
          + [r['status'], str(r.get('final_step') or r.get('step') or 'n/a')]
          + [_fmt(_number((r.get('test') or {}).get(m))) for m in metrics] for r in refits]
  return table(['id'] + list(spec.params) + ['status', 'steps'] + [f'test {m}' for m in metrics], body)


def incomplete_table(rows: list[dict], spec: Spec) -> str:
  """The trials that did not complete (pruned, diverged, failed) with where they stopped and why."""
  out = []
  for r in rows:
    if r['status'] == 'complete':
      continue
    message = (str(r.get('message') or '').strip().splitlines() or [''])[0]
    if len(message) > 200:
      message = message[:197] + '...'
    message = _retries(r) + message
    out.append([str(r['id'])] + [plots.format_value((r.get('values') or {}).get(k)) for k in spec.params]
               + [str(r.get('seed', '')) + (f' / fold {r["fold"]}' if r.get('fold') is not None else ''), r['status'], str(r.get('step') if r.get('step') is not None else 'n/a'),
                  _fmt(objective(r, spec.metric)), message or '-'])
  if not out:
    return 'None: every trial completed.'
  header = ['id'] + list(spec.params) + ['seed / fold' if spec.folds else 'seed', 'status', 'step', f'val {spec.metric} so far', 'message']
  return table(header, out)


def _retries(row: dict) -> str:
  """What a rerun does with a trial that failed outside itself (a full disk's kin, memory, the network)."""
  if row['status'] != 'failed' or row.get('cause') != 'environment':
    return ''
  attempt = f'attempt {row.get("attempt", 1)} of {1 + records.RETRIES}'
  return f'[outside the trial, {attempt}: {"a rerun runs it again" if records.retryable(row) else "not retried"}] '


def status_counts(rows: list[dict]) -> dict[str, int]:
  return {s: sum(r['status'] == s for r in rows) for s in records.STATUSES}


def importances(configs: list[Configuration], spec: Spec) -> tuple[dict[str, float] | None, str]:
  """fANOVA importances of the params for the mean objective of the configurations, or (None, the reason they
  were not computed). An in-memory Optuna study gets one trial per configuration with a complete seed; the
  evaluator is seeded, so the same rows give the same numbers."""
  scored = [c for c in configs if c.objective is not None]
  if spec.kind not in ('random', 'bayes'):
    return None, f'not computed: a {spec.kind} sweep; importances are for random and bayes searches (read the table)'
  if len(spec.params) < 2:
    return None, 'not computed: one parameter is swept; its plot shows all there is'
  if len(scored) < MIN_IMPORTANCE_CONFIGS:
    return None, (f'not computed: {len(scored)} configuration(s) with a complete seed; fANOVA needs at least '
                  f'{MIN_IMPORTANCE_CONFIGS}')
  if len({c.objective for c in scored}) == 1:
    return None, 'not computed: every configuration has the same objective, so there is no variance to attribute'
  import optuna
  try:
    dists = space.distributions(spec.params)
  except space.SweepError as err:
    raise records.RecordError(f'sweep.json: {err}') from err
  verbosity = optuna.logging.get_verbosity()
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  try:
    study = optuna.create_study(direction='maximize' if spec.direction == 'max' else 'minimize')
    for c in scored:
      categorical = lambda k: isinstance(dists[k], optuna.distributions.CategoricalDistribution)
      params = {k: space.categorical(c.values[k]) if categorical(k)
                else c.values[k] for k in spec.params}
      try:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=c.objective))
      except ValueError as err:
        return None, f'not computed: configuration {c.config_id} does not fit sweep.params ({err})'
    try:
      result = optuna.importance.get_param_importances(
          study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except RuntimeError as err:  # fANOVA's forest found no variance to split on
      return None, f'not computed: fANOVA failed ({err})'
  finally:
    optuna.logging.set_verbosity(verbosity)
  return {k: float(v) for k, v in result.items()}, ''


def importance_table(values: dict[str, float]) -> str:
  return table(['parameter', 'importance'], [[k, f'{v:.4f}'] for k, v in
                                              sorted(values.items(), key=lambda kv: -kv[1])])


def describe_param(spec) -> str:
  """A swept parameter's space in a few words: '3 values: 0.0001, 0.001, 0.01', 'loguniform [1e-05, 0.01]'."""
  if isinstance(spec, list):
    return f'{len(spec)} values: ' + ', '.join(plots.format_value(v) for v in spec)
  if isinstance(spec, dict) and len(spec) == 1:
    kind, args = next(iter(spec.items()))
    if kind in ('variants', 'choice'):
      return f'{kind}: ' + ', '.join(plots.format_value(v) for v in args)
    return f'{kind} [{", ".join(plots.format_value(v) for v in args)}]'
  return plots.format_value(spec)


def header(sweep_dir: str, spec: Spec, rows: list[dict], configs: list[Configuration]) -> str:
  counts = status_counts(rows)
  folds = f' x {spec.folds} folds (cross-validation)' if spec.folds else ''
  lines = [f'# Sweep report: {spec.config}', '',
           f'- kind: **{spec.kind}**, {len(configs)} configuration(s) x seeds {spec.seeds}{folds}']
  lines += [f'  - `{k}`: {describe_param(v)}' for k, v in spec.params.items()]
  if spec.overrides:
    lines.append('- overrides: ' + ', '.join(f'`{k}={plots.format_value(v)}`' for k, v in spec.overrides.items()))
  lines += [f'- objective: validation **{spec.metric}**, direction **{spec.direction}** '
            f'({"higher" if spec.direction == "max" else "lower"} is better)',
            f'- trials finished: {len(rows)} (' + ', '.join(f'{n} {s}' for s, n in counts.items()) + ')',
            f'- regenerate: `python -m ftlab.report {shlex.quote(sweep_dir)}`']
  if spec.storage.startswith('sqlite:///'):  # another storage's URL may hold a password: not written here
    lines.append('- browse the Optuna study (live while the sweep runs): '
                 f'`optuna-dashboard {shlex.quote(spec.storage)}`')
  elif spec.storage:
    lines.append('- browse the Optuna study (live while the sweep runs): `optuna-dashboard STORAGE_URL` with the '
                 "sweep's --storage")
  return '\n'.join(lines)


def _plot_data(configs: list[Configuration]) -> list[dict]:
  return [{'values': c.values, 'objectives': c.objectives} for c in configs]


GENERIC_LEAVES = ('name', 'type', 'kind', 'mode', 'value', 'enabled')


def short_names(keys: list[str]) -> dict[str, str]:
  """Legend names for param keys: the last dotted part (learning_rate) when it is unique and says what it is, else
  the whole key (schedule.name)."""
  leaves = [k.rsplit('.', 1)[-1] for k in keys]
  return {k: leaf if leaves.count(leaf) == 1 and leaf not in GENERIC_LEAVES else k for k, leaf in zip(keys, leaves)}


def _label(values: dict) -> str:
  names = short_names(list(values))
  return ', '.join(f'{names[k]}={plots.format_value(v)}' for k, v in values.items())


def _order(spec) -> list | None:
  if isinstance(spec, list):
    return spec
  if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ('choice', 'variants'):
    return list(next(iter(spec.values())))
  return None


def log_axes(params: dict) -> dict[str, bool]:
  """The params whose distribution says how to draw their axis: loguniform on a log axis, uniform and int on a
  linear one (a uniform dropout rate from 0.001 to 0.5 is not a rate to show in decades)."""
  kinds = {'loguniform': True, 'uniform': False, 'int': False}
  return {k: kinds[next(iter(v))] for k, v in params.items()
          if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in kinds}


def draw(sweep_dir: str, spec: Spec, configs: list[Configuration],
         importance_values: dict | None, out: str) -> list[tuple[str, str]]:
  """Writes the figures into out/plots; returns [(path, caption)]."""
  out_dir = os.path.join(out, 'plots')
  figures = []
  data = _plot_data(configs)
  keys = list(spec.params)
  if any(c.objectives for c in configs):
    for key in keys:
      others = [k for k in keys if k != key]
      path = plots.metric_vs_param(os.path.join(out_dir, plots.file_name('metric_vs_', key)), data, key,
                                   metric=spec.metric, direction=spec.direction, order=_order(spec.params[key]),
                                   other_order=_order(spec.params[others[0]]) if len(others) == 1 else None,
                                   connect=spec.kind in ('grid', 'zip'), log=log_axes(spec.params))
      figures.append((path, f'validation {spec.metric} against {key}'))
    if spec.kind == 'grid' and len(keys) == 2:
      path = plots.heatmap(os.path.join(out_dir, 'heatmap.png'), data, keys[0], keys[1], metric=spec.metric,
                           direction=spec.direction, row_order=_order(spec.params[keys[0]]),
                           col_order=_order(spec.params[keys[1]]))
      figures.append((path, f'validation {spec.metric} over the grid'))
  trials = [{'label': _label({**c.values, 'seed': r.get('seed'), **({'fold': r['fold']} if 'fold' in r else {})}), 'group_label': _label(c.values), 'group': c.config_id, 'seed': r.get('seed'),
             'status': r['status'], 'history': _history(sweep_dir, r)} for c in configs for r in c.trials]
  if any(t['history'] for t in trials):
    figures.append((plots.curves(os.path.join(out_dir, 'curves.png'), trials, metric=spec.metric,
                                 direction=spec.direction), 'training curves of every trial'))
  panels = []
  for rank, c in enumerate(configs, 1):
    trial = representative(c)
    history = _history(sweep_dir, trial)
    if history:
      panels.append({'title': f'#{rank} {_label(c.values)} (seed {trial.get("seed")}, {trial["status"]})',
                     'history': history, 'best_step': trial.get('best_step')})
  if panels:
    figures.append((plots.overfitting(os.path.join(out_dir, 'overfitting.png'), panels[:plots.MAX_PANELS],
                                      metric=spec.metric), 'train vs validation per configuration (best first)'))
  if importance_values:
    figures.append((plots.importance(os.path.join(out_dir, 'importance.png'), importance_values, metric=spec.metric),
                    'parameter importances'))
  return figures


def representative(c: Configuration) -> dict:
  """The trial whose curves stand for a configuration: seed 0 if it completed, else the first complete seed,
  else seed 0, else the first."""
  for pick in (lambda r: r['status'] == 'complete' and r.get('seed') == 0, lambda r: r['status'] == 'complete',
               lambda r: r.get('seed') == 0):
    found = [r for r in c.trials if pick(r)]
    if found:
      return found[0]
  return c.trials[0]


def _history(sweep_dir: str, row: dict) -> list[dict]:
  return records.read_metrics(sweep_dir, row) if row.get('workdir') else []


def markdown(sweep_dir: str, spec: Spec, rows: list[dict], configs: list[Configuration],
             importance: tuple[dict | None, str], figures: list[tuple[str, str]], out: str) -> str:
  """The whole of report.md, in the folder `out` (its links are relative to it)."""
  parts = [header(sweep_dir, spec, rows, configs), '', '## Configurations, best first', '']
  if configs:
    runs = 'runs (each seed of each fold)' if spec.folds else 'seeds'
    parts += [f'Mean {PM} std over the complete {runs} of each configuration (population std); ranked by validation '
              f'{spec.metric}, ★ marks the best. SE is the standard error of that mean (sample std / sqrt(n)). Each '
              'other configuration is compared with the best over the runs both completed with the same seed'
              + (' and fold' if spec.folds else '') + ': the mean difference with its 95% confidence interval and a '
              'paired t-test\'s two-sided p-value (ftlab/sweeps/significance.py; over folds it is optimistic, as '
              'their training sets overlap). A p-value above 0.05 means the difference is within noise. Test '
              f'metrics are for reference, not for choosing. The gap is train minus validation {spec.metric} at the '
              'best step (n/a when the runs evaluated no training subset).', '', main_table(configs, spec)]
    best, most = configs[0], max(len(c.complete) for c in configs)
    if best.objective is not None and len(best.complete) < most:
      parts += ['', f'Note: the best configuration has {len(best.complete)} complete seed(s) where others have '
                f'{most}; its mean is less certain than its std suggests.']
  else:
    parts.append('No trial has finished yet.')
  parts += _best_analysis(sweep_dir, configs, out)
  refit = refit_table(rows, spec)
  if refit:
    parts += ['', '## Refit on every fold', '', 'The best configuration trained on the whole training split (every '
              'fold) for the mean of its runs\' best steps, evaluated once at the end: test metrics from no choice '
              'made on held-out data.', '', refit]
  parts += ['', '## Trials that did not complete', '', incomplete_table(rows, spec), '', '## Parameter importances', '']
  values, reason = importance
  if values:
    parts += [f'fANOVA (Optuna, seed 0) over {sum(c.objective is not None for c in configs)} configurations\' mean '
              f'validation {spec.metric}.', '', importance_table(values)]
  else:
    parts.append(reason[0].upper() + reason[1:] + '.')
  parts += ['', '## Plots', '']
  for path, caption in figures:
    rel = os.path.relpath(path, out)
    parts += [f'{caption[0].upper() + caption[1:]}:', '', f'![{caption}]({rel})', '']
  if not figures:
    parts.append('None yet: no trial has a result or a metrics.jsonl.')
  return '\n'.join(parts).rstrip() + '\n'


def write(sweep_dir: str, out: str = '') -> str:
  """Writes out/report.md, out/plots/*.png and out/report.html (the same, self-contained: html_page.py; out:
  sweep_dir by default); returns the path of report.md. Raises records.RecordError when sweep_dir is not a
  readable sweep directory."""
  spec, rows = load(sweep_dir)
  out = out or sweep_dir
  os.makedirs(out, exist_ok=True)
  configs = summarize(rows, spec)
  try:
    importance = importances(configs, spec)
  except records.RecordError as err:
    importance = (None, f'not computed: {err}')
  figures = draw(sweep_dir, spec, configs, importance[0], out)
  faults.point('report', where=sweep_dir)
  path = os.path.join(out, 'report.md')
  tmp = path + '.tmp'
  text = markdown(sweep_dir, spec, rows, configs, importance, figures, out)
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)
  html_page.write(out, text, sweep_dir, rows, spec.metric, f'Sweep report: {os.path.abspath(sweep_dir)}')
  return path
