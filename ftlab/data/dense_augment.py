"""Training augmentation that moves an image and its targets together: random scale, random crop, random horizontal
flip, for per-pixel labels (segmentation) and for boxes (detection). Images resize bilinearly, label maps by nearest
neighbour (a class id is never blended); whatever a crop takes from beyond the image is zeros in the image and IGNORE
in the labels, so it counts nowhere. Boxes are scaled, shifted, clipped to the crop and flipped with the pixels; a
box left with less than `min_visible` of its area (or under 2 pixels a side) is dropped.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ftlab.data import images as images_lib
from ftlab.data.masks import IGNORE


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of a label map [H, W] (int32, IGNORE kept)."""
  if labels.shape == (height, width):
    return labels
  resized = Image.fromarray(labels.astype(np.int32), 'I').resize((width, height), Image.NEAREST)
  return np.asarray(resized, np.int32)


def _pad_to(image: np.ndarray, labels: np.ndarray, height: int, width: int):
  h, w = labels.shape
  ph, pw = max(0, height - h), max(0, width - w)
  if ph or pw:
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    labels = np.pad(labels, ((0, ph), (0, pw)), constant_values=IGNORE)
  return image, labels


def scale_crop_flip(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, crop: tuple[int, int],
                    scale: tuple[float, float] = (1.0, 1.0), flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """One training view of (image [H, W, C], labels [H, W]): scaled by a factor drawn from `scale`, cropped to `crop`
  (h, w) at a random place, flipped left-right with p = 0.5 when `flip`."""
  s = rng.uniform(*scale) if scale[0] != scale[1] else scale[0]
  if s != 1.0:
    h, w = labels.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    image, labels = images_lib.resize(image, (nh, nw)), resize_labels(labels, nh, nw)
  ch, cw = crop
  image, labels = _pad_to(image, labels, ch, cw)
  top = int(rng.integers(0, labels.shape[0] - ch + 1))
  left = int(rng.integers(0, labels.shape[1] - cw + 1))
  image, labels = image[top:top + ch, left:left + cw], labels[top:top + ch, left:left + cw]
  if flip and rng.random() < 0.5:
    image, labels = image[:, ::-1], labels[:, ::-1]
  return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def _view(height: int, width: int, rng: np.random.Generator, crop, scale, flip):
  """(scale factor, scaled size, crop offsets, flipped) of one random view."""
  s = rng.uniform(*scale) if scale[0] != scale[1] else scale[0]
  nh, nw = max(1, round(height * s)), max(1, round(width * s))
  top = int(rng.integers(0, max(nh, crop[0]) - crop[0] + 1))
  left = int(rng.integers(0, max(nw, crop[1]) - crop[1] + 1))
  return s, (nh, nw), (top, left), bool(flip and rng.random() < 0.5)


def boxes_in_view(boxes: np.ndarray, factors, offsets, crop, flipped: bool, *, min_visible: float = 0.25):
  """(boxes [K, 4], kept [N] bool): pixel boxes scaled by (fy, fx), shifted by the crop's (top, left), clipped to
  it and flipped; those keeping less than `min_visible` of their scaled area are dropped."""
  fy, fx = factors
  scaled = boxes * np.array([fx, fy, fx, fy], np.float32) - np.array([offsets[1], offsets[0]] * 2, np.float32)
  clipped = np.clip(scaled, 0, np.array([crop[1], crop[0]] * 2, np.float32))
  area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
  sides = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
  kept = (area(clipped) >= min_visible * np.maximum(area(scaled), 1e-6)) & (sides >= 2)
  out = clipped[kept]
  if flipped:
    out = np.stack([crop[1] - out[:, 2], out[:, 1], crop[1] - out[:, 0], out[:, 3]], -1)
  return out.astype(np.float32), kept


def scale_crop_flip_boxes(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, *, crop: tuple[int, int],
                          scale: tuple[float, float] = (1.0, 1.0), flip: bool = False):
  """(image [crop_h, crop_w, C], boxes [K, 4], kept [N] bool): one random view of an image and its pixel boxes."""
  h, w = image.shape[:2]
  s, (nh, nw), offsets, flipped = _view(h, w, rng, crop, scale, flip)
  if (nh, nw) != (h, w):
    image = images_lib.resize(image, (nh, nw))
  image = np.pad(image, ((0, max(0, crop[0] - nh)), (0, max(0, crop[1] - nw)), (0, 0)))
  image = image[offsets[0]:offsets[0] + crop[0], offsets[1]:offsets[1] + crop[1]]
  boxes, kept = boxes_in_view(np.asarray(boxes, np.float32).reshape(-1, 4), (nh / h, nw / w), offsets, crop,
                              flipped)
  if flipped:
    image = image[:, ::-1]
  return np.ascontiguousarray(image), boxes, kept
