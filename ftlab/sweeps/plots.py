"""The figures of a sweep report: each function draws one PNG from plain data and returns its path.

The report (ftlab/sweeps/markdown.py) reads the sweep directory and hands these functions lists and dicts, so the
figures need no knowledge of the files. matplotlib runs on the Agg backend: reports are written on headless
machines (a cloud VM, CI) by the sweep runner, where an interactive backend would fail or pop up windows.
"""
from __future__ import annotations

import json
import math
import os
import re
import textwrap

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

DPI = 120
STYLE = {'font.size': 10, 'axes.titlesize': 11, 'axes.labelsize': 10, 'legend.fontsize': 8,
         'xtick.labelsize': 9, 'ytick.labelsize': 9, 'axes.grid': True, 'grid.alpha': 0.3}
MAX_LEGEND_TRIALS = 12
MAX_PANELS = 12
MAX_SERIES = 8  # more distinct values than this in the other parameter: colour by value instead of one line each
RATE_WORDS = ('learning_rate', 'weight_decay')


def format_value(value) -> str:
  """How a swept value is written in tables, legends and ticks: 4 significant digits for floats (1e-4 -> 0.0001,
  3.16e-5 -> 3.16e-05), strings as they are, anything else as JSON."""
  if isinstance(value, float):
    return f'{value:.4g}'
  if isinstance(value, (str, int)):  # bool is an int: True / False
    return str(value)
  return json.dumps(value)


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_scale(key: str, values) -> bool:
  """Whether a parameter's axis is logarithmic: its values are positive numbers and either its key names a rate
  (contains learning_rate or weight_decay, or an `lr` word as in head_lr or optimizer.lr) or they span a factor of
  100 or more. Rates are searched on a log grid; a linear axis would squeeze 1e-4 and 1e-3 into one point."""
  values = list(values)
  if not values or not all(is_number(v) and math.isfinite(v) and v > 0 for v in values):
    return False
  lowered = key.lower()
  if any(word in lowered for word in RATE_WORDS) or 'lr' in re.split(r'[^a-z0-9]+', lowered):
    return True
  return max(values) / min(values) >= 100


def file_name(prefix: str, key: str) -> str:
  """A PNG file name for a parameter key: characters other than letters, digits, '.', '-' and '_' become '_'."""
  return f'{prefix}{re.sub(r"[^A-Za-z0-9._-]", "_", key)}.png'


def save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def _better(direction: str) -> str:
  return 'higher is better' if direction == 'max' else 'lower is better'


def _pool(configs: list[dict], key_of, by_config: bool = False) -> dict:
  """Objectives of every complete seed pooled by key_of(config), in first-seen order; with by_config, each
  configuration's mean instead."""
  pooled = {}
  for c in configs:
    if c['objectives']:
      pooled.setdefault(key_of(c), []).extend([float(np.mean(c['objectives']))] if by_config else c['objectives'])
  return pooled


def _axis(values: list, order: list | None):
  """(numeric, position of each formatted value, tick labels or None) for a parameter's values."""
  if values and all(is_number(v) for v in values):
    return True, {format_value(v): float(v) for v in values}, None
  labels = _ordered(values, order)
  return False, {label: i for i, label in enumerate(labels)}, labels


