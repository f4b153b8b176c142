"""Recommendation data and metrics: interaction logs in every format, the split protocols (nothing from the future
in training or a history), negatives that never hit a user's items, the evaluation rows, and HR / NDCG / MRR /
recall / coverage and RMSE / MAE against direct numpy computations on hand-made cases."""
import datetime
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from ftlab import metrics, ranking_metrics, rec_task
from ftlab.config import defaults
from ftlab.data import interaction_log, interaction_splits, interactions
from ftlab.data.errors import DataError
from ftlab.data.negatives import Negatives

KS = ranking_metrics.KS
HEADER = 'user,item,rating,timestamp'


def _data_config(path, **interaction_keys):
  d = defaults().data
  d.source, d.path = 'interactions', str(path)
  for key, value in interaction_keys.items():
    d.interactions[key] = value
  return d


def _write_csv(path, rows, header=HEADER):
  path.write_text('\n'.join([header] + [','.join(map(str, r)) for r in rows]) + '\n')
  return path


# ---------------------------------------------------------------------------------------------------------------
# Ranking metrics against numpy


N_ITEMS, N_ROWS = 30, 32  # items 1..30; row 0 and row 31 are padding, never candidates


def _hand_made_ranking():
  """[4, 32] scores, targets, seen (0-padded) and sampled candidates (target first), with the ranks they must give."""
  s = np.tile(-0.01 * np.arange(N_ROWS, dtype=np.float32), (4, 1))  # item 1 highest, then 2, 3, ...
  # row 0: target 5 tied with item 9 (the tie counts against it); seen item 2 and padding items 0 and 31 above it
  s[0, 5] = s[0, 9] = 1.0
  s[0, 2] = 3.0
  s[0, 0] = s[0, 31] = 10.0
  # row 1: target 1 is the best candidate; padding item 0 (score 0) is above it and must not count
  # row 2: target 12 below items 1..11, of which 3 and 4 are seen: rank 9
  # row 3: every item scores alike: the target ranks last among the 30 - 3 seen - 1 other candidates
  s[3] = 0.5
  target = np.array([5, 1, 12, 7])
  seen = np.array([[2, 0, 0], [0, 0, 0], [3, 4, 0], [1, 2, 3]])
  candidates = np.array([[5, 9, 20, 21, 22], [1, 2, 3, 4, 5], [12, 1, 2, 13, 14], [7, 8, 9, 10, 11]])
  return s, target, seen, candidates, np.array([1, 0, 9, 26]), np.array([1, 0, 2, 4])


def _numpy_full_ranks(s, target, seen, num_items):
  ranks = []
  for b in range(len(s)):
    others = [i for i in range(1, num_items + 1) if i != target[b] and i not in set(seen[b]) - {0}]
    ranks.append(sum(s[b, i] >= s[b, target[b]] for i in others))
  return np.array(ranks)


def _numpy_sampled_ranks(s, candidates):
  return np.array([sum(s[b, c] >= s[b, row[0]] for c in row[1:]) for b, row in enumerate(candidates)])


def _numpy_top(s, seen, num_items, k):
  tops = []
  for b in range(len(s)):
    allowed = [i for i in range(1, num_items + 1) if i not in set(seen[b])]
    tops.append(sorted(allowed, key=lambda i: (-s[b, i], i))[:k])
  return tops


def _numpy_metrics(full, sampled, tops, num_items):
  out = {}
  for prefix, ranks in (('', full), ('sampled_', sampled)):
    for k in KS:
      hits = [r < k for r in ranks]
      out[f'{prefix}hr@{k}'] = out[f'{prefix}recall@{k}'] = float(np.mean(hits))
      out[f'{prefix}ndcg@{k}'] = float(np.mean([1 / math.log2(r + 2) if r < k else 0.0 for r in ranks]))
    out[f'{prefix}mrr'] = float(np.mean([1 / (r + 1) for r in ranks]))
  for k in KS:
    out[f'coverage@{k}'] = len({i for top in tops for i in top[:k]}) / num_items
  return out


