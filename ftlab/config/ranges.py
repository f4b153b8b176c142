"""Out-of-range values of a config whose every key has the right type, section by section: each check says what is
wrong with the key and what to do."""
from __future__ import annotations

import re

import ml_collections

from ftlab import metrics, parallel, ranking_metrics
from ftlab.config.schema import (DATA_SOURCES, DECODER_VARIANTS, DTYPES, IMAGE_STATS, INTERACTION_EXAMPLES,
                                 INTERACTION_TASKS, LR_BATCH_SCALING, MODELS, OPTIMIZERS, TOWERS, reads_masks)
from ftlab.optim import rules, schedules

REGEX_KEYS = ('optimizer.freeze', 'optimizer.no_decay', 'init.reinit', 'optimizer.layer_pattern',
              'optimizer.head_pattern', 'lora.target', 'lora.train', 'optimizer.lazy_updates')


class _Problems(list):
  """The problems found so far; `need(ok, message)` adds the message when the check fails."""

  def need(self, ok, message: str) -> None:
    if not ok:
      self.append(message)


def range_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Out-of-range values; only called once every key has the right type."""
  problems = _Problems()
  for section in (_model, _data, _optimizer, _lora_and_regexes, _train, _loop, _log):
    section(config, problems)
  problems += schedules.check_schedule_config(config.schedule)
  problems += _parallel_problems(config.parallel)
  _pretrain(config, problems)
  return list(problems)


def _model(config, p: _Problems) -> None:
  model = config.model
  p.need(config.seed >= 0, f'seed: must be >= 0, got {config.seed}')
  p.need(model.name in MODELS, f'model.name: {model.name!r} is not a model; choose one of {", ".join(MODELS)}')
  p.need(all(f > 0 for f in model.features), f'model.features: widths must be > 0, got {list(model.features)}')
  for key in ('dropout_rate', 'attention_dropout_rate', 'head_dropout_rate'):
    p.need(0 <= model[key] < 1, f'model.{key}: must be in [0, 1), got {model[key]}')
  p.need(model.dtype in DTYPES, f"model.dtype: {model.dtype!r}; choose 'float32' or 'bfloat16'")
  p.need(model.width >= 1, f'model.width: must be >= 1, got {model.width}')
  p.need(model.stem in ('imagenet', 'small'), f"model.stem: {model.stem!r}; choose 'imagenet' or 'small'")
  poolings = {'bert': ('cls', 'mean', 'pooler'), 'vit': ('cls', 'gap')}.get(model.name)
  p.need(not poolings or model.pooling in poolings, f'model.pooling: {model.pooling!r} does not apply to model.name='
         f'{model.name!r}; choose one of {", ".join(poolings or ())}')
  example = {'vit': "'s/16'", 'resnet': "'50'", 'efficientnet': "'lite0'"}.get(model.name)
  p.need(not example or model.variant, f'model.variant: model.name={model.name!r} needs a variant, e.g. {example}')
  sizes = [v for k, v in model.bert.items() if k != 'roberta_positions']
  p.need(all(v >= 0 for v in sizes), 'model.bert.*: sizes must be >= 0')
  p.need(not (model.pretrained and config.init.checkpoint), 'model.pretrained / init.checkpoint: choose one starting '
         'point (init.checkpoint, an earlier ftlab run, already holds the pretrained weights it started from)')
  p.need(not (model.pretrained and any(sizes)),
         'model.bert.*: the pretrained checkpoint\'s config.json sets the shape; leave model.bert sizes at 0 '
         '(or set model.pretrained to \'\' to train this shape from scratch)')
  _decoder(config, p)
  _recommender(model, p)


def _decoder(config, p: _Problems) -> None:
  decoder, pretrained = config.model.decoder, config.model.pretrained
  p.need(decoder.variant in DECODER_VARIANTS, f'model.decoder.variant: {decoder.variant!r}; choose one of '
         f'{", ".join(DECODER_VARIANTS)}')
  sizes = {k: v for k, v in decoder.items() if k not in ('variant', 'rope_theta', 'tie_embeddings')}
  p.need(all(v >= 0 for v in sizes.values()), 'model.decoder.*: sizes must be >= 0')
  p.need(decoder.rope_theta > 0, f'model.decoder.rope_theta: must be > 0, got {decoder.rope_theta}')
  p.need(not (pretrained and any(sizes.values())),
         "model.decoder.*: the pretrained checkpoint's config sets the shape; leave model.decoder sizes at 0 (or set "
         "model.pretrained to '' to train this shape from scratch)")
  sft = config.data.sft
  p.need(sft.max_new_tokens >= 0, f'data.sft.max_new_tokens: must be >= 0 (0: the longest reference), got '
         f'{sft.max_new_tokens}')
  p.need(config.data.source != 'sft' or not sft.prompt, "data.sft.prompt: a template turns a labelled text dataset "
         "into SFT; source 'sft' files hold their prompts already: set it to ''")
  if config.data.source == 'sft':
    odd = {r: v for r, v in config.data.splits.items() if v not in (r, 'auto', '')}
    p.need(not odd, f"data.splits: source 'sft' reads whole files (data.files names them; '' or 'auto' carves a "
           f"missing role from train); {odd} cannot be read: use those values")


def _folds(d, p: _Problems) -> None:
  p.need(d.folds == 0 or d.folds >= 2, f'data.folds: 0 (no cross-validation) or a number of folds >= 2, got {d.folds}')
  if d.folds:
    p.need(-1 <= d.fold < d.folds, f'data.fold: a fold of 0..{d.folds - 1} (or -1 to train on every fold), got '
           f'{d.fold}')
    p.need(d.splits.validation in ('', 'auto'), f'data.splits.validation={d.splits.validation!r}: with data.folds '
           "the validation split is a fold of the training split; set it to '' (or 'auto')")
  p.need(not d.group_column or d.source in ('text', 'tfds'), f'data.group_column: source {d.source!r} has no '
         "columns to group by; it is read from source 'text' (a column) and 'tfds' (a feature)")


def _segmentation(seg, p: _Problems, *, folders: bool) -> None:
  p.need(len(seg.crop) == 2 and all(v >= 0 for v in seg.crop) and (all(seg.crop) or not any(seg.crop)),
         f'data.segmentation.crop: (height, width) > 0, or [0, 0] for whole images; got {list(seg.crop)}')
  p.need(len(seg.scale) == 2 and 0 < seg.scale[0] <= seg.scale[1],
         f'data.segmentation.scale: (min, max) with 0 < min <= max; got {list(seg.scale)}')
  p.need(len(seg.palette) % 3 == 0 and all(0 <= v <= 255 for v in seg.palette),
         f'data.segmentation.palette: flat r, g, b triples of 0..255, one per class; got {len(seg.palette)} values')
  p.need(not seg.palette or len(seg.palette) // 3 >= len(seg.class_names),
         'data.segmentation.palette: give one colour per class of data.segmentation.class_names')
  p.need(len(seg.size) == 2 and all(v >= 0 for v in seg.size) and (all(seg.size) or not any(seg.size)),
         f'data.segmentation.size: (height, width) > 0, or [0, 0] to keep the stored size; got {list(seg.size)}')
  p.need(seg.pad_to >= 1, f'data.segmentation.pad_to: must be >= 1, got {seg.pad_to}')
  p.need(seg.id_offset >= 0, f'data.segmentation.id_offset: the mask value of class 0, >= 0; got {seg.id_offset}')
  p.need(not folders or ('{split}' in seg.images and '{split}' in seg.masks),
         "data.segmentation.images / masks: each must contain '{split}' (e.g. '{split}' and '{split}annot')")


def _data(config, p: _Problems) -> None:
  d = config.data
  p.need(d.source in DATA_SOURCES, f'data.source: {d.source!r} is not a data source; choose one of '
         f'{", ".join(DATA_SOURCES)}')
  p.need(d.source != 'tfds' or d.name, "data.name: source 'tfds' needs a dataset name, e.g. 'mnist' or 'glue/sst2'")
  p.need(d.source in ('digits', 'tfds') or d.path,
         f"data.path: source {d.source!r} reads local files; set their folder")
  for key in ('validation_fraction', 'test_fraction'):
    v = d[key]
    p.need(0 < v < 1 or (v >= 1 and float(v).is_integer()),
           f'data.{key}: a fraction in (0, 1) or a whole count >= 1, got {v}')
  if d.validation_fraction < 1 and d.test_fraction < 1:
    p.need(d.validation_fraction + d.test_fraction < 1,
           'data.validation_fraction + data.test_fraction: must leave something to train on (sum < 1)')
  for role in ('train', 'validation', 'test'):
    p.need(role in d.splits, f'data.splits.{role}: missing; give a split name, \'auto\' or \'\'')
  _folds(d, p)
  if reads_masks(d):
    _segmentation(d.segmentation, p, folders=d.source == 'segmentation')
  if d.source == 'interactions':
    _interactions(d.interactions, p)
  if d.source == 'detection':
    det = d.detection
    p.need(det.size >= 32 and det.max_boxes >= 1 and det.max_detections >= 1,
           'data.detection: size must be >= 32, max_boxes and max_detections >= 1')
    p.need(len(det.scale) == 2 and 0 < det.scale[0] <= det.scale[1],
           f'data.detection.scale: (min, max) with 0 < min <= max; got {list(det.scale)}')
  p.need(d.remainder in ('spill', 'drop', 'pad'), f"data.remainder: {d.remainder!r}; choose 'spill', 'drop' or 'pad'")
  p.need(d.workers >= 0, f'data.workers: must be >= 0, got {d.workers}')
  p.need(d.read_threads >= 0, f'data.read_threads: must be >= 0, got {d.read_threads}')
  p.need(d.text.format in ('auto', 'csv', 'tsv', 'jsonl'), f"data.text.format: {d.text.format!r}; choose 'auto', "
         "'csv', 'tsv' or 'jsonl'")
  p.need(d.conll.scheme in ('iob1', 'iob2', 'bio'), f"data.conll.scheme: {d.conll.scheme!r}; choose 'iob1', 'iob2' "
         "or 'bio'")
  p.need(d.tokenizer.max_length >= 4, f'data.tokenizer.max_length: must be >= 4, got {d.tokenizer.max_length}')
  if d.tokenizer.pack:
    p.need(config.model.name == 'bert', f"data.tokenizer.pack: packs an encoder's text batches (model.name 'bert'); "
           f"turn it off for model.name {config.model.name!r} (a decoder packs with data.sft.pack)")
    p.need(not d.tokenizer.bucket, 'data.tokenizer.pack / bucket: packed rows are already full; turn bucket off')
  _image(d.image, p)
  p.need(len(set(d.classes)) == len(d.classes),
         f'data.classes: repeated labels in {list(d.classes)}; list each label once')


def _interactions(ic, p: _Problems) -> None:
  from ftlab import rec_task
  from ftlab.data import interaction_log, interaction_splits
  choices = {'format': ('auto',) + interaction_log.FORMATS, 'task': INTERACTION_TASKS,
             'split': interaction_splits.PROTOCOLS, 'examples': INTERACTION_EXAMPLES, 'loss': rec_task.LOSSES}
  for key, allowed in choices.items():
    p.need(ic[key] in allowed, f'data.interactions.{key}: {ic[key]!r}; choose one of {", ".join(allowed)}')
  p.need(ic.user_column and ic.item_column, 'data.interactions.user_column / item_column: name the columns of the '
         'user and the item')
  p.need(ic.max_history >= 1, f'data.interactions.max_history: must be >= 1, got {ic.max_history}')
  p.need(ic.train_negatives >= 1, f'data.interactions.train_negatives: must be >= 1, got {ic.train_negatives}')
  p.need(ic.eval_negatives >= 0, f'data.interactions.eval_negatives: must be >= 0, got {ic.eval_negatives}')
  p.need(ic.positive_rating >= 0, f'data.interactions.positive_rating: must be >= 0, got {ic.positive_rating}')
  cohort = ic.cohort
  p.need(cohort.part in ('', 'cohort', 'rest'), f"data.interactions.cohort.part: {cohort.part!r}; choose '', "
         "'cohort' or 'rest'")
  p.need(0 < cohort.fraction < 1 or (cohort.fraction >= 1 and float(cohort.fraction).is_integer()),
         f'data.interactions.cohort.fraction: a share in (0, 1) or a whole count of users, got {cohort.fraction}')
  p.need(ic.split != 'time_cut' or len(ic.time_cuts) == 2, 'data.interactions.time_cuts: split \'time_cut\' needs '
         "two cuts, [validation start, test start], e.g. ['1998-02-01', '1998-03-01']")


def _recommender(model, p: _Problems) -> None:
  r = model.recommender
  p.need(r.dim >= 1 and r.num_layers >= 1 and r.num_heads >= 1, 'model.recommender: dim, num_layers and num_heads '
         'must be >= 1')
  p.need(r.dim % r.num_heads == 0, f'model.recommender.dim: {r.dim} does not divide into {r.num_heads} heads; make '
         'dim a multiple of num_heads')
  p.need(r.init_std > 0, f'model.recommender.init_std: must be > 0, got {r.init_std}')
  p.need(r.towers in TOWERS, f'model.recommender.towers: {r.towers!r}; choose one of {", ".join(TOWERS)}')
  p.need(len(r.mlp_layers) >= 1 and all(w >= 2 for w in r.mlp_layers), 'model.recommender.mlp_layers: widths '
         f'>= 2, at least one (the first holds the user and item vectors joined); got {list(r.mlp_layers)}')


def _image(image, p: _Problems) -> None:
  p.need(image.size >= 0, f'data.image.size: must be >= 0, got {image.size}')
  p.need(image.resize in ('resize', 'pad', 'crop'), f"data.image.resize: {image.resize!r}; choose 'resize', "
         "'pad' or 'crop'")
  p.need(image.channels in (0, 1, 3), f'data.image.channels: 0, 1 or 3, got {image.channels}')
  p.need(image.stats in IMAGE_STATS, f'data.image.stats: {image.stats!r}; choose one of {", ".join(IMAGE_STATS)}')
  p.need(len(image.mean) == len(image.std), f'data.image.mean / std: {len(image.mean)} means but '
         f'{len(image.std)} stds; give both per channel (or neither)')
  p.need(all(v > 0 for v in image.std), f'data.image.std: must be > 0, got {list(image.std)}')
  p.need(image.crop_padding >= 0, f'data.image.crop_padding: must be >= 0, got {image.crop_padding}')


def _optimizer(config, p: _Problems) -> None:
  o = config.optimizer
  p.need(o.name in OPTIMIZERS, f'optimizer.name: {o.name!r} is not an optimizer; choose one of '
         f'{", ".join(OPTIMIZERS)}')
  p.need(o.learning_rate > 0, f'optimizer.learning_rate: must be > 0, got {o.learning_rate} '
         '(to keep parameters fixed, freeze them with optimizer.freeze)')
  p.need(o.weight_decay >= 0, f'optimizer.weight_decay: must be >= 0, got {o.weight_decay}')
  p.need(o.lr_batch_scaling in LR_BATCH_SCALING, f'optimizer.lr_batch_scaling: {o.lr_batch_scaling!r}; use one of '
         f'{", ".join(LR_BATCH_SCALING)}')
  p.need(o.base_batch_size >= 1, f'optimizer.base_batch_size: must be >= 1, got {o.base_batch_size}')
  for key in ('b1', 'b2', 'momentum'):
    p.need(0 <= o[key] < 1, f'optimizer.{key}: must be in [0, 1), got {o[key]}')
  p.need(o.eps > 0, f'optimizer.eps: must be > 0, got {o.eps}')
  p.need(o.grad_clip_norm >= 0,
         f'optimizer.grad_clip_norm: must be >= 0 (0 turns clipping off), got {o.grad_clip_norm}')
  p += rules.check_groups_config(o.groups, set(schedules.schedule_defaults()))
  for key in ('lp_ft', 'unfreeze_every'):
    if o[key] != '':
      try:
        schedules.parse_duration(o[key], steps_per_epoch=1, total_steps=1)
      except schedules.DurationError as err:
        p.append(f"optimizer.{key}: {err}; or '' to turn it off")
  p.need(0 < o.layer_decay <= 1, f'optimizer.layer_decay: must be in (0, 1] (1 turns it off), got {o.layer_decay}')
  t = config.train
  p.need(all(w > 0 for w in t.class_weights), f'train.class_weights: must all be > 0, got {list(t.class_weights)}')
  p.need(not (t.class_weights and t.balance_classes),
         'train.class_weights / train.balance_classes: give explicit weights or balance_classes, not both')


def _lora_and_regexes(config, p: _Problems) -> None:
  lo, o = config.lora, config.optimizer
  p.need(lo.rank >= 1, f'lora.rank: must be >= 1, got {lo.rank}')
  p.need(lo.max_rank == 0 or lo.max_rank >= lo.rank, f'lora.max_rank: {lo.max_rank} is below lora.rank '
         f'{lo.rank}; set it to the largest rank of the trials that train together, or 0 for rank itself')
  p.need(lo.alpha > 0, f'lora.alpha: must be > 0, got {lo.alpha}')
  p.need(0 <= lo.dropout < 1, f'lora.dropout: must be in [0, 1), got {lo.dropout}')
  p.need(not (lo.target and o.groups), 'lora.target / optimizer.groups: LoRA sets the groups itself (adapters, '
         'lora.train, frozen base); use optimizer.freeze or lora.train instead of optimizer.groups')
  bad = set()
  for key in REGEX_KEYS:
    section, leaf = key.split('.')
    try:
      re.compile(config[section][leaf])
    except re.error as err:
      bad.add(key)
      p.append(f'{key}: {config[section][leaf]!r} is not a valid regex ({err}); correct it (Python re syntax; a '
               'literal ( [ . * + ? needs a backslash before it)')
  layered = o.layer_decay != 1 or o.lp_ft or o.unfreeze_every
  if layered and 'optimizer.layer_pattern' not in bad and re.compile(o.layer_pattern).groups < 1:
    p.append(f'optimizer.layer_pattern: {o.layer_pattern!r} needs a group capturing the layer index, e.g. '
             r'r"_(\d+)/"')


def _train(config, p: _Problems) -> None:
  t = config.train
  p.need(t.batch_size > 0, f'train.batch_size: must be > 0, got {t.batch_size}')
  p.need(t.grad_accum_steps >= 1, f'train.grad_accum_steps: must be >= 1, got {t.grad_accum_steps}')
  p.need(t.skip_nonfinite >= 0, f'train.skip_nonfinite: must be >= 0 (0 stops at the first NaN/Inf step), got '
                                f'{t.skip_nonfinite}')
  p.need((t.num_steps > 0) != (t.num_epochs > 0),
         f'train.num_steps / train.num_epochs: set exactly one of them > 0 (got num_steps={t.num_steps}, '
         f'num_epochs={t.num_epochs}); set the other to 0')
  p.need(t.num_steps >= 0 and t.num_epochs >= 0, 'train.num_steps / train.num_epochs: must be >= 0')
  p.need(0 <= t.label_smoothing < 1, f'train.label_smoothing: must be in [0, 1), got {t.label_smoothing}')
  p.need(t.log_every_steps > 0, f'train.log_every_steps: must be > 0, got {t.log_every_steps}')


def _loop(config, p: _Problems) -> None:
  """eval, early_stopping, checkpoint."""
  e, es, ckpt = config.eval, config.early_stopping, config.checkpoint
  p.need(e.every_steps >= 0, f'eval.every_steps: must be >= 0 (0: once per epoch), got {e.every_steps}')
  p.need(e.batch_size > 0, f'eval.batch_size: must be > 0, got {e.batch_size}')
  named = [m for m in metrics.METRIC_MODES if m not in metrics.RANKING_METRIC_NAMES]
  p.need(e.metric in metrics.METRIC_MODES, f'eval.metric: {e.metric!r} is not a metric; choose one of '
         f'{", ".join(named)} (entity_* for token classification), or for ranking hr@K, ndcg@K, recall@K, mrr, '
         f'coverage@K with K in {", ".join(map(str, ranking_metrics.KS))} (sampled_* against sampled negatives)')
  p.need(e.mode in ('auto', 'min', 'max'), f"eval.mode: must be 'auto', 'min' or 'max', got {e.mode!r}")
  p.need(e.train_subset >= 0,
         f'eval.train_subset: must be >= 0 (0 turns the train evaluation off), got {e.train_subset}')
  p.need(es.patience >= 1, f'early_stopping.patience: must be >= 1, got {es.patience}')
  p.need(es.min_delta >= 0, f'early_stopping.min_delta: must be >= 0, got {es.min_delta}')
  p.need(ckpt.every_steps >= 0, f'checkpoint.every_steps: must be >= 0, got {ckpt.every_steps}')
  p.need(ckpt.keep >= 1, f'checkpoint.keep: must be >= 1, got {ckpt.keep}')


def _log(config, p: _Problems) -> None:
  from ftlab import trackers  # imports no tracker library: it only finds whether each is installed
  p.extend(trackers.problems(config.log))


def _pretrain(config, p: _Problems) -> None:
  towers = config.init.towers
  p.need(0 <= towers.alpha <= 1, f'init.towers.alpha: must be in [0, 1], got {towers.alpha}')
  p.need(not ((towers.gmf or towers.mlp) and (config.init.checkpoint or config.init.pretrain.enabled)),
         'init.towers / init.checkpoint / init.pretrain: choose one way to initialise')
  pre = config.init.pretrain
  if pre.enabled:
    p.need(not config.init.checkpoint, 'init.pretrain.enabled / init.checkpoint: choose one way to initialise')
    if config.data.source == 'interactions' and config.data.interactions.cohort.part:
      p.need(config.data.interactions.cohort.part == 'cohort', "init.pretrain with data.interactions.cohort: the "
             "fine-tuning run reads the cohort (part 'cohort'); the source run reads the rest")
    elif config.data.source == 'interactions':
      _pretrain_period(config, p)
    else:
      p.need(len(pre.classes) > 0, 'init.pretrain.classes: name the source task labels, e.g. [0, 1, 2, 3, 4]')
    p.need(pre.num_steps > 0, f'init.pretrain.num_steps: must be > 0, got {pre.num_steps}')
    p.need(pre.learning_rate > 0, f'init.pretrain.learning_rate: must be > 0, got {pre.learning_rate}')


def _pretrain_period(config, p: _Problems) -> None:
  """Interactions: the source run's period comes before the fine-tuning run's training."""
  from ftlab.data import interaction_splits
  from ftlab.data.errors import DataError
  pre, ic = config.init.pretrain, config.data.interactions
  if len(pre.time_cuts) != 2 or not ic.train_since:
    p.append('init.pretrain.time_cuts / data.interactions.train_since: pretraining on interactions takes an earlier '
             "period: give the source run two time cuts (e.g. ['1997-12-15', '1998-01-01']: train before the first, "
             'select on the window to the second) and set data.interactions.train_since for the fine-tuning run; or '
             "other users: data.interactions.cohort.part='cohort'")
    return
  try:
    cuts = [interaction_splits.cut_seconds(c) for c in list(pre.time_cuts) + [ic.train_since]]
  except DataError as err:
    p.append(str(err))
    return
  p.need(cuts[0] < cuts[1] <= cuts[2], f'init.pretrain.time_cuts={list(pre.time_cuts)}: must rise and end at or '
         f'before data.interactions.train_since={ic.train_since!r}, so that the source run never sees the period '
         'the fine-tuning run trains on')


def _parallel_problems(par) -> list[str]:
  """Problems of config.parallel (well-typed)."""
  p = []
  if par.mode not in parallel.MODES:
    p.append(f"parallel.mode: {par.mode!r} is not a mode; choose 'jit' (sharded jax.jit, the default) or 'pmap' "
             "(a per-device program)")
  if par.fsdp and par.mode == 'pmap':
    p.append("parallel.fsdp: needs parallel.mode='jit' (the per-device 'pmap' program keeps a whole copy of the "
             "state on every device); set parallel.mode='jit' or parallel.fsdp=False")
  if par.fsdp_min_size < 0:
    p.append(f'parallel.fsdp_min_size: must be >= 0 elements, got {par.fsdp_min_size}')
  d = par.distributed
  if d.coordinator_address and not re.fullmatch(r'\[?[^\s/]+\]?:\d+', d.coordinator_address):
    p.append(f"parallel.distributed.coordinator_address: {d.coordinator_address!r} is not 'host:port' (process 0's "
             "address and a free port, e.g. '10.0.0.2:1234')")
  if d.num_processes < 0:
    p.append(f'parallel.distributed.num_processes: must be >= 1, or 0 for $JAX_NUM_PROCESSES or detection; '
             f'got {d.num_processes}')
  if d.process_id < -1 or (d.num_processes and d.process_id >= d.num_processes):
    p.append(f'parallel.distributed.process_id: {d.process_id} is not in 0..num_processes-1 '
             f'(num_processes {d.num_processes or "unset"}); -1 takes $JAX_PROCESS_ID or detection')
  if any(i < 0 for i in d.local_device_ids):
    p.append(f'parallel.distributed.local_device_ids: ids must be >= 0, got {list(d.local_device_ids)}')
  if d.initialization_timeout <= 0:
    p.append(f'parallel.distributed.initialization_timeout: must be > 0 seconds, got {d.initialization_timeout}')
  given = [k for k, unset in (('coordinator_address', ''), ('num_processes', 0), ('process_id', -1)) if d[k] != unset]
  if given and not d.enabled:
    p.append(f'parallel.distributed.enabled: is False, but parallel.distributed.{given[0]} is set; set '
             'parallel.distributed.enabled=True to run on several processes (or unset it)')
  return p
