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
