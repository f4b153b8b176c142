"""Evaluate a finished run elsewhere: `python -m ftlab.evaluate WORKDIR [--checkpoint best|latest|STEP] [--out DIR]
[--config.data.KEY=VALUE ...]`.

The run's own config (WORKDIR/config.json) with the given data.* keys changed, so that another split or another
dataset is read with the run's preprocessing (tokenizer, length, image size and statistics); e.g. the SST-2 model
on other reviews: `--config.data.path=reviews/ --config.data.splits.test=test`, or a CamVid model on new streets.
Its validation and test roles are evaluated with the checkpoint's weights, and DIR (default WORKDIR_eval) gets
metrics.json (both roles' metrics, the checkpoint, the overrides, the data report), predictions.jsonl and the error
analysis (analysis.md, plots/). DIR must
not exist yet, or be empty, and may not be inside WORKDIR: nothing in the run's folder is read for writing.

A dataset whose label names differ from the run's (summary.json's class_names) is refused with both named: map
them in config (data.text.label_names orders a text file's labels; data.classes picks and orders label ids).
Exit status 2 for any such problem, before any compute.
"""
from __future__ import annotations

import json
import os
import sys

USAGE = ('usage: python -m ftlab.evaluate WORKDIR [--checkpoint best|latest|STEP] [--out DIR] '
         '[--config.data.KEY=VALUE ...]')
CHANGEABLE = ('data.', 'eval.batch_size', 'eval.predictions')  # what may differ from the run's config


def _args(argv: list[str]) -> tuple[dict, list[tuple[str, str]], list[str]]:
  """argv -> ({'workdir', 'checkpoint', 'out'}, [(key, raw value)], problems)."""
  options, overrides, problems = {'checkpoint': 'best', 'out': ''}, [], []
  rest = list(argv)
  while rest:
    arg = rest.pop(0)
    if not arg.startswith('--'):
      problems += [] if 'workdir' not in options else [f'{arg}: one WORKDIR only; {USAGE}']
      options.setdefault('workdir', arg)
      continue
    name, eq, value = arg[2:].partition('=')
    if not eq:
      value = rest.pop(0) if rest and not rest[0].startswith('--') else None
    if value is None:
      problems.append(f'--{name}: needs a value (--{name}=VALUE)')
    elif name.startswith('config.'):
      key = name[len('config.'):]
      if key.startswith(CHANGEABLE):
        overrides.append((key, value))
      else:
        problems.append(f'--config.{key}: evaluation changes only data.*, eval.batch_size and eval.predictions; the model, '
                        'optimizer and training keys are the run\'s')
    elif name in ('checkpoint', 'out'):
      options[name] = value
    else:
      problems.append(f'--{name}: unknown option; {USAGE}')
  if 'workdir' not in options:
    problems.append(f'WORKDIR: required; {USAGE}')
  return options, overrides, problems


def out_problems(workdir: str, out: str) -> list[str]:
  run, target = os.path.realpath(workdir), os.path.realpath(out)
  if target == run or target.startswith(run + os.sep):
    return [f'--out {out}: inside the run\'s folder {workdir}; give a folder outside it (the run is left as it is)']
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    return [f'--out {out}: exists and is not an empty folder; give a new one (nothing is overwritten)']
  return []


def _config(workdir: str, overrides):
  """The run's config with the overrides; ConfigError with every problem."""
  import ml_collections

  from ftlab import cli
  from ftlab import config as config_lib
  with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
    saved = ml_collections.ConfigDict(json.load(f))
  config = config_lib.defaults()  # keys added to ftlab after the run was saved keep their defaults, as on resume
  for key, value in config_lib.flatten(saved.to_dict()):
    config_lib.set_key(config, key, value)
  problems = cli.apply_overrides(config, overrides) + config_lib.validate(config)
  if problems:
    raise config_lib.ConfigError(problems)
  return config