def test_hand_made_ranks_count_ties_against_the_target_and_skip_seen_and_padding_items():
  s, target, seen, candidates, want_full, want_sampled = _hand_made_ranking()
  np.testing.assert_array_equal(_numpy_full_ranks(s, target, seen, N_ITEMS), want_full)  # the reference itself
  np.testing.assert_array_equal(_numpy_sampled_ranks(s, candidates), want_sampled)
  out = ranking_metrics.excluded(s.shape, jnp.asarray(seen), N_ITEMS)
  full = ranking_metrics.full_ranks(jnp.asarray(s), jnp.asarray(target), out)
  np.testing.assert_array_equal(full, want_full)
  np.testing.assert_array_equal(ranking_metrics.sampled_ranks(jnp.asarray(s), jnp.asarray(candidates)), want_sampled)
  excluded = np.asarray(out)
  assert excluded[:, 0].all() and excluded[:, N_ITEMS + 1:].all()  # padding rows are never candidates
  assert excluded[0, 2] and excluded[3, [1, 2, 3]].all() and not excluded[1, 1:N_ITEMS + 1].any()


def test_ranking_scores_equal_a_direct_numpy_computation():
  s, target, seen, candidates, want_full, want_sampled = _hand_made_ranking()
  out = ranking_metrics.excluded(s.shape, jnp.asarray(seen), N_ITEMS)
  top = np.asarray(ranking_metrics.top_items(jnp.asarray(s), out, ranking_metrics.TOP))
  assert [list(t) for t in top] == _numpy_top(s, seen, N_ITEMS, ranking_metrics.TOP)
  got = ranking_metrics.scores(want_sampled, want_full, top, N_ITEMS)
  want = _numpy_metrics(want_full, want_sampled, _numpy_top(s, seen, N_ITEMS, ranking_metrics.TOP), N_ITEMS)
  assert set(got) == set(ranking_metrics.METRIC_NAMES)
  for name, value in want.items():
    assert got[name] == pytest.approx(value, abs=1e-12), name
  # spot values: ranks [1, 0, 9, 26] -> HR@5 = 2/4, HR@10 = 3/4, MRR = (1/2 + 1 + 1/10 + 1/27) / 4
  assert got['hr@5'] == 0.5 and got['hr@10'] == 0.75 and got['hr@20'] == 0.75
  assert got['ndcg@10'] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(11)) / 4)
  assert got['mrr'] == pytest.approx((1 / 2 + 1 + 1 / 10 + 1 / 27) / 4)
  assert got['sampled_hr@5'] == 1.0 and got['sampled_mrr'] == pytest.approx((1 / 2 + 1 + 1 / 3 + 1 / 5) / 4)
  assert ranking_metrics.scores(None, want_full, top, N_ITEMS).keys().isdisjoint({'sampled_hr@10', 'sampled_mrr'})


def _eval_batch(s, target, seen, candidates, mask):
  return {'user': jnp.arange(len(target)), 'target': jnp.asarray(target), 'seen': jnp.asarray(seen),
          'candidates': jnp.asarray(candidates), 'mask': jnp.asarray(mask)}, jnp.asarray(s)


def test_ranking_task_metrics_merged_over_batches_leave_the_padded_row_out():
  s, target, seen, candidates, want_full, want_sampled = _hand_made_ranking()
  task = rec_task.RankingTask(N_ITEMS)
  batch, logits = _eval_batch(s[:2], target[:2], seen[:2], candidates[:2], [1, 1])
  first = task.eval_metrics(logits=logits, batch=batch)
  # the second batch carries a padded row (mask 0) that would rank first everywhere if it were counted
  pad_s = np.full((1, N_ROWS), -5.0, np.float32)
  pad_s[0, 1] = 5.0
  batch, logits = _eval_batch(np.concatenate([s[2:], pad_s]), np.r_[target[2:], 1], np.r_[seen[2:], [[0, 0, 0]]],
                              np.r_[candidates[2:], [[1, 2, 3, 4, 5]]], [1, 1, 0])
  row = metrics.summarize(first.merge(task.eval_metrics(logits=logits, batch=batch)))
  want = _numpy_metrics(want_full, want_sampled, _numpy_top(s, seen, N_ITEMS, ranking_metrics.TOP), N_ITEMS)
  for name, value in want.items():
    assert row[name] == pytest.approx(value, abs=1e-9), name
  # the loss: the target's full softmax cross-entropy among the items not seen before (padding left out too)
  losses = []
  for b in range(4):
    allowed = [i for i in range(1, N_ITEMS + 1) if i == target[b] or i not in set(seen[b])]
    z = s[b, allowed].astype(np.float64)
    losses.append(np.log(np.exp(z - z.max()).sum()) + z.max() - s[b, target[b]])
  assert row['loss'] == pytest.approx(np.mean(losses), rel=1e-5)


