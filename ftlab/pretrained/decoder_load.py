"""A decoder ready to generate, from wherever it lives: an ftlab run's workdir (its best checkpoint, or another step,
LoRA adapters merged), a Hugging Face folder (config.json + safetensors + tokenizer files), a GGUF file, or a
'package:NAME' shipping one of those. Used by `python -m ftlab.generate` and `python -m ftlab.export`.
"""
from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from ftlab import checkpoints
from ftlab.data import lm_tokenizer
from ftlab.models import lora as lora_lib
from ftlab.models.llama import DecoderConfig
from ftlab.pretrained import decoder, hf
from ftlab.pretrained import load as pretrained_lib
from ftlab.pretrained.surgery import SurgeryError


@dataclasses.dataclass(frozen=True)
class Loaded:
  config: DecoderConfig
  params: dict  # the plain decoder's parameters (adapters merged)
  tokenizer: lm_tokenizer.LMTokenizer
  dtype: str = 'float32'
  adapters: dict | None = None  # a LoRA run's adapters (before merging), with `lora`
  lora: object = None  # the run's config.lora when it has adapters
  source: str = ''  # the checkpoint folder or file the base weights came from


def is_run(path: str) -> bool:
  return os.path.isdir(os.path.join(path, 'checkpoints')) and os.path.isfile(os.path.join(path, 'config.json'))


def load(spec: str, *, checkpoint: str = 'best') -> Loaded:
  """The decoder at `spec` (see the module docstring); SurgeryError or DataError when it cannot be read."""
  if is_run(spec):
    return _from_run(spec, checkpoint)
  path = hf.resolve(spec)
  if path.endswith('.gguf'):
    from ftlab.pretrained import gguf
    try:
      ckpt = gguf.read(path)
    except gguf.GGUFError as err:
      raise SurgeryError(str(err)) from None
    params, _ = decoder.to_ftlab(ckpt.tensors)
    return Loaded(decoder.decoder_config(ckpt.config, where=path), params, lm_tokenizer.load(path), source=path)
  config = decoder.decoder_config(hf.read_json_config(path), where=os.path.join(path, 'config.json'))
  params, _ = decoder.to_ftlab(hf.read_weights(path))
  return Loaded(config, params, lm_tokenizer.load(path), source=path)


def _step(run: str, checkpoint: str) -> int:
  try:
    return checkpoints.run_step(run, checkpoint)
  except checkpoints.CheckpointError as err:
    raise SurgeryError(str(err)) from None


def _from_run(run: str, checkpoint: str) -> Loaded:
  with open(os.path.join(run, 'config.json'), encoding='utf-8') as f:
    config = ml_collections.ConfigDict(json.load(f))
  if config.model.name != 'decoder':
    raise SurgeryError(f'{run}: a model.name={config.model.name!r} run; generating and exporting here take decoder '
                       'runs only (BERT classifiers export too; other families are not built yet)')
  params = checkpoints.restore_params(os.path.join(run, 'checkpoints'), _step(run, checkpoint))
  params = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
  shape = pretrained_lib.decoder_config(config.model)
  if shape is None:  # from scratch: model.decoder's sizes and the vocabulary of the saved embedding
    from ftlab import models
    shape = models.decoder_config(config.model, vocab_size=int(np.shape(
        params['model']['embed_tokens']['embedding'])[0]))
  source = pretrained_lib.tokenizer_folder(config.model)
  tok = lm_tokenizer.load(config.data.tokenizer.path or source, eos_token=config.data.sft.eos_token)
  spec = lora_lib.Spec.of(config.lora)
  adapters = lora_lib.at_rank(params[lora_lib.KEY], config.lora.rank) if spec else None  # without max_rank's padding
  merged = lora_lib.merge(params, scale=spec.scale) if spec else params
  return Loaded(shape, merged, tok, dtype=config.model.dtype, adapters=adapters, lora=config.lora if spec else None,
                source=source)
