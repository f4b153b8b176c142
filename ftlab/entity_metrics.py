"""Entity-level precision / recall / F1 for token classification (NER), computed inside jit.

The scores are those of seqeval 1.2.2 in its default (non-strict) mode on IOB2 tags, micro averaged: a chunk starts
at a B-X word, or at an I-X word whose previous word is O or of another type (or that opens the sentence); it goes on
through the following I-X words; an entity is (type, first word, last word), and a predicted entity is correct when
the same entity is in the truth.

Everything works on token positions with a `valid` mask (True at the words, i.e. at the first sub-token of each
word): the other positions are skipped entirely, as if absent. With fixed shapes, chunks are found without loops:
  * the previous / next word of each position is the running max / reversed running min of the valid indices, so
    each word sees its neighbouring words' tags across any skipped positions;
  * a word starts an entity when it is B, or non-O following an O or a word of another type; it ends one when it is
    non-O and the next word does not continue it (is not I of the same type);
  * an entity is identified by its start; its end is the first end at or after the start (a reversed running min of
    the end indices), so a true positive is a position where both sequences start an entity of the same type and
    the ends coincide.
Device side: `entity_counts` ([3] int32 counts) and the clu metric `EntityF1.of(tag_names)` (merge = sum).
Host side: `entity_scores` (counts -> precision/recall/F1 dict).
"""
from __future__ import annotations

import functools
from typing import ClassVar, Sequence

import flax
import jax
import jax.numpy as jnp
from clu import metrics as clu_metrics

O, B, I = 0, 1, 2  # tag kinds


