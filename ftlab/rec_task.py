"""The recommendation tasks: rating prediction and item ranking (what the model reads, the loss, the evaluation).

Rating: the model predicts a rating per (user, item); the loss is the squared error; evaluation reports RMSE and MAE
of the predictions clipped to the training ratings' range (as Surprise does), and the loss (MSE, unclipped).
Ranking: the model scores items for a user (or a history). Training scores the positive item against sampled
negatives with data.interactions.loss: 'bpr' (-log sigmoid(pos - neg), averaged over the negatives), 'bce'
(binary cross-entropy, the positive 1 and each negative 0: NCF / SASRec) or 'softmax' (sampled softmax: the positive
among itself and the negatives). Evaluation scores the whole catalogue once per user; its loss is the full softmax
cross-entropy of the target among the items not seen before, and ftlab/ranking_metrics.py ranks it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from ftlab import metrics as metrics_lib
from ftlab import ranking_metrics

KINDS = ('rating', 'ranking')  # the tasks of data.source 'interactions'
LOSSES = ('bpr', 'bce', 'softmax')
_RANK_FIELDS = ('sampled_rank', 'full_rank', 'top', 'rows')


@flax.struct.dataclass
class Ranks(clu_metrics.CollectingMetric.from_outputs(_RANK_FIELDS)):
  """Every evaluated user's ranks and full-ranking top items, gathered on the host; computes the ranking metrics.
  `Ranks.of(num_items, sampled)` binds the catalogue size and whether there are sampled candidates."""
  num_items: ClassVar[int] = 0
  sampled: ClassVar[bool] = True

  @classmethod
  @functools.cache
  def of(cls, num_items: int, sampled: bool) -> type[Ranks]:
    sub = type(f'Ranks{num_items}', (cls,), {'num_items': int(num_items), 'sampled': bool(sampled)})
    return flax.struct.dataclass(sub)

  def compute(self) -> dict[str, float]:
    values = super().compute()
    keep = np.asarray(values['rows']) > 0
    sampled = np.asarray(values['sampled_rank'])[keep] if self.sampled else None
    return ranking_metrics.scores(sampled, np.asarray(values['full_rank'])[keep], np.asarray(values['top'])[keep],
                                  self.num_items)


@functools.cache
def make_rating_eval_metrics():
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       squared_error=clu_metrics.Average.from_output('squared_error'),
                                       abs_error=clu_metrics.Average.from_output('abs_error'))


@functools.cache
def make_ranking_eval_metrics(num_items: int, sampled: bool):
  return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output('loss'),
                                       ranking=Ranks.of(num_items, sampled))


@dataclasses.dataclass(frozen=True)
class RatingTask:
  rating_range: tuple[float, float]
  kind: str = 'rating'
  class_names: tuple[str, ...] = ()
  num_classes: int = 0

  def inputs(self, batch: dict) -> dict:
    return {'user': batch['user'], 'item': batch['item']}

  def example_input(self, source):
    return self.inputs(source.get_batch(np.zeros(1, np.int64)))

  def losses_and_weights(self, logits, batch: dict, *, label_smoothing, class_weights):
    del label_smoothing, class_weights
    return jnp.square(logits.astype(jnp.float32) - batch['rating']), metrics_lib.row_weights(batch, 'user')

  def train_metrics(self, *, losses, logits, batch):
    del logits
    rows = metrics_lib.row_weights(batch, 'user')
    return metrics_lib.make_loss_metrics().single_from_model_output(loss=losses, mask=rows)

  def eval_metrics(self, *, logits, batch):
    predicted = logits.astype(jnp.float32)
    clipped = jnp.clip(predicted, *self.rating_range)
    error = clipped - batch['rating']
    return make_rating_eval_metrics().single_from_model_output(
        loss=jnp.square(predicted - batch['rating']), squared_error=jnp.square(error), abs_error=jnp.abs(error),
        mask=metrics_lib.row_weights(batch, 'user'))

  def predicted(self, logits, batch: dict):
    del batch
    return jnp.clip(logits.astype(jnp.float32), *self.rating_range)

  def check_metric(self, metric: str) -> str | None:
    if metric not in metrics_lib.RATING_METRIC_NAMES + ('loss',):
      return f"eval.metric: {metric!r} does not measure rating prediction; use 'rmse', 'mae' or 'loss'"
    return None


@dataclasses.dataclass(frozen=True)
class RankingTask:
  num_items: int  # N: items 1..N are candidates
  loss: str = 'bce'
  kind: str = 'ranking'
  class_names: tuple[str, ...] = ()
  num_classes: int = 0

  def inputs(self, batch: dict) -> dict:
    """Training rows: the user (and history) with the candidates to score (the positive first, then negatives);
    evaluation rows: the user and history alone (the model scores the whole catalogue)."""
    reads = {k: batch[k] for k in ('user', 'history') if k in batch}
    if 'negatives' in batch:
      positive = batch['targets'] if 'targets' in batch else batch['item']
      reads['candidates'] = jnp.concatenate([positive[..., None], batch['negatives']], axis=-1)
    return reads

  def example_input(self, source):
    return self.inputs(source.get_batch(np.zeros(1, np.int64)))

  def _weights(self, batch: dict) -> jax.Array:
    rows = metrics_lib.row_weights(batch, 'user')
    if 'targets' in batch:  # sequences: the positions that have a next item
      return (batch['targets'] > 0).astype(jnp.float32) * rows[:, None]
    return rows

  def losses_and_weights(self, logits, batch: dict, *, label_smoothing, class_weights):
    del label_smoothing, class_weights
    s = logits.astype(jnp.float32)
    positive, negative = s[..., :1], s[..., 1:]
    if self.loss == 'bpr':
      losses = jnp.mean(-jax.nn.log_sigmoid(positive - negative), axis=-1)
    elif self.loss == 'bce':
      losses = -jax.nn.log_sigmoid(positive[..., 0]) - jnp.sum(jax.nn.log_sigmoid(-negative), axis=-1)
    else:
      losses = -jax.nn.log_softmax(s, axis=-1)[..., 0]
    return losses, self._weights(batch)

  def train_metrics(self, *, losses, logits, batch):
    del logits
    return metrics_lib.make_loss_metrics().single_from_model_output(loss=losses, mask=self._weights(batch))

  def eval_metrics(self, *, logits, batch):
    scores = logits.astype(jnp.float32)
    out = ranking_metrics.excluded(scores.shape, batch['seen'], self.num_items)
    target = batch['target']
    logp = jax.nn.log_softmax(jnp.where(out.at[jnp.arange(scores.shape[0]), target].set(False), -jnp.inf, scores))
    loss = -jnp.take_along_axis(logp, target[:, None], axis=1)[:, 0]
    rows = metrics_lib.row_weights(batch, 'user')
    sampled = batch['candidates'].shape[1] > 1
    return make_ranking_eval_metrics(self.num_items, sampled).single_from_model_output(
        loss=loss, mask=rows, sampled_rank=ranking_metrics.sampled_ranks(scores, batch['candidates']),
        full_rank=ranking_metrics.full_ranks(scores, target, out),
        top=ranking_metrics.top_items(scores, out, min(ranking_metrics.TOP, self.num_items)), rows=rows)

  def predicted(self, logits, batch: dict):
    """The top items of full ranking per row."""
    out = ranking_metrics.excluded(logits.shape, batch['seen'], self.num_items)
    return ranking_metrics.top_items(logits, out, min(ranking_metrics.TOP, self.num_items))

  def check_metric(self, metric: str) -> str | None:
    if metric not in ranking_metrics.METRIC_NAMES + ('loss',):
      return (f"eval.metric: {metric!r} does not measure ranking; use e.g. 'ndcg@10', 'hr@10', 'mrr' (full ranking) "
              "or 'sampled_ndcg@10' (against the sampled negatives)")
    return None


