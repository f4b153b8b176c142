"""Integrated gradients (Sundararajan et al., 2017), compiled: how much each input token or pixel moved the logit of
a chosen class away from its value at a baseline.

attribution_i = (x_i - x'_i) * integral over alpha in [0, 1] of d logit / d x_i at x' + alpha (x - x'), by
Gauss-Legendre quadrature with `steps` nodes (as Captum's default: far closer than the midpoint rule at the same
steps for smooth paths); the interpolated inputs go through the model and back CHUNK at a time. Completeness: the
attributions sum to logit(x) - logit(x') up to the rule's error, which shrinks with more steps (`completeness`
reports both sides).

- Text (BERT-family encoders): x is the word-embedding output of every token; the baseline puts the [PAD] token's
  word embedding at every real token (positions and token types unchanged). A token's attribution is the sum over
  its embedding's features. The embedding is replaced inside the model through flax's method interception, so the
  model needs no extra argument.
- Generations (decoder LMs): x is the token-embedding output of the prompt's tokens, the baseline the padding
  token's embedding at each; the generated tokens stay as they are. The attributed value is the generation's
  log-probability given the prompt (its tokens' log-probabilities summed, teacher-forced), so a prompt token's
  attribution says how much it made the model's answer likelier.
- Images (any image model, the quickstart's MLP included): x is the normalised image and the baseline all zeros
  (the dataset's mean colour under mean/std statistics, black under 'none'); a pixel's attribution is the sum over
  its channels. For a segmentation model the attributed value is one class's logits summed over a set of pixels
  (those it paints with that class).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


CHUNK = 32  # interpolated inputs per pass through the model: the memory of CHUNK forwards and backwards, not `steps`


def _mean_gradient(gradient, steps: int):
  """The integral over alpha in [0, 1] of `gradient(alphas [c], weights [c])` (a compiled gradient of the weighted
  sum of the attributed values at those alphas) by `steps`-point Gauss-Legendre quadrature, CHUNK alphas at a time
  (padding alphas weigh 0)."""
  nodes, weights = np.polynomial.legendre.leggauss(steps)
  size = min(steps, CHUNK)
  padded = -(-steps // size) * size
  alphas = np.pad((nodes + 1) / 2, (0, padded - steps), constant_values=0.5).astype(np.float32).reshape(-1, size)
  weights = np.pad(weights / 2, (0, padded - steps)).astype(np.float32).reshape(-1, size)
  total = 0.0
  for a, w in zip(alphas, weights):
    total = total + gradient(jnp.asarray(a), jnp.asarray(w))
  return total


def _logits(model, variables, inputs):
  return model.apply(variables, inputs, train=False)


EMBEDDINGS = ('word', 'embed_tokens')  # the token embedding's nn.Embed in BERT-family encoders and in decoders


def _word_embeddings(swap):
  """An interceptor that passes the token-embedding output (an nn.Embed named in EMBEDDINGS) through
  `swap(call, ids)`."""
  def interceptor(next_fun, args, kwargs, context):
    if (isinstance(context.module, nn.Embed) and context.module.name in EMBEDDINGS
        and context.method_name == '__call__'):
      return swap(lambda ids: next_fun(ids, *args[1:], **kwargs), args[0])
    return next_fun(*args, **kwargs)
  return interceptor


def _toward_input(pad_id, real, alpha, delta, seen: dict):
  """A word-embedding swap: the [PAD] baseline at real tokens moved `alpha` of the way to the token's own embedding,
  plus `delta` (whose gradient is the embedding's); `seen['diff']` keeps input minus baseline."""
  def swap(call, ids):
    word, base = call(ids), call(jnp.full_like(ids, pad_id))
    base = real * base + (1 - real) * word  # padding is not attributed
    seen['diff'] = word - base
    return base + alpha * (word - base) + delta
  return swap


def _class_value(logits, ids, target):
  del ids
  return _pick(logits, target)


def _generation_value(logits, ids, span):
  """The log-probability of the tokens at [prompt_length, end) = span, each given those before it."""
  prompt_length, end = span
  slots = jnp.arange(1, ids.shape[1])
  scored = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
  picked = jnp.take_along_axis(scored, ids[:, 1:, None], axis=-1)[..., 0]
  return jnp.sum(jnp.where((slots >= prompt_length) & (slots < end), picked, 0.0), axis=1)


VALUES = {'class': _class_value, 'generation': _generation_value}


def _score(model, value: str, variables, rows: dict, real, pad_id, arg, delta, alpha, weights=1.0):
  """(the weighted sum of the attributed values of `rows` with their embeddings swapped, input minus baseline)."""
  seen = {}
  with nn.intercept_methods(_word_embeddings(_toward_input(pad_id, real, alpha, delta, seen))):
    logits = _logits(model, variables, rows)
  return jnp.sum(VALUES[value](logits, rows['input_ids'], arg) * weights), seen['diff']


@functools.partial(jax.jit, static_argnames=('model', 'value'))
def _embedding_gradient(model, value: str, variables, inputs: dict, real, pad_id, arg, alphas, weights):
  rows = jax.tree.map(lambda x: jnp.repeat(x, alphas.shape[0], axis=0), inputs)
  delta = jnp.zeros(rows['input_ids'].shape + (_hidden_size(variables),), jnp.float32)
  score = lambda d: _score(model, value, variables, rows, real, pad_id, arg, d, alphas[:, None, None], weights)
  return jax.grad(score, has_aux=True)(delta)[0].sum(axis=0)


@functools.partial(jax.jit, static_argnames=('model', 'value'))
def _embedding_ends(model, value: str, variables, inputs: dict, real, pad_id, arg):
  """(value at the input, value at the baseline, input minus baseline embeddings [1, L, H])."""
  at_input, diff = _score(model, value, variables, inputs, real, pad_id, arg, 0.0, 1.0)
  at_baseline, _ = _score(model, value, variables, inputs, real, pad_id, arg, 0.0, 0.0)
  return at_input, at_baseline, diff


def _integrate(model, value: str, variables, inputs: dict, real, pad_id, arg, steps: int):
  """Integrated gradients over the token embeddings of one row `inputs` [1, L] toward VALUES[value](logits, ids,
  arg): (per-token attributions [L] (0 where `real` [1, L, 1] is 0), value at the input, value at the baseline)."""
  at_input, at_baseline, diff = _embedding_ends(model, value, variables, inputs, real, pad_id, arg)
  mean = _mean_gradient(
      lambda a, w: _embedding_gradient(model, value, variables, inputs, real, pad_id, arg, a, w), steps)
  return (mean * diff[0]).sum(-1), at_input, at_baseline


def text(model, variables, inputs: dict, target, pad_id, *, steps: int):
  """(per-token attributions [L], logit at the input, logit at the baseline) of class `target` for one example
  (`inputs`: the model's token arrays of one row [1, L]; `target`: a class id, or for per-token heads (NER) a
  (position, class) pair, as an int array [2])."""
  real = jnp.asarray(inputs['attention_mask'][0], jnp.float32)[None, :, None]
  return _integrate(model, 'class', variables, inputs, real, pad_id, target, steps)


def generation(model, variables, ids, prompt_length: int, end: int, pad_id, *, steps: int):
  """(per-token attributions [L], log-probability of the generation at the prompt, at the baseline) for one row
  `ids` [1, L]: the prompt at [0, prompt_length), the generation at [prompt_length, end), padding after it (which a
  causal model's earlier positions never see)."""
  real = jnp.asarray(np.arange(ids.shape[1]) < prompt_length, jnp.float32)[None, :, None]
  span = (jnp.asarray(prompt_length), jnp.asarray(end))
  return _integrate(model, 'generation', variables, {'input_ids': jnp.asarray(ids)}, real, pad_id, span, steps)


def _hidden_size(variables) -> int:
  """The width of the token embedding table (.../embeddings/word/embedding or .../embed_tokens/embedding)."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables['params'])[0]:
    keys = [getattr(k, 'key', str(k)) for k in path]
    if keys[-2:] == ['embed_tokens', 'embedding'] or keys[-3:] == ['embeddings', 'word', 'embedding']:
      return int(leaf.shape[-1])
  raise ValueError('integrated gradients over text need a BERT-family encoder (embeddings/word/embedding) or a '
                   'decoder (embed_tokens/embedding)')


def _pick(logits, target):
  """The target's logits over the batch: logits [S, C] with target a class, [S, L, C] with (position, class), or
  for segmentation [S, H, W, C] with (class, pixel weights [H, W]): the class's logits summed over those pixels."""
  if logits.ndim == 2:
    return logits[:, target]
  if logits.ndim == 4:
    return jnp.sum(logits[..., target[0]] * target[1], axis=(1, 2))
  return logits[:, target[0], target[1]]


@functools.partial(jax.jit, static_argnames=('model',))
def _image_value(model, variables, x, target):
  return jnp.sum(_pick(_logits(model, variables, x), target))


@functools.partial(jax.jit, static_argnames=('model',))
def _image_gradient(model, variables, x, target, alphas, weights):
  f = lambda inputs: jnp.sum(_pick(_logits(model, variables, inputs), target) * weights)
  return jax.grad(f)(alphas.reshape((-1,) + (1,) * (x.ndim - 1)) * x).sum(axis=0)


def image(model, variables, x, target, *, steps: int):
  """(per-pixel attributions [H, W] (or [D] for flat inputs), logit at x, logit at the zero baseline) of class
  `target` for one image `x` [1, ...]."""
  x = jnp.asarray(x)
  attributions = _mean_gradient(lambda a, w: _image_gradient(model, variables, x, target, a, w), steps) * x[0]
  per_pixel = attributions.sum(-1) if attributions.ndim == 3 else attributions
  return per_pixel, _image_value(model, variables, x, target), _image_value(model, variables, jnp.zeros_like(x), target)


def completeness(attributions, at_input, at_baseline) -> tuple[float, float]:
  """(sum of the attributions, logit(x) - logit(baseline)): equal up to the integration rule's error."""
  return float(jnp.sum(attributions)), float(at_input - at_baseline)
