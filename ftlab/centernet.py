"""CenterNet's targets, loss and decoding (Zhou et al., "Objects as Points"), on device, from a batch's padded boxes.

Targets, at the head's output grid (stride = input size / output size): per class a heatmap with a Gaussian peak of
1 at each box's centre cell (radius from the box size as CornerNet and CenterNet's code compute it), and at that
cell the box size and the centre's sub-cell offset in stride units. Loss per image: the penalty-reduced focal loss
of the heatmap plus 0.1 x L1 of the sizes and 1 x L1 of the offsets at the centres, each over the image's number of
boxes (CenterNet's weights). Decoding: a 3x3 max-pool keeps the heatmap's local peaks (CenterNet's NMS), the top-k
peaks over cells and classes are the detections.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0


def gaussian_radius(height, width, min_overlap: float = 0.7):
  """CornerNet's radius for boxes of height x width (stride units), the smallest of its three cases."""
  b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + jnp.sqrt(jnp.maximum(b1 ** 2 - 4 * c1, 0.0))) / 2
  b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
  r2 = (b2 + jnp.sqrt(jnp.maximum(b2 ** 2 - 16 * c2, 0.0))) / 2
  a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
  r3 = (b3 + jnp.sqrt(jnp.maximum(b3 ** 2 - 4 * a3 * c3, 0.0))) / 2
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def targets(boxes, labels, *, num_classes: int, grid: tuple[int, int], stride: tuple[float, float]) -> dict:
  """boxes [B, M, 4] pixel (x0, y0, x1, y1), labels [B, M] (-1: padding) -> heatmap [B, h, w, C], size and offset
  [B, h, w, 2], centres [B, h, w]."""
  h, w = grid
  b = boxes / jnp.array([stride[1], stride[0], stride[1], stride[0]], boxes.dtype)
  bw, bh = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
  cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
  ix, iy = jnp.clip(jnp.floor(cx), 0, w - 1), jnp.clip(jnp.floor(cy), 0, h - 1)
  radius = jnp.maximum(jnp.floor(gaussian_radius(bh, bw)), 0.0)[..., None, None]
  dx = jnp.arange(w, dtype=b.dtype)[None, None, None, :] - ix[..., None, None]
  dy = jnp.arange(h, dtype=b.dtype)[None, None, :, None] - iy[..., None, None]
  sigma = (2 * radius + 1) / 6
  valid = (labels >= 0)[..., None, None]
  gauss = jnp.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
  gauss = jnp.where(valid & (jnp.abs(dx) <= radius) & (jnp.abs(dy) <= radius), gauss, 0.0)  # [B, M, h, w]
  onehot = jax.nn.one_hot(labels, num_classes, dtype=b.dtype)  # [B, M, C]; padding (-1) is all zeros
  heatmap = jnp.max(gauss[..., None] * onehot[:, :, None, None, :], axis=1)
  cell = valid & (dx == 0) & (dy == 0)
  at = lambda v: jnp.max(jnp.where(cell, v[..., None, None], 0.0), axis=1)
  return {'heatmap': heatmap, 'size': jnp.stack([at(bw), at(bh)], -1),
          'offset': jnp.stack([at(cx - ix), at(cy - iy)], -1), 'centres': jnp.max(cell, axis=1).astype(b.dtype)}


def split_outputs(outputs, num_classes: int):
  """(heatmap logits [B, h, w, C], size [B, h, w, 2], offset [B, h, w, 2]) of the head's output."""
  return outputs[..., :num_classes], outputs[..., num_classes:num_classes + 2], outputs[..., num_classes + 2:]


def stride_of(image_shape, grid) -> tuple[float, float]:
  return image_shape[1] / grid[0], image_shape[2] / grid[1]


def losses(outputs, boxes, labels, image_shape, num_classes: int):
  """The per-image CenterNet loss [B]."""
  heat_logits, size, offset = split_outputs(outputs, num_classes)
  grid = heat_logits.shape[1:3]
  t = targets(boxes, labels, num_classes=num_classes, grid=grid, stride=stride_of(image_shape, grid))
  p = jnp.clip(jax.nn.sigmoid(heat_logits), 1e-4, 1 - 1e-4)
  positive = t['heatmap'] >= 1.0
  focal = jnp.where(positive, jnp.log(p) * (1 - p) ** 2, jnp.log(1 - p) * p ** 2 * (1 - t['heatmap']) ** 4)
  count = jnp.maximum(jnp.sum(t['centres'], axis=(1, 2)), 1.0)
  l1 = lambda pred, target: jnp.sum(jnp.abs(pred - target) * t['centres'][..., None], axis=(1, 2, 3))
  return (-jnp.sum(focal, axis=(1, 2, 3)) + SIZE_WEIGHT * l1(size, t['size'])
          + OFFSET_WEIGHT * l1(offset, t['offset'])) / count


def peaks(heat_logits, k: int):
  """(scores [B, k], classes [B, k], cells [B, k] as row * w + column) of the top-k local maxima (3x3) of the
  heatmap's probabilities [B, h, w, C]."""
  b, h, w, c = heat_logits.shape
  heat = jax.nn.sigmoid(heat_logits)
  pooled = jax.lax.reduce_window(heat, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), 'SAME')
  scores, index = jax.lax.top_k(jnp.where(heat == pooled, heat, 0.0).reshape(b, -1), min(k, h * w * c))
  return scores, index % c, index // c


def decode(outputs, image_shape, num_classes: int, k: int):
  """(boxes [B, k, 4] pixel x0, y0, x1, y1; scores [B, k]; labels [B, k]) of the top-k heatmap peaks."""
  heat_logits, size, offset = split_outputs(outputs, num_classes)
  b, h, w, _ = heat_logits.shape
  scores, cls, cell = peaks(heat_logits, k)
  take = lambda v: jnp.take_along_axis(v.reshape(b, h * w, 2), cell[..., None], axis=1)
  sy, sx = stride_of(image_shape, (h, w))
  wh, off = take(size), take(offset)
  cx, cy = (cell % w + off[..., 0]) * sx, (cell // w + off[..., 1]) * sy
  bw, bh = wh[..., 0] * sx, wh[..., 1] * sy
  return jnp.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1), scores, cls
