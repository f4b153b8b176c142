"""LoRA: low-rank adapters on the dense kernels a regex selects, outside the model's code.

The adapters live in the parameter tree under 'lora', one {'a': [in, r], 'b': [r, out]} per adapted module,
keyed by the module path with '.' for '/' ('backbone.dense_0'), so their paths read 'lora/backbone.dense_0/a'.
While the model runs, flax's method interception adds `scale * dropout(x) @ a @ b` to each adapted nn.Dense's
output, with scale = alpha / rank: any linen model gets LoRA without changes. `b` starts at zero, so a fresh
adapter leaves the model's outputs unchanged. `merge` folds the adapters into the kernels for export.
With lora.max_rank above the rank, r is max_rank and the columns past the rank are zero and masked (their
gradients are exactly zero, so they stay zero): trials of different ranks then have one shape.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout as traced_dropout
from ftlab.optim import groups

KEY = 'lora'


class LoraError(ValueError):
  """A LoRA setting that cannot apply to this model."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the forward pass needs to know about the adapters: their scale (alpha / rank) and dropout rate."""
  scale: float
  dropout: float = 0.0

  @classmethod
  def of(cls, lora_config) -> Spec | None:
    """The spec of config.lora, or None when LoRA is off (lora.target '')."""
    if not lora_config.target:
      return None
    return cls(scale=lora_config.alpha / lora_config.rank, dropout=lora_config.dropout)


def targets(params, pattern: str) -> dict[str, tuple[int, int]]:
  """{module path: (in, out)} of the 2-D '.../kernel' parameters whose module path matches `pattern`."""
  found = {}
  for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    path = groups.path_str(kp)
    module, _, name = path.rpartition('/')
    if name == 'kernel' and len(leaf.shape) == 2 and not path.startswith(KEY + '/') and re.search(pattern, module):
      found[module] = tuple(leaf.shape)
  if not found:
    kernels = [groups.path_str(kp).rpartition('/')[0] for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
               if groups.path_str(kp).endswith('/kernel') and len(leaf.shape) == 2]
    raise LoraError(f'lora.target: {pattern!r} matches no dense kernel; modules with one: {", ".join(kernels)}')
  return found


def width(lora_config) -> int:
  """The adapters' r: lora.max_rank when set, else lora.rank."""
  return max(lora_config.rank, lora_config.get('max_rank', 0))


def add_adapters(params, lora_config, rng) -> dict:
  """`params` with a fresh adapter per targeted kernel under 'lora' (a: uniform +-1/sqrt(in), as peft; b: 0).
  `a` is drawn at lora.rank, then padded with zero columns to the width: the same numbers as the trial alone."""
  adapters, rank, r = {}, lora_config.rank, width(lora_config)
  for i, (module, (fan_in, fan_out)) in enumerate(sorted(targets(params, lora_config.target).items())):
    bound = 1.0 / fan_in ** 0.5
    a = jax.random.uniform(jax.random.fold_in(rng, i), (fan_in, rank), jnp.float32, -bound, bound)
    adapters[module.replace('/', '.')] = {'a': jnp.pad(a, ((0, 0), (0, r - rank))),
                                          'b': jnp.zeros((r, fan_out), jnp.float32)}
  return {**params, KEY: adapters}


def at_rank(adapters: dict, rank: int) -> dict:
  """The adapters without their zero padding past `rank` (what a run of that rank alone holds)."""
  return {key: {'a': ab['a'][:, :rank], 'b': ab['b'][:rank]} for key, ab in adapters.items()}


def split(params) -> tuple[dict, dict]:
  """(base params, adapters) of a tree that may hold adapters."""
  base = {k: v for k, v in params.items() if k != KEY}
  return base, params.get(KEY, {})


@contextlib.contextmanager
def applied(adapters: dict, *, scale: float, dropout_rate: float = 0.0, train: bool = False, rank=None):
  """Within this context, every nn.Dense with an adapter adds scale * dropout(x) @ a @ b to its output; with
  `rank` (traced), the columns of x @ a past it are masked to zero."""
  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    key = '.'.join(module.path)
    if context.method_name != '__call__' or not isinstance(module, nn.Dense) or key not in adapters:
      return next_fun(*args, **kwargs)
    x = args[0]
    low_rank = traced_dropout(module, x, dropout_rate, train=train) @ adapters[key]['a']
    if rank is not None:
      low_rank = jnp.where(jnp.arange(low_rank.shape[-1]) < rank, low_rank, jnp.zeros_like(low_rank))
    low_rank = low_rank @ adapters[key]['b']
    return next_fun(*args, **kwargs) + scale * low_rank.astype(x.dtype)

  with nn.intercept_methods(interceptor):
    yield


def merge(params, *, scale: float) -> dict:
  """Base params with each adapter folded in (kernel + scale * a @ b): a plain model for export."""
  base, adapters = split(params)
  merged = jax.tree_util.tree_map_with_path(lambda kp, v: v, base)  # a copy with the same structure
  for key, ab in adapters.items():
    node = merged
    *parents, leaf = key.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = {**node[leaf], 'kernel': node[leaf]['kernel'] + scale * ab['a'] @ ab['b']}
  return merged


@dataclasses.dataclass(frozen=True)
class Adapted:
  """A linen model whose `apply` takes parameters with adapters under 'lora' and runs them with the scale and dropout
  it is given (traced values from the training state: ftlab/traced.py), else `spec`'s; `init` is the base model's
  (adapters are added by `add_adapters`, after any pretrained weights). Its repr leaves the spec out: runs that
  differ only in alpha or the adapters' dropout share one compiled step."""
  model: nn.Module
  spec: Spec = dataclasses.field(repr=False)

  def init(self, *args, **kwargs):
    return self.model.init(*args, **kwargs)

  def apply(self, variables, *args, train: bool = False, lora_scale=None, lora_dropout=None, lora_rank=None,
            **kwargs):
    base, adapters = split(variables['params'])
    scale = self.spec.scale if lora_scale is None else lora_scale
    rate = self.spec.dropout if lora_dropout is None else lora_dropout
    with applied(adapters, scale=scale, dropout_rate=rate, train=train, rank=lora_rank):
      return self.model.apply({**variables, 'params': base}, *args, train=train, **kwargs)
