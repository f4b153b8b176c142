"""Local dataset file parsers: each format parses, and each bad input names the file, the line and the fix."""
from __future__ import annotations

import gzip
import io
import os
import re
import struct

import numpy as np
import pytest
from PIL import Image

from ftlab.data.errors import DataError
from ftlab.data.formats import (conll_tag_names, decode_image, find_split_files, infer_label_names, label_ids,
                                read_conll, read_idx, read_image_folder, read_text_classification)

SHARED = '/work/shared/data'


def _need(*parts: str) -> str:
  """The path of a shared data file, or skip the test when it is not on this machine."""
  path = os.path.join(SHARED, *parts)
  if not os.path.exists(path):
    pytest.skip(f'real data not on this machine: {path} is absent')
  return path


def _write(path, content) -> str:
  if isinstance(content, str):
    content = content.encode('utf-8')
  path.write_bytes(content)
  return str(path)


def _raises(*parts: str):
  """pytest.raises(DataError) whose message must contain every part (matched literally)."""
  return pytest.raises(DataError, match='(?s)' + ''.join(f'(?=.*{re.escape(p)})' for p in parts))


def test_csv_with_quoted_commas_and_a_text_pair(tmp_path):
  path = _write(tmp_path / 'train.csv', 'premise,hypothesis,label\n"a, b",c,yes\n\n"multi\nline",d,no\n')
  examples = read_text_classification(path, text_column='premise', label_column='label',
                                      text_pair_column='hypothesis')
  assert examples == [{'text': 'a, b', 'text_pair': 'c', 'label': 'yes', 'line': 2},
                      {'text': 'multi\nline', 'text_pair': 'd', 'label': 'no', 'line': 4}]
  assert infer_label_names(examples) == ('no', 'yes')
  assert label_ids(examples, ('no', 'yes'), path=path) == [1, 0]


def test_tsv_keeps_unbalanced_quotes_and_strips_a_bom(tmp_path):
  path = _write(tmp_path / 'train.tsv', b'\xef\xbb\xbfsentence\tlabel\nit \'s "great\t1\nbad " movie\t0\n')
  examples = read_text_classification(path, text_column='sentence', label_column='label')
  assert [(e['text'], e['label'], e['line']) for e in examples] == [('it \'s "great', '1', 2), ('bad " movie', '0', 3)]
  assert infer_label_names(examples) == ('0', '1')


def test_jsonl_with_int_labels(tmp_path):
  path = _write(tmp_path / 'data.jsonl', '{"text": "x", "label": 2}\n\n{"text": "y", "label": "0"}\n')
  examples = read_text_classification(path, text_column='text', label_column='label')
  assert examples == [{'text': 'x', 'label': '2', 'line': 1}, {'text': 'y', 'label': '0', 'line': 3}]
  assert infer_label_names(examples) == ('0', '1', '2')
  assert label_ids(examples, ('neg', 'neu', 'pos'), path=path) == [2, 0]  # integer strings index the names
  csv_path = _write(tmp_path / 'data.txt', 'text,label\nz,1\n')
  examples = read_text_classification(csv_path, text_column='text', label_column='label', file_format='csv')
  assert examples[0]['label'] == '1'


def test_a_jsonl_number_python_will_not_convert_is_a_data_error(tmp_path):
  path = _write(tmp_path / 'data.jsonl', '{"text": "x", "label": ' + '9' * 5000 + '}\n')
  with pytest.raises(DataError, match=r'data\.jsonl:1: a value JSON cannot read \(Exceeds the limit .*\); fix the line$'):
    read_text_classification(path, text_column='text', label_column='label')


