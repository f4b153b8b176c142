"""Devices: how a run's state and batches lie on them, how its steps run there, and multi-host start-up.

Every device of every process is on one mesh axis, 'data'. `Layout.of(config.parallel)` picks one of:

- 'jit' (default): one program over the global batch, split on the data axis; jax.jit partitions it. The state is
  replicated, or with `fsdp` each large leaf of it (parameters, optimizer moments, batch statistics) is split over
  the same axis along its largest dimension that divides by the device count (ZeRO-3 / FSDP: per-device memory for
  the state falls by the device count; XLA gathers a parameter where a computation needs it whole).
- 'pmap': a per-device program with explicit collectives, as jax.pmap runs it: the batch is laid out
  [devices, B / devices, ...], every device steps on its rows, and the gradients (with the total loss weight that
  normalises them), the metrics and the batch statistics are summed or averaged over devices with psum / pmean.

Both give the same parameters up to float summation order, with two documented exceptions of 'pmap': dropout masks
are drawn per device (independent, but not the global batch's masks), and batch norm normalises over each
device's rows (its running statistics are averaged over devices). The state the loop sees is the same unreplicated
pytree in both modes, so checkpoints are interchangeable and a run may switch modes between resumes.

Why 'pmap' is not literally jax.pmap: in jax 0.10 jax.pmap *is* jit(shard_map(f)) with the mapped axis squeezed
(jax/_src/pmap.py). ftlab's steps are jitted (ftlab/steppers/), and jit(jax.pmap(f)) fails across processes (pmap
converts host-local to global arrays itself and cannot under an outer trace); shard_map under jit works in one
process and many, so this module builds that program directly, with pmap's in_axes=(None, 0), out_axes=None.

Multi-host: `initialize(config.parallel.distributed)` calls jax.distributed.initialize before anything touches the
devices. Each process then feeds its rows of every global batch (ftlab.data.pipeline reads only those) and
`make_array_from_process_local_data` assembles the global array.
"""
from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
MODES = ('jit', 'pmap')