def test_coverage_counts_only_candidate_items_when_a_user_has_fewer_than_k_left():
  num_items = 5  # RankingTask takes the top min(20, 5) = 5; this user has seen 3, so only items 4 and 5 are left
  s = jnp.asarray([[0.0, 0.9, 0.8, 0.7, 0.2, 0.1, 0.0, 0.0]])
  out = ranking_metrics.excluded(s.shape, jnp.asarray([[1, 2, 3]]), num_items)
  top = np.asarray(ranking_metrics.top_items(s, out, num_items))
  got = ranking_metrics.scores(None, np.array([0]), top, num_items)
  assert got['coverage@5'] == pytest.approx(2 / 5)  # the library reports 5 / 5 (items 0, 1, 2 counted)


# ---------------------------------------------------------------------------------------------------------------
# Rating metrics


def test_rating_task_rmse_and_mae_are_of_clipped_predictions_and_skip_padded_rows():
  task = rec_task.RatingTask(rating_range=(1.0, 5.0))
  predicted = np.array([0.2, 3.3, 7.0, 4.5, 2.0, 9.0], np.float32)  # 0.2 -> 1, 7.0 -> 5; the last row is padding
  rating = np.array([1.0, 3.0, 5.0, 4.0, 1.0, 1.0], np.float32)
  mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
  parts = [task.eval_metrics(logits=jnp.asarray(predicted[i]), batch={
      'user': jnp.zeros(len(i), jnp.int32), 'item': jnp.ones(len(i), jnp.int32), 'rating': jnp.asarray(rating[i]),
      'mask': jnp.asarray(mask[i])}) for i in (np.arange(0, 3), np.arange(3, 6))]
  row = metrics.summarize(parts[0].merge(parts[1]))
  error = np.clip(predicted[:5], 1, 5).astype(np.float64) - rating[:5]
  assert row['rmse'] == pytest.approx(np.sqrt(np.mean(error ** 2)), rel=1e-6)
  assert row['mae'] == pytest.approx(np.mean(np.abs(error)), rel=1e-6)
  assert row['rmse'] == pytest.approx(np.sqrt((0.3 ** 2 + 0.5 ** 2 + 1.0) / 5), rel=1e-6)
  assert row['loss'] == pytest.approx(np.mean((predicted[:5] - rating[:5]) ** 2), rel=1e-6)  # the loss unclipped


# ---------------------------------------------------------------------------------------------------------------
# Negatives


def _random_log(rng, num_users=25, num_items=40):
  users, items = [], []
  for u in range(num_users):
    many = u % 5 == 0  # every fifth user has interacted with nearly the whole catalogue
    count = num_items - 1 - u % 3 if many else int(rng.integers(1, 8))
    chosen = rng.choice(np.arange(1, num_items + 1), size=count, replace=False)
    repeats = rng.choice(chosen, size=2)  # the same item twice is still one item
    users += [u] * (count + 2)
    items += list(chosen) + list(repeats)
  order = rng.permutation(len(users))
  return np.array(users, np.int32)[order], np.array(items, np.int32)[order]


def test_negatives_never_hit_a_users_items_and_are_reproducible():
  rng = np.random.default_rng(7)
  num_items = 40
  users, items = _random_log(rng)
  owned = {u: set(items[users == u]) for u in np.unique(users)}
  sampler = Negatives(users, items, num_items)
  asked = np.repeat(np.arange(25), 3)
  for shape in ((9,), (4, 3)):
    drawn = sampler.draw(asked, shape, np.random.default_rng(1))
    assert drawn.shape == (len(asked),) + shape and drawn.dtype == np.int32
    assert drawn.min() >= 1 and drawn.max() <= num_items
    for u, row in zip(asked, drawn.reshape(len(asked), -1)):
      assert not owned[u] & set(row.tolist()), f'user {u} drew one of its own items'
    np.testing.assert_array_equal(drawn, sampler.draw(asked, shape, np.random.default_rng(1)))
  assert not np.array_equal(sampler.draw(asked, (9,), np.random.default_rng(1)),
                            sampler.draw(asked, (9,), np.random.default_rng(2)))
  # a user with nearly the whole catalogue can only get what is left
  left = sorted(set(range(1, num_items + 1)) - owned[0])
  assert set(sampler.draw(np.zeros(50, np.int32), (4,), rng).ravel()) <= set(left)
  every = np.array([[u, i] for u in np.unique(users) for i in range(1, num_items + 1)])
  np.testing.assert_array_equal(sampler.positive(every[:, 0], every[:, 1]),
                                [i in owned[u] for u, i in every])


