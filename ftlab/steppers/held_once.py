"""Which leaves of a vectorised group's state are held once instead of K times.

A parameter frozen for the whole run whose initial value is the same, bit for bit, in every trial of the group (a
LoRA group's pretrained base, a frozen backbone under a linear probe) never changes and never differs between the
trials: the group holds it once, unstacked, and vmaps over the rest with in_axes None for it (the train step does
not differentiate it, ftlab/steps.py, so no per-trial gradient of it exists either). Every other leaf carries the
leading trial axis. `Layout` says which leaf is which and does what the stepper needs leaf by leaf.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
  once: tuple[bool, ...]  # per leaf of the TrainState, in jax.tree.flatten order: held once

  @classmethod
  def of(cls, frozen_params, states: list) -> Layout:
    """The layout of the trials' `states` (host or device TrainStates of one structure): the parameters that
    `frozen_params` (plan.frozen['params']) freezes for the whole run and that are equal in every state."""
    marked = _always_frozen(frozen_params, states[0])
    leaves = [jax.tree.leaves(s) for s in states]
    return cls(tuple(m and _equal([lv[j] for lv in leaves]) for j, m in enumerate(marked)))

  @classmethod
  def none(cls, state) -> Layout:
    """Every leaf stacked."""
    return cls((False,) * len(jax.tree.leaves(state)))

  def axes(self, tree):
    """vmap's in_axes / out_axes for a stacked state: None for a leaf held once, else 0."""
    return jax.tree.unflatten(jax.tree.structure(tree), [None if o else 0 for o in self.once])

  def map(self, fn, tree, *rest):
    """fn(leaf, *rest_leaves) on the stacked leaves; a leaf held once is taken from `tree` as it is."""
    leaves, treedef = jax.tree.flatten(tree)
    others = [treedef.flatten_up_to(r) for r in rest]
    return treedef.unflatten([x if o else fn(x, *(r[j] for r in others))
                              for j, (x, o) in enumerate(zip(leaves, self.once))])

  def stack(self, trees: list):
    """The trials' host pytrees -> one host pytree, a leading trial axis on every leaf not held once (stacked in
    numpy: no device program to compile; PRNG keys through their key data)."""
    per_leaf = zip(*(jax.tree.leaves(t) for t in trees))
    treedef = jax.tree.structure(trees[0])
    return treedef.unflatten([np.asarray(xs[0]) if o else _stack(xs) for xs, o in zip(per_leaf, self.once)])

  def shared(self, group, lane):
    """`lane` (one trial's state) with the leaves held once replaced by the group's own arrays: a restored lane
    drops its copy of the base at once."""
    return jax.tree.unflatten(jax.tree.structure(lane), [
        g if o else x for x, g, o in zip(jax.tree.leaves(lane), jax.tree.leaves(group), self.once)])

  def restack(self, lanes: list, group):
    """The trials' `lanes` (one structure, on the devices) stacked again on the host, except the leaves held once,
    which stay the `group`'s arrays: no trial's copy of the base is fetched."""
    per_leaf = zip(*(jax.tree.leaves(lane) for lane in lanes))
    return jax.tree.unflatten(jax.tree.structure(group), [
        g if o else _stack(jax.device_get(list(xs))) for xs, g, o in zip(per_leaf, jax.tree.leaves(group), self.once)])

  def index(self, tree, i):
    """Trial `i` of a stacked pytree (`i` traced: one compilation serves every trial). The leaves held once are
    the group's own arrays, not copies: K trials' lanes hold one base between them."""
    leaves, treedef = jax.tree.flatten(tree)
    picked = iter(_index([x for x, o in zip(leaves, self.once) if not o], i))
    return treedef.unflatten([x if o else next(picked) for x, o in zip(leaves, self.once)])

  def shardings(self, tree, stacked, once):
    """The tree of shardings: `stacked` for the stacked leaves, `once` for those held once."""
    return jax.tree.unflatten(jax.tree.structure(tree), [once if o else stacked for o in self.once])


def sharing(first, state, frozen_params):
  """`state` with each leaf frozen throughout that equals `first`'s replaced by `first`'s own array: the host then
  holds the trials' shared base once while their states are gathered (`Layout.of` recognises them at no cost)."""
  leaves, treedef = jax.tree.flatten(state)
  firsts = jax.tree.leaves(first)
  return treedef.unflatten([f if m and _equal([f, x]) else x
                            for x, f, m in zip(leaves, firsts, _always_frozen(frozen_params, state))])


def _always_frozen(frozen_params, state) -> list[bool]:
  """Per leaf of `state`: a parameter frozen for the whole run."""
  always = jax.tree.map(lambda f: f.always, frozen_params)
  return [bool(m) for m in jax.tree.leaves(state.replace(params=always, **{
      name: jax.tree.map(lambda _: False, getattr(state, name))
      for name in ('step', 'opt_state', 'rng', 'model_state', 'hparams')}))]


def _equal(xs: list) -> bool:
  first = np.asarray(xs[0])
  return all(x is xs[0] or (np.asarray(x).shape == first.shape and np.asarray(x).tobytes() == first.tobytes())
             for x in xs[1:])


def _stack(xs):
  if jax.dtypes.issubdtype(xs[0].dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(np.stack([np.asarray(jax.random.key_data(x)) for x in xs]),
                                    impl=jax.random.key_impl(xs[0]))
  return np.stack([np.asarray(x) for x in xs])


@jax.jit
def _index(stacked: list, i):
  return [x[i] for x in stacked]
