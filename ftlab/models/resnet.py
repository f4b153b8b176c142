"""ResNet backbones (torchvision / timm semantics) returning globally average-pooled features, or with `pyramid` the
feature map of every stage.

Basic blocks (two 3x3 convs) for depths 18/34, bottleneck blocks (1x1, 3x3 with the stride as in ResNet v1.5, 1x1
with expansion 4) for 50/101, a 1x1 conv + batch norm projection shortcut where the shape changes, bias-free convs
with torch's explicit padding, so torchvision / timm weights load through ftlab.pretrained.vision unchanged.
Blocks are numbered flat across stages: 'block_5/conv1/kernel', 'block_5/proj_bn/scale', 'stem/conv/kernel'; the
block index is the only '_<digits>/' in a path, so the default layer regex finds it.

`bn_frozen` keeps batch norm on its running statistics in training too and never updates them: the usual choice
when fine-tuning with small batches.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

RESNET_DEPTHS = {18: ([2, 2, 2, 2], 'basic'), 34: ([3, 4, 6, 3], 'basic'), 50: ([3, 4, 6, 3], 'bottleneck'),
                 101: ([3, 4, 23, 3], 'bottleneck')}
BLOCKS = ('basic', 'bottleneck')
STEMS = ('imagenet', 'small')
PAD_1 = ((1, 1), (1, 1))


class _Norms(nn.Module):
  """Base of the ResNet parts: bias-free convs and batch norms configured alike."""
  bn_frozen: bool = False
  bn_momentum: float = 0.9
  bn_eps: float = 1e-5
  dtype: Any = jnp.float32

  def conv(self, features: int, size: int, *, strides: int = 1, padding: Any = 'VALID', name: str) -> nn.Conv:
    return nn.Conv(features, (size, size), strides=(strides, strides), padding=padding, use_bias=False,
                   dtype=self.dtype, param_dtype=jnp.float32, name=name)

  def bn(self, *, train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=(not train) or self.bn_frozen, momentum=self.bn_momentum,
                        epsilon=self.bn_eps, dtype=self.dtype, param_dtype=jnp.float32, name=name)


class Stem(_Norms):
  """'imagenet': 7x7 stride-2 conv, bn, relu, 3x3 stride-2 max pool; 'small': 3x3 conv, bn, relu (28/32 px)."""
  kind: str = 'imagenet'
  width: int = 64

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.kind == 'imagenet':
      x = self.conv(self.width, 7, strides=2, padding=((3, 3), (3, 3)), name='conv')(x)
    else:
      x = self.conv(self.width, 3, padding=PAD_1, name='conv')(x)
    x = nn.relu(self.bn(train=train, name='bn')(x))
    if self.kind == 'imagenet':
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=PAD_1)  # pads with -inf, as torch
    return x


class Block(_Norms):
  """One residual block: 'basic' (3x3, 3x3) or 'bottleneck' (1x1, strided 3x3, 1x1 x4), then relu(y + shortcut)."""
  kind: str = 'basic'
  width: int = 64
  strides: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.kind == 'basic':
      out = self.width
      y = self.conv(self.width, 3, strides=self.strides, padding=PAD_1, name='conv1')(x)
      y = nn.relu(self.bn(train=train, name='bn1')(y))
      y = self.bn(train=train, name='bn2')(self.conv(self.width, 3, padding=PAD_1, name='conv2')(y))
    else:
      out = 4 * self.width
      y = nn.relu(self.bn(train=train, name='bn1')(self.conv(self.width, 1, name='conv1')(x)))
      y = self.conv(self.width, 3, strides=self.strides, padding=PAD_1, name='conv2')(y)
      y = nn.relu(self.bn(train=train, name='bn2')(y))
      y = self.bn(train=train, name='bn3')(self.conv(out, 1, name='conv3')(y))
    if self.strides != 1 or x.shape[-1] != out:
      x = self.conv(out, 1, strides=self.strides, name='proj_conv')(x)
      x = self.bn(train=train, name='proj_bn')(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """Images [B, H, W, C] -> globally average-pooled features [B, channels] (float32).

  Stage s has `stage_sizes[s]` blocks of width `width * 2**s`, the first strided by 2 from the second stage on.
  With `pyramid` it returns instead the tuple of each stage's last block output, fine to coarse, float32
  [B, H/s, W/s, C]: strides 4, 8, 16, 32 with the 'imagenet' stem (1, 2, 4, 8 with 'small'); the last one is the
  map the pooled features average, and the parameters are the same in both modes.
  dropout_rate and attention_dropout_rate are accepted, so that every backbone has the same call, and unused.
  """
  stage_sizes: Sequence[int]
  block: str
  width: int = 64
  stem: str = 'imagenet'
  bn_frozen: bool = False
  bn_momentum: float = 0.9
  bn_eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, dropout_rate, attention_dropout_rate, train: bool, pyramid: bool = False):
    del dropout_rate, attention_dropout_rate
    if self.block not in BLOCKS:
      raise ValueError(f'ResNet block {self.block!r} is not one of {", ".join(BLOCKS)}')
    if self.stem not in STEMS:
      raise ValueError(f'ResNet stem {self.stem!r} is not one of {", ".join(STEMS)}')
    norms = dict(bn_frozen=self.bn_frozen, bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, dtype=self.dtype)
    x = Stem(kind=self.stem, width=self.width, name='stem', **norms)(jnp.asarray(x, self.dtype), train=train)
    k, maps = 0, []
    for stage, num_blocks in enumerate(self.stage_sizes):
      for b in range(num_blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = Block(kind=self.block, width=self.width * 2 ** stage, strides=strides, name=f'block_{k}', **norms)(
            x, train=train)
        k += 1
      maps.append(x)
    if pyramid:
      return tuple(m.astype(jnp.float32) for m in maps)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def resnet(depth: int, **kwargs) -> ResNet:
  """The ResNet of `depth` (18, 34, 50, 101); kwargs set the other fields (width, stem, bn_frozen, dtype...)."""
  if depth not in RESNET_DEPTHS:
    raise ValueError(f'ResNet depth {depth!r} is not one of {", ".join(map(str, RESNET_DEPTHS))}')
  stage_sizes, block = RESNET_DEPTHS[depth]
  return ResNet(stage_sizes=tuple(stage_sizes), block=block, **kwargs)
