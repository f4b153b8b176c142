"""ViT gradients on this machine's default device: the parameters' (a train step's backward) and the input's
(integrated gradients' attributions, ftlab.explain), by variant and image size. Run by hand, from two checkouts to
compare them:

    python benchmarks/vit_gradients.py [--variants s/16@224,nano/8@64] [--batch 8] [--repeats 5]

Prints milliseconds per call of each jitted gradient (compiled first, then the mean of --repeats calls).
"""
import argparse
import time

import jax
import jax.numpy as jnp

from ftlab.models import vit

RATES = {'dropout_rate': 0.0, 'attention_dropout_rate': 0.0, 'train': False}


def _ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats * 1000


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--variants', default='s/16@224,nano/8@64')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  print(f'devices: {jax.device_count()} x {jax.devices()[0].platform}; jax {jax.__version__}')
  print(f'{"variant":>12} {"batch":>6} {"params grad ms":>15} {"input grad ms":>14}')
  for spec in args.variants.split(','):
    variant, _, size = spec.partition('@')
    model = vit.vit(variant)
    x = jax.random.normal(jax.random.key(0), (args.batch, int(size), int(size), 3))
    variables = model.init(jax.random.key(1), x, **RATES)
    loss = lambda v, x: jnp.sum(model.apply(v, x, **RATES) ** 2)
    params_grad = _ms(jax.jit(jax.grad(loss)), variables, x, repeats=args.repeats)
    input_grad = _ms(jax.jit(jax.grad(loss, argnums=1)), variables, x, repeats=args.repeats)
    print(f'{variant:>12} {args.batch:>6} {params_grad:>15.1f} {input_grad:>14.1f}')


if __name__ == '__main__':
  main()
