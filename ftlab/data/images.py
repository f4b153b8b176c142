"""Image preprocessing on numpy arrays: decode, resize/pad/crop one image, normalize and augment batches."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ftlab.data.errors import DataError

STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'inception': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    'none': ((0.0,), (1.0,)),
    'mnist': ((0.1307,), (0.3081,)),
}

_MODES = {1: 'L', 3: 'RGB'}
_METHODS = ('resize', 'pad', 'crop')


def decode(data: bytes, *, channels: int, where: str) -> np.ndarray:
  """Encoded image bytes (PNG, JPEG, ... anything PIL reads) -> uint8 [H, W, channels]; `where` names the source."""
  if channels not in _MODES:
    raise ValueError(f'channels must be 1 or 3, not {channels}')
  try:
    with Image.open(io.BytesIO(data)) as image:
      array = np.asarray(image.convert(_MODES[channels]), np.uint8)
  except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError... on bad bytes
    raise DataError(f'{where}: cannot decode the image ({type(e).__name__}: {e}); the file is corrupt or not an '
                    'image format PIL reads (PNG, JPEG, BMP, GIF, WebP, ...); re-export it or drop it') from e
  return array.reshape(array.shape[0], array.shape[1], channels)


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """A decoded [H, W, C] image converted to `channels` (1: luminance, 3: grey repeated); 0 keeps it as it is."""
  if not channels or image.ndim != 3 or image.shape[-1] == channels:
    return image
  if image.shape[-1] == 3 and channels == 1:
    return np.round(image @ np.array([0.299, 0.587, 0.114])).astype(image.dtype)[..., None]
  if image.shape[-1] == 1 and channels == 3:
    return np.repeat(image, 3, axis=-1)
  return image


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
  h, w = (size, size) if np.isscalar(size) else size
  return int(h), int(w)


def resize(image: np.ndarray, size: int | tuple[int, int], *, method: str = 'resize') -> np.ndarray:
  """One image [H, W, C] (or [H, W]) -> [S, S, C] ([S_h, S_w, C] for a tuple size), same dtype.

  'resize' is bilinear (PIL), 'pad' zero-pads centrally (the image must fit), 'crop' center-crops and pads
  any side that is too short.
  """
  if method not in _METHODS:
    raise DataError(f'data.image.resize = {method!r} is not one of {_METHODS}; pick one of them')
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3:
    raise ValueError(f'resize takes one image [H, W, C], got shape {image.shape}')
  th, tw = _size(size)
  h, w = image.shape[:2]
  if method == 'resize':
    return _bilinear(image, th, tw)
  if method == 'pad' and (h > th or w > tw):
    raise DataError(f'an image of {h}x{w} does not fit in data.image.size = {th}x{tw} with padding; set '
                    "data.image.resize to 'resize' (or 'crop'), or raise data.image.size")
  top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
  image = image[top:top + th, left:left + tw]
  h, w = image.shape[:2]
  pad_top, pad_left = (th - h) // 2, (tw - w) // 2
  return np.pad(image, ((pad_top, th - h - pad_top), (pad_left, tw - w - pad_left), (0, 0)))


def _bilinear(image: np.ndarray, th: int, tw: int) -> np.ndarray:
  if image.shape[:2] == (th, tw):
    return image.copy()
  if image.dtype == np.uint8 and image.shape[2] in _MODES:
    mode = _MODES[image.shape[2]]
    resized = Image.fromarray(image[:, :, 0] if mode == 'L' else image, mode).resize((tw, th), Image.BILINEAR)
    return np.asarray(resized, np.uint8).reshape(th, tw, image.shape[2])
  planes = [np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), 'F').resize((tw, th), Image.BILINEAR))
            for c in range(image.shape[2])]
  return np.stack(planes, -1).astype(image.dtype)


def _per_channel(values: Sequence[float], channels: int, key: str) -> np.ndarray:
  values = np.asarray(values, np.float32).reshape(-1)
  if len(values) not in (1, channels):
    raise DataError(f'{key} has {len(values)} values but the images have {channels} channels; give {channels} '
                    'values or 1 (shared by all channels)')
  return values


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """float32 (x - mean) / std per channel (last axis), x = batch / 255 for uint8 batches and the batch itself for
  floats (stored already in [0, 1]); mean/std of length C or 1."""
  batch = np.asarray(batch)
  channels = batch.shape[-1]
  mean = _per_channel(mean, channels, 'data.image.mean')
  std = _per_channel(std, channels, 'data.image.std')
  if np.any(std == 0):
    raise DataError(f'data.image.std = {std.tolist()} contains 0; every std must be positive')
  x = batch.astype(np.float32) / np.float32(255) if batch.dtype == np.uint8 else batch.astype(np.float32)
  return ((x - mean) / std).astype(np.float32)


def augment(batch: np.ndarray, rng: np.random.Generator, *, crop_padding: int = 0,
            flip: bool = False) -> np.ndarray:
  """Random crops (zero-pad by crop_padding, take a random HxW window per image) and random horizontal flips
  (p = 0.5 per image) of a [B, H, W, ...] batch. Crop offsets are drawn before flips; no-ops return the batch."""
  if crop_padding < 0:
    raise ValueError(f'crop_padding must be >= 0, not {crop_padding}')
  if not crop_padding and not flip:
    return batch
  batch = np.asarray(batch)
  b, h, w = batch.shape[:3]
  if crop_padding:
    p = int(crop_padding)
    padded = np.pad(batch, ((0, 0), (p, p), (p, p)) + ((0, 0),) * (batch.ndim - 3))
    offsets = rng.integers(0, 2 * p + 1, size=(b, 2))
    rows = offsets[:, 0, None, None] + np.arange(h)[None, :, None]
    cols = offsets[:, 1, None, None] + np.arange(w)[None, None, :]
    batch = padded[np.arange(b)[:, None, None], rows, cols]
  if flip:
    flips = rng.random(b) < 0.5
    batch = np.where(flips.reshape((b,) + (1,) * (batch.ndim - 1)), batch[:, :, ::-1], batch)
  return batch
