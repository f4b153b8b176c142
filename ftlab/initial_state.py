"""A planned run's state at step 0: fresh variables from the seed, then the pretrained weights (model.pretrained)
or an earlier run's best parameters (init.checkpoint, init.pretrain), then the LoRA adapters, then the optimizer
state and the traced hyperparameters."""
from __future__ import annotations

import functools
import os

import jax

from ftlab import compiled, rec_task, writers
from ftlab.models import lora as lora_lib
from ftlab.plan import Plan, init_variables
from ftlab.pretrained import load as pretrained_lib
from ftlab.pretrained import surgery
from ftlab.state import TrainState, create_state


def initial_state(plan: Plan, *, load_pretrained: bool = True) -> TrainState:
  """The state at step 0, with its pretrained weights unless `load_pretrained` is False (a resumed run restores its
  own). Writes import_report.json when it imports model.pretrained."""
  config = plan.config
  init_rng, state_rng = jax.random.split(jax.random.key(config.seed))
  init = compiled.cached(('init', repr(plan.model)), lambda: jax.jit(functools.partial(init_variables, plan.model)))
  variables = init(plan.task.example_input(plan.splits.train), init_rng)
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  if plan.init_from and load_pretrained:
    params = surgery.load_run_params(plan.init_from, params, reinit=config.init.reinit)
  elif (config.init.towers.gmf or config.init.towers.mlp) and load_pretrained:
    from ftlab.pretrained import towers  # NeuMF joined from its two towers pretrained alone
    params, summary = towers.initialised(config, params)
    print(summary, flush=True)
  elif config.model.pretrained and load_pretrained and plan.task.kind in rec_task.KINDS:
    from ftlab.pretrained import item_text  # a recommender's text encoder initialises its item tables
    params, summary = item_text.initialised(config, plan.splits.train.catalogue, params)
    print(summary, flush=True)
  elif config.model.pretrained and load_pretrained:
    imported = pretrained_lib.import_pretrained(config.model, params, model_state, reinit=config.init.reinit)
    params, model_state = imported.params, imported.model_state
    if jax.process_index() == 0:
      print(imported.summary(pretrained_lib.describe_source(config.model)), flush=True)
      os.makedirs(plan.workdir, exist_ok=True)
      writers.write_json_atomic(os.path.join(plan.workdir, 'import_report.json'), imported.report)
  if lora_lib.Spec.of(config.lora):
    params = lora_lib.add_adapters(params, config.lora, jax.random.fold_in(init_rng, 1))
  return create_state(params, model_state, plan.tx, rng=state_rng, hparams=plan.hparams)
