"""An exported SST-2 MiniLM classifier under transformers gives ftlab's dev predictions. Run by hand where a Python
with torch and transformers exists:

    python benchmarks/export_vs_transformers.py --hf-python /path/to/python [--pooling mean] [--train 2000] [--lora]

Fine-tunes configs/sst2_minilm.py on the first --train SST-2 sentences (one epoch; --pooling 'mean', the config's,
'cls' or 'pooler'), exports the best checkpoint with `python -m ftlab.export`, then, under PYTHON, loads the folder
with AutoTokenizer and AutoModelForSequenceClassification (trust_remote_code=True, for modeling_ftlab.py where the
pooling needs it), classifies the 872 dev sentences and compares with the run's predictions.jsonl: dev accuracy of
each side, the largest difference of a class probability, and how many predictions differ. With --lora the run
trains LoRA adapters (rank 8 on the attention's query and value, the head trained, lr 1e-3) and is exported in
PEFT's layout: PYTHON (with peft) loads OUT/base and then PeftModel.from_pretrained(base, OUT).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, '..', 'shared', 'data', 'sst2')

LORA = ['--config.lora.target=/attention/(query|value)$', '--config.lora.rank=8', '--config.lora.alpha=16',
        '--config.lora.train=^(head|pooler)/', '--config.optimizer.learning_rate=1e-3']

HF_SIDE = r'''
import csv, json, os, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
out, dev = sys.argv[1], sys.argv[2]
adapter = os.path.isfile(os.path.join(out, 'adapter_config.json'))
folder = os.path.join(out, 'base') if adapter else out
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
if adapter:
  from peft import PeftModel
  model = PeftModel.from_pretrained(model, out)
model = model.eval()
with open(dev, encoding='utf-8') as f:
  rows = list(csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE))
probs = []
with torch.no_grad():
  for i in range(0, len(rows), 64):
    enc = tok([r['sentence'] for r in rows[i:i + 64]], padding=True, truncation=True, max_length=64,
              return_tensors='pt')
    probs += torch.softmax(model(**enc).logits, dim=-1).tolist()
print('RESULT ' + json.dumps({'probabilities': probs, 'labels': [int(r['label']) for r in rows],
                              'id2label': model.config.id2label}))
'''


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--hf-python', required=True)
  parser.add_argument('--pooling', default='mean', choices=('mean', 'cls', 'pooler'))
  parser.add_argument('--train', type=int, default=2000)
  parser.add_argument('--workdir', default='')
  parser.add_argument('--lora', action='store_true')
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix='ftlab_export_bench_')
  run, out = os.path.join(root, 'run'), os.path.join(root, 'exported')
  trained = subprocess.run([sys.executable, '-m', 'ftlab.main', '--config', 'configs/sst2_minilm.py', '--workdir',
                            run, f'--config.data.splits.train=train[:{args.train}]',
                            f'--config.model.pooling={args.pooling}', f'--config.eval.every_steps={args.train // 32}',
                            *(LORA if args.lora else [])],
                           cwd=ROOT, capture_output=True, text=True)
  if trained.returncode:
    sys.exit(f'the ftlab run failed:\n{trained.stderr[-3000:]}')
  subprocess.run([sys.executable, '-m', 'ftlab.export', run, out], cwd=ROOT, check=True)
  hf = subprocess.run([args.hf_python, '-c', HF_SIDE, out, os.path.join(SST2, 'dev.tsv')], capture_output=True,
                      text=True)
  lines = [line for line in hf.stdout.splitlines() if line.startswith('RESULT ')]
  if hf.returncode or not lines:
    sys.exit(f'the transformers side failed:\n{hf.stderr[-3000:]}')
  theirs = json.loads(lines[-1][len('RESULT '):])
  with open(os.path.join(run, 'predictions.jsonl'), encoding='utf-8') as f:
    mine = [r for r in map(json.loads, f) if r['split'] == 'validation']
  with open(os.path.join(run, 'summary.json'), encoding='utf-8') as f:
    names = json.load(f)['class_names']
  assert [theirs['id2label'][str(i)] for i in range(len(names))] == names
  worst = max(abs(a - b) for r, p in zip(mine, theirs['probabilities']) for a, b in zip(r['probabilities'], p))
  hf_pred = [max(range(len(p)), key=p.__getitem__) for p in theirs['probabilities']]
  differ = sum(names[k] != r['prediction'] for k, r in zip(hf_pred, mine))
  hf_acc = sum(k == y for k, y in zip(hf_pred, theirs['labels'])) / len(hf_pred)
  ftlab_acc = sum(r['prediction'] == r['label'] for r in mine) / len(mine)
  print(f'pooling {args.pooling}{", LoRA adapter (PEFT)" if args.lora else ""}, {len(mine)} dev sentences: dev accuracy ftlab {ftlab_acc:.4f}, transformers '
        f'{hf_acc:.4f}; largest probability difference {worst:.2e}; {differ} predictions differ')


if __name__ == '__main__':
  main()
