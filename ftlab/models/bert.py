"""A BERT-family text encoder (BERT, MiniLM; RoBERTa-style positions by a switch) that computes what Hugging Face's
BertModel computes, so that imported weights (ftlab.pretrained.hf) give the same hidden states.

Post-LN transformer: embeddings (word + position + token type, layer norm, dropout), then per layer
x = LN(x + dropout(attention(x))) and x = LN(x + dropout(fc2(gelu(fc1(x))))). Dropout rates are traced values
(ftlab.models.layers.dropout), so a sweep over them compiles once. With `dtype=bfloat16` the matmuls run in bfloat16
while parameters stay float32; layer norms and the attention softmax run in float32.

Parameter paths (under the classifier's 'backbone'), chosen so that the layer regex r'_(\\d+)/' finds only the layer:
  embeddings/{word,position,token_type}/embedding, embeddings/norm/{scale,bias},
  layer_{i}/attention/{query,key,value,out}/{kernel,bias}, layer_{i}/attention_norm/{scale,bias},
  layer_{i}/mlp/{fc1,fc2}/{kernel,bias}, layer_{i}/mlp_norm/{scale,bias}.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The shape of an encoder: what Hugging Face's config.json says (see ftlab.pretrained.hf.read_config)."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  # RoBERTa: positions count from pad_token_id + 1 over non-padding tokens (padding gets pad_token_id); 0 for BERT.
  position_offset: int = 0
  initializer_range: float = 0.02


class Attention(nn.Module):
  """Multi-head self-attention with explicit query/key/value/out projections (plain 2-D kernels, LoRA-able)."""
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, attention_mask, *, attention_dropout_rate, train: bool):
    """attention_mask [B, 1 or L, L]: which keys each query (or every query) may attend to."""
    config = self.config
    head_dim = config.hidden_size // config.num_heads
    dense = lambda name: nn.Dense(config.hidden_size, dtype=self.dtype, name=name,
                                  kernel_init=nn.initializers.normal(config.initializer_range))
    rows = x.reshape(-1, config.hidden_size)  # [B*L, H]: see FeedForward
    split = lambda t: t.reshape(x.shape[:2] + (config.num_heads, head_dim))
    q, k, v = (split(dense(n)(rows)) for n in ('query', 'key', 'value'))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(head_dim))
    big_negative = jnp.finfo(jnp.float32).min
    scores = jnp.where(attention_mask[:, None] > 0, scores, big_negative)
    probs = dropout(self, jax.nn.softmax(scores, axis=-1), attention_dropout_rate, train=train).astype(self.dtype)
    context = jnp.einsum('bhqk,bkhd->bqhd', probs, v).reshape(-1, config.hidden_size)
    return dense('out')(context).reshape(x.shape)


class FeedForward(nn.Module):
  """fc2(gelu(fc1(x))), GELU exact (erf) as BERT's 'gelu'.

  The dense layers see the tokens as rows of a matrix [B*L, H] (a free reshape): XLA:CPU computes the kernel's
  gradient of a [B, L, H] input, a contraction over two axes, about 4x slower than that of the same [B*L, H] one.
  """
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    config = self.config
    dense = lambda size, name: nn.Dense(size, dtype=self.dtype, name=name,
                                        kernel_init=nn.initializers.normal(config.initializer_range))
    rows = x.reshape(-1, x.shape[-1])
    h = nn.gelu(dense(config.intermediate_size, 'fc1')(rows), approximate=False)
    return dense(config.hidden_size, 'fc2')(h).reshape(x.shape[:-1] + (config.hidden_size,))


class Layer(nn.Module):
  """One post-LN transformer layer."""
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, attention_mask, dropout_rate, attention_dropout_rate, train: bool):
    config = self.config
    norm = lambda name: nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, name=name)
    a = Attention(config, self.dtype, name='attention')(x, attention_mask,
                                                         attention_dropout_rate=attention_dropout_rate, train=train)
    x = norm('attention_norm')(x + dropout(self, a, dropout_rate, train=train)).astype(self.dtype)
    h = FeedForward(config, self.dtype, name='mlp')(x)
    return norm('mlp_norm')(x + dropout(self, h, dropout_rate, train=train)).astype(self.dtype)


class Embeddings(nn.Module):
  """word + position + token type embeddings, then a layer norm (float32)."""
  config: BertConfig

  @nn.compact
  def __call__(self, ids, positions, types):
    config = self.config
    embed = lambda n, name: nn.Embed(n, config.hidden_size, name=name,
                                     embedding_init=nn.initializers.normal(config.initializer_range))
    x = embed(config.vocab_size, 'word')(ids) + embed(config.max_position, 'position')(positions)
    x = x + embed(config.type_vocab_size, 'token_type')(types)
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, name='norm')(x)


class BertEncoder(nn.Module):
  """{'input_ids', 'attention_mask', 'token_type_ids'} [B, L] -> last hidden states [B, L, H] (compute dtype).

  Packed rows (several examples in one row) add 'segment_ids' [B, L] (the example's number in its row from 1, 0 on
  padding) and 'positions' [B, L] (restarting at 0 for each example): a token attends only to its own example's
  tokens, so each example's hidden states are those it has alone (up to float rounding)."""
  config: BertConfig
  dtype: Any = jnp.float32
  # Recompute each layer's activations in the backward pass instead of keeping them (jax.checkpoint): about a third
  # more compute for a fraction of the activation memory (a vectorised group keeps K trials' activations)
  remat: bool = False

  @nn.compact
  def __call__(self, inputs: dict, *, dropout_rate=0.0, attention_dropout_rate=0.0, train: bool = False):
    config = self.config
    ids, mask = inputs['input_ids'], inputs['attention_mask']
    types = inputs.get('token_type_ids')
    types = jnp.zeros_like(ids) if types is None else types
    segments = inputs.get('segment_ids')
    if segments is not None:  # packed: a token sees its own example's tokens; positions restart per example
      attention = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
      positions = inputs['positions']
    else:  # one example per row: every token sees the row's real tokens
      attention = mask[:, None, :]
      positions = (jnp.cumsum(mask, axis=1) - 1 if config.position_offset
                   else jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape))
    if config.position_offset:  # RoBERTa: padding_idx + 1, + 2, ... over real tokens; padding_idx on padding
      positions = jnp.where(mask > 0, positions + config.position_offset, config.position_offset - 1)
    x = Embeddings(config, name='embeddings')(ids, positions, types)
    x = dropout(self, x, dropout_rate, train=train).astype(self.dtype)
    layer = nn.remat(Layer, static_argnums=(5,)) if self.remat else Layer  # (self is argument 0: train is 5)
    for i in range(config.num_layers):
      x = layer(config, self.dtype, name=f'layer_{i}')(x, attention, dropout_rate, attention_dropout_rate, train)
    return x
