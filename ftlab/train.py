"""The engine: TrainState, pure train_step/eval_step, and the loop of one run (`plan` then `execute`).

`train_step(state, batch, *, model, frozen)` and `eval_step(state, batch, *, model, num_classes)` are pure
functions of (state, batch); the loop binds the static parts with functools.partial and jits each once. The
hyperparameters a sweep varies without changing shapes are traced values in the state: the learning rate and
weight decay in the optimizer state (optax.inject_hyperparams), the dropout rate and label smoothing in
`state.hparams`. Changing them does not recompile.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from ftlab import checkpoints as ckpt_lib
from ftlab import config as config_lib
from ftlab import data as data_lib
from ftlab import metrics as metrics_lib
from ftlab import faults, models, parallel, preemption, step_cache, tasks, writers
from ftlab.models import lora as lora_lib
from ftlab.optim import builder, groups, schedules
from ftlab.optim import plan as optim_plan
from ftlab.pretrained import load as pretrained_lib
from ftlab.pretrained import surgery

DROPOUT_RATES = ('dropout_rate', 'attention_dropout_rate', 'head_dropout_rate')
LOOP_HPARAMS = DROPOUT_RATES + ('label_smoothing', 'class_weights')


class Diverged(RuntimeError):
  """The training loss became NaN or Inf: raised at the first such step, before anything of it is saved."""

  def __init__(self, step: int, loss: float, workdir: str, last_good: int | None, in_a_row: int = 0):
    self.step, self.loss, self.last_good = step, loss, last_good
    where = (f'the last good checkpoint is step {last_good} in {workdir}/checkpoints' if last_good is not None
             else 'no checkpoint was saved before it')
    skipped = f' (after skipping {in_a_row} non-finite steps in a row, train.skip_nonfinite)' if in_a_row else ''
    super().__init__(f'training diverged: the loss is {loss} at step {step}{skipped}; {where}. Lower '
                     'optimizer.learning_rate, set optimizer.grad_clip_norm, or add schedule.warmup, then rerun in a '
                     'new workdir')


class Stop(Exception):
  """Raised by an `on_eval` callback to end a run after an evaluation (a pruned sweep trial); `step` is where."""

  def __init__(self, step: int, reason: str):
    self.step, self.reason = step, reason
    super().__init__(f'stopped at step {step}: {reason}')


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training. A plain pytree: checkpointed, sharded and vmapped as one."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  model_state: Any  # mutable collections other than params (batch_stats), {} when the model has none
  hparams: dict  # traced loop hyperparameters: the dropout rates, label_smoothing, class_weights [C]


def create_state(params, model_state, tx: optax.GradientTransformation, *, rng, dropout: dict, label_smoothing,
                 class_weights) -> TrainState:
  """`dropout` holds the DROPOUT_RATES by name."""
  hparams = {**{k: jnp.float32(dropout[k]) for k in DROPOUT_RATES}, 'label_smoothing': jnp.float32(label_smoothing),
             'class_weights': jnp.asarray(class_weights, jnp.float32)}
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), rng=rng,
                    model_state=model_state, hparams=hparams)


def hyperparams(state: TrainState) -> dict:
  """The named traced hyperparameters of `state` (learning_rate, weight_decay and LOOP_HPARAMS) as Python floats
  (class_weights as a list). The optimizer state also holds the schedules' numbers and, with traced freezing,
  `trained`: builder.hyperparams(state.opt_state) has them all."""
  opt = builder.hyperparams(state.opt_state)
  values = {**{k: opt[k] for k in builder.TRACED}, **state.hparams}
  return {k: np.asarray(v).tolist() for k, v in values.items()}


def set_hyperparams(state: TrainState, **values) -> TrainState:
  """`state` with new traced hyperparameter values (kept at their dtypes and shapes, so the compiled step is
  reused). A schedule's numbers come from builder.schedule_values(config.schedule, ...)."""
  loop = {k: jnp.asarray(v, state.hparams[k].dtype) for k, v in values.items() if k in LOOP_HPARAMS}
  opt = {k: v for k, v in values.items() if k not in LOOP_HPARAMS}
  opt_state = builder.set_hyperparams(state.opt_state, **opt) if opt else state.opt_state
  return state.replace(opt_state=opt_state, hparams={**state.hparams, **loop})


