"""Detection: CenterNet targets and decoding agree, VOC data loads letterboxed, evaluation scores COCO mAP."""
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import assert_explained_completely
from ftlab import (analysis, centernet, det_task, detection_analysis, detection_metrics, explain, metrics,
                   stages)
from ftlab.config import defaults
from ftlab.data import boxes as boxes_lib
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


def _row(truth, detections):
  return {'id': 0, 'input': 'x.png', 'truth': {'boxes': [b for b, _ in truth], 'labels': [l for _, l in truth]},
          'detections': {'boxes': [b for b, _, _ in detections], 'scores': [s for _, s, _ in detections],
                         'labels': [l for _, _, l in detections]}}


def test_each_detection_is_judged_by_the_tide_kinds_and_unfound_boxes_are_missed():
  cat, dog = [0, 0, 10, 10], [20, 20, 30, 30]
  row = _row([(cat, 'cat'), (dog, 'dog'), ([50, 50, 60, 60], 'cat')],
             [(cat, 0.9, 'cat'), ([0, 0, 10, 9], 0.8, 'cat'), (dog, 0.7, 'cat'), ([24, 20, 34, 30], 0.6, 'dog'),
              ([80, 80, 90, 90], 0.5, 'dog'), ([1, 1, 11, 11], 0.2, 'cat')])
  judged, found = detection_analysis.judge(row, 0.3)
  assert [(d['kind'], d['truth']) for d in judged] == [
      ('correct', 'cat'), ('duplicate', 'cat'), ('wrong class', 'dog'), ('localisation', 'dog'),
      ('background', '(background)')]  # IoU of the shifted dog box: 60/140, under 0.5; the 0.2 one is not made
  assert found == [True, False, False]
  result = detection_analysis.detection([row], ['cat', 'dog'])
  assert result['errors'] == {'correct': 1, 'duplicate': 1, 'wrong class': 1, 'localisation': 1, 'background': 1,
                              'missed': 2}
  # rows true cat, dog, background; columns predicted cat, dog, background (missed boxes)
  assert result['confusion'] == [[2, 0, 1], [1, 0, 1], [0, 2, 0]]
  cat_row = result['per_class'][0]
  assert (cat_row['precision'], cat_row['recall'], cat_row['support']) == (pytest.approx(1 / 3), 0.5, 2)


@pytest.fixture(scope='module')
def detection_run(tmp_path_factory):
  """A tiny ViT + CenterNet detector trained for a few steps on the synthetic boxes."""
  tmp = tmp_path_factory.mktemp('detection_run')
  root = write_boxes(tmp / 'boxes')
  c = det_config(root)
  c.model.name, c.model.variant, c.model.head_features = 'vit', 'nano/8', 16
  c.train.batch_size, c.train.num_steps, c.train.num_epochs = 4, 8, 0.0
  c.eval.every_steps, c.eval.metric, c.eval.batch_size, c.eval.train_subset = 8, 'map50', 4, 0
  workdir = str(tmp / 'run')
  stages.run(c, workdir)
  return root, workdir


def test_a_detection_runs_predictions_give_its_map_and_boxes_in_the_original_images(detection_run):
  root, workdir = detection_run
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  for split in ('validation', 'test'):
    mine = [r for r in rows if r['split'] == split]
    assert len(mine) == summary['data']['sizes'][split]
    truths = [(r['truth']['boxes'], [0] * len(r['truth']['labels'])) for r in mine]
    found = [(r['detections']['boxes'], r['detections']['scores'], [0] * len(r['detections']['scores']))
             for r in mine]
    scores = detection_metrics.coco_map(truths, found, 1)
    for name in ('map', 'map50', 'map75'):
      assert scores[name] == pytest.approx(summary[split][name], abs=1e-9), (split, name)
    for r in mine:  # the boxes are the annotation's, in the original image's pixels
      annotated = boxes_lib.read_voc(os.path.join(root, 'annotations', r['input'].replace('.png', '.xml')),
                                     os.path.join(root, 'images'), ('box',))
      np.testing.assert_allclose(r['truth']['boxes'], annotated.boxes, atol=1e-3)
  analysis_md = open(os.path.join(workdir, 'analysis.md')).read()
  assert 'Most confident false detections' in analysis_md and 'plots/reliability_test.png' in analysis_md
  result = analysis.of_split([r for r in rows if r['split'] == 'test'], ['box'])
  assert result['per_class'][0]['ap50'] == pytest.approx(summary['test']['map50'], abs=1e-9)


def test_explain_attributes_the_most_confident_false_then_correct_detections_completely(detection_run, tmp_path):
  """The detections chosen are the most confident of those the error analysis judges wrong, then of those it judges
  correct; each, attributed by its class's heatmap logit at the cell it was decoded from, satisfies completeness
  (256 steps: this ViT, trained 8 steps, has nearly constant tokens near the zero image, where its LayerNorms make
  the path steep: 128 Gauss-Legendre steps leave 0.5%, 128 midpoint steps 14%)."""
  _, workdir = detection_run
  page = open(explain.explain(workdir, str(tmp_path / 'explain'), n=2, steps=256)).read()
  with open(os.path.join(workdir, 'predictions.jsonl')) as f:
    test = [json.loads(line) for line in f if '"split": "test"' in line]
  judged = [d for r in test for d in detection_analysis.judge(r, 0.0)[0]]
  wrong = max((d for d in judged if d['kind'] != 'correct'), key=lambda d: d['score'], default=None)
  right = max((d for d in judged if d['kind'] == 'correct'), key=lambda d: d['score'], default=None)
  expected = [d for d in (wrong, right) if d]
  shown = [float(s) for s in re.findall(r'detected with score ([\d.]+)', page)]
  assert shown[:len(expected)] == [round(d['score'], 3) for d in expected]
  assert assert_explained_completely(page) == len(shown) == page.count('data:image/png;base64') == 2
