"""Supervised fine-tuning data for decoders: prompt / completion pairs tokenized once, laid out in rows.

Pairs come from JSONL (`prompt` / `completion` fields, or chat `messages` whose assistant turns are the completions)
or from any text-classification dataset through data.sft's templates ('Review: {text}\\nSentiment:' -> ' {label}').
With data.sft.chat the prompt goes through the model's own chat template. The loss counts completion tokens only
(every token with data.sft.loss_on_prompt), the end-of-sequence token included, so the model learns to stop.

Training rows are packed (data.sft.pack): several examples share a row of data.tokenizer.max_length tokens, with
segment ids 1, 2, ... confining attention to each example and positions restarting at 0, placed once by best-fit
decreasing (deterministic; the pipeline shuffles rows by (seed, epoch)). Unpacked, a row holds one example and
data.tokenizer.bucket pads batches per length bucket. An example longer than a row loses the start of its prompt
(counted in the report as truncated). Evaluation rows hold one example each, with its prompt left-padded for
generation and its reference completion (and class, with a label set) for scoring.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ftlab.data import packing
from ftlab.data.errors import DataError
from ftlab.data.lm_tokenizer import LMTokenizer


@dataclasses.dataclass(frozen=True)
class Examples:
  """Tokenized examples: ids, the loss flag of each token (1 = counted), where the completion starts, the reference
  completion's ids and the class (-1 without a label set)."""
  ids: list[np.ndarray]
  counted: list[np.ndarray]
  prompt_lengths: np.ndarray
  references: list[np.ndarray]
  labels: np.ndarray
  num_truncated: int

  def __len__(self) -> int:
    return len(self.ids)


def templated(texts, labels, class_names, sft_config, text_pairs=None) -> tuple[list[str], list[str]]:
  """(prompts, completions) of a text-classification split through data.sft.prompt / data.sft.completion."""
  pairs = text_pairs or [''] * len(texts)
  try:
    prompts = [sft_config.prompt.format(text=t, text_pair=p) for t, p in zip(texts, pairs)]
    completions = [sft_config.completion.format(label=class_names[y]) for y in labels]
  except (KeyError, IndexError, ValueError) as err:
    raise DataError(f'data.sft.prompt / data.sft.completion: cannot fill the template ({type(err).__name__}: {err}); '
                    'use the fields {text} and {text_pair} in the prompt and {label} in the completion, with {{ }} '
                    'for literal braces') from None
  return prompts, completions


def _chat_pieces(messages: list[dict], tok: LMTokenizer, where: str) -> list[tuple[str, bool]]:
  """The rendered conversation as (text, is an assistant turn) pieces, each assistant turn separated by rendering
  the conversation up to it with and without it."""
  pieces, done = [], ''
  for i, message in enumerate(messages):
    if message.get('role') != 'assistant':
      continue
    before = tok.render(messages[:i], add_generation_prompt=True)
    through = tok.render(messages[:i + 1], add_generation_prompt=False)
    if not before.startswith(done) or not through.startswith(before):
      raise DataError(f'{where}: the chat template does not render this conversation incrementally, so its '
                      'assistant turns cannot be told apart; give prompt / completion fields instead')
    pieces += [(before[len(done):], False), (through[len(before):], True)]
    done = through
  if not pieces:
    raise DataError(f'{where}: the conversation has no assistant message to learn; add one (role "assistant")')
  return pieces


def _pieces(prompt, completion: str, tok: LMTokenizer, sft_config, where: str) -> list[tuple[str, bool]]:
  """(text, counted) pieces of one example: a chat conversation, or a prompt and its completion."""
  if isinstance(prompt, list):
    return _chat_pieces(prompt, tok, where)
  if not sft_config.chat:
    return [(prompt, False), (completion + tok.eos_token, True)]
  system = [{'role': 'system', 'content': sft_config.system}] if sft_config.system else []
  messages = system + [{'role': 'user', 'content': prompt}, {'role': 'assistant', 'content': completion}]
  return _chat_pieces(messages, tok, where)


def tokenize(prompts, completions, labels, tok: LMTokenizer, sft_config, *, max_length: int,
             where: str) -> Examples:
  """Examples from pairs (a prompt may be a list of chat messages whose last turns hold the completions)."""
  ids, counted, prompt_lengths, references, truncated = [], [], [], [], 0
  for i, (prompt, completion) in enumerate(zip(prompts, completions)):
    pieces = _pieces(prompt, completion, tok, sft_config, f'{where}, example {i}')
    last = max(k for k, (_, c) in enumerate(pieces) if c)  # the completion scored by generation
    tokens, flags, start = [], [], 0
    for j, (piece, is_completion) in enumerate(pieces):
      start = len(tokens) if j == last else start
      piece_ids = tok.encode(piece, first=j == 0)
      tokens += piece_ids
      flags += [is_completion or sft_config.loss_on_prompt] * len(piece_ids)
    reference = tokens[start:]
    if len(tokens) > max_length:  # keep the completion: drop the prompt's start
      truncated += 1
      cut = len(tokens) - max_length
      tokens, flags, start = tokens[cut:], flags[cut:], max(0, start - cut)
    ids.append(np.asarray(tokens, np.int32))
    counted.append(np.asarray(flags, bool))
    prompt_lengths.append(start)
    references.append(np.asarray(reference, np.int32))
  return Examples(ids, counted, np.asarray(prompt_lengths, np.int64), references,
                  np.asarray(labels, np.int32), truncated)


