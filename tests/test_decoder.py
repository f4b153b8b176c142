"""The Llama-family decoder: parity with transformers on recorded fixtures, the KV cache, packing, the completion-only
loss, LoRA merging and sampling."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab import generation, lm_task, tasks
from ftlab.models import llama, lora
from ftlab.pretrained import decoder, hf

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
TINY = llama.DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                           num_kv_heads=2, head_dim=8, initializer_range=0.2, tie_embeddings=False)


def _imported(name: str):
  folder = os.path.join(FIXTURES, name)
  with open(os.path.join(folder, 'config.json')) as f:
    config = decoder.decoder_config(json.load(f))
  params, unused = decoder.to_ftlab(hf.read_weights(folder))
  assert unused == []
  return config, params, np.load(os.path.join(folder, 'reference.npz'))


@pytest.mark.parametrize('name', ['tiny_llama', 'tiny_llama_tied'])
def test_logits_equal_transformers_on_recorded_tiny_llamas(name):
  """tiny_llama: GQA, untied head; tiny_llama_tied: tied embeddings, attention biases, Llama-3 rope scaling (both
  made by tests/fixtures/make_llama_fixtures.py with transformers 5.23)."""
  config, params, ref = _imported(name)
  logits = jax.jit(llama.CausalLM(config).apply)({'params': params}, {'input_ids': ref['input_ids']})
  np.testing.assert_allclose(np.asarray(logits), ref['logits'], atol=1e-4, rtol=0)


def test_export_names_round_trip_to_the_same_tensors():
  config, params, _ = _imported('tiny_llama_tied')
  back, unused = decoder.to_ftlab(decoder.from_ftlab(params))
  assert unused == []
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), params, back)
  assert decoder.decoder_config(decoder.hf_config(config)) == config


def _model_and_params(config=TINY, seed=0):
  """A fresh tiny decoder whose `apply` is jitted (a forward compiled as one program, not run op by op)."""
  model = llama.CausalLM(config)
  params = model.init(jax.random.key(seed), {'input_ids': jnp.zeros((1, 4), jnp.int32)})['params']
  return model, params


_apply = jax.jit(llama.CausalLM(TINY).apply, static_argnames=('last_only',))


def test_kv_cache_decoding_gives_the_full_forward_logits_at_every_position():
  _, params = _model_and_params()
  ids = jax.random.randint(jax.random.key(1), (2, 10), 0, TINY.vocab_size)
  full = _apply({'params': params}, {'input_ids': ids})
  cache = llama.init_cache(TINY, 2, 12)
  logits, cache = _apply({'params': params}, {'input_ids': ids[:, :4]}, cache=cache)
  chunks = [logits]
  for t in range(4, 10):
    step = {'input_ids': ids[:, t:t + 1], 'positions': jnp.full((2, 1), t)}
    logits, cache = _apply({'params': params}, step, cache=cache)
    chunks.append(logits)
  np.testing.assert_allclose(np.concatenate(chunks, axis=1), full, atol=1e-5)


def test_generation_from_left_padded_prompts_equals_each_prompt_alone():
  _, params = _model_and_params()
  apply = lambda inputs, cache, **kw: _apply({'params': params}, inputs, cache=cache, **kw)
  short, long = np.array([5, 9, 3]), np.array([7, 1, 4, 2, 8, 6])
  prompts = np.stack([np.concatenate([np.zeros(3, np.int32), short]), long])
  segments = (np.arange(6) >= np.array([[3], [0]])).astype(np.int32)
  generate = jax.jit(lambda p, s: generation.generate(apply, TINY, p, s, max_new_tokens=5, eos_id=63))
  together = generate(prompts, segments)
  for row, prompt in enumerate((short, long)):
    alone = generate(prompt[None], np.ones((1, len(prompt)), np.int32))
    np.testing.assert_array_equal(together[row], alone[0])


def test_sampling_with_top_k_one_or_a_tiny_top_p_is_greedy():
  logits = jax.random.normal(jax.random.key(0), (16, 50))
  greedy = generation.pick(logits, None)
  for kwargs in ({'top_k': 1}, {'top_p': 1e-6}):
    np.testing.assert_array_equal(generation.pick(logits, jax.random.key(1), temperature=1.0, **kwargs), greedy)
  sampled = generation.pick(logits, jax.random.key(1), temperature=5.0)
  assert (sampled != greedy).any()


def _packed_and_alone():
  """Two examples (4 and 6 tokens) packed in one row with 2 padding slots, and each alone."""
  a, b = np.array([3, 8, 1, 5]), np.array([9, 2, 7, 4, 6, 11])
  row = np.concatenate([a, b, [0, 0]])[None]
  packed = {'input_ids': row, 'positions': np.array([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 0]]),
            'segment_ids': np.array([[1] * 4 + [2] * 6 + [0, 0]])}
  return a, b, packed


def test_a_packed_row_gives_each_example_its_logits_alone_and_no_token_attends_across():
  _, params = _model_and_params()
  a, b, packed = _packed_and_alone()
  logits = _apply({'params': params}, packed)
  alone_a = _apply({'params': params}, {'input_ids': a[None]})
  alone_b = _apply({'params': params}, {'input_ids': b[None]})
  np.testing.assert_allclose(logits[0, :4], alone_a[0], atol=1e-5)
  np.testing.assert_allclose(logits[0, 4:10], alone_b[0], atol=1e-5)
  changed = dict(packed, input_ids=packed['input_ids'].copy())
  changed['input_ids'][0, :4] = [20, 21, 22, 23]  # another first example: the second's logits keep their bits
  np.testing.assert_array_equal(_apply({'params': params}, changed)[0, 4:10], logits[0, 4:10])


def test_the_packed_loss_sum_equals_the_examples_unpacked_loss_sums():
  _, params = _model_and_params()
  a, b, packed = _packed_and_alone()
  counted = lambda n: np.r_[np.zeros(1), np.ones(n - 2), np.zeros(1)]  # the first token is the prompt
  packed_batch = {**packed, 'targets': np.r_[a[1:], 0, b[1:], 0, 0, 0][None],
                  'loss_mask': np.r_[counted(4), counted(6), 0, 0][None]}
  task = lm_task.LMTask((), TINY, eos_id=63)

  def loss_sum(batch):
    logits = _apply({'params': params}, task.inputs(batch))
    losses, weights = task.losses_and_weights(logits, batch, label_smoothing=0.1, class_weights=None)
    return jnp.sum(losses * weights)

  def alone(x):
    return {'input_ids': x[None], 'positions': np.arange(len(x))[None], 'segment_ids': np.ones((1, len(x)), int),
            'targets': np.r_[x[1:], 0][None], 'loss_mask': counted(len(x))[None]}

  np.testing.assert_allclose(loss_sum(packed_batch), loss_sum(alone(a)) + loss_sum(alone(b)), rtol=1e-5)


def test_tokens_outside_the_loss_mask_get_no_gradient():
  """The completion-only loss: the gradient with respect to the logits is exactly zero at prompt and padding
  positions."""
  task = lm_task.LMTask((), TINY, eos_id=63)
  logits = jax.random.normal(jax.random.key(0), (2, 6, 64))
  mask = np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], np.float32)
  batch = {'targets': np.arange(12).reshape(2, 6), 'loss_mask': mask}

  def mean_loss(lg):
    losses, weights = task.losses_and_weights(lg, batch, label_smoothing=0.1, class_weights=None)
    return jnp.sum(losses * weights) / jnp.sum(weights)

  grads = np.asarray(jax.grad(mean_loss)(logits))
  assert np.all(grads[mask == 0] == 0)
  assert np.all(np.abs(grads[mask == 1]).sum(-1) > 0)


def test_the_cross_entropy_equals_optax_with_smoothed_one_hot_targets():
  import optax
  logits = jax.random.normal(jax.random.key(0), (3, 5, 17))
  targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 17)
  expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(targets, 17), 0.2))
  np.testing.assert_allclose(tasks.classification_loss(logits, targets, label_smoothing=0.2), expected, rtol=1e-5)


def test_lora_merged_into_the_decoder_equals_the_adapted_forward():
  model, params = _model_and_params()
  from ml_collections import ConfigDict
  lora_config = ConfigDict({'target': r'(q|k|v|o|gate|up|down)_proj$', 'rank': 4, 'alpha': 8.0, 'dropout': 0.0})
  adapted_params = lora.add_adapters(params, lora_config, jax.random.key(3))
  adapters = jax.tree.map(lambda x: x + 0.1, adapted_params['lora'])  # b starts at zero: move it
  assert len(adapters) == 2 * 7
  adapted = lora.Adapted(model, lora.Spec.of(lora_config))
  ids = {'input_ids': jax.random.randint(jax.random.key(1), (2, 7), 0, 64)}
  with_adapters = jax.jit(adapted.apply)({'params': {**params, 'lora': adapters}}, ids)
  merged = _apply({'params': lora.merge({**params, 'lora': adapters}, scale=2.0)}, ids)
  np.testing.assert_allclose(with_adapters, merged, atol=1e-4)
  assert np.abs(with_adapters - _apply({'params': params}, ids)).max() > 1e-2


def test_layer_decay_and_gradual_unfreezing_read_the_decoders_layer_names():
  """model/layers_N/... is layer N + 1, the embeddings layer 0, and with head_pattern the final norm and lm_head the
  top: layer-wise decay scales each layer's rate and gradual unfreezing thaws the layers from the top down."""
  from ftlab.config import defaults
  from ftlab.optim import rules as rules_lib
  _, params = _model_and_params()
  opt = defaults().optimizer
  opt.layer_decay, opt.unfreeze_every, opt.head_pattern = 0.5, '10 steps', r'^(lm_head|model/norm)/'
  labels, rules = rules_lib.resolve(opt, params, total_steps=100)

  def rule(path):
    node = labels
    for key in path.split('/'):
      node = node[key]
    return rules[node]

  assert rule('lm_head/kernel').lr_mult == 1.0 and rule('model/norm/scale').lr_mult == 1.0
  assert rule('model/layers_1/mlp/up_proj/kernel').lr_mult == 0.5
  assert rule('model/layers_0/self_attn/q_proj/kernel').lr_mult == 0.25
  embed = rule('model/embed_tokens/embedding')
  assert embed.lr_mult == 0.125 and embed.layer == 0
  assert not bool(embed.freezing.trained_at(29)) and bool(embed.freezing.trained_at(30))
  assert not bool(rule('model/layers_1/mlp/up_proj/kernel').freezing.trained_at(9))
  assert bool(rule('model/layers_1/mlp/up_proj/kernel').freezing.trained_at(10))


def test_bfloat16_compute_keeps_float32_parameters_and_close_logits():
  _, params = _model_and_params()
  fast = llama.CausalLM(TINY, dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(fast.init(jax.random.key(0), {
      'input_ids': jnp.zeros((1, 4), jnp.int32)})))
  ids = {'input_ids': jax.random.randint(jax.random.key(1), (2, 9), 0, 64)}
  exact, approx = _apply({'params': params}, ids), jax.jit(fast.apply)({'params': params}, ids)
  assert approx.dtype == jnp.float32
  np.testing.assert_allclose(approx, exact, atol=0.1 * float(jnp.abs(exact).max()))
