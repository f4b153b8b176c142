"""Data sources end to end: standard TFDS datasets (under tfds.testing.mock_data), local files prepared as TFDS
builders, split roles and carving, and preparation that never leaves a half-written dataset."""
import gzip
import json
import logging
import os
import struct
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import small_config
from ftlab import data
from ftlab.data import builders
from ftlab.data.errors import DataError

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'good', 'bad', 'movie', 'film', 'not', 'very',
         'eu', 'rejects', 'german', 'call', 'peter', 'blackburn', '.']


@pytest.fixture
def vocab(tmp_path):
  path = tmp_path / 'vocab.txt'
  path.write_text('\n'.join(VOCAB) + '\n')
  return str(path)


def _config(tmp_path, **overrides):
  c = small_config(**overrides)
  c.data.classes = []
  c.data.data_dir = str(tmp_path / 'tfds')
  return c


@pytest.mark.parametrize('name, task, classes', [
    ('mnist', 'image', 10), ('fashion_mnist', 'image', 10), ('cifar10', 'image', 10), ('cifar100', 'image', 100),
    ('glue/sst2', 'text', 2), ('imdb_reviews', 'text', 2)])
def test_standard_datasets_load_through_tfds_data_source(tmp_path, vocab, name, task, classes):
  c = _config(tmp_path, data__source='tfds', data__name=name)
  c.data.splits.validation = 'test' if name != 'glue/sst2' else 'validation'
  c.data.allow_split_overlap = True  # validation and test both read the mock's 12 test rows: deliberate here
  c.data.tokenizer.path, c.data.tokenizer.max_length = vocab, 16
  with tfds.testing.mock_data(num_examples=12):
    splits = data.load(c.data)
  assert splits.task == task and splits.num_classes == classes
  assert len(splits.train) == len(splits.validation) == len(splits.test) == 12
  batch = splits.train.get_batch(np.arange(4))
  if task == 'image':
    assert batch['image'].dtype == np.float32 and 0 <= batch['image'].min() and batch['image'].max() <= 1
    assert batch['image'].shape[1:] == tfds.builder(name).info.features['image'].shape
  else:
    assert batch['input_ids'].shape == (4, 16) and (batch['input_ids'][:, 0] == VOCAB.index('[CLS]')).all()
  assert batch['label'].shape == (4,)


def test_conll2003_loads_with_tags_on_first_subtokens(tmp_path, vocab):
  sentence = {'tokens': ['EU', 'rejects', 'German', 'call', '.'], 'ner': [3, 0, 7, 0, 0], 'pos': [0] * 5,
              'chunks': [0] * 5}

  def source(builder, split, **kwargs):
    del builder, split, kwargs
    return [sentence] * 6

  c = _config(tmp_path, data__source='tfds', data__name='conll2003')
  c.data.tokenizer.path, c.data.tokenizer.max_length = vocab, 12
  with tfds.testing.mock_data(as_data_source_fn=source):
    splits = data.load(c.data)
  assert splits.task == 'tags' and splits.class_names[:2] == ('O', 'B-PER')
  batch = splits.validation.get_batch(np.arange(2))
  assert batch['labels'][0].tolist() == [-1, 3, 0, 7, 0, 0, -1] + [-1] * 5


def test_a_split_without_labels_is_refused(tmp_path, vocab):
  c = _config(tmp_path, data__source='tfds', data__name='glue/sst2')
  c.data.tokenizer.path = vocab
  unlabelled = lambda builder, split, **kw: [{'idx': i, 'sentence': 'a movie', 'label': -1} for i in range(4)]
  with tfds.testing.mock_data(as_data_source_fn=unlabelled), pytest.raises(DataError, match='without labels'):
    data.load(c.data)