class Rows:
  """A random-access source of rows (lists of examples) for the pipeline; `generation` adds what evaluation by
  generation reads (left-padded prompts, references of `max_new_tokens` slots, classes). `tokenizer` (the run's)
  turns ids back into text for predictions.jsonl."""

  def __init__(self, examples: Examples, rows: list[np.ndarray], *, length: int, pad_id: int, eos_id: int,
               generation: bool = False, max_new_tokens: int = 0, tokenizer: LMTokenizer | None = None):
    self.examples, self.rows, self.length, self.pad_id, self.eos_id = examples, rows, length, pad_id, eos_id
    self.generation, self.max_new_tokens, self.tokenizer = generation, max_new_tokens, tokenizer
    self.lengths = np.asarray([sum(len(examples.ids[i]) for i in r) for r in rows], np.int64)
    self.prompt_length = int(max([examples.prompt_lengths[r[0]] for r in rows], default=1)) or 1
    self.labels = np.asarray([examples.labels[r[0]] for r in rows], np.int32)
    self.longest = min(length, -(-int(self.lengths.max(initial=1)) // 8) * 8)  # evaluation rows: one example each
    # Whether every counted token is in the completion scored by generation: then evaluation runs each prompt once
    # (LMTask.evaluate) and reads the completion from 'completion_ids'.
    self.completion_only = all(not examples.counted[r[0]][:examples.prompt_lengths[r[0]]].any() for r in rows)
    self.completion_length = max((len(examples.ids[r[0]]) - examples.prompt_lengths[r[0]] for r in rows), default=1)

  def __len__(self) -> int:
    return len(self.rows)

  @property
  def num_truncated(self) -> int:
    return self.examples.num_truncated

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in self.get_batch(np.array([index])).items()}

  def get_batch(self, indices: np.ndarray, *, length: int | None = None) -> dict[str, np.ndarray]:
    length = length or (self.longest if self.generation else self.length)
    b = len(indices)
    batch = {'input_ids': np.full((b, length), self.pad_id, np.int32), 'positions': np.zeros((b, length), np.int32),
             'segment_ids': np.zeros((b, length), np.int32), 'targets': np.zeros((b, length), np.int32),
             'loss_mask': np.zeros((b, length), np.float32)}
    for r, index in enumerate(indices):
      at = 0
      for segment, e in enumerate(self.rows[int(index)], start=1):
        ids, counted = self.examples.ids[e], self.examples.counted[e]
        n = len(ids)
        batch['input_ids'][r, at:at + n] = ids
        batch['positions'][r, at:at + n] = np.arange(n)
        batch['segment_ids'][r, at:at + n] = segment
        batch['targets'][r, at:at + n - 1] = ids[1:]
        batch['loss_mask'][r, at:at + n - 1] = counted[1:]
        at += n
    if self.generation:
      batch.update(self._generation_fields(indices))
    return batch

  def _generation_fields(self, indices) -> dict[str, np.ndarray]:
    b, p, n = len(indices), self.prompt_length, self.max_new_tokens
    prompts = np.full((b, p), self.pad_id, np.int32)
    segments = np.zeros((b, p), np.int32)
    references = np.full((b, n), -1, np.int32)
    for r, index in enumerate(indices):
      e = self.rows[int(index)][0]
      prompt = self.examples.ids[e][:self.examples.prompt_lengths[e]][-p:]
      prompts[r, p - len(prompt):], segments[r, p - len(prompt):] = prompt, 1
      references[r] = until_eos(self.examples.references[e], self.eos_id, n)
    out = {'prompt_ids': prompts, 'prompt_segments': segments, 'reference': references,
           'label': self.labels[np.asarray(indices)]}
    if self.completion_only:
      completions = np.full((b, self.completion_length), -1, np.int32)
      for r, index in enumerate(indices):
        e = self.rows[int(index)][0]
        completion = self.examples.ids[e][self.examples.prompt_lengths[e]:]
        completions[r, :len(completion)] = completion
      out['completion_ids'] = completions
    return out

  def __repr__(self) -> str:
    return f'Rows({len(self.examples)} examples in {len(self)} rows of {self.length} tokens)'


def rows_of(examples: Examples, *, length: int, pad_id: int, eos_id: int, pack_rows: bool,
            generation: bool = False, max_new_tokens: int = 0, tokenizer: LMTokenizer | None = None) -> Rows:
  """Training rows (packed when `pack_rows`) or evaluation rows (one example each)."""
  if pack_rows and not generation:
    rows = packing.pack(np.asarray([len(i) for i in examples.ids]), length)
  else:
    rows = [np.array([i]) for i in range(len(examples))]
  return Rows(examples, rows, length=length, pad_id=pad_id, eos_id=eos_id, generation=generation,
              max_new_tokens=max_new_tokens, tokenizer=tokenizer)


def until_eos(ids: np.ndarray, eos_id: int, n: int) -> np.ndarray:
  """The first `n` ids up to and including the first eos, padded with -1 (the slots a generation is compared on)."""
  ids = list(ids[:n])
  if eos_id in ids:
    ids = ids[:ids.index(eos_id) + 1]
  return np.asarray(ids + [-1] * (n - len(ids)), np.int32)
