"""A lower bound of the memory a run's steps need, checked before any compute (ftlab/plan.py): a training batch's
model inputs, the parameters with their gradients and the optimizer's state, and an evaluation batch's inputs
beside the parameters. Activations come on top, so a run refused here could never fit; one let through may still
not (XLA or the kernel then says so).

The memory is the first device's where jax reports a limit (a GPU's or TPU's, per device: the batch is split over
the devices), else this machine's RAM, which the CPU devices share.
"""
from __future__ import annotations

import jax
import numpy as np
import psutil


def problems(config, task, splits, variables, tx) -> list[str]:
  """What does not fit: one message per batch size (training, evaluation) whose lower bound exceeds the memory."""
  limit, where, shared = capacity()  # shared: CPU devices, one memory holding a replicated state per device
  devices = jax.local_device_count()  # this process's: the batch rows and the state copies it holds
  fsdp = config.parallel.fsdp

  def in_memory(total: float) -> float:  # of the replicated (or FSDP-split) state, what the memory holds
    if shared:
      return total if fsdp else total * devices
    return total / devices if fsdp else total

  per_example = _bytes(task.example_input(splits.train))
  weights = _bytes(variables)
  state = weights + _bytes(variables.get('params', {})) + _bytes(jax.eval_shape(tx.init, variables.get('params', {})))
  out = []
  for key, batch_size, held, what in (
      ('train.batch_size', config.train.batch_size, in_memory(state),
       'the parameters with their gradients and optimizer state'),
      ('eval.batch_size', config.eval.batch_size, in_memory(weights), 'the parameters')):
    inputs = per_example * batch_size / jax.process_count() / (1 if shared else devices)
    if inputs + held > limit:
      out.append(f'{key}: a step needs at least {_size(inputs + held)} (the inputs of {batch_size:,} examples '
                 f'{_size(inputs)}, {what} {_size(held)}), more than {where} ({_size(limit)}); lower {key}')
  return out


def capacity() -> tuple[int, str, bool]:
  """(bytes, what they are, whether every device shares them): the first device's memory limit where jax reports
  one, else this machine's RAM."""
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'the memory of one {device.device_kind}', False
  return psutil.virtual_memory().total, "this machine's memory", True


def _bytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
             if hasattr(x, 'shape') and hasattr(x, 'dtype') and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def _size(n: float) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'):
    if n < 1024 or unit == 'PiB':
      return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
    n /= 1024
  return ''