def _apply(model, state: TrainState, params, inputs, *, train: bool, rng=None, model_state=None):
  """(logits, new model_state) for a batch's model inputs; model_state (default: the state's) is updated only in
  training."""
  model_state = state.model_state if model_state is None else model_state
  variables = {'params': params, **model_state}
  kwargs = {**{k: state.hparams[k] for k in DROPOUT_RATES}, 'train': train}
  if train and model_state:
    logits, new_state = model.apply(variables, inputs, rngs={'dropout': rng}, mutable=list(model_state), **kwargs)
    return logits, dict(new_state)
  rngs = {'dropout': rng} if train else {}
  return model.apply(variables, inputs, rngs=rngs, **kwargs), model_state


def micro_batches(batch: dict, k: int) -> dict:
  """[B, ...] -> [k, B/k, ...] with micro-batch j = rows j, j+k, j+2k, ...: strided, so that with the batch sharded
  over devices every micro-batch still spans all of them."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1), batch)


def accumulated_gradients(model, task: tasks.Task, state: TrainState, batch: dict, rng, accum_steps: int,
                          axis_name=None):
  """Gradients of the weighted mean loss over `batch` (see Task.losses_and_weights), computed in `accum_steps`
  sequential micro-batches.

  Each micro-batch contributes the gradient of its weighted loss *sum*; the total is divided by the whole batch's
  weight, so K micro-batches give the gradient of one batch K times larger (up to float summation order).
  With `axis_name` (a per-device program, parallel.Layout 'pmap') `batch` is this device's rows of the global
  batch: the weighted sums and the weight are summed over the devices before the division, so every device gets
  the gradient of the global batch's weighted mean loss, as one device would (a per-device mean, averaged, would
  weigh devices with more padding or heavier classes wrongly).
  Returns (grads, per-prediction losses [B] or [B, L], logits, new model_state), the last three of these rows.
  """
  def micro(carry, xs):
    grads, total_weight, model_state = carry
    mb, j = xs

    def loss_sum(params):
      logits, new_state = _apply(model, state, params, task.inputs(mb), train=True, rng=jax.random.fold_in(rng, j),
                                 model_state=model_state)
      losses, weights = task.losses_and_weights(logits, mb, label_smoothing=state.hparams['label_smoothing'],
                                                class_weights=state.hparams['class_weights'])
      return jnp.sum(weights * losses), (losses, logits, new_state, jnp.sum(weights))

    (_, (losses, logits, new_state, weight)), g = jax.value_and_grad(loss_sum, has_aux=True)(state.params)
    carry = (jax.tree.map(jnp.add, grads, g), total_weight + weight, new_state)
    return carry, (losses, logits)

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  (grads, total_weight, model_state), (losses, logits) = jax.lax.scan(
      micro, (zeros, jnp.zeros(()), state.model_state), (micro_batches(batch, accum_steps), jnp.arange(accum_steps)))
  unstack = lambda x: x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])  # back to the batch's row order
  if axis_name is not None:
    grads, total_weight = jax.lax.psum((grads, total_weight), axis_name)
  total_weight = jnp.maximum(total_weight, jnp.finfo(jnp.float32).tiny)  # a batch of padding only: zero gradients
  return jax.tree.map(lambda g: g / total_weight, grads), unstack(losses), unstack(logits), model_state


def train_step(state: TrainState, batch: dict, *, model, task: tasks.Task, tx: optax.GradientTransformation,
               frozen, accum_steps: int = 1, axis_name=None, skip_nonfinite: bool = False):
  """One optimizer step over `batch`, in `accum_steps` micro-batches. `frozen` ({'params': ..., 'model_state':
  ...}, static trees of plan.Freezing, see `frozen_masks`) marks what comes back bit-identical at this step: frozen
  parameters and their batch-norm statistics. The phase of freezing over time is computed from the traced step,
  so it never recompiles; with optimizer.traced_freezing (frozen['traced']), whether a parameter is frozen for the
  whole run is read from the optimizer state's traced `trained` too.

  `axis_name`: run as one device's program of a per-device step (parallel.Layout 'pmap') on its rows of the batch.
  Gradients and metrics are summed over the devices and batch statistics averaged, so every device returns the same
  state; each device draws its own dropout masks (folding its index into the rng), else all would drop alike.

  `skip_nonfinite` (train.skip_nonfinite > 0): when the loss, a gradient or an updated parameter holds NaN or Inf,
  the step changes nothing but the step count (parameters, optimizer state and batch statistics keep their bits)
  and its loss metric reads NaN, which is how the loop counts the skip."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  grads, losses, logits, model_state = accumulated_gradients(model, task, state, batch, rng, accum_steps,
                                                             axis_name=axis_name)
  if axis_name is not None:
    model_state = jax.tree.map(lambda x: jax.lax.pmean(x, axis_name), model_state)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  stepped = optax.apply_updates(state.params, updates)

  trained = builder.trained(state.opt_state)  # optimizer.traced_freezing: a traced 0/1 per parameter leaf
  traced = frozen.get('traced')

  def keep(mask, old, new, follows=None):  # frozen entries keep their exact bits (p + 0.0 would turn -0.0 into +0.0)
    # `follows`: per leaf, the parameter leaves (indices into `trained`) of which one must train for it to change
    masks, treedef = jax.tree.flatten(mask)
    out = []
    for j, (f, o, n) in enumerate(zip(masks, treedef.flatten_up_to(old), treedef.flatten_up_to(new))):
      if f.always:
        out.append(o)
        continue
      go = None if f.never else f.trained_at(state.step)
      if follows is not None and follows[j]:
        t = functools.reduce(jnp.logical_or, [trained[i] != 0 for i in follows[j]])
        go = t if go is None else go & t
      out.append(n if go is None else jnp.where(go, n, o))
    return jax.tree.unflatten(treedef, out)

  params = keep(frozen['params'], state.params, stepped, traced and traced['params'])
  model_state = keep(frozen['model_state'], state.model_state, model_state, traced and traced['model_state'])
  metrics = task.train_metrics(losses=losses, logits=logits, batch=batch)
  if axis_name is not None:  # every metric is a sum (totals, counts, confusion counts)
    metrics = jax.lax.psum(metrics, axis_name)
  if skip_nonfinite:
    bad = sum(jnp.sum(~jnp.isfinite(x)) for x in jax.tree.leaves(losses))
    if axis_name is not None:  # each device's losses are its own; the rest is the same on every device
      bad = jax.lax.psum(bad, axis_name)
    bad += sum(jnp.sum(~jnp.isfinite(x)) for x in jax.tree.leaves((grads, params, model_state))
               if jnp.issubdtype(x.dtype, jnp.inexact))
    params, opt_state, model_state = jax.tree.map(lambda new, old: jnp.where(bad == 0, new, old),
                                                  (params, opt_state, model_state),
                                                  (state.params, state.opt_state, state.model_state))
    metrics = metrics.replace(loss=metrics.loss.replace(total=jnp.where(bad == 0, metrics.loss.total, jnp.nan)))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, model, task: tasks.Task, axis_name=None):
  """Metrics of one padded evaluation batch; rows with mask 0 count nowhere. Loss without label smoothing.
  `axis_name`: as in train_step, `batch` is this device's rows and the metrics are summed over the devices."""
  logits, _ = _apply(model, state, state.params, task.inputs(batch), train=False)
  metrics = task.eval_metrics(logits=logits, batch=batch)
  return metrics if axis_name is None else jax.lax.psum(metrics, axis_name)


