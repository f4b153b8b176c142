"""Semantic segmentation: a backbone's feature pyramid -> a light FPN decoder -> per-pixel logits at input size.

The head is a semantic FPN (Kirillov et al., Panoptic FPN), lightened: 1x1 laterals bring every pyramid level to
`features` channels, a top-down pass adds each coarser level (nearest upsampling) into the finer one, each level
gets a 3x3 conv + GroupNorm + ReLU and is upsampled bilinearly to the finest level (stride 4), the levels are
summed, dropped out (the traced head_dropout_rate) and a 1x1 conv gives the class logits, upsampled bilinearly to the
input's size. Why FPN rather than DeepLab's ASPP: it reads every stride, so thin structures (poles, cell membranes)
keep the stride-4 detail; it works from any pyramid (a ViT's single map is a one-level pyramid); it costs little
at CPU budgets (no dilated convs at stride 8, which would make the backbone 16x dearer); and the detection head
uses the same pyramid.

Everything after the backbone is under the top-level module 'head', so '^head/' names the decoder for LP-FT,
re-initialisation and layer-wise decay, as for classifiers.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout


def _upsample(x: jax.Array, height: int, width: int, method: str) -> jax.Array:
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), method)


def fpn(pyramid, *, features: int, dtype, dropout_rate=0.0, train: bool = False, module=None) -> jax.Array:
  """The fused stride-4 features [B, h_0, w_0, features] of a pyramid (fine to coarse). Called inside a compact
  module's __call__: its layers ('lateral_i', 'smooth_i', 'norm_i') become that module's; `module` draws dropout."""
  conv = lambda size, name: nn.Conv(features, (size, size), dtype=dtype, param_dtype=jnp.float32, name=name)
  levels = [conv(1, f'lateral_{i}')(jnp.asarray(p, dtype)) for i, p in enumerate(pyramid)]
  for i in range(len(levels) - 2, -1, -1):  # top-down: each level gets the coarser one added
    h, w = levels[i].shape[1:3]
    levels[i] = levels[i] + _upsample(levels[i + 1], h, w, 'nearest')
  h, w = levels[0].shape[1:3]
  fused = 0.0
  for i, x in enumerate(levels):
    x = conv(3, f'smooth_{i}')(x)
    x = nn.relu(nn.GroupNorm(num_groups=8, dtype=dtype, param_dtype=jnp.float32, name=f'norm_{i}')(x))
    fused = fused + _upsample(x, h, w, 'bilinear')
  return fused if module is None else dropout(module, fused, dropout_rate, train=train)


class FPNHead(nn.Module):
  """Pyramid (fine to coarse, [B, h_i, w_i, C_i]) -> logits [B, h_0, w_0, num_classes] at the finest level."""
  num_classes: int
  features: int = 64
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pyramid, *, dropout_rate, train: bool) -> jax.Array:
    fused = fpn(pyramid, features=self.features, dtype=self.dtype, dropout_rate=dropout_rate, train=train,
                module=self)
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, param_dtype=jnp.float32, name='classifier')(fused)


class PyramidModel(nn.Module):
  """backbone (images -> feature pyramid) -> `head` (FPNHead, or detection's CenterHead) -> float32 outputs, resized
  bilinearly to the input's height and width when `to_input_size` (segmentation's per-pixel logits)."""
  backbone: nn.Module
  head: nn.Module
  to_input_size: bool = False

  def __call__(self, x, *, dropout_rate=0.0, attention_dropout_rate=0.0, head_dropout_rate=0.0,
               train: bool = False) -> jax.Array:
    pyramid = self.backbone(x, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, train=train,
                            pyramid=True)
    out = self.head(pyramid, dropout_rate=head_dropout_rate, train=train).astype(jnp.float32)
    return _upsample(out, x.shape[1], x.shape[2], 'bilinear') if self.to_input_size else out
