"""The bad-input catalogue: every kind of input a user can get wrong, run through the real entry points.

Each case gives `python -m ftlab.main` or `python -m ftlab.sweep` (called in-process: main(argv), SystemExit
caught, stderr read with capsys) one bad input among config values, the command line, local data files,
pretrained weights and checkpoints, sweep definitions, and an existing workdir. Every case asserts:
- the exit status (2: every config, data, checkpoint, sweep or workdir problem is reported before any compute);
- that stderr names the problem (the key, file, line or option) and the fix (two fragments per case), without a
  traceback;
- that nothing on disk changed: every file under the test's folder (the workdir, pre-populated in some cases with
  a run or a sweep's files, and the input data) has the same sha256 after as before, and no file or folder appeared
  or went away. The config files live outside the hashed tree: importing one writes its __pycache__, as Python does
  for any module.
Two of the cases run as processes too (the exit status of `python -m ...` itself). Cases marked xfail are known
gaps, with the fix they need in their reason.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from ftlab import config as config_lib
from ftlab import main as ftlab_main
from ftlab import sweep as ftlab_sweep
from ftlab.sweeps import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The config file of every case (in <tmp>/cfg/base.py); its ARG (`--config=base.py:ARG`) picks a variant. Paths
# are relative to the file, so that the data lies in <tmp>/data.
BASE_FILE = '''
import os

from ftlab.config import defaults
from ftlab.sweeps.space import choice, integer, loguniform, uniform, variants

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


def get_config(arg=None):
  c = defaults()
  c.model.features = [16]
  c.data.classes = [5, 6, 7, 8, 9]
  c.train.num_steps, c.train.num_epochs = 20, 0.0
  c.train.log_every_steps = 1000
  c.eval.every_steps = 10
  c.eval.train_subset = 32
  if arg in ('text', 'bert_pretrained'):
    c.data.source = 'text'
    c.data.path = os.path.join(DATA, 'text')
    c.data.classes = []
    c.data.tokenizer.max_length = 16
    c.model.name = 'bert'
    if arg == 'text':
      c.data.tokenizer.path = os.path.join(DATA, 'vocab.txt')
      c.model.bert.hidden_size, c.model.bert.num_layers, c.model.bert.num_heads = 8, 1, 2
      c.model.bert.intermediate_size, c.model.bert.max_position = 16, 32
    else:
      c.model.pretrained = os.path.join(DATA, 'bert_model')
  elif arg == 'conll':
    c.data.source = 'conll'
    c.data.path = os.path.join(DATA, 'conll')
    c.data.classes = []
    c.data.tokenizer.max_length = 16
    c.data.tokenizer.path = os.path.join(DATA, 'vocab.txt')
    c.model.name = 'bert'
    c.model.bert.hidden_size, c.model.bert.num_layers, c.model.bert.num_heads = 8, 1, 2
    c.model.bert.intermediate_size, c.model.bert.max_position = 16, 32
    c.eval.metric = 'entity_f1'
  elif arg == 'idx':
    c.data.source = 'idx'
    c.data.path = os.path.join(DATA, 'idx')
    c.data.classes = []
  elif arg == 'images':
    c.data.source = 'image_folder'
    c.data.path = os.path.join(DATA, 'images')
    c.data.classes = []
  elif arg in ('segmentation', 'detection'):
    c.data.source, c.data.classes = arg, []
    c.data.path = os.path.join(DATA, arg)
    c.data.segmentation.class_names = ['a', 'b']
    c.data.detection.class_names, c.data.splits.train = ['box'], 'train' if arg == 'segmentation' else 'all'
    c.model.name, c.model.variant, c.model.width = 'resnet', '18', 8
  elif arg == 'vit_pretrained':
    c.model.name, c.model.variant = 'vit', 's/4'
    c.model.pretrained = os.path.join(DATA, 'vit.npz')
  elif arg == 'nan_lr':
    c.optimizer.learning_rate = float('nan')
  elif arg == 'unknown_key':
    c.optimizer.lr = 0.1
  elif arg == 'returns_dict':
    return c.to_dict()
  elif arg == 'raises':
    raise ValueError(f'unknown variant {arg!r}; use text, idx or images')
  return c


SWEEPS = {
    'unknown_swept_key': {'kind': 'grid', 'params': {'optimizer.learning_rat': [1e-3, 1e-2]}},
    'empty_values': {'kind': 'grid', 'params': {'optimizer.learning_rate': []}},
    'bayes_low_above_high': {'kind': 'bayes', 'num_trials': 4,
                             'params': {'optimizer.learning_rate': loguniform(1e-2, 1e-4)}},
    'bayes_log_of_zero': {'kind': 'bayes', 'num_trials': 4, 'params': {'optimizer.learning_rate': loguniform(0, 1e-2)}},
    'bayes_vectorized': {'kind': 'bayes', 'num_trials': 4, 'vectorize': 4,
                         'params': {'optimizer.learning_rate': loguniform(1e-4, 1e-2)}},
    'no_budget': {'kind': 'random', 'num_trials': 0, 'params': {'model.dropout_rate': uniform(0.0, 0.5)}},
    'bad_trial': {'kind': 'grid', 'params': {'model.dropout_rate': [0.1, 1.5]}},
    'bad_variant': {'kind': 'grid',
                    'params': {'strategy': variants(full={}, frozen={'optimizer.freez': '^backbone/'})}},
    'random_inf_bound': {'kind': 'random', 'num_trials': 2,
                         'params': {'optimizer.learning_rate': loguniform(1e-4, float('inf'))}},
    'bayes_bad_edge': {'kind': 'bayes', 'num_trials': 4, 'params': {'train.label_smoothing': uniform(0.0, 1.0)}},
}


def get_sweep(arg=None):
  return SWEEPS.get(arg, {'kind': 'grid', 'params': {'optimizer.learning_rate': [1e-3, 3e-3]}})
'''

NO_GET_CONFIG = 'from ftlab.config import defaults\n\n\ndef get_confg(arg=None):\n  return defaults()\n'
SYNTAX_ERROR = 'from ftlab.config import defaults\n\n\ndef get_config(arg=None):\n  c = defaults(\n  return c\n'
NO_GET_SWEEP = 'from ftlab.config import defaults\n\n\ndef get_config(arg=None):\n  return defaults()\n'

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'good', 'bad', 'movie', 'john', 'lives', 'in', 'paris']


class Root:
  """The folders of one case: cfg/ (config files, not hashed), data/ (inputs, hashed) and work/ (the workdir)."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.cfg, self.data, self.work = path / 'cfg', path / 'data', path / 'work'
    self.cfg.mkdir()
    self.data.mkdir()
    (self.cfg / 'base.py').write_text(BASE_FILE)
    (self.data / 'vocab.txt').write_text('\n'.join(VOCAB) + '\n')

  def config(self, arg: str = '') -> str:
    return f'--config={self.cfg / "base.py"}' + (f':{arg}' if arg else '')

  def argv(self, *extra: str, arg: str = '') -> list[str]:
    return [self.config(arg), f'--workdir={self.work}', *extra]

  def write(self, relative: str, content: str | bytes) -> pathlib.Path:
    """Writes a file under data/ (text as UTF-8); returns its path."""
    path = self.data / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
      path.write_bytes(content)
    else:
      path.write_text(content, encoding='utf-8')
    return path


