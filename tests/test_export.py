"""`python -m ftlab.export`: BERT classifiers (ftlab/pretrained/encoder_export.py), a text classifier (every pooling)
and an NER tagger, LoRA merged, written as Hugging Face folders; the quickstart's MLP in ftlab's own layout
(ftlab/pretrained/ftlab_format.py). ftlab reads each back as model.pretrained with identical parameters and logits."""
import copy
import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from ftlab import checkpoints, data, export, stages
from ftlab.initial_state import initial_state
from ftlab.models import lora
from ftlab.plan import make_plan
from ftlab.pretrained import vision
from conftest import small_config
from test_packing import _text_config, _write_conll


def _run(tmp_path, task: str, pooling: str, lora_target: str):
  c = _text_config(tmp_path, model__pooling=pooling, lora__target=lora_target, lora__train='^(head|pooler)/')
  if task == 'ner':
    c.data.source, c.data.path, c.eval.metric = 'conll', _write_conll(tmp_path / 'conll'), 'entity_f1'
  c.train.num_steps, c.eval.every_steps, c.eval.predictions = 10, 10, False
  run = str(tmp_path / 'run')
  stages.run(c, run)
  return c, run


@pytest.mark.parametrize('task, pooling, lora_target', [('text', 'mean', ''), ('text', 'pooler', 'attention/query$'),
                                                        ('ner', 'cls', '')])
def test_an_exported_classifier_reads_back_into_ftlab_with_identical_logits(tmp_path, task, pooling, lora_target):
  c, run = _run(tmp_path, task, pooling, lora_target)
  out = str(tmp_path / 'exported')
  assert export.main([run, out] + (['--merge-lora'] if lora_target else [])) == 0
  with open(os.path.join(out, 'config.json')) as f:
    hf_config = json.load(f)
  with open(os.path.join(run, 'summary.json')) as f:
    classes = json.load(f)['class_names']
  assert hf_config['id2label'] == {str(i): name for i, name in enumerate(classes)}
  expected = {('text', 'mean'): 'FtlabBertForSequenceClassification', ('text', 'pooler'): 'BertForSequenceClassification',
              ('ner', 'cls'): 'BertForTokenClassification'}[task, pooling]
  assert hf_config['architectures'] == [expected]
  assert os.path.isfile(os.path.join(out, 'modeling_ftlab.py')) == (expected.startswith('Ftlab'))
  names = set(load_file(os.path.join(out, 'model.safetensors')))
  assert {'classifier.weight', 'classifier.bias', 'bert.embeddings.word_embeddings.weight'} <= names
  assert ('bert.pooler.dense.weight' in names) == (pooling == 'pooler') and os.path.isfile(os.path.join(out, 'vocab.txt'))

  # read back: a fresh run initialised from the folder holds the exported parameters, head included
  back = copy.deepcopy(c)
  back.model.pretrained, back.init.reinit, back.lora.target = out, '', ''
  back.model.bert.update(hidden_size=0, num_layers=0, num_heads=0, intermediate_size=0, max_position=0)  # its own
  plan = make_plan(back, str(tmp_path / 'back'))
  reread = initial_state(plan).params
  best = checkpoints.restore_params(os.path.join(run, 'checkpoints'), checkpoints.run_step(run, 'best'))
  if lora_target:
    best = lora.merge(best, scale=c.lora.alpha / c.lora.rank)
  jax.tree.map(np.testing.assert_array_equal, reread, best)
  batch = data.eval_batches(plan.splits.validation, batch_size=8).__next__()
  inputs = plan.task.inputs(batch)
  logits = plan.model.apply({'params': reread}, inputs)
  original = make_plan(c, str(tmp_path / 'original')).model.apply({'params': checkpoints.restore_params(
      os.path.join(run, 'checkpoints'), checkpoints.run_step(run, 'best'))}, inputs)
  np.testing.assert_allclose(logits, original, rtol=1e-5, atol=1e-6)  # LoRA: merged vs adapted, float rounding
  if lora_target:
    _check_peft_adapter(c, run, str(tmp_path / 'adapter'))