def evaluate(eval_fn, state: TrainState, source, *, batch_size: int, layout: parallel.Layout,
             limit: int | None = None) -> dict:
  """Summarised metrics of `state` over every example of `source` (or its first `limit`)."""
  total = None
  for batch in data_lib.eval_batches(source, batch_size=batch_size, limit=limit):
    m = eval_fn(state, layout.place_batch(batch))
    total = m if total is None else total.merge(m)
    faults.point('eval')
  return metrics_lib.summarize(total)


@dataclasses.dataclass
class RunPlan:
  """A validated run, before any compute: its config, data, sizes and the model's abstract parameters."""
  config: ml_collections.ConfigDict
  workdir: str
  splits: data_lib.Splits
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  model: Any
  task: tasks.Task
  init_from: str  # a run directory whose best parameters initialise this run, or ''
  resuming: bool

  def parameter_groups(self, params):
    """(labels, {label: Rule}) of the optimizer plan for `params`."""
    return optim_plan.resolve(self.config.optimizer, params, steps_per_epoch=self.steps_per_epoch,
                              total_steps=self.total_steps, lora=self.config.lora)

  def optimizer_groups(self, params):
    """(labels, {label: Rule}, trained) the optimizer is built from: the plan, with `trained` None; or with
    optimizer.traced_freezing, plan.resolve_traced_freezing's (freezing for the whole run as traced bools)."""
    if not self.config.optimizer.get('traced_freezing', False):
      return (*self.parameter_groups(params), None)
    return optim_plan.resolve_traced_freezing(self.config.optimizer, params, steps_per_epoch=self.steps_per_epoch,
                                              total_steps=self.total_steps, lora=self.config.lora)


