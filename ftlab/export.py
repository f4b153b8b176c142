"""Export a finished run as Hugging Face files: `python -m ftlab.export WORKDIR OUT [--checkpoint best|latest|STEP]
[--merge-lora]`.

Decoder runs (model.name='decoder'): OUT gets config.json + model.safetensors + the tokenizer files (with the
model's chat template), which transformers loads as a LlamaForCausalLM (or Mistral / Qwen2 / Gemma); a LoRA run
writes its adapter in PEFT's layout (adapter_config.json + adapter_model.safetensors, over the base model it names),
or with --merge-lora the merged model. BERT-family text classifiers and NER taggers (model.name='bert'): OUT gets
the folder transformers' BertForSequenceClassification / BertForTokenClassification load, with the class names, the
head and the tokenizer (ftlab/pretrained/encoder_export.py); a LoRA run its adapters in PEFT's layout with the head
among modules_to_save, over OUT/base (ftlab/pretrained/encoder_adapter.py), or with --merge-lora the merged model.
ViT runs (class-token pooling), ResNet runs (the 'imagenet' stem, width 64) and EfficientNet-Lite0 runs: OUT gets
timm's layout (model.safetensors under timm's names + its hub config.json, ftlab/pretrained/vision_export.py),
which timm loads (ftlab reads the ViT and ResNet ones back as model.pretrained). OUT must not exist yet, or be
empty: nothing already on disk is overwritten. Every other model family (the quickstart's MLP, CNNs, other ViT /
ResNet shapes) is written in ftlab's own layout (ftlab/pretrained/ftlab_format.py: model.safetensors by ftlab's
parameter paths + config.json), which ftlab reads back as model.pretrained.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m ftlab.export', description=__doc__.split('\n\n')[0])
  p.add_argument('workdir')
  p.add_argument('out')
  p.add_argument('--checkpoint', default='best', help='best, latest or a step')
  p.add_argument('--merge-lora', action='store_true', help='write the merged model instead of the adapter')
  return p


def _problem(args) -> str | None:
  from ftlab.pretrained import decoder_load
  if not decoder_load.is_run(args.workdir):
    return f'{args.workdir}: not an ftlab run (no config.json and checkpoints/); give a run\'s --workdir'
  if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
    return f'{args.out}: exists and is not an empty folder; give a new OUT (nothing is overwritten)'
  return None


def _writer(run: str, merge_lora: bool):
  """The writer of a run that is not a decoder's (None for a decoder)."""
  import json
  from ftlab.pretrained import encoder_adapter, encoder_export, ftlab_format, vision_export
  with open(os.path.join(run, 'config.json'), encoding='utf-8') as f:
    config = json.load(f)
  name, lora = config.get('model', {}).get('name', ''), config.get('lora', {}).get('target')
  if name == 'decoder':
    return None
  if name == 'bert':
    return encoder_adapter.write_adapter if lora and not merge_lora else encoder_export.write_classifier
  return vision_export.write if vision_export.supports(config) else ftlab_format.write


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  problem = _problem(args)
  from ftlab.data.errors import DataError
  from ftlab.pretrained import decoder_export, decoder_load
  from ftlab.pretrained.surgery import SurgeryError
  try:
    if problem:
      raise SurgeryError(problem)
    writer = _writer(args.workdir, args.merge_lora)
    if writer is not None:
      writer(args.out, args.workdir, checkpoint=args.checkpoint)
      print(args.out)
      return 0
    loaded = decoder_load.load(args.workdir, checkpoint=args.checkpoint)
  except (SurgeryError, DataError, OSError) as err:
    print(f'ftlab.export: {err}', file=sys.stderr)
    return 2
  if loaded.adapters is not None and not args.merge_lora:
    decoder_export.write_adapter(args.out, loaded, base=loaded.source)
  else:
    decoder_export.write_model(args.out, loaded)
  print(args.out)
  return 0


if __name__ == '__main__':
  sys.exit(main())
