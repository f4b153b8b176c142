"""Command-line parsing shared by ftlab's commands: `--config=FILE[:ARG]`, `--workdir=DIR`, `--config.a.b=VALUE`.

ml_collections' config_flags stops at the first bad override with absl's exit status 1; ftlab collects every
problem (bad overrides and the config's own) into one report and exits with status 2, so this is written here.
"""
from __future__ import annotations

import ast
import sys

import ml_collections

from ftlab import config as config_lib
from ftlab import folders

USAGE = ('usage: python -m ftlab.main --config=configs/NAME.py[:ARG] --workdir=DIR '
         '[--config.KEY=VALUE ...]')


def parse_value(text: str, default):
  """A command-line string -> a Python value of the kind the schema default suggests."""
  if isinstance(default, str):
    return text
  if isinstance(default, bool) and text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    # TypeError: an unhashable dict key ('{[]: 1}'); MemoryError, RecursionError: nesting too deep for the parser.
    return text  # left as a string: validation names the key and the expected type


def split_args(argv: list[str], required=('config', 'workdir')) -> tuple[dict[str, str], list[tuple[str, str]],
                                                                          list[str]]:
  """argv -> ({'config': ..., 'workdir': ...}, [(dotted key, raw value)], problems)."""
  options, overrides, problems = {}, [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if not arg.startswith('--'):
      problems.append(f'{arg}: unexpected argument; {USAGE}')
      i += 1
      continue
    name, eq, value = arg[2:].partition('=')
    if not eq:
      if i + 1 >= len(argv) or argv[i + 1].startswith('--'):
        problems.append(f'--{name}: needs a value (--{name}=VALUE)')
        i += 1
        continue
      value = argv[i + 1]
      i += 1
    i += 1
    if name.startswith('config.'):
      overrides.append((name[len('config.'):], value))
    elif name in ('config', 'workdir'):
      options[name] = value
    else:
      problems.append(f'--{name}: unknown option; {USAGE}')
  for name in required:
    if name not in options:
      problems.append(f'--{name}: required; {USAGE}')
  return options, overrides, problems


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> list[str]:
  """Sets each --config.KEY=VALUE on `config`; returns problems for keys that do not exist."""
  schema = dict(config_lib.flatten(config_lib.defaults()))
  problems = []
  sections = {k.rsplit('.', i)[0] for k in schema for i in range(1, k.count('.') + 1)}
  for key, raw in overrides:
    if key in sections:
      inside = sorted((k.count('.'), not k.endswith('.name'), k) for k in schema if k.startswith(key + '.'))
      problems.append(f'--config.{key}: a section of settings, not one value; set one of its keys, e.g. '
                      f'--config.{inside[0][2]}={raw}')
      continue
    if key not in schema:
      problems.append(f'--config.{key}: unknown key{config_lib.closest_key(key, sorted(schema))}')
      continue
    value = parse_value(raw, schema[key])
    if isinstance(value, bool) and not isinstance(schema[key], bool):  # a ConfigDict would take True as 1
      problems.append(f'--config.{key}: expected {type(schema[key]).__name__}, got the boolean {raw}; give a '
                      f'{type(schema[key]).__name__} (the default is {schema[key]!r})')
      continue
    try:
      config_lib.set_key(config, key, value)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
      # A section the config file replaced, a dict with keys ConfigDict refuses, or a float key given a huge int.
      problems.append(f'--config.{key}: cannot be set to {raw!r} ({err}); keep every section above it a section in '
                      f"the config file, and give a value of the schema's type ({type(schema[key]).__name__}; dict "
                      'keys must be strings without dots)')
  return problems


def asked_for_help(argv: list[str], doc: str) -> bool:
  """Prints a command's docstring when argv asks for help (-h, --help); returns whether it did."""
  if any(a in ('-h', '--help') for a in argv):
    print(doc.strip())
    return True
  return False


def parse(argv: list[str], *, need_workdir: bool = True) -> tuple[ml_collections.ConfigDict, str]:
  """argv -> (validated config, workdir); raises config.ConfigError with every problem found."""
  options, overrides, problems = split_args(argv, ('config', 'workdir') if need_workdir else ('config',))
  if 'workdir' in options:
    problems += folders.problems(options['workdir'], 'run')
  if 'config' not in options:
    raise config_lib.ConfigError(problems)
  try:
    config = config_lib.load_config_file(options['config'])
  except config_lib.ConfigError as err:
    raise config_lib.ConfigError(problems + err.problems) from err
  problems += apply_overrides(config, overrides)
  problems += config_lib.validate(config)
  if problems:
    raise config_lib.ConfigError(problems)
  return config, options.get('workdir', '')


def exit_on_config_error(err: config_lib.ConfigError):
  print(err.report(), file=sys.stderr)
  sys.exit(2)
