"""ViT, ResNet and EfficientNet-Lite runs exported in timm's layout (ViT and ResNet: the inverse of
ftlab.pretrained.vision's timm mappings; EfficientNet-Lite, imported in lukemelas' naming: timm's
tf_efficientnet_lite names, TensorFlow's padding).

    OUT/model.safetensors  timm's state dict names and torch layouts ('patch_embed.proj.weight' [out, in, kh, kw],
                           'blocks.0.attn.qkv.weight' [3D, D] with query, key, value fused in that order;
                           'conv1.weight', 'layer2.0.downsample.1.running_mean', 'fc.weight' [classes, features])
    OUT/config.json        timm's hub config: {"architecture", "num_classes", "num_features", "label_names",
                           "model_args" (what timm.create_model needs to build this size), "pretrained_cfg"}

timm loads the folder (`timm.create_model('local-dir:OUT', pretrained=True)`); ftlab reads a ViT's or a ResNet's
model.safetensors back as model.pretrained (an EfficientNet's it imports in lukemelas' naming only). ViT:
class-token pooling, layer norm eps 1e-6 and exact GELU, as timm's VisionTransformer; ResNet: the 'imagenet' stem
(timm has no 'small' one: those runs keep ftlab's own layout); EfficientNet-Lite0: timm's 'tf_' variant, whose
'SAME' padding is ftlab's (checked against timm with the ImageNet weights: benchmarks/export_vs_timm.py).
Batch-norm counters (num_batches_tracked, which ftlab does not keep) are written as 0 so that a strict torch load
finds every key.
"""
from __future__ import annotations

import os

import numpy as np

from ftlab import writers
from ftlab.models import efficientnet
from ftlab.models.resnet import RESNET_DEPTHS
from ftlab.models.vit import VIT_SIZES
from ftlab.pretrained import ftlab_format

TIMM_VIT = {'ti': 'vit_tiny', 's': 'vit_small', 'b': 'vit_base'}  # ftlab size -> timm's name, where timm has one
TIMM_EFFICIENTNET = {'lite0': 'tf_efficientnet_lite0'}  # TensorFlow's 'SAME' padding: timm's tf_ variants


def supports(config: dict) -> bool:
  """Whether the run's model (its config.json as a dict) has a timm layout here: a class-token ViT, a ResNet with
  the 'imagenet' stem and width 64."""
  model = config['model']
  if model['name'] == 'vit':
    return model.get('pooling') in ('', 'cls')
  if model['name'] == 'efficientnet':
    return model.get('variant') in TIMM_EFFICIENTNET
  return model['name'] == 'resnet' and model.get('stem') == 'imagenet' and model.get('width') == 64


def write(out: str, run: str, *, checkpoint: str = 'best') -> None:
  """Exports the run's parameters (LoRA folded in) and batch statistics at `checkpoint` into `out`."""
  config, summary = ftlab_format.finished_run(run)
  step, params = ftlab_format.run_params(run, config, checkpoint, merged=True)
  if config.model.name == 'vit':
    arrays, architecture = vit_to_timm(params), _vit_name(config)
    model_args = _vit_args(config, arrays)
  elif config.model.name == 'efficientnet':
    stages = efficientnet.VARIANTS[config.model.variant]['stages']
    arrays = efficientnet_to_timm(params, ftlab_format.batch_stats(run, step), stages)
    architecture = TIMM_EFFICIENTNET[config.model.variant]
    model_args = {'in_chans': int(arrays['conv_stem.weight'].shape[1])}
  else:
    depth = int(config.model.variant.removeprefix('resnet'))
    arrays = resnet_to_timm(params, ftlab_format.batch_stats(run, step), RESNET_DEPTHS[depth][0])
    model_args, architecture = {'in_chans': int(arrays['conv1.weight'].shape[1])}, f'resnet{depth}'
  names = summary.get('class_names') or []
  os.makedirs(out, exist_ok=True)
  writers.write_safetensors_atomic(os.path.join(out, 'model.safetensors'), arrays)
  head = arrays[{'vit': 'head.weight', 'efficientnet': 'classifier.weight'}.get(config.model.name, 'fc.weight')]
  writers.write_json_atomic(os.path.join(out, 'config.json'), {
      'architecture': architecture, 'num_classes': int(head.shape[0]), 'num_features': int(head.shape[1]),
      'label_names': list(names), 'model_args': model_args,
      'pretrained_cfg': {'num_classes': int(head.shape[0]), 'mean': list(config.data.image.mean),
                         'std': list(config.data.image.std)},
      'ftlab': {'run': os.path.abspath(run), 'step': step}})


def _unconv(kernel):
  """flax conv kernel [kh, kw, in, out] -> torch [out, in, kh, kw]."""
  return np.transpose(np.asarray(kernel), (3, 2, 0, 1))


def _linear(out: dict, name: str, layer: dict) -> None:
  out[f'{name}.weight'] = np.asarray(layer['kernel']).T
  out[f'{name}.bias'] = np.asarray(layer['bias'])


def _norm(out: dict, name: str, layer: dict) -> None:
  out[f'{name}.weight'], out[f'{name}.bias'] = np.asarray(layer['scale']), np.asarray(layer['bias'])


