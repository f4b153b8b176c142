"""A run resolved once: `make_plan(config, workdir)` checks everything that can be checked before any compute and
returns a typed Plan, or raises ConfigError listing every problem. Everything after planning reads the Plan, never
the raw config's meaning again: the data and its sizes, the task, the model and its initial variables' shapes, the
optimizer's rules and its optax transformation, the schedule, the freezing masks, the traced hyperparameters'
initial values and the step's static key (ftlab/traced.py).

Nothing is written: the workdir is only read (its config.json, when it holds a run already).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from ftlab import config as config_lib
from ftlab import data as data_lib
from ftlab import memory, models, rec_task, tasks, traced
from ftlab.models import lora as lora_lib
from ftlab.models import recommenders
from ftlab.optim import builder, groups, rules as rules_lib
from ftlab.pretrained import load as pretrained_lib
from ftlab.pretrained import surgery

MAX_STEPS = 2**31 - 1  # a run's length: jax counts steps in int32 (optax's schedules, the state's step)


@dataclasses.dataclass(frozen=True)
class Plan:
  config: ml_collections.ConfigDict  # validated; saved as the run's config.json
  workdir: str
  init_from: str  # a run directory whose best parameters initialise this run, or ''
  splits: data_lib.Splits
  task: tasks.Task
  model: Any  # a Flax module (LoRA-adapted when lora.target is set)
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  eval_mode: str  # 'min' or 'max' for config.eval.metric
  variables: Any  # the initial variables' shapes: {'params': ... (with LoRA adapters), other collections ...}
  labels: Any  # the optimizer's label of each parameter (see optim/rules.py)
  rules: dict  # {label: rules.Rule}
  trained: Any  # optimizer.traced_freezing: a tree of bools, True where the parameter trains; else None
  tx: optax.GradientTransformation
  schedule: Callable  # count -> the factor of the peak learning rate (config.schedule)
  frozen: dict  # the static masks train_step applies (rules.frozen_masks)
  hparams: dict  # initial values of the traced hyperparameters the TrainState holds (traced.IN_STATE)
  static_key: str  # equal keys: the same compiled steps

  def learning_rate(self, step: int) -> float:
    """The learning rate the optimizer used at `step` (counted from 0) for parameters without an own schedule."""
    peak = np.float32(builder.peak_learning_rate(self.config.optimizer, self.config.train.batch_size))
    return float(peak * np.float32(self.schedule(step)))


def init_variables(model, example, rng):
  return model.init({'params': rng, 'dropout': rng}, example, train=False)


def make_plan(config, workdir: str, *, init_from: str = '',
              load_data: Callable[[Any], data_lib.Splits] = data_lib.load) -> Plan:
  """The Plan of one run (see the module docstring); raises ConfigError listing every problem. `load_data` reads
  config.data (a sweep passes one that shares the splits of trials with the same data config)."""
  problems = config_lib.validate(config)
  if problems:
    raise config_lib.ConfigError(problems)
  encoder, splits = _model_data(config, load_data)
  task = _task(config, splits, encoder)
  spe, total = _run_length(config, splits)
  problems = config_lib.check_run(config, num_devices=jax.device_count(), total_steps=total, steps_per_epoch=spe)
  model, fresh = _model(config, task, splits, encoder)
  try:
    variables = _with_adapters(config, fresh)
    optimizer = _optimizer(config, variables, steps_per_epoch=spe, total_steps=total)
  except (groups.GroupError, lora_lib.LoraError, ValueError) as err:
    problems += str(err).split('\n')
  problems += _task_problems(config, task, splits)
  problems += _initial_problems(config, fresh, init_from, splits)
  problems += _workdir_problems(config, workdir)
  if problems:
    raise config_lib.ConfigError(problems)
  labels, rules, trained, tx, schedule = optimizer
  problems = memory.problems(config, task, splits, variables, tx)
  if problems:  # before any batch is built: the kernel would kill the process
    raise config_lib.ConfigError(problems)
  frozen = rules_lib.frozen_masks(labels, rules, {k: v for k, v in variables.items() if k != 'params'},
                                  trained=trained)
  counts = _class_counts(task, splits)
  return Plan(config=config, workdir=workdir, init_from=init_from, splits=splits, task=task, model=model,
              steps_per_epoch=spe, total_steps=total, eval_every=config.eval.every_steps or spe,
              eval_mode=config_lib.eval_mode(config), variables=variables, labels=labels, rules=rules,
              trained=trained, tx=tx, schedule=schedule, frozen=frozen,
              hparams=traced.state_values(config, counts, splits.num_classes),
              static_key=traced.static_key(config, model=model, task=task, steps_per_epoch=spe, total_steps=total))


def _task(config, splits, shape):
  """The run's task: a classification Task, or for a decoder the LMTask with what the data says of its tokens."""
  if splits.task in rec_task.KINDS:
    if splits.task == 'rating':
      return rec_task.RatingTask(tuple(splits.report['rating_range']))
    return rec_task.RankingTask(splits.report['num_items'], loss=config.data.interactions.loss)
  if splits.task == 'detect':
    from ftlab import det_task
    return det_task.DetTask(tuple(splits.class_names), max_detections=int(config.data.detection.max_detections))
  if splits.task != 'lm':
    return tasks.Task(splits.task, tuple(splits.class_names))
  from ftlab import lm_task
  lm = splits.report
  return lm_task.LMTask(tuple(splits.class_names), shape, eos_id=lm['eos_id'],
                        label_tokens=tuple(tuple(t) for t in lm['label_tokens']), max_new_tokens=lm['max_new_tokens'],
                        cache_dtype=config.model.dtype)


