"""The files a run leaves besides its metrics and checkpoints: optimizer_plan.txt at the start; summary.json (and,
for LoRA, merged_params.npz) at the end. Only process 0 of a multi-host run writes them."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from ftlab import faults, writers
from ftlab.models import lora as lora_lib
from ftlab.optim import groups, rules as rules_lib
from ftlab.plan import Plan


def write_optimizer_plan(plan: Plan, *, echo: bool = True) -> None:
  """Writes optimizer_plan.txt (parameter groups, multipliers, freezing) and, with `echo`, prints it with the data."""
  table = rules_lib.describe(plan.labels, plan.rules, plan.variables['params'])
  if echo:
    print(f'ftlab: data {json.dumps(plan.splits.report)}', flush=True)
    print(f'ftlab: optimizer plan\n{table}', flush=True)
  writers.write_text_atomic(os.path.join(plan.workdir, 'optimizer_plan.txt'), table + '\n')


def write_summary(plan: Plan, *, best_step: int, final_step: int, stopped_early: bool, at_best: dict, test: dict,
                  best_params, train_seconds: float, skipped_steps: int | None = None) -> dict:
  """Writes a finished run's summary.json (and, with LoRA, merged_params.npz) from its evaluations at the best
  step (`at_best`: {'validation': ..., maybe 'train_eval': ...}); returns the summary."""
  config, workdir = plan.config, plan.workdir
  is_writer = jax.process_index() == 0
  best_val = at_best['validation']
  summary = {'best_step': best_step, 'final_step': final_step, 'total_steps': plan.total_steps,
             'stopped_early': stopped_early, 'selection_metric': config.eval.metric, 'selection_mode': plan.eval_mode,
             'validation': best_val, 'test': test, 'train_eval': at_best.get('train_eval'),
             'train_seconds_this_session': round(train_seconds, 3), 'num_classes': plan.splits.num_classes,
             'class_names': list(plan.splits.class_names), 'data': plan.splits.report}
  if skipped_steps is not None:  # train.skip_nonfinite runs: the steps skipped for a NaN/Inf loss
    summary['skipped_steps'] = skipped_steps
  _write_merged_lora(plan, best_params, is_writer=is_writer)
  faults.point('summary', where=workdir)
  if is_writer:
    writers.write_json_atomic(os.path.join(workdir, 'summary.json'), summary)
    metric = config.eval.metric
    shown = [m for m in dict.fromkeys(['accuracy', metric]) if m in test]
    print(f'ftlab: {workdir}: best validation {metric} {best_val[metric]:.4f} at step {best_step}; '
          + ', '.join(f'test {m} {test[m]:.4f}' for m in shown), flush=True)
  return summary


def _write_merged_lora(plan: Plan, best_params, *, is_writer: bool) -> None:
  """merged_params.npz: the best adapters folded into the base, a plain model for export."""
  spec = lora_lib.Spec.of(plan.config.lora)
  if not spec:
    return
  if jax.process_count() > 1:  # every process takes part; sharded (FSDP) leaves become whole host arrays
    best_params = multihost_utils.process_allgather(best_params, tiled=True)
  if is_writer:
    merged = lora_lib.merge(jax.device_get(best_params), scale=spec.scale)
    writers.write_npz_atomic(os.path.join(plan.workdir, 'merged_params.npz'),
                             {groups.path_str(kp): np.asarray(v)
                              for kp, v in jax.tree_util.tree_flatten_with_path(merged)[0]})