def snapshot(root: pathlib.Path) -> dict[str, str]:
  """{path relative to root: sha256 of the file, or 'dir'} of everything under root but cfg/."""
  out = {}
  for path in sorted(root.rglob('*')):
    relative = path.relative_to(root).as_posix()
    if relative == 'cfg' or relative.startswith('cfg/'):
      continue
    if path.is_symlink():
      out[relative] = f'link to {os.readlink(path)}'
    else:
      out[relative] = 'dir' if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
  return out


# Input makers ----------------------------------------------------------------------------------------------------

def _text_rows(n: int = 20) -> str:
  return 'text,label\n' + ''.join(f'{"good" if i % 2 else "bad"} movie,{"pos" if i % 2 else "neg"}\n'
                                  for i in range(n))


def _idx_images(n: int, rows: int = 4, cols: int = 4) -> bytes:
  return struct.pack('>IIII', 2051, n, rows, cols) + bytes(n * rows * cols)


def _idx_labels(n: int) -> bytes:
  return struct.pack('>II', 2049, n) + bytes(i % 2 for i in range(n))


def _png(color) -> bytes:
  import io
  buffer = io.BytesIO()
  Image.new('RGB', (4, 4), color).save(buffer, format='PNG')
  return buffer.getvalue()


def _image_folder(r: Root, *, corrupt: bool = False):
  for name, color in (('cat', (255, 0, 0)), ('dog', (0, 0, 255))):
    for i in range(6):
      r.write(f'images/{name}/{i}.png', _png(color))
  if corrupt:
    r.write('images/dog/broken.png', b'\x89PNG\r\n\x1a\n this is not an image')


def _mask_png(height: int, width: int) -> bytes:
  import io
  buffer = io.BytesIO()
  Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format='PNG')
  return buffer.getvalue()


def _segmentation_folder(r: Root, *, mask_height: int = 4):
  for i in range(6):
    r.write(f'segmentation/train/{i}.png', _png((i * 40, 0, 0)))
    r.write(f'segmentation/trainannot/{i}.png', _mask_png(mask_height if i == 3 else 4, 4))


def _detection_folder(r: Root, *, box=(1, 1, 3, 3), xml: str = ''):
  for i in range(6):
    r.write(f'detection/images/{i}.png', _png((0, i * 40, 0)))
    x0, y0, x1, y1 = box if i == 2 else (1, 1, 3, 3)
    r.write(f'detection/annotations/{i}.xml', xml if xml and i == 2 else (
        f'<annotation><filename>{i}.png</filename><size><width>4</width><height>4</height></size><object><name>box'
        f'</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>'
        '</annotation>'))


def _bert_folder(r: Root):
  r.write('bert_model/config.json', json.dumps({
      'model_type': 'bert', 'vocab_size': len(VOCAB), 'hidden_size': 8, 'num_hidden_layers': 1,
      'num_attention_heads': 2, 'intermediate_size': 16, 'max_position_embeddings': 32, 'type_vocab_size': 2,
      'pad_token_id': 0}))
  r.write('bert_model/vocab.txt', '\n'.join(VOCAB) + '\n')


def _links(r: Root, *links: tuple[str, str]) -> None:
  """Symbolic links data/NAME -> TARGET."""
  r.data.mkdir(exist_ok=True)
  for name, target in links:
    os.symlink(target, r.data / name)


def _users_folder(r: Root) -> None:
  """A workdir that is a folder of the user's own (a metrics.jsonl among their notes)."""
  r.work.mkdir()
  (r.work / 'metrics.jsonl').write_text('{"epoch": 1, "my_score": 0.9}\n')
  (r.work / 'notes.txt').write_text('keep me\n')


def _saved_run(r: Root, **changes) -> None:
  """A workdir holding an earlier run of base.py (its config.json with `changes`, metrics, a checkpoint)."""
  config = config_lib.load_config_file(str(r.cfg / 'base.py'))
  for key, value in changes.items():
    config_lib.set_key(config, key, value)
  r.work.mkdir()
  (r.work / 'config.json').write_text(json.dumps(config.to_dict(), indent=2))
  (r.work / 'metrics.jsonl').write_text('{"step": 10, "split": "validation", "f1_macro": 0.5}\n')
  (r.work / 'checkpoints' / '10').mkdir(parents=True)
  (r.work / 'checkpoints' / '10' / 'state').write_bytes(b'\x00\x01checkpoint bytes')


def _finished_wider_run(r: Root) -> None:
  """data/wide: what a finished run of a wider MLP (32 features, not 16) leaves: summary.json, the best step's
  parameters (the head is re-initialised by default, so only the backbone matters)."""
  import orbax.checkpoint as ocp
  (r.data / 'wide').mkdir()
  (r.data / 'wide' / 'summary.json').write_text('{"best_step": 5}')
  params = {'backbone': {'dense_0': {'kernel': np.zeros((64, 32), np.float32), 'bias': np.zeros(32, np.float32)}}}
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(r.data / 'wide' / 'checkpoints' / '5' / 'state', {'params': params})


