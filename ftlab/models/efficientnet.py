"""EfficientNet-Lite backbones returning globally average-pooled features, or with `pyramid` feature maps.

Lite is TensorFlow's efficientnet-lite: EfficientNet-B0's block layout (MBConv: 1x1 expand, kxk depthwise, 1x1
project, an identity shortcut where the stride is 1 and the channels stay) without squeeze-and-excitation, ReLU6
for swish, a 32-channel stem and a 1280-channel top conv. Convs are bias-free with TensorFlow's 'SAME' padding
(flax's 'SAME' is that padding: asymmetric, computed from the input size), batch norm has eps 1e-3 and momentum
0.99 (torch's 0.01), so the lukemelas-named PyTorch weights load through ftlab.pretrained.vision unchanged.
Paths read 'stem_conv/kernel', 'block_5/expand_conv/kernel', 'block_5/depthwise_bn/scale', 'top_conv/kernel': the
block index is the only '_<digits>/' in a path, so the default layer regex finds it.

`bn_frozen` keeps batch norm on its running statistics in training too and never updates them, as in ResNet.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# Stages of (blocks, kernel size, stride of the first block, expansion, output channels): EfficientNet-B0's.
B0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
             (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
VARIANTS = {'lite0': dict(stages=B0_STAGES, stem_width=32, top_width=1280)}


class _Norms(nn.Module):
  """Base of the EfficientNet parts: bias-free 'SAME' convs and batch norms configured alike."""
  bn_frozen: bool = False
  bn_momentum: float = 0.99
  bn_eps: float = 1e-3
  dtype: Any = jnp.float32

  def conv(self, features: int, size: int, *, strides: int = 1, groups: int = 1, name: str) -> nn.Conv:
    return nn.Conv(features, (size, size), strides=(strides, strides), padding='SAME', feature_group_count=groups,
                   use_bias=False, dtype=self.dtype, param_dtype=jnp.float32, name=name)

  def bn(self, *, train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=(not train) or self.bn_frozen, momentum=self.bn_momentum,
                        epsilon=self.bn_eps, dtype=self.dtype, param_dtype=jnp.float32, name=name)


class MBConv(_Norms):
  """Inverted residual: (1x1 expand, bn, relu6), kxk depthwise, bn, relu6, 1x1 project, bn (+ x where it fits)."""
  features: int = 16
  kernel: int = 3
  strides: int = 1
  expansion: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    y, width = x, x.shape[-1] * self.expansion
    if self.expansion != 1:
      y = nn.relu6(self.bn(train=train, name='expand_bn')(self.conv(width, 1, name='expand_conv')(y)))
    y = self.conv(width, self.kernel, strides=self.strides, groups=width, name='depthwise_conv')(y)
    y = nn.relu6(self.bn(train=train, name='depthwise_bn')(y))
    y = self.bn(train=train, name='project_bn')(self.conv(self.features, 1, name='project_conv')(y))
    return y + x if self.strides == 1 and x.shape[-1] == self.features else y


class EfficientNet(_Norms):
  """Images [B, H, W, C] -> globally average-pooled features [B, top_width] (float32).

  With `pyramid` it returns instead the tuple of feature maps at strides 4, 8, 16 and 32, fine to coarse, float32
  [B, H/s, W/s, C]: the output of the last block at strides 4, 8 and 16 (24, 40, 112 channels for Lite0) and, at
  stride 32, the top conv's output after bn and ReLU6 (1280 channels), the map the pooled features average; the
  parameters are the same in both modes. dropout_rate and attention_dropout_rate are accepted, so that every
  backbone has the same call, and unused (the head's dropout is model.head_dropout_rate).
  """
  stages: Sequence[Sequence[int]] = B0_STAGES
  stem_width: int = 32
  top_width: int = 1280

  @nn.compact
  def __call__(self, x, *, dropout_rate, attention_dropout_rate, train: bool, pyramid: bool = False):
    del dropout_rate, attention_dropout_rate
    norms = dict(bn_frozen=self.bn_frozen, bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, dtype=self.dtype)
    x = self.conv(self.stem_width, 3, strides=2, name='stem_conv')(jnp.asarray(x, self.dtype))
    x = nn.relu6(self.bn(train=train, name='stem_bn')(x))
    maps, stride, k = [], 2, 0
    for num_blocks, kernel, first_stride, expansion, features in self.stages:
      for b in range(num_blocks):
        strides = first_stride if b == 0 else 1
        if strides > 1 and stride >= 4:
          maps.append(x)  # the last block at this resolution
        stride *= strides
        x = MBConv(features=features, kernel=kernel, strides=strides, expansion=expansion, name=f'block_{k}',
                   **norms)(x, train=train)
        k += 1
    x = nn.relu6(self.bn(train=train, name='top_bn')(self.conv(self.top_width, 1, name='top_conv')(x)))
    if pyramid:
      return tuple(m.astype(jnp.float32) for m in (*maps, x))
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def efficientnet(variant: str, **kwargs) -> EfficientNet:
  """The EfficientNet named `variant` ('lite0'); kwargs set the other fields (bn_frozen, dtype...)."""
  if variant not in VARIANTS:
    raise ValueError(f'EfficientNet variant {variant!r} is not one of {", ".join(VARIANTS)}')
  return EfficientNet(**VARIANTS[variant], **kwargs)
