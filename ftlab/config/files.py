"""Config files: `configs/NAME.py[:ARG]` is a Python file whose get_config(arg) returns the run's ConfigDict (and,
for sweeps, get_sweep(arg) its sweep). A file that fails is reported with the user's failing line."""
from __future__ import annotations

import ml_collections

from ftlab.config.errors import ConfigError


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


def sibling(config_file: str, name: str):
  """The module NAME.py beside `config_file` (helpers that several config files share, e.g. experiments/
  study_base.py), loaded by its path: a config file imports its neighbours without a sys.path entry."""
  import os
  return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), f'{name}.py'))


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
  except SystemExit as e:  # sys.exit() or exit() in the file: a config's job is to return one, not to end the command
    frame = traceback.extract_tb(e.__traceback__)[-1]
    raise ConfigError([f'--config: {path} called sys.exit({e.code!r}) at {frame.filename}:{frame.lineno}; a config '
                       'file must return its config (raise an exception to refuse an arg)']) from None
  except Exception as e:  # the user's file: point at their line
    if isinstance(e, SyntaxError) and e.filename:  # from the compiler: the traceback ends in importlib, not there
      where, what = f'{e.filename}:{e.lineno}', f'{type(e).__name__}: {e.msg}; fix the Python syntax on that line'
    else:
      frame = traceback.extract_tb(e.__traceback__)[-1]
      where, what = f'{frame.filename}:{frame.lineno}', f'{type(e).__name__}: {e}'
    raise ConfigError([f'--config: {path} failed at {where}: {what}']) from e
