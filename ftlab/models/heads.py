"""Task heads: a backbone's features -> logits, for image classification, sequence classification (CLS token,
BERT's pooler, or mean pooling) and token classification.

Every classifier is called as `model.apply(variables, inputs, *, dropout_rate, attention_dropout_rate,
head_dropout_rate, train)` with traced rates: hidden dropout inside the backbone, dropout on attention
probabilities (transformers), and dropout on the features the head reads. The head is always the top-level
module 'head' (and BERT's pooler 'pooler'), so '^head/' names it for re-initialisation, LP-FT and layer decay.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout

POOLINGS = ('cls', 'mean', 'pooler')


class Classifier(nn.Module):
  """backbone (images -> features [B, F]) -> dropout -> dense head producing `num_classes` logits."""
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False) -> jax.Array:
    x = self.backbone(x, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, train=train)
    x = dropout(self, x, head_dropout_rate, train=train)
    return nn.Dense(self.num_classes, name='head')(x).astype(jnp.float32)


def _text_head(module: nn.Module, x, num_classes: int, rate, train: bool, init_std: float):
  x = dropout(module, x, rate, train=train)
  dense = nn.Dense(num_classes, dtype=x.dtype, kernel_init=nn.initializers.normal(init_std), name='head')
  return dense(x).astype(jnp.float32)


class SequenceClassifier(nn.Module):
  """encoder (token inputs -> hidden [B, L, H]) -> pooled [B, H] -> dropout -> head [B, C].

  pooling: 'cls' (the first token's hidden state), 'pooler' (BERT's dense + tanh on it, as Hugging Face's
  BertForSequenceClassification) or 'mean' (the mean over real tokens, as sentence-transformers embeds).
  """
  backbone: nn.Module
  num_classes: int
  pooling: str = 'cls'
  init_std: float = 0.02

  @nn.compact
  def __call__(self, inputs: dict, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False) -> jax.Array:
    h = self.backbone(inputs, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, train=train)
    if self.pooling == 'mean':
      mask = inputs['attention_mask'][..., None].astype(jnp.float32)
      pooled = (jnp.sum(h.astype(jnp.float32) * mask, axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)).astype(h.dtype)
    else:
      pooled = h[:, 0]
      if self.pooling == 'pooler':
        pooled = jnp.tanh(nn.Dense(h.shape[-1], dtype=h.dtype, kernel_init=nn.initializers.normal(self.init_std),
                                   name='pooler')(pooled))
    return _text_head(self, pooled, self.num_classes, head_dropout_rate, train, self.init_std)


class TokenClassifier(nn.Module):
  """encoder -> hidden [B, L, H] -> dropout -> head [B, L, C]: one prediction per token (NER tags)."""
  backbone: nn.Module
  num_classes: int
  init_std: float = 0.02

  @nn.compact
  def __call__(self, inputs: dict, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False) -> jax.Array:
    h = self.backbone(inputs, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, train=train)
    return _text_head(self, h, self.num_classes, head_dropout_rate, train, self.init_std)


