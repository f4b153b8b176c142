"""Per-task losses. Classification: softmax cross-entropy with (traced) label smoothing and an optional mask."""
import jax
import jax.numpy as jnp
import optax


def classification_loss(logits: jax.Array, labels: jax.Array, *, label_smoothing=0.0) -> jax.Array:
  """Per-example cross-entropy [B]; `label_smoothing` may be a traced scalar."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  targets = optax.smooth_labels(targets, jnp.asarray(label_smoothing, logits.dtype))
  return optax.softmax_cross_entropy(logits, targets)

