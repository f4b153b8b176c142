"""A Llama-family decoder in Flax linen: RMSNorm, rotary embeddings (with linear or Llama-3 scaling), grouped-query
attention, SwiGLU, a tied or untied output head, a causal mask confined to each packed example (segment ids), and a
KV cache for generation.

Qwen2, Mistral and Gemma differ from Llama only in switches of `DecoderConfig`: biases on q/k/v (Qwen2), a sliding
attention window (Mistral), RMSNorm scaling by (1 + w), embeddings scaled by sqrt(hidden) and a tanh-GELU gate
(Gemma). Parameter names follow Hugging Face's (model/layers_3/self_attn/q_proj/kernel for
model.layers.3.self_attn.q_proj.weight), so imports and exports are renames and transposes, and LoRA targets,
freezing regexes and layer-wise decay read the names researchers know.

Inputs are dicts: 'input_ids' [B, L], 'positions' [B, L] (restarting at 0 for each packed example) and
'segment_ids' [B, L] (1, 2, ... per example in a row; 0 is padding, which attends nowhere and nothing attends to).
With `cache` (see `init_cache`) the tokens are written at the cache's end and attend to every valid earlier slot.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout

ACTIVATIONS = {'silu': nn.silu, 'gelu_tanh': lambda x: nn.gelu(x, approximate=True)}


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """The shape and variant of a decoder (SmolLM2-135M's by default)."""
  vocab_size: int = 49152
  hidden_size: int = 576
  intermediate_size: int = 1536
  num_layers: int = 30
  num_heads: int = 9
  num_kv_heads: int = 3
  head_dim: int = 64
  rope_theta: float = 100000.0
  rope_scaling: tuple = ()  # sorted (key, value) items of Hugging Face's rope_scaling; () is none
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  qkv_bias: bool = False  # Qwen2; Llama's attention_bias puts biases on o_proj too
  o_bias: bool = False
  mlp_bias: bool = False
  activation: str = 'silu'  # SwiGLU; 'gelu_tanh' for Gemma's GeGLU
  norm_offset: float = 0.0  # Gemma: RMSNorm multiplies by (1 + weight)
  embed_scale: bool = False  # Gemma: embeddings times sqrt(hidden_size)
  sliding_window: int = 0  # Mistral: attend to at most this many previous positions; 0 is unlimited
  max_position: int = 2048
  initializer_range: float = 0.02

  @property
  def scaling(self) -> dict:
    return dict(self.rope_scaling)


def rope_frequencies(config: DecoderConfig) -> jax.Array:
  """The inverse frequencies [head_dim / 2] of the rotary embedding, with the config's scaling."""
  d = config.head_dim
  inv = 1.0 / (config.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  scaling = config.scaling
  kind = scaling.get('rope_type', scaling.get('type', 'default'))
  if kind in ('default', None):
    return inv
  if kind == 'linear':
    return inv / scaling['factor']
  if kind == 'llama3':
    return _llama3_frequencies(inv, scaling)
  raise ValueError(f"rope_scaling type {kind!r} is not supported; use 'linear' or 'llama3' (or none)")


def _llama3_frequencies(inv: jax.Array, s: dict) -> jax.Array:
  """Llama 3.1's scaling: long wavelengths divided by `factor`, short kept, a smooth blend between."""
  factor, low, high = s['factor'], s['low_freq_factor'], s['high_freq_factor']
  old = s['original_max_position_embeddings']
  wavelen = 2 * math.pi / inv
  scaled = jnp.where(wavelen > old / low, inv / factor, inv)
  smooth = (old / wavelen - low) / (high - low)
  blended = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old / high) & (wavelen <= old / low)
  return jnp.where(medium, blended, scaled)


def rotate(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
  """Rotary embedding of x [B, L, heads, D] at `positions` [B, L] (Hugging Face's half-split layout)."""
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
  cos = jnp.cos(jnp.concatenate([angles, angles], -1))[:, :, None, :]
  sin = jnp.sin(jnp.concatenate([angles, angles], -1))[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], -1)
  return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


class RMSNorm(nn.Module):
  eps: float
  offset: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros if self.offset else nn.initializers.ones
    scale = self.param('scale', init, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * (self.offset + scale)).astype(self.dtype)


def attention_mask(q_slots, k_slots, q_segments, k_segments, *, window: int = 0) -> jax.Array:
  """[B, 1, Lq, Lk] True where a query may attend to a key: an earlier or the same slot of its own segment
  (segment 0 is padding), within `window` slots when it is > 0."""
  ok = (k_slots[:, None, :] <= q_slots[:, :, None]) & (q_segments[:, :, None] == k_segments[:, None, :])
  ok &= (k_segments > 0)[:, None, :]
  if window:
    ok &= k_slots[:, None, :] > q_slots[:, :, None] - window
  return ok[:, None]


class Attention(nn.Module):
  config: DecoderConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, positions, mask_fn, *, attention_dropout_rate, train: bool, cache=None):
    c = self.config
    dense = lambda n, bias, name: nn.Dense(n, use_bias=bias, dtype=self.dtype, name=name,
                                           kernel_init=nn.initializers.normal(c.initializer_range))
    b, length = x.shape[:2]
    q = dense(c.num_heads * c.head_dim, c.qkv_bias, 'q_proj')(x).reshape(b, length, c.num_heads, c.head_dim)
    k = dense(c.num_kv_heads * c.head_dim, c.qkv_bias, 'k_proj')(x).reshape(b, length, c.num_kv_heads, c.head_dim)
    v = dense(c.num_kv_heads * c.head_dim, c.qkv_bias, 'v_proj')(x).reshape(b, length, c.num_kv_heads, c.head_dim)
    inv_freq = rope_frequencies(c)
    q, k = rotate(q, positions, inv_freq), rotate(k, positions, inv_freq)
    new_cache = None
    if cache is not None:  # write this chunk at the cache's end; attend over the whole cache
      at = (0, cache['end'], 0, 0)
      k = jax.lax.dynamic_update_slice(cache['k'], k.astype(cache['k'].dtype), at)
      v = jax.lax.dynamic_update_slice(cache['v'], v.astype(cache['v'].dtype), at)
      new_cache = {'k': k, 'v': v}
    group = c.num_heads // c.num_kv_heads
    q = q.reshape(b, length, c.num_kv_heads, group, c.head_dim)
    scores = jnp.einsum('bqkgd,btkd->bkgqt', q, k.astype(q.dtype)).astype(jnp.float32) / math.sqrt(c.head_dim)
    mask = mask_fn(k.shape[1])[:, :, None]  # [B, 1, 1, Lq, Lk]
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1) * jnp.any(mask, axis=-1, keepdims=True)  # padding queries: all zero
    probs = dropout(self, probs, attention_dropout_rate, train=train).astype(self.dtype)
    out = jnp.einsum('bkgqt,btkd->bqkgd', probs, v.astype(self.dtype)).reshape(b, length, c.num_heads * c.head_dim)
    return dense(c.hidden_size, c.o_bias, 'o_proj')(out), new_cache


