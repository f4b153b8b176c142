"""A vectorised group's checkpoints (ftlab/group_checkpoints.py): one write per save step for all its trials, each
trial's own folder filled when the group ends (or before it opens again, after a kill), keeping exactly what a run
alone keeps."""
import os
import random

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import small_config

from ftlab import checkpoints, group_checkpoints, loop, preemption
from ftlab.plan import make_plan

SETTINGS = [(1e-3, 0), (3e-3, 1), (1e-2, 0)]  # (learning rate, seed): stacked batches


def plans(root, names=None, **overrides):
  return [make_plan(small_config(optimizer__learning_rate=lr, seed=seed, **overrides), str(root / name))
          for (lr, seed), name in zip(SETTINGS, names or ['a', 'b', 'c'])]


def steps_in(folder) -> list[int]:
  return sorted(int(s) for s in os.listdir(folder) if s.isdigit()) if os.path.isdir(folder) else []


def test_a_group_writes_one_checkpoint_per_save_step_and_its_trials_folders_once_at_the_end(tmp_path, monkeypatch):
  writes = []  # (folder, step) of every orbax checkpoint written, in order
  save = ocp.CheckpointManager.save
  monkeypatch.setattr(ocp.CheckpointManager, 'save', lambda self, step, *a, **k: (
      writes.append((os.path.relpath(str(self.directory), tmp_path), step)), save(self, step, *a, **k))[1])
  outcomes = loop.run_plans(plans(tmp_path, checkpoint__every_steps=5))
  assert all(o.error is None for o in outcomes)
  group = [(folder, step) for folder, step in writes if folder.startswith('.groups')]
  # the run's last step (40) each trial saves in its own folder, after the group's checkpoints are written there
  assert [step for _, step in group] == list(range(5, 40, 5)) and len({folder for folder, _ in group}) == 1
  # every write to a trial's own folder comes after the group's last: K writes per save step became one
  own = writes[len(group):]
  assert writes[:len(group)] == group and {folder for folder, _ in own} == {'a/checkpoints', 'b/checkpoints',
                                                                           'c/checkpoints'}
  for name, outcome in zip('abc', outcomes):  # what a run alone keeps: checkpoint.keep (2) latest and the best
    expected = sorted({35, 40, outcome.summary['best_step']})
    assert steps_in(tmp_path / name / 'checkpoints') == expected
    assert [step for folder, step in own if folder == f'{name}/checkpoints'] == expected
    assert group_checkpoints.pointed(str(tmp_path / name)) is None
  assert not os.path.exists(tmp_path / '.groups')


def test_a_preempted_group_trial_resumed_alone_takes_its_checkpoints_over(tmp_path, monkeypatch, capsys):
  """A group stopped by SIGTERM at step 15 (between evaluations) holds its trials' checkpoints in its folder; each
  trial then resumed alone writes them into its own folder first and resumes from step 15, as a run alone would,
  and the group's folder goes with the last of its trials."""
  stop_at = {'step': 15}
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: step == stop_at['step'])
  group_plans = plans(tmp_path)[:2]
  with pytest.raises(preemption.Preempted, match='saved a checkpoint at step 15'):
    loop.run_plans(group_plans)
  group = group_checkpoints.pointed(str(tmp_path / 'a'))
  assert group is not None and steps_in(group) == [10, 15] and steps_in(tmp_path / 'a' / 'checkpoints') == []
  with pytest.raises(checkpoints.CheckpointError, match="its newest checkpoints are in its vectorised group's"):
    checkpoints.run_step(str(tmp_path / 'a'), 'latest')  # ftlab.evaluate, export: not an older one in silence
  stop_at['step'] = None
  capsys.readouterr()
  first = loop.run_plans(plans(tmp_path)[:1])[0]
  assert f'resuming {tmp_path / "a"} from step 15' in capsys.readouterr().out
  assert first.error is None and group_checkpoints.pointed(str(tmp_path / 'a')) is None
  assert steps_in(tmp_path / 'a' / 'checkpoints') == sorted({30, 40, first.summary['best_step']})  # 15's deleted
  assert os.path.isdir(group)  # the other trial still resumes from it
  alone = loop.run_plans(plans(tmp_path, ['a', 'fresh'])[1:2])[0]
  second = loop.run_plans(plans(tmp_path)[1:2])[0]
  assert second.summary['best_step'] == alone.summary['best_step']
  assert second.summary['validation']['loss'] == pytest.approx(alone.summary['validation']['loss'], abs=1e-5)
  assert not os.path.exists(group) and not os.path.exists(tmp_path / '.groups')


