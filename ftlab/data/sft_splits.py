"""The splits of a decoder run: SFT pairs from JSONL files (data.source 'sft') or from a labelled text dataset
through data.sft's templates, tokenized with the model's tokenizer and laid out in rows (see ftlab.data.sft).

The report carries what the LM task needs from the data: the end-of-sequence id, the label set's completions as
token ids (for scoring generations) and the number of new tokens to generate.
"""
from __future__ import annotations

import json

import numpy as np

from ftlab.data import formats, lm_tokenizer, sft
from ftlab.data import splits as splits_lib
from ftlab.data.errors import DataError, located

MAX_NEW_TOKENS = 64  # the default's cap when references are long


def _record(where: str, record) -> tuple[object, str, str]:
  """(prompt or messages, completion, label name) of one JSONL record."""
  if not isinstance(record, dict):
    raise DataError(f'{where}: expected a JSON object with "prompt" and "completion" (or "messages")')
  if 'messages' in record:
    messages = record['messages']
    ok = isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get('role'), str)
                                            and isinstance(m.get('content'), str) for m in messages)
    if not ok or not messages or messages[-1]['role'] != 'assistant':
      raise DataError(f'{where}: "messages" must be a list of {{"role", "content"}} strings ending with the '
                      'assistant\'s turn; fix the line')
    return messages, messages[-1]['content'], str(record.get('label', ''))
  missing = [k for k in ('prompt', 'completion') if not isinstance(record.get(k), str)]
  if missing:
    raise DataError(f'{where}: no string {" or ".join(repr(m) for m in missing)}; SFT records hold "prompt" and '
                    '"completion" (or chat "messages")')
  return record['prompt'], record['completion'], str(record.get('label', ''))


def read_jsonl(path) -> list[tuple[object, str, str]]:
  records = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        value = json.loads(line)
      except json.JSONDecodeError as err:
        raise DataError(f'{located(path, number)}: not valid JSON ({err.msg} at column {err.colno}); fix the '
                        'line') from None
      records.append(_record(located(path, number), value))
  if not records:
    raise DataError(f'{path}: has no records; check data.path and data.files')
  return records


def _jsonl_roles(dc) -> dict[str, list]:
  """{role: records} of data.source 'sft', carving the roles without a file from train."""
  files = formats.find_split_files(dc.path, dict(dc.files))
  roles = {r: r if r in files and dc.splits[r] != '' else '' for r in splits_lib.ROLES}
  records = {r: read_jsonl(files[r]) for r in splits_lib.ROLES if roles[r]}
  carved = splits_lib.carve_roles(len(records['train']), None, roles, dc)
  train = records['train']
  for role, indices in carved.items():
    records[role] = [train[int(i)] for i in indices]
  return records


def _label_ids(records, names: tuple[str, ...], role: str) -> list[int]:
  """Each record's class: its 'label' (or completion, stripped) among data.text.label_names; -1 without a set."""
  if not names:
    return [-1] * len(records)
  ids = []
  for i, (_, completion, label) in enumerate(records):
    key = label or completion.strip()
    if key not in names:
      raise DataError(f'{role} example {i}: its label {key!r} is not in data.text.label_names {list(names)}; add it '
                      'or give the record a "label"')
    ids.append(names.index(key))
  return ids


def _max_new_tokens(examples: dict[str, sft.Examples], eos_id: int, sft_config) -> int:
  if not sft_config.generate:
    return 0
  if sft_config.max_new_tokens:
    return int(sft_config.max_new_tokens)
  longest = max(int(np.sum(sft.until_eos(r, eos_id, len(r)) >= 0)) for e in examples.values() for r in e.references)
  return min(longest, MAX_NEW_TOKENS)


def build(pairs: dict[str, tuple[list, list, list]], label_completions: list[str], dc, origin: dict) -> tuple:
  """(the splits' sources by role, the report) from {role: (prompts, completions, labels)} and the completion of
  each class of the label set."""
  tok = lm_tokenizer.load(dc.tokenizer.path, eos_token=dc.sft.eos_token)
  length = dc.tokenizer.max_length
  examples = {role: sft.tokenize(*pairs[role], tok, dc.sft, max_length=length, where=f'{role} split')
              for role in splits_lib.ROLES}
  eos = tok.eos_id
  new_tokens = _max_new_tokens(examples, eos, dc.sft)
  pad = tok.tokenizer.token_to_id('<pad>') or eos
  rows = lambda role, gen: sft.rows_of(examples[role], length=length, pad_id=pad, eos_id=eos,
                                       pack_rows=dc.sft.pack, generation=gen, max_new_tokens=new_tokens,
                                       tokenizer=tok)
  built = {'train': rows('train', False), 'validation': rows('validation', True), 'test': rows('test', True)}
  built['train'].evaluation = rows('train', True)  # the train rows evaluated like validation, for the gap
  label_tokens = [_label_completion(tok, dc.sft, c, eos, new_tokens) for c in label_completions]
  report = {'splits': origin, 'task': 'lm', 'truncated': {r: examples[r].num_truncated for r in examples},
            'examples': {r: len(examples[r]) for r in examples},
            'packing': {'rows': len(built['train']), 'fill': round(float(built['train'].lengths.sum())
                                                                   / (len(built['train']) * length), 4)},
            'vocab_size': int(tok.tokenizer.get_vocab_size(with_added_tokens=True)), 'pad_id': int(pad),
            'eos_id': int(eos), 'max_new_tokens': new_tokens, 'label_tokens': label_tokens}
  return built, report


def _label_completion(tok, sft_config, completion: str, eos: int, n: int) -> list[int]:
  """The token ids a generation of class `completion` starts with (before its end-of-sequence token), -1 padded to
  n slots: a generation is of the class whose tokens it starts with, whatever follows (an instruct model that has not
  learnt to stop after the label still gets it right)."""
  example = sft.tokenize(['x'], [completion], [0], tok, sft_config, max_length=10 ** 6, where='label set')
  ids = [int(i) for i in sft.until_eos(example.references[0], eos, n) if i >= 0 and i != eos]
  return ids + [-1] * (n - len(ids))


def from_jsonl(dc) -> tuple[dict, tuple[str, ...], dict]:
  """(sources, class names, report) of data.source 'sft'."""
  records = _jsonl_roles(dc)
  names = tuple(dc.text.label_names)
  pairs = {role: ([p for p, _, _ in recs], [c for _, c, _ in recs], _label_ids(recs, names, role))
           for role, recs in records.items()}
  first = {}
  for (_, completion, _), label in zip(records['train'], pairs['train'][2]):
    first.setdefault(label, completion)
  built, report = build(pairs, [first.get(i, ' ' + n) for i, n in enumerate(names)], dc, {r: r for r in records})
  return built, names, {'dataset': f'SFT JSONL at {dc.path}', **report}


def from_text(columns: dict[str, dict], class_names: tuple[str, ...], dc, origin: dict) -> tuple[dict, dict]:
  """(sources, report) of a labelled text dataset turned into SFT by data.sft's templates."""
  pairs = {}
  for role, cols in columns.items():
    prompts, completions = sft.templated(cols['text'], cols['label'], class_names, dc.sft, cols.get('text_pair'))
    pairs[role] = (prompts, completions, np.asarray(cols['label'], np.int32))
  return build(pairs, [dc.sft.completion.format(label=name) for name in class_names], dc, origin)
