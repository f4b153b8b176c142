"""Detection: CenterNet targets and decoding agree, VOC data loads letterboxed, a run reports COCO mAP."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import run_config
from ftlab import centernet, detection_metrics
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
  found, scores, classes = centernet.decode(outputs, (1, 64, 96, 3), 2, k=2)
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
  assert float(centernet.losses(exact, boxes, labels, image_shape, 1)[0]) < float(
      centernet.losses(off, boxes, labels, image_shape, 1)[0])


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


def test_a_detection_run_reports_coco_map(tmp_path):
  """A whole run (its resumption is the loop's, tested bit-identical for segmentation and classification)."""
  c = det_config(write_boxes(tmp_path / 'boxes'))
  c.data.image.flip, c.data.detection.scale = True, [0.8, 1.2]
  c.model.name, c.model.variant, c.model.head_features = 'vit', 'pico/8', 16  # a one-level pyramid at stride 8
  c.train.batch_size, c.train.num_steps, c.train.num_epochs = 4, 8, 0.0
  c.eval.every_steps, c.eval.metric, c.eval.batch_size, c.eval.train_subset = 8, 'map50', 4, 0
  workdir = str(tmp_path / 'run')
  assert run_config(c, workdir).returncode == 0
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['selection_metric'] == 'map50'
  for split in ('validation', 'test'):
    scores = summary[split]
    assert 0.0 <= scores['map'] <= scores['map50'] <= 1.0 and np.isfinite(scores['loss'])