def tag_scheme(tag_names: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
  """Parses IOB2 tag names ('O', 'B-PER', 'I-LOC', ...) into (kinds, types, type_names).

  kinds[t] is 0 (O), 1 (B) or 2 (I) for tag id t; types[t] indexes type_names (in order of first appearance; 0 for
  O, where it is unused). The type is everything after 'B-' / 'I-', as in seqeval. Raises ValueError naming the
  first tag that is not of that form (e.g. 'E-PER', 'X', 'B-').
  """
  kinds, types, type_names = [], [], {}
  for name in tag_names:
    if name == 'O':
      kinds.append(O)
      types.append(0)
      continue
    if not isinstance(name, str) or name[:2] not in ('B-', 'I-') or len(name) < 3:
      raise ValueError(f'tag {name!r} is not an IOB2 tag (expected O, B-<type> or I-<type>)')
    kinds.append(B if name[0] == 'B' else I)
    types.append(type_names.setdefault(name[2:], len(type_names)))
  return tuple(kinds), tuple(types), tuple(type_names)


def _neighbour(values: jnp.ndarray, index: jnp.ndarray, fill) -> jnp.ndarray:
  """values[..., index] where 0 <= index < L, else `fill`."""
  length = values.shape[-1]
  got = jnp.take_along_axis(values, jnp.clip(index, 0, length - 1), axis=-1)
  return jnp.where((index >= 0) & (index < length), got, fill)


def _chunks(kind: jnp.ndarray, type_: jnp.ndarray, valid: jnp.ndarray, prev: jnp.ndarray, nxt: jnp.ndarray):
  """(start, end_of_start) [..., L]: where entities start and, at every position, the first entity end at or after."""
  idx = jnp.arange(kind.shape[-1], dtype=jnp.int32)
  prev_kind, prev_type = _neighbour(kind, prev, O), _neighbour(type_, prev, -1)
  next_kind, next_type = _neighbour(kind, nxt, O), _neighbour(type_, nxt, -1)
  entity = valid & (kind != O)
  start = entity & ((kind == B) | (prev_kind == O) | (prev_type != type_))
  end = entity & ~((next_kind == I) & (next_type == type_))
  first_end = jax.lax.cummin(jnp.where(end, idx, kind.shape[-1]), axis=kind.ndim - 1, reverse=True)
  return start, first_end


def entity_counts(pred_tags, true_tags, valid, *, tag_kinds: Sequence[int], tag_types: Sequence[int]) -> jnp.ndarray:
  """[3] int32 (true positives, predicted entities, true entities) over rows of tag ids [..., L] at `valid` words.

  Each row is a sentence made of its valid positions in order; other positions are ignored. `tag_kinds` /
  `tag_types` (static, per tag id; see `tag_scheme`) give each tag's kind (0 = O, 1 = B, 2 = I) and entity type.
  Pure jax.numpy with fixed shapes: jit-able and vmappable.
  """
  pred_tags, true_tags = jnp.asarray(pred_tags, jnp.int32), jnp.asarray(true_tags, jnp.int32)
  valid = jnp.asarray(valid, bool)
  length = valid.shape[-1]
  axis = valid.ndim - 1
  kinds, types = jnp.asarray(tag_kinds, jnp.int32), jnp.asarray(tag_types, jnp.int32)
  idx = jnp.arange(length, dtype=jnp.int32)
  # Previous / next valid position of each position (-1 / L where there is none: the sentence edge, seen as O).
  last_valid = jax.lax.cummax(jnp.where(valid, idx, -1), axis=axis)
  first_valid = jax.lax.cummin(jnp.where(valid, idx, length), axis=axis, reverse=True)
  prev = jnp.concatenate([jnp.full_like(last_valid[..., :1], -1), last_valid[..., :-1]], axis=-1)
  nxt = jnp.concatenate([first_valid[..., 1:], jnp.full_like(first_valid[..., :1], length)], axis=-1)

  def lookup(tags):
    tags = jnp.clip(tags, 0, len(tag_kinds) - 1)
    return kinds[tags], types[tags]

  pred_kind, pred_type = lookup(pred_tags)
  true_kind, true_type = lookup(true_tags)
  pred_start, pred_end = _chunks(pred_kind, pred_type, valid, prev, nxt)
  true_start, true_end = _chunks(true_kind, true_type, valid, prev, nxt)
  correct = pred_start & true_start & (pred_type == true_type) & (pred_end == true_end)
  count = lambda x: jnp.sum(x, dtype=jnp.int32)
  return jnp.stack([count(correct), count(pred_start), count(true_start)])


@flax.struct.dataclass
class EntityF1(clu_metrics.Metric):
  """Entity counts [3] (true positives, predicted, true entities) for IOB2 token tagging; merge = sum.

  Use `EntityF1.of(tag_names)` to get a subclass bound to the (static) tag names. `from_model_output` takes logits
  [B, L, C] (argmax = prediction), labels [B, L] with -1 at positions that are not words, and an optional row mask
  [B] (0 for padded rows). `compute()` returns the counts; `entity_scores` turns them into precision/recall/F1.
  """
  counts: jnp.ndarray
  tag_names: ClassVar[tuple[str, ...] | None] = None
  tag_kinds: ClassVar[tuple[int, ...]] = ()
  tag_types: ClassVar[tuple[int, ...]] = ()

  @classmethod
  def of(cls, tag_names: Sequence[str]) -> type[EntityF1]:
    """Returns a (cached) EntityF1 subclass bound to `tag_names` (IOB2; see `tag_scheme`)."""
    return cls._of(tuple(tag_names))

  @classmethod
  @functools.cache
  def _of(cls, tag_names: tuple[str, ...]) -> type[EntityF1]:
    kinds, types, _ = tag_scheme(tag_names)
    sub = type(f'EntityF1{len(tag_names)}', (cls,),
               {'tag_names': tag_names, 'tag_kinds': kinds, 'tag_types': types})
    return flax.struct.dataclass(sub)

  @classmethod
  def empty(cls) -> EntityF1:
    return cls(counts=jnp.zeros((3,), jnp.int32))

  @classmethod
  def from_model_output(cls, *, logits, labels, mask=None, **_) -> EntityF1:
    if cls.tag_names is None:
      raise ValueError('use EntityF1.of(tag_names) to bind the tag names')
    if logits.shape[-1] != len(cls.tag_names):
      raise ValueError(f'logits have {logits.shape[-1]} classes, expected {len(cls.tag_names)} tags')
    labels = jnp.asarray(labels).astype(jnp.int32)
    valid = labels >= 0
    if mask is not None:  # [B] row mask (a [B, L] token mask works too)
      mask = jnp.asarray(mask) != 0
      valid = valid & mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim))
    pred = jnp.argmax(logits, axis=-1)
    return cls(counts=entity_counts(pred, labels, valid, tag_kinds=cls.tag_kinds, tag_types=cls.tag_types))

  def merge(self, other: EntityF1) -> EntityF1:
    return type(self)(counts=self.counts + other.counts)

  def compute(self) -> jnp.ndarray:
    return self.counts


def entity_scores(counts) -> dict:
  """Host side: entity precision/recall/F1 (micro) from [3] counts, 0.0 where a denominator is 0 (as seqeval).

  F1 is computed as seqeval does, 2 * p * r / (p + r), so that the floats agree exactly.
  """
  correct, predicted, true = (int(c) for c in jax.device_get(counts))
  precision = correct / predicted if predicted else 0.0
  recall = correct / true if true else 0.0
  denom = precision + recall
  f1 = 2.0 * precision * recall / denom if denom else 0.0
  return {'entity_precision': precision, 'entity_recall': recall, 'entity_f1': f1,
          'entity_true': true, 'entity_predicted': predicted, 'entity_correct': correct}
