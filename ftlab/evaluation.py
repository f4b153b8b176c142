"""What an evaluation of K >= 1 trials gives: the validation metrics of each and, with eval.train_subset, the same
metrics on that many training examples and the overfitting gap (train minus validation) in the validation row."""
from __future__ import annotations

from ftlab import metrics as metrics_lib


def evaluate_splits(stepper, states, splits, *, train_subset: int) -> list[dict[str, dict]]:
  """[{'validation': ..., and with train_subset 'train_eval': ...}] per trial of `stepper`."""
  val = stepper.evaluate(states, splits.validation)
  if not train_subset:
    return [{'validation': v} for v in val]
  train = getattr(splits.train, 'evaluation', splits.train)  # packed SFT rows are evaluated one example a row
  train_eval = stepper.evaluate(states, train, limit=train_subset)
  return [{'train_eval': te, 'validation': with_gap(v, te)} for v, te in zip(val, train_eval)]


def with_gap(val: dict, train_eval: dict) -> dict:
  """The validation row with the overfitting gaps (train minus validation) of every metric added."""
  return {**val, **{f'gap_{k}': train_eval[k] - val[k] for k in metrics_lib.METRIC_MODES if k in val}}
