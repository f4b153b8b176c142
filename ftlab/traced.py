"""What a sweep may vary without recompiling: the one list of traced hyperparameters, and the static key it implies.

A traced hyperparameter is a number the compiled train step reads from the training state instead of holding as a
constant, so runs that differ only in it share one compiled step (and can be vmapped into one program). Each is
declared once, in HPARAMS: its name, where the state holds it, and the config keys its value is resolved from.
  'optimizer'  the optimizer state's injected hyperparameters (optax.inject_hyperparams; see optim/builder.py)
  'model'      TrainState.hparams, passed to the model's apply (the dropout rates)
  'loss'       TrainState.hparams, read by the task's loss (label smoothing, class weights)
  'lora'       TrainState.hparams when LoRA is on, passed to the adapted model's apply (the adapters' scale
               alpha / rank, their dropout and, with lora.max_rank set, the rank that masks the padded columns);
               the adapters' width (models/lora.width) is in the static key
The schedule's numbers (warm-up length, end factor, decay rate, boundaries...) are one entry: the builder holds them
as `schedule_<name>` (see schedules.resolve). With optimizer.traced_freezing, which parameters are frozen for the
whole run is traced too (`trained`, one 0/1 per parameter).

Besides them, some keys only set the initial state or the loop around the step (LOOP_KEYS, LOOP_SECTIONS). Every
other key, the model, the task and the run's step counts make the static key: runs with equal keys compile alike.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from ftlab import config as config_lib
from ftlab.optim import schedules


@dataclasses.dataclass(frozen=True)
class Traced:
  name: str
  home: str  # 'optimizer', 'model' or 'loss' (see the module docstring)
  keys: tuple[str, ...]  # the config keys its value is resolved from
  traced_freezing_only: bool = False  # traced only with optimizer.traced_freezing


SCHEDULE_NUMBERS = tuple(k for k in schedules.schedule_defaults() if k not in schedules.SHAPING_KEYS)

HPARAMS = (
    Traced('learning_rate', 'optimizer',
           ('optimizer.learning_rate', 'optimizer.lr_batch_scaling', 'optimizer.base_batch_size')),
    Traced('weight_decay', 'optimizer', ('optimizer.weight_decay',)),
    Traced('schedule', 'optimizer', tuple(f'schedule.{k}' for k in SCHEDULE_NUMBERS)),
    Traced('trained', 'optimizer', ('optimizer.freeze',), traced_freezing_only=True),
    Traced('dropout_rate', 'model', ('model.dropout_rate',)),
    Traced('attention_dropout_rate', 'model', ('model.attention_dropout_rate',)),
    Traced('head_dropout_rate', 'model', ('model.head_dropout_rate',)),
    Traced('label_smoothing', 'loss', ('train.label_smoothing',)),
    Traced('class_weights', 'loss', ('train.class_weights', 'train.balance_classes')),
    Traced('lora_scale', 'lora', ('lora.alpha',)),
    Traced('lora_dropout', 'lora', ('lora.dropout',)),
    Traced('lora_rank', 'lora', ('lora.rank',)),
)
OPTIMIZER = tuple(h.name for h in HPARAMS if h.home == 'optimizer' and h.name not in ('schedule', 'trained'))
DROPOUT_RATES = tuple(h.name for h in HPARAMS if h.home == 'model')
LORA = tuple(h.name for h in HPARAMS if h.home == 'lora')
IN_STATE = tuple(h.name for h in HPARAMS if h.home in ('model', 'loss', 'lora'))  # TrainState.hparams (LORA: if on)

# What only sets the initial state, the data order or the loop around the step.
# data.fold: which fold of a cross-validated split a trial reads (its data, not its step program)
LOOP_KEYS = ('seed', 'model.pretrained', 'model.download', 'train.log_every_steps', 'data.fold')
LOOP_SECTIONS = ('init.', 'eval.', 'early_stopping.', 'checkpoint.')


def state_values(config, class_counts: np.ndarray | None, num_classes: int) -> dict:
  """The values TrainState.hparams starts with: the dropout rates, label smoothing, the class weights and, with LoRA
  on, the adapters' scale and dropout."""
  values = {name: float(config.model[name]) for name in DROPOUT_RATES}
  values['label_smoothing'] = float(config.train.label_smoothing)
  values['class_weights'] = class_weights(config.train, class_counts, max(num_classes, 1))  # a decoder may have no
  # label set: one unused weight (checkpoints cannot hold empty arrays)
  if config.lora.target:
    values['lora_scale'] = config.lora.alpha / config.lora.rank
    values['lora_dropout'] = float(config.lora.dropout)
    if config.lora.max_rank:
      values['lora_rank'] = float(config.lora.rank)
  return values


def class_weights(train_config, class_counts: np.ndarray | None, num_classes: int) -> np.ndarray:
  """Per-class loss weights: train.class_weights, or with balance_classes n / (C * count_c) as sklearn's
  'balanced' (a class absent from the training split gets weight 1), or all ones. `class_counts`: the training
  split's examples per class (None where the task has no per-example label)."""
  if train_config.class_weights:
    return np.asarray(train_config.class_weights, np.float32)
  if not train_config.balance_classes or class_counts is None:
    return np.ones(num_classes, np.float32)
  n = class_counts.sum()
  return np.where(class_counts > 0, n / (num_classes * np.maximum(class_counts, 1)), 1.0).astype(np.float32)


def _unstatic(flat: dict) -> set[str]:
  traced_freezing = bool(flat.get('optimizer.traced_freezing'))
  keys = {k for h in HPARAMS if traced_freezing or not h.traced_freezing_only for k in h.keys}
  return keys | set(LOOP_KEYS) | {k for k in flat if k.startswith(LOOP_SECTIONS)}


def static_key(config, *, model, task, steps_per_epoch: int, total_steps: int) -> str:
  """What the compiled steps of a run depend on, as text: the config without its traced and loop-only keys (the
  lengths of the schedule's lists stay), the model and task (their reprs name every field) and the step counts."""
  flat = dict(config_lib.flatten(config.to_dict()))
  unstatic = _unstatic(flat)
  static = {k: v for k, v in flat.items() if k not in unstatic}
  static.update({f'len(schedule.{k})': len(flat[f'schedule.{k}']) for k in schedules.LIST_KEYS})
  static['lora width'] = max(config.lora.rank, config.lora.max_rank)  # the adapters' shape
  if 'optimizer.groups' in static:
    static['optimizer.groups'] = _static_groups(static['optimizer.groups'],
                                                traced_freezing=bool(flat.get('optimizer.traced_freezing')))
  return json.dumps([static, repr(model), repr(task), steps_per_epoch, total_steps], sort_keys=True, default=repr)


def _static_groups(value, *, traced_freezing: bool):
  """optimizer.groups without what is traced: a group's own schedule reduced to whether it has one, its shaping
  keys and list lengths; with traced freezing, without `frozen`."""
  if not isinstance(value, (list, tuple)):
    return value
  out = []
  for item in value:
    if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict)):
      out.append(item)
      continue
    pattern, settings = item
    settings = {k: v for k, v in settings.items() if not (traced_freezing and k == 'frozen')}
    sched = settings.pop('schedule', None)
    if isinstance(sched, dict) and sched:
      settings['schedule'] = {'own': True, **{k: len(v) if k in schedules.LIST_KEYS else v for k, v in sched.items()
                                              if k not in SCHEDULE_NUMBERS or k in schedules.LIST_KEYS}}
    elif sched is not None and not isinstance(sched, dict):
      settings['schedule'] = sched
    out.append([pattern, settings])
  return out