def metric_vs_param(path: str, configs: list[dict], key: str, *, metric: str, direction: str,
                    order: list | None = None, other_order: list | None = None, connect: bool = True,
                    log: dict | None = None) -> str:
  """The objective against one swept parameter, mean over seeds with std error bars.

  configs: [{'values': {param: value}, 'objectives': [validation objective of each complete seed]}]. With exactly
  one other parameter there is one series per value of it (or, when it takes more than MAX_SERIES numeric values,
  one point per configuration coloured by it); with more, each point pools the seeds of every configuration sharing
  this value, and the pooled configurations' own means are drawn as grey dots so the spread they cause shows.
  `order` / `other_order` fix the order of this and the other parameter's values (the sweep's lists); `connect`
  joins a series' points with lines and ticks the axis at the values (grids and zips: a random search's points
  are separate draws). `log` maps a parameter to whether its axis is logarithmic where the sweep says so (a
  loguniform distribution: yes; uniform: no); the others follow log_scale().
  """
  params = list(dict.fromkeys(k for c in configs for k in c['values']))
  others = [k for k in params if k != key]
  xs = [c['values'].get(key) for c in configs if c['objectives']]
  numeric, position, ticks = _axis(xs, order)
  log = log or {}
  log_x = numeric and log.get(key, log_scale(key, xs))
  other = others[0] if len(others) == 1 else None
  with plt.rc_context(STYLE):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    per_point = 'seeds'
    if other and _distinct_count(configs, other) > MAX_SERIES and all(is_number(c['values'].get(other)) for c in configs):
      _coloured_points(fig, ax, configs, key, other, position, log.get(other))
      per_point = 'seeds (one point per configuration)'
    else:
      series = {None: configs}
      if other:
        labels = _ordered([c['values'].get(other) for c in configs], other_order)
        series = {label: [c for c in configs if format_value(c['values'].get(other)) == label] for label in labels}
      markers = 'osD^vP*X<>'
      for i, (label, members) in enumerate(series.items()):
        pooled = _pool(members, lambda c: format_value(c['values'].get(key)))
        points = sorted((position[x], float(np.mean(v)), float(np.std(v))) for x, v in pooled.items())
        if not points:
          continue
        px, mean, std = (np.array(a) for a in zip(*points))
        if not numeric and len(series) > 1:  # side by side, so that error bars do not hide each other
          px = px + (i - (len(series) - 1) / 2) * min(0.08, 0.6 / len(series))
        ax.errorbar(px, mean, yerr=std, marker=markers[i % len(markers)], capsize=4, markersize=6,
                    linestyle='-' if connect else 'none', alpha=0.9, zorder=2,
                    label=None if label is None else f'{other} = {label}')
      if other:
        ax.legend(loc='best', frameon=True)
      if others and not other:
        means = _pool(configs, lambda c: format_value(c['values'].get(key)), by_config=True)
        if max(map(len, means.values()), default=0) > 1:
          per_point = f'seeds and the other {len(others)} parameters (grey dots: each configuration)'
          for x, ys in means.items():
            ax.plot([position[x]] * len(ys), ys, 'o', color='0.55', alpha=0.6, markersize=4, zorder=1)
        else:
          per_point = 'seeds (one point per configuration)'
    if log_x:
      ax.set_xscale('log')
    if not numeric:
      ax.set_xticks(range(len(ticks)), ticks, rotation=20 if max(map(len, ticks), default=0) > 8 else 0)
      ax.set_xlim(-0.5, len(ticks) - 0.5)
    elif connect:  # a list of values: tick exactly at them
      at = sorted(set(position.values()))
      ax.set_xticks(at, [format_value(v) for v in at])
      ax.minorticks_off()
    ax.set_xlabel(key + (' (log scale)' if log_x else ''))
    ax.set_ylabel(f'validation {metric}')
    ax.set_title(f'validation {metric} vs {key} ({_better(direction)})\n'
                 + textwrap.fill(f'mean ± std over {per_point}', 80), fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _distinct_count(configs: list[dict], key: str) -> int:
  return len({format_value(c['values'].get(key)) for c in configs})


def _ordered(values: list, order: list | None) -> list[str]:
  """Formatted distinct values: numbers ascending, others in `order` (the sweep's list), then as first seen."""
  if values and all(is_number(v) for v in values):
    return [format_value(v) for v in sorted(set(values))]
  distinct = list(dict.fromkeys(format_value(v) for v in values))
  return [v for v in dict.fromkeys([format_value(o) for o in order or []] + distinct) if v in distinct]


def _coloured_points(fig, ax, configs, key, other, position, log_colour: bool | None):
  """One point per configuration, coloured by the other (numeric, many-valued) parameter."""
  rows = [(position[format_value(c['values'].get(key))], float(np.mean(c['objectives'])),
           float(np.std(c['objectives'])), float(c['values'][other])) for c in configs if c['objectives']]
  x, mean, std, colour = (np.array(a) for a in zip(*rows))
  log_colour = log_scale(other, colour) if log_colour is None else log_colour
  norm = matplotlib.colors.LogNorm() if log_colour else matplotlib.colors.Normalize()
  ax.errorbar(x, mean, yerr=std, fmt='none', ecolor='0.6', capsize=3, zorder=1)
  points = ax.scatter(x, mean, c=colour, cmap='viridis', norm=norm, s=40, edgecolors='k', linewidths=0.5, zorder=2)
  fig.colorbar(points, ax=ax, label=other)


def heatmap(path: str, configs: list[dict], row_key: str, col_key: str, *, metric: str, direction: str,
            row_order: list, col_order: list) -> str:
  """The mean objective of a two-parameter grid, one annotated cell per configuration; the best cell outlined.
  A cell with no complete seed is grey and says n/a."""
  rows = [format_value(v) for v in row_order]
  cols = [format_value(v) for v in col_order]
  grid = np.full((len(rows), len(cols)), np.nan)
  spread = np.full_like(grid, np.nan)
  for c in configs:
    r, k = format_value(c['values'].get(row_key)), format_value(c['values'].get(col_key))
    if c['objectives'] and r in rows and k in cols:
      grid[rows.index(r), cols.index(k)] = np.mean(c['objectives'])
      spread[rows.index(r), cols.index(k)] = np.std(c['objectives'])
  with plt.rc_context({**STYLE, 'axes.grid': False}):
    fig, ax = plt.subplots(figsize=(max(4.8, 1.6 * len(cols) + 2.4), max(3.4, 0.9 * len(rows) + 1.8)))
    cmap = matplotlib.colormaps['viridis' if direction == 'max' else 'viridis_r'].with_extremes(bad='0.85')
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect='auto')
    finite = grid[np.isfinite(grid)]
    for (i, j), value in np.ndenumerate(grid):
      if np.isnan(value):
        ax.text(j, i, 'n/a', ha='center', va='center', color='0.3')
        continue
      shade = image.norm(value) if finite.size > 1 and finite.max() > finite.min() else 0.5
      light = shade > 0.6 if direction == 'max' else shade < 0.4  # viridis is light at its top end
      ax.text(j, i, f'{value:.4f}\n± {spread[i, j]:.4f}', ha='center', va='center', fontsize=9,
              color='black' if light else 'white')
    if finite.size:
      best = np.nanargmax(grid) if direction == 'max' else np.nanargmin(grid)
      i, j = np.unravel_index(best, grid.shape)
      ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor='red', linewidth=2.5))
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(col_key)
    ax.set_ylabel(row_key)
    ax.set_title(f'validation {metric}, mean ± std over seeds\n(best outlined in red; {_better(direction)})')
    fig.colorbar(image, ax=ax, label=f'validation {metric}')
    fig.tight_layout()
    return save(fig, path)