def plan(config, workdir: str, *, init_from: str = '') -> RunPlan:
  """Checks everything that can be checked without training; raises ConfigError listing every problem.

  Nothing is written: the workdir is only read (its config.json, when resuming).
  """
  problems = config_lib.validate(config)
  if problems:
    raise config_lib.ConfigError(problems)
  m = config.model
  try:  # before the data: a wrong checkpoint path fails fast, and its folder holds the default tokenizer
    encoder = pretrained_lib.encoder_config(m)
    data_config = _with_default_tokenizer(config.data, pretrained_lib.tokenizer_folder(m))
  except surgery.SurgeryError as err:
    raise config_lib.ConfigError([str(err)]) from err
  try:
    splits = data_lib.load(data_config)
  except ValueError as err:  # DataError, and sklearn's / TFDS's value errors
    raise config_lib.ConfigError([str(err)]) from err
  takes = 'text' if m.name in models.TEXT_MODELS else 'image'
  if (splits.task == 'image') != (takes == 'image'):
    fix = "an image dataset" if takes == 'image' else "a text dataset (data.source 'text', 'conll' or a TFDS text set)"
    other = "model.name='bert'" if takes == 'image' else "an image model (mlp, cnn, vit, resnet)"
    raise config_lib.ConfigError([f'model.name={m.name!r} takes {takes}, but data.source={config.data.source!r} '
                                  f'gives {splits.task} examples; use {fix}, or {other}'])
  task = tasks.Task(splits.task, tuple(splits.class_names))
  if encoder is None and m.name == 'bert':
    encoder = (models.bert_config(m, vocab_size=splits.report['vocab_size'], pad_id=splits.report['pad_id']), 0)
  t = config.train
  if config.data.remainder == 'drop' and len(splits.train) < t.batch_size:
    raise config_lib.ConfigError([
        f'train.batch_size: {t.batch_size} is more than the {len(splits.train)} training examples, and '
        "data.remainder='drop' drops every partial batch, so no batch is left; lower train.batch_size or set "
        "data.remainder to 'spill' or 'pad'"])
  spe = data_lib.steps_per_epoch(len(splits.train), t.batch_size, config.data.remainder)
  total = t.num_steps or max(1, math.ceil(t.num_epochs * spe))
  problems = config_lib.check_run(config, num_devices=jax.device_count(), total_steps=total, steps_per_epoch=spe)
  try:
    model = models.build(m, task, bert=encoder[0] if encoder else None)
  except ValueError as err:  # a variant that names no size
    raise config_lib.ConfigError([f'model.variant: {err}']) from err
  spec = lora_lib.Spec.of(config.lora)
  model = lora_lib.Adapted(model, spec) if spec else model
  abstract = jax.eval_shape(functools.partial(_init_variables, model), task.example_input(splits.train),
                            jax.random.key(0))
  try:
    params = abstract['params']
    if spec:
      params = jax.eval_shape(functools.partial(lora_lib.add_adapters, lora_config=config.lora), params,
                              rng=jax.random.key(0))
    _, rules = optim_plan.resolve(config.optimizer, params, steps_per_epoch=spe, total_steps=total,
                                  lora=config.lora)
    for rule in rules.values():
      builder.rule_schedule(config.schedule, rule, total_steps=total, steps_per_epoch=spe)
  except (groups.GroupError, lora_lib.LoraError, ValueError) as err:
    problems += str(err).split('\n')
  metric_problem = task.check_metric(config.eval.metric)
  if metric_problem:
    problems.append(metric_problem)
  if task.kind == 'tags' and config.train.balance_classes:
    problems.append('train.balance_classes: not available for token classification; give per-tag weights in '
                    'train.class_weights')
  if m.pretrained and not init_from and 'params' in abstract:
    problems += pretrained_lib.check(m, abstract['params'], reinit=config.init.reinit)
  if init_from and os.path.exists(os.path.join(init_from, 'summary.json')) and 'params' in abstract:
    # (a source-task run of init.pretrain that has not run yet is checked when it has)
    key = 'init.checkpoint' if init_from == config.init.checkpoint else 'init.pretrain'
    problems += surgery.check_run_params(init_from, abstract['params'], reinit=config.init.reinit, key=key)
  weights = config.train.class_weights
  if weights and len(weights) != splits.num_classes:
    problems.append(f'train.class_weights: {len(weights)} weights for {splits.num_classes} classes '
                    f'({", ".join(splits.class_names)}); give one per class')
  config_path = os.path.join(workdir, 'config.json')
  resuming = os.path.exists(config_path)
  saved = _saved_config(config_path) if resuming else {}
  if isinstance(saved, str):
    problems.append(f'--workdir: {config_path} is not a readable run config ({saved}); restore it from a backup, or '
                    'use a new workdir')
  elif resuming:
    diffs = config_lib.config_differences(saved, config.to_dict())
    if diffs:
      problems.append(f'--workdir: {workdir} holds a run with a different config; use a new workdir or the same '
                      'config (only train.num_steps / train.num_epochs may change). Differences: ' + '; '.join(diffs))
  if problems:
    raise config_lib.ConfigError(problems)
  return RunPlan(config, workdir, splits, spe, total, config.eval.every_steps or spe, model, task, init_from,
                 resuming)