def _saved_sweep(r: Root, trials_jsonl: bytes | None = None, sweep_json: bytes | None = None) -> None:
  """A sweep directory as an earlier `ftlab.sweep` of base.py left it: sweep.json, locks, trials.jsonl, a trial."""
  _, _, record = runner.prepare(str(r.cfg / 'base.py'), {}, {}, str(r.work), plan_trials=False)
  record.update(storage=runner.storage_url(str(r.work), runner.Options()), study_name=runner.STUDY_NAME)
  r.work.mkdir()
  (r.work / 'sweep.json').write_bytes(sweep_json if sweep_json is not None else json.dumps(record).encode())
  (r.work / 'sweep.lock').write_bytes(b'')
  (r.work / 'trials.jsonl.lock').write_bytes(b'')
  row = {'id': 'c000-s0', 'config_id': 'c000', 'values': {'optimizer.learning_rate': 1e-3}, 'seed': 0,
         'status': 'complete', 'objective': 0.5, 'workdir': 'trials/c000-s0'}
  (r.work / 'trials.jsonl').write_bytes(trials_jsonl if trials_jsonl is not None
                                        else (json.dumps(row) + '\n').encode())
  (r.work / 'trials' / 'c000-s0').mkdir(parents=True)
  (r.work / 'trials' / 'c000-s0' / 'summary.json').write_text('{"best_step": 20}')


# The catalogue ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
  id: str  # what is wrong
  setup: Callable[[Root], list[str]]  # writes the inputs, returns argv ('{data}' stands for the data folder)
  problem: str  # a fragment of stderr naming what is wrong (key, file, line, option)
  fix: str  # a fragment of stderr naming what to do
  entry: str = 'main'  # 'main' (python -m ftlab.main) or 'sweep' (python -m ftlab.sweep)
  status: int = 2
  marks: tuple = ()


def _args(*extra: str, arg: str = ''):
  """base.py[:arg] and the workdir, then `extra`."""
  return lambda r: r.argv(*extra, arg=arg)


def _with(prepare: Callable[[Root], object], *extra: str, arg: str = ''):
  """prepare(r) writes the inputs first."""
  def setup(r):
    prepare(r)
    return r.argv(*extra, arg=arg)
  return setup


def _files(files: dict, *extra: str, arg: str = ''):
  """Writes {path under data/: content} first."""
  return _with(lambda r: [r.write(path, content) for path, content in files.items()], *extra, arg=arg)


def _own_config(name: str, text: str):
  """A config file of its own (cfg/NAME) instead of base.py."""
  def setup(r):
    (r.cfg / name).write_text(text)
    return [f'--config={r.cfg / name}', f'--workdir={r.work}']
  return setup


SYS_EXIT = 'import sys\n\n\ndef get_config(arg=None):\n  sys.exit(0)\n'