def _series(history: list[dict], split: str, metric: str) -> tuple[list, list]:
  points = sorted((r['step'], r[metric]) for r in history
                  if r.get('split') == split and is_number(r.get(metric)) and math.isfinite(r[metric]))
  return [p[0] for p in points], [p[1] for p in points]


def curves(path: str, trials: list[dict], *, metric: str, direction: str) -> str:
  """Training curves of every trial: the validation objective (left) and the training loss (right) against the
  step. trials: [{'label', 'group' (lines of one configuration share a colour), 'seed', 'status', 'history'
  (its metrics.jsonl rows)}]. A legend when there are at most MAX_LEGEND_TRIALS trials. Trials that did not
  complete are dotted and end in a cross."""
  groups = list(dict.fromkeys(t['group'] for t in trials))
  seeds = list(dict.fromkeys(t['seed'] for t in trials))
  palette = plt.get_cmap('tab10' if len(groups) <= 10 else 'tab20')
  styles = ['-', '--', '-.', (0, (5, 1, 1, 1, 1, 1))]
  legend = len(trials) <= MAX_LEGEND_TRIALS
  legend_rows = math.ceil(len(trials) / 2) if legend else math.ceil(min(len(groups), MAX_LEGEND_TRIALS) / 3)
  with plt.rc_context(STYLE):
    fig, (val_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.4 + 0.2 * legend_rows), layout='constrained')
    labels = []  # (a line of the trial, its legend text)
    group_labels = []  # (group, its first line, its legend text): the legend when there are too many trials
    for t in trials:
      colour = palette(groups.index(t['group']) % palette.N)
      style = ':' if t['status'] != 'complete' else styles[seeds.index(t['seed']) % len(styles)]
      handle = None
      for ax, split, name in ((val_ax, 'validation', metric), (loss_ax, 'train', 'loss')):
        x, y = _series(t['history'], split, name)
        if not x:
          continue
        (line,) = ax.plot(x, y, linestyle=style, color=colour, linewidth=1.5, marker='.', markersize=4)
        if t['status'] != 'complete':
          ax.plot(x[-1:], y[-1:], marker='x', color=colour, markersize=8, linestyle='none')
        handle = handle or line
      if handle and legend:
        labels.append((handle, t['label'] + (f'  [{t["status"]}]' if t['status'] != 'complete' else '')))
      elif handle and t['group'] not in {g for g, _, _ in group_labels}:
        group_labels.append((t['group'], handle, t.get('group_label', t['group'])))
    val_ax.set_title(f'validation {metric} ({_better(direction)})')
    val_ax.set_xlabel('step')
    val_ax.set_ylabel(f'validation {metric}')
    loss_ax.set_title('training loss (batch average since the previous evaluation)')
    loss_ax.set_xlabel('step')
    loss_ax.set_ylabel('training loss')
    losses = [v for t in trials for v in _series(t['history'], 'train', 'loss')[1]]
    if losses and min(losses) > 0 and max(losses) / min(losses) >= 10:
      loss_ax.set_yscale('log')
      loss_ax.set_ylabel('training loss (log scale)')
    if legend and labels:
      fig.legend([h for h, _ in labels], [text for _, text in labels], loc='outside lower center',
                 ncol=min(2, len(labels)), frameon=False)
      fig.suptitle('Training curves: one colour per configuration, one line style per seed; dotted with a cross: '
                   'did not complete', fontsize=10)
    elif len(group_labels) <= MAX_LEGEND_TRIALS:
      fig.legend([h for _, h, _ in group_labels], [text for _, _, text in group_labels], loc='outside lower center',
                 ncol=min(3, len(group_labels)), frameon=False)
      fig.suptitle(f'Training curves of {len(trials)} trials: one colour per configuration, one line style per seed; '
                   'dotted with a cross: did not complete', fontsize=10)
    else:
      fig.suptitle(f'Training curves of {len(trials)} trials: one colour per configuration (too many for a legend; '
                   'see report.md); dotted with a cross: did not complete', fontsize=10)
    return save(fig, path)


