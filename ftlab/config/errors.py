"""The error that carries a config's problems to the command line, which prints them all and exits with status 2."""
from __future__ import annotations


class ConfigError(Exception):
  """A config that cannot run; `problems` lists each one as 'key: what is wrong and what to do'."""

  def __init__(self, problems: list[str]):
    self.problems = list(dict.fromkeys(problems))  # once each, in order
    super().__init__('\n'.join(self.problems))

  def report(self) -> str:
    n = len(self.problems)
    lines = [f'ftlab: the config has {n} problem{"s" if n != 1 else ""}; nothing was run or written:']
    return '\n'.join(lines + [f'  - {p}' for p in self.problems])
