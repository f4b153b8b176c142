"""Decoder checkpoints (Llama, Mistral, Qwen2, Gemma): a Hugging Face config.json read into a DecoderConfig, and
tensors renamed between Hugging Face's names and ftlab's paths in both directions (kernels transposed).

ftlab's paths are Hugging Face's with '/' for '.', 'layers_N' for 'layers.N', 'kernel' for a Linear's weight,
'embedding' for the token table and 'scale' for a norm's weight: model.layers.3.mlp.up_proj.weight is
model/layers_3/mlp/up_proj/kernel.
"""
from __future__ import annotations

import re

import numpy as np

from ftlab.models.llama import DecoderConfig
from ftlab.pretrained.surgery import SurgeryError, unflatten

MODEL_TYPES = ('llama', 'mistral', 'qwen2', 'gemma')
_REQUIRED = ('vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads')


def _rope(cfg: dict) -> tuple[float, tuple]:
  """(rope theta, sorted scaling items) from either config.json spelling (transformers 5 writes rope_parameters)."""
  params = dict(cfg.get('rope_parameters') or {})
  theta = float(params.pop('rope_theta', cfg.get('rope_theta', 10000.0)))
  scaling = dict(cfg.get('rope_scaling') or params)
  kind = scaling.get('rope_type', scaling.get('type', 'default'))
  if kind in ('default', None):
    return theta, ()
  scaling = {k: v for k, v in scaling.items() if k != 'type'} | {'rope_type': kind}
  return theta, tuple(sorted(scaling.items()))


def decoder_config(cfg: dict, *, where: str = 'config.json') -> DecoderConfig:
  """The DecoderConfig of a Hugging Face decoder config (SurgeryError naming what does not fit)."""
  kind = cfg.get('model_type', '')
  if kind not in MODEL_TYPES:
    raise SurgeryError(f'model.pretrained: {where} has model_type {kind!r}; ftlab decodes {", ".join(MODEL_TYPES)}')
  missing = [k for k in _REQUIRED if not isinstance(cfg.get(k), int)]
  if missing:
    raise SurgeryError(f'model.pretrained: {where} lacks {", ".join(missing)}; download the model folder again')
  heads = cfg['num_attention_heads']
  theta, scaling = _rope(cfg)
  gemma = kind == 'gemma'
  bias = bool(cfg.get('attention_bias', False))
  activation = cfg.get('hidden_activation') or cfg.get('hidden_act', 'silu')
  return DecoderConfig(
      vocab_size=cfg['vocab_size'], hidden_size=cfg['hidden_size'], intermediate_size=cfg['intermediate_size'],
      num_layers=cfg['num_hidden_layers'], num_heads=heads, num_kv_heads=cfg.get('num_key_value_heads') or heads,
      head_dim=cfg.get('head_dim') or cfg['hidden_size'] // heads, rope_theta=theta, rope_scaling=scaling,
      norm_eps=float(cfg.get('rms_norm_eps', 1e-6)), tie_embeddings=bool(cfg.get('tie_word_embeddings', gemma)),
      qkv_bias=bias or kind == 'qwen2', o_bias=bias, mlp_bias=bool(cfg.get('mlp_bias', False)),
      activation='gelu_tanh' if gemma or activation.startswith('gelu') else 'silu',
      norm_offset=1.0 if gemma else 0.0, embed_scale=gemma,
      sliding_window=int(cfg.get('sliding_window') or 0) if cfg.get('use_sliding_window', kind == 'mistral') else 0,
      max_position=int(cfg.get('max_position_embeddings', 2048)),
      initializer_range=float(cfg.get('initializer_range', 0.02)))


def _ftlab_path(name: str) -> str | None:
  if name == 'lm_head.weight':
    return 'lm_head/kernel'
  if name == 'model.embed_tokens.weight':
    return 'model/embed_tokens/embedding'
  if name == 'model.norm.weight':
    return 'model/norm/scale'
  m = re.fullmatch(r'model\.layers\.(\d+)\.((?:self_attn|mlp)\.\w+_proj|\w+_layernorm)\.(weight|bias)', name)
  if not m:
    return None
  module = m.group(2).replace('.', '/')
  leaf = 'scale' if module.endswith('layernorm') else {'weight': 'kernel', 'bias': 'bias'}[m.group(3)]
  return f'model/layers_{m.group(1)}/{module}/{leaf}'


def to_ftlab(weights: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
  """(a nested params tree in ftlab's paths, the names that map to nothing)."""
  flat, unused = {}, []
  for name, value in weights.items():
    path = _ftlab_path(name)
    if path is None:
      unused.append(name)
      continue
    value = np.asarray(value, np.float32)
    flat[path] = np.ascontiguousarray(value.T) if path.endswith('/kernel') else value
  return unflatten(flat), sorted(unused)


def hf_module(module: str) -> str:
  """Hugging Face's module name of an ftlab module path: model/layers_3/mlp/up_proj -> model.layers.3.mlp.up_proj."""
  return re.sub(r'layers_(\d+)', r'layers.\1', module).replace('/', '.')


def ftlab_module(name: str) -> str:
  """The inverse of `hf_module`."""
  return re.sub(r'layers\.(\d+)', r'layers_\1', name).replace('.', '/')


def _hf_name(path: str) -> str:
  module, _, leaf = path.rpartition('/')
  return f'{hf_module(module)}.{"bias" if leaf == "bias" else "weight"}'


def from_ftlab(params) -> dict[str, np.ndarray]:
  """ftlab's decoder parameters under Hugging Face's names, kernels transposed back (the inverse of `to_ftlab`)."""
  import jax
  from ftlab.optim.groups import path_str
  out = {}
  for key_path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
    path = path_str(key_path)
    value = np.asarray(value, np.float32)
    out[_hf_name(path)] = np.ascontiguousarray(value.T if path.endswith('/kernel') else value)
  return out


def hf_config(config: DecoderConfig, *, token_ids: dict | None = None) -> dict:
  """A Hugging Face config.json for `config` (model_type from its switches), with `token_ids` (bos_token_id, ...)."""
  kind = 'gemma' if config.norm_offset else 'qwen2' if config.qkv_bias and not config.o_bias else (
      'mistral' if config.sliding_window else 'llama')
  out = {'architectures': [f'{kind.capitalize() if kind != "qwen2" else "Qwen2"}ForCausalLM'], 'model_type': kind,
         'vocab_size': config.vocab_size, 'hidden_size': config.hidden_size,
         'intermediate_size': config.intermediate_size, 'num_hidden_layers': config.num_layers,
         'num_attention_heads': config.num_heads, 'num_key_value_heads': config.num_kv_heads,
         'head_dim': config.head_dim, 'rope_theta': config.rope_theta,
         'rope_scaling': dict(config.rope_scaling) or None, 'rms_norm_eps': config.norm_eps,
         'tie_word_embeddings': config.tie_embeddings, 'attention_bias': config.o_bias,
         'mlp_bias': config.mlp_bias, 'max_position_embeddings': config.max_position,
         'hidden_act': 'gelu_pytorch_tanh' if config.activation == 'gelu_tanh' else 'silu',
         'initializer_range': config.initializer_range, 'torch_dtype': 'float32'}
  if config.sliding_window:
    out['sliding_window'] = config.sliding_window
  out.update(token_ids or {})
  return out
