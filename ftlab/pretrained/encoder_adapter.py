"""A LoRA BERT classifier's adapters in PEFT's layout, with its task head (`python -m ftlab.export` of a LoRA run
without --merge-lora). PEFT loses a classifier's head unless it is among modules_to_save; this writes it there.

    OUT/adapter_config.json        peft_type LORA, task_type SEQ_CLS or TOKEN_CLS, r, lora_alpha, lora_dropout,
                                   target_modules (the adapted modules' full names), modules_to_save (the head, and
                                   whatever else lora.train trained: the pooler...), base_model_name_or_path OUT/base
    OUT/adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in] and lora_B.weight [out, r] per
                                   adapted module; base_model.model.<name> for each parameter lora.train trained
    OUT/base/                      the base classifier as encoder_export writes it (the frozen encoder's weights;
                                   for 'mean' / 'cls' pooling with modeling_ftlab.py)

Load with transformers + peft:

    base = AutoModelForSequenceClassification.from_pretrained('OUT/base', trust_remote_code=True)
    model = PeftModel.from_pretrained(base, 'OUT')
"""
from __future__ import annotations

import os
import re

import numpy as np

from ftlab import writers
from ftlab.models import lora as lora_lib
from ftlab.optim import groups
from ftlab.pretrained import encoder_export, ftlab_format, hf, surgery


def write_adapter(out: str, run: str, *, checkpoint: str = 'best') -> None:
  """Exports a LoRA run's adapters and trained head at `checkpoint` to `out` (new or empty), its base to out/base."""
  config, labels, task = encoder_export.classifier_run(run)
  _, params = ftlab_format.run_params(run, config, checkpoint, merged=False)
  base, adapters = lora_lib.split(params)
  base_folder = os.path.join(out, 'base')
  encoder_export.write_folder(base_folder, config, base, labels, task)
  tensors, targets = {}, []
  for key, ab in sorted(lora_lib.at_rank(adapters, config.lora.rank).items()):
    module = _hf_module(key.replace('.', '/'), ab['a'].shape[0], ab['b'].shape[1])
    targets.append(module)
    tensors[f'base_model.model.{module}.lora_A.weight'] = np.asarray(ab['a'], np.float32).T
    tensors[f'base_model.model.{module}.lora_B.weight'] = np.asarray(ab['b'], np.float32).T
  trained = _trained(base, config.lora.train)
  tensors.update({f'base_model.model.{name}': value for name, value in trained.items()})
  writers.write_safetensors_atomic(os.path.join(out, 'adapter_model.safetensors'), tensors)
  writers.write_json_atomic(os.path.join(out, 'adapter_config.json'), {
      'peft_type': 'LORA', 'task_type': 'TOKEN_CLS' if task == 'tags' else 'SEQ_CLS',
      'base_model_name_or_path': os.path.abspath(base_folder), 'r': int(config.lora.rank),
      'lora_alpha': float(config.lora.alpha), 'lora_dropout': float(config.lora.dropout), 'target_modules': targets,
      'modules_to_save': sorted({name.rpartition('.')[0] for name in trained}) or None, 'bias': 'none',
      'fan_in_fan_out': False, 'inference_mode': True, 'use_rslora': False})


def _hf_module(module: str, fan_in: int, fan_out: int) -> str:
  """BertFor*Classification's name of the dense module at ftlab path `module` ('backbone/layer_0/attention/query'
  -> 'bert.encoder.layer.0.attention.self.query')."""
  name = next(iter(hf.from_ftlab(surgery.unflatten({f'{module}/kernel': np.zeros((fan_in, fan_out), np.float32)}))))
  return encoder_export.hf_name(name).removesuffix('.weight')


def _trained(base: dict, pattern: str) -> dict[str, np.ndarray]:
  """{transformers name: value} of the base parameters lora.train's regex trained (the head, the pooler...)."""
  import jax
  if not pattern:
    return {}
  kept = {}
  for key_path, value in jax.tree_util.tree_flatten_with_path(base)[0]:
    path = groups.path_str(key_path)
    if re.search(pattern, path):
      kept.update(hf.from_ftlab(surgery.unflatten({path: value})))
  return {encoder_export.hf_name(name): value for name, value in kept.items()}