CONFIG_CASES = [
    Case('config-run-longer-than-an-int32-step-counter', _args('--config.train.num_steps=4611686018427387904'),
         'train.num_steps / train.num_epochs: 4.61e+18 steps', 'give a shorter run'),
    Case('config-absurd-epochs', _args('--config.train.num_steps=0', '--config.train.num_epochs=1e300'),
         '1.6e+301 steps (16 per epoch) is more than 2147483647', 'give a shorter run'),
    Case('config-boolean-for-a-float', _args('--config.optimizer.learning_rate=True'),
         '--config.optimizer.learning_rate: expected float, got the boolean True', 'give a float'),
    Case('config-boolean-for-an-int', _args('--config.train.batch_size=False'),
         '--config.train.batch_size: expected int, got the boolean False', 'give a int'),
    Case('config-section-given-one-value', _args('--config.optimizer=sgd'),
         '--config.optimizer: a section of settings, not one value', '--config.optimizer.name=sgd'),
    Case('config-file-calls-sys-exit', _own_config('exits.py', SYS_EXIT), 'exits.py called sys.exit(0) at',
         'a config file must return its config'),
    Case('config-max-length-beyond-the-positions',
         _files({'text/train.csv': _text_rows(), 'vocab.txt': '\n'.join(VOCAB) + '\n'},
                '--config.data.tokenizer.max_length=64', arg='text'),
         'data.tokenizer.max_length', 'model.bert.max_position'),
    Case('config-wrong-type-batch-size', _args('--config.train.batch_size=big'),
         "train.batch_size: expected an int, got 'big'", 'expected an int'),
    Case('config-out-of-range-dropout', _args('--config.model.dropout_rate=1.5'),
         'model.dropout_rate', 'must be in [0, 1), got 1.5'),
    Case('config-unknown-key-typo', _args('--config.optimizer.learning_rat=0.1'),
         '--config.optimizer.learning_rat: unknown key', 'did you mean optimizer.learning_rate?'),
    Case('config-unknown-key-abbreviated-in-file', _args(arg='unknown_key'),
         'optimizer.lr: unknown key', 'did you mean optimizer.learning_rate?'),
    Case('config-unknown-choice-optimizer', _args('--config.optimizer.name=adam'),
         "optimizer.name: 'adam' is not an optimizer", 'choose one of adamw, sgd, adafactor'),
    Case('config-unknown-choice-schedule', _args('--config.schedule.name=cosin'),
         "schedule.name: 'cosin' is not a schedule", 'choose one of constant, linear, cosine'),
    Case('config-eval-every-longer-than-run', _args('--config.eval.every_steps=100'),
         'eval.every_steps: 100 is larger than the run (20 steps)', 'lower it or lengthen the run'),
    Case('config-steps-and-epochs-both-set', _args('--config.train.num_epochs=3.0'),
         'train.num_steps / train.num_epochs: set exactly one of them', 'set the other to 0'),
    Case('config-lp-ft-longer-than-run', _args('--config.optimizer.lp_ft=50 epochs'),
         "optimizer.lp_ft: '50 epochs' (800 steps) is not shorter than the run (20 steps)",
         'shorten it or lengthen the run'),
    Case('config-bad-duration', _args('--config.schedule.warmup=5 weeks'),
         "schedule.warmup: '5 weeks' is not a duration", "a string like '500', '500 steps', '3 epochs'"),
    Case('config-freeze-matches-nothing', _args('--config.optimizer.freeze=^encoder/'),
         "patterns that match no parameter: freeze='^encoder/'", 'Parameter paths look like: backbone/dense_0/bias'),
    Case('config-freeze-bad-regex', _args('--config.optimizer.freeze=(backbone'),
         "optimizer.freeze: '(backbone' is not a valid regex (missing )", 'needs a backslash before it'),
    Case('config-group-unknown-setting', _args("--config.optimizer.groups=[('^head/', {'lr': 10.0})]"),
         "optimizer.groups[0]: unknown setting 'lr'", 'use lr_mult, wd_mult'),
    Case('config-groups-leave-parameters-out', _args("--config.optimizer.groups=[('^head/', {'lr_mult': 10.0})]"),
         'optimizer.groups: parameters in no group: backbone/dense_0/bias', 'add a pattern that covers them'),
    Case('config-lora-target-matches-nothing', _args('--config.lora.target=^encoder/'),
         "lora.target: '^encoder/' matches no dense kernel", 'modules with one: backbone/dense_0, head'),
    Case('config-learning-rate-inf', _args('--config.optimizer.learning_rate=1e999'),
         'optimizer.learning_rate: must be a finite number, got inf', 'set a finite value (the default is 0.001)'),
    Case('config-learning-rate-inf-string', _args('--config.optimizer.learning_rate=inf'),
         "optimizer.learning_rate: expected a number, got 'inf'", 'expected a number'),
    Case('config-learning-rate-nan-in-file', _args(arg='nan_lr'),
         'optimizer.learning_rate: must be a finite number, got nan', 'set a finite value'),
    Case('config-class-weight-inf', _args('--config.train.class_weights=[1.0, 1e999, 1.0, 1.0, 1.0]'),
         'train.class_weights: must be a finite number, got [1.0, inf, 1.0, 1.0, 1.0]', 'set a finite value'),
    Case('config-class-weights-count', _args('--config.train.class_weights=[1.0, 2.0]'),
         'train.class_weights: 2 weights for 5 classes', 'give one per class'),
    Case('config-class-not-in-dataset', _args('--config.data.classes=[5, 42]'),
         'data.classes: labels [42] are not in the dataset', 'list only labels it has'),
    Case('config-pretrained-and-checkpoint', _args('--config.model.pretrained=x.safetensors',
                                                   '--config.init.checkpoint=runs/x'),
         'model.pretrained / init.checkpoint', 'choose one starting point'),
    Case('config-model-takes-other-inputs', _args('--config.model.name=bert'),
         "model.name='bert' takes text, but data.source='digits' gives image examples", 'use a text dataset'),
    Case('config-metric-for-another-task', _args('--config.eval.metric=entity_f1'),
         "eval.metric: 'entity_f1' is for token classification (NER) only", 'use f1_macro or accuracy'),
    Case('config-batch-larger-than-data-with-drop', _args('--config.train.batch_size=100000',
                                                          '--config.data.remainder=drop'),
         'train.batch_size: 100000 is more than the', "lower train.batch_size or set data.remainder to 'spill'"),
    Case('config-batch-size-beyond-memory', _args('--config.train.batch_size=1000000000000'),
         'train.batch_size: a step needs at least 232.8 TiB (the inputs of 1,000,000,000,000 examples 232.8 TiB',
         "more than this machine's memory"),
    Case('config-eval-batch-size-beyond-memory', _args('--config.eval.batch_size=1000000000000'),
         'eval.batch_size: a step needs at least 232.8 TiB', 'lower eval.batch_size'),
    Case('config-key-in-another-section', _args('--config.optimizer.schedule=cosine'),
         '--config.optimizer.schedule: unknown key', 'did you mean schedule.name?'),
    Case('config-key-named-after-another-library', _args('--config.optimizer.warmup_steps=100'),
         '--config.optimizer.warmup_steps: unknown key', 'did you mean schedule.warmup?'),
    Case('config-int-for-a-boolean', _args('--config.model.remat=1'),
         'model.remat: expected true or false', 'got 1 (int)'),
    Case('config-lora-max-rank-below-rank',
         _args('--config.lora.rank=8', '--config.lora.max_rank=4', '--config.lora.target=head'),
         'lora.max_rank: 4 is below lora.rank 8', 'set it to the largest rank of the trials'),
    Case('config-lora-target-bad-regex', _args('--config.lora.target=[', '--config.lora.rank=4'),
         "lora.target: '[' is not a valid regex", 'a literal ( [ . * + ? needs a backslash'),
    Case('config-grad-accum-does-not-split-the-batch', _args('--config.train.grad_accum_steps=3'),
         'train.batch_size 32 does not split into 3 micro-batches', 'make it a multiple of 3'),
    Case('config-metric-unknown', _args('--config.eval.metric=auc'),
         "eval.metric: 'auc' is not a metric", 'choose one of loss, perplexity, accuracy'),
    Case('config-metric-of-recommendation', _args('--config.eval.metric=ndcg@10'),
         "eval.metric: 'ndcg@10' measures recommendation", 'use f1_macro or accuracy'),
    Case('config-classes-repeated', _args('--config.data.classes=[5, 5, 6]'),
         'data.classes: repeated labels in [5, 5, 6]', 'list each label once'),
]

