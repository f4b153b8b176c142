"""The report of a sweep, or a run's error analysis: `python -m ftlab.report DIR`.

DIR is a sweep directory (the --workdir of python -m ftlab.sweep: sweep.json, trials.jsonl and one workdir per
trial). Writes DIR/report.md (the configurations ranked by the validation objective, mean ± std over seeds; the
trials that did not complete; parameter importances for random and bayes searches) and DIR/plots/*.png, then
prints the path of report.md. Safe to run while the sweep is still going: it reports the trials finished so far.
DIR may also be a finished run (or an ftlab.evaluate folder) with predictions.jsonl: its analysis.md is rewritten.
A DIR that is neither is reported on stderr with exit status 2.
"""
from __future__ import annotations

import json
import os
import sys

USAGE = ('usage: python -m ftlab.report DIR   (DIR: a sweep directory, holding sweep.json and trials.jsonl, or a run '
         'with predictions.jsonl)')


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


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv in (['-h'], ['--help']):
    print(__doc__.strip())
    return 0
  if len(argv) != 1 or argv[0].startswith('-'):
    print(f'ftlab.report: expected one sweep directory, got {argv}\n{USAGE}', file=sys.stderr)
    sys.exit(2)
  path = _run_analysis(argv[0])
  if path:
    print(path)
    return 0
  from ftlab.sweeps import markdown, records  # after the usage check: matplotlib takes a moment to import
  try:
    path = markdown.write(argv[0])
  except records.RecordError as err:
    print(f'ftlab.report: {err}', file=sys.stderr)
    sys.exit(2)
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
