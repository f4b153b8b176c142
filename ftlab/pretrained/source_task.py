"""The pretraining stage: the same model trained on a source task, in <workdir>/pretrain, before fine-tuning.

It is a complete ftlab run of its own (config.json, checkpoints, metrics, summary.json), so it resumes when
interrupted and is skipped once finished.
"""
from __future__ import annotations

import copy
import os

from ftlab import config as config_lib


def source_config(config):
  """The source-task run derived from a fine-tuning config with init.pretrain enabled.

  Same model, data source, optimizer and seed; the labels of init.pretrain.classes (for interactions: the period
  before init.pretrain.time_cuts, whole logs, no train_since; or the users outside data.interactions.cohort), its
  own length and learning rate, its own data split (not the fine-tuning's cross-validation folds); none of the
  fine-tuning strategies (everything trains at one rate: no freezing, groups, layer-wise decay, LP-FT, gradual
  unfreezing or LoRA), no early stopping, evaluated four times.
  """
  pre = config.init.pretrain
  source = copy.deepcopy(config)
  defaults = config_lib.defaults()
  for key in ('groups', 'layer_decay', 'lp_ft', 'unfreeze_every'):
    source.optimizer[key] = defaults.optimizer[key]
  source.lora.target = ''
  source.data.classes = list(pre.classes)
  source.data.folds, source.data.fold = defaults.data.folds, defaults.data.fold  # one source run for every fold
  source.train.num_steps, source.train.num_epochs = pre.num_steps, 0.0
  source.optimizer.learning_rate = pre.learning_rate
  source.optimizer.freeze = ''
  source.early_stopping.enabled = False
  source.eval.every_steps = max(1, pre.num_steps // 4)
  source.checkpoint.every_steps = 0
  source.init.checkpoint = ''
  source.init.pretrain.enabled = False
  if source.data.source == 'interactions' and config.data.interactions.cohort.part:  # the other users
    source.data.interactions.cohort.part = 'rest'
  elif source.data.source == 'interactions':  # the earlier period: trained before pre.time_cuts[0]
    source.data.interactions.split, source.data.interactions.train_since = 'time_cut', ''
    source.data.interactions.time_cuts = list(pre.time_cuts)
  return source


def directory(workdir: str) -> str:
  return os.path.join(workdir, 'pretrain')


def is_finished(run_dir: str) -> bool:
  """Whether the source-task run in `run_dir` (see directory()) has finished."""
  return os.path.exists(os.path.join(run_dir, 'summary.json'))
