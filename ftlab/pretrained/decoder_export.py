"""A decoder written as Hugging Face files: the model (config.json + model.safetensors + the tokenizer files, what
transformers' AutoModelForCausalLM / AutoTokenizer load) or a LoRA adapter in PEFT's layout (adapter_config.json +
adapter_model.safetensors, loaded over the base by peft.PeftModel.from_pretrained).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ftlab import writers
from ftlab.pretrained import decoder


def _tokenizer_files(out: str, tok) -> None:
  tok.tokenizer.save(os.path.join(out, 'tokenizer.json'))
  settings = {'tokenizer_class': 'PreTrainedTokenizerFast', 'eos_token': tok.eos_token,
              'bos_token': tok.bos_token or None, 'add_bos_token': tok.add_bos, 'clean_up_tokenization_spaces': False}
  if tok.chat_template:
    settings['chat_template'] = tok.chat_template
  writers.write_json_atomic(os.path.join(out, 'tokenizer_config.json'), settings)


def _safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
  writers.write_safetensors_atomic(path, {k: np.asarray(v, np.float32) for k, v in tensors.items()})


def _token_ids(tok) -> dict:
  ids = {'eos_token_id': tok.eos_id}
  if tok.bos_token:
    ids['bos_token_id'] = tok.tokenizer.token_to_id(tok.bos_token)
  return ids


def write_model(out: str, loaded) -> None:
  """The plain (merged) decoder of `loaded` (decoder_load.Loaded) as a Hugging Face model folder."""
  os.makedirs(out, exist_ok=True)
  _safetensors(os.path.join(out, 'model.safetensors'), decoder.from_ftlab(loaded.params))
  writers.write_json_atomic(os.path.join(out, 'config.json'),
                            decoder.hf_config(loaded.config, token_ids=_token_ids(loaded.tokenizer)))
  _tokenizer_files(out, loaded.tokenizer)


def peft_tensors(adapters: dict) -> dict[str, np.ndarray]:
  """ftlab's adapters ({'model.layers_0.self_attn.q_proj': {'a': [in, r], 'b': [r, out]}}) under PEFT's names
  (base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in], lora_B.weight [out, r])."""
  out = {}
  for key, ab in adapters.items():
    module = decoder.hf_module(key.replace('.', '/'))
    out[f'base_model.model.{module}.lora_A.weight'] = np.asarray(ab['a'], np.float32).T
    out[f'base_model.model.{module}.lora_B.weight'] = np.asarray(ab['b'], np.float32).T
  return out


def write_adapter(out: str, loaded, *, base: str) -> None:
  """A LoRA run's adapters (`loaded.adapters`, `loaded.lora`) in PEFT's layout, for the base model at `base`."""
  os.makedirs(out, exist_ok=True)
  tensors = peft_tensors(loaded.adapters)
  _safetensors(os.path.join(out, 'adapter_model.safetensors'), tensors)
  targets = sorted({name.split('.')[-3] for name in tensors})
  lora = loaded.lora
  writers.write_json_atomic(os.path.join(out, 'adapter_config.json'), {
      'peft_type': 'LORA', 'task_type': 'CAUSAL_LM', 'base_model_name_or_path': base, 'r': int(lora.rank),
      'lora_alpha': float(lora.alpha), 'lora_dropout': float(lora.dropout), 'target_modules': targets,
      'bias': 'none', 'fan_in_fan_out': False, 'inference_mode': True, 'use_rslora': False,
      'modules_to_save': None})
  _tokenizer_files(out, loaded.tokenizer)


def read_adapter(folder: str) -> dict:
  """PEFT adapter files back into ftlab's adapters (the inverse of `write_adapter`'s tensors)."""
  from safetensors.numpy import load_file
  tensors = load_file(os.path.join(folder, 'adapter_model.safetensors'))
  adapters = {}
  for name, value in tensors.items():
    module, kind = name.removeprefix('base_model.model.').rsplit('.', 2)[:2]
    key = decoder.ftlab_module(module).replace('/', '.')
    adapters.setdefault(key, {})['a' if kind == 'lora_A' else 'b'] = value.T
  with open(os.path.join(folder, 'adapter_config.json')) as f:
    config = json.load(f)
  return {'adapters': adapters, 'rank': config['r'], 'alpha': config['lora_alpha']}
