"""Detection: CenterNet targets and decoding agree, VOC data loads letterboxed, evaluation scores COCO mAP."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ftlab import centernet, det_task, detection_metrics, metrics
from ftlab.config import defaults
from ftlab.data import detection
from ftlab.data.errors import DataError

VOC = ('<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>{objects}'
       '</annotation>')
OBJECT = ('<object><name>box</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox>'
          '</object>')


def test_decoding_the_targets_gives_back_the_boxes():
  boxes = jnp.array([[[8.0, 12.0, 40.0, 36.0], [60.0, 4.0, 90.0, 50.0], [0, 0, 0, 0]]])
  labels = jnp.array([[0, 1, -1]])
  t = centernet.targets(boxes, labels, num_classes=2, grid=(16, 24), stride=(4.0, 4.0))
  assert float(t['heatmap'].max()) == 1.0 and float(t['centres'].sum()) == 2.0
  logits = jnp.log(jnp.clip(t['heatmap'], 1e-6, 1 - 1e-6) / (1 - jnp.clip(t['heatmap'], 1e-6, 1 - 1e-6)))
  outputs = jnp.concatenate([logits, t['size'], t['offset']], -1)
  found, scores, classes = jax.jit(centernet.decode, static_argnums=(1, 2, 3))(outputs, (1, 64, 96, 3), 2, 2)
  np.testing.assert_allclose(found[0], boxes[0, :2], atol=1e-4)
  np.testing.assert_array_equal(classes[0], [0, 1])
  truth = [(np.asarray(boxes[0, :2]), np.array([0, 1]))]
  assert detection_metrics.coco_map(truth, [(np.asarray(found[0]), np.asarray(scores[0]), np.asarray(classes[0]))],
                                    2) == pytest.approx({'map': 1.0, 'map50': 1.0, 'map75': 1.0})


def test_the_loss_is_lowest_at_the_targets():
  boxes, labels = jnp.array([[[8.0, 12.0, 40.0, 36.0]]]), jnp.array([[0]])
  t = centernet.targets(boxes, labels, num_classes=1, grid=(16, 16), stride=(4.0, 4.0))
  exact = jnp.concatenate([jnp.where(t['heatmap'] >= 1, 9.0, -9.0), t['size'], t['offset']], -1)
  off = exact.at[..., 1:].add(0.5)
  image_shape = (1, 64, 64, 3)
  losses = jax.jit(centernet.losses, static_argnums=(3, 4))
  assert float(losses(exact, boxes, labels, image_shape, 1)[0]) < float(losses(off, boxes, labels, image_shape, 1)[0])


def write_boxes(root, n=12, seed=0):
  """Bright rectangles on dark images of varied sizes, one or two per image, VOC XML, a train list of 9."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, 'images'))
  os.makedirs(os.path.join(root, 'annotations'))
  for i in range(n):
    h, w = int(rng.integers(60, 90)), int(rng.integers(70, 110))
    image = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
    objects = []
    for _ in range(1 + i % 2):
      bw, bh = int(rng.integers(14, 30)), int(rng.integers(14, 30))
      x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
      image[y0:y0 + bh, x0:x0 + bw] = 220
      objects.append(OBJECT.format(x0, y0, x0 + bw, y0 + bh))
    Image.fromarray(image).save(os.path.join(root, 'images', f'b{i}.png'))
    with open(os.path.join(root, 'annotations', f'b{i}.xml'), 'w') as f:
      f.write(VOC.format(name=f'b{i}.png', w=w, h=h, objects=''.join(objects)))
  with open(os.path.join(root, 'train.csv'), 'w') as f:
    f.write('filename,class\n' + ''.join(f'b{i}.png,box\nb{i}.png,box\n' for i in range(9)))
  with open(os.path.join(root, 'test.txt'), 'w') as f:
    f.write(''.join(f'b{i}.png\n' for i in range(9, n)))
  return str(root)


def det_config(root):
  c = defaults()
  d = c.data
  d.source, d.path = 'detection', str(root)
  d.splits.train, d.splits.validation, d.splits.test = 'train.csv', '', 'test.txt'
  d.validation_fraction = 2
  d.detection.class_names, d.detection.size, d.detection.max_boxes = ['box'], 64, 4
  return c


