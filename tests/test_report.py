"""The sweep report: tables from hand-made trial rows, every plot written as a PNG, importances, the CLI."""
import html.parser
import itertools
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from ftlab import report as report_cli
from ftlab.sweeps import html_page, markdown, plots, records

METRICS = ('accuracy', 'precision_macro', 'recall_macro', 'f1_macro', 'loss')


def _metrics(f1: float) -> dict:
  return {'accuracy': f1 + 0.01, 'precision_macro': f1 - 0.01, 'recall_macro': f1 + 0.02, 'f1_macro': f1,
          'loss': 1.0 - f1, 'gap_f1_macro': 0.05, 'gap_loss': -0.1, 'per_class_f1': [f1, f1],
          'confusion_matrix': [[1, 0], [0, 1]]}


def trial(config_id: str, values: dict, seed: int, f1: float | None, *, status: str = 'complete', step: int = 30,
          message: str = '') -> dict:
  """A trials.jsonl row as the runner writes it; test metrics only for complete trials."""
  complete = status == 'complete'
  return {'id': f'{config_id}-s{seed}', 'config_id': config_id, 'values': values, 'seed': seed, 'status': status,
          'step': step, 'best_step': step, 'final_step': 30, 'objective': f1,
          'validation': _metrics(f1) if f1 is not None else None, 'test': _metrics(f1 - 0.02) if complete else None,
          'train_eval': _metrics(f1 + 0.05) if complete else None, 'wall_seconds': 1.0,
          'workdir': f'trials/{config_id}-s{seed}', 'message': message}


