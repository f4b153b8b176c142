"""model.pretrained into a freshly initialised model: find and read the weights, rename them to ftlab's paths,
fit what can be fitted (a ViT's position embeddings to a new image size), and merge by path with a report.

The report lists what was loaded, what the model has that the checkpoint lacks (left at its fresh init: a new task
head), what the checkpoint has that the model does not use, and what init.reinit re-initialised.
"""
from __future__ import annotations

import dataclasses
import os

from ftlab.models.bert import BertConfig
from ftlab.pretrained import ftlab_format, hf, surgery


@dataclasses.dataclass
class Imported:
  params: dict
  model_state: dict
  report: dict  # loaded / missing / unexpected / reinitialised parameter paths, and notes

  def summary(self, source: str) -> str:
    r = self.report
    counts = ', '.join(f'{len(r[k])} {k}' for k in ('loaded', 'missing', 'unexpected', 'reinitialised'))
    lines = [f'ftlab: pretrained {source}: {counts}']
    for key in ('missing', 'unexpected', 'reinitialised'):
      if r[key]:
        shown = ', '.join(r[key][:8]) + (f', ... ({len(r[key]) - 8} more)' if len(r[key]) > 8 else '')
        lines.append(f'  {key}: {shown}')
    lines += [f'  note: {n}' for n in r.get('notes', [])]
    return '\n'.join(lines)


def encoder_config(model_config) -> tuple[BertConfig, int] | None:
  """(shape, pad id) of a pretrained BERT-family checkpoint, read from its config.json; None without one."""
  if model_config.name != 'bert' or not model_config.pretrained:
    return None
  return hf.read_config(hf.resolve(model_config.pretrained, download=model_config.download))


def decoder_config(model_config):
  """The DecoderConfig of a pretrained decoder (a Hugging Face folder's config.json or a GGUF file's metadata);
  None without one."""
  if model_config.name != 'decoder' or not model_config.pretrained:
    return None
  from ftlab.pretrained import decoder
  path = hf.resolve(model_config.pretrained, download=model_config.download)
  if path.endswith('.gguf'):
    from ftlab.pretrained import gguf
    try:
      return decoder.decoder_config(gguf.read_config(path), where=path)
    except gguf.GGUFError as err:
      raise surgery.SurgeryError(f'model.pretrained: {err}') from None
  return decoder.decoder_config(hf.read_json_config(path), where=os.path.join(path, 'config.json'))


def tokenizer_folder(model_config) -> str:
  """The checkpoint of a pretrained text model or decoder (its tokenizer is the default data.tokenizer.path): a
  folder or a .gguf file; '' without one."""
  if model_config.name not in ('bert', 'decoder') or not model_config.pretrained:
    return ''
  return hf.resolve(model_config.pretrained, download=model_config.download)


def _read_decoder(spec: str, download: bool) -> tuple[dict, list[str]]:
  from ftlab.pretrained import decoder
  path = hf.resolve(spec, download=download)
  if path.endswith('.gguf'):
    from ftlab.pretrained import gguf
    try:
      return decoder.to_ftlab(gguf.read(path).tensors)
    except gguf.GGUFError as err:
      raise surgery.SurgeryError(f'model.pretrained: {err}') from None
  return decoder.to_ftlab(hf.read_weights(path))


def _read(model_config, params) -> tuple[dict, dict, list[str], list[str]]:
  """(params tree, batch-norm statistics, unused checkpoint names, notes) of model.pretrained in ftlab's paths."""
  spec = model_config.pretrained
  if ftlab_format.is_folder(spec):  # exported by ftlab in its own layout: any model family
    tree, stats = ftlab_format.read(spec)
    return tree, stats, [], []
  if model_config.name == 'bert':
    tree, unused = hf.to_ftlab(hf.read_weights(hf.resolve(spec, download=model_config.download)))
    return tree, {}, unused, []
  if model_config.name == 'decoder':
    tree, unused = _read_decoder(spec, model_config.download)
    return tree, {}, unused, []
  if model_config.name in ('vit', 'resnet', 'efficientnet'):
    from ftlab.pretrained import vision
    return vision.load(spec, model_config, params)
  raise surgery.SurgeryError(f'model.pretrained: model.name={model_config.name!r} has no pretrained import; use '
                             "'bert', 'decoder', 'vit', 'resnet' or 'efficientnet', or init.checkpoint to start from an "
                             'earlier ftlab run')


def check(model_config, abstract_params, *, reinit: str) -> list[str]:
  """Problems of loading model.pretrained into a model of these (abstract) parameters, before any compute: shape
  mismatches name the parameter, both shapes and the config key to change."""
  try:
    tree, _, _, _ = _read(model_config, abstract_params)
  except surgery.SurgeryError as err:
    return [str(err)]
  bad = surgery.mismatches(abstract_params, tree, reinit=reinit)
  return [f'model.pretrained: shapes differ from the model: {"; ".join(bad)}{surgery.MISMATCH_FIX}'] if bad else []


def import_pretrained(model_config, params, model_state, *, reinit: str) -> Imported:
  """`params` / `model_state` (fresh) with model.pretrained's weights merged in (see ftlab.pretrained.surgery)."""
  tree, stats, unused, notes = _read(model_config, params)
  merged, report = surgery.merge(params, tree, reinit=reinit)
  report['unexpected'] = sorted(set(report['unexpected']) | set(unused))
  new_state = dict(model_state)
  if stats and 'batch_stats' in model_state:
    new_state['batch_stats'], state_report = surgery.merge(model_state['batch_stats'], stats, reinit=reinit)
    report['loaded'] += [f'batch_stats/{p}' for p in state_report['loaded']]
  report['notes'] = notes
  return Imported(merged, new_state, report)


def describe_source(model_config) -> str:
  spec = model_config.pretrained
  return spec if spec.startswith('package:') or not os.path.exists(spec) else os.path.abspath(spec)
