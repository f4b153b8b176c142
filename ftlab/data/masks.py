"""Segmentation masks read from image files into class ids [H, W] (int32, IGNORE where no class counts).

Three encodings: class-id images (8-bit grey or palette PNGs whose pixel values are the class ids, as CamVid's
SegNet release and VOC's), binary masks (0 / 255, as most medical sets: >= 128 is class 1), and colour masks with a
palette (each class one RGB colour). Ids listed as ignored (CamVid's 11 'void', VOC's 255 border) become IGNORE, which
the loss and the metrics skip; any other id outside the class list is an error that names the file.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from ftlab.data.errors import DataError

IGNORE = -1


@dataclasses.dataclass(frozen=True)
class MaskFormat:
  num_classes: int
  binary: bool = False
  palette: tuple[int, ...] = ()  # flat RGB triples, class i's colour at 3i..3i+2
  ignore_ids: tuple[int, ...] = ()  # stored values
  id_offset: int = 0  # the stored value of class 0

  @classmethod
  def of(cls, seg_config, num_classes: int) -> MaskFormat:
    return cls(num_classes, bool(seg_config.binary), tuple(int(v) for v in seg_config.palette),
               tuple(int(v) for v in seg_config.ignore_ids), int(seg_config.id_offset))


def read(path: str, fmt: MaskFormat) -> np.ndarray:
  """The class ids of the mask file at `path` ([H, W] int32, IGNORE for ignored pixels)."""
  try:
    with Image.open(path) as image:
      if fmt.palette:
        return _from_palette(np.asarray(image.convert('RGB')), fmt, path)
      array = np.asarray(image if image.mode in ('L', 'P', 'I', 'I;16') else image.convert('L'))
  except (OSError, ValueError, SyntaxError) as err:
    raise DataError(f'{path}: cannot read the mask ({type(err).__name__}: {err}); re-export it as a PNG') from err
  return from_array(array, fmt, path)


def from_array(array: np.ndarray, fmt: MaskFormat, where: str) -> np.ndarray:
  """The class ids of a decoded mask ([H, W], [H, W, 1], or [H, W, 3]: RGB with a palette, else equal channels)."""
  array = np.asarray(array)
  if array.ndim == 3 and fmt.palette and array.shape[-1] == 3:
    return _from_palette(array, fmt, where)
  if array.ndim == 3 and (array.shape[-1] == 1 or (array == array[..., :1]).all()):
    array = array[..., 0]
  if array.ndim != 2:
    raise DataError(f'{where}: a mask must have one channel, this one has shape {array.shape}; give class-id masks, '
                    'or set data.segmentation.palette for colour masks')
  if fmt.binary:
    return (array >= 128).astype(np.int32)
  return _from_ids(array.astype(np.int32), fmt, where)


def _from_ids(stored: np.ndarray, fmt: MaskFormat, path: str) -> np.ndarray:
  ignored = np.isin(stored, fmt.ignore_ids)
  ids = stored - fmt.id_offset
  bad = ~ignored & ((ids < 0) | (ids >= fmt.num_classes))
  if bad.any():
    values = np.unique(stored[bad])[:5].tolist()
    shift = f' (minus data.segmentation.id_offset={fmt.id_offset})' if fmt.id_offset else ''
    raise DataError(f'{path}: mask values {values}{shift} are outside the {fmt.num_classes} classes of '
                    'data.segmentation.class_names; add them to data.segmentation.ignore_ids if they mark void, or '
                    'name their classes')
  return np.where(ignored, IGNORE, ids).astype(np.int32)


def _from_palette(rgb: np.ndarray, fmt: MaskFormat, path: str) -> np.ndarray:
  colours = np.asarray(fmt.palette, np.int64).reshape(-1, 3)
  packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
  keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
  order = np.argsort(keys)
  at = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
  found = keys[order][at] == packed
  ids = order[at] + fmt.id_offset  # palette index i is class i
  if not found.all():
    r, c = np.argwhere(~found)[0]
    raise DataError(f'{path}: colour {tuple(int(v) for v in rgb[r, c])} at row {r}, column {c} is not in '
                    'data.segmentation.palette; add it (flat r, g, b per class) or fix the mask')
  return _from_ids(ids, fmt, path)