def make_sweep(d, kind: str, params: dict, rows: list[dict], *, metric: str = 'f1_macro',
               direction: str = 'max') -> str:
  """A sweep directory: sweep.json, trials.jsonl (through records.append) and a small metrics.jsonl per trial."""
  d = str(d)
  os.makedirs(d, exist_ok=True)
  sweep = {'kind': kind, 'params': params, 'seeds': sorted({r['seed'] for r in rows}), 'metric': metric,
           'direction': direction, 'num_trials': 0, 'sampler': {'name': 'tpe', 'seed': 0}, 'pruner': {'name': 'none'}}
  with open(os.path.join(d, records.SWEEP), 'w') as f:
    json.dump({'config': 'configs/quickstart.py:frozen', 'overrides': {'train.num_steps': 30}, 'sweep': sweep,
               'base_config': {}, 'storage': 'sqlite:///x.db', 'study_name': 'test'}, f)
  for r in rows:
    assert records.append(d, r)
    os.makedirs(os.path.join(d, r['workdir']))
    end = (r['validation'] or {}).get(metric, 0.5)
    with open(os.path.join(d, r['workdir'], 'metrics.jsonl'), 'w') as f:
      for step in (10, 20, 30)[:r['step'] // 10 or 1]:
        value = end * step / 30
        for split in ('train', 'train_eval', 'validation'):
          f.write(json.dumps({'step': step, 'split': split, **_metrics(value)}) + '\n')
  return d


GRID = {'optimizer.learning_rate': [1e-4, 1e-3, 1e-2], 'schedule.name': ['cosine', 'linear']}


def grid_rows() -> list[dict]:
  """3 x 2 grid, 3 seeds: c000 (1e-4, cosine), c001 (1e-4, linear), ... c005 (1e-2, linear). c003 (1e-3, linear) is
  the best by f1; c000 has a pruned seed, c005 a diverged and a failed one (so its mean is its one complete seed)."""
  rows = []
  f1 = {0: [0.70, 0.71, 0.40], 1: [0.72, 0.73, 0.74], 2: [0.80, 0.82, 0.81],
        3: [0.85, 0.86, 0.90], 4: [0.60, 0.62, 0.61], 5: [0.55, None, None]}
  for i, (lr, name) in enumerate((lr, n) for lr in GRID['optimizer.learning_rate'] for n in GRID['schedule.name']):
    values = {'optimizer.learning_rate': lr, 'schedule.name': name}
    for seed, value in enumerate(f1[i]):
      status = {(0, 2): 'pruned', (5, 1): 'diverged', (5, 2): 'failed'}.get((i, seed), 'complete')
      rows.append(trial(f'c{i:03d}', values, seed, value, status=status, step=10 if status != 'complete' else 30,
                        message={'pruned': 'pruned at step 10', 'diverged': 'loss is nan',
                                 'failed': 'Traceback\nValueError: boom'}.get(status, '')))
  return rows


def spec_for(kind='grid', params=GRID, metric='f1_macro', direction='max') -> markdown.Spec:
  return markdown.Spec(config='c.py', kind=kind, params=params, seeds=[0, 1, 2], metric=metric, direction=direction,
                     overrides={})


def _table_line(text: str, config_values: list[str]) -> str:
  section = text.split('## Configurations')[1].split('## Trials')[0]
  lines = [l for l in section.splitlines() if l.startswith('|') and all(f'| {v} |' in l for v in config_values)]
  assert len(lines) == 1, (config_values, lines)
  return lines[0]


def test_table_is_numpys_mean_and_std_over_the_complete_seeds_of_each_config():
  rows = grid_rows()
  spec = spec_for()
  configs = markdown.summarize(rows, spec)
  assert sorted(c.config_id for c in configs) == [f'c{i:03d}' for i in range(6)]
  for c in configs:
    assert {r['config_id'] for r in c.trials} == {c.config_id} and len(c.trials) == 3
    complete = [r for r in rows if r['config_id'] == c.config_id and r['status'] == 'complete']
    assert c.complete == complete
    for split, metric in markdown.columns(configs, 'f1_macro'):
      values = [r[split][metric] for r in complete]
      assert markdown.stat(c.complete, split, metric) == pytest.approx((np.mean(values), np.std(values)))
  c000 = next(c for c in configs if c.config_id == 'c000')
  assert c000.objective == pytest.approx(np.mean([0.70, 0.71]))  # the pruned seed (0.40) is left out
  text = markdown.main_table(configs, spec)
  line = _table_line('## Configurations\n' + text + '\n## Trials', ['0.0001', 'cosine'])
  assert f'{np.mean([0.70, 0.71]):.4f} ± {np.std([0.70, 0.71]):.4f}' in line
  assert '| 2/3 |' in line  # complete / finished seeds
  assert '| 0.0500 |' in line  # the mean train-validation gap of the objective


@pytest.mark.parametrize('metric,direction,best', [('f1_macro', 'max', ['0.001', 'linear']),
                                                   ('loss', 'min', ['0.001', 'linear']),
                                                   ('f1_macro', 'min', ['0.01', 'linear'])])
def test_the_best_row_is_first_and_marked(metric, direction, best):
  spec = spec_for(metric=metric, direction=direction)
  configs = markdown.summarize(grid_rows(), spec)
  objectives = [c.objective for c in configs if c.objective is not None]
  assert objectives == sorted(objectives, reverse=direction == 'max')
  text = markdown.main_table(configs, spec)
  assert text.count('| ★ 1 |') == 1
  starred = next(l for l in text.splitlines() if '★' in l)
  assert starred.startswith('| ★ 1 |') and all(f'| {v} |' in starred for v in best), starred


def test_trials_that_did_not_complete_are_listed_and_left_out_of_the_means(tmp_path):
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows())
  text = open(markdown.write(d)).read()
  section = text.split('## Trials that did not complete')[1].split('##')[0]
  for trial_id, status, message in (('c000-s2', 'pruned', 'pruned at step 10'), ('c005-s1', 'diverged', 'loss is nan'),
                                    ('c005-s2', 'failed', 'Traceback')):
    line = next(l for l in section.splitlines() if l.startswith(f'| {trial_id} |'))
    assert f'| {status} | 10 |' in line and message in line
  assert '10 complete' not in text and '15 complete, 1 pruned, 1 diverged, 1 failed' in text
  assert '| 1/3 |' in _table_line(text, ['0.01', 'linear'])  # c005: one complete seed of three
  assert f'| {0.55:.4f} ± {0:.4f} |' in _table_line(text, ['0.01', 'linear'])
  assert f'| {np.mean([0.70, 0.71]):.4f} ± {np.std([0.70, 0.71]):.4f} |' in _table_line(text, ['0.0001', 'cosine'])


def _pngs(d) -> set[str]:
  folder = os.path.join(d, 'plots')
  names = set(os.listdir(folder))
  for name in names:
    with Image.open(os.path.join(folder, name)) as image:
      image.verify()
  return names