def _class_counts(task, splits) -> np.ndarray | None:
  """Training examples (pixels, for segmentation) per class: what train.balance_classes weighs by."""
  if task.kind == 'segment':
    return splits.train.class_counts(splits.num_classes)
  return np.bincount(splits.train.labels, minlength=splits.num_classes) if task.kind in ('image', 'text') else None


def _data_kind_problem(model_name: str, config, splits) -> str | None:
  """A model that cannot read the data's examples."""
  recommending = splits.task in rec_task.KINDS
  if recommending or model_name in recommenders.RECOMMENDERS:
    return _recommender_problem(model_name, config, splits)
  takes = 'lm' if model_name in models.DECODER_MODELS else 'text' if model_name in models.TEXT_MODELS else 'image'
  gives = {'tags': 'text', 'segment': 'image', 'detect': 'image'}.get(splits.task, splits.task)
  if splits.task in ('segment', 'detect') and model_name in ('mlp', 'cnn'):
    return (f'model.name={model_name!r} has no feature pyramid for a {splits.task} head; use resnet, vit or '
            'efficientnet')
  if splits.task == 'segment' and model_name == 'vit':
    crop, padded = list(config.data.segmentation.crop), splits.report['padded_shape'][:2]
    if any(crop) and crop != padded:
      return (f'data.segmentation.crop={crop}: a ViT keeps the position embeddings of one image size, and the '
              f'evaluation images are {padded[0]}x{padded[1]} (padded); set the crop to {padded} or [0, 0], or use '
              'resnet or efficientnet, which take any size')
  if takes == gives:
    return None
  if takes == 'lm':
    return (f"model.name='decoder' fine-tunes on SFT data, but data.source={config.data.source!r} gives {gives} "
            "examples; use data.source='sft' (prompt/completion JSONL) or set data.sft.prompt to turn a labelled "
            "text dataset into prompts")
  if gives == 'lm':
    return (f'data.sft.prompt / data.source {config.data.source!r}: SFT data is for a decoder, not model.name='
            f"{model_name!r}; set model.name='decoder' or leave data.sft.prompt ''")
  fix = "an image dataset" if takes == 'image' else "a text dataset (data.source 'text', 'conll' or a TFDS text set)"
  other = "model.name='bert'" if takes == 'image' else "an image model (mlp, cnn, vit, resnet, efficientnet)"
  return (f'model.name={model_name!r} takes {takes}, but data.source={config.data.source!r} gives {gives} examples; '
          f'use {fix}, or {other}')