def test_text_classification_errors(tmp_path):
  csv_path = _write(tmp_path / 'reviews.csv', 'review,stars\ngood,5\n')
  with _raises('reviews.csv', "no column 'text'", "'review', 'stars'", 'data.text.text_column'):
    read_text_classification(csv_path, text_column='text', label_column='stars')
  with _raises('reviews.csv', "no column 'label'", 'data.text.label_column'):
    read_text_classification(csv_path, text_column='review', label_column='label')
  with _raises('reviews.csv', 'data.text.text_pair_column'):
    read_text_classification(csv_path, text_column='review', label_column='stars', text_pair_column='other')
  with _raises('empty.tsv', 'has no examples'):
    read_text_classification(_write(tmp_path / 'empty.tsv', ''), text_column='a', label_column='b')
  with _raises('header.csv', 'has no examples'):
    read_text_classification(_write(tmp_path / 'header.csv', 'a,b\n'), text_column='a', label_column='b')
  with _raises('latin1.csv:3', 'byte 0xff', 'offset 9', 're-save the file as UTF-8'):
    read_text_classification(_write(tmp_path / 'latin1.csv', b'a,b\nx,1\ny\xff,0\n'), text_column='a',
                             label_column='b')
  with _raises('fields.tsv:3', 'expected 2 fields', 'found 3', 'tab'):
    read_text_classification(_write(tmp_path / 'fields.tsv', 'a\tb\nx\t1\ny\tz\t0\n'), text_column='a',
                             label_column='b')
  with _raises('fields.csv:2', 'expected 2 fields', 'found 3', 'quote'):
    read_text_classification(_write(tmp_path / 'fields.csv', 'a,b\nx, y,1\n'), text_column='a', label_column='b')
  with _raises('nolabel.csv:3', 'empty label'):
    read_text_classification(_write(tmp_path / 'nolabel.csv', 'a,b\nx,1\ny,\n'), text_column='a', label_column='b')
  with _raises('bad.jsonl:2', 'not valid JSON'):
    read_text_classification(_write(tmp_path / 'bad.jsonl', '{"a": "x", "b": 1}\n{"a": \n'), text_column='a',
                             label_column='b')
  with _raises('list.jsonl:1', 'JSON object'):
    read_text_classification(_write(tmp_path / 'list.jsonl', '["x", 1]\n'), text_column='a', label_column='b')
  with _raises('float.jsonl:1', '1.5', 'label'):
    read_text_classification(_write(tmp_path / 'float.jsonl', '{"a": "x", "b": 1.5}\n'), text_column='a',
                             label_column='b')
  with _raises('bool.jsonl:1', 'True'):
    read_text_classification(_write(tmp_path / 'bool.jsonl', '{"a": "x", "b": true}\n'), text_column='a',
                             label_column='b')
  with _raises('keys.jsonl:1', "no column 'b'", "'a'", 'data.text.label_column'):
    read_text_classification(_write(tmp_path / 'keys.jsonl', '{"a": "x"}\n'), text_column='a', label_column='b')
  with _raises('notes.txt', 'csv, tsv, jsonl'):
    read_text_classification(_write(tmp_path / 'notes.txt', 'a,b\n'), text_column='a', label_column='b')
  with _raises('missing.csv', 'no such file', 'data.path'):
    read_text_classification(str(tmp_path / 'missing.csv'), text_column='a', label_column='b')


def test_label_outside_the_label_set(tmp_path):
  path = _write(tmp_path / 'train.csv', 'a,b\nx,pos\ny,meh\n')
  examples = read_text_classification(path, text_column='a', label_column='b')
  with _raises('train.csv:3', "'meh'", "['neg', 'pos']", 'data.text.label_names'):
    label_ids(examples, ('neg', 'pos'), path=path)
  with _raises('train.csv:2', "'2'", 'data.text.label_names'):
    label_ids([{'label': '2', 'line': 2}], ('neg', 'pos'), path=path)


def test_sst2_real_files():
  for name, rows in (('train.tsv', 67349), ('dev.tsv', 872)):
    examples = read_text_classification(_need('sst2', name), text_column='sentence', label_column='label')
    assert len(examples) == rows
    assert {e['label'] for e in examples} == {'0', '1'}
    assert infer_label_names(examples) == ('0', '1')