def test_a_two_parameter_grid_gets_every_plot_and_a_heatmap(tmp_path):
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows())
  path = markdown.write(d)
  assert path == os.path.join(d, 'report.md')
  expected = {'metric_vs_optimizer.learning_rate.png', 'metric_vs_schedule.name.png', 'heatmap.png', 'curves.png',
              'overfitting.png'}
  assert _pngs(d) == expected
  text = open(path).read()
  for name in expected:
    assert f'(plots/{name})' in text
  assert f'python -m ftlab.report {d}' in text and 'objective: validation **f1_macro**' in text
  assert 'Not computed: a grid sweep' in text


@pytest.mark.parametrize('kind,params', [
    ('grid', {'optimizer.learning_rate': [1e-3, 1e-2]}),
    ('zip', {'optimizer.learning_rate': [1e-3, 1e-2], 'schedule.name': ['cosine', 'linear']}),
    ('grid', {'optimizer.learning_rate': [1e-3, 1e-2], 'schedule.name': ['cosine', 'linear'], 'strategy': {
        'variants': {'frozen': {'optimizer.freeze': '^backbone/'}, 'full': {}}}}),
])
def test_no_heatmap_unless_a_grid_of_exactly_two_params(tmp_path, kind, params):
  keys = list(params)
  choices = [list(params[k]['variants']) if isinstance(params[k], dict) else params[k] for k in keys]
  points = [dict(zip(keys, p)) for p in (zip(*choices) if kind == 'zip' else itertools.product(*choices))]
  rows = [trial(f'c{i:03d}', values, 0, 0.5 + 0.05 * i) for i, values in enumerate(points)]
  d = make_sweep(tmp_path / 'sweep', kind, params, rows)
  markdown.write(d)
  names = _pngs(d)
  assert 'heatmap.png' not in names
  assert {plots.file_name('metric_vs_', k) for k in keys} | {'curves.png', 'overfitting.png'} == names


BAYES = {'optimizer.learning_rate': {'loguniform': [1e-5, 1e-1]}, 'model.dropout_rate': {'uniform': [0.0, 0.5]},
         'strategy': {'variants': {'frozen': {'optimizer.freeze': '^backbone/'}, 'full': {}}}}


def bayes_rows(n: int = 8) -> list[dict]:
  rng = np.random.default_rng(0)
  rows = []
  for i in range(n):
    lr = float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-1))))
    values = {'optimizer.learning_rate': lr, 'model.dropout_rate': float(rng.uniform(0, 0.5)),
              'strategy': ['frozen', 'full'][i % 2]}
    for seed in (0, 1):
      rows.append(trial(f'c{i:03d}', values, seed, 0.6 + 0.05 * math.log10(lr / 1e-5) + 0.01 * seed))
  return rows


def test_bayes_importances_cover_the_params_sum_to_one_and_repeat(tmp_path):
  spec = spec_for(kind='bayes', params=BAYES)
  configs = markdown.summarize(bayes_rows(), spec)
  first, why = markdown.importances(configs, spec)
  second, _ = markdown.importances(configs, spec)
  assert why == '' and set(first) == set(BAYES)
  assert sum(first.values()) == pytest.approx(1.0)
  assert first == second
  assert max(first, key=first.get) == 'optimizer.learning_rate'  # the only one the objective depends on
  few, why = markdown.importances(configs[:3], spec)
  assert few is None and 'at least 4' in why
  d = make_sweep(tmp_path / 'sweep', 'bayes', BAYES, bayes_rows())
  text = open(markdown.write(d)).read()
  assert 'importance.png' in _pngs(d) and '| optimizer.learning_rate |' in text.split('## Parameter importances')[1]


def test_random_search_over_two_numbers_plots_one_point_per_configuration(tmp_path):
  params = {k: BAYES[k] for k in ('optimizer.learning_rate', 'model.dropout_rate')}
  rows = [dict(r, values={k: r['values'][k] for k in params}) for r in bayes_rows(10)]
  d = make_sweep(tmp_path / 'sweep', 'random', params, rows)
  text = open(markdown.write(d)).read()
  assert {'metric_vs_optimizer.learning_rate.png', 'metric_vs_model.dropout_rate.png', 'importance.png',
          'curves.png', 'overfitting.png'} == _pngs(d)
  assert text.count('| ★ 1 |') == 1