def _write_idx(folder, prefix, images, labels):
  folder.mkdir(parents=True, exist_ok=True)
  n, h, w = images.shape
  with gzip.open(folder / f'{prefix}-images-idx3-ubyte.gz', 'wb') as f:
    f.write(struct.pack('>IIII', 2051, n, h, w) + images.astype(np.uint8).tobytes())
  with gzip.open(folder / f'{prefix}-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(struct.pack('>II', 2049, n) + labels.astype(np.uint8).tobytes())


def test_idx_files_prepare_once_into_array_record_and_are_reused(tmp_path, monkeypatch):
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))  # what TFDS leaves in the temporary folder
  os.makedirs(tempfile.tempdir)
  rng = np.random.default_rng(0)
  images, labels = rng.integers(0, 256, (40, 6, 6), np.uint8), np.arange(40) % 4
  _write_idx(tmp_path / 'idx', 'train', images, labels)
  _write_idx(tmp_path / 'idx', 't10k', images[:8], labels[:8])
  c = _config(tmp_path, data__source='idx', data__path=str(tmp_path / 'idx'), data__validation_fraction=8)
  splits = data.load(c.data)
  assert splits.report['sizes'] == {'train': 32, 'validation': 8, 'test': 8}
  np.testing.assert_array_equal(splits.test.images[..., 0], images[:8])  # file order kept, pixels exact
  assert splits.test.get_batch(np.arange(8))['image'].max() <= 1.0  # uint8 / 255
  prepared = builders.prepare(c.data)
  marker = os.path.join(prepared.data_path, 'dataset_info.json')
  before = os.stat(marker).st_mtime_ns
  data.load(c.data)
  assert os.stat(marker).st_mtime_ns == before  # reused, not prepared again
  _write_idx(tmp_path / 'idx', 't10k', images[:6], labels[:6])  # an edited file is a new dataset
  assert len(data.load(c.data).test) == 6
  assert os.listdir(tempfile.tempdir) == []  # no empty tmp*tfds folder per builder (TFDS's GCS lookup)


def test_text_files_with_names_or_ids_and_subsets(tmp_path, vocab):
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.csv').write_text('review,sentiment\n' + ''.join(
      f'"a {"good" if i % 2 else "bad"}, very very good movie",{"pos" if i % 2 else "neg"}\n' for i in range(30)))
  (folder / 'dev.jsonl').write_text(''.join(json.dumps({'review': 'bad film', 'sentiment': i % 2}) + '\n'
                                            for i in range(6)))
  c = _config(tmp_path, data__source='text', data__path=str(folder))
  c.data.text.text_column, c.data.text.label_column = 'review', 'sentiment'
  c.data.text.label_names = ['neg', 'pos']
  c.data.tokenizer.path, c.data.tokenizer.max_length = vocab, 8
  c.data.splits.train = 'train[:20]'
  c.data.files.validation = 'dev.jsonl'
  splits = data.load(c.data)
  assert splits.class_names == ('neg', 'pos') and splits.task == 'text'
  assert splits.report['sizes'] == {'train': 16, 'validation': 6, 'test': 4}  # test carved from train[:20]
  assert splits.validation.labels.tolist() == [0, 1, 0, 1, 0, 1]  # ids in the JSONL file
  assert splits.report['truncated'] == {'train': 16, 'validation': 0, 'test': 4}  # 9 tokens > 8


