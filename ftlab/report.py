"""The report of a sweep: `python -m ftlab.report DIR`.

DIR is a sweep directory (the --workdir of python -m ftlab.sweep: sweep.json, trials.jsonl and one workdir per
trial). Writes DIR/report.md (the configurations ranked by the validation objective, mean ± std over seeds; the
trials that did not complete; parameter importances for random and bayes searches) and DIR/plots/*.png, then
prints the path of report.md. Safe to run while the sweep is still going: it reports the trials finished so far.
A DIR that is not a sweep directory is reported on stderr with exit status 2.
"""
from __future__ import annotations

import sys

USAGE = 'usage: python -m ftlab.report DIR   (DIR: a sweep directory, holding sweep.json and trials.jsonl)'


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv in (['-h'], ['--help']):
    print(__doc__.strip())
    return 0
  if len(argv) != 1 or argv[0].startswith('-'):
    print(f'ftlab.report: expected one sweep directory, got {argv}\n{USAGE}', file=sys.stderr)
    sys.exit(2)
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
