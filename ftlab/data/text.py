"""Text sources: tokenize a split once with `tokenizers`, store flat id arrays, and make batches by cheap gathers.

`TokenizedText` serves sequence classification (single texts or pairs), `TokenizedTags` token classification
(labels on the first sub-token of every word). `length_bucketed_order` and `bucket_lengths`/`padded_length`
let a pipeline pad batches to a few lengths instead of always to max_length.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tokenizers
from tokenizers.implementations import BertWordPieceTokenizer

from ftlab.data import packing
from ftlab.data.errors import DataError, located


def load_tokenizer(path: str | os.PathLike, *, lowercase: bool = True) -> tokenizers.Tokenizer:
  """A tokenizer from a tokenizer.json, a WordPiece vocab.txt (BERT-style), or a folder holding either.

  A folder prefers tokenizer.json. `lowercase` applies to vocab.txt only: a tokenizer.json carries its own
  normalizer. Truncation and padding are switched off on the returned tokenizer (the sources pad themselves).
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    candidates = [os.path.join(path, name) for name in ('tokenizer.json', 'vocab.txt')]
    found = [c for c in candidates if os.path.isfile(c)]
    if not found:
      raise DataError(f'{located(path)}: the folder has neither tokenizer.json nor vocab.txt; point '
                      'data.tokenizer.path at a tokenizer.json, a WordPiece vocab.txt, or a folder holding one')
    path = found[0]
  elif not os.path.isfile(path):
    raise DataError(f'{located(path)}: no such file or folder; set data.tokenizer.path to a tokenizer.json, '
                    'a WordPiece vocab.txt, or a folder holding one')
  if path.endswith('.json'):
    tokenizer = _from_json(path)
  elif path.endswith('.txt'):
    tokenizer = _from_vocab(path, lowercase=lowercase)
  else:
    raise DataError(f'{located(path)}: not a tokenizer.json or a vocab.txt; set data.tokenizer.path to one of '
                    'those (or to a folder holding one)')
  tokenizer.no_truncation()
  tokenizer.no_padding()
  return tokenizer


def _from_json(path: str) -> tokenizers.Tokenizer:
  try:
    return tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # the Rust side raises plain Exception subclasses with varying types
    raise DataError(f'{located(path)}: cannot read this tokenizer.json ({e}); check data.tokenizer.path points '
                    'at a file saved by the tokenizers library (tokenizer.save / save_pretrained)') from e


def _from_vocab(path: str, *, lowercase: bool) -> tokenizers.Tokenizer:
  try:
    with open(path, encoding='utf-8') as f:
      vocab = {line.rstrip('\n') for line in f}
  except UnicodeDecodeError as e:
    raise DataError(f'{located(path)}: not UTF-8 text ({e.reason}: byte 0x{e.object[e.start]:02x}); re-save the '
                    'vocabulary as UTF-8, one token a line') from None
  missing = [t for t in ('[UNK]', '[CLS]', '[SEP]') if t not in vocab]
  if missing:
    raise DataError(f'{located(path)}: the vocabulary lacks {missing}, which a BERT WordPiece tokenizer needs; '
                    'add them (one token a line) or set data.tokenizer.path to a tokenizer.json')
  try:
    return BertWordPieceTokenizer(path, lowercase=lowercase)._tokenizer
  except Exception as e:
    raise DataError(f'{located(path)}: cannot build a WordPiece tokenizer from this vocab.txt ({e}); check '
                    'data.tokenizer.path') from e


def pad_token_id(tokenizer: tokenizers.Tokenizer) -> int:
  """The id of '[PAD]', else of '<pad>', else 0."""
  for token in ('[PAD]', '<pad>'):
    token_id = tokenizer.token_to_id(token)
    if token_id is not None:
      return int(token_id)
  return 0


@contextlib.contextmanager
def _truncating(tokenizer: tokenizers.Tokenizer, max_length: int) -> Iterator[None]:
  """Truncation to max_length (longest_first for pairs) and no padding, restoring the previous settings after."""
  truncation, padding = tokenizer.truncation, tokenizer.padding
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length, strategy='longest_first')
  try:
    yield
  finally:
    tokenizer.no_truncation()
    if truncation is not None:
      tokenizer.enable_truncation(**truncation)
    if padding is not None:
      tokenizer.enable_padding(**padding)


def _check_max_length(tokenizer: tokenizers.Tokenizer, max_length: int, *, pair: bool) -> None:
  processor = tokenizer.post_processor
  specials = processor.num_special_tokens_to_add(pair) if processor is not None else 0
  need = specials + (2 if pair else 1)
  if max_length < need:
    raise DataError(f'data.tokenizer.max_length = {max_length} leaves no room for text: {specials} special tokens '
                    f'are added per {"pair" if pair else "example"}; set it to at least {need} (typically 128)')