def _recommender_problem(model_name: str, config, splits) -> str | None:
  """A recommender on other data, another model on interactions, or a model that cannot read the examples."""
  if model_name not in recommenders.RECOMMENDERS:
    return (f"model.name={model_name!r} does not read interactions (data.source='interactions'); use "
            f"{', '.join(recommenders.RECOMMENDERS)}")
  if splits.task not in rec_task.KINDS:
    return (f"model.name={model_name!r} is a recommender; it reads a log of interactions: set "
            "data.source='interactions' and data.path to the log")
  examples = config.data.interactions.examples
  if model_name == 'sasrec' and splits.task == 'rating':
    return ("model.name='sasrec' ranks the next item; predict ratings with 'mf' or 'neumf', or set "
            "data.interactions.task='ranking'")
  if examples == 'sequences' and model_name != 'sasrec':
    return (f"data.interactions.examples='sequences' trains on histories, which model.name={model_name!r} does not "
            "read; use 'pairs' (or 'auto'), or model.name='sasrec'")
  if examples == 'pairs' and model_name == 'sasrec':
    return "data.interactions.examples='pairs': model.name='sasrec' trains on histories; use 'sequences' or 'auto'"
  return None


def _with_examples(data_config, model_name: str):
  """config.data with data.interactions.examples 'auto' resolved for the model (not saved: the run's config keeps
  'auto')."""
  if data_config.source != 'interactions' or data_config.interactions.examples != 'auto':
    return data_config
  data_config = copy.deepcopy(data_config)
  data_config.interactions.examples = 'sequences' if model_name == 'sasrec' else 'pairs'
  return data_config


def _model_data(config, load_data):
  """(the pretrained model's shape (BertConfig, pad id) or DecoderConfig, or None; the splits): the checkpoint
  first, so that a wrong path fails fast, and its folder holds the default tokenizer."""
  model_config = config.model
  try:
    encoder = pretrained_lib.encoder_config(model_config) or pretrained_lib.decoder_config(model_config)
    data_config = _with_default_tokenizer(config.data, pretrained_lib.tokenizer_folder(model_config))
    data_config = _with_examples(data_config, model_config.name)
  except surgery.SurgeryError as err:
    raise config_lib.ConfigError([str(err)]) from err
  problem = _positions_problem(config, encoder)
  if problem:  # before the data: a NaN loss at step 1 otherwise, read as a learning rate too high
    raise config_lib.ConfigError([problem])
  try:
    splits = load_data(data_config)
  except ValueError as err:  # DataError, and sklearn's / TFDS's value errors
    raise config_lib.ConfigError([str(err)]) from err
  problem = _data_kind_problem(model_config.name, config, splits)
  if problem:
    raise config_lib.ConfigError([problem])
  if encoder is None and model_config.name == 'bert':
    vocab, pad = splits.report['vocab_size'], splits.report['pad_id']
    encoder = (models.bert_config(model_config, vocab_size=vocab, pad_id=pad), 0)
  if encoder is None and model_config.name == 'decoder':
    encoder = models.decoder_config(model_config, vocab_size=splits.report['vocab_size'])
  return encoder, splits


def _with_default_tokenizer(data_config, folder: str):
  """config.data, with data.tokenizer.path defaulting to the pretrained checkpoint's folder (not saved: the run's
  config keeps '' and resolves it the same way again)."""
  if data_config.tokenizer.path or not folder:
    return data_config
  data_config = copy.deepcopy(data_config)
  data_config.tokenizer.path = folder
  return data_config