def test_a_user_with_every_item_cannot_have_negatives():
  users = np.array([0, 0, 0, 1], np.int32)
  with pytest.raises(DataError, match=r'user index 0 has interacted with every one of the 3 items.*drop such users'):
    Negatives(users, np.array([3, 1, 2, 1], np.int32), 3)


# ---------------------------------------------------------------------------------------------------------------
# Split protocols


def _numbered(rows):
  """Interactions of (user, item, time) rows, in file order (interaction j = row j)."""
  users, items, times = (np.array([r[k] for r in rows], object if k < 2 else np.int64) for k in range(3))
  return interaction_splits.numbered(users, items, None, times)


def test_leave_last_out_holds_out_each_users_latest_with_ties_in_file_order():
  rows = [('b', 'x', 5), ('a', 'p', 30), ('a', 'q', 10), ('c', 'y', 1), ('b', 'z', 1), ('a', 'r', 30), ('d', 'm', 7),
          ('a', 's', 20), ('b', 'w', 3), ('d', 'n', 7), ('c', 'v', 2), ('d', 'o', 7)]
  data = _numbered(rows)
  result = interaction_splits.split(data, defaults().data, ranking=True)
  # a: 10 (q), 20 (s), 30 (p, row 1), 30 (r, row 5): r is later; b: 1, 3, 5; c has two only; d: all at time 7
  assert sorted(result.test) == [0, 5, 11] and sorted(result.validation) == [1, 8, 9]
  assert sorted(result.train) == [2, 3, 4, 6, 7, 10]
  assert len(result.warnings) == 1 and result.warnings[0].startswith('1 users with fewer than 3 interactions')
  for j in result.test:  # the test target's history is every other interaction of its user, in time order
    history = data.history(j)
    assert sorted(history) == sorted(k for k in range(len(rows)) if rows[k][0] == rows[j][0] and k != j)
    assert list(data.time[history]) == sorted(data.time[history])
  np.testing.assert_array_equal(data.history(5), [2, 7, 1])  # a: q (10), s (20), p (30, before r in the file)


def test_leave_last_out_through_load_matches_the_latest_rows(tmp_path):
  rng = np.random.default_rng(3)
  rows = [(u, f'i{u}{k}', 3, t) for u in range(6) for k, t in enumerate(rng.permutation(8)[:3 + u % 3])]
  rows.append((9, 'i90', 3, 0))  # one interaction: trains, is not evaluated, and is reported
  rows = [rows[k] for k in rng.permutation(len(rows))]
  d = _data_config(_write_csv(tmp_path / 'log.csv', rows), eval_negatives=2)
  s = interactions.load(d)
  assert any(w.startswith('1 users with fewer than 3') for w in s.report['warnings'])
  item_number = {iid: k + 1 for k, iid in enumerate(sorted({r[1] for r in rows}))}
  for role, back in (('test', 1), ('validation', 2)):
    source = getattr(s, role)
    batch = source.get_batch(np.arange(len(source)))
    want = {}
    for u in range(6):
      mine = sorted((r for r in rows if r[0] == u), key=lambda r: r[3])
      want[u] = item_number[mine[-back][1]]
    assert dict(zip(batch['user'].tolist(), batch['target'].tolist())) == want


def _time_cut_log():
  """(user, item, time) rows in a shuffled file order; cuts at 100 and 200; items distinct within a user."""
  rows = [('u1', 'a', 10), ('u1', 'b', 50), ('u1', 'c', 120), ('u1', 'd', 150), ('u1', 'e', 210), ('u1', 'f', 250),
          ('u2', 'a', 20), ('u2', 'g', 130), ('u2', 'h', 199),  # validation only
          ('u3', 'b', 60), ('u3', 'c', 205),  # test only
          ('u4', 'd', 100), ('u4', 'a', 170), ('u4', 'e', 200), ('u4', 'g', 300),  # no training; cuts hit exactly
          ('u5', 'h', 30), ('u5', 'a', 99)]  # training only
  order = np.random.default_rng(5).permutation(len(rows))
  return [rows[k] for k in order]


