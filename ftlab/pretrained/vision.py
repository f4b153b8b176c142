"""Pretrained vision weights (timm / torchvision ViT and ResNet, big_vision ViT, lukemelas-named EfficientNet) as ftlab
parameter trees.

A file is read into a flat {name: array} dict (`read_weights`), its naming recognised (`detect_format`) and renamed
and re-laid-out into the tree ftlab's models use: {'backbone': {...}, 'head': {...}}, the classifier head outside
the backbone. torch stores conv kernels [out, in, kh, kw] and dense kernels [out, in]; flax wants [kh, kw, in, out]
and [in, out]. Each mapping returns the names it did not use as its last value, so that nothing is dropped
silently. Shapes are not checked here: surgery.merge does that against the fresh model, and `fit_pos_embedding`
first resizes a ViT's position embedding to the model's patch grid.
"""
from __future__ import annotations

import math
import os
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
from safetensors import numpy as safetensors_numpy

from ftlab.optim import groups
from ftlab.pretrained.surgery import SurgeryError

FORMATS = '.safetensors (timm / Hugging Face) or .npz (big_vision)'


def read_weights(path: str) -> dict[str, np.ndarray]:
  """The {name: array} of a .safetensors or .npz file (big_vision's '/'-joined npz keys are kept as they are)."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in ('.safetensors', '.npz'):
    raise SurgeryError(f'model.pretrained: {path}: unknown weights format {suffix or "(no suffix)"!r}; use {FORMATS}')
  if not os.path.isfile(path):
    raise SurgeryError(f'model.pretrained: {path}: no such file; set model.pretrained to the {FORMATS} weights file')
  try:
    if suffix == '.safetensors':
      return dict(safetensors_numpy.load_file(path))
    with np.load(path, allow_pickle=False) as npz:
      return {name: np.asarray(npz[name]) for name in npz.files}
  except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, safetensors.SafetensorError) as e:
    if isinstance(e, ValueError) and 'allow_pickle' in str(e):  # refused: unpickling can run arbitrary code
      raise SurgeryError(f'model.pretrained: {path}: cannot read the weights: it holds pickled Python objects, which '
                         'ftlab does not load (unpickling can run code); save it again with numpy arrays only '
                         '(np.savez of arrays), or as .safetensors') from e
    raise SurgeryError(f'model.pretrained: {path}: cannot read the weights ({e}); expected a plain {FORMATS} file '
                       'of arrays: download or convert it again') from e


def _strip_params(weights: dict) -> dict:
  """big_vision npz keys without their 'params/' prefix."""
  return {k.removeprefix('params/'): v for k, v in weights.items()}


def detect_format(weights: dict) -> str:
  """'timm_vit', 'big_vision_vit', 'timm_resnet' or 'lukemelas_efficientnet', from the names in `weights`."""
  keys = set(_strip_params(weights))
  if 'patch_embed.proj.weight' in keys:
    return 'timm_vit'
  if 'embedding/kernel' in keys and any(k.startswith('Transformer/') for k in keys):
    return 'big_vision_vit'
  if 'conv1.weight' in keys and any(k.startswith('layer1.') for k in keys):
    return 'timm_resnet'
  if '_conv_stem.weight' in keys:
    return 'lukemelas_efficientnet'
  some = ', '.join(sorted(weights)[:8]) or '(no arrays)'
  raise SurgeryError(f'the weights are not a timm ViT, big_vision ViT, timm/torchvision ResNet or lukemelas '
                     f'EfficientNet (names: {some}); convert them to one of these namings')


class _Source:
  """The weights being mapped: `take` returns an array by name (None when absent) and records it as used."""

  def __init__(self, weights: dict):
    self.weights, self.used = weights, set()

  def take(self, name: str):
    if name not in self.weights:
      return None
    self.used.add(name)
    return np.asarray(self.weights[name])

  def indices(self, pattern: str) -> list[int]:
    """The sorted distinct integers that `pattern`'s first group matches at the start of a name."""
    return sorted({int(m.group(1)) for k in self.weights if (m := re.match(pattern, k))})

  def unused(self) -> list[str]:
    return sorted(set(self.weights) - self.used)


