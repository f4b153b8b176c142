"""A decoder's tokenizer with what SFT needs besides the vocabulary: its end-of-sequence token, whether it starts
texts with a BOS, and its own chat template (never a hand-written one).

From a GGUF file (the tokenizer and template in its metadata), a Hugging Face folder (tokenizer.json, with
tokenizer_config.json's special tokens and chat_template, or chat_template.jinja), or a bare tokenizer.json (no
template; eos from data.sft.eos_token).
"""
from __future__ import annotations

import dataclasses
import json
import os

import tokenizers

from ftlab.data import text
from ftlab.data.errors import DataError, located


@dataclasses.dataclass(frozen=True)
class LMTokenizer:
  tokenizer: tokenizers.Tokenizer
  eos_token: str
  bos_token: str = ''
  chat_template: str | None = None
  add_bos: bool = False

  @property
  def eos_id(self) -> int:
    return self.tokenizer.token_to_id(self.eos_token)

  def encode(self, value: str, *, first: bool = False) -> list[int]:
    """Token ids of `value` (with the BOS in front when `first` and the model wants one)."""
    ids = self.tokenizer.encode(value, add_special_tokens=False).ids
    bos = self.tokenizer.token_to_id(self.bos_token) if self.bos_token else None
    return [bos] + ids if first and self.add_bos and bos is not None else ids

  def decode(self, ids) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def render(self, messages: list[dict], *, add_generation_prompt: bool) -> str:
    """`messages` through the model's own chat template."""
    from ftlab.pretrained import chat
    return chat.render(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                       special_tokens={'bos_token': self.bos_token, 'eos_token': self.eos_token})


def _token(value) -> str:
  """A special token of tokenizer_config.json: a string or an AddedToken dict."""
  return value.get('content', '') if isinstance(value, dict) else (value or '')


def _from_folder(folder: str, eos_token: str) -> LMTokenizer:
  tokenizer = text.load_tokenizer(folder)
  settings = {}
  path = os.path.join(folder, 'tokenizer_config.json')
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      settings = json.load(f)
  template = settings.get('chat_template')
  jinja = os.path.join(folder, 'chat_template.jinja')
  if os.path.isfile(jinja):
    with open(jinja, encoding='utf-8') as f:
      template = f.read()
  return LMTokenizer(tokenizer, eos_token or _token(settings.get('eos_token')), _token(settings.get('bos_token')),
                     template if isinstance(template, str) else None, bool(settings.get('add_bos_token', False)))


def load(path: str, *, eos_token: str = '') -> LMTokenizer:
  """The tokenizer at `path` (a .gguf file, a model folder or a tokenizer.json); `eos_token` overrides the model's."""
  if path.endswith('.gguf'):
    from ftlab.pretrained import gguf
    try:
      vocab = gguf.read_vocabulary(path)
    except gguf.GGUFError as err:
      raise DataError(str(err)) from None
    special = vocab.special_tokens
    found = LMTokenizer(vocab.tokenizer, eos_token or special.get('eos_token', ''), special.get('bos_token', ''),
                        vocab.chat_template, vocab.add_bos)
  elif os.path.isdir(path):
    found = _from_folder(path, eos_token)
  else:
    found = LMTokenizer(text.load_tokenizer(path), eos_token)
  if not found.eos_token or found.tokenizer.token_to_id(found.eos_token) is None:
    raise DataError(f'{located(path)}: no end-of-sequence token {found.eos_token!r} in this tokenizer; set '
                    "data.sft.eos_token to one of its special tokens (e.g. '</s>' or '<|im_end|>')")
  return found