def _run_length(config, splits) -> tuple[int, int]:
  """(steps per epoch, total steps)."""
  train_config = config.train
  if config.data.remainder == 'drop' and len(splits.train) < train_config.batch_size:
    raise config_lib.ConfigError([
        f'train.batch_size: {train_config.batch_size} is more than the {len(splits.train)} training examples, and '
        "data.remainder='drop' drops every partial batch, so no batch is left; lower train.batch_size or set "
        "data.remainder to 'spill' or 'pad'"])
  spe = data_lib.steps_per_epoch(len(splits.train), train_config.batch_size, config.data.remainder)
  total = train_config.num_steps or max(1, math.ceil(train_config.num_epochs * spe))
  if total > MAX_STEPS:
    shown = total if total < 10**12 else format(float(total), '.3g')
    raise config_lib.ConfigError([f'train.num_steps / train.num_epochs: {shown} steps ({spe} per epoch) is more than '
                                  f'{MAX_STEPS}, the most a step counter holds (int32); give a shorter run'])
  return spe, total


def _positions_problem(config, encoder) -> str:
  """Why a BERT-family encoder cannot take data.tokenizer.max_length tokens (its position table is shorter), or ''."""
  if config.model.name != 'bert':
    return ''
  length = config.data.tokenizer.max_length
  if encoder:  # RoBERTa's positions start after the padding id's
    positions, where = encoder[0].max_position - encoder[0].position_offset, "the checkpoint's position table"
  else:
    positions, where = config.model.bert.max_position or models.MINILM_L6.max_position, 'model.bert.max_position'
  if length <= positions:
    return ''
  return (f'data.tokenizer.max_length: {length} tokens, but the encoder has {positions} positions ({where}); set '
          f'data.tokenizer.max_length to at most {positions}')


def _model(config, task, splits, encoder):
  """(the model, the shapes of its freshly initialised variables)."""
  try:
    if config.model.name in recommenders.RECOMMENDERS:
      model = recommenders.build(config.model, task, splits.report)
    elif isinstance(encoder, models.DecoderConfig):
      model = models.build(config.model, task, decoder=encoder)
    else:
      model = models.build(config.model, task, bert=encoder[0] if encoder else None)
  except ValueError as err:  # a variant that names no size
    raise config_lib.ConfigError([f'model.variant: {err}']) from err
  spec = lora_lib.Spec.of(config.lora)
  model = lora_lib.Adapted(model, spec) if spec else model
  return model, fresh_shapes(model, task.example_input(splits.train))


_shapes: collections.OrderedDict = collections.OrderedDict()  # the last few architectures' fresh_shapes


def fresh_shapes(model, example):
  """The shapes of `model`'s freshly initialised variables on `example`: traced once per architecture and input
  shape in a process, so that the trials of a sweep plan without tracing the model again (about 0.45 s a trial for
  MiniLM). The model's repr names every attribute, as the shared init program's key does (ftlab/initial_state.py)."""
  shape = lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype if hasattr(x, 'dtype') else np.result_type(x))
  key = (repr(model), repr(jax.tree.map(shape, example)))  # x.dtype: numpy refuses a jax array as a dtype
  if key not in _shapes:
    _shapes[key] = jax.eval_shape(functools.partial(init_variables, model), example, jax.random.key(0))
    if len(_shapes) > 4:
      _shapes.popitem(last=False)
  return _shapes[key]


def _with_adapters(config, variables):
  """The variables' shapes with the LoRA adapters among the parameters (raises LoraError)."""
  if not lora_lib.Spec.of(config.lora):
    return variables
  return {**variables, 'params': jax.eval_shape(functools.partial(lora_lib.add_adapters, lora_config=config.lora),
                                                variables['params'], rng=jax.random.key(0))}


