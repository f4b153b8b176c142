"""Flax linen models; `build(model_config, task, ...)` returns the classifier a config names for a task."""
from __future__ import annotations

import jax.numpy as jnp

from ftlab.models.bert import BertConfig, BertEncoder
from ftlab.models.heads import Classifier, SequenceClassifier, TokenClassifier
from ftlab.models.small import CNN, MLP

IMAGE_MODELS = ('mlp', 'cnn', 'vit', 'resnet')
TEXT_MODELS = ('bert',)
MINILM_L6 = BertConfig()  # the shape of all-MiniLM-L6-v2: a from-scratch BERT's default


def bert_config(model_config, *, vocab_size: int, pad_id: int) -> BertConfig:
  """A from-scratch encoder's shape: model.bert's sizes, 0 meaning MiniLM-L6's, and the tokenizer's vocabulary."""
  b = model_config.bert
  pick = lambda key, default: b[key] or default
  return BertConfig(vocab_size=vocab_size, hidden_size=pick('hidden_size', MINILM_L6.hidden_size),
                    num_layers=pick('num_layers', MINILM_L6.num_layers), num_heads=pick('num_heads', MINILM_L6.num_heads),
                    intermediate_size=pick('intermediate_size', MINILM_L6.intermediate_size),
                    max_position=pick('max_position', MINILM_L6.max_position),
                    position_offset=pad_id + 1 if b.roberta_positions else 0)


def build(model_config, task, *, bert: BertConfig | None = None):
  """The classifier of config.model for `task` (ftlab.tasks.Task); `bert` is the encoder's shape for 'bert'."""
  m = model_config
  dtype = jnp.bfloat16 if m.dtype == 'bfloat16' else jnp.float32
  if m.name == 'bert':
    encoder = BertEncoder(bert, dtype=dtype, name='backbone')
    if task.kind == 'tags':
      return TokenClassifier(backbone=encoder, num_classes=task.num_classes, init_std=bert.initializer_range)
    return SequenceClassifier(backbone=encoder, num_classes=task.num_classes, pooling=m.pooling,
                              init_std=bert.initializer_range)
  if m.name == 'vit':
    from ftlab.models import vit
    backbone = vit.vit(m.variant, pooling=m.pooling, dtype=dtype, name='backbone')
  elif m.name == 'resnet':
    from ftlab.models import resnet
    backbone = resnet.resnet(int(m.variant), width=m.width, stem=m.stem, bn_frozen=m.bn_frozen, dtype=dtype, name='backbone')
  else:
    small = {'mlp': MLP, 'cnn': CNN}[m.name]
    backbone = small(features=tuple(m.features), norm=m.norm, bn_frozen=m.bn_frozen, name='backbone')
  return Classifier(backbone=backbone, num_classes=task.num_classes)
