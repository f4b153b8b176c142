"""The pure steps: `train_step(state, batch, *, model, task, tx, frozen, ...)` and `eval_step(state, batch, *, model,
task)` are functions of (state, batch) with no globals; `bind(plan)` binds a planned run's static parts with
functools.partial, and the steppers (ftlab/steppers/) compile them once per static key. The hyperparameters a sweep
varies without changing shapes are read from the state (see ftlab/traced.py), so changing them does not recompile.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from ftlab import metrics as metrics_lib, rec_task, tasks, traced
from ftlab.optim import builder
from ftlab.state import TrainState


def _apply(model, state: TrainState, params, inputs, *, train: bool, rng=None, model_state=None):
  """(logits, new model_state) for a batch's model inputs; model_state (default: the state's) is updated only in
  training."""
  model_state = state.model_state if model_state is None else model_state
  variables = {'params': params, **model_state}
  kwargs = {**{k: state.hparams[k] for k in traced.DROPOUT_RATES}, **_lora_values(state), 'train': train}
  if train and model_state:
    logits, new_state = model.apply(variables, inputs, rngs={'dropout': rng}, mutable=list(model_state), **kwargs)
    return logits, dict(new_state)
  rngs = {'dropout': rng} if train else {}
  return model.apply(variables, inputs, rngs=rngs, **kwargs), model_state


def _lora_values(state: TrainState) -> dict:
  """The adapters' traced scale and dropout (traced.LORA), for an adapted model's apply; {} with LoRA off."""
  return {k: state.hparams[k] for k in traced.LORA if k in state.hparams}


def micro_batches(batch: dict, k: int) -> dict:
  """[B, ...] -> [k, B/k, ...] with micro-batch j = rows j, j+k, j+2k, ...: strided, so that with the batch sharded
  over devices every micro-batch still spans all of them."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1), batch)


def accumulated_gradients(model, task: tasks.Task, state: TrainState, batch: dict, rng, accum_steps: int,
                          axis_name=None, fixed=None):
  """Gradients of the weighted mean loss over `batch` (see Task.losses_and_weights), computed in `accum_steps`
  sequential micro-batches.

  Each micro-batch contributes the gradient of its weighted loss *sum*; the total is divided by the whole batch's
  weight, so K micro-batches give the gradient of one batch K times larger (up to float summation order).
  With `axis_name` (a per-device program, parallel.Layout 'pmap') `batch` is this device's rows of the global
  batch: the weighted sums and the weight are summed over the devices before the division, so every device gets
  the gradient of the global batch's weighted mean loss, as one device would (a per-device mean, averaged, would
  weigh devices with more padding or heavier classes wrongly).
  `fixed`: a static tree of bools over the parameters, True where one is frozen for the whole run: those are not
  differentiated (their gradients are zeros), so a vmapped group that holds them once never computes them per trial.
  Returns (grads, per-prediction losses [B] or [B, L], logits, new model_state), the last three of these rows.
  """
  free, with_free = _partition(state.params, fixed)

  def micro(carry, xs):
    grads, total_weight, model_state = carry
    mb, j = xs

    def loss_sum(free_params):
      logits, new_state = _apply(model, state, with_free(free_params), task.inputs(mb), train=True,
                                 rng=jax.random.fold_in(rng, j), model_state=model_state)
      losses, weights = task.losses_and_weights(logits, mb, label_smoothing=state.hparams['label_smoothing'],
                                                class_weights=state.hparams['class_weights'])
      return jnp.sum(weights * losses), (losses, logits, new_state, jnp.sum(weights))

    (_, (losses, logits, new_state, weight)), g = jax.value_and_grad(loss_sum, has_aux=True)(free)
    carry = (jax.tree.map(jnp.add, grads, g), total_weight + weight, new_state)
    return carry, (losses, logits)

  zeros = jax.tree.map(jnp.zeros_like, free)
  if accum_steps == 1:  # no loop: XLA:CPU runs convolutions inside a while loop many times slower (15x, ResNets)
    (grads, total_weight, model_state), (losses, logits) = micro((zeros, jnp.zeros(()), state.model_state),
                                                                 (batch, jnp.int32(0)))
  else:
    (grads, total_weight, model_state), (losses, logits) = jax.lax.scan(
        micro, (zeros, jnp.zeros(()), state.model_state), (micro_batches(batch, accum_steps), jnp.arange(accum_steps)))
    unstack = lambda x: x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])  # back to the batch's row order
    losses, logits = unstack(losses), unstack(logits)
  if axis_name is not None:
    grads, total_weight = jax.lax.psum((grads, total_weight), axis_name)
  total_weight = jnp.maximum(total_weight, jnp.finfo(jnp.float32).tiny)  # a batch of padding only: zero gradients
  grads = with_free(jax.tree.map(lambda g: g / total_weight, grads), fill=jnp.zeros_like)
  return grads, losses, logits, model_state


