"""Image preprocessing: decode, resize/pad/crop, normalize against hand computation, augmentation properties."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ftlab.data import images
from ftlab.data.errors import DataError


def _png(array: np.ndarray, mode: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array, mode).save(buffer, format='PNG')
  return buffer.getvalue()


def _random_image(rng, h, w, c):
  return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_decode_round_trips_png_in_both_channel_counts():
  rng = np.random.default_rng(0)
  rgb = _random_image(rng, 5, 7, 3)
  decoded = images.decode(_png(rgb, 'RGB'), channels=3, where='a.png')
  assert decoded.dtype == np.uint8 and decoded.shape == (5, 7, 3)
  np.testing.assert_array_equal(decoded, rgb)
  gray = _random_image(rng, 4, 6, 1)
  np.testing.assert_array_equal(images.decode(_png(gray[..., 0], 'L'), channels=1, where='g.png'), gray)
  assert images.decode(_png(rgb, 'RGB'), channels=1, where='a.png').shape == (5, 7, 1)


def test_decode_of_garbage_names_the_file():
  with pytest.raises(DataError, match='train/cat_001.jpg') as e:
    images.decode(b'definitely not an image', channels=3, where='train/cat_001.jpg')
  assert 'cannot decode' in str(e.value)
  truncated = _png(np.zeros((32, 32, 3), np.uint8), 'RGB')[:40]
  with pytest.raises(DataError, match='x.png'):
    images.decode(truncated, channels=3, where='x.png')


def test_resize_shapes_and_constant_images():
  rng = np.random.default_rng(1)
  for c in (1, 3):
    out = images.resize(_random_image(rng, 30, 20, c), 16)
    assert out.dtype == np.uint8 and out.shape == (16, 16, c)
  assert images.resize(_random_image(rng, 30, 20, 3), (8, 12)).shape == (8, 12, 3)
  assert images.resize(_random_image(rng, 30, 20, 1)[..., 0], 10).shape == (10, 10, 1)
  constant = np.full((9, 13, 3), 77, np.uint8)
  np.testing.assert_array_equal(images.resize(constant, 20), np.full((20, 20, 3), 77, np.uint8))
  floats = np.full((6, 6, 2), 0.25, np.float32)
  out = images.resize(floats, 3)
  assert out.dtype == np.float32 and out.shape == (3, 3, 2) and np.allclose(out, 0.25)


def test_pad_centres_the_image_exactly():
  image = np.arange(1, 16, dtype=np.uint8).reshape(3, 5, 1)
  out = images.resize(image, 7, method='pad')
  assert out.shape == (7, 7, 1)
  np.testing.assert_array_equal(out[2:5, 1:6], image)
  mask = np.ones((7, 7, 1), bool)
  mask[2:5, 1:6] = False
  assert not out[mask].any()
  with pytest.raises(DataError, match="data.image.size.*'resize'"):
    images.resize(np.zeros((9, 5, 3), np.uint8), 7, method='pad')


def test_crop_takes_the_centre_and_pads_short_sides():
  image = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)
  np.testing.assert_array_equal(images.resize(image, 6, method='crop'), image[2:8, 2:8])
  wide = np.arange(1, 25, dtype=np.uint8).reshape(2, 12, 1)
  out = images.resize(wide, 6, method='crop')
  assert out.shape == (6, 6, 1)
  np.testing.assert_array_equal(out[2:4], wide[:, 3:9])
  assert not out[:2].any() and not out[4:].any()
  with pytest.raises(DataError, match='data.image.resize'):
    images.resize(image, 6, method='stretch')


def test_normalize_matches_hand_computation():
  rng = np.random.default_rng(2)
  batch = rng.integers(0, 256, size=(2, 3, 4, 3), dtype=np.uint8)
  mean, std = images.STATS['imagenet']
  out = images.normalize(batch, mean, std)
  assert out.dtype == np.float32 and out.shape == batch.shape
  b, y, x, c = 1, 2, 3, 2
  assert out[b, y, x, c] == pytest.approx((batch[b, y, x, c] / 255 - mean[c]) / std[c], rel=1e-6)
  for c in range(3):
    np.testing.assert_allclose(out[..., c], (batch[..., c] / 255.0 - mean[c]) / std[c], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(images.normalize(batch, (0.5,), (0.25,)), (batch / 255.0 - 0.5) / 0.25, rtol=1e-5,
                             atol=1e-6)
  gray = batch[..., :1]
  np.testing.assert_allclose(images.normalize(gray, *images.STATS['mnist']), (gray / 255.0 - 0.1307) / 0.3081,
                             rtol=1e-5, atol=1e-6)


def test_normalize_rejects_mean_or_std_of_the_wrong_length():
  batch = np.zeros((1, 2, 2, 3), np.uint8)
  with pytest.raises(DataError, match='data.image.mean has 2 values'):
    images.normalize(batch, (0.1, 0.2), (1.0,))
  with pytest.raises(DataError, match='data.image.std'):
    images.normalize(batch, (0.1,), (1.0, 1.0, 1.0, 1.0))
  with pytest.raises(DataError, match='data.image.std'):
    images.normalize(batch, (0.1,), (0.0,))


def test_stats():
  assert images.STATS['imagenet'] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  assert images.STATS['inception'] == ((0.5,) * 3, (0.5,) * 3)
  assert images.STATS['none'] == ((0.0,), (1.0,))
  assert images.STATS['mnist'] == ((0.1307,), (0.3081,))


def _batch(n=32, h=6, w=5, c=3, seed=3):
  return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def test_augment_without_options_returns_the_batch():
  batch = _batch()
  assert images.augment(batch, np.random.default_rng(0)) is batch


def test_augment_is_deterministic_for_the_same_rng_state():
  batch = _batch()
  a = images.augment(batch, np.random.default_rng(5), crop_padding=2, flip=True)
  b = images.augment(batch, np.random.default_rng(5), crop_padding=2, flip=True)
  np.testing.assert_array_equal(a, b)
  assert a.dtype == batch.dtype and a.shape == batch.shape
  assert not np.array_equal(a, images.augment(batch, np.random.default_rng(6), crop_padding=2, flip=True))


def test_flip_yields_the_image_or_its_mirror_per_row():
  batch = _batch()
  out = images.augment(batch, np.random.default_rng(0), flip=True)
  same = np.array([np.array_equal(o, x) for o, x in zip(out, batch)])
  mirrored = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, batch)])
  assert np.all(same | mirrored)
  assert same.any() and mirrored.any()  # 32 coin flips


def test_crop_with_padding_is_a_window_of_the_padded_image():
  batch = _batch(n=16)
  p = 2
  out = images.augment(batch, np.random.default_rng(1), crop_padding=p)
  assert out.shape == batch.shape
  padded = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = batch.shape[1:3]
  offsets = set()
  for o, x in zip(out, padded):
    hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
            if np.array_equal(o, x[dy:dy + h, dx:dx + w])]
    assert hits, 'an output is not a window of its padded input'
    offsets.add(hits[0])
  assert len(offsets) > 1  # offsets are drawn per image