def test_conll_files_become_iob2_tags(tmp_path, vocab):
  folder = tmp_path / 'ner'
  folder.mkdir()
  sentence = 'EU NNP I-ORG\nrejects VBZ O\nGerman JJ I-MISC\ncall NN O\n. . O\n\n'
  (folder / 'eng.train').write_text('-DOCSTART- -X- O\n\n' + sentence * 10)
  (folder / 'eng.testa').write_text(sentence * 2)
  c = _config(tmp_path, data__source='conll', data__path=str(folder))
  c.data.tokenizer.path, c.data.tokenizer.max_length = vocab, 16
  splits = data.load(c.data)
  assert splits.class_names == ('O', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG')
  assert splits.report['sizes'] == {'train': 8, 'validation': 2, 'test': 2}
  labels = splits.validation.get_batch(np.arange(1))['labels'][0]
  assert labels[:7].tolist() == [-1, 3, 0, 1, 0, 0, -1]  # I-ORG at a span start became B-ORG


def test_image_folders_decode_and_resize(tmp_path):
  root = tmp_path / 'pets'
  for c, colour in (('cat', 200), ('dog', 50)):
    (root / c).mkdir(parents=True)
    for i in range(6):
      Image.new('RGB', (10 + i, 12), (colour, i, 0)).save(root / c / f'{i}.png')
  c = _config(tmp_path, data__source='image_folder', data__path=str(root), data__validation_fraction=2,
              data__test_fraction=2, data__image__size=8)
  splits = data.load(c.data)
  assert splits.class_names == ('cat', 'dog') and len(splits.train) == 8
  batch = splits.train.get_batch(np.arange(8))
  assert batch['image'].shape == (8, 8, 8, 3)
  red = batch['image'][..., 0].mean(axis=(1, 2))
  np.testing.assert_allclose(red, np.where(batch['label'] == 0, 200 / 255, 50 / 255), atol=1e-6)


def test_a_failed_preparation_leaves_no_dataset_that_looks_complete(tmp_path, vocab):
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.tsv').write_text('sentence\tlabel\n' + 'a good movie\t1\na bad movie\t0\n' * 3)
  (folder / 'test.tsv').write_text('sentence\tlabel\na movie\t7\n')
  c = _config(tmp_path, data__source='text', data__path=str(folder))
  c.data.text.text_column = 'sentence'
  c.data.tokenizer.path = vocab
  with pytest.raises(DataError, match=r'test.tsv:2.*label'):
    data.load(c.data)
  root = tmp_path / 'tfds'
  complete = [p for p in root.rglob('dataset_info.json')] if root.exists() else []
  assert complete == []
  (folder / 'test.tsv').write_text('sentence\tlabel\na movie\t0\n')
  assert len(data.load(c.data).test) == 1


def test_splits_auto_carve_and_stratify(tmp_path):
  c = _config(tmp_path)  # digits: one 'train' split, so validation and test are carved
  splits = data.load(c.data)
  sizes = splits.report['sizes']
  assert sizes == {'train': 1077, 'validation': 360, 'test': 360}
  for split in (splits.validation, splits.test):  # stratified: class shares within one example of train's
    share = np.bincount(split.labels, minlength=10) / len(split)
    np.testing.assert_allclose(share, np.bincount(splits.train.labels, minlength=10) / len(splits.train), atol=0.01)
  again = data.load(c.data)
  np.testing.assert_array_equal(again.validation.images, splits.validation.images)
  c.data.split_seed = 1
  assert not np.array_equal(data.load(c.data).validation.images, splits.validation.images)


def test_bad_split_names_and_counts_are_named(tmp_path):
  c = _config(tmp_path, data__splits__validation='dev')
  with pytest.raises(DataError, match=r"data.splits.validation='dev'.*has no split 'dev'"):
    data.load(c.data)
  c = _config(tmp_path, data__validation_fraction=5000)
  with pytest.raises(DataError, match='data.validation_fraction=5000'):
    data.load(c.data)


def test_bad_data_at_the_command_line_exits_2_naming_file_and_fix_and_writes_nothing(tmp_path, vocab):
  from conftest import ROOT, run_ftlab
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.csv').write_text('review,label\na good movie,1\n')
  workdir = tmp_path / 'run'
  result = run_ftlab(
      'ftlab.main', [f'--config={ROOT}/configs/quickstart.py', f'--workdir={workdir}', '--config.data.source=text',
                     f'--config.data.path={folder}', f'--config.data.data_dir={tmp_path}/tfds',
                     f'--config.data.tokenizer.path={vocab}', '--config.init.pretrain.enabled=False'],
      log_base=str(tmp_path / 'main'))
  assert result.returncode == 2, result.stderr
  assert 'train.csv' in result.stderr and "'text'" in result.stderr and 'data.text.text_column' in result.stderr
  assert not workdir.exists()


def test_length_buckets_pad_less_and_every_batch_fits(vocab):
  from ftlab.data import text
  tokenizer = text.load_tokenizer(vocab)
  rng = np.random.default_rng(0)
  texts = [' '.join(['good'] * int(n)) for n in rng.choice([2, 3, 40, 60], size=200, p=[0.4, 0.4, 0.1, 0.1])]
  source = text.TokenizedText(texts, np.zeros(200, np.int32), tokenizer, max_length=64)
  stream = lambda bucket: data.pipeline.train_batches(source, batch_size=10, seed=0, bucket=bucket, max_length=64,
                                                      remainder='drop', process_index=0, process_count=1)
  bucketed, plain = stream(True), stream(False)
  widths, padding = set(), [0, 0]
  for k in range(20):  # one epoch
    b, p = bucketed[k], plain[k]
    assert b['input_ids'].shape[1] in text.bucket_lengths(64)
    assert b['attention_mask'].sum(1).max() <= b['input_ids'].shape[1]
    widths.add(b['input_ids'].shape[1])
    padding[0] += int((b['attention_mask'] == 0).sum())
    padding[1] += int((p['attention_mask'] == 0).sum())
  assert sorted(np.concatenate([bucketed.indices(k)[0] for k in range(20)]).tolist()) == list(range(200))
  assert len(widths) > 1 and padding[0] < padding[1] / 3


def test_images_read_per_batch_equal_images_held_in_memory(tmp_path):
  root = tmp_path / 'pets'
  for c, colour in (('cat', 200), ('dog', 50)):
    (root / c).mkdir(parents=True)
    for i in range(6):
      Image.new('RGB', (10 + i, 12), (colour, 20 * i, 0)).save(root / c / f'{i}.png')
  c = _config(tmp_path, data__source='image_folder', data__path=str(root), data__validation_fraction=2,
              data__test_fraction=2, data__image__size=8, data__image__stats='imagenet')
  held = data.load(c.data)
  c.data.in_memory = False
  lazy = data.load(c.data)
  assert type(lazy.train).__name__ == 'RecordImages'
  for role in ('train', 'validation', 'test'):
    idx = np.arange(len(getattr(held, role)))[::-1]
    a, b = getattr(held, role).get_batch(idx), getattr(lazy, role).get_batch(idx)
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_a_standard_dataset_that_is_not_prepared_is_named_with_the_fix(tmp_path):
  c = _config(tmp_path, data__source='tfds', data__name='mnist')
  with pytest.raises(DataError, match=r"'mnist' is not prepared under data.data_dir=.*tfds build mnist.*download"):
    data.load(c.data)
  assert not list(tmp_path.rglob('*.array_record*'))  # nothing was written


def test_splits_read_again_in_one_process_are_decoded_once_and_a_changed_file_is_read_anew(tmp_path, vocab,
                                                                                           monkeypatch):
  from ftlab.data import sources
  decoded = []
  columns = sources._columns
  monkeypatch.setattr(sources, '_columns', lambda records, keys: decoded.append(1) or columns(records, keys))
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.csv').write_text('text,label\n' + ''.join(f'"a good movie {i}",{i % 2}\n' for i in range(20)))
  c = _config(tmp_path, data__source='text', data__path=str(folder))
  c.data.text.label_names = ['neg', 'pos']
  c.data.tokenizer.path = vocab
  first = data.load(c.data)
  count = len(decoded)
  again = data.load(c.data)  # a sweep plans each trial: the same splits, not decoded again
  assert len(decoded) == count
  assert again.train.labels.tolist() == first.train.labels.tolist()
  (folder / 'train.csv').write_text('text,label\n' + ''.join(f'"a bad movie {i}",{int(i > 5)}\n' for i in range(20)))
  changed = data.load(c.data)  # the file changed: prepared anew, read anew
  assert len(decoded) == 2 * count and changed.train.labels.mean() > 0.6  # 14 of 20 now 1 (was 10)


def test_preparing_a_local_dataset_says_what_ftlab_reads_not_what_tfds_downloads(tmp_path, vocab, capsys, caplog):
  """The first load of local files says which files ftlab reads once and where to; TFDS's 'Downloading and preparing
  dataset' (nothing is downloaded) and absl's 'has no dataset_info.json' for the folder being prepared are not shown;
  a second load reads the prepared data silently."""
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.csv').write_text('text,label\n' + ''.join(f'"a movie {i}",{i % 2}\n' for i in range(10)))
  c = _config(tmp_path, data__source='text', data__path=str(folder))
  c.data.tokenizer.path = vocab
  with caplog.at_level(logging.WARNING):
    data.load(c.data)
  out = capsys.readouterr().out
  assert f'ftlab: reading {folder / "train.csv"} once into {tmp_path / "tfds"}' in out, out
  assert 'Downloading and preparing' not in out and 'downloaded and prepared' not in out
  assert not [r for r in caplog.records if 'dataset_info.json' in r.getMessage()]
  data.load(c.data)
  assert 'ftlab: reading' not in capsys.readouterr().out


def test_evaluation_examples_that_repeat_a_training_input_are_counted_and_reported(tmp_path, vocab, capsys):
  """Natural duplicates (an evaluation text also in the training file) are a warning with their count and one
  example, kept in the data report that summary.json holds; splits without any report none."""
  folder = tmp_path / 'reviews'
  folder.mkdir()
  (folder / 'train.csv').write_text('text,label\n' + ''.join(f'"a movie {i}",{i % 2}\n' for i in range(10)))
  (folder / 'dev.csv').write_text('text,label\n"a movie 3",1\n"a new movie",0\n"a movie 8",0\n')
  (folder / 'test.csv').write_text('text,label\n"another movie",1\n')
  c = _config(tmp_path, data__source='text', data__path=str(folder))
  c.data.tokenizer.path = vocab
  splits = data.load(c.data)
  assert splits.report['duplicates'] == {'validation': {'count': 2, 'of': 3, 'example': "'a movie 3'"}}
  err = capsys.readouterr().err
  assert "ftlab: warning: 2 of 3 validation examples have the input of a training example (e.g. 'a movie 3')" in err