def _chunks(n: int, size: int) -> Iterator[slice]:
  for start in range(0, n, max(1, size)):
    yield slice(start, min(n, start + size))


def _flat(rows: Sequence[Sequence[int]], dtype) -> np.ndarray:
  total = sum(map(len, rows))
  return np.fromiter(itertools.chain.from_iterable(rows), dtype, count=total)


class _Tokenized:
  """Shared storage: flat ids/type ids with int64 offsets and per-example lengths (incl. special tokens)."""

  def _store(self, ids: list[np.ndarray], type_ids: list[np.ndarray], lengths: list[np.ndarray]) -> None:
    self.lengths = np.concatenate(lengths).astype(np.int32) if lengths else np.zeros(0, np.int32)
    self._offsets = np.zeros(len(self.lengths), np.int64)
    np.cumsum(self.lengths[:-1], out=self._offsets[1:])
    # One trailing sentinel so that masked gathers can index position 0 even when every example is empty.
    self._ids = np.concatenate(ids + [np.zeros(1, np.int32)])
    self._type_ids = np.concatenate(type_ids + [np.zeros(1, np.int8)])

  def __len__(self) -> int:
    return len(self.lengths)

  def _positions(self, indices: np.ndarray, length: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, mask [B, L], flat source positions [B, L]; 0 where masked)."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    length = self.max_length if length is None else int(length)
    lens = self.lengths[indices]
    if lens.size and lens.max() > length:
      raise ValueError(f'length={length} is shorter than an example in the batch ({int(lens.max())} tokens); '
                       'use padded_length(lengths, buckets) to choose it')
    pos = np.arange(length, dtype=np.int64)
    mask = pos[None, :] < lens[:, None]
    src = np.where(mask, self._offsets[indices][:, None] + pos[None, :], 0)
    return indices, mask, src

  def _common(self, mask: np.ndarray, src: np.ndarray) -> dict[str, np.ndarray]:
    return {
        'input_ids': np.where(mask, self._ids[src], self.pad_id).astype(np.int32),
        'attention_mask': mask.astype(np.int32),
        'token_type_ids': np.where(mask, self._type_ids[src], 0).astype(np.int32),
    }

  def get_batch(self, indices: np.ndarray, *, length: int | None = None) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def _packed(self, indices: np.ndarray, rows: int, slots: int) -> tuple[dict[str, np.ndarray], list]:
    """The examples at `indices` packed into `rows` rows of max_length tokens (packing.pack): input_ids,
    attention_mask, token_type_ids, segment_ids (the example's slot in its row from 1; 0 on padding) and positions
    (from 0 in each example) [rows, max_length], starts [rows, slots] (-1: an empty slot); and where each example
    went: (its position in `indices`, row, slot, first token)."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    layout = packing.pack(self.lengths[indices], self.max_length)
    if len(layout) > rows or max(map(len, layout), default=0) > slots:
      raise ValueError(f'{len(indices)} examples need {len(layout)} rows of {self.max_length} tokens and '
                       f'{max(map(len, layout))} slots; rows={rows}, slots={slots}')
    batch = {k: np.zeros((rows, self.max_length), np.int32)
             for k in ('input_ids', 'attention_mask', 'token_type_ids', 'segment_ids', 'positions')}
    batch['input_ids'][:] = self.pad_id
    batch['starts'] = np.full((rows, slots), -1, np.int32)
    placed = []
    for r, members in enumerate(layout):
      at = 0
      for slot, j in enumerate(members):
        i, n = indices[j], int(self.lengths[indices[j]])
        src = slice(self._offsets[i], self._offsets[i] + n)
        batch['input_ids'][r, at:at + n], batch['token_type_ids'][r, at:at + n] = self._ids[src], self._type_ids[src]
        batch['attention_mask'][r, at:at + n], batch['segment_ids'][r, at:at + n] = 1, slot + 1
        batch['positions'][r, at:at + n], batch['starts'][r, slot] = np.arange(n), at
        placed.append((int(j), r, slot, at))
        at += n
    return batch, placed

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """One example padded to max_length (the row of get_batch([index]))."""
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} examples')
    return {k: v[0] for k, v in self.get_batch(np.array([index % len(self)])).items()}


class TokenizedText(_Tokenized):
  """One split of sequence-classification text, tokenized once; source[i] / get_batch give padded int32 arrays.

  Each example is truncated to max_length tokens including special tokens (pairs: longest_first);
  `num_truncated` counts the examples that lost tokens.
  """

  def __init__(self, texts: list[str], labels: np.ndarray, tokenizer: tokenizers.Tokenizer, *, max_length: int,
               text_pairs: list[str] | None = None, chunk: int = 4096):
    labels = np.asarray(labels)
    if len(labels) != len(texts):
      raise DataError(f'{len(texts)} texts but {len(labels)} labels; every text needs exactly one label')
    if text_pairs is not None and len(text_pairs) != len(texts):
      raise DataError(f'{len(texts)} first texts but {len(text_pairs)} second texts; every pair needs both')
    pair = text_pairs is not None
    _check_max_length(tokenizer, max_length, pair=pair)
    self.max_length = int(max_length)
    self.pad_id = pad_token_id(tokenizer)
    self.labels = labels.astype(np.int32)
    self.texts, self.text_pairs = texts, text_pairs  # what predictions.jsonl shows as each example's input
    self.num_truncated = 0
    ids, type_ids, lengths = [], [], []
    with _truncating(tokenizer, self.max_length):
      for part in _chunks(len(texts), chunk):
        inputs = list(zip(texts[part], text_pairs[part])) if pair else list(texts[part])
        encodings = tokenizer.encode_batch(inputs)
        self.num_truncated += sum(1 for e in encodings if e.overflowing)
        ids.append(_flat([e.ids for e in encodings], np.int32))
        type_ids.append(_flat([e.type_ids for e in encodings], np.int8))
        lengths.append(np.fromiter((len(e.ids) for e in encodings), np.int32, count=len(encodings)))
    self._store(ids, type_ids, lengths)

  def get_batch(self, indices: np.ndarray, *, length: int | None = None) -> dict[str, np.ndarray]:
    """input_ids, attention_mask, token_type_ids int32 [B, L] and label int32 [B]; L = length or max_length."""
    indices, mask, src = self._positions(indices, length)
    batch = self._common(mask, src)
    batch['label'] = self.labels[indices]
    return batch

  def get_packed(self, indices: np.ndarray, *, rows: int, slots: int, counted: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """The examples packed (see _packed) with label [rows, slots] (-1 on empty slots and on examples not
    `counted`, a padded remainder's repeats)."""
    batch, placed = self._packed(indices, rows, slots)
    batch['label'] = np.full((rows, slots), -1, np.int32)
    for j, r, slot, _ in placed:
      if counted is None or counted[j]:
        batch['label'][r, slot] = self.labels[indices[j]]
    return batch

  def __repr__(self) -> str:
    return (f'TokenizedText({len(self)} examples, max_length {self.max_length}, '
            f'{self.num_truncated} truncated)')


class TokenizedTags(_Tokenized):
  """One split of token classification (NER): pre-split words and one tag per word.

  Labels sit on the first sub-token of each word; special tokens, continuation sub-tokens and padding get -1.
  Words cut off by truncation are lost; `num_truncated` counts the sentences that lost at least one word, and
  `num_words` holds the words kept per sentence (a word whose first sub-token survives counts as kept).
  """

  def __init__(self, sentences: list[list[str]], tags: list[list[int]], tokenizer: tokenizers.Tokenizer, *,
               max_length: int, chunk: int = 4096):
    if len(tags) != len(sentences):
      raise DataError(f'{len(sentences)} sentences but {len(tags)} tag sequences; every sentence needs one')
    for i, (words, word_tags) in enumerate(zip(sentences, tags)):
      if len(words) != len(word_tags):
        raise DataError(f'sentence {i}: {len(words)} words but {len(word_tags)} tags; every word needs one tag')
    _check_max_length(tokenizer, max_length, pair=False)
    self.max_length = int(max_length)
    self.pad_id = pad_token_id(tokenizer)
    self.sentences = sentences  # what predictions.jsonl shows as each example's input
    self.num_truncated = 0
    ids, type_ids, lengths, labels, num_words = [], [], [], [], []
    with _truncating(tokenizer, self.max_length):
      for part in _chunks(len(sentences), chunk):
        encodings = tokenizer.encode_batch([list(s) for s in sentences[part]], is_pretokenized=True)
        for encoding, word_tags in zip(encodings, tags[part]):
          token_labels, kept = _first_subtoken_labels(encoding.word_ids, word_tags)
          labels.append(token_labels)
          num_words.append(len(kept))
          lost = {w for o in encoding.overflowing for w in o.word_ids if w is not None} - kept
          self.num_truncated += bool(lost)
        ids.append(_flat([e.ids for e in encodings], np.int32))
        type_ids.append(_flat([e.type_ids for e in encodings], np.int8))
        lengths.append(np.fromiter((len(e.ids) for e in encodings), np.int32, count=len(encodings)))
    self._store(ids, type_ids, lengths)
    self._labels = np.concatenate([_flat(labels, np.int32), np.full(1, -1, np.int32)])
    self.num_words = np.asarray(num_words, np.int32)

  def get_batch(self, indices: np.ndarray, *, length: int | None = None) -> dict[str, np.ndarray]:
    """input_ids, attention_mask, token_type_ids, labels int32 [B, L] (-1 where unlabelled) and num_words [B]."""
    indices, mask, src = self._positions(indices, length)
    batch = self._common(mask, src)
    batch['labels'] = np.where(mask, self._labels[src], -1).astype(np.int32)
    batch['num_words'] = self.num_words[indices]
    return batch

  def get_packed(self, indices: np.ndarray, *, rows: int, slots: int, counted: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """The sentences packed (see _packed) with labels [rows, max_length] (-1 where unlabelled, and on sentences not
    `counted`, a padded remainder's repeats)."""
    batch, placed = self._packed(indices, rows, slots)
    del batch['starts']  # a tag per token: no pooling
    batch['labels'] = np.full(batch['input_ids'].shape, -1, np.int32)
    for j, r, _, at in placed:
      i, n = indices[j], int(self.lengths[indices[j]])
      if counted is None or counted[j]:
        batch['labels'][r, at:at + n] = self._labels[self._offsets[i]:self._offsets[i] + n]
    return batch

  def __repr__(self) -> str:
    return (f'TokenizedTags({len(self)} sentences, max_length {self.max_length}, '
            f'{self.num_truncated} lost words to truncation)')


def _first_subtoken_labels(word_ids: list[int | None], word_tags: Sequence[int]) -> tuple[list[int], set[int]]:
  """Per-token labels (the word's tag at its first sub-token, else -1) and the set of words present."""
  labels, seen = [], set()
  for w in word_ids:
    if w is None or w in seen:
      labels.append(-1)
    else:
      seen.add(w)
      labels.append(int(word_tags[w]))
  return labels, seen


def packed_rows(lengths: np.ndarray, width: int, *, multiple: int = 4) -> int:
  """The rows of `width` tokens that packing examples of `lengths` takes, rounded up to a multiple of `multiple`
  (a few batch shapes, so a few compilations: 8 and 12 rows for batches of 32 SST-2 sentences in rows of 64 tokens;
  a multiple of the device count, so the rows shard)."""
  return -(-len(packing.pack(lengths, width)) // multiple) * multiple


def bucket_lengths(max_length: int, *, multiple: int = 8) -> np.ndarray:
  """Allowed padded lengths: the powers of two from 16 below max_length that are multiples of `multiple`, then
  max_length itself."""
  buckets, p = [], 16
  while p < max_length:
    if p % multiple == 0:
      buckets.append(p)
    p *= 2
  return np.array(sorted(set(buckets + [int(max_length)])), np.int32)


def padded_length(lengths_in_batch: np.ndarray, buckets: np.ndarray) -> int:
  """The smallest bucket that fits the longest example of the batch."""
  longest = int(np.max(lengths_in_batch)) if np.size(lengths_in_batch) else 0
  buckets = np.sort(np.asarray(buckets))
  fits = buckets[buckets >= longest]
  if not fits.size:
    raise ValueError(f'an example of {longest} tokens exceeds the largest bucket {int(buckets[-1])}')
  return int(fits[0])


def length_bucketed_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *,
                          window: int = 50) -> np.ndarray:
  """A permutation whose consecutive groups of batch_size have similar lengths.

  Shuffles, sorts each window of window*batch_size indices by length (stable), cuts batches and shuffles their
  order; a remainder shorter than batch_size stays last. Deterministic given the rng state.
  """
  if batch_size < 1 or window < 1:
    raise ValueError(f'batch_size ({batch_size}) and window ({window}) must be positive')
  lengths = np.asarray(lengths)
  order = rng.permutation(len(lengths))
  span = window * batch_size
  for start in range(0, len(order), span):
    part = order[start:start + span]
    order[start:start + span] = part[np.argsort(lengths[part], kind='stable')]
  num_batches = len(order) // batch_size
  full = order[:num_batches * batch_size].reshape(num_batches, batch_size)
  return np.concatenate([full[rng.permutation(num_batches)].reshape(-1), order[num_batches * batch_size:]])
