"""COCO-style detection metrics computed by pycocotools itself: mAP@[0.5:0.95], mAP@0.5 and mAP@0.75 (COCOeval's
101-point interpolated precision, up to 100 detections per image, averaged over the classes that have ground truth).

ftlab keeps boxes as pixel (x_min, y_min, x_max, y_max); this module turns them into COCO's [x, y, width, height]
records and runs COCOeval on them, so the numbers are pycocotools' by construction and only the conversion is
ftlab's (tested on cases whose AP is known by hand).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _xywh(box) -> list[float]:
  x0, y0, x1, y1 = (float(v) for v in box)
  return [x0, y0, x1 - x0, y1 - y0]


def _ground_truth(truths, num_classes: int) -> COCO:
  annotations = []
  for image_id, (boxes, labels) in enumerate(truths):
    for box, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1)):
      x, y, w, h = _xywh(box)
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': int(label) + 1,
                          'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
  coco = COCO()
  coco.dataset = {'images': [{'id': i} for i in range(len(truths))], 'annotations': annotations,
                  'categories': [{'id': c + 1, 'name': str(c)} for c in range(num_classes)]}
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco


def coco_map(truths, detections, num_classes: int) -> dict:
  """truths: per image (boxes [N, 4], labels [N]); detections: per image (boxes [M, 4], scores [M], labels [M]).
  Returns {'map': mAP@[0.5:0.95], 'map50': mAP@0.5, 'map75': mAP@0.75}."""
  coco = _ground_truth(truths, num_classes)
  results = [{'image_id': i, 'category_id': int(label) + 1, 'bbox': _xywh(box), 'score': float(score)}
             for i, (boxes, scores, labels) in enumerate(detections)
             for box, score, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1),
                                          np.asarray(labels).reshape(-1))]
  if not results or not coco.dataset['annotations']:
    return {'map': 0.0, 'map50': 0.0, 'map75': 0.0}
  with contextlib.redirect_stdout(io.StringIO()):
    evaluation = COCOeval(coco, coco.loadRes(results), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  stats = [max(0.0, float(v)) for v in evaluation.stats[:3]]  # -1 where no class has ground truth
  return {'map': stats[0], 'map50': stats[1], 'map75': stats[2]}
