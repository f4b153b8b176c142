"""Semantic segmentation: masks, data folders, joint augmentation, pixel metrics against numpy, and a run."""
import json
import os
import signal

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import assert_explained_completely, assert_same_run, run_config
from ftlab import explain, metrics, stages, tasks
from ftlab.config import defaults
from ftlab.data import dense_augment, masks, segmentation
from ftlab.data.errors import DataError

CLASSES = ['sky', 'road', 'car']


def _scene(rng, h=40, w=56):
  """A synthetic road scene: sky above, road below, a car box; its image's red channel encodes the class."""
  labels = np.zeros((h, w), np.int32)
  labels[h // 2:] = 1
  top, left = rng.integers(h // 2 - 8, h - 10), rng.integers(0, w - 16)
  labels[top:top + 8, left:left + 14] = 2
  image = np.stack([labels * 100, np.full((h, w), 30), rng.integers(0, 50, (h, w))], -1).astype(np.uint8)
  return image, labels


def write_dataset(root, *, n_train=10, n_val=4, void_pixels=True, seed=0):
  """CamVid's layout: train/ + trainannot/, val/ + valannot/, class-id PNGs, id 3 marking void."""
  rng = np.random.default_rng(seed)
  for split, n in (('train', n_train), ('val', n_val)):
    os.makedirs(os.path.join(root, split))
    os.makedirs(os.path.join(root, split + 'annot'))
    for i in range(n):
      image, labels = _scene(rng)
      if void_pixels:
        labels[0, :5] = 3
      Image.fromarray(image).save(os.path.join(root, split, f'{i:03d}.png'))
      Image.fromarray(labels.astype(np.uint8)).save(os.path.join(root, split + 'annot', f'{i:03d}.png'))
  return str(root)


def seg_config(root, **data):
  c = defaults()
  d = c.data
  d.source, d.path = 'segmentation', str(root)
  d.splits.train, d.splits.validation, d.splits.test = 'train', 'val', ''
  d.test_fraction = 2
  d.segmentation.class_names = CLASSES
  d.segmentation.ignore_ids = [3]
  d.segmentation.pad_to = 16
  for key, value in data.items():
    d.segmentation[key] = value
  return c


def test_folder_pairs_load_padded_with_void_and_padding_ignored(tmp_path):
  splits = segmentation.load(seg_config(write_dataset(tmp_path / 'scenes')).data)
  assert splits.task == 'segment' and splits.class_names == tuple(CLASSES)
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (8, 4, 2)
  batch = splits.validation.get_batch(np.arange(2))
  assert batch['image'].shape == (2, 48, 64, 3) and batch['label'].shape == (2, 48, 64)  # 40x56 padded to 16s
  assert (batch['label'][:, 40:] == masks.IGNORE).all() and (batch['label'][:, :, 56:] == masks.IGNORE).all()
  assert (batch['label'][:, 0, :5] == masks.IGNORE).all()  # void id 3
  assert set(np.unique(batch['label'][:, :40, :56])) <= {-1, 0, 1, 2}


def test_binary_and_palette_masks_read_to_class_ids(tmp_path):
  grey = np.array([[0, 255], [255, 0]], np.uint8)
  Image.fromarray(grey).save(tmp_path / 'b.png')
  binary = masks.MaskFormat(2, binary=True)
  np.testing.assert_array_equal(masks.read(str(tmp_path / 'b.png'), binary), [[0, 1], [1, 0]])
  rgb = np.array([[[128, 0, 0], [0, 128, 0]], [[0, 0, 0], [128, 0, 0]]], np.uint8)
  Image.fromarray(rgb).save(tmp_path / 'c.png')
  palette = masks.MaskFormat(2, palette=(128, 0, 0, 0, 128, 0, 0, 0, 0), ignore_ids=(2,))
  np.testing.assert_array_equal(masks.read(str(tmp_path / 'c.png'), palette), [[0, 1], [-1, 0]])
  rgb[0, 0] = (9, 9, 9)
  Image.fromarray(rgb).save(tmp_path / 'd.png')
  with pytest.raises(DataError, match=r'd\.png: colour \(9, 9, 9\) at row 0, column 0 is not in'):
    masks.read(str(tmp_path / 'd.png'), palette)


def test_bad_masks_are_refused_naming_the_file(tmp_path):
  root = write_dataset(tmp_path / 'scenes', void_pixels=False)
  with pytest.raises(DataError, match=r"data.splits.validation='valid': name a split folder"):
    segmentation.load(_with_val(root, 'valid'))
  Image.fromarray(np.full((40, 56), 7, np.uint8)).save(os.path.join(root, 'trainannot', '002.png'))
  with pytest.raises(DataError, match=r'trainannot/002\.png: mask values \[7\] are outside the 3 classes'):
    segmentation.load(seg_config(root).data)
  Image.fromarray(np.zeros((20, 56), np.uint8)).save(os.path.join(root, 'trainannot', '002.png'))
  with pytest.raises(DataError, match=r'002\.png: the mask is 20x56 but its image .*002\.png is 40x56'):
    segmentation.load(seg_config(root).data)
  os.remove(os.path.join(root, 'trainannot', '002.png'))
  with pytest.raises(DataError, match=r'train/002\.png: no mask named 002\.\* in'):
    segmentation.load(seg_config(root).data)


def _with_val(root, name):
  c = seg_config(root)
  c.data.splits.validation = name
  return c.data


def _pets(split_sizes, seed=0):
  """tfds.testing.mock_data's data source for oxford_iiit_pet: records of its features, trimap masks 1..3."""
  rng = np.random.default_rng(seed)
  splits = {}
  for split, n in split_sizes.items():
    rows = []
    for i in range(n):
      image, labels = _scene(rng, h=24 + 8 * (i % 2), w=32)
      rows.append({'image': image, 'segmentation_mask': (labels + 1).astype(np.uint8)[..., None], 'label': i % 37,
                   'species': i % 2, 'file_name': f'{split}_{i}.jpg', 'head_bbox': np.zeros(4, np.float32)})
    splits[split] = rows
  return lambda builder, split, **kwargs: splits[split]


def test_a_tfds_dataset_with_masks_loads_as_segmentation(tmp_path):
  """oxford_iiit_pet through tfds.data_source (mocked): its trimaps (stored 1..3) become class ids 0..2 with
  data.segmentation.id_offset, train is carved into train + validation, every split padded to one size."""
  import tensorflow_datasets as tfds
  c = seg_config(tmp_path, mask_feature='segmentation_mask', id_offset=1, ignore_ids=[])
  c.data.source, c.data.name, c.data.data_dir = 'tfds', 'oxford_iiit_pet', str(tmp_path / 'tfds')
  c.data.splits.validation, c.data.splits.test, c.data.validation_fraction = '', 'test', 2
  with tfds.testing.mock_data(as_data_source_fn=_pets({'train': 8, 'test': 3})):
    from ftlab import data
    splits = data.load(c.data)
  assert splits.task == 'segment' and splits.class_names == tuple(CLASSES)
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 2, 3)
  expected = _pets({'train': 8, 'test': 3})(None, 'test')[1]
  batch = splits.test.get_batch(np.array([1]))
  assert batch['image'].shape == (1, 32, 32, 3) and batch['label'].shape == (1, 32, 32)
  np.testing.assert_array_equal(batch['label'][0], expected['segmentation_mask'][..., 0] - 1)
  assert splits.report['splits'] == {'train': 'train (carved, 6 images)', 'validation': 'train (carved, 2 images)',
                                     'test': 'test'}
  c.data.segmentation.id_offset = 0  # stored 3 is outside 3 classes
  with tfds.testing.mock_data(as_data_source_fn=_pets({'train': 8, 'test': 3})), \
      pytest.raises(DataError, match=r'oxford_iiit_pet, split train, example 0: mask values \[3\]'):
    data.load(c.data)
  c.data.segmentation.mask_feature = 'mask'
  with pytest.raises(DataError, match=r"mask_feature='mask': oxford_iiit_pet has no such feature; its features are "
                                      'file_name, head_bbox, image, label, segmentation_mask, species'):
    data.load(c.data)


def test_augmentation_moves_image_and_mask_together():
  rng = np.random.default_rng(1)
  image, labels = _scene(rng, 64, 96)
  for seed in range(20):
    view, view_labels = dense_augment.scale_crop_flip(image, labels, np.random.default_rng(seed), crop=(48, 48),
                                                      scale=(0.5, 2.0), flip=True)
    assert view.shape == (48, 48, 3) and view_labels.shape == (48, 48)
    counted = view_labels >= 0
    from_image = np.rint(view[..., 0] / 100.0).astype(int)
    agree = (from_image == view_labels)[counted].mean() if counted.any() else 1.0
    assert agree > 0.95  # bilinear blending may only disturb the pixels at class borders
    assert (view[~counted] == 0).all()  # beyond the scaled image: zeros, ignored
  exact, exact_labels = dense_augment.scale_crop_flip(image, labels, np.random.default_rng(3), crop=(32, 40),
                                                      flip=True)
  np.testing.assert_array_equal(np.rint(exact[..., 0] / 100.0).astype(int), exact_labels)


def _numpy_scores(logits, labels, rows):
  pred = logits.argmax(-1)
  counted = (labels >= 0) & rows[:, None, None]
  cm = np.bincount(labels[counted] * 3 + pred[counted], minlength=9).reshape(3, 3)
  iou = np.array([cm[c, c] / (cm[c].sum() + cm[:, c].sum() - cm[c, c]) for c in range(3)])
  return cm, iou, np.trace(cm) / cm.sum()


def test_pixel_accuracy_iou_and_miou_equal_numpy_with_ignored_pixels():
  rng = np.random.default_rng(0)
  task = tasks.Task('segment', tuple(CLASSES))
  logits = rng.normal(size=(6, 9, 11, 3)).astype(np.float32)
  labels = rng.integers(-1, 3, size=(6, 9, 11)).astype(np.int32)
  rows = np.array([1, 1, 1, 1, 1, 0], bool)  # the last row pads the eval batch
  total = None
  evaluate = jax.jit(lambda lg, lb, r: task.eval_metrics(logits=lg, batch={'label': lb, 'mask': r}))
  for s in (slice(0, 3), slice(3, 6)):  # one shape: one compile
    m = evaluate(logits[s], labels[s], rows[s])
    total = m if total is None else total.merge(m)
  scores = metrics.summarize(total)
  cm, iou, accuracy = _numpy_scores(logits, labels, rows)
  assert scores['confusion_matrix'] == cm.tolist()
  np.testing.assert_allclose(scores['iou_per_class'], iou, rtol=1e-12)
  assert scores['miou'] == pytest.approx(iou.mean(), rel=1e-12)
  assert scores['accuracy'] == pytest.approx(accuracy, rel=1e-12)


def test_vectorised_trials_evaluated_on_one_shared_batch_each_get_their_own_loss():
  """jit(vmap) over two trials' logits with the batch's labels shared, at the shape where one-hot cross-entropy made
  XLA:CPU (jax 0.10.2) give every trial the first one's loss: each lane equals its trial evaluated alone."""
  rng = np.random.default_rng(0)
  task = tasks.Task('segment', tuple(CLASSES))
  logits = rng.normal(size=(2, 8, 48, 64, 3)).astype(np.float32)
  batch = {'label': rng.integers(-1, 3, size=(8, 48, 64)).astype(np.int32), 'mask': np.ones(8, bool)}
  evaluate = lambda lg: task.eval_metrics(logits=lg, batch=batch).loss.total
  stacked = jax.jit(jax.vmap(evaluate))(logits)
  np.testing.assert_allclose(stacked, [evaluate(logits[0]), evaluate(logits[1])], rtol=1e-5)


def test_miou_and_map_are_refused_where_they_measure_nothing():
  assert 'segmentation' in tasks.Task('image', ('a', 'b')).check_metric('miou')
  assert 'detection' in tasks.Task('segment', ('a', 'b')).check_metric('map50')
  assert tasks.Task('segment', ('a', 'b')).check_metric('miou') is None


@pytest.fixture(scope='module')
def segmentation_runs(tmp_path_factory):
  """A tiny ViT + FPN segmenter on synthetic scenes, whole and killed at step 9 then resumed."""
  tmp = tmp_path_factory.mktemp('segmentation')
  c = seg_config(write_dataset(tmp / 'scenes'))  # whole images, flipped: a ViT's positions fit one size
  c.data.image.flip = True
  c.model.name, c.model.variant, c.model.head_features = 'vit', 'nano/8', 16  # a one-level pyramid at stride 8
  c.train.batch_size, c.train.num_steps, c.train.num_epochs = 4, 12, 0.0
  c.eval.every_steps, c.eval.metric, c.eval.batch_size, c.eval.train_subset = 6, 'miou', 4, 0
  whole, killed = str(tmp / 'whole'), str(tmp / 'killed')
  stages.run(c, whole)  # in this process: the resumed run below reuses its compiled steps
  assert run_config(c, killed, env={'FTLAB_TEST_KILL': 'step=9'}).returncode == -signal.SIGKILL
  stages.run(c, killed)
  return whole, killed


def test_a_segmentation_run_killed_and_resumed_ends_bit_identical(segmentation_runs):
  whole, killed = segmentation_runs
  assert_same_run(whole, killed)


def test_a_segmentation_run_selects_by_miou_and_reports_iou_per_class(segmentation_runs):
  whole, _ = segmentation_runs
  with open(os.path.join(whole, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['selection_metric'] == 'miou'
  for split in ('validation', 'test'):
    scores = summary[split]
    cm = np.array(scores['confusion_matrix'])
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = np.diag(cm) / np.maximum(union, 1)
    np.testing.assert_allclose(scores['iou_per_class'], iou, rtol=1e-12)
    assert scores['miou'] == pytest.approx(iou[union > 0].mean(), rel=1e-12)
  with open(os.path.join(whole, 'metrics.jsonl')) as f:
    validation = [json.loads(line) for line in f if '"split": "validation"' in line]
  assert [r['step'] for r in validation] == [6, 12] and all('miou' in r for r in validation)
  with open(os.path.join(whole, 'predictions.jsonl')) as f:  # per image; summed, the split's scores exactly
    rows = [json.loads(line) for line in f]
  for split in ('validation', 'test'):
    mine = [r for r in rows if r['split'] == split]
    assert [r['input'] for r in mine] == sorted(r['input'] for r in mine) and len(mine) == summary['data']['sizes'][split]
    inter, union = (np.sum([r[k] for r in mine], axis=0) for k in ('intersection', 'union'))
    np.testing.assert_allclose(inter / np.maximum(union, 1), summary[split]['iou_per_class'], rtol=1e-12)
    assert sum(r['correct'] for r in mine) / sum(r['pixels'] for r in mine) == pytest.approx(
        summary[split]['accuracy'], rel=1e-12)


def test_explain_attributes_each_chosen_images_painted_class_completely(segmentation_runs, tmp_path):
  """The worst and the best image by pixel accuracy are chosen; the worst (n=1), attributed for the class it paints
  over the most wrong pixels, satisfies integrated gradients' completeness (the attributions' sum within 1% of the
  summed logits' change from the zero image, as the page reports them)."""
  whole, _ = segmentation_runs
  page = open(explain.explain(whole, str(tmp_path / 'explain'), n=1, steps=64)).read()  # two chunks of one shape
  with open(os.path.join(whole, 'predictions.jsonl')) as f:
    test = [json.loads(line) for line in f if '"split": "test"' in line]
  chosen = explain.choose_images(test, 2)
  ranked = sorted(r['correct'] / r['pixels'] for r in test)
  assert [c['accuracy'] for c in chosen] == [ranked[0], ranked[-1]] and [c['error'] for c in chosen] == [True, False]
  assert page.count('data:image/png;base64') == 1 and page.count('pixels painted') == 1
  assert f'pixel accuracy {ranked[0]:.3f}' in page
  assert assert_explained_completely(page) == 1
