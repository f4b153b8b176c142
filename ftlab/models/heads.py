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
  Packed rows (see BertEncoder) with 'starts' [B, S] (where each of the row's S example slots starts; -1: empty)
  pool each example on its own: pooled [B, S, H], logits [B, S, C].
  """
  backbone: nn.Module
  num_classes: int
  pooling: str = 'cls'
  init_std: float = 0.02

  @nn.compact
  def __call__(self, inputs: dict, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False) -> jax.Array:
    h = self.backbone(inputs, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, train=train)
    starts = inputs.get('starts')
    if self.pooling == 'mean':
      if starts is None:
        members = inputs['attention_mask'][..., None]  # [B, L, 1]: the row's one example
      else:  # [B, L, S]: the tokens of each example slot
        members = inputs['segment_ids'][..., None] == jnp.arange(1, starts.shape[1] + 1)
      members = members.astype(jnp.float32)
      total = jnp.einsum('bls,blh->bsh', members, h.astype(jnp.float32))
      pooled = (total / jnp.maximum(members.sum(axis=1), 1.0)[..., None]).astype(h.dtype)
      pooled = pooled[:, 0] if starts is None else pooled
    else:
      pooled = h[:, 0] if starts is None else jnp.take_along_axis(h, jnp.maximum(starts, 0)[..., None], axis=1)
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