def test_voc_images_load_letterboxed_with_their_boxes_scaled(tmp_path):
  root = write_boxes(tmp_path / 'boxes')
  splits = detection.load(det_config(root).data)
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (7, 2, 3)
  batch = splits.test.get_batch(np.arange(3))
  assert batch['image'].shape == (3, 64, 64, 3) and batch['boxes'].shape == (3, 4, 4)
  for image, boxes, labels in zip(batch['image'], batch['boxes'], batch['box_labels']):
    for x0, y0, x1, y1 in boxes[labels >= 0]:  # each box frames a bright rectangle (resampled edges aside)
      inside = image[int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1, 0]
      assert inside.mean() > 0.8  # 220 / 255 inside, at most 40 / 255 outside
  os.remove(os.path.join(root, 'annotations', 'b3.xml'))
  with pytest.raises(DataError, match=r'annotations/b3\.xml: no annotation for a listed image'):
    detection.load(det_config(root).data)


def test_evaluation_collects_every_image_and_scores_it_with_cocoeval():
  """DetTask's eval metrics over two batches (the second padded) -> summarize -> COCO mAP: perfect outputs score 1,
  padded rows and padded boxes count nowhere. (A whole detection run is configs/raccoon_det.py, by hand.)"""
  task = det_task.DetTask(('box',), max_detections=5)
  boxes = jnp.array([[[8.0, 12.0, 40.0, 36.0], [0, 0, 0, 0]], [[20.0, 4.0, 50.0, 30.0], [0, 0, 0, 0]]])
  labels = jnp.array([[0, -1], [0, -1]])
  t = centernet.targets(boxes, labels, num_classes=1, grid=(16, 16), stride=(4.0, 4.0))
  heat = jnp.clip(t['heatmap'], 1e-6, 1 - 1e-6)
  outputs = jnp.concatenate([jnp.log(heat / (1 - heat)), t['size'], t['offset']], -1)
  image = jnp.zeros((2, 64, 64, 3))
  evaluate = jax.jit(lambda o, b: task.eval_metrics(logits=o, batch=b))  # one shape: one compile
  first = evaluate(outputs, {'image': image, 'boxes': boxes, 'box_labels': labels, 'mask': jnp.array([True, True])})
  padded = {'image': image, 'boxes': boxes[::-1], 'box_labels': labels, 'mask': jnp.array([True, False])}
  second = evaluate(outputs[::-1], padded)
  scores = metrics.summarize(first.merge(second))
  assert scores == pytest.approx({'loss': scores['loss'], 'map': 1.0, 'map50': 1.0, 'map75': 1.0})


def test_a_per_device_evaluation_gathers_every_devices_detections_in_batch_order():
  """Under a per-device program (parallel.mode 'pmap') detections are gathered, not summed: four devices of two rows
  each give every device the whole batch's detections in row order, and the loss of the whole batch."""
  rng = np.random.default_rng(0)
  rows = {'det_boxes': rng.random((8, 5, 4)), 'det_scores': rng.random((8, 5)), 'det_labels': rng.integers(0, 3, (8, 5)),
          'gt_boxes': rng.random((8, 2, 4)), 'gt_labels': rng.integers(-1, 3, (8, 2)), 'rows': np.ones(8),
          'loss': rng.random(8), 'mask': np.ones(8)}
  collect = lambda r: det_task.make_eval_metrics().single_from_model_output(**r)
  per_device = jax.jit(jax.vmap(lambda r: metrics.over_devices(collect(r), 'devices'), axis_name='devices'))
  split = per_device(jax.tree.map(lambda x: jnp.asarray(x).reshape((4, 2) + x.shape[1:]), rows))
  for device in range(4):
    gathered = jax.tree.map(lambda x: x[device], split)
    for name, value in gathered.detections.compute().items():
      np.testing.assert_allclose(value, rows[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(gathered.loss.compute(), rows['loss'].mean(), rtol=1e-6)
