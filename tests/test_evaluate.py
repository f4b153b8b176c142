"""`python -m ftlab.evaluate`: a finished run evaluated again, on its own test split (its summary's metrics exactly,
its folder byte-identical) and on other data (refused when the label sets differ), into a folder of its own; and
`python -m ftlab.explain` writing its page for the same run."""
import hashlib
import json
import os
import shutil

import pytest

from conftest import small_config
from ftlab import evaluate, explain, loop
from ftlab.plan import make_plan


def _hashes(folder) -> dict:
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('evaluate') / 'run')
  loop.train_and_evaluate(make_plan(small_config(train__num_steps=20), workdir))
  return workdir


def test_the_runs_own_test_split_gives_its_summary_and_the_run_folder_stays_byte_identical(run, capsys):
  before = _hashes(run)
  out = f'{run}_again'
  assert evaluate.main([run, f'--out={out}', '--config.eval.predictions=True']) == 0
  assert _hashes(run) == before
  with open(os.path.join(run, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(out, 'metrics.json')) as f:
    result = json.load(f)
  assert result['step'] == summary['best_step'] and result['test'] == summary['test']
  with open(os.path.join(out, 'predictions.jsonl')) as f:
    assert sum(1 for line in f if '"test"' in line) == summary['data']['sizes']['test']
  assert f'test accuracy {summary["test"]["accuracy"]:.4f}' in capsys.readouterr().out


@pytest.mark.parametrize('args, message', [
    (['--config.data.classes=[0,1,2,3,4]'], "data: this dataset's labels are ['0', '1', '2', '3', '4'] but the run "
                                            "predicts ['5', '6', '7', '8', '9']; map them in config"),
    (['--config.optimizer.learning_rate=1.0'], '--config.optimizer.learning_rate: evaluation changes only data.*'),
    (['--checkpoint=7'], '--checkpoint \'7\': '),
    (['--out={run}/inside'], "inside the run's folder"),
])
def test_bad_evaluations_are_refused_before_anything_is_written(run, capsys, tmp_path, args, message):
  before = _hashes(run)
  out = str(tmp_path / 'out')
  argv = [run, f'--out={out}'] + [a.replace('{run}', run) for a in args]
  try:
    status = evaluate.main(argv)
  except SystemExit as exit_:
    status = exit_.code
  assert status == 2
  err = capsys.readouterr().err
  assert message.replace('{run}', run) in err and 'Traceback' not in err
  assert _hashes(run) == before and not os.path.exists(out)


def test_a_run_saved_before_a_key_existed_is_evaluated_with_its_default(run, tmp_path):
  old = str(tmp_path / 'old_run')
  shutil.copytree(run, old)
  with open(os.path.join(old, 'config.json')) as f:
    saved = json.load(f)
  del saved['eval']['predictions'], saved['data']['folds']  # keys ftlab gained after this run was written
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(saved, f)
  assert evaluate.main([old, f'--out={tmp_path / "out"}']) == 0


def test_the_explain_page_shows_the_most_confident_errors_then_correct_predictions(run, capsys, tmp_path):
  before = _hashes(run)
  out = str(tmp_path / 'explained')
  assert explain.main([run, '--n=4', '--split=validation', '--steps=8', f'--out={out}']) == 0
  page = open(capsys.readouterr().out.strip().splitlines()[-1]).read()
  assert page.count('class="ex ') == 4 and page.count('data:image/png;base64,') == 4
  flags = [chunk.startswith('err') for chunk in page.split('class="ex ')[1:]]
  assert flags == sorted(flags, reverse=True) and flags[0]  # errors first (20 steps leave plenty)
  assert os.listdir(out) == ['explain.html'] and _hashes(run) == before