@pytest.mark.parametrize('key,values,expected', [
    ('optimizer.learning_rate', [1e-3, 2e-3], True),
    ('optimizer.weight_decay', [1e-4, 1e-2], True),
    ('optimizer.weight_decay', [0.0, 1e-2], False),  # 0 cannot go on a log axis
    ('head_lr', [0.1, 0.2], True),
    ('train.batch_size', [16, 32, 64], False),
    ('train.batch_size', [8, 1024], True),  # spans >= 100x
    ('model.dropout_rate', [0.0, 0.5], False),
    ('data.url', [1, 2], False),  # 'lr' inside a word is not a rate
    ('schedule.name', ['cosine', 'linear'], False),
    ('train.shuffle', [True, False], False),
])
def test_log_scale(key, values, expected):
  assert plots.log_scale(key, values) is expected


def test_cli_exits_2_naming_sweep_json_for_a_directory_without_one(tmp_path, capsys):
  assert report_cli.main([str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert os.path.join(str(tmp_path), 'sweep.json') in err and 'not found' in err and 'Traceback' not in err


def test_cli_exits_2_naming_the_bad_line_of_trials_jsonl(tmp_path, capsys):
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows()[:2])
  with open(os.path.join(d, records.TRIALS), 'a') as f:
    f.write('{not json\n')
  assert report_cli.main([d]) == 2
  assert 'trials.jsonl, line 3' in capsys.readouterr().err


def test_cli_exits_2_when_trials_jsonl_is_a_folder(tmp_path, capsys):
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, [])
  path = os.path.join(d, records.TRIALS)
  if os.path.exists(path):
    os.remove(path)
  os.mkdir(path)
  assert report_cli.main([d]) == 2
  err = capsys.readouterr().err
  assert 'trials.jsonl: a folder, not the file of trial records; move it aside' in err and 'Traceback' not in err


def _hashes(folder: str) -> dict:
  import hashlib
  return {os.path.relpath(os.path.join(root, name), folder):
          hashlib.sha256(open(os.path.join(root, name), 'rb').read()).hexdigest()
          for root, _, names in os.walk(folder) for name in names}


def test_the_report_goes_to_another_folder_and_leaves_the_sweep_untouched(tmp_path, capsys):
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows())
  before = _hashes(d)
  out = str(tmp_path / 'elsewhere')
  assert report_cli.main([d, f'--out={out}']) == 0
  assert capsys.readouterr().out.strip() == os.path.join(out, 'report.md') and _hashes(d) == before
  text = open(os.path.join(out, 'report.md')).read()
  links = re.findall(r'!\[[^]]*\]\(([^)]+)\)', text)
  assert links and all(os.path.isfile(os.path.join(out, link)) for link in links)


def test_a_report_that_cannot_be_written_is_one_line_with_status_4(tmp_path, capsys, monkeypatch):
  import errno
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows())

  def read_only(*args, **kwargs):
    raise PermissionError(errno.EROFS, 'Read-only file system', os.path.join(d, 'plots'))
  monkeypatch.setattr(markdown, 'draw', read_only)
  assert report_cli.main([d]) == 4
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'cannot write' in err and 'give --out=ANOTHER_FOLDER' in err


def test_cli_prints_the_path_of_report_md(tmp_path, capsys):
  d = make_sweep(tmp_path / 'sweep', 'grid', {'optimizer.learning_rate': [1e-3, 1e-2]},
                 [trial('c000', {'optimizer.learning_rate': 1e-3}, 0, 0.5),
                  trial('c001', {'optimizer.learning_rate': 1e-2}, 0, 0.6)])
  assert report_cli.main([d]) == 0
  assert capsys.readouterr().out.strip() == os.path.join(d, 'report.md')


def test_a_distribution_decides_its_axis_where_it_can():
  assert markdown.log_axes(BAYES) == {'optimizer.learning_rate': True, 'model.dropout_rate': False}
  assert markdown.log_axes(GRID) == {}  # lists: log_scale() decides from the key and the values


