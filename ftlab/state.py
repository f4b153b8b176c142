"""The training state: everything that changes during training, as one plain pytree (checkpointed, sharded and
vmapped as a whole), with the traced hyperparameters (ftlab/traced.py) inside it."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftlab import traced
from ftlab.optim import builder


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  model_state: Any  # mutable collections other than params (batch_stats), {} when the model has none
  hparams: dict  # the traced hyperparameters of traced.IN_STATE: dropout rates, label_smoothing, class_weights [C]


def create_state(params, model_state, tx: optax.GradientTransformation, *, rng, hparams: dict) -> TrainState:
  """The state at step 0; `hparams` holds a value for each name of traced.IN_STATE (of traced.LORA with LoRA on)."""
  values = {k: jnp.asarray(hparams[k], jnp.float32) for k in traced.IN_STATE if k in hparams}
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), rng=rng,
                    model_state=model_state, hparams=values)


def hyperparams(state: TrainState) -> dict:
  """The named traced hyperparameters of `state` (traced.OPTIMIZER and traced.IN_STATE) as Python floats
  (class_weights as a list). The optimizer state also holds the schedules' numbers and, with traced freezing,
  `trained`: builder.hyperparams(state.opt_state) has them all."""
  opt = builder.hyperparams(state.opt_state)
  values = {**{k: opt[k] for k in traced.OPTIMIZER}, **state.hparams}
  return {k: np.asarray(v).tolist() for k, v in values.items()}


def set_hyperparams(state: TrainState, **values) -> TrainState:
  """`state` with new traced hyperparameter values (kept at their dtypes and shapes, so the compiled step is
  reused). A schedule's numbers come from builder.schedule_values(config.schedule, ...)."""
  in_state = {k: jnp.asarray(v, state.hparams[k].dtype) for k, v in values.items() if k in traced.IN_STATE}
  opt = {k: v for k, v in values.items() if k not in traced.IN_STATE}
  opt_state = builder.set_hyperparams(state.opt_state, **opt) if opt else state.opt_state
  return state.replace(opt_state=opt_state, hparams={**state.hparams, **in_state})