CLI_CASES = [
    Case('cli-missing-config', lambda r: [f'--workdir={r.work}'], '--config: required', '--config=configs/NAME.py'),
    Case('cli-missing-workdir', lambda r: [r.config()], '--workdir: required', '--workdir=DIR'),
    Case('cli-override-without-value', _args('--config.seed'), '--config.seed: needs a value', '--config.seed=VALUE'),
    Case('cli-positional-argument', _args('train'), 'train: unexpected argument', 'usage: python -m ftlab.main'),
    Case('cli-unknown-option', _args('--workdirr=x'), '--workdirr: unknown option', 'usage: python -m ftlab.main'),
    Case('cli-config-file-missing', lambda r: ['--config=cfg/nope.py', f'--workdir={r.work}'],
         "--config: no such file 'cfg/nope.py'", 'give a path like configs/quickstart.py'),
    Case('cli-config-file-syntax-error', _own_config('broken.py', SYNTAX_ERROR),
         'broken.py:5: SyntaxError', 'fix the Python syntax on that line'),
    Case('cli-config-file-without-get-config', _own_config('noget.py', NO_GET_CONFIG),
         'noget.py defines no get_config(arg=None)', 'add one that returns ftlab.config.defaults() with your changes'),
    Case('cli-get-config-returns-dict', _args(arg='returns_dict'),
         'get_config returned dict, not a ConfigDict', 'return ftlab.config.defaults() with your changes'),
    Case('cli-get-config-raises', _args(arg='raises'),
         'base.py failed at', "ValueError: unknown variant 'raises'; use text, idx or images"),
    Case('cli-workdir-is-a-file', _args('--workdir={data}/vocab.txt'),
         '--workdir: {data}/vocab.txt is a file, not a folder', 'give a folder path'),
    Case('cli-workdir-inside-a-file', _args('--workdir={data}/vocab.txt/run'),
         '--workdir: {data}/vocab.txt/run is inside {data}/vocab.txt, a file', 'give a folder path'),
    Case('cli-workdir-empty', _args('--workdir='), '--workdir: empty', 'give the folder of the run'),
    Case('cli-workdir-dangling-symlink',
         _with(lambda r: _links(r, ('link', '/nonexistent/run')), '--workdir={data}/link'),
         '--workdir: {data}/link is a symbolic link to /nonexistent/run, which does not exist', 'point it at a folder'),
    Case('cli-workdir-symlink-loop', _with(lambda r: _links(r, ('a', 'b'), ('b', 'a')), '--workdir={data}/a'),
         '--workdir: {data}/a is a loop of symbolic links', 'give another path'),
    Case('cli-workdir-under-proc', _args('--workdir=/proc/ftlab-run'),
         "--workdir: /proc/ftlab-run is in the kernel's /proc", 'give a folder on a disk'),
    Case('cli-workdir-name-too-long', _args('--workdir={data}/' + 'a' * 300),
         'is 300 bytes, more than the 255 a file system allows', 'give a shorter folder name'),
]

