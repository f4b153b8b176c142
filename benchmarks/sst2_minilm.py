"""SST-2 accuracy benchmark: all-MiniLM-L6-v2 fine-tuned by ftlab and by Hugging Face transformers + PyTorch, with the
same weights, data and hyperparameters (configs/sst2_minilm.py's defaults; benchmarks/hf_sst2.py's defaults match).

    python benchmarks/sst2_minilm.py [--seeds 0,1,2] [--workdir /tmp/sst2_bench] [--hf-python PYTHON]

ftlab: one `python -m ftlab.main --config configs/sst2_minilm.py` run per seed (first 8,000 training sentences, one
epoch of 250 steps of 32, max length 64), evaluated once, at the end, on the 872 dev sentences (eval.every_steps =
the run's length, so no checkpoint is picked by dev accuracy). Hugging Face: benchmarks/hf_sst2.py under PYTHON (an
interpreter with torch and transformers: `pip install torch==2.13.0 transformers`), skipped when none is given and
this one lacks torch.
Prints per seed the dev accuracy and the training wall time, and the means; --json-out writes them.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ftlab_run(seed: int, workdir: str, overrides: list[str]) -> dict:
  steps = 250  # 8,000 / 32
  cmd = [sys.executable, '-m', 'ftlab.main', '--config', 'configs/sst2_minilm.py', '--workdir', workdir,
         f'--config.seed={seed}', f'--config.eval.every_steps={steps}', '--config.eval.train_subset=0', *overrides]
  t0 = time.perf_counter()
  subprocess.run(cmd, cwd=ROOT, check=True)
  wall = time.perf_counter() - t0
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  final = [r for r in rows if r['split'] == 'validation' and r['step'] == summary['final_step']][-1]
  return {'seed': seed, 'accuracy': final['accuracy'], 'train_seconds': summary['train_seconds_this_session'],
          'wall_seconds': round(wall, 1), 'examples_per_second': round(8000 / summary['train_seconds_this_session'], 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--workdir', default='/tmp/ftlab_sst2_bench')
  parser.add_argument('--hf-python', default='', help='an interpreter with torch + transformers for the HF half')
  parser.add_argument('--skip-ftlab', action='store_true')
  parser.add_argument('--json-out')
  parser.add_argument('overrides', nargs='*', help='extra --config.KEY=VALUE for the ftlab runs')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  out = {'ftlab': [], 'hf': None}
  if not args.skip_ftlab:
    for seed in seeds:
      workdir = os.path.join(args.workdir, f'seed{seed}')
      if os.path.exists(workdir):
        sys.exit(f'{workdir} exists; remove it or give another --workdir (a rerun would resume, not remeasure)')
      out['ftlab'].append(ftlab_run(seed, workdir, args.overrides))
  python = args.hf_python or (sys.executable if importlib.util.find_spec('torch') else '')
  if python:
    hf_json = os.path.join(args.workdir, 'hf.json')
    subprocess.run([python, os.path.join(ROOT, 'benchmarks', 'hf_sst2.py'), '--seeds', args.seeds, '--batch-size',
                    '32', '--json-out', hf_json], cwd=ROOT, check=True)
    with open(hf_json) as f:
      out['hf'] = json.load(f)
  else:
    print('Hugging Face half skipped: no torch here; give --hf-python /path/to/python (pip install torch==2.13.0 '
          'transformers)')
  print(f'\n{"seed":>4} {"ftlab acc":>10} {"train s":>8} {"ex/s":>7}')
  for r in out['ftlab']:
    print(f'{r["seed"]:>4} {r["accuracy"]:>10.4f} {r["train_seconds"]:>8.1f} {r["examples_per_second"]:>7.1f}')
  if out['ftlab']:
    accs = [r['accuracy'] for r in out['ftlab']]
    out['ftlab_mean'] = statistics.mean(accs)
    out['ftlab_std'] = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f'ftlab: dev accuracy {out["ftlab_mean"]:.4f} +- {out["ftlab_std"]:.4f} over seeds {seeds}; train '
          f'{statistics.mean(r["train_seconds"] for r in out["ftlab"]):.0f} s per seed')
  if out['hf']:
    print(f'HF + PyTorch: dev accuracy {json.dumps({k: v for k, v in out["hf"].items() if "mean" in k or "std" in k})}')
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
