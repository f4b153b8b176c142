"""Decoding with a KV cache: `generate(apply, config, prompts, segments, ...)` prefills left-padded prompts in one
pass (`prefill`), then decodes one token per step in a lax.scan (`decode`), so a batch of prompts compiles to one
program per shape.

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


def prefill(apply: Callable, config: llama.DecoderConfig, prompts: jax.Array, segments: jax.Array, *, length: int,
            cache_dtype=jnp.float32):
  """(the logits after each left-padded prompt [B, V], the cache of `length` slots holding the prompts, the
  position of the next token [B])."""
  b, _ = prompts.shape
  cache = llama.init_cache(config, b, length, cache_dtype)
  positions = jnp.maximum(jnp.cumsum(segments, axis=1) - 1, 0)
  logits, cache = apply({'input_ids': prompts, 'positions': positions, 'segment_ids': segments}, cache,
                        last_only=True)
  return logits[:, -1], cache, positions[:, -1] + 1


def decode(apply: Callable, logits: jax.Array, cache, positions: jax.Array, *, max_new_tokens: int, eos_id: int,
           rng=None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """New tokens [B, max_new_tokens] from the logits of the next token [B, V] and the cache that produced them."""
  b = logits.shape[0]
  rng = jax.random.key(0) if rng is None else rng
  keys = jax.random.split(rng, max_new_tokens)
  sample = lambda logits, key: pick(logits, key, temperature=temperature, top_k=top_k, top_p=top_p)
  first = sample(logits, keys[0])
  ones = jnp.ones((b, 1), jnp.int32)

  def step(carry, key):
    token, position, done, cache = carry
    logits, cache = apply({'input_ids': token[:, None], 'positions': position[:, None], 'segment_ids': ones}, cache)
    token = jnp.where(done, eos_id, sample(logits[:, 0], key))
    return (token, position + 1, done | (token == eos_id), cache), token

  _, rest = jax.lax.scan(step, (first, positions, first == eos_id, cache), keys[1:])
  return jnp.concatenate([first[:, None], rest.T], axis=1)


def generate(apply: Callable, config: llama.DecoderConfig, prompts: jax.Array, segments: jax.Array, *,
             max_new_tokens: int, eos_id: int, rng=None, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, cache_dtype=jnp.float32) -> jax.Array:
  """New tokens [B, max_new_tokens] after `prompts` [B, P] (left-padded: `segments` 1 on real tokens, 0 on padding).
  `apply(inputs, cache, last_only=False) -> (logits, cache)` runs the model on a chunk (with `last_only`, the last
  position's logits alone)."""
  logits, cache, positions = prefill(apply, config, prompts, segments, length=prompts.shape[1] + max_new_tokens,
                                     cache_dtype=cache_dtype)
  return decode(apply, logits, cache, positions, max_new_tokens=max_new_tokens, eos_id=eos_id, rng=rng,
                temperature=temperature, top_k=top_k, top_p=top_p)