class MLP(nn.Module):
  config: DecoderConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    dense = lambda n, name: nn.Dense(n, use_bias=c.mlp_bias, dtype=self.dtype, name=name,
                                     kernel_init=nn.initializers.normal(c.initializer_range))
    gate = ACTIVATIONS[c.activation](dense(c.intermediate_size, 'gate_proj')(x))
    return dense(c.hidden_size, 'down_proj')(gate * dense(c.intermediate_size, 'up_proj')(x))


class DecoderLayer(nn.Module):
  config: DecoderConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, positions, mask_fn, *, dropout_rate, attention_dropout_rate, train: bool, cache=None):
    c = self.config
    norm = lambda name: RMSNorm(c.norm_eps, c.norm_offset, self.dtype, name=name)
    a, new_cache = Attention(c, self.dtype, name='self_attn')(
        norm('input_layernorm')(x), positions, mask_fn, attention_dropout_rate=attention_dropout_rate, train=train,
        cache=cache)
    x = x + dropout(self, a, dropout_rate, train=train)
    h = MLP(c, self.dtype, name='mlp')(norm('post_attention_layernorm')(x))
    return x + dropout(self, h, dropout_rate, train=train), new_cache


class DecoderModel(nn.Module):
  """Embeddings, the layers and the final norm: hidden states [B, L, H] (and the updated cache)."""
  config: DecoderConfig
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    c = self.config
    self.embed_tokens = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=nn.initializers.normal(
        c.initializer_range))
    self.layers = [DecoderLayer(c, self.dtype, name=f'layers_{i}') for i in range(c.num_layers)]
    self.norm = RMSNorm(c.norm_eps, c.norm_offset, self.dtype)

  def __call__(self, inputs: dict, *, dropout_rate, attention_dropout_rate, train: bool, cache=None):
    c = self.config
    ids = inputs['input_ids']
    x = self.embed_tokens(ids).astype(self.dtype)
    if c.embed_scale:
      x = x * jnp.asarray(math.sqrt(c.hidden_size), self.dtype)
    mask_fn, positions = _mask_fn(inputs, cache, window=c.sliding_window)
    x = dropout(self, x, dropout_rate, train=train)
    new_layers = []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else {'k': cache['k'][i], 'v': cache['v'][i], 'end': cache['end']}
      x, updated = layer(x, positions, mask_fn, dropout_rate=dropout_rate,
                         attention_dropout_rate=attention_dropout_rate, train=train, cache=layer_cache)
      new_layers.append(updated)
    new_cache = None
    if cache is not None:
      new_cache = {'k': jnp.stack([u['k'] for u in new_layers]), 'v': jnp.stack([u['v'] for u in new_layers]),
                   'segments': _cache_segments(cache, inputs), 'end': cache['end'] + ids.shape[1]}
    return self.norm(x), new_cache

  def attend(self, h):
    return self.embed_tokens.attend(h)


