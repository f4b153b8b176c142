"""Object detection, CenterNet-style: a backbone's feature pyramid -> the FPN's fused stride-4 features -> per cell a
heatmap logit per class, the box size (w, h) and the centre's sub-cell offset (dx, dy), in stride units.

Why CenterNet ("Objects as Points"): anchor-free and single-stage, one output map instead of FCOS's five levels and
centre-ness; its targets are drawn on the host (ftlab.data.centernet) and its decoding needs no learned NMS: a 3x3
max-pool keeps the local peaks of the heatmap, the top-k peaks are the detections. The stride-4 map keeps small
objects; the FPN brings the coarse levels' context into it. The heatmap bias starts at -2.19 (p = 0.1), as CenterNet.

Output: [B, h, w, C + 4]: C heatmap logits, then size (2) and offset (2), float32. The head is the top-level module
'head' of a segmentation.PyramidModel.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.segmentation import fpn

HEATMAP_BIAS = -2.19


class CenterHead(nn.Module):
  num_classes: int
  features: int = 64
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pyramid, *, dropout_rate, train: bool) -> jax.Array:
    x = fpn(pyramid, features=self.features, dtype=self.dtype, dropout_rate=dropout_rate, train=train, module=self)
    outputs = []
    for name, n, bias in (('heatmap', self.num_classes, HEATMAP_BIAS), ('size', 2, 0.0), ('offset', 2, 0.0)):
      y = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype, param_dtype=jnp.float32, name=f'{name}_conv')(x))
      outputs.append(nn.Conv(n, (1, 1), dtype=self.dtype, param_dtype=jnp.float32,
                             bias_init=nn.initializers.constant(bias), name=f'{name}_out')(y))
    return jnp.concatenate(outputs, axis=-1).astype(jnp.float32)