def _put(tree: dict, path: str, value) -> None:
  """tree[a][b][c] = value for path 'a/b/c'; nothing when value is None (absent: merge reports it missing)."""
  if value is None:
    return
  *parents, leaf = path.split('/')
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def _linear(src: _Source, torch_name: str, tree: dict, path: str) -> None:
  """torch Linear weight [out, in] / bias -> path/kernel [in, out] / path/bias."""
  weight = src.take(f'{torch_name}.weight')
  _put(tree, f'{path}/kernel', None if weight is None else weight.T)
  _put(tree, f'{path}/bias', src.take(f'{torch_name}.bias'))


def _norm(src: _Source, torch_name: str, tree: dict, path: str) -> None:
  """torch LayerNorm / BatchNorm weight, bias -> path/scale, path/bias."""
  _put(tree, f'{path}/scale', src.take(f'{torch_name}.weight'))
  _put(tree, f'{path}/bias', src.take(f'{torch_name}.bias'))


def _conv(weight):
  """torch conv kernel [out, in, kh, kw] -> flax [kh, kw, in, out]."""
  return None if weight is None else np.transpose(weight, (2, 3, 1, 0))


def _check_heads(hidden: int, num_heads: int) -> None:
  if hidden % num_heads:
    raise SurgeryError(f'the checkpoint has hidden size {hidden}, not divisible by num_heads {num_heads}; set the '
                       "model's num_heads to the checkpoint's")


def vit_from_timm(weights: dict, *, num_heads: int) -> tuple[dict, list[str]]:
  """(params tree, unused names) of timm ViT weights ('patch_embed.proj.weight', 'blocks.0.attn.qkv.weight'...).

  The fused qkv projection [3D, D] is split in query, key, value order. timm models pooled by average with
  'fc_norm' normalise after pooling, which ftlab's ViT does not: they are refused.
  """
  src, tree = _Source(weights), {}
  if 'fc_norm.weight' in weights:
    raise SurgeryError("the timm ViT normalises after average pooling (it has 'fc_norm'), which ftlab's ViT does not "
                       "(layer norm, then pooling); use a checkpoint with a 'norm' layer (class-token pooling)")
  embed = src.take('patch_embed.proj.weight')
  if embed is not None:
    _check_heads(embed.shape[0], num_heads)
  backbone = tree.setdefault('backbone', {})
  _put(backbone, 'embedding/kernel', _conv(embed))
  _put(backbone, 'embedding/bias', src.take('patch_embed.proj.bias'))
  _put(backbone, 'cls', src.take('cls_token'))
  _put(backbone, 'pos_embedding', src.take('pos_embed'))
  for i in src.indices(r'blocks\.(\d+)\.'):
    name, layer = f'blocks.{i}', f'layer_{i}'
    _norm(src, f'{name}.norm1', backbone, f'{layer}/attention_norm')
    qkv_weight, qkv_bias = src.take(f'{name}.attn.qkv.weight'), src.take(f'{name}.attn.qkv.bias')
    for j, part in enumerate(('query', 'key', 'value')):
      if qkv_weight is not None:
        _put(backbone, f'{layer}/attention/{part}/kernel', np.split(qkv_weight, 3, axis=0)[j].T)
      if qkv_bias is not None:
        _put(backbone, f'{layer}/attention/{part}/bias', np.split(qkv_bias, 3)[j])
    _linear(src, f'{name}.attn.proj', backbone, f'{layer}/attention/out')
    _norm(src, f'{name}.norm2', backbone, f'{layer}/mlp_norm')
    _linear(src, f'{name}.mlp.fc1', backbone, f'{layer}/mlp/fc1')
    _linear(src, f'{name}.mlp.fc2', backbone, f'{layer}/mlp/fc2')
  _norm(src, 'norm', backbone, 'final_norm')
  _linear(src, 'head', tree, 'head')
  return tree, src.unused()


