"""Recommendation models: matrix factorisation with biases, NCF's NeuMF (GMF and MLP towers) and a SASRec-style
sequential transformer.

Every model reads a dict and answers in the shape asked:
  {'user', 'item'}              one score per row [B] (MF and NeuMF: the predicted rating, or the item's score)
  {..., 'candidates' [B, C]}    the candidates' scores [B, C] (sequences: candidates [B, L, C] -> [B, L, C], the
                                next item's candidates at every position)
  {'user', 'history'} alone     every catalogue row's score [B, rows] (full ranking)
Items are 1..N with 0 padding; the item tables have `item_rows` rows (ftlab/data/interactions.py). Parameter paths
name what they hold ('user_embedding/embedding', 'item_bias/bias', 'block_0/attention/query/kernel', 'head/kernel'),
so that freezing, groups, lazy rows and LoRA name them by regex; biases end in '/bias' (no weight decay by default).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout

RECOMMENDERS = ('mf', 'neumf', 'sasrec')


class Bias(nn.Module):
  """A learned scalar per row (or one scalar with rows 0)."""
  rows: int
  init: float = 0.0

  @nn.compact
  def __call__(self, ids=None):
    shape = (self.rows,) if self.rows else ()
    bias = self.param('bias', nn.initializers.constant(self.init), shape)
    return bias if ids is None else bias[ids]


def _embed(rows: int, dim: int, std: float, name: str) -> nn.Embed:
  return nn.Embed(rows, dim, embedding_init=nn.initializers.normal(std), name=name)


class MF(nn.Module):
  """Matrix factorisation: mean + b_user + b_item + <p_user, q_item> (Koren, Bell and Volinsky, 2009)."""
  num_users: int
  item_rows: int
  dim: int = 64
  mean_rating: float = 0.0
  init_std: float = 0.1

  @nn.compact
  def __call__(self, inputs: dict, *, train: bool, dropout_rate=0.0, attention_dropout_rate=0.0,
               head_dropout_rate=0.0):
    del attention_dropout_rate, head_dropout_rate
    users = _embed(self.num_users, self.dim, self.init_std, 'user_embedding')
    items = _embed(self.item_rows, self.dim, self.init_std, 'item_embedding')
    item_bias = Bias(self.item_rows, name='item_bias')
    base = Bias(0, self.mean_rating, name='global_bias')() + Bias(self.num_users, name='user_bias')(inputs['user'])
    p = dropout(self, users(inputs['user']), dropout_rate, train=train)
    if 'item' in inputs:
      return base + item_bias(inputs['item']) + jnp.sum(p * items(inputs['item']), axis=-1)
    if 'candidates' in inputs:
      c = inputs['candidates']
      return base[:, None] + item_bias(c) + jnp.einsum('bd,bcd->bc', p, items(c))
    return base[:, None] + item_bias()[None, :] + items.attend(p)


class NeuMF(nn.Module):
  """Neural matrix factorisation (He et al., 2017): a GMF tower (the elementwise product of user and item vectors)
  and an MLP tower (their concatenation through `layers`), joined by one dense 'head'. `towers`: 'both', or 'gmf' /
  'mlp' alone (NCF pretrains each alone, then initialises NeuMF from both)."""
  num_users: int
  item_rows: int
  dim: int = 32
  layers: Sequence[int] = (64, 32, 16)
  towers: str = 'both'
  init_std: float = 0.01

  def _features(self, user, item, dropout_rate, train: bool):
    """[..., features] of user ids [B] (broadcast to item ids [B, ...])."""
    out = []
    expand = lambda x: x.reshape(x.shape[:1] + (1,) * (item.ndim - 1) + x.shape[1:])
    if self.towers in ('both', 'gmf'):
      u = _embed(self.num_users, self.dim, self.init_std, 'gmf_user')(user)
      out.append(expand(u) * _embed(self.item_rows, self.dim, self.init_std, 'gmf_item')(item))
    if self.towers in ('both', 'mlp'):
      width = self.layers[0] // 2
      u = _embed(self.num_users, width, self.init_std, 'mlp_user')(user)
      i = _embed(self.item_rows, width, self.init_std, 'mlp_item')(item)
      x = jnp.concatenate([jnp.broadcast_to(expand(u), i.shape[:-1] + u.shape[-1:]), i], axis=-1)
      for k, features in enumerate(self.layers[1:]):
        x = dropout(self, nn.relu(nn.Dense(features, name=f'mlp_dense_{k}')(x)), dropout_rate, train=train)
      out.append(x)
    return jnp.concatenate(out, axis=-1)

  @nn.compact
  def __call__(self, inputs: dict, *, train: bool, dropout_rate=0.0, attention_dropout_rate=0.0,
               head_dropout_rate=0.0):
    del attention_dropout_rate
    user = inputs['user']
    if 'item' in inputs:
      item = inputs['item']
    elif 'candidates' in inputs:
      item = inputs['candidates']
    else:
      item = jnp.broadcast_to(jnp.arange(self.item_rows)[None, :], (user.shape[0], self.item_rows))
    x = dropout(self, self._features(user, item, dropout_rate, train), head_dropout_rate, train=train)
    return nn.Dense(1, name='head')(x)[..., 0]


class Block(nn.Module):
  """Pre-norm transformer block: causal self-attention over the history, then a two-layer feed-forward."""
  dim: int
  num_heads: int

  @nn.compact
  def __call__(self, x, keep, *, dropout_rate, attention_dropout_rate, train: bool):
    b, length, _ = x.shape
    head = self.dim // self.num_heads
    h = nn.LayerNorm(name='attention_norm')(x)
    split = lambda name: nn.Dense(self.dim, name=name)(h).reshape(b, length, self.num_heads, head)
    q, k, v = (split(f'attention_{n}') for n in ('query', 'key', 'value'))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(head).astype(x.dtype)
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None] & keep[:, None, None, :]
    probs = jax.nn.softmax(jnp.where(allowed, logits, -1e9), axis=-1)
    probs = dropout(self, probs, attention_dropout_rate, train=train)
    attended = jnp.einsum('bhqk,bkhd->bqhd', probs, v).reshape(b, length, self.dim)
    x = x + dropout(self, nn.Dense(self.dim, name='attention_out')(attended), dropout_rate, train=train)
    h = nn.LayerNorm(name='ffn_norm')(x)
    h = nn.Dense(self.dim, name='ffn_out')(nn.relu(nn.Dense(self.dim, name='ffn_in')(h)))
    return x + dropout(self, h, dropout_rate, train=train)


class SASRec(nn.Module):
  """Self-attentive sequential recommendation (Kang and McAuley, 2018): the history's items (shared embedding table
  with the output) plus learned positions, `num_layers` causal blocks with padding masked, and the score of item i at
  position t = <h_t, e_i>. Reads the history only, so it ranks for users it never trained on (cold-start cohorts)."""
  item_rows: int
  max_history: int
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 1

  @nn.compact
  def __call__(self, inputs: dict, *, train: bool, dropout_rate=0.0, attention_dropout_rate=0.0,
               head_dropout_rate=0.0):
    del head_dropout_rate
    history = inputs['history']
    items = _embed(self.item_rows, self.dim, self.dim ** -0.5, 'item_embedding')
    positions = self.param('position_embedding', nn.initializers.normal(self.dim ** -0.5),
                           (self.max_history, self.dim))
    keep = history > 0
    x = (items(history) * jnp.sqrt(self.dim) + positions[None, -history.shape[1]:]) * keep[..., None]
    x = dropout(self, x, dropout_rate, train=train)
    for k in range(self.num_layers):
      x = Block(self.dim, self.num_heads, name=f'block_{k}')(x, keep, dropout_rate=dropout_rate,
                                                             attention_dropout_rate=attention_dropout_rate,
                                                             train=train) * keep[..., None]
    h = nn.LayerNorm(name='final_norm')(x)
    if 'candidates' in inputs:
      return jnp.einsum('bld,blcd->blc', h, items(inputs['candidates']))
    return items.attend(h[:, -1])


def build(model_config, task, report: dict):
  """The recommender model.name names, sized by the data's report."""
  r = model_config.recommender
  users, rows = report['num_users'], report['item_rows']
  if model_config.name == 'mf':
    mean = report['mean_rating'] if task.kind == 'rating' else 0.0
    return MF(users, rows, dim=r.dim, mean_rating=mean, init_std=r.init_std)
  if model_config.name == 'neumf':
    return NeuMF(users, rows, dim=r.dim, layers=tuple(r.mlp_layers), towers=r.towers, init_std=r.init_std)
  return SASRec(rows, report['max_history'], dim=r.dim, num_layers=r.num_layers, num_heads=r.num_heads)
