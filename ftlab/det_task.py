"""The detection task: what a detection model reads, its CenterNet loss, and its evaluation (the loss, and the top-k
detections with the ground truth collected to the host, where COCOeval computes mAP over the whole split).

Batches carry 'image', 'boxes' [B, M, 4] (pixel x0, y0, x1, y1 in the batch's images) and 'box_labels' [B, M]
(-1 for padding); the loss is the mean over images (padded eval rows, mask 0, count nowhere).
"""
from __future__ import annotations

import dataclasses
import functools

import flax
import numpy as np
from clu import metrics as clu_metrics

from ftlab import centernet
from ftlab import metrics as metrics_lib

DETECTION_FIELDS = ('det_boxes', 'det_scores', 'det_labels', 'gt_boxes', 'gt_labels', 'rows')
DETECTION_METRICS = metrics_lib.DETECTION_METRIC_NAMES


@flax.struct.dataclass
class Detections(clu_metrics.CollectingMetric.from_outputs(DETECTION_FIELDS)):
  """Every evaluated image's detections and ground truth, gathered on the host (merged outside jit)."""


@functools.cache
def make_eval_metrics():
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'), detections=Detections)


@dataclasses.dataclass(frozen=True)
class DetTask:
  class_names: tuple[str, ...]
  max_detections: int = 100
  kind: str = 'detect'

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def inputs(self, batch: dict):
    return batch['image']

  def example_input(self, source):
    return self.inputs(source.get_batch(np.zeros(1, np.int64)))

  def _rows(self, batch: dict):
    return metrics_lib.row_weights(batch, 'image')

  def _losses(self, outputs, batch: dict):
    return centernet.losses(outputs, batch['boxes'], batch['box_labels'], batch['image'].shape, self.num_classes)

  def losses_and_weights(self, logits, batch: dict, *, label_smoothing, class_weights):
    """(per-image CenterNet losses, row weights); label smoothing and class weights do not apply."""
    del label_smoothing, class_weights
    return self._losses(logits, batch), self._rows(batch)

  def train_metrics(self, *, losses, logits, batch):
    del logits
    return metrics_lib.make_loss_metrics().single_from_model_output(loss=losses, mask=self._rows(batch))

  def detections(self, logits, batch: dict):
    """The top max_detections (boxes [B, K, 4] in the batch's pixels, scores [B, K], labels [B, K]) per image."""
    return centernet.decode(logits, batch['image'].shape, self.num_classes, self.max_detections)

  def eval_metrics(self, *, logits, batch):
    rows = self._rows(batch)
    boxes, scores, labels = self.detections(logits, batch)
    return make_eval_metrics().single_from_model_output(
        loss=self._losses(logits, batch), mask=rows, det_boxes=boxes, det_scores=scores, det_labels=labels,
        gt_boxes=batch['boxes'], gt_labels=batch['box_labels'], rows=rows)

  def check_metric(self, metric: str) -> str | None:
    if metric not in DETECTION_METRICS + ('loss',):
      return (f"eval.metric: {metric!r} does not measure detection; use 'map' (COCO mAP@[0.5:0.95]), 'map50' or "
              "'map75'")
    return None


def detection_scores(values: dict) -> dict:
  """COCO mAP of collected detections (Detections.compute()), padded rows, boxes and empty detections left out."""
  from ftlab import detection_metrics
  keep = np.asarray(values['rows']) > 0
  truths = [(b[l >= 0], l[l >= 0]) for b, l in zip(values['gt_boxes'][keep], values['gt_labels'][keep])]
  found = [(b[s > 0], s[s > 0], l[s > 0]) for b, s, l in zip(values['det_boxes'][keep], values['det_scores'][keep],
                                                               values['det_labels'][keep])]
  num_classes = int(max(values['gt_labels'].max(initial=0), values['det_labels'].max(initial=0))) + 1
  return detection_metrics.coco_map(truths, found, num_classes)