DATA_CASES = [
    Case('data-path-missing', _args('--config.data.path=/nonexistent/reviews', arg='text'),
         '/nonexistent/reviews: does not exist', 'set data.path to the dataset folder'),
    Case('data-text-empty-file', _files({'text/train.csv': ''}, arg='text'),
         'train.csv: has no examples', 'check data.path and data.files'),
    Case('data-csv-row-with-extra-field',
         _files({'text/train.csv': 'text,label\ngood movie,pos\ngood, bad movie,neg\n'}, arg='text'),
         'train.csv:3: expected 2 fields', 'quote fields that contain commas'),
    Case('data-tsv-row-missing-field',
         _files({'text/train.tsv': 'text\tlabel\ngood movie\tpos\nbad movie\n'}, arg='text'),
         'train.tsv:3: expected 2 fields (the header has 2), found 1', 'fix the row'),
    Case('data-jsonl-bad-line',
         _files({'text/train.jsonl': '{"text": "good", "label": "pos"}\n{"text": "bad", label: 1}\n'}, arg='text'),
         'train.jsonl:2: not valid JSON', 'fix the line'),
    Case('data-label-column-missing', _files({'text/train.csv': 'text,category\ngood movie,pos\n'}, arg='text'),
         "train.csv: no column 'label'", 'set data.text.label_column to one of them'),
    Case('data-text-not-utf8', _files({'text/train.csv': _text_rows(4).encode() + b'caf\xe9 movie,pos\n'}, arg='text'),
         'train.csv:6: byte 0xe9', 're-save the file as UTF-8'),
    Case('data-label-not-in-label-names',
         _files({'text/train.csv': _text_rows(6) + 'so-so movie,neutral\n'},
                "--config.data.text.label_names=['neg', 'pos']", arg='text'),
         "train.csv:8: label 'neutral' is not in the label set", 'add it to data.text.label_names'),
    Case('data-files-glob-matches-nothing',
         _files({'text/reviews.csv': _text_rows()}, '--config.data.files.train=train_*.csv', arg='text'),
         "data.files.train='train_*.csv' matches no file (files here: reviews.csv)", 'correct data.files.train'),
    Case('data-split-bad-syntax', _args('--config.data.splits.train=train[:abc]'),
         "data.splits.train='train[:abc]': digits dataset at scikit-learn cannot read this split",
         "use TFDS split syntax, e.g. 'train'"),
    Case('data-split-ends-before-it-starts', _args('--config.data.splits.validation=train[50%:40%]'),
         "data.splits.validation='train[50%:40%]': digits dataset at scikit-learn cannot read this split (the slice "
         'ends before it starts)', "use TFDS split syntax"),
    Case('data-split-not-in-dataset', _args('--config.data.splits.validation=valid'),
         "data.splits.validation='valid': digits dataset at scikit-learn has no split 'valid'",
         "set '' to carve it from train"),
    Case('data-splits-overlap', _files({'text/train.csv': _text_rows(), 'vocab.txt': '\n'.join(VOCAB) + '\n'},
                                       '--config.data.splits.test=train[-5:]', arg='text'),
         "data.splits.train='train' and data.splits.test='train[-5:]' select the same 5 rows",
         'or data.allow_split_overlap=True for a deliberate overlap'),
    Case('data-tokenizer-missing', _files({'text/train.csv': _text_rows()},
                                          '--config.data.tokenizer.path=/nonexistent/vocab.txt', arg='text'),
         '/nonexistent/vocab.txt: no such file', 'set data.tokenizer.path'),
    Case('data-conll-wrong-column-count', _files({'conll/train.txt': 'John B-PER\nlives O\nin O extra\n'}, arg='conll'),
         'train.txt:3: expected 2 columns', 'fix the line'),
    Case('data-conll-bad-tag', _files({'conll/train.txt': 'John X-PER\nlives O\n'}, arg='conll'),
         "train.txt:1: tag 'X-PER' is not an IOB tag", 'set data.conll.tag_column'),
    Case('data-csv-header-names-a-column-twice',
         _files({'text/train.csv': 'text,label,text\ngood,pos,movie\n'}, arg='text'),
         "train.csv: the header names the column 'text' 2 times (columns 1, 3)", 'rename the others'),
    Case('data-csv-empty-text', _files({'text/train.csv': _text_rows(4) + ' ,pos\n'}, arg='text'),
         'train.csv:6: empty text', 'give every example its text or remove the line'),
    Case('data-jsonl-empty-text', _files({'text/train.jsonl': '{"text": "good", "label": "pos"}\n'
                                                              '{"text": "", "label": "neg"}\n'}, arg='text'),
         'train.jsonl:2: empty text', 'remove the line'),
    Case('data-csv-one-class', _files({'text/train.csv': 'text,label\ngood movie,pos\ngreat movie,pos\n'}, arg='text'),
         "train.csv: every training example has the label 'pos', one class", 'check data.text.label_column'),
    Case('data-csv-nul-byte', _files({'text/train.csv': _text_rows(3) + 'good\0movie,pos\n'}, arg='text'),
         'train.csv:5: a NUL byte', 're-save it as UTF-8'),
    Case('data-csv-header-repeated-inside',
         _files({'text/train.csv': _text_rows(3) + 'text,label\n' + _text_rows(2)[11:]}, arg='text'),
         'train.csv:5: repeats the header row', 'remove the line'),
    Case('data-csv-every-bad-row-at-once',
         _files({'text/train.csv': 'text,label\ngood movie,pos\ngood, bad movie,neg\nfine,\n,neg\n'}, arg='text'),
         'train.csv: 3 problems: 3: expected 2 fields (the header has 2), found 3',
         '4: empty label; give every example a label or remove the line; 5: empty text'),
    Case('data-jsonl-every-bad-line-at-once',
         _files({'text/train.jsonl': '{"text": "good", "label": "pos"}\n[1]\n{"text": "bad", "label": 1.5}\n'},
                arg='text'),
         'train.jsonl: 2 problems: 2: expected a JSON object', '3: label 1.5 is a JSON number'),
    Case('data-conll-cr-only-line-endings', _files({'conll/train.txt': 'John B-PER\rlives O\r\rin O\r'}, arg='conll'),
         'train.txt: its lines end in CR alone (old Mac line endings)', 'convert them to LF'),
    Case('data-conll-every-bad-line-at-once',
         _files({'conll/train.txt': 'John B-PER\nlives O extra\n\nin X-LOC\nParis I-LOC\n'}, arg='conll'),
         'train.txt: 2 problems: 2: expected 2 columns (as on the first token line), found 3',
         "4: tag 'X-LOC' is not an IOB tag"),
    Case('data-conll-nul-byte', _files({'conll/train.txt': 'John B-PER\nlives\0 O\n'}, arg='conll'),
         'train.txt:2: a NUL byte', 're-save it as UTF-8'),
    Case('data-idx-truncated', _files({'idx/train-images-idx3-ubyte': _idx_images(10)[:-5],
                                       'idx/train-labels-idx1-ubyte': _idx_labels(10)}, arg='idx'),
         'train-images-idx3-ubyte: truncated', 'download it again'),
    Case('data-idx-images-and-labels-swapped',
         _files({'idx/a.idx': _idx_images(10), 'idx/b.idx': _idx_labels(10)}, '--config.data.files.train=b.idx,a.idx',
                arg='idx'),
         'b.idx: IDX magic 2049', 'are the images and labels files swapped?'),
    Case('data-idx-gz-not-gzip', _files({'idx/train-images-idx3-ubyte.gz': _idx_images(10),
                                         'idx/train-labels-idx1-ubyte.gz': gzip.compress(_idx_labels(10))}, arg='idx'),
         'train-images-idx3-ubyte.gz: named .gz but is not gzip-compressed', 'rename it without .gz'),
    Case('data-image-not-readable', _with(lambda r: _image_folder(r, corrupt=True), arg='images'),
         'broken.png: not a readable image', 'remove or replace the file'),
    Case('data-segmentation-mask-size-differs', _with(lambda r: _segmentation_folder(r, mask_height=2),
                                                      arg='segmentation'),
         'trainannot/3.png: the mask is 2x4 but its image', 'masks must match their images pixel for pixel'),
    Case('data-segmentation-vit-crop-not-eval-size', _with(_segmentation_folder, '--config.model.name=vit',
                                                           '--config.model.variant=pico/4',
                                                           '--config.data.segmentation.crop=[8,8]', arg='segmentation'),
         'data.segmentation.crop=[8, 8]: a ViT keeps the position embeddings of one image size',
         'set the crop to [32, 32] or [0, 0]'),
    Case('data-detection-box-outside-image', _with(lambda r: _detection_folder(r, box=(1, 1, 9, 3)), arg='detection'),
         '2.xml: box (1, 1, 9, 3) is outside the 4x4 image', 'fix its coordinates'),
    Case('data-detection-xml-unreadable', _with(lambda r: _detection_folder(r, xml='<annotation><size>'),
                                                arg='detection'),
         '2.xml: cannot read the annotation XML', 'fix or remove the file'),
    Case('data-image-folder-without-classes', _files({'images/loose.png': _png((0, 0, 0))}, arg='images'),
         'images: has no class sub-folders', 'one folder per class'),
]

