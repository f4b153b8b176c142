"""ftlab as an installed package: the console commands of pyproject.toml are the `python -m ftlab.*` commands, and no
file of the repository edits sys.path to import ftlab or a neighbour."""
import os
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT


def _scripts() -> dict:
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']['scripts']


@pytest.mark.parametrize('name', sorted(_scripts()))
def test_every_console_command_runs_its_python_m_command(name, monkeypatch, capsys):
  import importlib
  module, function = _scripts()[name].split(':')
  command = getattr(importlib.import_module(module), function)
  monkeypatch.setattr(sys, 'argv', [name, '--help'])
  try:
    status = command()
  except SystemExit as stop:  # argparse's commands
    status = stop.code
  target = 'main' if name == 'ftlab-train' else name.removeprefix('ftlab-')
  assert status in (0, None) and f'python -m ftlab.{target}' in capsys.readouterr().out


def test_no_file_edits_sys_path():
  edits = re.compile(r'^\s*sys\.path\.(insert|append|extend)\(|^\s*sys\.path\s*[+]?=', re.M)
  found = []
  for folder in ('ftlab', 'configs', 'experiments', 'benchmarks', 'tests'):
    for root, _, names in os.walk(os.path.join(ROOT, folder)):
      for name in names:
        if name.endswith('.py'):
          with open(os.path.join(root, name), encoding='utf-8') as f:
            if edits.search(f.read()):
              found.append(os.path.relpath(os.path.join(root, name), ROOT))
  assert found == []


def test_an_experiment_loads_its_shared_study_base_from_any_folder(tmp_path):
  """A study's config file reads experiments/study_base.py beside it, whatever the working folder."""
  code = ('from ftlab import config; import sys; '
          "c = config.load_config_file(sys.argv[1]); print(c.optimizer.weight_decay is not None)")
  out = subprocess.run([sys.executable, '-c', code, os.path.join(ROOT, 'experiments', 'weight_decay.py')],
                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': ROOT})
  assert out.returncode == 0 and out.stdout.strip() == 'True', out.stderr[-2000:]
