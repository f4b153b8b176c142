"""Loss-side knobs: label smoothing and class weights."""
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from conftest import small_config
from ftlab import data, tasks, train


def test_class_weighted_loss_is_the_weighted_mean():
  logits = jax.random.normal(jax.random.key(0), (6, 3))
  labels = jnp.array([0, 1, 2, 2, 1, 0])
  weights = jnp.array([1.0, 2.0, 0.5])
  losses = tasks.classification_loss(logits, labels)
  w = np.array([1.0, 2.0, 0.5, 0.5, 2.0, 1.0])
  np.testing.assert_allclose(tasks.weighted_mean(losses, labels, weights), np.sum(w * losses) / w.sum(), rtol=1e-6)
  np.testing.assert_allclose(tasks.weighted_mean(losses, labels, jnp.ones(3)), losses.mean(), rtol=1e-6)


def test_label_smoothing_matches_its_closed_form():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  log_p = jax.nn.log_softmax(logits)[0]
  target = np.array([1 - 0.3 + 0.1, 0.1, 0.1])
  np.testing.assert_allclose(tasks.classification_loss(logits, jnp.array([0]), label_smoothing=0.3)[0],
                             -np.sum(target * log_p), rtol=1e-6)


def test_balanced_class_weights_equal_sklearns():
  config = small_config(train__balance_classes=True, data__classes=[5, 6, 7])
  splits = data.load(config.data)
  expected = compute_class_weight('balanced', classes=np.arange(3), y=splits.train.labels)
  np.testing.assert_allclose(train.class_weights(config.train, splits), expected, rtol=1e-6)
  explicit = small_config(train__class_weights=[1.0, 2.0, 3.0, 4.0, 5.0])
  assert train.class_weights(explicit.train, data.load(explicit.data)).tolist() == [1, 2, 3, 4, 5]


def test_class_weight_count_must_match_the_classes(tmp_path):
  import pytest
  from ftlab import config as config_lib
  with pytest.raises(config_lib.ConfigError, match=r'train.class_weights: 2 weights for 5 classes \(5, 6, 7, 8, 9\)'):
    train.plan(small_config(train__class_weights=[1.0, 2.0]), str(tmp_path))
  assert list(tmp_path.iterdir()) == []
