"""Devices: a one-axis data-parallel mesh over all devices; batches sharded on it, state replicated.

The scale issue extends this with FSDP, pmap and multi-host initialisation.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def data_mesh() -> Mesh:
  """All devices of all processes on one 'data' axis."""
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Places a host batch (this process's share) on the mesh, split along the leading axis."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate(tree, mesh: Mesh):
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))