def vit_from_big_vision(weights: dict, *, num_heads: int) -> tuple[dict, list[str]]:
  """(params tree, unused names) of big_vision / vit_jax ViT weights ('Transformer/encoderblock_0/...').

  Keys may carry a 'params/' prefix (unused names are reported without it). Attention kernels [D, heads, head_dim]
  become [D, D]; `num_heads` must equal the checkpoint's head count. big_vision adds its position embedding
  before the class token is prepended, so that embedding has no class-token row: a zero row is put first, which
  computes the same thing.
  """
  src, tree = _Source(_strip_params(weights)), {}
  backbone = tree.setdefault('backbone', {})
  _put(backbone, 'embedding/kernel', src.take('embedding/kernel'))
  _put(backbone, 'embedding/bias', src.take('embedding/bias'))
  cls = src.take('cls')
  _put(backbone, 'cls', cls)
  pos = src.take('pos_embedding')
  pos = src.take('Transformer/posembed_input/pos_embedding') if pos is None else pos
  if pos is not None and cls is not None and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
    pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
  _put(backbone, 'pos_embedding', pos)
  for i in src.indices(r'Transformer/encoderblock_(\d+)/'):
    name, layer = f'Transformer/encoderblock_{i}', f'layer_{i}'
    for bv, ours in (('LayerNorm_0', 'attention_norm'), ('LayerNorm_1', 'mlp_norm'), ('MlpBlock_0/Dense_0', 'mlp/fc1'),
                     ('MlpBlock_0/Dense_1', 'mlp/fc2')):
      for leaf in (('scale', 'bias') if 'LayerNorm' in bv else ('kernel', 'bias')):
        _put(backbone, f'{layer}/{ours}/{leaf}', src.take(f'{name}/{bv}/{leaf}'))
    attention = f'{name}/MultiHeadDotProductAttention_0'
    for part in ('query', 'key', 'value'):
      kernel, bias = src.take(f'{attention}/{part}/kernel'), src.take(f'{attention}/{part}/bias')
      if kernel is not None:
        if kernel.ndim == 3 and kernel.shape[1] != num_heads:
          raise SurgeryError(f'{attention}/{part}/kernel has {kernel.shape[1]} heads, the model {num_heads}; set the '
                             "model's num_heads to the checkpoint's")
        _put(backbone, f'{layer}/attention/{part}/kernel', kernel.reshape(kernel.shape[0], -1))
      _put(backbone, f'{layer}/attention/{part}/bias', None if bias is None else bias.reshape(-1))
    kernel = src.take(f'{attention}/out/kernel')
    _put(backbone, f'{layer}/attention/out/kernel', None if kernel is None else kernel.reshape(-1, kernel.shape[-1]))
    _put(backbone, f'{layer}/attention/out/bias', src.take(f'{attention}/out/bias'))
  _put(backbone, 'final_norm/scale', src.take('Transformer/encoder_norm/scale'))
  _put(backbone, 'final_norm/bias', src.take('Transformer/encoder_norm/bias'))
  _put(tree, 'head/kernel', src.take('head/kernel'))
  _put(tree, 'head/bias', src.take('head/bias'))
  return tree, src.unused()


def _batch_norm(src: _Source, torch_name: str, params: dict, stats: dict, path: str) -> None:
  """torch BatchNorm2d -> params path/{scale,bias} and batch_stats path/{mean,var}."""
  _norm(src, torch_name, params, path)
  _put(stats, f'{path}/mean', src.take(f'{torch_name}.running_mean'))
  _put(stats, f'{path}/var', src.take(f'{torch_name}.running_var'))
  src.take(f'{torch_name}.num_batches_tracked')  # torch's counter: nothing to load