def data_mesh() -> Mesh:
  """All devices of all processes on one 'data' axis, process by process: each process's rows of a batch are then
  one contiguous block, the block ftlab.data.pipeline gives it (block i for process i)."""
  return Mesh(np.array(sorted(jax.devices(), key=lambda d: d.process_index)), (DATA_AXIS,))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Places a host batch (this process's share) on the mesh, split along the leading axis."""
  return _place_rows(batch, NamedSharding(mesh, P(DATA_AXIS)))


def replicate(tree, mesh: Mesh):
  """Places a pytree on every device of the mesh."""
  return place(tree, lambda _: NamedSharding(mesh, P()))


def fsdp_spec(shape: tuple[int, ...], num_devices: int, min_size: int) -> P:
  """The PartitionSpec of one state leaf under FSDP: split along its largest dimension that divides by
  `num_devices` (the first such on ties), or replicated when it has fewer than `min_size` elements or no such
  dimension. A function of the shape alone, so a parameter and its optimizer moments always split alike."""
  if num_devices <= 1 or not shape or math.prod(shape) < min_size:
    return P()
  dims = [i for i, n in enumerate(shape) if n % num_devices == 0]
  if not dims:
    return P()
  axis = max(dims, key=lambda i: (shape[i], -i))
  return P(*([None] * axis), DATA_AXIS)


def place(tree, sharding_of):
  """`tree` with each leaf placed with `sharding_of(leaf)` (a Sharding).

  With several processes each one builds its addressable shards from its own host copy (every process holds the
  same state: it is initialised from the seed or restored from the same checkpoint), instead of device_put's check
  that the value agrees across processes, a collective per leaf.
  """
  def one(x):
    sharding = sharding_of(x)
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
      return jax.device_put(x, sharding)  # one process, or already a global array: jax moves or reshards it
    if _is_key(x):
      return jax.random.wrap_key_data(_from_host(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    return _from_host(x, sharding)
  return jax.tree.map(one, tree)


def _from_host(x, sharding):
  host = np.asarray(jax.device_get(x))
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _is_key(x) -> bool:
  return hasattr(x, 'dtype') and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place_rows(batch: dict, sharding: NamedSharding) -> dict:
  """A global array per field from this process's rows (its contiguous block of the leading axis)."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a run's state and batches live and how its steps run on them (see the module docstring)."""
  mesh: Mesh
  mode: str = 'jit'
  fsdp: bool = False
  fsdp_min_size: int = 2 ** 14

  @classmethod
  def of(cls, parallel_config=None) -> Layout:
    """The layout config.parallel asks for, over all devices (None: plain data parallelism)."""
    if parallel_config is None:
      return cls(data_mesh())
    return cls(data_mesh(), mode=parallel_config.mode, fsdp=bool(parallel_config.fsdp),
               fsdp_min_size=int(parallel_config.fsdp_min_size))

  @property
  def num_devices(self) -> int:
    return self.mesh.devices.size

  def state_spec(self, x) -> P:
    """The PartitionSpec of one leaf of the training state."""
    if not self.fsdp or _is_key(x):
      return P()
    return fsdp_spec(tuple(x.shape), self.num_devices, self.fsdp_min_size)

  def place_state(self, state):
    """The training state (an unreplicated pytree, as initialised or restored) on the devices: replicated, or
    split by FSDP."""
    return place(state, lambda x: NamedSharding(self.mesh, self.state_spec(x)))

  def place_batch(self, batch: dict) -> dict:
    """This process's rows of a global batch, on the devices: split along the batch axis ('jit'), or reshaped to
    [devices, rows per device, ...] ('pmap'; this process's devices, whose blocks are contiguous)."""
    if self.mode == 'pmap':
      local = jax.local_device_count()
      batch = jax.tree.map(lambda x: x.reshape((local, x.shape[0] // local) + x.shape[1:]), batch)
    return _place_rows(batch, NamedSharding(self.mesh, P(DATA_AXIS)))

  def wrap_steps(self, train_fn, eval_fn):
    """(train step, eval step) for this layout from partials of steps.train_step / steps.eval_step, for jax.jit.

    'jit': the step's outputs are constrained to the state's own shardings (FSDP leaves stay split, everything
    else replicated), so the jitted step hands back a state laid out as it took it. 'pmap': the per-device
    program, with the collectives on DATA_AXIS (train_step and eval_step take it as `axis_name`).
    """
    if self.mode == 'pmap':
      per_device = lambda fn, out_specs=P(): jax.shard_map(
          lambda state, batch: fn(state, jax.tree.map(lambda x: x[0], batch), axis_name=DATA_AXIS),
          mesh=self.mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=out_specs, check_vma=False)
      rows = lambda state, batch, axis_name: _rows_first(eval_fn(state, batch, axis_name=axis_name))
      return per_device(train_fn), per_device(rows, out_specs=(P(), P(DATA_AXIS)))

    def constrain(tree, spec_of):
      return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec_of(x))),
                          tree)

    def train_step(state, batch):
      new_state, metrics = train_fn(state, batch)
      return constrain(new_state, self.state_spec), constrain(metrics, lambda _: P())

    def eval_step(state, batch):
      metrics, predicted = eval_fn(state, batch)
      return constrain(metrics, lambda _: P()), predicted

    return train_step, eval_step


def _rows_first(outputs):
  """A per-device eval step's (metrics, predictions) with a leading device axis on the predictions, which the
  program's out_specs concatenate into [devices, rows per device, ...] (see Layout.place_batch)."""
  metrics, predicted = outputs
  return metrics, jax.tree.map(lambda x: x[None], predicted)


def distributed_arguments(distributed, environ=None) -> dict | None:
  """jax.distributed.initialize's arguments from config.parallel.distributed, or None when it is off.

  Each of coordinator_address / num_processes / process_id / local_device_ids comes from the config key if set,
  else from the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, JAX_LOCAL_DEVICE_IDS),
  else stays None for jax's cluster detection (Cloud TPU VMs, SLURM, Open MPI, Kubernetes) to fill in.
  """
  if not distributed.enabled:
    return None
  env = os.environ if environ is None else environ
  number = lambda name: int(env[name]) if env.get(name, '').strip() else None
  ids = list(distributed.local_device_ids) or [int(i) for i in env.get('JAX_LOCAL_DEVICE_IDS', '').split(',') if i]
  return {'coordinator_address': distributed.coordinator_address or env.get('JAX_COORDINATOR_ADDRESS') or None,
          'num_processes': distributed.num_processes or number('JAX_NUM_PROCESSES'),
          'process_id': distributed.process_id if distributed.process_id >= 0 else number('JAX_PROCESS_ID'),
          'local_device_ids': ids or None,
          'initialization_timeout': distributed.initialization_timeout}


def initialize(distributed) -> bool:
  """Joins this process to a multi-host run when config.parallel.distributed.enabled (see distributed_arguments);
  returns whether it did. Must run before anything touches jax's devices; a second call in the same process (a
  sweep's next trial) is a no-op. Raises ValueError, naming the keys to set, when jax cannot start."""
  arguments = distributed_arguments(distributed)
  if arguments is None:
    return False
  if jax.distributed.is_initialized():
    return True
  try:
    jax.distributed.initialize(**arguments)
  except ValueError as err:  # something unset, and no cluster detected to fill it in
    raise ValueError(
        f'parallel.distributed.enabled: {err} No cluster was detected (Cloud TPU VM, SLURM, Open MPI, Kubernetes) '
        'to fill it in; set parallel.distributed.coordinator_address (host:port of process 0), num_processes and '
        'process_id, or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID'
    ) from err
  except RuntimeError as err:  # jax already in use in this process, or the processes could not meet
    raise ValueError(
        f'parallel.distributed.enabled: jax.distributed.initialize failed: {err}. Start ftlab in a fresh process '
        '(python -m ftlab.main), start every process within parallel.distributed.initialization_timeout, and check '
        'that process 0 can listen on the port of parallel.distributed.coordinator_address'
    ) from err
  return True
