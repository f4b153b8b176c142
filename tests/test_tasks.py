"""Loss-side knobs: label smoothing and class weights."""
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from conftest import small_config
from ftlab import data, steps, tasks
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan


def test_class_weighted_training_gradient_is_that_of_the_weighted_mean(tmp_path):
  """sum(w[y] * loss) / sum(w[y]), as PyTorch's CrossEntropyLoss(weight=w) averages."""
  weights = [1.0, 2.0, 0.5, 3.0, 1.0]
  plan = make_plan(small_config(train__class_weights=weights, model__dropout_rate=0.0), str(tmp_path))
  state = initial_state(plan)
  batch = next(data.train_iterator(plan.splits.train, batch_size=32, seed=0))
  grads, losses, _, _ = jax.jit(lambda s, b: steps.accumulated_gradients(plan.model, plan.task, s, b,
                                                                           jax.random.key(0), 1))(state, batch)

  def weighted_mean(params):
    logits = plan.model.apply({'params': params}, batch['image'], dropout_rate=0.0)
    w = jnp.asarray(weights)[batch['label']]
    return jnp.sum(w * tasks.classification_loss(logits, batch['label'])) / jnp.sum(w)

  expected = jax.jit(jax.grad(weighted_mean))(state.params)
  for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


def test_label_smoothing_matches_its_closed_form():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  log_p = jax.nn.log_softmax(logits)[0]
  target = np.array([1 - 0.3 + 0.1, 0.1, 0.1])
  np.testing.assert_allclose(tasks.classification_loss(logits, jnp.array([0]), label_smoothing=0.3)[0],
                             -np.sum(target * log_p), rtol=1e-6)


def test_balanced_class_weights_equal_sklearns(tmp_path):
  plan = make_plan(small_config(train__balance_classes=True, data__classes=[5, 6, 7]), str(tmp_path / 'balanced'))
  expected = compute_class_weight('balanced', classes=np.arange(3), y=plan.splits.train.labels)
  np.testing.assert_allclose(plan.hparams['class_weights'], expected, rtol=1e-6)
  np.testing.assert_allclose(initial_state(plan).hparams['class_weights'], expected, rtol=1e-6)
  explicit = make_plan(small_config(train__class_weights=[1.0, 2.0, 3.0, 4.0, 5.0]), str(tmp_path / 'explicit'))
  assert explicit.hparams['class_weights'].tolist() == [1, 2, 3, 4, 5]


def test_class_weight_count_must_match_the_classes(tmp_path):
  import pytest
  from ftlab import config as config_lib
  with pytest.raises(config_lib.ConfigError, match=r'train.class_weights: 2 weights for 5 classes \(5, 6, 7, 8, 9\)'):
    make_plan(small_config(train__class_weights=[1.0, 2.0]), str(tmp_path))
  assert list(tmp_path.iterdir()) == []
