"""Decoding with a KV cache: `generate(apply, config, prompts, segments, ...)` prefills left-padded prompts in one
pass, then decodes one token per step in a lax.scan, so a batch of prompts compiles to one program per shape.

Greedy at temperature 0; otherwise sampled from softmax(logits / temperature) restricted to the top_k tokens (0:
all) and to the smallest set whose probability reaches top_p (1: all). After a row's end-of-sequence token it
emits only end-of-sequence tokens.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ftlab.models import llama


def _filtered(logits: jax.Array, *, top_k: int, top_p: float) -> jax.Array:
  """Logits [B, V] with the tokens outside top-k / top-p set to -inf."""
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]
    cumulative = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1)
    keep = jnp.sum(cumulative - jax.nn.softmax(ordered, axis=-1) < top_p, axis=-1, keepdims=True)  # >= 1 token
    cutoff = jnp.take_along_axis(ordered, keep - 1, axis=-1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return logits


def pick(logits: jax.Array, rng, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """The next token of each row of logits [B, V]."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = _filtered(logits.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def generate(apply: Callable, config: llama.DecoderConfig, prompts: jax.Array, segments: jax.Array, *,
             max_new_tokens: int, eos_id: int, rng=None, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, cache_dtype=jnp.float32) -> jax.Array:
  """New tokens [B, max_new_tokens] after `prompts` [B, P] (left-padded: `segments` 1 on real tokens, 0 on padding).
  `apply(inputs, cache) -> (logits, cache)` runs the model on a chunk."""
  b, p = prompts.shape
  rng = jax.random.key(0) if rng is None else rng
  keys = jax.random.split(rng, max_new_tokens)
  sample = lambda logits, key: pick(logits, key, temperature=temperature, top_k=top_k, top_p=top_p)
  cache = llama.init_cache(config, b, p + max_new_tokens, cache_dtype)
  positions = jnp.maximum(jnp.cumsum(segments, axis=1) - 1, 0)
  logits, cache = apply({'input_ids': prompts, 'positions': positions, 'segment_ids': segments}, cache)
  first = sample(logits[:, -1], keys[0])
  ones = jnp.ones((b, 1), jnp.int32)

  def step(carry, key):
    token, position, done, cache = carry
    logits, cache = apply({'input_ids': token[:, None], 'positions': position[:, None], 'segment_ids': ones}, cache)
    token = jnp.where(done, eos_id, sample(logits[:, 0], key))
    return (token, position + 1, done | (token == eos_id), cache), token

  carry = (first, positions[:, -1] + 1, first == eos_id, cache)
  _, rest = jax.lax.scan(step, carry, keys[1:])
  return jnp.concatenate([first[:, None], rest.T], axis=1)
