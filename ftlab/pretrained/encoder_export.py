"""A fine-tuned BERT-family classifier as a Hugging Face folder (`python -m ftlab.export` of a model.name='bert' run).

OUT gets config.json (the encoder's, with the run's class names as id2label / label2id), model.safetensors under
the names of transformers' BertForSequenceClassification / BertForTokenClassification ('bert.' + the encoder and
its pooler, 'classifier.' the head) and the tokenizer files of the run's tokenizer folder. Those classes compute
exactly what ftlab computed for token classification (NER) and for model.pooling='pooler'. No transformers class
pools by the mean or by the bare [CLS] state, so for model.pooling 'mean' or 'cls' OUT also holds modeling_ftlab.py
(a BertPreTrainedModel subclass, named in config.json's auto_map), which AutoModelForSequenceClassification loads
with trust_remote_code=True. A LoRA run exports merged: its adapters folded into the kernels, its head with them.
ftlab reads the folder back as model.pretrained, head included (`python -m ftlab.main
--config.model.pretrained=OUT`).
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from ftlab import writers
from ftlab.pretrained import ftlab_format, hf
from ftlab.pretrained.surgery import SurgeryError

TOKENIZER_FILES = ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'merges.txt',
                   'vocab.json', 'sentencepiece.bpe.model')
CUSTOM_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'modeling_ftlab.py')


def write_classifier(out: str, run: str, *, checkpoint: str = 'best') -> None:
  """Exports the run's classifier at `checkpoint` (LoRA merged) to the folder `out` (new or empty); raises
  SurgeryError."""
  config, labels, task = classifier_run(run)
  write_folder(out, config, ftlab_format.run_params(run, config, checkpoint, merged=True)[1], labels, task)


def classifier_run(run: str):
  """(config, class names, task 'text' or 'tags') of a finished BERT classifier run; SurgeryError otherwise."""
  config, summary = ftlab_format.finished_run(run)
  task = summary.get('data', {}).get('task')
  if task not in ('text', 'tags'):
    raise SurgeryError(f'{run}: a {task!r} task; a BERT export takes text classification and NER runs')
  return config, list(summary['class_names']), task


def write_folder(out: str, config, params: dict, labels: list[str], task: str) -> None:
  """The Hugging Face folder of a BERT classifier with these (plain) parameters."""
  tensors = {hf_name(name): value for name, value in hf.from_ftlab(params).items()}
  os.makedirs(out, exist_ok=True)
  writers.write_safetensors_atomic(os.path.join(out, 'model.safetensors'), tensors)
  writers.write_json_atomic(os.path.join(out, 'config.json'), _hf_config(config, params, labels, task))
  if task == 'text' and config.model.pooling != 'pooler':
    shutil.copyfile(CUSTOM_CODE, os.path.join(out, 'modeling_ftlab.py'))
  _copy_tokenizer(config, out)


def _copy_tokenizer(config, out: str) -> None:
  """The run's tokenizer files (data.tokenizer.path, a file or a folder, else the pretrained folder's) into `out`."""
  path = config.data.tokenizer.path or (hf.resolve(config.model.pretrained) if config.model.pretrained else '')
  if os.path.isfile(path):
    shutil.copyfile(path, os.path.join(out, os.path.basename(path)))
    return
  for name in TOKENIZER_FILES:
    if path and os.path.isfile(os.path.join(path, name)):
      shutil.copyfile(os.path.join(path, name), os.path.join(out, name))


def hf_name(name: str) -> str:
  """hf.from_ftlab's BertModel name -> BertFor*Classification's ('bert.' before the encoder and its pooler)."""
  return name if name.startswith('classifier.') else f'bert.{name}'


def _hf_config(config, params: dict, labels: list[str], task: str) -> dict:
  """config.json: the source checkpoint's (or the shape of a BERT trained from scratch), the run's labels, the
  architecture, and for 'mean' / 'cls' pooling the class of modeling_ftlab.py."""
  encoder = params['backbone']
  if config.model.pretrained:
    base = hf.read_json_config(hf.resolve(config.model.pretrained))
  else:
    from ftlab import models
    shape = models.bert_config(config.model, vocab_size=int(np.shape(encoder['embeddings']['word']['embedding'])[0]),
                               pad_id=0)
    base = {'model_type': 'bert', 'vocab_size': shape.vocab_size, 'hidden_size': shape.hidden_size,
            'num_hidden_layers': shape.num_layers, 'num_attention_heads': shape.num_heads,
            'intermediate_size': shape.intermediate_size, 'max_position_embeddings': shape.max_position,
            'type_vocab_size': shape.type_vocab_size, 'layer_norm_eps': shape.layer_norm_eps,
            'initializer_range': shape.initializer_range, 'hidden_act': 'gelu', 'pad_token_id': 0}
  if base.get('model_type') != 'bert':
    raise SurgeryError(f"model_type {base.get('model_type')!r}: the export writes BERT's classes; RoBERTa-family "
                       'heads are laid out otherwise (not built yet)')
  out = {k: v for k, v in base.items() if k not in ('architectures', 'id2label', 'label2id', 'auto_map')}
  out.update(id2label={str(i): name for i, name in enumerate(labels)}, label2id={n: i for i, n in enumerate(labels)})
  if task == 'tags':
    out['architectures'] = ['BertForTokenClassification']
  elif config.model.pooling == 'pooler':
    out['architectures'] = ['BertForSequenceClassification']
  else:
    out.update(architectures=['FtlabBertForSequenceClassification'], ftlab_pooling=config.model.pooling,
               auto_map={'AutoModelForSequenceClassification': 'modeling_ftlab.FtlabBertForSequenceClassification'})
  return out