def _check_peft_adapter(c, run: str, out: str):
  """A LoRA run exported without --merge-lora: PEFT's files, the head and pooler among modules_to_save, the base
  folder holding the frozen encoder; base + scale * B @ A gives the merged kernels."""
  assert export.main([run, out]) == 0
  with open(os.path.join(out, 'adapter_config.json')) as f:
    peft = json.load(f)
  assert peft['task_type'] == 'SEQ_CLS' and peft['r'] == c.lora.rank and peft['lora_alpha'] == c.lora.alpha
  assert peft['target_modules'] == [f'bert.encoder.layer.{i}.attention.self.query' for i in range(2)]
  assert peft['modules_to_save'] == ['bert.pooler.dense', 'classifier']
  assert peft['base_model_name_or_path'] == os.path.join(out, 'base')
  tensors = load_file(os.path.join(out, 'adapter_model.safetensors'))
  best = checkpoints.restore_params(os.path.join(run, 'checkpoints'), checkpoints.run_step(run, 'best'))
  np.testing.assert_array_equal(tensors['base_model.model.classifier.weight'], np.asarray(best['head']['kernel']).T)
  base = load_file(os.path.join(out, 'base', 'model.safetensors'))
  merged = lora.merge(best, scale=c.lora.alpha / c.lora.rank)
  for i in range(2):
    module = f'bert.encoder.layer.{i}.attention.self.query'
    a, b = tensors[f'base_model.model.{module}.lora_A.weight'], tensors[f'base_model.model.{module}.lora_B.weight']
    assert a.shape == (c.lora.rank, 16) and b.shape == (16, c.lora.rank)
    kernel = base[f'{module}.weight'] + c.lora.alpha / c.lora.rank * b @ a  # PyTorch's [out, in]
    np.testing.assert_allclose(kernel.T, merged['backbone'][f'layer_{i}']['attention']['query']['kernel'],
                               rtol=1e-6, atol=1e-7)


def test_an_unfinished_run_is_refused_with_the_reason(tmp_path, capsys):
  run = tmp_path / 'run'
  os.makedirs(run / 'checkpoints')  # a run that has not finished: its config and checkpoints, no summary.json
  (run / 'config.json').write_text(json.dumps(_text_config(tmp_path).to_dict()))
  assert export.main([str(run), str(tmp_path / 'out')]) == 2
  assert 'no summary.json (the run has not finished' in capsys.readouterr().err


def test_a_model_no_hugging_face_library_holds_exports_in_ftlabs_layout_and_reads_back(tmp_path):
  c = small_config(train__num_steps=10, eval__every_steps=10)
  run, out = str(tmp_path / 'run'), str(tmp_path / 'exported')
  stages.run(c, run)
  assert export.main([run, out]) == 0
  with open(os.path.join(out, 'config.json')) as f:
    saved = json.load(f)
  assert saved['format'] == 'ftlab' and saved['task'] == 'image' and saved['model']['features'] == [32, 16]
  back = copy.deepcopy(c)
  back.model.pretrained, back.init.reinit = out, ''
  plan = make_plan(back, str(tmp_path / 'back'))
  reread = initial_state(plan).params
  jax.tree.map(np.testing.assert_array_equal, reread, checkpoints.restore_params(
      os.path.join(run, 'checkpoints'), checkpoints.run_step(run, 'best')))


def test_a_vit_run_exports_in_timms_layout_and_reads_back_with_identical_parameters(tmp_path):
  c = small_config(model__name='vit', model__variant='nano/4', train__num_steps=8, eval__every_steps=8)
  run, out = str(tmp_path / 'run'), str(tmp_path / 'exported')
  stages.run(c, run)
  assert export.main([run, out]) == 0
  with open(os.path.join(out, 'config.json')) as f:
    saved = json.load(f)
  assert saved['label_names'] == ['5', '6', '7', '8', '9'] and saved['num_classes'] == 5
  assert saved['model_args'] == {'img_size': 8, 'patch_size': 4, 'in_chans': 1, 'embed_dim': 64, 'depth': 2,
                                 'num_heads': 2, 'mlp_ratio': 2.0, 'global_pool': 'token', 'class_token': True}
  weights = vision.read_weights(os.path.join(out, 'model.safetensors'))
  assert vision.detect_format(weights) == 'timm_vit' and weights['blocks.1.attn.qkv.weight'].shape == (192, 64)
  back = copy.deepcopy(c)
  back.model.pretrained, back.init.reinit = os.path.join(out, 'model.safetensors'), ''
  reread = initial_state(make_plan(back, str(tmp_path / 'back'))).params
  jax.tree.map(np.testing.assert_array_equal, reread, checkpoints.restore_params(
      os.path.join(run, 'checkpoints'), checkpoints.run_step(run, 'best')))
