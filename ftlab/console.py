"""The console commands `pip install` makes (pyproject.toml [project.scripts]): `ftlab-train ARGS` is
`python -m ftlab.main ARGS`, `ftlab-sweep` is `python -m ftlab.sweep`, and so on for report, evaluate, explain,
export, generate and compare."""
from __future__ import annotations

import importlib
import sys
from typing import Callable

from ftlab import malloc


def _command(module: str) -> Callable[[], int]:
  def run() -> int:
    malloc.tune()  # before jax starts its threads, as `python -m` does (see ftlab/malloc.py)
    return importlib.import_module(f'ftlab.{module}').main(sys.argv[1:])
  run.__name__ = module
  return run


train, sweep, report, evaluate = _command('main'), _command('sweep'), _command('report'), _command('evaluate')
explain, export, generate, compare = _command('explain'), _command('export'), _command('generate'), _command('compare')
