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


def _evaluated(truths, detections, num_classes: int) -> COCOeval | None:
  """COCOeval run (evaluate, accumulate, summarize) on the images' truths and detections; None when there are no
  detections or no ground truth."""
  coco = _ground_truth(truths, num_classes)
  results = [{'image_id': i, 'category_id': int(label) + 1, 'bbox': _xywh(box), 'score': float(score)}
             for i, (boxes, scores, labels) in enumerate(detections)
             for box, score, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1),
                                          np.asarray(labels).reshape(-1))]
  if not results or not coco.dataset['annotations']:
    return None
  with contextlib.redirect_stdout(io.StringIO()):
    evaluation = COCOeval(coco, coco.loadRes(results), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return evaluation


def coco_map(truths, detections, num_classes: int) -> dict:
  """truths: per image (boxes [N, 4], labels [N]); detections: per image (boxes [M, 4], scores [M], labels [M]).
  Returns {'map': mAP@[0.5:0.95], 'map50': mAP@0.5, 'map75': mAP@0.75}."""
  evaluation = _evaluated(truths, detections, num_classes)
  if evaluation is None:
    return {'map': 0.0, 'map50': 0.0, 'map75': 0.0}
  stats = [max(0.0, float(v)) for v in evaluation.stats[:3]]  # -1 where no class has ground truth
  return {'map': stats[0], 'map50': stats[1], 'map75': stats[2]}


def per_class_ap(truths, detections, num_classes: int) -> list[dict]:
  """Each class's AP@[0.5:0.95] and AP@0.5 (None for a class without ground truth), from the same COCOeval run as
  coco_map: their mean over the classes with ground truth is its 'map' and 'map50'."""
  evaluation = _evaluated(truths, detections, num_classes)
  present = {int(c) for _, labels in truths for c in np.asarray(labels).reshape(-1)}
  out = []
  for k in range(num_classes):
    if evaluation is None:  # no detections (AP 0 where the class has ground truth) or no ground truth at all
      out.append({'ap': 0.0, 'ap50': 0.0} if k in present else {'ap': None, 'ap50': None})
      continue
    precision = evaluation.eval['precision'][:, :, k, 0, -1]  # [IoU thresholds, recall points]: area all, 100 dets
    seen = precision > -1
    out.append({'ap': float(precision[seen].mean()) if seen.any() else None,
                'ap50': float(precision[0][seen[0]].mean()) if seen[0].any() else None})
  return out
