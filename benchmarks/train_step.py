"""Train-step throughput on the quickstart model (digits, MLP 128-64), by batch size. Run by hand:

    python benchmarks/train_step.py [--steps 300]

Prints compile time, steps/s and examples/s of the jitted train step (batches already on device, so this is the
step itself), steps/s with the grain pipeline feeding each step (as the loop runs), and the eval examples/s. Figures go in the issue notes; CI never runs this.
"""
import argparse
import os
import time

import jax


from ftlab import config as config_lib
from ftlab import data, parallel, steps
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.steppers import SingleStepper


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--batch_sizes', default='32,128,512')
  args = parser.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  print(f'devices: {jax.device_count()} x {jax.devices()[0].platform}; jax {jax.__version__}')
  print(f'{"batch":>6} {"compile s":>10} {"steps/s":>10} {"examples/s":>12} {"with data steps/s":>18} '
        f'{"eval ex/s":>10}')
  for batch_size in map(int, args.batch_sizes.split(',')):
    config = config_lib.load_config_file(os.path.join(root, 'configs', 'quickstart.py'))
    config.init.pretrain.enabled = False
    config.train.batch_size = batch_size
    config.train.num_steps, config.train.num_epochs = args.steps, 0.0  # the run length only sizes the schedule
    plan = make_plan(config, '/nonexistent-benchmark-workdir')
    mesh = parallel.data_mesh()
    state = initial_state(plan)
    state = parallel.replicate(state, mesh)
    step_fn = jax.jit(steps.bind(plan)[0], donate_argnums=0)
    it = data.train_iterator(plan.splits.train, batch_size=batch_size, seed=0)
    batches = [parallel.shard_batch(next(it), mesh) for _ in range(8)]
    t = time.perf_counter()
    state, m = step_fn(state, batches[0])
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(args.steps):
      state, m = step_fn(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    rate = args.steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(args.steps):  # as the loop does it: a grain batch, put on the mesh, then the step
      state, m = step_fn(state, parallel.shard_batch(next(it), mesh))
    jax.block_until_ready(state)
    loop_rate = args.steps / (time.perf_counter() - t)
    stepper = SingleStepper(plan)  # evaluation as the loop runs it (eval.batch_size 256)
    run_eval = stepper.evaluate
    run_eval(state, plan.splits.validation)
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
      run_eval(state, plan.splits.validation)
    eval_rate = reps * len(plan.splits.validation) / (time.perf_counter() - t)
    print(f'{batch_size:>6} {compile_s:>10.2f} {rate:>10.1f} {rate * batch_size:>12.0f} {loop_rate:>18.1f} '
          f'{eval_rate:>10.0f}')


if __name__ == '__main__':
  main()
