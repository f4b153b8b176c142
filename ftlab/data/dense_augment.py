"""Training augmentation that moves an image and its per-pixel labels together: random scale, random crop, random
horizontal flip. Images resize bilinearly, label maps by nearest neighbour (a class id is never blended); whatever a
crop takes from beyond the image is zeros in the image and IGNORE in the labels, so it counts nowhere.
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
