"""What a trial's loop carries from step to step and across a resume, saved inside every checkpoint (as JSON,
beside the train state and the data iterator's position), as kauldron's CheckpointState."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class LoopState:
  best: float | None = None  # the best validation value of eval.metric so far
  best_step: int | None = None  # the step it was reached at
  bad_evals: int = 0  # evaluations since then without an improvement of early_stopping.min_delta
  stopped_early: bool = False
  train_metrics: dict | None = None  # the train metrics accumulated since the last evaluation (metrics_to_json)
  skipped: int = 0  # steps skipped for a NaN/Inf loss (train.skip_nonfinite)
  skipped_in_a_row: int = 0

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, saved: dict) -> LoopState:
    """The state `to_json` saved (or an earlier ftlab's dict: its skip counts under 'nonfinite')."""
    saved = dict(saved)
    nonfinite = saved.pop('nonfinite', None) or {}
    saved.setdefault('skipped', nonfinite.get('skipped', 0))
    saved.setdefault('skipped_in_a_row', nonfinite.get('in_a_row', 0))
    return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})

  def evaluated(self, step: int, value: float, early_stopping, mode: str) -> LoopState:
    """The state after an evaluation at `step` whose selection metric is `value` ('max' or 'min' is better)."""
    best, es = self.best, early_stopping
    improved = best is None or (value > best + es.min_delta if mode == 'max' else value < best - es.min_delta)
    bad = 0 if improved else self.bad_evals + 1
    return dataclasses.replace(self, best=value if improved else best, best_step=step if improved else self.best_step,
                               bad_evals=bad, stopped_early=bool(es.enabled and bad >= es.patience))

  def stepped(self, finite: bool) -> LoopState:
    """The state after a step whose loss was finite, or was skipped for being NaN/Inf."""
    if finite:
      return dataclasses.replace(self, skipped_in_a_row=0)
    return dataclasses.replace(self, skipped=self.skipped + 1, skipped_in_a_row=self.skipped_in_a_row + 1)


def metrics_to_json(collection) -> dict | None:
  """Accumulated metrics (a clu Collection) as JSON for the loop state: exact, leaf by leaf."""
  if collection is None:
    return None
  leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(collection))]
  return {'dtypes': [str(x.dtype) for x in leaves], 'values': [x.tolist() for x in leaves]}


def metrics_from_json(saved: dict, *, like):
  """The Collection `metrics_to_json` saved, structured like the collection `like` (a step's metrics)."""
  leaves = [np.asarray(v, dtype=d) for v, d in zip(saved['values'], saved['dtypes'])]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)
