"""Which planned runs train together: runs with one static key (ftlab/traced.py: they differ only in traced
hyperparameters, the seed, the fold of a cross-validated split or the pretrained weights) form vectorised groups of
up to `vectorize`, whatever step each resumes from; each group, or a run alone, goes through the one loop
(ftlab/loop.py)."""
from __future__ import annotations

import time
from typing import Any, Callable

from ftlab import loop, preemption
from ftlab.outcome import Outcome
from ftlab.plan import Plan


def run_groups(plans: list[Plan], *, on_evals: list[Callable | None] | None = None, vectorize: int = 1 << 30,
               shard_trials: bool = False, lanes_at_once: int = 0,
               on_outcome: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
  """Runs the plans in groups of at most `vectorize` that share a static key; returns each one's Outcome, in order,
  and gives each to `on_outcome(index, outcome)` as soon as its group ends. An exception other than Stop / Diverged
  ends the outcome of every run of its group with it, and the other groups still run; Preempted stops them all."""
  on_evals = on_evals or [None] * len(plans)
  by_key: dict[Any, list[int]] = {}
  for i, plan in enumerate(plans):
    by_key.setdefault(_group_key(plan), []).append(i)
  groups = [members[j:j + vectorize] for members in by_key.values() for j in range(0, len(members), vectorize)]
  outcomes: list[Outcome | None] = [None] * len(plans)
  for members in sorted(groups):
    t0 = time.perf_counter()
    try:
      results = loop.run_plans([plans[i] for i in members], on_evals=[on_evals[i] for i in members],
                               shard_trials=shard_trials, lanes_at_once=lanes_at_once)
    except preemption.Preempted:
      raise  # the sweep stops here; the group's trials resume from their checkpoints
    except Exception as err:  # pylint: disable=broad-except
      results = [Outcome(error=err) for _ in members]
    seconds = time.perf_counter() - t0
    for i, outcome in zip(members, results):
      outcome.seconds = seconds
      outcomes[i] = outcome
      if on_outcome is not None:
        on_outcome(i, outcome)
  return outcomes


def _group_key(plan: Plan):
  """What runs must share to train as one group: the static key; with length-bucketed text, also the data order
  (seed and fold), since each lane's batch would have its own length."""
  data = plan.config.data
  return (plan.static_key, (plan.config.seed, data.fold) if data.tokenizer.bucket else None)
