"""Config validation and the CLI: every problem at once, exit status 2, nothing written."""
import hashlib
import os

import pytest

from conftest import ROOT, run_ftlab, small_config
from ftlab import cli
from ftlab import config as config_lib
from ftlab import writers


def test_defaults_and_shipped_configs_are_valid():
  assert config_lib.validate(config_lib.defaults()) == []
  for arg in (None, 'frozen'):
    spec = os.path.join(ROOT, 'configs', 'quickstart.py') + (f':{arg}' if arg else '')
    assert config_lib.validate(config_lib.load_config_file(spec)) == []


def test_every_problem_is_reported_at_once():
  c = small_config()
  c.optimizer.learnin_rate = 1e-3  # unknown key
  c.train.batch_size = '32'  # wrong type
  c.model.dropout_rate = 1.0  # out of range
  c.optimizer.learning_rate = 0.0
  c.schedule.warmup = 'two epochs'
  problems = config_lib.validate(c)
  text = '\n'.join(problems)
  assert 'optimizer.learnin_rate: unknown key (did you mean optimizer.learning_rate?)' in text
  assert "train.batch_size: expected an int, got '32'" in text
  assert 'model.dropout_rate: must be in [0, 1), got 1.0' in text
  assert 'optimizer.learning_rate: must be > 0' in text
  assert 'schedule.warmup' in text
  assert len(problems) == 5, problems


@pytest.mark.parametrize('key,value,needle', [
    ('model__dropout_rate', -0.1, 'model.dropout_rate: must be in [0, 1)'),
    ('optimizer__learning_rate', -1e-3, 'optimizer.learning_rate: must be > 0'),
    ('optimizer__name', 'adam_w', "optimizer.name: 'adam_w' is not an optimizer"),
    ('optimizer__freeze', '(', 'optimizer.freeze: '),
    ('train__num_epochs', 3.0, 'set exactly one of them'),
    ('eval__metric', 'f1', "eval.metric: 'f1' is not a metric"),
    ('train__label_smoothing', 1.0, 'train.label_smoothing: must be in [0, 1)'),
    ('model__norm', 'yes', 'model.norm: expected true or false'),
])
def test_out_of_range_and_wrong_type_values(key, value, needle):
  problems = config_lib.validate(small_config(**{key: value}))
  assert any(needle in p for p in problems), problems


def test_run_checks_device_divisibility_and_eval_cadence():
  c = small_config(train__batch_size=12, eval__every_steps=50)
  problems = config_lib.check_run(c, num_devices=8, total_steps=40, steps_per_epoch=10)
  text = '\n'.join(problems)
  assert 'train.batch_size: 12 does not divide by the 8 devices; use a multiple of 8' in text
  assert 'eval.every_steps: 50 is larger than the run (40 steps)' in text


def test_config_differences_ignore_run_length_only():
  a = small_config().to_dict()
  b = small_config(train__num_steps=80, optimizer__learning_rate=0.5).to_dict()
  assert config_lib.config_differences(a, b) == ['optimizer.learning_rate: 0.001 in the workdir, 0.5 now']


def test_overrides_parse_by_schema_type_and_name_unknown_keys():
  c = small_config()
  problems = cli.apply_overrides(c, [('optimizer.learning_rate', '3e-4'), ('schedule.warmup', '100'),
                                     ('model.features', '[8, 8]'), ('model.norm', 'false'),
                                     ('optimizer.learning_rat', '1')])
  assert c.optimizer.learning_rate == 3e-4 and c.schedule.warmup == '100'
  assert c.model.features == [8, 8] and c.model.norm is False
  assert problems == ['--config.optimizer.learning_rat: unknown key (did you mean optimizer.learning_rate?)']


def _main(*args, cwd):
  """`python -m ftlab.main ARGS` in `cwd`, as a process forked from the test's fork server (its output beside cwd)."""
  return run_ftlab('ftlab.main', list(args), cwd=cwd, log_base=f'{cwd}.log')


def _tree_hash(path):
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      digest.update(full.encode())
      with open(full, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()


def test_cli_config_errors_exit_2_and_write_nothing(tmp_path):
  workdir = tmp_path / 'run'
  result = _main('--config', os.path.join(ROOT, 'configs', 'quickstart.py'), '--workdir', str(workdir),
                 '--config.optimizer.learning_rate=-1', '--config.optimizer.lerning_rate=1',
                 '--config.model.dropout_rate=1.5', cwd=tmp_path)
  assert result.returncode == 2, result.stderr
  assert 'the config has 3 problems' in result.stderr
  assert 'did you mean optimizer.learning_rate?' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not workdir.exists() and os.listdir(tmp_path) == []


def test_cli_refuses_a_workdir_holding_another_config_and_leaves_it_untouched(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  writers.write_json_atomic(str(workdir / 'config.json'),
                            config_lib.load_config_file(os.path.join(ROOT, 'configs', 'quickstart.py')).to_dict())
  (workdir / 'metrics.jsonl').write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
  before = _tree_hash(workdir)
  result = _main('--config', os.path.join(ROOT, 'configs', 'quickstart.py'), '--workdir', str(workdir),
                 '--config.optimizer.weight_decay=0.3', cwd=tmp_path)
  assert result.returncode == 2
  assert 'optimizer.weight_decay: 0.0001 in the workdir, 0.3 now' in result.stderr
  assert _tree_hash(workdir) == before


def test_cli_usage_errors(tmp_path):
  result = _main('--config', 'configs/nope.py', cwd=tmp_path)
  assert result.returncode == 2
  assert "no such file 'configs/nope.py'" in result.stderr and '--workdir: required' in result.stderr
  assert os.listdir(tmp_path) == []


def test_a_run_saved_before_a_key_existed_still_resumes_with_its_default():
  saved = config_lib.defaults().to_dict()
  del saved['optimizer']['lr_batch_scaling']  # as a config.json written before the key was added
  current = config_lib.defaults().to_dict()
  assert config_lib.config_differences(saved, current) == []
  current['optimizer']['lr_batch_scaling'] = 'linear'
  assert config_lib.config_differences(saved, current) == [
      "optimizer.lr_batch_scaling: '<absent>' in the workdir, 'linear' now"]
