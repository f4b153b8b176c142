"""Param surgery: pretrained parameters go in by path; re-init by regex; shape mismatches name everything."""
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.pretrained import surgery


def _fresh():
  return {'backbone': {'dense_0': {'kernel': jnp.zeros((4, 3)), 'bias': jnp.zeros(3)}},
          'head': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)}}


def test_merge_loads_by_path_and_reinitialises_by_regex():
  loaded = {'backbone': {'dense_0': {'kernel': np.ones((4, 3)), 'bias': np.ones(3)}},
            'head': {'kernel': np.ones((3, 7)), 'bias': np.ones(7)}, 'extra': {'w': np.ones(1)}}
  params, report = surgery.merge(_fresh(), loaded, reinit='^head/')
  np.testing.assert_array_equal(params['backbone']['dense_0']['kernel'], np.ones((4, 3)))
  np.testing.assert_array_equal(params['head']['kernel'], np.zeros((3, 2)))
  assert report['loaded'] == ['backbone/dense_0/bias', 'backbone/dense_0/kernel']
  assert report['reinitialised'] == ['head/bias', 'head/kernel']
  assert report['unexpected'] == ['extra/w'] and report['missing'] == []


def test_shape_mismatch_names_parameter_shapes_and_config_key():
  loaded = {'backbone': {'dense_0': {'kernel': np.ones((4, 3)), 'bias': np.ones(3)}},
            'head': {'kernel': np.ones((3, 7)), 'bias': np.ones(7)}}
  with pytest.raises(surgery.SurgeryError, match=r'head/kernel: checkpoint \(3, 7\) vs model \(3, 2\).*init\.reinit'):
    surgery.merge(_fresh(), loaded, reinit='')


def test_missing_parameters_stay_fresh_and_are_reported():
  params, report = surgery.merge(_fresh(), {'head': {'kernel': np.ones((3, 2))}})
  assert report['missing'] == ['backbone/dense_0/bias', 'backbone/dense_0/kernel', 'head/bias']
  np.testing.assert_array_equal(params['head']['kernel'], np.ones((3, 2)))


def test_loading_from_an_unfinished_run_is_a_clear_error(tmp_path):
  with pytest.raises(surgery.SurgeryError, match='no summary.json; finish that run'):
    surgery.load_run_params(str(tmp_path), _fresh(), reinit='')


def test_drop_reinit_cast_and_resize_rows():
  tree = {'backbone': {'dense_0': {'kernel': np.ones((4, 3), np.float32)}}, 'head': {'kernel': np.ones((3, 2))}}
  assert surgery.drop(tree, '^head/') == {'backbone': tree['backbone']}
  fresh = _fresh()
  mixed = surgery.reinit(tree, fresh, '^head/')
  np.testing.assert_array_equal(mixed['head']['kernel'], fresh['head']['kernel'])
  np.testing.assert_array_equal(mixed['backbone']['dense_0']['kernel'], np.ones((4, 3)))
  cast = surgery.cast({'w': jnp.ones(2), 'ids': jnp.arange(2)}, jnp.bfloat16)
  assert cast['w'].dtype == jnp.bfloat16 and cast['ids'].dtype == jnp.arange(2).dtype  # integers stay
  table = np.arange(12, dtype=np.float32).reshape(4, 3)
  np.testing.assert_array_equal(surgery.resize_rows(table, 2), table[:2])
  grown = surgery.resize_rows(table, 6, np.full((6, 3), 7.0))
  np.testing.assert_array_equal(grown[:4], table)
  np.testing.assert_array_equal(grown[4:], np.full((2, 3), 7.0))
  with pytest.raises(surgery.SurgeryError, match=r'emb: resize_rows takes a 2-D embedding table, got shape \(3,\)'):
    surgery.resize_rows(np.zeros(3), 2, path='emb')


def test_mismatches_are_found_on_abstract_shapes_before_any_compute():
  import jax
  abstract = jax.eval_shape(_fresh)
  loaded = {'head': {'kernel': np.ones((3, 7))}}
  assert surgery.mismatches(abstract, loaded) == ['head/kernel: checkpoint (3, 7) vs model (3, 2)']
  assert surgery.mismatches(abstract, loaded, reinit='^head/') == []
