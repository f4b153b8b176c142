"""The small backbones of the quickstart: an MLP and a CNN (ftlab.models.heads.Classifier puts the head on).

Parameter paths are stable and readable ('backbone/dense_0/kernel', 'backbone/norm_0/scale', 'head/kernel') so that
freezing, weight-decay masks and pretrained import can name them by regex.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models.layers import dropout


class MLP(nn.Module):
  """Flattens its input; dense -> (layer norm) -> relu -> dropout for each width."""
  features: Sequence[int]
  norm: bool = True
  bn_frozen: bool = False  # no batch norm here; accepted so that every small backbone takes the same fields

  @nn.compact
  def __call__(self, x, *, dropout_rate, train: bool, attention_dropout_rate=0.0):
    del attention_dropout_rate  # no attention here
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.features):
      x = nn.Dense(width, name=f'dense_{i}')(x)
      if self.norm:
        x = nn.LayerNorm(name=f'norm_{i}')(x)
      x = dropout(self, nn.relu(x), dropout_rate, train=train)
    return x


class CNN(nn.Module):
  """3x3 convolutions -> (batch norm) -> relu for each width, then global average pooling. With `bn_frozen` the
  batch norms always normalise with their running statistics and never update them, in training too."""
  features: Sequence[int]
  norm: bool = True
  bn_frozen: bool = False

  @nn.compact
  def __call__(self, x, *, dropout_rate, train: bool, attention_dropout_rate=0.0):
    del attention_dropout_rate  # no attention here
    for i, width in enumerate(self.features):
      x = nn.Conv(width, (3, 3), name=f'conv_{i}')(x)
      if self.norm:
        x = nn.BatchNorm(use_running_average=not train or self.bn_frozen, momentum=0.9, name=f'batchnorm_{i}')(x)
      x = nn.relu(x)
    x = jnp.mean(x, axis=(1, 2))
    return dropout(self, x, dropout_rate, train=train)
