"""The console's progress line, every train.log_every_steps: a bar, the step, the loss, the training speed and the
time left.

The speed is the training steps' own: the first step of a session (it compiles) and what the loop runs `paused`
(evaluations, checkpoint saves) are left out, and it is smoothed over the intervals with an exponential moving
average (tqdm's, factor 0.3), so that it no longer swings with whether an evaluation fell inside an interval. The
time left is the steps to go at that speed plus the evaluations to go at the mean time of those seen. One plain
line per interval, in a terminal as in a log file.
"""
from __future__ import annotations

import contextlib
import datetime
import time

SMOOTHING = 0.3  # the weight of the latest interval's speed
BAR = 20  # characters


class Progress:

  def __init__(self, total_steps: int, start_step: int, *, eval_every: int, clock=time.perf_counter):
    self.total, self.eval_every, self.clock = total_steps, eval_every, clock
    self.start = start_step
    self.since: tuple[int, float] | None = None  # (step, time) where the current interval began
    self.paused_in_interval = 0.0
    self.evaluations, self.evaluation_seconds = 0, 0.0
    self.rate: float | None = None  # smoothed steps/s

  def stepped(self, step: int) -> None:
    """Step `step` ended; the first of the session starts the clock."""
    if self.since is None:
      self.since, self.paused_in_interval = (step, self.clock()), 0.0

  @contextlib.contextmanager
  def paused(self, *, evaluation: bool = False):
    """Time the speed leaves out (an evaluation, counted for the time left, or a save)."""
    t0 = self.clock()
    try:
      yield
    finally:
      seconds = self.clock() - t0
      self.paused_in_interval += seconds
      if evaluation:
        self.evaluations += 1
        self.evaluation_seconds += seconds

  def line(self, step: int, loss: float) -> str:
    """The line at `step` (after `stepped(step)`), which starts the next interval."""
    self._measure(step)
    width = len(str(self.total))
    done = int(BAR * step / max(self.total, 1))
    speed = 'compiling' if self.rate is None else f'{self.rate:.1f} steps/s'
    return (f'[{"#" * done}{"." * (BAR - done)}] step {step:>{width}}/{self.total}  loss {loss:.4f}  {speed:>14}'
            f'  ETA {self.eta(step)}')

  def eta(self, step: int) -> str:
    if self.rate is None:
      return '?'
    seconds = (self.total - step) / self.rate
    if self.evaluations:
      to_come = self.total // self.eval_every - step // self.eval_every + (self.total % self.eval_every != 0)
      seconds += to_come * self.evaluation_seconds / self.evaluations
    return str(datetime.timedelta(seconds=round(seconds)))

  def _measure(self, step: int) -> None:
    start_step, start_time = self.since
    now = self.clock()
    seconds = now - start_time - self.paused_in_interval
    if step > start_step and seconds > 0:
      rate = (step - start_step) / seconds
      self.rate = rate if self.rate is None else SMOOTHING * rate + (1 - SMOOTHING) * self.rate
    self.since, self.paused_in_interval = (step, now), 0.0