def _saved_config(path: str) -> dict | str:
  """A resumed workdir's config.json as a dict, or what is wrong with it."""
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (OSError, ValueError) as err:
    return f'{type(err).__name__}: {err}'
  return saved if isinstance(saved, dict) else f'a JSON {type(saved).__name__}, not an object'


def _with_default_tokenizer(data_config, folder: str):
  """config.data, with data.tokenizer.path defaulting to the pretrained checkpoint's folder (not saved: the run's
  config keeps '' and resolves it the same way again)."""
  if data_config.tokenizer.path or not folder:
    return data_config
  data_config = copy.deepcopy(data_config)
  data_config.tokenizer.path = folder
  return data_config


def _init_variables(model, example, rng):
  return model.init({'params': rng, 'dropout': rng}, example, train=False)


def initial_state(p: RunPlan, *, load_pretrained: bool = True) -> tuple[TrainState, optax.GradientTransformation,
                                                                       Any]:
  """(state at step 0, the optimizer, the static frozen mask) of a planned run, with its pretrained weights
  unless `load_pretrained` is False (a resumed run restores its own)."""
  c = p.config
  init_rng, state_rng = jax.random.split(jax.random.key(c.seed))
  variables = step_cache.jitted(('init', repr(p.model)), lambda: functools.partial(_init_variables, p.model))(
      p.task.example_input(p.splits.train), init_rng)
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  if p.init_from and load_pretrained:
    params = surgery.load_run_params(p.init_from, params, reinit=c.init.reinit)
  elif c.model.pretrained and load_pretrained:
    imported = pretrained_lib.import_pretrained(c.model, params, model_state, reinit=c.init.reinit)
    params, model_state = imported.params, imported.model_state
    if jax.process_index() == 0:
      print(imported.summary(pretrained_lib.describe_source(c.model)), flush=True)
      os.makedirs(p.workdir, exist_ok=True)
      writers.write_json_atomic(os.path.join(p.workdir, 'import_report.json'), imported.report)
  if lora_lib.Spec.of(c.lora):
    params = lora_lib.add_adapters(params, c.lora, jax.random.fold_in(init_rng, 1))
  labels, rules, trained = p.optimizer_groups(params)
  tx = builder.build(c.optimizer, c.schedule, labels, rules, total_steps=p.total_steps,
                     steps_per_epoch=p.steps_per_epoch, batch_size=c.train.batch_size, trained=trained)
  frozen = frozen_masks(labels, rules, model_state, trained=trained)
  state = create_state(params, model_state, tx, rng=state_rng, dropout={k: c.model[k] for k in DROPOUT_RATES},
                       label_smoothing=c.train.label_smoothing, class_weights=class_weights(c.train, p.splits))
  return state, tx, frozen


def frozen_masks(labels, rules, model_state, *, trained=None) -> dict:
  """Static trees of plan.Freezing: {'params': like the labels, 'model_state': like model_state}. A model-state
  entry (batch-norm statistics) freezes exactly when all parameters of its module do; otherwise it never does.

  With traced freezing (`trained` given, see plan.resolve_traced_freezing) also 'traced': for each parameter leaf
  and each model-state leaf (in tree order), the indices of the parameter leaves in the traced `trained` of which
  one must train for it to change: the leaf itself, or every parameter of the model-state entry's module."""
  modules = optim_plan.module_freezing(labels, rules)
  state_mask = lambda tree: groups.map_paths(
      lambda path: modules.get(path.rpartition('/')[0], optim_plan.Freezing()), tree)
  masks = {'params': optim_plan.freezing_tree(labels, rules),
           'model_state': {name: state_mask(tree) for name, tree in model_state.items()}}
  if trained is not None:
    of_module = {}
    for i, path in enumerate(groups.param_paths(labels)):
      of_module.setdefault(path.rpartition('/')[0], []).append(i)
    state_paths = [path.partition('/')[2] for path in groups.param_paths(model_state)]  # without the collection
    masks['traced'] = {'params': tuple((i,) for i in range(len(jax.tree.leaves(labels)))),
                       'model_state': tuple(tuple(of_module.get(p.rpartition('/')[0], ())) for p in state_paths)}
  return masks


