"""Object-detection annotations: Pascal VOC XML (one file per image) and COCO JSON (one file per split), read into
one form: per image, its file, size, boxes [N, 4] as pixel (x_min, y_min, x_max, y_max) float32 and class ids [N].

Every mistake names its file: XML that does not parse, a missing size or coordinate, a box outside its image or with
no area, a class outside data.detection.class_names, a COCO annotation whose image id is unknown.
"""
from __future__ import annotations

import dataclasses
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from ftlab.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class Annotated:
  """One image and its boxes (pixel x_min, y_min, x_max, y_max) and class ids."""
  path: str
  width: int
  height: int
  boxes: np.ndarray  # float32 [N, 4]
  labels: np.ndarray  # int32 [N]


def _number(node, tag: str, where: str) -> float:
  found = node.find(tag)
  try:
    return float(found.text)
  except (AttributeError, TypeError, ValueError):
    raise DataError(f'{where}: <{tag}> is missing or not a number; every box needs xmin, ymin, xmax, ymax and the '
                    'image its <size> width and height') from None


def check_box(box, width: int, height: int, where: str) -> None:
  x0, y0, x1, y1 = box
  if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
    raise DataError(f'{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} image or has no '
                    'area; fix its coordinates (pixels, x_min < x_max <= width, y_min < y_max <= height)')


def read_voc(xml_path: str, image_dir: str, class_names: tuple[str, ...]) -> Annotated:
  """One Pascal VOC XML file (its <filename> found in `image_dir`). VOC's 1-based pixel coordinates are kept as
  given: boxes only need to lie within [0, width] x [0, height]."""
  try:
    root = ElementTree.parse(xml_path).getroot()
  except (ElementTree.ParseError, OSError) as err:
    raise DataError(f'{xml_path}: cannot read the annotation XML ({err}); fix or remove the file') from err
  name = (root.findtext('filename') or '').strip()
  if not name:
    raise DataError(f'{xml_path}: no <filename>; VOC annotations name their image')
  size = root.find('size')
  if size is None:
    raise DataError(f'{xml_path}: no <size>; VOC annotations give the image width and height')
  width, height = int(_number(size, 'width', xml_path)), int(_number(size, 'height', xml_path))
  boxes, labels = [], []
  for obj in root.iter('object'):
    cls = (obj.findtext('name') or '').strip()
    if cls not in class_names:
      raise DataError(f'{xml_path}: object class {cls!r} is not in data.detection.class_names {list(class_names)}; '
                      'add it there')
    bb = obj.find('bndbox')
    if bb is None:
      raise DataError(f'{xml_path}: an <object> without <bndbox>')
    box = [_number(bb, tag, xml_path) for tag in ('xmin', 'ymin', 'xmax', 'ymax')]
    check_box(box, width, height, xml_path)
    boxes.append(box)
    labels.append(class_names.index(cls))
  return Annotated(os.path.join(image_dir, name), width, height, np.asarray(boxes, np.float32).reshape(-1, 4),
                   np.asarray(labels, np.int32))


def read_coco(json_path: str, image_dir: str, class_names: tuple[str, ...]) -> list[Annotated]:
  """A COCO detection JSON (images, annotations with [x, y, w, h] boxes, categories named in `class_names`)."""
  try:
    with open(json_path) as f:
      coco = json.load(f)
    images = {im['id']: im for im in coco['images']}
    categories = {c['id']: c['name'] for c in coco['categories']}
    annotations = coco['annotations']
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise DataError(f'{json_path}: not a COCO detection file ({type(err).__name__}: {err}); it needs images, '
                    'annotations and categories') from err
  per_image = {i: ([], []) for i in images}
  for a in annotations:
    if a.get('image_id') not in images:
      raise DataError(f'{json_path}: annotation {a.get("id")} refers to image {a.get("image_id")}, which is not in '
                      'its images')
    name = categories.get(a.get('category_id'))
    if name not in class_names:
      raise DataError(f'{json_path}: category {name!r} of annotation {a.get("id")} is not in '
                      f'data.detection.class_names {list(class_names)}; add it there')
    im = images[a['image_id']]
    x, y, w, h = (float(v) for v in a['bbox'])
    check_box((x, y, x + w, y + h), im['width'], im['height'], f'{json_path} annotation {a.get("id")}')
    per_image[a['image_id']][0].append((x, y, x + w, y + h))
    per_image[a['image_id']][1].append(class_names.index(name))
  return [Annotated(os.path.join(image_dir, images[i]['file_name']), images[i]['width'], images[i]['height'],
                    np.asarray(b, np.float32).reshape(-1, 4), np.asarray(l, np.int32))
          for i, (b, l) in sorted(per_image.items())]