def _optimizer(config, variables, *, steps_per_epoch: int, total_steps: int):
  """(labels, rules, trained, the optax transformation, the run's schedule); raises GroupError, LoraError or
  ValueError naming the keys."""
  params, opt = variables['params'], config.optimizer
  kwargs = dict(steps_per_epoch=steps_per_epoch, total_steps=total_steps, lora=config.lora)
  if opt.traced_freezing:
    labels, rules, trained = rules_lib.resolve_traced_freezing(opt, params, **kwargs)
  else:
    (labels, rules), trained = rules_lib.resolve(opt, params, **kwargs), None
  values = builder.schedule_values(config.schedule, rules, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  tx = builder.build(opt, config.schedule, labels, rules, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                     batch_size=config.train.batch_size, trained=trained, values=values)
  return labels, rules, trained, tx, builder.run_schedule(config.schedule, values, total_steps=total_steps)


def _task_problems(config, task, splits) -> list[str]:
  problems = [p for p in [task.check_metric(config.eval.metric)] if p]
  if task.kind in rec_task.KINDS:
    return problems + _recommender_problems(config, splits)
  if task.kind == 'lm':
    return problems + _decoder_problems(config, task, splits)
  if task.kind == 'tags' and config.train.balance_classes:
    problems.append('train.balance_classes: not available for token classification; give per-tag weights in '
                    'train.class_weights')
  weights = config.train.class_weights
  if weights and len(weights) != splits.num_classes:
    problems.append(f'train.class_weights: {len(weights)} weights for {splits.num_classes} classes '
                    f'({", ".join(splits.class_names)}); give one per class')
  return problems


def _recommender_problems(config, splits) -> list[str]:
  problems = []
  if config.train.class_weights or config.train.balance_classes or config.train.label_smoothing:
    problems.append('train.class_weights / balance_classes / label_smoothing: a recommender has no classes; leave '
                    'them at [] / False / 0.0')
  items, negatives = splits.report['num_items'], config.data.interactions.eval_negatives
  if splits.task == 'ranking' and negatives >= items:
    problems.append(f'data.interactions.eval_negatives: {negatives} sampled negatives, but the catalogue has '
                    f'{items} items; sample fewer (or 0 for full ranking alone)')
  return problems


def _decoder_problems(config, task, splits) -> list[str]:
  problems = []
  if config.train.class_weights or config.train.balance_classes:
    problems.append('train.class_weights / train.balance_classes: a decoder predicts tokens, not classes; leave them '
                    'at [] / False')
  vocab = splits.report['vocab_size']
  if vocab > task.decoder.vocab_size:
    problems.append(f'data.tokenizer.path: the tokenizer has {vocab} tokens but the decoder embeds '
                    f'{task.decoder.vocab_size}; use the model\'s own tokenizer')
  return problems


def _initial_problems(config, variables, init_from: str, splits) -> list[str]:
  """What the pretrained weights or the initialising run do not fit. (A source-task run of init.pretrain that has
  not run yet is checked when it has.)"""
  if 'params' not in variables:
    return []
  params = variables['params']
  if config.init.towers.gmf or config.init.towers.mlp:
    from ftlab.pretrained import towers
    return towers.problems(config, params)
  if config.model.pretrained and not init_from and splits.task in rec_task.KINDS:
    from ftlab.pretrained import item_text
    return item_text.problems(config, splits, params)
  if config.model.pretrained and not init_from:
    return pretrained_lib.check(config.model, params, reinit=config.init.reinit)
  if init_from and os.path.exists(os.path.join(init_from, 'summary.json')):
    key = 'init.checkpoint' if init_from == config.init.checkpoint else 'init.pretrain'
    return surgery.check_run_params(init_from, params, reinit=config.init.reinit, key=key)
  return []


def _workdir_problems(config, workdir: str) -> list[str]:
  """A workdir holding a run of another config (only train.num_steps / train.num_epochs may change)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return []
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (OSError, ValueError) as err:
    saved = f'{type(err).__name__}: {err}'
  else:
    saved = saved if isinstance(saved, dict) else f'a JSON {type(saved).__name__}, not an object'
  if isinstance(saved, str):
    return [f'--workdir: {path} is not a readable run config ({saved}); restore it from a backup, or use a new '
            'workdir']
  diffs = config_lib.config_differences(saved, config.to_dict())
  if diffs:
    return [f'--workdir: {workdir} holds a run with a different config; use a new workdir or the same config (only '
            'train.num_steps / train.num_epochs may change). Differences: ' + '; '.join(diffs)]
  return []