def class_weights(train_config, splits: data_lib.Splits) -> np.ndarray:
  """Per-class loss weights: train.class_weights, or with balance_classes n / (C * count_c) as sklearn's
  'balanced' (a class absent from the training split gets weight 1), or all ones."""
  num = splits.num_classes
  if train_config.class_weights:
    return np.asarray(train_config.class_weights, np.float32)
  if not train_config.balance_classes:
    return np.ones(num, np.float32)
  counts = np.bincount(splits.train.labels, minlength=num)
  return np.where(counts > 0, len(splits.train) / (num * np.maximum(counts, 1)), 1.0).astype(np.float32)


def execute(p: RunPlan, *, on_eval=None) -> dict:
  """Trains, evaluates, checkpoints and writes the outputs of a planned run; returns summary.json's contents.

  A workdir with checkpoints resumes from the latest that reads back (checkpoints.restore_latest); a finished run
  only re-evaluates the test split. Checkpoints carry the train metrics accumulated since the last evaluation, so a
  run resumed from a checkpoint between evaluations logs the same train rows as one that never stopped. On SIGTERM
  the loop finishes its step, saves a checkpoint (outside checkpoint.keep's count, see Checkpoints.save) and raises
  preemption.Preempted.
  `on_eval(step, validation_row)` is called after each evaluation and may raise Stop (a pruned trial). The loss is
  checked one step behind the dispatch (no stall) and before every save: NaN or Inf raises Diverged (or, with
  train.skip_nonfinite, the step is skipped and counted), so no checkpoint ever holds a diverged state.
  """
  c, workdir = p.config, p.workdir
  is_writer = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_writer and not p.resuming:
    writers.write_json_atomic(os.path.join(workdir, 'config.json'), c.to_dict())
  layout = parallel.Layout.of(c.parallel)
  mode = config_lib.eval_mode(c)
  ckpts = ckpt_lib.Checkpoints(os.path.join(workdir, 'checkpoints'), keep=c.checkpoint.keep, mode=mode)
  state, tx, frozen = initial_state(p, load_pretrained=ckpts.latest_step() is None)
  if is_writer:
    describe_run(p, state.params)
  train_iter = data_lib.train_iterator(p.splits.train, batch_size=c.train.batch_size, seed=c.seed,
                                       **data_lib.stream_options(c.data))
  loop = {'best': None, 'bad_evals': 0, 'stopped_early': False}
  start, restored, saved_loop = ckpts.restore_latest(state, train_iter)
  carried = None  # the train metrics a checkpoint between evaluations holds
  nonfinite = {'skipped': 0, 'in_a_row': 0}  # steps skipped for a NaN/Inf loss (train.skip_nonfinite)
  like = None  # the last step's metrics: the structure that carried metrics take
  if start is not None:
    state, loop = restored, saved_loop
    carried = loop.pop('train_metrics', None)
    nonfinite = loop.pop('nonfinite', nonfinite)
    print(f'ftlab: resuming {workdir} from step {start}', flush=True)
  state = layout.place_state(state)
  writer = writers.MetricWriter(workdir, resume_step=start or 0, enabled=is_writer)

  schedule = schedules.build_schedule(c.schedule, total_steps=p.total_steps, steps_per_epoch=p.steps_per_epoch)
  key = step_cache.static_key(c, model=p.model, task=p.task, steps_per_epoch=p.steps_per_epoch,
                              total_steps=p.total_steps)
  step_fn, eval_fn = step_cache.steps(key, lambda: layout.wrap_steps(
      functools.partial(train_step, model=p.model, task=p.task, tx=tx, frozen=frozen,
                        accum_steps=c.train.grad_accum_steps, skip_nonfinite=c.train.skip_nonfinite > 0),
      functools.partial(eval_step, model=p.model, task=p.task)))
  run_eval = functools.partial(evaluate, eval_fn, batch_size=c.eval.batch_size, layout=layout)

  step = int(state.step)
  progress = writers.Progress(p.total_steps, step)
  train_metrics = None
  last_good = start

  def accept(at_step: int, m):
    """Checks a dispatched step's loss (a transfer of its sum, no computation dispatched), then merges its metrics
    into the train row's, or counts it as skipped (train.skip_nonfinite), or raises Diverged."""
    nonlocal train_metrics, carried, like
    like = m
    total = float(m.loss.total)
    if math.isfinite(total):
      nonfinite['in_a_row'] = 0
      if carried is not None:
        train_metrics, carried = metrics_from_json(carried, like=m), None
      train_metrics = m if train_metrics is None else train_metrics.merge(m)
      return
    if nonfinite['in_a_row'] >= c.train.skip_nonfinite:
      raise Diverged(at_step, total, workdir, last_good, in_a_row=nonfinite['in_a_row'])
    nonfinite['skipped'] += 1
    nonfinite['in_a_row'] += 1
    print(f'ftlab: step {at_step}: the loss is {total}; the step was skipped ({nonfinite["in_a_row"]} in a row, '
          f'{nonfinite["skipped"]} in all; train.skip_nonfinite={c.train.skip_nonfinite})', flush=True)

  def train_row(at_step: int) -> dict:
    peak = builder.hyperparams(state.opt_state)['learning_rate']
    row = {'learning_rate': float(peak * schedule(at_step - 1))}  # the rate the last step used
    if c.train.skip_nonfinite:
      row['skipped_steps'] = nonfinite['skipped']
    merged = train_metrics if carried is None else metrics_from_json(carried, like=like)
    if merged is None:  # every step since the last evaluation was skipped
      return row
    return {**metrics_lib.summarize(merged), **row}

  def save(at_step: int, metric_value=None, *, preempted: bool = False):
    # the train metrics since the last evaluation: merged ones, or still those a resume carried (all steps skipped)
    since = carried if train_metrics is None else metrics_to_json(train_metrics)
    ckpts.save(at_step, state, train_iter, {**loop, 'train_metrics': since, 'nonfinite': nonfinite},
               metric=metric_value, preempted=preempted)
    faults.point('save', at_step, workdir)

  t0 = time.perf_counter()
  pending = None  # (step, metrics) of the step before the one in flight
  notice = preemption.Notice().install()
  try:
    while step < p.total_steps and not loop['stopped_early']:
      batch = layout.place_batch(next(train_iter))
      state, m = step_fn(state, batch)
      if pending is not None:  # one step behind the dispatch: no stall
        accept(*pending)
      step += 1
      pending = (step, m)
      if is_writer and (step % c.train.log_every_steps == 0 or step == p.total_steps):
        print(progress.line(step, float(m.loss.compute())), flush=True)
      evaluating = step % p.eval_every == 0 or step == p.total_steps
      saving = evaluating or (c.checkpoint.every_steps and step % c.checkpoint.every_steps == 0)
      if saving:  # no checkpoint ever holds a diverged state
        accept(*pending)
        pending = None
      metric_value = None
      if evaluating:
        writer.write(step, 'train', train_row(step))
        train_metrics = carried = None
        rows = _evaluate_splits(run_eval, state, p.splits, train_subset=c.eval.train_subset)
        faults.point('evaluated', step, workdir)
        for split, row in rows.items():
          writer.write(step, split, row)
        val = rows['validation']
        metric_value = val[c.eval.metric]
        loop = _early_stopping(loop, metric_value, c.early_stopping, mode)
        if is_writer:
          print(f'  eval @ {step}: validation {c.eval.metric} {metric_value:.4f}  loss {val["loss"]:.4f}  '
                f'accuracy {val["accuracy"]:.4f}', flush=True)
      if saving:
        save(step, metric_value)
        last_good = step
      if evaluating and on_eval is not None:
        on_eval(step, rows['validation'])
      faults.point('step', step, workdir)  # tests: die here as a preempted VM does, with no chance to clean up
      if notice.requested(step) and step < p.total_steps and not loop['stopped_early']:
        if not saving:
          accept(*pending)
          save(step, preempted=True)
        ckpts.wait()
        raise preemption.Preempted(step, workdir)
    if pending is not None:
      accept(*pending)
    ckpts.wait()
  except BaseException:
    ckpts.wait()
    writer.close()
    ckpts.close()
    raise
  finally:
    notice.uninstall()
  train_seconds = time.perf_counter() - t0

  best_step = ckpts.best_step()
  if best_step == ckpts.latest_step() == step:  # the live state is the best checkpoint's (saved at its last step)
    best_state = state
  else:
    best_state, _ = ckpts.restore(best_step, state)
    best_state = layout.place_state(best_state)
  at_best = _evaluate_splits(run_eval, best_state, p.splits, train_subset=c.eval.train_subset)
  test = run_eval(best_state, p.splits.test)
  writer.write(best_step, 'test', test)
  writer.close()
  ckpts.close()
  return finish(p, best_step=best_step, final_step=step, stopped_early=loop['stopped_early'], at_best=at_best,
                test=test, best_params=best_state.params, train_seconds=train_seconds,
                skipped_steps=nonfinite['skipped'] if c.train.skip_nonfinite else None)


