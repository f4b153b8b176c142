"""Flax linen models; `build(model_config, task, ...)` returns the classifier a config names for a task."""
from __future__ import annotations

import jax.numpy as jnp

from ftlab.models.bert import BertConfig, BertEncoder
from ftlab.models.heads import Classifier, SequenceClassifier, TokenClassifier
from ftlab.models.llama import CausalLM, DecoderConfig
from ftlab.models.small import CNN, MLP

IMAGE_MODELS = ('mlp', 'cnn', 'vit', 'resnet', 'efficientnet')
TEXT_MODELS = ('bert',)
DECODER_MODELS = ('decoder',)
_VARIANTS = {'llama': {}, 'mistral': {}, 'qwen2': {'qkv_bias': True},
             'gemma': {'activation': 'gelu_tanh', 'norm_offset': 1.0, 'embed_scale': True}}
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


def decoder_config(model_config, *, vocab_size: int) -> DecoderConfig:
  """A from-scratch decoder's shape: model.decoder's sizes (0 meaning SmolLM2-135M's) and the tokenizer's
  vocabulary."""
  d, base = model_config.decoder, DecoderConfig()
  pick = lambda key, default: d[key] or default
  heads = pick('num_heads', base.num_heads)
  hidden = pick('hidden_size', base.hidden_size)
  return DecoderConfig(vocab_size=vocab_size, hidden_size=hidden, num_layers=pick('num_layers', base.num_layers),
                       num_heads=heads, num_kv_heads=pick('num_kv_heads', heads),
                       head_dim=pick('head_dim', hidden // heads),
                       intermediate_size=pick('intermediate_size', base.intermediate_size),
                       rope_theta=float(d.rope_theta), tie_embeddings=bool(d.tie_embeddings), **_VARIANTS[d.variant])


def build(model_config, task, *, bert: BertConfig | None = None, decoder: DecoderConfig | None = None):
  """The model of config.model for `task` (ftlab.tasks.Task or ftlab.lm_task.LMTask); `bert` is the encoder's
  shape for 'bert', `decoder` the decoder's for 'decoder'."""
  dtype = jnp.bfloat16 if model_config.dtype == 'bfloat16' else jnp.float32
  if model_config.name == 'decoder':
    return CausalLM(decoder, dtype=dtype)
  if model_config.name == 'bert':
    encoder = BertEncoder(bert, dtype=dtype, remat=model_config.remat, name='backbone')
    if task.kind == 'tags':
      return TokenClassifier(backbone=encoder, num_classes=task.num_classes, init_std=bert.initializer_range)
    return SequenceClassifier(backbone=encoder, num_classes=task.num_classes, pooling=model_config.pooling,
                              init_std=bert.initializer_range)
  if model_config.name == 'vit':
    from ftlab.models import vit
    backbone = vit.vit(model_config.variant, pooling=model_config.pooling, dtype=dtype, name='backbone')
  elif model_config.name == 'resnet':
    from ftlab.models import resnet
    backbone = resnet.resnet(int(model_config.variant), width=model_config.width, stem=model_config.stem,
                             bn_frozen=model_config.bn_frozen, dtype=dtype, name='backbone')
  elif model_config.name == 'efficientnet':
    from ftlab.models import efficientnet
    backbone = efficientnet.efficientnet(model_config.variant, bn_frozen=model_config.bn_frozen, dtype=dtype,
                                         name='backbone')
  else:
    small = {'mlp': MLP, 'cnn': CNN}[model_config.name]
    backbone = small(features=tuple(model_config.features), norm=model_config.norm, bn_frozen=model_config.bn_frozen,
                     name='backbone')
  if task.kind in ('segment', 'detect'):
    from ftlab.models.detection import CenterHead
    from ftlab.models.segmentation import FPNHead, PyramidModel
    head = (FPNHead if task.kind == 'segment' else CenterHead)(task.num_classes, model_config.head_features, dtype)
    return PyramidModel(backbone=backbone, head=head, to_input_size=task.kind == 'segment')
  return Classifier(backbone=backbone, num_classes=task.num_classes)
