"""What an evaluation of K >= 1 trials gives: the validation metrics of each and, with eval.train_subset, the same
metrics on that many training examples and the overfitting gap (train minus validation) in the validation row."""
from __future__ import annotations

from ftlab import metrics as metrics_lib


def each(lanes: list, role: str):
  """The `role` split of every lane's Splits: one source when the lanes share it (the usual group), else one per
  lane (the folds of a cross-validated configuration, trained as one group)."""
  sources = [getattr(getattr(splits, role), 'evaluation', getattr(splits, role)) if role == 'train'
             else getattr(splits, role) for splits in lanes]  # packed SFT rows are evaluated one example a row
  return sources[0] if all(s is sources[0] for s in sources) else sources


def evaluate_splits(stepper, states, lanes: list, *, train_subset: int, keep: bool = False):
  """([{'validation': ..., and with train_subset 'train_eval': ...}] per trial of `stepper`, per trial its
  validation batches with their predictions where `keep`, else None: stepper.evaluate_predicting); `lanes`: each
  trial's Splits."""
  val, outputs = stepper.evaluate_predicting(states, each(lanes, 'validation'), keep=keep)
  if not train_subset:
    return [{'validation': v} for v in val], outputs
  train_eval = stepper.evaluate(states, each(lanes, 'train'), limit=train_subset)
  return [{'train_eval': te, 'validation': with_gap(v, te)} for v, te in zip(val, train_eval)], outputs


def with_gap(val: dict, train_eval: dict) -> dict:
  """The validation row with the overfitting gaps (train minus validation) of every metric added."""
  return {**val, **{f'gap_{k}': train_eval[k] - val[k] for k in metrics_lib.METRIC_MODES if k in val}}
