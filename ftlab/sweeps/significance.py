"""Whether a configuration differs from the best by more than noise: a paired t-test over the runs both completed
with the same seed and fold (scipy.stats.ttest_rel), with the 95% confidence interval of the mean difference.

Paired, because two runs with the same seed and fold share their data split, data order and initial draws, which
is most of what varies between runs; pairing takes it out. Over the folds of one split it is optimistic: the folds'
training sets overlap, so their differences are not independent (Nadeau and Bengio, 2003), and a p-value just under
0.05 is weak evidence. Over seeds and folds rather than a bootstrap over each example's prediction: what a researcher
asks is whether the configuration wins again on another draw of the training randomness and data, which seeds and
folds sample and a bootstrap over one run's test examples does not.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`other` minus `best` over `n` pairs: the mean difference, its 95% interval and the two-sided p-value (None with
  fewer than 2 pairs or no variance in the differences)."""
  n: int
  mean: float
  low: float | None
  high: float | None
  p: float | None


def standard_error(values: list[float]) -> float | None:
  """The standard error of the mean (sample std, ddof 1, over sqrt(n)); None below 2 values."""
  return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) >= 2 else None


def paired(best: dict, other: dict) -> Comparison | None:
  """`best` and `other`: {(seed, fold): objective}; the comparison over the keys both have (None when none)."""
  keys = sorted(set(best) & set(other), key=repr)
  if not keys:
    return None
  a, b = np.array([other[k] for k in keys]), np.array([best[k] for k in keys])
  mean = float(np.mean(a - b))
  if len(keys) < 2 or np.all(a - b == a[0] - b[0]):
    return Comparison(len(keys), mean, None, None, None)
  result = stats.ttest_rel(a, b)
  interval = result.confidence_interval(0.95)
  return Comparison(len(keys), mean, float(interval.low), float(interval.high), float(result.pvalue))