def test_time_cut_ranking_trains_on_the_past_and_holds_out_each_users_first_in_each_window():
  rows = _time_cut_log()
  data = _numbered(rows)
  d = defaults().data
  d.interactions.split, d.interactions.time_cuts = 'time_cut', [100, 200]
  result = interaction_splits.split(data, d, ranking=True)
  times = np.array([r[2] for r in rows])
  np.testing.assert_array_equal(np.sort(result.train), np.flatnonzero(times < 100))

  def first(lo, hi):
    out = {}
    for k in np.argsort(times, kind='stable'):
      if lo <= times[k] < hi:
        out.setdefault(rows[k][0], k)
    return sorted(out.values())

  assert list(result.validation) == first(100, 200) and list(result.test) == first(200, math.inf)
  assert sorted((rows[k][0], rows[k][2]) for k in result.validation) == [('u1', 120), ('u2', 130), ('u4', 100)]
  assert sorted((rows[k][0], rows[k][2]) for k in result.test) == [('u1', 210), ('u3', 205), ('u4', 200)]
  for role in ('validation', 'test'):
    for j in getattr(result, role):
      history = data.history(j)
      assert (times[history] < times[j]).all()
      assert sorted(history) == sorted(k for k in range(len(rows)) if rows[k][0] == rows[j][0] and times[k] < times[j])
      if role == 'validation':
        assert (times[history] < 100).all()
  # ISO 8601 cuts are the same seconds
  d.interactions.time_cuts = ['1970-01-01T00:01:40', '1970-01-01T00:03:20+00:00']
  again = interaction_splits.split(data, d, ranking=True)
  for role in ('train', 'validation', 'test'):
    np.testing.assert_array_equal(getattr(again, role), getattr(result, role))


def test_time_cut_eval_rows_see_nothing_from_the_future(tmp_path):
  rows = _time_cut_log()
  path = _write_csv(tmp_path / 'log.csv', [(u, i, 4, t) for u, i, t in rows])
  s = interactions.load(_data_config(path, split='time_cut', time_cuts=['100', '200'], eval_negatives=3,
                                     max_history=2))
  number = {iid: k + 1 for k, iid in enumerate(sorted({r[1] for r in rows}))}
  when = {(r[0], number[r[1]]): r[2] for r in rows}  # items are distinct within a user
  user_ids = sorted({r[0] for r in rows})
  for role in ('validation', 'test'):
    source = getattr(s, role)
    batch = source.get_batch(np.arange(len(source)))
    np.testing.assert_array_equal(batch['candidates'][:, 0], batch['target'])
    for b in range(len(source)):
      user = user_ids[batch['user'][b]]
      target_time = when[user, batch['target'][b]]
      before = sorted(((t, number[i]) for u, i, t in rows if u == user and t < target_time))
      assert sorted(batch['seen'][b][batch['seen'][b] > 0]) == sorted(i for _, i in before)
      want = [0] * max(0, 2 - len(before)) + [i for _, i in before[-2:]]
      assert list(batch['history'][b]) == want
      for item in list(batch['seen'][b]) + list(batch['history'][b]):
        if item:
          assert when[user, item] < target_time and (role == 'test' or when[user, item] < 100)
      assert not set(batch['candidates'][b, 1:].tolist()) & {i for (u, i) in when if u == user}
  train = s.train.get_batch(np.arange(len(s.train)))
  assert all(when[user_ids[u], i] < 100 for u, i in zip(train['user'], train['item']))


def test_time_cut_rating_evaluates_every_interaction_of_each_window(tmp_path):
  rows = _time_cut_log()
  path = _write_csv(tmp_path / 'log.csv', [(u, i, 1 + k % 5, t) for k, (u, i, t) in enumerate(rows)])
  s = interactions.load(_data_config(path, split='time_cut', time_cuts=[100, 200], task='rating'))
  user_ids = sorted({r[0] for r in rows})
  number = {iid: k + 1 for k, iid in enumerate(sorted({r[1] for r in rows}))}
  for role, (lo, hi) in (('train', (-math.inf, 100)), ('validation', (100, 200)), ('test', (200, math.inf))):
    source = getattr(s, role)
    batch = source.get_batch(np.arange(len(source)))
    got = sorted(zip((user_ids[u] for u in batch['user']), batch['item'].tolist(), batch['rating'].tolist()))
    want = sorted((u, number[i], float(1 + k % 5)) for k, (u, i, t) in enumerate(rows) if lo <= t < hi)
    assert got == want, role


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs


def test_unknown_column_lists_the_columns_and_names_the_key(tmp_path):
  path = _write_csv(tmp_path / 'log.csv', [(1, 10, 4, 100)])
  ic = defaults().data.interactions
  ic.item_column = 'movie'
  with pytest.raises(DataError) as e:
    interaction_log.read(str(path), ic)
  message = str(e.value)
  assert "no column 'movie'" in message and 'data.interactions.item_column' in message
  assert all(repr(c) in message for c in HEADER.split(','))


def test_bad_rows_name_the_file_and_line(tmp_path):
  ic = defaults().data.interactions
  path = _write_csv(tmp_path / 'log.csv', [(1, 10, 4, 100), (1, 11, 'four', 200), (2, 10, 3, 150)])
  with pytest.raises(DataError, match=rf"{tmp_path / 'log.csv'}:3: rating 'four' is not a number.*"
                                      'data.interactions.rating_column'):
    interaction_log.read(str(path), ic)
  path = _write_csv(tmp_path / 'fields.csv', [(1, 10, 4, 100), (1, 11, 200)])
  with pytest.raises(DataError, match=r'fields\.csv:3: 3 fields, the header has 4'):
    interaction_log.read(str(path), ic)
  path = _write_csv(tmp_path / 'when.csv', [(1, 10, 4, 'yesterday')])
  with pytest.raises(DataError, match=r"when\.csv:2: timestamp 'yesterday' is neither seconds nor an ISO 8601"):
    interaction_log.read(str(path), ic)
  (tmp_path / 'bad.jsonl').write_text('{"user": 1, "item": 2, "rating": 3, "timestamp": 4}\n{"user": 1,\n')
  with pytest.raises(DataError, match=r'bad\.jsonl:2: not valid JSON'):
    interaction_log.read(str(tmp_path / 'bad.jsonl'), ic)


def test_a_dat_log_needs_column_names(tmp_path):
  (tmp_path / 'ratings.dat').write_text('1::10::4::100\n')
  with pytest.raises(DataError, match=r'ratings\.dat: a \.dat log has no header; name its columns in '
                                      r'data\.interactions\.names'):
    interaction_log.read(str(tmp_path / 'ratings.dat'), defaults().data.interactions)


def test_duplicate_rows_are_dropped_counted_and_reported(tmp_path):
  rows = [(u, i, 3, 10 * i) for u in (1, 2) for i in range(1, 5)]
  rows += [(1, 2, 5, 20), (2, 3, 3, 30), (2, 3, 3, 30)]  # user 1's item 2 again (a new rating), user 2's item 3 twice
  rows += [(1, 2, 4, 99), (3, 7, 3, 5)]  # the same user and item at another time is no duplicate; a fifth item
  path = _write_csv(tmp_path / 'log.csv', rows)
  log = interaction_log.read(str(path), defaults().data.interactions)
  assert log.duplicates == 3 and len(log) == len(rows) - 3
  kept = {(u, i, t): r for u, i, r, t in zip(log.users, log.items, log.ratings, log.times)}
  assert len(kept) == len(log) and kept['1', '2', 20] == 5.0 and kept['1', '2', 99] == 4.0  # the last one kept
  s = interactions.load(_data_config(path, eval_negatives=1))
  assert any(w.startswith('3 duplicate rows') for w in s.report['warnings'])
  assert s.report['interactions'] == len(rows) - 3


def test_a_user_with_one_interaction_is_a_warning_not_an_error(tmp_path):
  rows = [(u, i, 3, i) for u in (1, 2) for i in range(1, 5)] + [(3, 5, 3, 1)]  # user 3: once, a fifth item
  s = interactions.load(_data_config(_write_csv(tmp_path / 'log.csv', rows), eval_negatives=1))
  assert s.report['warnings'] == ['1 users with fewer than 3 interactions only train (leave-last-out holds out two per '
                                  'user); they are not evaluated']
  assert len(s.test) == 2 and len(s.validation) == 2