def overfitting(path: str, panels: list[dict], *, metric: str = 'accuracy') -> str:
  """Train against validation over the steps, one row of two panels (loss, and accuracy, or the sweep's `metric`
  where the runs have no accuracy: a recommender's ndcg@10 or rmse) per configuration.

  panels: [{'title', 'history' (metrics.jsonl rows of one trial), 'best_step'}], best first; at most MAX_PANELS
  are drawn. The train curve is the 'train_eval' split (eval mode on a training subset) when the run logged it,
  else the 'train' batch averages (which include dropout, so they are not a like-for-like comparison)."""
  panels = panels[:MAX_PANELS]
  per_row = 1 if len(panels) == 1 else 2
  n_rows = math.ceil(len(panels) / per_row)
  with plt.rc_context(STYLE):
    fig = plt.figure(figsize=(6.6 * per_row, 2.9 * n_rows + 0.5), layout='constrained')
    subfigs = np.atleast_1d(fig.subfigures(n_rows, per_row, squeeze=False).ravel())
    kinds = set()
    for sub, panel in zip(subfigs, panels):
      history = panel['history']
      train_split = 'train_eval' if any(r.get('split') == 'train_eval' for r in history) else 'train'
      kinds.add(train_split)
      axes = sub.subplots(1, 2)
      second = 'accuracy' if any('accuracy' in r for r in history) else metric
      for ax, name in zip(axes, ('loss', second)):
        for split, colour, label in ((train_split, 'tab:blue', 'train'), ('validation', 'tab:orange', 'validation')):
          x, y = _series(history, split, name)
          if x:
            ax.plot(x, y, color=colour, marker='.', markersize=4, linewidth=1.5, label=label)
        if panel.get('best_step') is not None:
          ax.axvline(panel['best_step'], color='0.4', linestyle=':', linewidth=1, label='best step')
        ax.set_xlabel('step')
        ax.set_ylabel(name)
        ax.set_title(name)
      sub.suptitle(textwrap.fill(panel['title'], 64), fontsize=10, fontweight='bold')
    for sub in subfigs[len(panels):]:
      sub.set_visible(False)
    train_kind = ' and '.join(sorted({'train_eval': 'train = eval mode on a training subset',
                                      'train': 'train = training-batch averages'}[k] for k in kinds))
    handles = [matplotlib.lines.Line2D([], [], color='tab:blue', marker='.', label='train'),
               matplotlib.lines.Line2D([], [], color='tab:orange', marker='.', label='validation'),
               matplotlib.lines.Line2D([], [], color='0.4', linestyle=':', label='best step')]
    fig.suptitle(f'Train vs validation per configuration, best first ({train_kind})', fontsize=12)
    fig.legend(handles=handles, loc='outside upper right', ncol=3, frameon=False)
    return save(fig, path)


def importance(path: str, importances: dict[str, float], *, metric: str) -> str:
  """A horizontal bar per parameter, the most important on top, its share written at the bar's end."""
  items = sorted(importances.items(), key=lambda kv: kv[1])
  with plt.rc_context({**STYLE, 'axes.grid': False}):
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.5 * len(items)))
    names, values = zip(*items)
    ax.barh(range(len(items)), values, color='tab:blue')
    for i, v in enumerate(values):
      ax.text(v + 0.01, i, f'{v:.3f}', va='center', fontsize=9)
    ax.set_yticks(range(len(items)), names)
    ax.set_xlim(0, min(1.15, max(values) + 0.15))
    ax.set_xlabel(f'importance for validation {metric} (fANOVA, sums to 1)')
    ax.set_title('Parameter importances')
    fig.tight_layout()
    return save(fig, path)