CONLL_IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
British JJ I-NP I-MISC
Britain NNP I-NP B-MISC

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Paris NNP I-NP I-LOC
"""


def test_conll_iob1_is_converted_to_iob2(tmp_path):
  path = _write(tmp_path / 'eng.train', CONLL_IOB1)
  sentences = read_conll(path)
  assert sentences == [
      {'tokens': ['EU', 'rejects', 'German', 'British', 'Britain'],
       'tags': ['B-ORG', 'O', 'B-MISC', 'I-MISC', 'B-MISC'], 'line': 3},
      {'tokens': ['Peter', 'Blackburn', 'Paris'], 'tags': ['B-PER', 'I-PER', 'B-LOC'], 'line': 9}]
  assert conll_tag_names(sentences) == ('O', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG', 'B-PER', 'I-PER')
  assert read_conll(path, word_column=1, tag_column=2)[0]['tags'][:2] == ['B-NP', 'B-VP']


def test_conll_iob2_is_kept_and_validated(tmp_path):
  path = _write(tmp_path / 'train.txt', 'New\tB-LOC\nYork\tI-LOC\nis\tO\n\n\nI\tO\n')
  assert read_conll(path, scheme='iob2') == [
      {'tokens': ['New', 'York', 'is'], 'tags': ['B-LOC', 'I-LOC', 'O'], 'line': 1},
      {'tokens': ['I'], 'tags': ['O'], 'line': 6}]
  bad = _write(tmp_path / 'bad.txt', 'New B-LOC\nYork I-PER\n')
  with _raises('bad.txt:2', "'I-PER'", "data.conll.scheme='iob1'"):
    read_conll(bad, scheme='bio')
  assert read_conll(bad)[0]['tags'] == ['B-LOC', 'B-PER']


def test_conll_errors(tmp_path):
  with _raises('cols.txt:3', 'expected 2 columns', 'found 3'):
    read_conll(_write(tmp_path / 'cols.txt', 'a O\nb O\nc X O\n'))
  with _raises('tags.txt:2', "'E-PER'", 'data.conll.tag_column'):
    read_conll(_write(tmp_path / 'tags.txt', 'a O\nb E-PER\n'))
  with _raises('tags.txt:2', "'B-'"):
    read_conll(_write(tmp_path / 'tags.txt', 'a O\nb B-\n'))
  with _raises('range.txt:1', 'data.conll.tag_column=5', '2 columns'):
    read_conll(_write(tmp_path / 'range.txt', 'a O\n'), tag_column=5)
  with _raises('range.txt:1', 'data.conll.word_column=-3'):
    read_conll(_write(tmp_path / 'range.txt', 'a O\n'), word_column=-3)
  with _raises('docs.txt', 'has no sentences'):
    read_conll(_write(tmp_path / 'docs.txt', '-DOCSTART- -X- O O\n\n'))
  with _raises('utf.txt:2', 're-save the file as UTF-8'):
    read_conll(_write(tmp_path / 'utf.txt', b'a O\n\xc3( O\n'))
  with _raises('data.conll.scheme', 'iob1'):
    read_conll(str(tmp_path / 'utf.txt'), scheme='iobes')


def test_conll2003_real_files():
  for name, count in (('eng.train', 14041), ('eng.testa', 3250), ('eng.testb', 3453)):
    sentences = read_conll(_need('conll2003', name))
    assert len(sentences) == count
    assert conll_tag_names(sentences) == ('O', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG', 'B-PER',
                                          'I-PER')
    for s in sentences:  # valid IOB2: every I-X continues an X span
      assert all(t == 'O' or t[:2] in ('B-', 'I-') for t in s['tags'])
      assert all(not t.startswith('I-') or p[2:] == t[2:] for p, t in zip(['O'] + s['tags'], s['tags']))


def _idx_images(images: np.ndarray) -> bytes:
  return struct.pack('>IIII', 2051, *images.shape) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
  return struct.pack('>II', 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def test_idx_gzip_and_raw(tmp_path):
  images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
  labels = np.array([7, 0, 9])
  for gz in (False, True):
    pack = gzip.compress if gz else bytes
    suffix = '.gz' if gz else ''
    got_images, got_labels = read_idx(_write(tmp_path / f'img{suffix}', pack(_idx_images(images))),
                                      _write(tmp_path / f'lab{suffix}', pack(_idx_labels(labels))))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5, 1)
    np.testing.assert_array_equal(got_images[..., 0], images)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_errors(tmp_path):
  images = _write(tmp_path / 'img', _idx_images(np.zeros((3, 2, 2), np.uint8)))
  labels = _write(tmp_path / 'lab', _idx_labels(np.zeros(3)))
  with _raises('lab', 'magic 2049', 'expected 2051'):
    read_idx(labels, images)
  with _raises('junk', 'magic 1633837924 (0x61626364)', 'expected 2051'):
    read_idx(_write(tmp_path / 'junk', b'abcdefghijklmnop'), labels)
  with _raises('short', 'truncated', '3 x 2 x 2 = 12', 'has 11'):
    read_idx(_write(tmp_path / 'short', _idx_images(np.zeros((3, 2, 2), np.uint8))[:-1]), labels)
  with _raises('head', 'truncated'):
    read_idx(_write(tmp_path / 'head', struct.pack('>II', 2051, 3)), labels)
  with _raises('four', '4 labels', '3 images', 'img'):
    read_idx(images, _write(tmp_path / 'four', _idx_labels(np.zeros(4))))
  with _raises('plain.gz', 'not gzip'):
    read_idx(_write(tmp_path / 'plain.gz', _idx_images(np.zeros((3, 2, 2), np.uint8))), labels)


def test_mnist_real_files():
  for prefix, count in (('train', 60000), ('t10k', 10000)):
    images, labels = read_idx(_need('mnist', f'{prefix}-images-idx3-ubyte.gz'),
                              _need('mnist', f'{prefix}-labels-idx1-ubyte.gz'))
    assert images.shape == (count, 28, 28, 1) and labels.shape == (count,)
    assert set(np.unique(labels).tolist()) == set(range(10))


def _png(color, size=(3, 2), mode='RGB') -> bytes:
  buffer = io.BytesIO()
  Image.new(mode, size, color).save(buffer, format='PNG')
  return buffer.getvalue()


def test_image_folder_and_decode(tmp_path):
  for name, color in (('b.png', (255, 0, 0)), ('a.png', (0, 0, 255))):
    (tmp_path / 'dog').mkdir(exist_ok=True)
    _write(tmp_path / 'dog' / name, _png(color))
  (tmp_path / 'cat').mkdir()
  _write(tmp_path / 'cat' / 'x.PNG', _png(9, mode='L'))
  _write(tmp_path / 'cat' / 'notes.txt', 'ignored')
  _write(tmp_path / 'cat' / '.hidden.png', 'ignored')
  (tmp_path / '.cache').mkdir()
  items, classes = read_image_folder(tmp_path)
  assert classes == ('cat', 'dog')
  assert [(os.path.relpath(f, tmp_path), c) for f, c in items] == [
      (os.path.join('cat', 'x.PNG'), 0), (os.path.join('dog', 'a.png'), 1), (os.path.join('dog', 'b.png'), 1)]
  rgb = decode_image((tmp_path / 'dog' / 'b.png').read_bytes(), where='dog/b.png')
  assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3) and rgb[0, 0].tolist() == [255, 0, 0]
  gray = decode_image((tmp_path / 'cat' / 'x.PNG').read_bytes(), where='x', channels=1)
  assert gray.shape == (2, 3, 1) and int(gray[0, 0, 0]) == 9


def test_image_errors(tmp_path):
  with _raises('broken.png', 'not a readable image', 'remove or replace'):
    decode_image(b'garbage, not a png', where=str(tmp_path / 'broken.png'))
  with _raises('nowhere', 'data.path'):
    read_image_folder(tmp_path / 'nowhere')
  with _raises(str(tmp_path), 'no class sub-folders'):
    read_image_folder(tmp_path)
  (tmp_path / 'dog').mkdir()
  _write(tmp_path / 'dog' / 'a.png', _png(0))
  (tmp_path / 'cat').mkdir()
  _write(tmp_path / 'cat' / 'readme.txt', 'no images here')
  with _raises('cat', 'has no images', 'add images or remove the folder'):
    read_image_folder(tmp_path)


def test_find_split_files(tmp_path):
  for name in ('train.tsv', 'dev.tsv', 'SOURCE.txt', 'README.md'):
    _write(tmp_path / name, '')
  auto = {'train': '', 'validation': '', 'test': ''}
  assert find_split_files(tmp_path, auto) == {'train': tmp_path / 'train.tsv', 'validation': tmp_path / 'dev.tsv'}
  assert find_split_files(tmp_path / 'dev.tsv', auto) == {'train': tmp_path / 'dev.tsv'}
  assert find_split_files(tmp_path, {'train': 'tr*.tsv', 'validation': '', 'test': 'dev.tsv'}) == {
      'train': tmp_path / 'train.tsv', 'test': tmp_path / 'dev.tsv'}
  conll = tmp_path / 'conll'
  conll.mkdir()
  for name in ('eng.train', 'eng.testa', 'eng.testb'):
    _write(conll / name, '')
  assert find_split_files(conll, auto) == {'train': conll / 'eng.train', 'validation': conll / 'eng.testa',
                                           'test': conll / 'eng.testb'}


def test_find_split_files_errors(tmp_path):
  with _raises('missing', 'data.path'):
    find_split_files(tmp_path / 'missing', {})
  _write(tmp_path / 'dev.tsv', '')
  _write(tmp_path / 'SOURCE.txt', '')
  with _raises(str(tmp_path), 'no train file', 'dev.tsv', 'data.files'):
    find_split_files(tmp_path, {'train': '', 'validation': ''})
  with _raises('other.tsv', 'no such file', 'dev.tsv', 'data.files.train'):
    find_split_files(tmp_path, {'train': 'other.tsv'})
  _write(tmp_path / 'train_a.tsv', '')
  _write(tmp_path / 'train_b.tsv', '')
  with _raises('matches 2 files', 'train_a.tsv', 'train_b.tsv', 'data.files.train'):
    find_split_files(tmp_path, {'train': 'train_*.tsv'})
  with _raises('matches no file', 'data.files.test'):
    find_split_files(tmp_path, {'train': 'train_a.tsv', 'test': '*.csv'})
  _write(tmp_path / 'train.csv', '')
  _write(tmp_path / 'train.jsonl', '')
  with _raises('several files', 'train.csv', 'train.jsonl', 'data.files.train'):
    find_split_files(tmp_path, {'train': ''})


def test_labels_written_as_whole_number_floats_are_read_as_integers_with_a_warning(tmp_path, capsys):
  csv_path = _write(tmp_path / 'data.csv', 'text,label\nx,1.0\ny,0.00\nz,2\n')
  jsonl_path = _write(tmp_path / 'data.jsonl', '{"text": "x", "label": 1.0}\n{"text": "y", "label": 0}\n')
  for path, n in ((csv_path, 2), (jsonl_path, 1)):
    examples = read_text_classification(path, text_column='text', label_column='label')
    assert infer_label_names(examples) == tuple(str(i) for i in range(len(examples)))
    err = capsys.readouterr().err
    assert f'{path}: {n} labels are written as whole-number floats' in err and 'read as the integers' in err
  with _raises('label 1.5 is a JSON number'):
    read_text_classification(_write(tmp_path / 'half.jsonl', '{"text": "x", "label": 1.5}\n'), text_column='text',
                             label_column='label')
