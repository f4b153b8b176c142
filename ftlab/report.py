"""The report of a sweep, or a run's error analysis: `python -m ftlab.report DIR [--out=FOLDER]`.

DIR is a sweep directory (the --workdir of python -m ftlab.sweep: sweep.json, trials.jsonl and one workdir per
trial). Writes DIR/report.md (the configurations ranked by the validation objective, mean ± std over seeds; the
trials that did not complete; parameter importances for random and bayes searches) and DIR/plots/*.png, then
prints the path of report.md. Safe to run while the sweep is still going: it reports the trials finished so far.
DIR may also be a finished run (or an ftlab.evaluate folder) with predictions.jsonl: its analysis.md is rewritten.
A DIR that is neither is reported on stderr with exit status 2. --out writes a sweep's report.md and plots/ to
FOLDER instead, leaving DIR untouched (a read-only sweep, or one still being written by its workers); a folder that
cannot be written is reported with exit status 4.
"""
from __future__ import annotations

import json
import os
import sys

USAGE = ('usage: python -m ftlab.report DIR [--out=FOLDER]   (DIR: a sweep directory, holding sweep.json and '
         'trials.jsonl, or a run with predictions.jsonl)')


def _run_analysis(folder: str) -> str | None:
  """A run's (or evaluation's) analysis.md rewritten; None when `folder` has no predictions to analyse."""
  from ftlab import analysis_report, predictions
  if os.path.exists(os.path.join(folder, 'sweep.json')) or not os.path.exists(os.path.join(folder, predictions.FILE)):
    return None
  summary = os.path.join(folder, 'summary.json')
  names = None
  if os.path.exists(summary):
    with open(summary) as f:
      names = json.load(f)['class_names']
  elif os.path.exists(os.path.join(folder, 'metrics.json')):  # an ftlab.evaluate folder: the run's names
    with open(os.path.join(folder, 'metrics.json')) as f:
      with open(os.path.join(json.load(f)['workdir'], 'summary.json')) as g:
        names = json.load(g)['class_names']
  return analysis_report.write(folder, names, title=folder) if names else None


def _arguments(argv: list[str]) -> tuple[str, str]:
  """(DIR, --out's folder or ''); exits with status 2 on anything else."""
  out = [a.partition('=')[2] for a in argv if a.startswith('--out=')]
  rest = [a for a in argv if not a.startswith('--out=')]
  if len(rest) != 1 or rest[0].startswith('-') or len(out) > 1 or out == ['']:
    print(f'ftlab.report: expected one sweep directory (and at most one --out=FOLDER), got {argv}\n{USAGE}',
          file=sys.stderr)
    sys.exit(2)
  return rest[0], (out or [''])[0]


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv in (['-h'], ['--help']):
    print(__doc__.strip())
    return 0
  folder, out = _arguments(argv)
  try:
    path = None if out else _run_analysis(folder)
    if path is None:
      from ftlab.sweeps import markdown  # after the usage check: matplotlib takes a moment to import
      path = markdown.write(folder, out)
  except Exception as err:
    return _failed(err, out or folder)
  print(path)
  return 0


def _failed(err: Exception, folder: str) -> int:
  """The exit status (2: not a sweep, 4: cannot write) after printing why; re-raises anything else (a bug)."""
  from ftlab import workdir as workdir_lib
  from ftlab.sweeps import records
  if isinstance(err, records.RecordError):
    print(f'ftlab.report: {err}', file=sys.stderr)
    return 2
  problem = workdir_lib.write_problem(err, folder)
  if problem is None:
    raise err
  print(f'ftlab.report: {problem.replace("choose another --workdir", "give --out=ANOTHER_FOLDER")}', file=sys.stderr)
  return workdir_lib.EXIT_STATUS


if __name__ == '__main__':
  sys.exit(main())