def test_protocols_that_cannot_work_are_refused(tmp_path):
  rows = [(u, i, 3, i) for u in (1, 2) for i in range(1, 5)]
  path = _write_csv(tmp_path / 'log.csv', rows)
  with pytest.raises(DataError, match=r"split='random'.*for rating prediction.*'leave_last_out'.*task='rating'"):
    interactions.load(_data_config(path, split='random'))
  with pytest.raises(DataError, match=r"split='time_cut' needs timestamps, and timestamp_column is ''"):
    interactions.load(_data_config(path, split='time_cut', time_cuts=[1, 3], timestamp_column=''))
  with pytest.raises(DataError, match=r'time_cuts=\[.?3.?\]: give two cuts'):
    interactions.load(_data_config(path, split='time_cut', time_cuts=[3]))
  with pytest.raises(DataError, match=r'the validation start must come before the test start'):
    interactions.load(_data_config(path, split='time_cut', time_cuts=[3, 2]))
  with pytest.raises(DataError, match=r"the test split is empty; move data.interactions.time_cuts"):
    interactions.load(_data_config(path, split='time_cut', time_cuts=[2, 50]))
  with pytest.raises(DataError, match=r"task='rating' needs ratings, and rating_column is ''"):
    interactions.load(_data_config(path, task='rating', split='random', rating_column=''))


# ---------------------------------------------------------------------------------------------------------------
# Formats


LOG = [(196, 242, 3.0, 881250949), (186, 302, 3.5, 891717742), (22, 377, 1.0, 878887116), (196, 51, 2.0, 880606923)]
NAMES = ['user', 'item', 'rating', 'timestamp']


def _read(path, **keys):
  ic = defaults().data.interactions
  for key, value in keys.items():
    ic[key] = value
  return interaction_log.read(str(path), ic)


def test_every_format_reads_the_same_log(tmp_path):
  _write_csv(tmp_path / 'log.csv', LOG)
  (tmp_path / 'u.data').write_text(''.join('\t'.join(map(str, r)) + '\n' for r in LOG))
  (tmp_path / 'ratings.dat').write_text(''.join('::'.join(map(str, r)) + '\n' for r in LOG))
  (tmp_path / 'log.jsonl').write_text(''.join(json.dumps(dict(zip(NAMES, r))) + '\n' for r in LOG))
  (tmp_path / 'log.tsv').write_text('\t'.join(NAMES) + '\n' + ''.join('\t'.join(map(str, r)) + '\n' for r in LOG))
  logs = [_read(tmp_path / 'log.csv'), _read(tmp_path / 'u.data', names=NAMES),
          _read(tmp_path / 'ratings.dat', names=NAMES), _read(tmp_path / 'log.jsonl'), _read(tmp_path / 'log.tsv')]
  for log in logs:
    assert list(log.users) == [str(r[0]) for r in LOG] and list(log.items) == [str(r[1]) for r in LOG]
    np.testing.assert_array_equal(log.ratings, np.array([r[2] for r in LOG], np.float32))
    np.testing.assert_array_equal(log.times, [r[3] for r in LOG])
    assert log.duplicates == 0
  # other column names, mapped by the config; an implicit log without ratings
  (tmp_path / 'events.csv').write_text('ts,uid,mid\n' + ''.join(f'{r[3]},{r[0]},{r[1]}\n' for r in LOG))
  log = _read(tmp_path / 'events.csv', user_column='uid', item_column='mid', timestamp_column='ts', rating_column='')
  assert log.ratings is None and list(log.items) == [str(r[1]) for r in LOG]
  np.testing.assert_array_equal(log.times, [r[3] for r in LOG])


