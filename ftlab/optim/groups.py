"""Parameter groups: regexes over '/'-joined parameter paths.

Every parameter belongs to exactly one group (first matching pattern wins). A pattern that matches nothing and a
parameter that no pattern covers are errors naming them, so a typo in a freeze regex never silently trains what
it meant to freeze.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax


class GroupError(ValueError):
  """A grouping that does not cover the parameters exactly once."""


def path_str(key_path) -> str:
  """A jax key path -> 'backbone/dense_0/kernel'."""
  parts = []
  for k in key_path:
    parts.append(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))))
  return '/'.join(parts)


def param_paths(params) -> list[str]:
  """All parameter paths of a pytree, in tree order."""
  return [path_str(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def map_paths(fn, params) -> Any:
  """A pytree like `params` with fn('a/b/c') at each leaf."""
  return jax.tree_util.tree_map_with_path(lambda kp, _: fn(path_str(kp)), params)


def assign(params, groups: Sequence[tuple[str, str]], *, origin: str = 'optimizer') -> Any:
  """Labels each parameter with the name of the first group whose regex matches its path (re.search).

  `groups` is an ordered list of (name, regex); `origin` names the config key in errors.
  """
  paths = param_paths(params)
  label_of, used = {}, set()
  for path in paths:
    for i, (name, pattern) in enumerate(groups):
      if re.search(pattern, path):
        label_of[path] = name
        used.add(i)
        break
  problems = []
  unused = [f'{name}={pattern!r}' for i, (name, pattern) in enumerate(groups) if i not in used]
  if unused:
    problems.append(f'{origin}: patterns that match no parameter: {", ".join(unused)}. '
                    f'Parameter paths look like: {", ".join(paths[:6])}{" ..." if len(paths) > 6 else ""}')
  uncovered = [p for p in paths if p not in label_of]
  if uncovered:
    problems.append(f'{origin}: parameters in no group: {", ".join(uncovered)}; add a pattern that covers them')
  if problems:
    raise GroupError('\n'.join(problems))
  return map_paths(label_of.__getitem__, params)

