"""A tiny byte-level BPE tokenizer with a ChatML template, SFT JSONL files and a from-scratch decoder config: what the
decoder tests train and generate with (no download, a few seconds)."""
import json
import os

from conftest import small_config

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']


def pairs(n: int = 60) -> list[dict]:
  """'add a and b' -> the sum's word (a + b < 10)."""
  out = []
  for i in range(n):
    a, b = i % 5, (i // 5) % 5
    out.append({'prompt': f'add {WORDS[a]} and {WORDS[b]}:', 'completion': f' {WORDS[a + b]}'})
  return out


def write_tokenizer(folder) -> str:
  """A byte-level BPE tokenizer (about 300 tokens) trained on the pairs' words, with ChatML's special tokens and
  template, saved as a model folder (tokenizer.json + tokenizer_config.json)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  os.makedirs(folder, exist_ok=True)
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  corpus = [p['prompt'] + p['completion'] for p in pairs()] + ['user assistant system hello']
  tok.train_from_iterator(corpus * 20, trainer)
  tok.save(os.path.join(folder, 'tokenizer.json'))
  with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
    json.dump({'eos_token': '<|im_end|>', 'bos_token': '<|im_start|>', 'chat_template': CHATML}, f)
  return str(folder)


def write_jsonl(path, records) -> str:
  with open(path, 'w') as f:
    for r in records:
      f.write(json.dumps(r) + '\n')
  return str(path)


def decoder_config(tmp_path, **overrides):
  """small_config() as a from-scratch 2-layer decoder on SFT JSONL of `pairs()` (48 train, 12 validation)."""
  data = tmp_path / 'sft'
  data.mkdir(exist_ok=True)
  records = pairs()
  write_jsonl(data / 'train.jsonl', records[:48])
  write_jsonl(data / 'validation.jsonl', records[48:])
  base = dict(model__name='decoder', model__decoder__hidden_size=32, model__decoder__num_layers=2,
              model__decoder__num_heads=4, model__decoder__num_kv_heads=2, model__decoder__intermediate_size=64,
              model__dropout_rate=0.0, data__source='sft', data__path=str(data), data__classes=[],
              data__tokenizer__path=write_tokenizer(tmp_path / 'tok'), data__tokenizer__max_length=32,
              data__validation_fraction=4, data__test_fraction=4, train__batch_size=4, eval__metric='accuracy',
              eval__train_subset=8, optimizer__learning_rate=3e-3)
  return small_config(**{**base, **overrides})