def _same_labels(workdir: str, plan) -> None:
  from ftlab import config as config_lib
  summary = os.path.join(workdir, 'summary.json')
  if not os.path.exists(summary):
    return
  with open(summary) as f:
    expected = json.load(f)['class_names']
  if list(plan.splits.class_names) != list(expected):
    raise config_lib.ConfigError([f'data: this dataset\'s labels are {list(plan.splits.class_names)} but the run '
                                  f'predicts {expected}; map them in config (data.text.label_names orders a text '
                                  'file\'s labels, data.classes picks and orders label ids)'])


def restored(workdir: str, out: str, *, checkpoint: str = 'best', overrides=()):
  """(the plan of the run's config with `overrides`, working in `out`; the state of its checkpoint; the step),
  read without writing anything into `workdir`."""
  from ftlab import checkpoints
  from ftlab.initial_state import initial_state
  from ftlab.plan import make_plan
  config = _config(workdir, list(overrides))
  step = checkpoints.run_step(workdir, checkpoint)
  plan = make_plan(config, out)
  _same_labels(workdir, plan)
  manager = checkpoints.Checkpoints(os.path.join(workdir, 'checkpoints'), keep=1, mode=plan.eval_mode,
                                    read_only=True)
  state, _ = manager.restore(step, initial_state(plan, load_pretrained=False))
  return plan, state, step


def evaluate(workdir: str, out: str, *, checkpoint: str = 'best', overrides=()) -> dict:
  """Evaluates the run at `workdir` into `out` (see the module docstring); returns metrics.json's contents."""
  from ftlab import analysis_report, predictions, writers
  from ftlab.steppers import SingleStepper
  plan, state, step = restored(workdir, out, checkpoint=checkpoint, overrides=overrides)
  config = plan.config
  stepper = SingleStepper(plan)
  state = stepper.layout.place_state(state)
  result = {'workdir': os.path.abspath(workdir), 'checkpoint': checkpoint, 'step': step,
            'overrides': {k: v for k, v in overrides}, 'data': plan.splits.report}
  keep = config.eval.predictions and predictions.applies(plan)
  rows = []
  for role in ('validation', 'test'):
    source = getattr(plan.splits, role)
    (result[role],), (outputs,) = stepper.evaluate_predicting(state, source, keep=keep)
    rows.append(predictions.rows(plan, source, role, outputs) if keep else [])
  os.makedirs(out, exist_ok=True)
  writers.write_json_atomic(os.path.join(out, 'metrics.json'), result)
  if keep:
    predictions.write(plan, rows)
    analysis_report.write(out, list(plan.splits.class_names), title=f'{workdir} evaluated at step {step}')
  return result


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv in (['-h'], ['--help']):
    print(__doc__.strip())
    return 0
  from ftlab import checkpoints, cli
  from ftlab import config as config_lib
  from ftlab.data.errors import DataError
  options, overrides, problems = _args(argv)
  workdir = options.get('workdir', '')
  out = options['out'] or f'{workdir.rstrip("/")}_eval'
  if workdir and not os.path.isfile(os.path.join(workdir, 'config.json')):
    problems.append(f'{workdir}: not an ftlab run (no config.json); give a run\'s --workdir')
  elif workdir:
    problems += out_problems(workdir, out)
  try:
    if problems:
      raise config_lib.ConfigError(problems)
    result = evaluate(workdir, out, checkpoint=options['checkpoint'], overrides=overrides)
  except config_lib.ConfigError as err:
    cli.exit_on_config_error(err)
  except (checkpoints.CheckpointError, DataError) as err:
    print(f'ftlab.evaluate: {err}', file=sys.stderr)
    return 2
  metric = next(m for m in ('accuracy', _selection_metric(workdir), next(iter(result['test']))) if m in result['test'])
  print(f'ftlab.evaluate: {workdir} at step {result["step"]}: validation {metric} '
        f'{result["validation"][metric]:.4f}, test {metric} {result["test"][metric]:.4f}; {out}')
  return 0


def _selection_metric(workdir: str) -> str:
  """The run's eval.metric (ndcg@10, rmse, miou, ...), shown on the console line where there is no accuracy."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)['eval']['metric']


if __name__ == '__main__':
  sys.exit(main())