def _partition(params, fixed):
  """(the leaves of `params` not `fixed`, as a list; with_free(leaves, fill=None) -> the whole tree again, the fixed
  leaves from `params`, or fill(leaf) of them)."""
  leaves, treedef = jax.tree.flatten(params)
  flags = [False] * len(leaves) if fixed is None else treedef.flatten_up_to(fixed)

  def with_free(free_leaves, fill=None):
    it = iter(free_leaves)
    return treedef.unflatten([(x if fill is None else fill(x)) if f else next(it) for x, f in zip(leaves, flags)])
  return [x for x, f in zip(leaves, flags) if not f], with_free


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
  fixed = jax.tree.map(lambda f: f.always, frozen['params'])
  grads, losses, logits, model_state = accumulated_gradients(model, task, state, batch, rng, accum_steps,
                                                             axis_name=axis_name, fixed=fixed)
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
    params, opt_state, model_state = jax.tree.map(  # a leaf frozen throughout is its old self: kept as it is
        lambda new, old: old if new is old else jnp.where(bad == 0, new, old),
        (params, opt_state, model_state), (state.params, state.opt_state, state.model_state))
    metrics = metrics.replace(loss=metrics.loss.replace(total=jnp.where(bad == 0, metrics.loss.total, jnp.nan)))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
  return new_state, metrics


def _decoder_apply(model, state: TrainState):
  """A decoder's forward under the state's variables: (inputs, cache=None, **options) -> logits (and the cache)."""
  variables = {'params': state.params, **state.model_state}
  return lambda inputs, cache=None, **kw: model.apply(variables, inputs, cache=cache, **_lora_values(state), **kw)


def eval_step(state: TrainState, batch: dict, *, model, task: tasks.Task, axis_name=None):
  """(metrics, predictions) of one padded evaluation batch, from one forward pass: the metrics count no row with
  mask 0 (loss without label smoothing); the predictions are predict_step's, per row, padding rows included (the
  loop fetches them only where it writes predictions.jsonl). `axis_name`: as in train_step, `batch` is this device's
  rows and the metrics are those of every device's rows (summed, collected detections gathered); the predictions
  stay this device's rows."""
  if task.kind == 'lm':  # a decoder is also evaluated by what it generates from the batch's prompts
    metrics, generated = task.evaluate(_decoder_apply(model, state), batch)
    predicted = None if generated is None else task.predictions_of(generated, batch)
  else:
    logits, _ = _apply(model, state, state.params, task.inputs(batch), train=False)
    metrics, predicted = task.eval_metrics(logits=logits, batch=batch), _predicted(task, logits, batch)
  return (metrics if axis_name is None else metrics_lib.over_devices(metrics, axis_name)), predicted


def predict_step(state: TrainState, batch: dict, *, model, task: tasks.Task):
  """What the model predicts for a batch: class probabilities [B, C] (per token for tags, [B, L, C]); for
  segmentation the predicted class of each pixel [B, H, W]; for detection the top detections (boxes, scores,
  labels); for a decoder its greedy generations, judged (LMTask.predictions)."""
  if task.kind == 'lm':
    return task.predictions(_decoder_apply(model, state), batch)
  logits, _ = _apply(model, state, state.params, task.inputs(batch), train=False)
  return _predicted(task, logits, batch)


def _predicted(task: tasks.Task, logits, batch: dict):
  if task.kind in rec_task.KINDS:  # the clipped rating; the top items of full ranking
    return task.predicted(logits, batch)
  if task.kind == 'segment':
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if task.kind == 'detect':
    return task.detections(logits, batch)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def bind(plan):
  """(train step, eval step) of a planned run: the pure steps with its static parts bound, not yet compiled."""
  train_config = plan.config.train
  skip = train_config.skip_nonfinite > 0
  train_fn = functools.partial(train_step, model=plan.model, task=plan.task, tx=plan.tx, frozen=plan.frozen,
                               accum_steps=train_config.grad_accum_steps, skip_nonfinite=skip)
  return train_fn, functools.partial(eval_step, model=plan.model, task=plan.task)