def metrics_to_json(collection) -> dict | None:
  """Accumulated metrics (a clu Collection) as JSON for a checkpoint's loop state: exact, leaf by leaf."""
  if collection is None:
    return None
  leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(collection))]
  return {'dtypes': [str(x.dtype) for x in leaves], 'values': [x.tolist() for x in leaves]}


def metrics_from_json(saved: dict, *, like):
  """The Collection `metrics_to_json` saved, structured like the collection `like` (a step's metrics)."""
  leaves = [np.asarray(v, dtype=d) for v, d in zip(saved['values'], saved['dtypes'])]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)


def describe_run(p: RunPlan, params, *, echo: bool = True) -> None:
  """Writes the run's optimizer_plan.txt (parameter groups, multipliers, freezing) and prints it with the data."""
  table = optim_plan.describe(*p.parameter_groups(params), params)
  if echo:
    print(f'ftlab: data {json.dumps(p.splits.report)}', flush=True)
    print(f'ftlab: optimizer plan\n{table}', flush=True)
  writers.write_text_atomic(os.path.join(p.workdir, 'optimizer_plan.txt'), table + '\n')


def finish(p: RunPlan, *, best_step: int, final_step: int, stopped_early: bool, at_best: dict, test: dict,
           best_params, train_seconds: float, skipped_steps: int | None = None) -> dict:
  """Writes a finished run's summary.json (and, with LoRA, merged_params.npz) from its evaluations at the best
  step (`at_best` as _evaluate_splits returns them); returns the summary."""
  c, workdir = p.config, p.workdir
  is_writer = jax.process_index() == 0
  best_val = at_best['validation']
  summary = {'best_step': best_step, 'final_step': final_step, 'total_steps': p.total_steps,
             'stopped_early': stopped_early, 'selection_metric': c.eval.metric,
             'selection_mode': config_lib.eval_mode(c), 'validation': best_val, 'test': test,
             'train_eval': at_best.get('train_eval'), 'train_seconds_this_session': round(train_seconds, 3),
             'num_classes': p.splits.num_classes, 'class_names': list(p.splits.class_names),
             'data': p.splits.report}
  if skipped_steps is not None:  # train.skip_nonfinite runs: the steps skipped for a NaN/Inf loss
    summary['skipped_steps'] = skipped_steps
  spec = lora_lib.Spec.of(c.lora)
  if spec and jax.process_count() > 1:  # every process takes part; sharded (FSDP) leaves become whole host arrays
    best_params = multihost_utils.process_allgather(best_params, tiled=True)
  if is_writer and spec:  # the best adapters folded into the base: a plain model for export
    merged = lora_lib.merge(jax.device_get(best_params), scale=spec.scale)
    writers.write_npz_atomic(os.path.join(workdir, 'merged_params.npz'),
                             {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(merged)[0]})
  faults.point('summary', where=workdir)
  if is_writer:
    writers.write_json_atomic(os.path.join(workdir, 'summary.json'), summary)
    print(f'ftlab: {workdir}: best validation {c.eval.metric} {best_val[c.eval.metric]:.4f} at step {best_step}; '
          f'test accuracy {test["accuracy"]:.4f}'
          + (f', test {c.eval.metric} {test[c.eval.metric]:.4f}' if c.eval.metric != 'accuracy' else ''), flush=True)
  return summary


