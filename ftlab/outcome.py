"""How a run ends: its summary, or the reason it stopped before one (Diverged, Stop)."""
from __future__ import annotations

import dataclasses


class Diverged(RuntimeError):
  """The training loss became NaN or Inf: raised at the first such step, before anything of it is saved."""

  def __init__(self, step: int, loss: float, workdir: str, last_good: int | None, in_a_row: int = 0):
    self.step, self.loss, self.last_good = step, loss, last_good
    where = (f'the last good checkpoint is step {last_good} in {workdir}/checkpoints' if last_good is not None
             else 'no checkpoint was saved before it')
    skipped = f' (after skipping {in_a_row} non-finite steps in a row, train.skip_nonfinite)' if in_a_row else ''
    super().__init__(f'training diverged: the loss is {loss} at step {step}{skipped}; {where}. Lower '
                     'optimizer.learning_rate, set optimizer.grad_clip_norm, or add schedule.warmup, then rerun in a '
                     'new workdir')


class Stop(Exception):
  """Raised by an `on_eval` callback to end a run after an evaluation (a pruned sweep trial); `step` is where."""

  def __init__(self, step: int, reason: str):
    self.step, self.reason = step, reason
    super().__init__(f'stopped at step {step}: {reason}')


@dataclasses.dataclass
class Outcome:
  """How one run ended: its summary (summary.json's contents), or the Stop / Diverged that ended it early."""
  summary: dict | None = None
  error: BaseException | None = None
  seconds: float = 0.0  # wall time of the run, or of the group it trained in

  def result(self) -> dict:
    """The summary, or the error raised."""
    if self.error is not None:
      raise self.error
    return self.summary
