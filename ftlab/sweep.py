"""A whole ablation in one command: `python -m ftlab.sweep --config=configs/NAME.py[:ARG] --workdir=DIR [options]`.

Runs the sweep that the config file's get_sweep(arg) defines (see ftlab/sweeps/space.py): every trial is a normal
ftlab run in DIR/trials/<id>, one row per finished trial goes to DIR/trials.jsonl, and DIR/report.md with
DIR/plots/*.png is written at the end. Rerunning the same command resumes: finished trials are not rerun and an
interrupted one resumes from its checkpoint. Several processes (on one machine, or several sharing --storage)
given the same command split the trials between them.

Options:
  --config.KEY=VALUE   override a key of the base config, as in ftlab.main
  --sweep.KEY=VALUE    override a key of the sweep definition (kind, seeds, metric, direction, num_trials, ...)
  --storage=URL        the Optuna storage shared by the workers (default sqlite:///DIR/optuna.db)
  --study=NAME         the study's name in that storage (default 'ftlab')
  --stale-after=SECS   a trial of another machine silent for this long is taken over (default 300)
  --report=false       do not write the report at the end (python -m ftlab.report DIR writes it later)
Errors in the config, the sweep or any trial's config are reported together before any compute (exit status 2).
A damaged trials.jsonl, sweep.json or Optuna storage is reported with its location (exit status 2). On SIGTERM the
trial in progress saves a checkpoint and the sweep exits with status 143; rerunning the command resumes it. A
workdir that cannot be written (permission denied, read-only, disk full) exits with status 4.
"""
from __future__ import annotations

import ast
import sys

from ftlab import cli, malloc
from ftlab import config as config_lib
from ftlab import compiled, folders, preemption
from ftlab import workdir as workdir_lib
from ftlab.sweeps import records, runner

USAGE = ('usage: python -m ftlab.sweep --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...] '
         '[--sweep.KEY=VALUE ...] [--storage=URL] [--study=NAME] [--stale-after=SECS] [--report=false]')
OPTIONS = ('storage', 'study', 'stale-after', 'report')


def parse(argv: list[str]):
  """argv -> (config file, workdir, config overrides, sweep overrides, runner.Options); ConfigError on problems."""
  rest, sweep_overrides, extra, problems = [], {}, {}, []
  for arg in argv:
    name, eq, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', '')
    if name.startswith('sweep.'):
      sweep_overrides[name[len('sweep.'):]] = _literal(value)
    elif name in OPTIONS:
      if not eq:
        problems.append(f'--{name}: needs a value (--{name}=VALUE)')
      extra[name] = value
    else:
      rest.append(arg)
  options, raw_overrides, more = cli.split_args(rest)
  problems += [p.replace(cli.USAGE, USAGE) for p in more]
  if 'workdir' in options:
    problems += folders.problems(options['workdir'], 'sweep')
  schema = dict(config_lib.flatten(config_lib.defaults()))
  config_overrides = {key: cli.parse_value(raw, schema.get(key, '')) for key, raw in raw_overrides}
  opts = runner.Options()
  opts.storage = extra.get('storage', '')
  opts.study_name = extra.get('study', runner.STUDY_NAME)
  try:
    opts.stale_after = float(extra.get('stale-after', runner.STALE_AFTER_SECONDS))
  except ValueError:
    problems.append(f'--stale-after: {extra["stale-after"]!r} is not a number of seconds; give one, e.g. '
                    '--stale-after=300')
  else:
    if not opts.stale_after > runner.HEARTBEAT_SECONDS:  # else live workers' trials would be taken over
      problems.append(f'--stale-after: {extra["stale-after"]} seconds is not more than the '
                      f'{runner.HEARTBEAT_SECONDS:g} s between a worker\'s heartbeats, so live trials would be taken '
                      'over; give the silence after which another machine\'s trial counts as abandoned, e.g. '
                      '--stale-after=300')
  if extra.get('report', 'true').lower() not in ('true', 'false'):
    problems.append(f'--report: {extra["report"]!r}; use true or false')
  opts.report = extra.get('report', 'true').lower() != 'false'
  if problems:
    raise config_lib.ConfigError(problems)
  return options['config'], options['workdir'], config_overrides, sweep_overrides, opts


def _literal(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    # TypeError: an unhashable dict key ('{[]: 1}'); MemoryError, RecursionError: nesting too deep for the parser.
    return text  # left as a string: the sweep's validation names the key and what it takes


def check_workdir(workdir: str) -> None:
  """Reads the records an earlier sweep left in `workdir` (sweep.json, trials.jsonl), so that a damaged one is
  reported (RecordError) before the sweep opens its storage or takes a trial: nothing in the workdir changes."""
  records.read_sweep(workdir)
  records.read(workdir)


def main(argv: list[str]) -> int:
  if cli.asked_for_help(argv, __doc__):
    return 0
  workdir = ''
  try:
    config_file, workdir, config_overrides, sweep_overrides, options = parse(argv)
    preemption.install()
    check_workdir(workdir)
    compiled.enable_persistent_cache(workdir)
    rows = runner.run(config_file, workdir, config_overrides=config_overrides, sweep_overrides=sweep_overrides,
                      options=options)
  except config_lib.ConfigError as err:
    cli.exit_on_config_error(err)
  except records.RecordError as err:
    print(f'ftlab.sweep: {err}', file=sys.stderr)
    return 2
  except Exception as err:  # preempted: the trial in progress saved its checkpoint; its row is written on resume
    status = workdir_lib.stopped(err, workdir, 'ftlab.sweep')
    if status is None:
      raise
    return status
  counts = {}
  for row in rows:
    counts[row['status']] = counts.get(row['status'], 0) + 1
  print(f'ftlab.sweep: {workdir}: {len(rows)} trials recorded ({", ".join(f"{n} {s}" for s, n in counts.items())})')
  return 0


if __name__ == '__main__':
  malloc.tune()  # before jax starts its threads (see ftlab/malloc.py)
  sys.exit(main(sys.argv[1:]))
