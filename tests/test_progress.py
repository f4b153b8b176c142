"""The console's progress line (ftlab/progress.py) on a made-up clock: the speed leaves out the compiling first step
and the evaluations, however they fall in the intervals, and the time left counts the evaluations to come."""
from ftlab import loop
from ftlab.progress import Progress


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_the_speed_leaves_out_compilation_and_evaluations_and_the_eta_counts_the_evaluations_to_come():
  clock = Clock()
  progress = Progress(100, 0, eval_every=20, clock=clock)
  lines = {}
  for step in range(1, 101):
    clock.now += 30.0 if step == 1 else 0.1  # the first step compiles
    progress.stepped(step)
    if step == 1 or step % 10 == 0:
      lines[step] = progress.line(step, loss=0.5)
    if step % 20 == 0:
      with progress.paused(evaluation=True):
        clock.now += 5.0  # an evaluation: 50 steps' worth
  assert 'compiling' in lines[1] and lines[1].endswith('ETA ?')
  for step in range(10, 101, 10):  # 10 steps/s in every interval, with or without an evaluation inside it
    assert '10.0 steps/s' in lines[step], lines[step]
  # at step 50: 50 steps at 10/s, and the evaluations at 60, 80 and 100 at 5 s each
  assert lines[50].endswith('ETA 0:00:20') and lines[50].startswith('[##########..........] step  50/100')


def test_an_evaluation_line_puts_train_and_validation_side_by_side_with_their_gap():
  row = {'train_eval': {'accuracy': 0.95, 'loss': 0.2, 'f1_macro': 0.9},
         'validation': {'accuracy': 0.9, 'loss': 0.3, 'f1_macro': 0.85}}
  line = loop._eval_line(40, 'f1_macro', [row], None)  # pylint: disable=protected-access
  assert line == ('  eval @ 40: train / validation f1_macro 0.9000 / 0.8500 (gap +0.0500)  '
                  'loss 0.2000 / 0.3000 (gap -0.1000)  accuracy 0.9500 / 0.9000 (gap +0.0500)')
  alone = loop._eval_line(40, 'f1_macro', [{'validation': row['validation']}], None)  # pylint: disable=protected-access
  assert alone == '  eval @ 40: validation f1_macro 0.8500  loss 0.3000  accuracy 0.9000'
