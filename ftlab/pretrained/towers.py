"""NeuMF from its two towers pretrained alone, as the NCF paper does (He et al., 2017, section 3.4.1): runs of the same
NeuMF with model.recommender.towers 'gmf' and 'mlp' (init.towers.gmf / .mlp name their workdirs) give each tower
its embeddings and layers at their best checkpoints, and the joined head is [alpha * h_gmf ; (1 - alpha) * h_mlp]
(init.towers.alpha, 0.5 in the paper) with the biases mixed alike.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from ftlab import checkpoints
from ftlab.pretrained import surgery

TOWER_KEYS = {'gmf': ('gmf_user', 'gmf_item'), 'mlp': ('mlp_user', 'mlp_item')}


def _own(tree: dict, tower: str) -> dict:
  """The tower's own parameters (embeddings, and the MLP's layers)."""
  return {k: v for k, v in tree.items() if k in TOWER_KEYS[tower] or (tower == 'mlp' and k.startswith('mlp_dense_'))}


def _shapes(tree) -> dict:
  return jax.tree.map(lambda x: tuple(x.shape), tree)


def problems(config, abstract_params) -> list[str]:
  towers = config.init.towers
  if not (towers.gmf or towers.mlp):
    return []
  if not (towers.gmf and towers.mlp) or config.model.name != 'neumf' or config.model.recommender.towers != 'both':
    return ["init.towers: joins a GMF run and an MLP run into NeuMF: set both init.towers.gmf and .mlp, with "
            "model.name='neumf' and model.recommender.towers='both'"]
  out = []
  for tower in ('gmf', 'mlp'):
    run = towers[tower]
    try:
      saved = checkpoints.params_shapes(os.path.join(run, 'checkpoints'), surgery._best_step(run))
    except (surgery.SurgeryError, OSError, ValueError, KeyError) as err:
      out.append(f'init.towers.{tower}: {run} cannot be read ({err}); point it at the --workdir of a finished run '
                 f"with model.recommender.towers='{tower}'")
      continue
    want, have = _shapes(_own(abstract_params, tower)), _shapes(_own(dict(saved), tower))
    if want != have:
      out.append(f'init.towers.{tower}: {run} holds {have}, this NeuMF needs {want}; give both runs the same '
                 'model.recommender sizes as this one')
  return out


def initialised(config, params) -> tuple[dict, str]:
  """NeuMF's params from the two tower runs; a one-line summary."""
  towers, alpha = config.init.towers, float(config.init.towers.alpha)
  loaded = {t: checkpoints.restore_params(os.path.join(towers[t], 'checkpoints'), surgery._best_step(towers[t]))
            for t in ('gmf', 'mlp')}
  out = dict(params)
  for tower, tree in loaded.items():
    out.update({k: jax.tree.map(np.asarray, v) for k, v in _own(dict(tree), tower).items()})
  gmf, mlp = loaded['gmf']['head'], loaded['mlp']['head']
  out['head'] = {'kernel': np.concatenate([alpha * np.asarray(gmf['kernel']), (1 - alpha) * np.asarray(mlp['kernel'])]),
                 'bias': alpha * np.asarray(gmf['bias']) + (1 - alpha) * np.asarray(mlp['bias'])}
  return out, f'ftlab: NeuMF from its towers: GMF {towers.gmf}, MLP {towers.mlp} (head mixed with alpha {alpha})'