def vit_to_timm(params: dict) -> dict[str, np.ndarray]:
  """ftlab ViT parameters -> timm's VisionTransformer state dict."""
  b, out = params['backbone'], {}
  out['patch_embed.proj.weight'] = _unconv(b['embedding']['kernel'])
  out['patch_embed.proj.bias'] = np.asarray(b['embedding']['bias'])
  out['cls_token'], out['pos_embed'] = np.asarray(b['cls']), np.asarray(b['pos_embedding'])
  i = 0
  while f'layer_{i}' in b:
    layer, name = b[f'layer_{i}'], f'blocks.{i}'
    attention = layer['attention']
    _norm(out, f'{name}.norm1', layer['attention_norm'])
    out[f'{name}.attn.qkv.weight'] = np.concatenate(
        [np.asarray(attention[p]['kernel']).T for p in ('query', 'key', 'value')])
    out[f'{name}.attn.qkv.bias'] = np.concatenate([np.asarray(attention[p]['bias']) for p in ('query', 'key', 'value')])
    _linear(out, f'{name}.attn.proj', attention['out'])
    _norm(out, f'{name}.norm2', layer['mlp_norm'])
    _linear(out, f'{name}.mlp.fc1', layer['mlp']['fc1'])
    _linear(out, f'{name}.mlp.fc2', layer['mlp']['fc2'])
    i += 1
  _norm(out, 'norm', b['final_norm'])
  _linear(out, 'head', params['head'])
  return out


def _batch_norm(out: dict, name: str, params: dict, stats: dict) -> None:
  _norm(out, name, params)
  out[f'{name}.running_mean'], out[f'{name}.running_var'] = np.asarray(stats['mean']), np.asarray(stats['var'])
  out[f'{name}.num_batches_tracked'] = np.zeros((), np.int64)


def resnet_to_timm(params: dict, stats: dict, stage_sizes) -> dict[str, np.ndarray]:
  """ftlab ResNet parameters and batch statistics -> timm's / torchvision's ResNet state dict; `stage_sizes`: the
  blocks of each stage (ftlab numbers them flat: block_k)."""
  b, s, out = params['backbone'], stats['backbone'], {}
  out['conv1.weight'] = _unconv(b['stem']['conv']['kernel'])
  _batch_norm(out, 'bn1', b['stem']['bn'], s['stem']['bn'])
  k = 0
  for stage, blocks in enumerate(stage_sizes, 1):
    for j in range(blocks):
      block, block_stats, name = b[f'block_{k}'], s[f'block_{k}'], f'layer{stage}.{j}'
      for c in (1, 2, 3):
        if f'conv{c}' in block:
          out[f'{name}.conv{c}.weight'] = _unconv(block[f'conv{c}']['kernel'])
          _batch_norm(out, f'{name}.bn{c}', block[f'bn{c}'], block_stats[f'bn{c}'])
      if 'proj_conv' in block:
        out[f'{name}.downsample.0.weight'] = _unconv(block['proj_conv']['kernel'])
        _batch_norm(out, f'{name}.downsample.1', block['proj_bn'], block_stats['proj_bn'])
      k += 1
  _linear(out, 'fc', params['head'])
  return out


def efficientnet_to_timm(params: dict, stats: dict, stages) -> dict[str, np.ndarray]:
  """ftlab EfficientNet-Lite parameters and batch statistics -> timm's tf_efficientnet_lite state dict; `stages`:
  the model's (blocks, kernel, stride, expansion, channels) per stage (ftlab numbers blocks flat: block_i). A block
  without an expansion conv is timm's DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2), the others its
  InvertedResidual (conv_pw, bn1 for the expansion; conv_dw, bn2; conv_pwl, bn3)."""
  b, s, out = params['backbone'], stats['backbone'], {}
  out['conv_stem.weight'] = _unconv(b['stem_conv']['kernel'])
  _batch_norm(out, 'bn1', b['stem_bn'], s['stem_bn'])
  i = 0
  for stage, (blocks, *_) in enumerate(stages):
    for j in range(blocks):
      block, block_stats, name = b[f'block_{i}'], s[f'block_{i}'], f'blocks.{stage}.{j}'
      parts = (('expand', 'conv_pw', 'bn1'), ('depthwise', 'conv_dw', 'bn2'), ('project', 'conv_pwl', 'bn3'))
      if 'expand_conv' not in block:
        parts = (('depthwise', 'conv_dw', 'bn1'), ('project', 'conv_pw', 'bn2'))
      for ours, conv, bn in parts:
        out[f'{name}.{conv}.weight'] = _unconv(block[f'{ours}_conv']['kernel'])
        _batch_norm(out, f'{name}.{bn}', block[f'{ours}_bn'], block_stats[f'{ours}_bn'])
      i += 1
  out['conv_head.weight'] = _unconv(b['top_conv']['kernel'])
  _batch_norm(out, 'bn2', b['top_bn'], s['top_bn'])
  _linear(out, 'classifier', params['head'])
  return out


def _vit_args(config, arrays: dict) -> dict:
  """timm VisionTransformer's arguments for this size, image size and channels (from the patch grid the position
  embedding was trained at)."""
  size, _, patch = config.model.variant.partition('/')
  hidden, layers, heads, mlp_dim = VIT_SIZES[size]
  side = int(round(np.sqrt(arrays['pos_embed'].shape[1] - 1)))
  channels = int(arrays['patch_embed.proj.weight'].shape[1])
  return {'img_size': side * int(patch), 'patch_size': int(patch), 'in_chans': channels, 'embed_dim': hidden,
          'depth': layers, 'num_heads': heads, 'mlp_ratio': mlp_dim / hidden,
          'global_pool': 'token', 'class_token': True}


def _vit_name(config) -> str:
  size, _, patch = config.model.variant.partition('/')
  return f'{TIMM_VIT[size]}_patch{patch}_224' if size in TIMM_VIT else 'vit_base_patch16_224'