@pytest.mark.parametrize('damaged', ['state', 'trials'])
def test_an_unreadable_group_checkpoint_is_skipped_with_a_warning_and_the_trial_resumes_from_the_one_before(
    damaged, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: step == 15)
  with pytest.raises(preemption.Preempted):
    loop.run_plans(plans(tmp_path)[:2])
  group = group_checkpoints.pointed(str(tmp_path / 'a'))
  for root, _, files in os.walk(os.path.join(group, '15', damaged)):
    for name in files:
      with open(os.path.join(root, name), 'w') as f:
        f.write('damaged')
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: False)
  capsys.readouterr()
  outcome = loop.run_plans(plans(tmp_path)[:1])[0]
  out, err = capsys.readouterr()
  assert 'the group checkpoint at step 15' in err and 'cannot be read' in err
  assert f'resuming {tmp_path / "a"} from step 10' in out and outcome.error is None


def test_a_trial_whose_group_folder_was_deleted_says_so_and_starts_from_its_own_folder(tmp_path, monkeypatch,
                                                                                        capsys):
  import shutil
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: step == 15)
  with pytest.raises(preemption.Preempted):
    loop.run_plans(plans(tmp_path)[:2])
  shutil.rmtree(group_checkpoints.pointed(str(tmp_path / 'a')))
  monkeypatch.setattr(preemption.Notice, 'requested', lambda self, step: False)
  capsys.readouterr()
  assert loop.run_plans(plans(tmp_path)[:1])[0].error is None
  out, err = capsys.readouterr()
  assert "names its vectorised group's checkpoints in" in err and 'which is gone' in err
  assert 'resuming' not in out and group_checkpoints.pointed(str(tmp_path / 'a')) is None


@pytest.mark.parametrize('mode', ['max', 'min'])
def test_writing_only_kept_steps_leaves_the_steps_and_best_that_writing_every_save_leaves(tmp_path, mode):
  """The group's folder keeps, per trial, only kept_steps of its saves: written in order into a trial's own
  Checkpoints they must leave the same steps and the same best as all of them (ties, saves without a metric and
  one on SIGTERM included)."""
  rng = random.Random(22)
  for case in range(4):
    saves, step = [], 0
    for _ in range(rng.randrange(3, 9)):
      step += rng.randrange(1, 4)
      preempted = rng.random() < 0.15
      metric = None if preempted or rng.random() < 0.3 else float(rng.choice([0.1, 0.5, 0.5, 0.9]))
      saves.append((step, metric, preempted))
    keep = rng.choice([1, 2])
    results = []
    for which, chosen in (('all', saves), ('kept', [s for s in saves
                                                    if s[0] in group_checkpoints.kept_steps(saves, keep, mode)])):
      ckpts = checkpoints.Checkpoints(str(tmp_path / f'{mode}{case}{which}'), keep=keep, mode=mode)
      for s, metric, preempted in chosen:
        ckpts.save(s, {'w': np.full(2, s, np.float32)}, group_checkpoints._Position({'i': s}), {'step': s},
                   metric=metric, preempted=preempted)
      ckpts.wait()
      results.append((ckpts.manager.all_steps(), ckpts.best_step()))
      ckpts.close()
    assert results[0] == results[1], (saves, keep)