def test_ner_runs_get_an_entity_f1_column_and_no_metric_twice():
  rows = [trial('c000', {'optimizer.learning_rate': 1e-3}, 0, 0.8)]
  rows[0]['validation']['entity_f1'] = 0.7
  configs = markdown.summarize(rows, spec_for(metric='entity_f1'))
  cols = markdown.columns(configs, 'entity_f1')
  assert cols[0] == ('validation', 'entity_f1') and len(cols) == len(set(cols))
  assert ('test', 'entity_f1') in cols and ('validation', 'f1_macro') in cols
  assert ('validation', 'entity_f1') not in markdown.columns(markdown.summarize(grid_rows(), spec_for()), 'f1_macro')


def test_importances_are_skipped_with_a_reason_when_they_cannot_mean_anything():
  spec = spec_for(kind='bayes', params=BAYES)
  rows = bayes_rows(6)
  for r in rows:
    r['validation']['f1_macro'] = 0.5
  values, why = markdown.importances(markdown.summarize(rows, spec), spec)
  assert values is None and 'same objective' in why
  values, why = markdown.importances(markdown.summarize(grid_rows(), spec_for()), spec_for())
  assert values is None and 'grid sweep' in why


class _Page(html.parser.HTMLParser):
  """What report.html holds: its tables' rows (cell texts), image sources, outside references and SVG curves."""

  def __init__(self):
    super().__init__()
    self.rows, self.images, self.outside, self.curves, self._cell = [], [], [], 0, None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'tr':
      self.rows.append([])
    elif tag in ('td', 'th'):
      self._cell = ''
    elif tag == 'img':
      self.images.append(attrs['src'])
    elif tag == 'svg':
      self.curves += 1
    if attrs.get('src') and not attrs['src'].startswith('data:'):  # a resource the page needs from elsewhere
      self.outside.append(attrs['src'])

  def handle_endtag(self, tag):
    if tag in ('td', 'th'):
      self.rows[-1].append(self._cell.strip())
      self._cell = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell += data


def _report_page(tmp_path) -> tuple[str, str]:
  d = make_sweep(tmp_path / 'sweep', 'grid', GRID, grid_rows()
                 + [trial('c006', {'optimizer.learning_rate': 0.1, 'schedule.name': '<b>x</b>'}, 0, None,
                          status='failed', step=0, message='ValueError: <script>alert(1)</script>')])
  markdown.write(d)
  return d, os.path.join(d, 'report.html')


def test_report_html_is_one_self_contained_page_with_every_trial_its_curves_and_messages(tmp_path):
  d, path = _report_page(tmp_path)
  text = open(path).read()
  page = _Page()
  page.feed(text)
  assert page.outside == [] and page.images and all(src.startswith('data:image/png;base64,') for src in page.images)
  assert len(page.images) == len(_pngs(d))  # every plot of report.md, embedded
  trials = {row[0]: row for row in page.rows if row and re.fullmatch(r'c\d{3}-s\d', row[0])}
  assert sorted(trials) == sorted(r['id'] for r in records.read(d))  # every trial, once in the trials table
  assert trials['c000-s2'][-1] == 'pruned at step 10' and trials['c005-s2'][-1] == 'Traceback\nValueError: boom'
  assert trials['c006-s0'][2] == '<b>x</b>' and '<script>alert' not in text  # values and messages are escaped
  assert page.curves == len(trials)  # each trial's own curves (every trial here wrote metrics.jsonl)
  assert html_page.curve_svg([], 'f1_macro', None) == ''  # none for a trial without
  assert 'optuna-dashboard sqlite:///x.db' in text  # the storage sweep.json records


def _chromium() -> str:
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    if shutil.which(name):
      return shutil.which(name)
  pytest.skip('no headless browser: report.html is checked in chromium (apt-get install chromium)')


def test_report_html_loads_in_a_real_browser_without_errors_and_sorts_its_tables(tmp_path):
  browser = _chromium()
  d, path = _report_page(tmp_path)
  loaded = subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr',
                           '--v=0', f'--user-data-dir={tmp_path / "profile"}', '--dump-dom', f'file://{path}'],
                          capture_output=True, text=True, timeout=120, check=False)
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  console = [line for line in loaded.stderr.splitlines() if 'CONSOLE' in line or 'Uncaught' in line]
  assert console == [], console  # no script error, no console message at all
  assert 'data-selfcheck="ok"' in loaded.stdout, loaded.stdout[:2000]  # its script ran and sorted the trials table
  for row in records.read(d):
    assert f'<td>{row["id"]}</td>' in loaded.stdout