def test_iso_8601_timestamps_are_the_same_seconds(tmp_path):
  utc = [datetime.datetime.fromtimestamp(r[3], datetime.timezone.utc) for r in LOG]
  iso = [utc[0].strftime('%Y-%m-%dT%H:%M:%S'), utc[1].strftime('%Y-%m-%dT%H:%M:%SZ'),
         utc[2].astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat(),
         utc[3].strftime('%Y-%m-%d %H:%M:%S+00:00')]
  _write_csv(tmp_path / 'iso.csv', [(u, i, r, t) for (u, i, r, _), t in zip(LOG, iso)])
  np.testing.assert_array_equal(_read(tmp_path / 'iso.csv').times, [r[3] for r in LOG])
  (tmp_path / 'iso.jsonl').write_text(''.join(json.dumps(dict(zip(NAMES, (u, i, r, t)))) + '\n'
                                              for (u, i, r, _), t in zip(LOG, iso)))
  np.testing.assert_array_equal(_read(tmp_path / 'iso.jsonl').times, [r[3] for r in LOG])


# ---------------------------------------------------------------------------------------------------------------
# Evaluation rows and training examples


def _tiny_log():
  """Three users (6, 4 and 3 interactions), item ids zero-padded so that their numbering follows their value."""
  rows = []
  for u, items in ((0, [1, 2, 3, 4, 5, 6]), (1, [7, 3, 8, 9]), (2, [10, 11, 2])):
    rows += [(u, f'i{i:02d}', 4, 100 * k + u) for k, i in enumerate(items)]
  return [rows[k] for k in np.random.default_rng(2).permutation(len(rows))]


def test_eval_rows_hold_target_first_unseen_negatives_and_the_latest_history(tmp_path):
  rows = _tiny_log()
  path = _write_csv(tmp_path / 'log.csv', rows)
  d = _data_config(path, eval_negatives=5, max_history=3)
  s = interactions.load(d)
  assert s.report['num_items'] == 11 and s.report['item_rows'] == 128
  mine = {u: [int(i[1:]) for _, i, _, _ in sorted((r for r in rows if r[0] == u), key=lambda r: r[3])]
          for u in range(3)}
  for role, back in (('test', 1), ('validation', 2)):
    source = getattr(s, role)
    batch = source.get_batch(np.arange(len(source)))
    assert batch['candidates'].shape == (3, 6)
    np.testing.assert_array_equal(batch['candidates'][:, 0], batch['target'])
    for b, u in enumerate(batch['user']):
      seq = mine[u]
      assert batch['target'][b] == seq[-back]
      before = seq[:len(seq) - back]
      assert list(batch['history'][b]) == [0] * (3 - len(before[-3:])) + before[-3:]
      assert sorted(batch['seen'][b][batch['seen'][b] > 0]) == sorted(before)  # every item before, untruncated
      negatives = batch['candidates'][b, 1:]
      assert not set(negatives.tolist()) & set(seq) and ((negatives >= 1) & (negatives <= 11)).all()
  again = interactions.load(d)  # the sampled candidates are fixed by data.split_seed
  np.testing.assert_array_equal(again.test.get_batch(np.arange(3))['candidates'],
                                s.test.get_batch(np.arange(3))['candidates'])
  train = s.train.get_batch(np.arange(len(s.train)), rng=np.random.default_rng(0))
  assert sorted(zip(train['user'].tolist(), train['item'].tolist())) == sorted(
      (u, i) for u in range(3) for i in mine[u][:-2])
  for u, negative in zip(train['user'], train['negatives'][:, 0]):
    assert negative not in mine[u][:-2]


def test_training_sequences_hold_only_training_interactions(tmp_path):
  rows = _tiny_log()
  s = interactions.load(_data_config(_write_csv(tmp_path / 'log.csv', rows), examples='sequences', max_history=2,
                                     train_negatives=2, eval_negatives=1))
  mine = {u: [int(i[1:]) for _, i, _, _ in sorted((r for r in rows if r[0] == u), key=lambda r: r[3])]
          for u in range(3)}
  batch = s.train.get_batch(np.arange(len(s.train)), rng=np.random.default_rng(0))
  assert batch['negatives'].shape == batch['history'].shape + (2,)
  windows = {}
  for u, history, targets in zip(batch['user'], batch['history'], batch['targets']):
    assert set(history.tolist()) - {0} <= set(mine[u][:-2]) and set(targets.tolist()) - {0} <= set(mine[u][:-2])
    windows.setdefault(int(u), []).append((history.tolist(), targets.tolist()))
  # user 0's four training items 1, 2, 3, 4 cut from the end into windows of 2: [2, 3] -> [3, 4], then [0, 1] -> [0, 2]
  assert sorted(windows[0]) == sorted([([2, 3], [3, 4]), ([0, 1], [0, 2])])