def resnet_from_timm(weights: dict) -> tuple[dict, dict, list[str]]:
  """(params, batch_stats, unused names) of timm / torchvision ResNet weights ('conv1.weight', 'layer1.0.bn1.weight').

  Blocks are numbered flat across stages in order ('layer2.0' of a ResNet-18 is 'block_2'); 'downsample.0' / '.1'
  become 'proj_conv' / 'proj_bn', 'fc' the head. batch_stats is {'backbone': ...}.
  """
  src, params, stats = _Source(weights), {}, {}
  backbone, backbone_stats = params.setdefault('backbone', {}), stats.setdefault('backbone', {})
  _put(backbone, 'stem/conv/kernel', _conv(src.take('conv1.weight')))
  _batch_norm(src, 'bn1', backbone, backbone_stats, 'stem/bn')
  k = 0
  for stage in src.indices(r'layer(\d+)\.'):
    for b in src.indices(rf'layer{stage}\.(\d+)\.'):
      name, block = f'layer{stage}.{b}', f'block_{k}'
      for j in (1, 2, 3):
        _put(backbone, f'{block}/conv{j}/kernel', _conv(src.take(f'{name}.conv{j}.weight')))
        _batch_norm(src, f'{name}.bn{j}', backbone, backbone_stats, f'{block}/bn{j}')
      _put(backbone, f'{block}/proj_conv/kernel', _conv(src.take(f'{name}.downsample.0.weight')))
      _batch_norm(src, f'{name}.downsample.1', backbone, backbone_stats, f'{block}/proj_bn')
      k += 1
  _linear(src, 'fc', params, 'head')
  return params, stats, src.unused()


EFFICIENTNET_BLOCK = (('_expand_conv', '_bn0', 'expand'), ('_depthwise_conv', '_bn1', 'depthwise'),
                      ('_project_conv', '_bn2', 'project'))


def efficientnet_from_torch(weights: dict) -> tuple[dict, dict, list[str]]:
  """(params, batch_stats, unused names) of lukemelas-named EfficientNet weights ('_conv_stem.weight',
  '_blocks.3._depthwise_conv.weight').

  '_blocks.N._expand_conv' / '_bn0', '_depthwise_conv' / '_bn1', '_project_conv' / '_bn2' become 'block_N/expand_*',
  'depthwise_*', 'project_*'; '_conv_stem' / '_bn0' 'stem_*', '_conv_head' / '_bn1' 'top_*', '_fc' the head.
  Depthwise kernels [C, 1, kh, kw] become flax's grouped [kh, kw, 1, C] by the same transpose as other convs.
  """
  src, params, stats = _Source(weights), {}, {}
  backbone, backbone_stats = params.setdefault('backbone', {}), stats.setdefault('backbone', {})
  for torch_conv, torch_bn, ours in (('_conv_stem', '_bn0', 'stem'), ('_conv_head', '_bn1', 'top')):
    _put(backbone, f'{ours}_conv/kernel', _conv(src.take(f'{torch_conv}.weight')))
    _batch_norm(src, torch_bn, backbone, backbone_stats, f'{ours}_bn')
  for i in src.indices(r'_blocks\.(\d+)\.'):
    for torch_conv, torch_bn, ours in EFFICIENTNET_BLOCK:
      _put(backbone, f'block_{i}/{ours}_conv/kernel', _conv(src.take(f'_blocks.{i}.{torch_conv}.weight')))
      _batch_norm(src, f'_blocks.{i}.{torch_bn}', backbone, backbone_stats, f'block_{i}/{ours}_bn')
  _linear(src, '_fc', params, 'head')
  return params, stats, src.unused()


def resize_pos_embedding(posemb: np.ndarray, new_num_patches_side: int, *, has_cls: bool) -> np.ndarray:
  """[1, N(+1), D] -> [1, n*n(+1), D]: the square patch grid resized bilinearly, the class-token row kept first."""
  cls, grid = (posemb[:, :1], posemb[:, 1:]) if has_cls else (posemb[:, :0], posemb)
  side = math.isqrt(grid.shape[1])
  if side * side != grid.shape[1]:
    raise SurgeryError(f'the position embedding has {grid.shape[1]} patch rows (shape {posemb.shape}), not a square '
                       'grid: cannot resize it; re-initialise pos_embedding with init.reinit')
  if side == new_num_patches_side:
    return posemb
  dim = grid.shape[-1]
  grid = jax.image.resize(jnp.asarray(grid.reshape(1, side, side, dim), jnp.float32),
                          (1, new_num_patches_side, new_num_patches_side, dim), 'bilinear', antialias=False)
  grid = np.asarray(grid, posemb.dtype).reshape(1, -1, dim)
  return np.concatenate([cls, grid], axis=1)