def _evaluate_splits(run_eval, state, splits, *, train_subset: int) -> dict[str, dict]:
  """{'train_eval': ..., 'validation': ...}: the validation metrics and, when train_subset > 0, the same metrics
  on that many training examples, with the gap (train minus validation) added to the validation row."""
  val = run_eval(state, splits.validation)
  if not train_subset:
    return {'validation': val}
  train_eval = run_eval(state, splits.train, limit=train_subset)
  return {'train_eval': train_eval, 'validation': with_gap(val, train_eval)}


def with_gap(val: dict, train_eval: dict) -> dict:
  """The validation row with the overfitting gaps (train minus validation) of every metric added."""
  return {**val, **{f'gap_{k}': train_eval[k] - val[k] for k in metrics_lib.METRIC_MODES if k in val}}


def _early_stopping(loop: dict, value: float, es, mode: str) -> dict:
  """The loop state after an evaluation: best value so far, evaluations without improvement, stop flag."""
  best = loop['best']
  improved = best is None or (value > best + es.min_delta if mode == 'max' else value < best - es.min_delta)
  bad = 0 if improved else loop['bad_evals'] + 1
  return {'best': value if improved else best, 'bad_evals': bad,
          'stopped_early': bool(es.enabled and bad >= es.patience)}


def train_and_evaluate(config, workdir: str, *, init_from: str = '') -> dict:
  """plan + execute: the whole of one run."""
  return execute(plan(config, workdir, init_from=init_from))
