"""Detection groundwork: VOC XML and COCO JSON annotations, box-aware augmentation, COCO mAP through pycocotools."""
import json

import numpy as np
import pytest

from ftlab import detection_metrics
from ftlab.data import boxes as boxes_lib, dense_augment
from ftlab.data.errors import DataError

VOC = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJECT = ('<object><name>{cls}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax>'
          '</bndbox></object>')


def _voc(tmp_path, name, boxes, cls='raccoon', w=100, h=80):
  path = tmp_path / f'{name}.xml'
  path.write_text(VOC.format(name=f'{name}.jpg', w=w, h=h, objects=''.join(OBJECT.format(*b, cls=cls) for b in boxes)))
  return str(path)


def test_voc_xml_reads_pixel_boxes_and_class_ids(tmp_path):
  a = boxes_lib.read_voc(_voc(tmp_path, 'r1', [(10, 5, 60, 70), (0, 0, 100, 80)]), '/img', ('dog', 'raccoon'))
  assert a.path == '/img/r1.jpg' and (a.width, a.height) == (100, 80)
  np.testing.assert_array_equal(a.boxes, [[10, 5, 60, 70], [0, 0, 100, 80]])
  np.testing.assert_array_equal(a.labels, [1, 1])


def test_bad_annotations_are_refused_naming_the_file(tmp_path):
  with pytest.raises(DataError, match=r'r2\.xml: box \(10, 5, 160, 70\) is outside the 100x80 image'):
    boxes_lib.read_voc(_voc(tmp_path, 'r2', [(10, 5, 160, 70)]), '/img', ('raccoon',))
  with pytest.raises(DataError, match=r"r3\.xml: object class 'cat' is not in data.detection.class_names"):
    boxes_lib.read_voc(_voc(tmp_path, 'r3', [(1, 1, 5, 5)], cls='cat'), '/img', ('raccoon',))
  (tmp_path / 'r4.xml').write_text('<annotation><filename>r4.jpg</filename><size>')
  with pytest.raises(DataError, match=r'r4\.xml: cannot read the annotation XML'):
    boxes_lib.read_voc(str(tmp_path / 'r4.xml'), '/img', ('raccoon',))
  coco = {'images': [{'id': 1, 'file_name': 'a.jpg', 'width': 50, 'height': 40}],
          'categories': [{'id': 3, 'name': 'raccoon'}],
          'annotations': [{'id': 7, 'image_id': 2, 'category_id': 3, 'bbox': [1, 1, 5, 5]}]}
  (tmp_path / 'c.json').write_text(json.dumps(coco))
  with pytest.raises(DataError, match=r'c\.json: annotation 7 refers to image 2'):
    boxes_lib.read_coco(str(tmp_path / 'c.json'), '/img', ('raccoon',))


def test_coco_json_gives_the_same_boxes_as_voc(tmp_path):
  coco = {'images': [{'id': 1, 'file_name': 'r1.jpg', 'width': 100, 'height': 80}],
          'categories': [{'id': 3, 'name': 'raccoon'}],
          'annotations': [{'id': 1, 'image_id': 1, 'category_id': 3, 'bbox': [10, 5, 50, 65]}]}
  (tmp_path / 'c.json').write_text(json.dumps(coco))
  [a] = boxes_lib.read_coco(str(tmp_path / 'c.json'), '/img', ('raccoon',))
  b = boxes_lib.read_voc(_voc(tmp_path, 'r1', [(10, 5, 60, 70)]), '/img', ('raccoon',))
  assert a.path == b.path
  np.testing.assert_array_equal(a.boxes, b.boxes)
  np.testing.assert_array_equal(a.labels, [0])


def test_augmented_boxes_still_frame_their_objects():
  image = np.zeros((90, 120, 3), np.uint8)
  box = np.array([[30, 20, 70, 60]], np.float32)  # x0, y0, x1, y1: a white square
  image[20:60, 30:70] = 255
  seen = 0
  for seed in range(30):
    view, out, kept = dense_augment.scale_crop_flip_boxes(image, box, np.random.default_rng(seed), crop=(64, 64),
                                                          scale=(0.6, 1.4), flip=True)
    assert view.shape == (64, 64, 3)
    white = np.argwhere(view[..., 0] > 127)
    if not kept[0]:
      continue
    seen += 1
    (y0, x0), (y1, x1) = white.min(0), white.max(0) + 1
    np.testing.assert_allclose(out[0], [x0, y0, x1, y1], atol=1.5)  # bilinear edges: within a pixel and a half
  assert seen >= 10


def test_coco_map_has_the_values_known_by_hand():
  truth = [(np.array([[10, 10, 50, 50]]), np.array([0]))]
  exact = (np.array([[10, 10, 50, 50], [60, 60, 90, 90]]), np.array([0.9, 0.8]), np.array([0, 0]))
  assert detection_metrics.coco_map(truth, [exact], 1) == pytest.approx({'map': 1.0, 'map50': 1.0, 'map75': 1.0})
  false_first = (exact[0], np.array([0.8, 0.9]), exact[2])  # the false positive ranks first: precision 0.5 at recall 1
  assert detection_metrics.coco_map(truth, [false_first], 1)['map50'] == pytest.approx(0.5)
  # IoU 0.62 (the 40x40 box shifted by 5 px in x and y: 35*35 / (2*1600 - 1225)): a hit at thresholds 0.50-0.60
  shifted = (np.array([[15, 15, 55, 55]]), np.array([0.9]), np.array([0]))
  scores = detection_metrics.coco_map(truth, [shifted], 1)
  assert scores == pytest.approx({'map': 0.3, 'map50': 1.0, 'map75': 0.0})
  wrong_class = (shifted[0], shifted[1], np.array([1]))
  assert detection_metrics.coco_map(truth, [wrong_class], 2)['map'] == 0.0