def _cache_segments(cache, inputs):
  """The cache's per-slot segment ids after writing this chunk (1 for a real token, 0 for padding)."""
  segments = inputs.get('segment_ids', jnp.ones_like(inputs['input_ids']))
  return jax.lax.dynamic_update_slice(cache['segments'], segments.astype(cache['segments'].dtype), (0, cache['end']))


def _mask_fn(inputs: dict, cache, *, window: int):
  """(key length -> attention mask, positions) for a packed batch, or for a chunk written into `cache`."""
  ids = inputs['input_ids']
  b, length = ids.shape
  segments = inputs.get('segment_ids', jnp.ones_like(ids))
  positions = inputs.get('positions', jnp.broadcast_to(jnp.arange(length), ids.shape))
  slots = jnp.broadcast_to(jnp.arange(length), ids.shape)
  if cache is None:
    return (lambda _: attention_mask(slots, slots, segments, segments, window=window)), positions
  q_slots = slots + cache['end']
  k_segments = _cache_segments(cache, inputs)
  k_slots = jnp.broadcast_to(jnp.arange(k_segments.shape[1]), k_segments.shape)
  # In a cache every valid slot is segment 1 of its row: a query of segment 1 sees all valid earlier slots.
  return (lambda _: attention_mask(q_slots, k_slots, segments, k_segments, window=window)), positions


class CausalLM(nn.Module):
  """The decoder with its output head: logits [B, L, vocab] in float32 (and the updated cache when given one)."""
  config: DecoderConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: dict, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False, cache=None, last_only: bool = False):
    """`last_only`: the logits of the last position alone ([B, 1, vocab]; a prefill needs no others, and a batch
    of prompts' logits over the whole vocabulary would take gigabytes)."""
    c = self.config
    model = DecoderModel(c, self.dtype, name='model')
    h, new_cache = model(inputs, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                         train=train, cache=cache)
    h = h[:, -1:] if last_only else h
    h = dropout(self, h, head_dropout_rate, train=train)
    if c.tie_embeddings:
      logits = model.attend(h.astype(jnp.float32))
    else:
      logits = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype, name='lm_head',
                        kernel_init=nn.initializers.normal(c.initializer_range))(h)
    logits = logits.astype(jnp.float32)
    return logits if cache is None else (logits, new_cache)


def init_cache(config: DecoderConfig, batch: int, length: int, dtype=jnp.float32) -> dict:
  """An empty KV cache of `length` slots per row: keys and values per layer, each slot's segment (0 = empty or
  padding) and where the next chunk is written."""
  shape = (config.num_layers, batch, length, config.num_kv_heads, config.head_dim)
  return {'k': jnp.zeros(shape, dtype), 'v': jnp.zeros(shape, dtype), 'segments': jnp.zeros((batch, length), jnp.int32),
          'end': jnp.zeros((), jnp.int32)}