def fit_pos_embedding(loaded_tree, fresh_tree) -> tuple[dict, str]:
  """(loaded_tree with each 'pos_embedding' resized to fresh_tree's patch grid, a note saying what changed or '').

  A class-token row is kept, dropped (the fresh model pools by mean) or added as zeros (the fresh model has a class
  token and the checkpoint none), following whether each tree has a 'cls' beside its 'pos_embedding'.
  """
  loaded_flat = {groups.path_str(kp): v for kp, v in jax.tree_util.tree_flatten_with_path(loaded_tree)[0]}
  fresh_flat = {groups.path_str(kp): v for kp, v in jax.tree_util.tree_flatten_with_path(fresh_tree)[0]}
  notes, tree = [], loaded_tree
  for path, pos in loaded_flat.items():
    if not (path == 'pos_embedding' or path.endswith('/pos_embedding')) or path not in fresh_flat:
      continue
    target = fresh_flat[path].shape
    pos = np.asarray(pos)
    if pos.shape == target:
      continue
    cls_path = path[:-len('pos_embedding')] + 'cls'
    loaded_cls, fresh_cls = cls_path in loaded_flat, cls_path in fresh_flat
    side = math.isqrt(target[1] - fresh_cls)
    if side * side != target[1] - fresh_cls:
      raise SurgeryError(f"{path}: the model's patch grid ({target[1] - fresh_cls} patches) is not square; use "
                         'square images or re-initialise pos_embedding with init.reinit')
    old = math.isqrt(pos.shape[1] - loaded_cls)
    new = resize_pos_embedding(pos, side, has_cls=loaded_cls)
    note = f'{path} resized from {old}x{old} to {side}x{side} patches'
    if loaded_cls and not fresh_cls:
      new, note = new[:, 1:], note + ' (class-token row dropped)'
    elif fresh_cls and not loaded_cls:
      new, note = np.concatenate([np.zeros_like(new[:, :1]), new], axis=1), note + ' (zero class-token row added)'
    tree = _replaced(tree, path.split('/'), new)
    notes.append(note)
  return tree, '; '.join(notes)


def _replaced(tree, parts: list[str], value):
  """A copy of the nested dict `tree` with tree[parts[0]]...[parts[-1]] = value (the input is not changed)."""
  copy = dict(tree)
  copy[parts[0]] = value if len(parts) == 1 else _replaced(tree[parts[0]], parts[1:], value)
  return copy


def weights_file(path: str) -> str:
  """`path`, or the model.safetensors inside it when it is a folder (as a Hugging Face model folder holds it)."""
  if not os.path.isdir(path):
    return path
  inside = os.path.join(path, 'model.safetensors')
  if not os.path.isfile(inside):
    raise SurgeryError(f'model.pretrained: {path} is a folder without model.safetensors; set model.pretrained to the '
                       f'{FORMATS} weights file itself')
  return inside


def load(path: str, model_config, fresh_params) -> tuple[dict, dict, list[str], list[str]]:
  """model.pretrained for model.name 'vit' / 'resnet' / 'efficientnet' (a weights file, or a folder holding
  model.safetensors): (params tree, batch-norm statistics, unused names, notes), the ViT's position embedding fitted
  to `fresh_params`' patch grid (which may be abstract shapes)."""
  weights = read_weights(weights_file(path))
  fmt = detect_format(weights)
  if not fmt.endswith(model_config.name):
    raise SurgeryError(f'model.pretrained: {path} holds {fmt.replace("_", " ")} weights, but model.name is '
                       f'{model_config.name!r}; set model.name to match the checkpoint')
  if fmt in ('timm_resnet', 'lukemelas_efficientnet'):
    convert = resnet_from_timm if fmt == 'timm_resnet' else efficientnet_from_torch
    params, stats, unused = convert(weights)
    return params, stats, unused, []
  from ftlab.models.vit import vit
  num_heads = vit(model_config.variant).num_heads
  convert = vit_from_timm if fmt == 'timm_vit' else vit_from_big_vision
  tree, unused = convert(weights, num_heads=num_heads)
  tree, note = fit_pos_embedding(tree, fresh_params)
  return tree, {}, unused, [note] if note else []