WEIGHT_CASES = [
    Case('init-checkpoint-not-a-run',
         _files({'notarun/readme.txt': 'hello'}, '--config.init.checkpoint={data}/notarun'),
         "init.checkpoint: '{data}/notarun' is not an ftlab run directory",
         'point init.checkpoint at the --workdir of a finished ftlab run'),
    Case('init-checkpoint-unfinished-run',
         _files({'unfinished/config.json': '{}', 'unfinished/checkpoints/10/state': b'x'},
                '--config.init.checkpoint={data}/unfinished'),
         "init.checkpoint: '{data}/unfinished' holds no summary.json", 'finish that run (rerun its command)'),
    Case('init-checkpoint-shapes-differ', _with(_finished_wider_run, '--config.init.checkpoint={data}/wide'),
         'backbone/dense_0/kernel: checkpoint (64, 32) vs model (64, 16)',
         'Re-initialise them with init.reinit'),
    Case('pretrained-folder-without-config-json', _files({'bert_model/model.safetensors': b'x'}, arg='bert_pretrained'),
         'model.pretrained: {data}/bert_model has no config.json',
         'a Hugging Face model folder holds config.json and model.safetensors'),
    Case('pretrained-corrupt-safetensors',
         _with(lambda r: (_bert_folder(r), r.write('text/train.csv', _text_rows()),
                          r.write('bert_model/model.safetensors', b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": broken')),
               arg='bert_pretrained'),
         'model.pretrained: cannot read the weights in {data}/bert_model', 'download them again'),
    Case('pretrained-npz-needs-pickle',
         _with(lambda r: np.savez(r.data / 'vit.npz', **{'params/embedding/kernel': np.array([{'a': 1}], object)}),
               arg='vit_pretrained'),
         'model.pretrained: {data}/vit.npz: cannot read the weights: it holds pickled Python objects',
         'save it again with numpy arrays only'),
    Case('pretrained-path-missing',
         _args('--config.model.pretrained=/nonexistent/vit.safetensors', arg='vit_pretrained'),
         'model.pretrained: /nonexistent/vit.safetensors: no such file', 'set model.pretrained to the'),
]

SWEEP_CASES = [
    Case('sweep-unknown-swept-key', _args(arg='unknown_swept_key'),
         "sweep.params['optimizer.learning_rat']: not a config key", 'did you mean optimizer.learning_rate?',
         entry='sweep'),
    Case('sweep-empty-value-list', _args(arg='empty_values'),
         "sweep.params['optimizer.learning_rate']", 'takes a non-empty list of values', entry='sweep'),
    Case('sweep-variant-unknown-key', _args(arg='bad_variant'),
         "variant 'frozen' sets 'optimizer.freez'", 'did you mean optimizer.freeze?', entry='sweep'),
    Case('sweep-bayes-low-above-high', _args(arg='bayes_low_above_high'),
         "sweep.params['optimizer.learning_rate']", 'loguniform needs low < high; got 0.01 and 0.0001', entry='sweep'),
    Case('sweep-bayes-log-of-zero', _args(arg='bayes_log_of_zero'),
         "sweep.params['optimizer.learning_rate']", 'loguniform needs low > 0; got 0', entry='sweep'),
    Case('sweep-random-infinite-bound', _args(arg='random_inf_bound'),
         "sweep.params['optimizer.learning_rate']", 'loguniform needs finite bounds; got 0.0001 and inf',
         entry='sweep'),
    Case('sweep-bayes-range-outside-schema', _args(arg='bayes_bad_edge'),
         "trial {'train.label_smoothing': 1.0}", 'train.label_smoothing: must be in [0, 1), got 1.0', entry='sweep'),
    Case('sweep-trial-config-out-of-range', _args(arg='bad_trial'),
         "trial {'model.dropout_rate': 1.5}", 'model.dropout_rate: must be in [0, 1), got 1.5', entry='sweep'),
    Case('sweep-grid-value-inf', _args("--sweep.params={'optimizer.learning_rate': [1e-3, 1e999]}"),
         "trial {'optimizer.learning_rate': inf}", 'optimizer.learning_rate: must be a finite number', entry='sweep'),
    Case('sweep-vectorize-with-bayes', _args(arg='bayes_vectorized'),
         'sweep.vectorize: a bayes sweep', "drop vectorize, or use kind 'random'", entry='sweep'),
    Case('sweep-no-trial-budget', _args(arg='no_budget'),
         'sweep.num_trials: 0', 'needs a budget of at least 1', entry='sweep'),
    Case('sweep-unknown-kind', _args('--sweep.kind=grdi'),
         "sweep.kind: 'grdi' is not one of", 'grid, zip, random, bayes', entry='sweep'),
    Case('sweep-repeated-seeds', _args('--sweep.seeds=[0, 0]'),
         'sweep.seeds: [0, 0]', 'give a non-empty list of distinct integers', entry='sweep'),
    Case('sweep-unknown-override', _args('--sweep.num_trial=3'),
         '--sweep.num_trial: unknown sweep option', 'use one of kind, params', entry='sweep'),
    Case('sweep-override-unparsable-literal', _args('--sweep.params={[]: 1}'),
         'sweep.params: give a dict of config key -> values', "e.g. {'optimizer.learning_rate'", entry='sweep'),
    Case('sweep-bad-stale-after', _args('--stale-after=soon'),
         "--stale-after: 'soon' is not a number of seconds", '--stale-after=300', entry='sweep'),
    Case('sweep-negative-stale-after', _args('--stale-after=-5'),
         '--stale-after: -5 seconds is not more than the 30 s between', '--stale-after=300', entry='sweep'),
    Case('sweep-storage-driver-missing', _args('--storage=mysql://ftlab@127.0.0.1:1/sweeps'),
         'the database driver MySQLdb is not installed', 'pip install mysqlclient', entry='sweep'),
    Case('sweep-storage-cannot-be-opened', _args('--storage=sqlite:////nonexistent/folder/optuna.db'),
         "sqlite:////nonexistent/folder/optuna.db: the sweep's Optuna storage cannot be opened",
         'its folder /nonexistent/folder does not exist; create it or give another --storage', entry='sweep'),
    Case('sweep-worker-on-another-storage', _with(_saved_sweep, '--storage=sqlite:////tmp/elsewhere/optuna.db'),
         'shares its trials through sqlite:///', 'but this worker would use sqlite:////tmp/elsewhere/optuna.db; give '
         '--storage=sqlite:///', entry='sweep'),
    Case('sweep-stale-after-within-the-heartbeat', _args('--stale-after=10'),
         "--stale-after: 10 seconds is not more than the 30 s between a worker's heartbeats", '--stale-after=300',
         entry='sweep'),
    Case('sweep-workdir-is-a-file', _args('--workdir={data}/vocab.txt'),
         '--workdir: {data}/vocab.txt is a file, not a folder', 'give a folder path', entry='sweep'),
    Case('sweep-config-without-get-sweep', _own_config('nosweep.py', NO_GET_SWEEP),
         'nosweep.py defines no get_sweep(arg=None)', 'add one next to get_config', entry='sweep'),
    Case('sweep-corrupt-trials-jsonl-line',
         _with(lambda r: _saved_sweep(r, trials_jsonl=b'{"id": "c000-s0", "status": "complete"}\n'
                                                     b'{"id": "c001-s0", "status": \n{"id": "c002"}')),
         'trials.jsonl, line 2: not a JSON row', 'delete or repair that line and rerun', entry='sweep'),
    Case('sweep-corrupt-sweep-json', _with(lambda r: _saved_sweep(r, sweep_json=b'{"config": "base.py", ')),
         'sweep.json: not valid JSON', 'start the sweep in a new --workdir', entry='sweep'),
    Case('sweep-definition-changed', _with(_saved_sweep, '--sweep.seeds=[0, 1]'),
         'holds a different sweep', 'use a new --workdir', entry='sweep'),
]

WORKDIR_CASES = [
    Case('workdir-holds-the-users-files', _with(_users_folder),
         '/work holds files ftlab did not write (metrics.jsonl, notes.txt)', 'give a new or empty folder'),
    Case('workdir-is-a-sweeps-folder', _with(_saved_sweep), "is a sweep's folder",
         'resume it with python -m ftlab.sweep'),
    Case('sweep-workdir-is-a-runs-folder', _with(_saved_run), "is a run's folder (python -m ftlab.main)",
         'give the sweep a folder of its own', entry='sweep'),
    Case('sweep-workdir-holds-the-users-files', _with(_users_folder), 'holds files ftlab did not write',
         'give a new or empty folder', entry='sweep'),
    Case('resume-config-differs', _with(lambda r: _saved_run(r, **{'optimizer.name': 'sgd'})),
         "optimizer.name: 'sgd' in the workdir, 'adamw' now", 'use a new workdir or the same config'),
    Case('resume-config-json-corrupt', _with(lambda r: (_saved_run(r), (r.work / 'config.json').write_text('{"seed"'))),
         'config.json is not a readable run config', 'restore it from a backup, or use a new workdir'),
]

CASES = CONFIG_CASES + CLI_CASES + DATA_CASES + WEIGHT_CASES + SWEEP_CASES + WORKDIR_CASES
BY_ID = {c.id: c for c in CASES}
ENTRIES = {'main': ftlab_main.main, 'sweep': ftlab_sweep.main}


def _fill(text: str, r: Root) -> str:
  return text.replace('{data}', str(r.data))


def _check(case: Case, r: Root, before: dict, status, err: str) -> None:
  assert snapshot(r.path) == before, f'{case.id}: files changed on disk\n{err}'
  assert status == case.status, f'{case.id}: exit status {status}, expected {case.status}\n{err}'
  assert 'Traceback' not in err, err
  assert _fill(case.problem, r) in err, f'{case.id}: the problem {case.problem!r} is not named\n{err}'
  assert _fill(case.fix, r) in err, f'{case.id}: the fix {case.fix!r} is not named\n{err}'


@pytest.mark.parametrize('case', [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('FTLAB_COMPILATION_CACHE', 'off')  # else a run that got through would set jax's cache folder
  monkeypatch.chdir(tmp_path)
  r = Root(tmp_path)
  argv = [_fill(a, r) for a in case.setup(r)]
  before = snapshot(tmp_path)
  capsys.readouterr()
  try:
    status = ENTRIES[case.entry](argv)
  except SystemExit as exit_:
    status = exit_.code
  _check(case, r, before, status, capsys.readouterr().err)


def test_the_catalogue_covers_every_kind_of_input():
  assert len(CASES) >= 36 and len(BY_ID) == len(CASES)
  kinds = {c.id.split('-')[0] for c in CASES}
  assert kinds == {'config', 'cli', 'data', 'init', 'pretrained', 'sweep', 'resume', 'workdir'}


@pytest.mark.parametrize('case_id', ['config-unknown-choice-optimizer', 'sweep-corrupt-trials-jsonl-line'])
def test_the_commands_exit_with_the_same_status(tmp_path, case_id):
  """`python -m ftlab.main` (the SystemExit path) and `python -m ftlab.sweep` (main's return value) as processes."""
  case = BY_ID[case_id]
  r = Root(tmp_path)
  argv = [_fill(a, r) for a in case.setup(r)]
  before = snapshot(tmp_path)
  env = {**os.environ, 'FTLAB_COMPILATION_CACHE': 'off', 'PYTHONPATH': REPO}
  proc = subprocess.run([sys.executable, '-m', f'ftlab.{case.entry}', *argv], cwd=tmp_path, env=env,
                        capture_output=True, text=True, check=False)
  _check(case, r, before, proc.returncode, proc.stderr)


@pytest.mark.parametrize('command', ['main', 'sweep', 'report', 'evaluate', 'explain', 'export', 'generate', 'compare'])
def test_every_command_answers_help_with_its_usage(command, capsys):
  import importlib
  try:
    status = importlib.import_module(f'ftlab.{command}').main(['--help'])
  except SystemExit as stop:  # argparse's commands
    status = stop.code
  out = capsys.readouterr().out
  assert status in (0, None) and f'python -m ftlab.{command}' in out, out
