"""ftlab's own export layout, for the models no Hugging Face library holds (the quickstart's MLP, the small CNN, and
every family ftlab.export has no Hugging Face writer for yet).

    OUT/model.safetensors  every parameter under its ftlab path ('backbone/dense_0/kernel', 'head/bias'), and every
                           batch statistic under 'batch_stats/<path>' ('batch_stats/backbone/bn_0/mean')
    OUT/config.json        {"format": "ftlab", "version": 1, "model": the run's config.model, "task": "image" |
                           "text" | ..., "class_names": [...], "source": {"run": WORKDIR, "step": N}}

Arrays keep their dtypes and their ftlab layouts (dense kernels [in, out], convolution kernels [h, w, in, out]).
ftlab reads such a folder back as model.pretrained, whatever model.name is, head and batch statistics included.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ftlab import checkpoints, writers
from ftlab.models import lora as lora_lib
from ftlab.pretrained import surgery
from ftlab.pretrained.surgery import SurgeryError

FORMAT, VERSION = 'ftlab', 1
STATS = 'batch_stats/'


def is_folder(path: str) -> bool:
  """Whether `path` is a folder in this layout (its config.json says "format": "ftlab")."""
  try:
    with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
      return json.load(f).get('format') == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def write(out: str, run: str, *, checkpoint: str = 'best') -> None:
  """Exports the run's parameters (LoRA folded in) and batch statistics at `checkpoint` into `out`."""
  config, summary = finished_run(run)
  step, params = run_params(run, config, checkpoint, merged=True)
  stats = {STATS + k: v for k, v in surgery.flat(batch_stats(run, step)).items()}
  arrays = {k: np.asarray(v) for k, v in {**surgery.flat(params), **stats}.items()}
  os.makedirs(out, exist_ok=True)
  writers.write_safetensors_atomic(os.path.join(out, 'model.safetensors'), arrays)
  writers.write_json_atomic(os.path.join(out, 'config.json'), {
      'format': FORMAT, 'version': VERSION, 'model': config.model.to_dict(), 'task': summary.get('data', {}).get('task'),
      'class_names': summary.get('class_names'), 'source': {'run': os.path.abspath(run), 'step': step}})


def finished_run(run: str):
  """(the run's config as a ConfigDict, its summary.json); SurgeryError for a run that has not finished."""
  import ml_collections
  with open(os.path.join(run, 'config.json'), encoding='utf-8') as f:
    config = ml_collections.ConfigDict(json.load(f))
  path = os.path.join(run, 'summary.json')
  if not os.path.isfile(path):
    raise SurgeryError(f'{run}: no summary.json (the run has not finished: its class names and task are not known '
                       'yet); export it once it has finished, or run it again to resume')
  with open(path, encoding='utf-8') as f:
    return config, json.load(f)


def run_params(run: str, config, checkpoint: str, *, merged: bool) -> tuple[int, dict]:
  """(the step `checkpoint` names, the run's parameters there), LoRA adapters folded in where `merged`."""
  try:
    step = checkpoints.run_step(run, checkpoint)
    params = checkpoints.restore_params(os.path.join(run, 'checkpoints'), step)
  except checkpoints.CheckpointError as err:
    raise SurgeryError(str(err)) from None
  spec = lora_lib.Spec.of(config.lora)
  return step, lora_lib.merge(params, scale=spec.scale) if spec and merged else params


def read(path: str) -> tuple[dict, dict]:
  """(the parameters, the batch statistics) of a folder in this layout, as nested trees in ftlab's paths."""
  from safetensors.numpy import load_file
  try:
    arrays = load_file(os.path.join(path, 'model.safetensors'))
  except Exception as err:  # pylint: disable=broad-except  # missing, truncated or not safetensors
    raise SurgeryError(f'model.pretrained: cannot read {os.path.join(path, "model.safetensors")}: {err}; export '
                       'the run again') from None
  params = surgery.unflatten({k: v for k, v in arrays.items() if not k.startswith(STATS)})
  return params, surgery.unflatten({k[len(STATS):]: v for k, v in arrays.items() if k.startswith(STATS)})


def batch_stats(run: str, step: int) -> dict:
  """The run's batch statistics at `step` ({} for a model without any)."""
  try:
    state = checkpoints.restore_params(os.path.join(run, 'checkpoints'), step, item='model_state')
  except KeyError:  # a model without mutable collections saved none
    return {}
  return (state or {}).get('batch_stats', {})

