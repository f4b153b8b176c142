"""Vision backbones and pretrained weight import: ftlab's ViT / ResNet on timm-named weights compute what independent
numpy / lax references compute from the same names; big_vision names give the same tree; position embeddings resize;
frozen batch norm stays frozen; parameter paths carry exactly one layer index; bad files are refused."""
import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from ftlab.models.resnet import RESNET_DEPTHS, ResNet, resnet
from ftlab.models.vit import VIT_SIZES, PatchEmbedding, ViT, vit
from ftlab.optim import groups
from ftlab.pretrained import surgery, vision, vision_export

P, IMAGE, C, D, LAYERS, HEADS, MLP_DIM, CLASSES = 4, 8, 3, 16, 2, 2, 32, 5
RATES = dict(dropout_rate=0.0, attention_dropout_rate=0.0)


def _forward(model, variables, images, **kwargs):
  """model.apply, compiled as one program (op by op, each operation would compile on its own)."""
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, images)


def _flat(tree) -> dict:
  return {groups.path_str(kp): np.asarray(v) for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _tiny_vit(**kwargs) -> ViT:
  return ViT(patch_size=P, hidden_size=D, num_layers=LAYERS, num_heads=HEADS, mlp_dim=MLP_DIM, **kwargs)


def _shapes(model, images) -> dict:
  """model's variables as shapes and dtypes only: what surgery.merge needs, without running the initialisers."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False, **RATES))


def _images(seed: int, size: int = IMAGE, batch: int = 2) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(batch, size, size, C)).astype(np.float32)


def _timm_vit_weights(seed: int = 0, image: int = IMAGE) -> dict:
  """Random weights under timm's ViT names (torch layouts), for a `image`-pixel model of the tiny size."""
  rng = np.random.default_rng(seed)

  def normal(*shape, scale=0.3):
    return (scale * rng.normal(size=shape)).astype(np.float32)

  n = (image // P) ** 2
  w = {'patch_embed.proj.weight': normal(D, C, P, P), 'patch_embed.proj.bias': normal(D),
       'cls_token': normal(1, 1, D), 'pos_embed': normal(1, n + 1, D), 'norm.weight': 1 + normal(D),
       'norm.bias': normal(D), 'head.weight': normal(CLASSES, D), 'head.bias': normal(CLASSES)}
  for i in range(LAYERS):
    b = f'blocks.{i}'
    w.update({f'{b}.norm1.weight': 1 + normal(D), f'{b}.norm1.bias': normal(D),
              f'{b}.attn.qkv.weight': normal(3 * D, D), f'{b}.attn.qkv.bias': normal(3 * D),
              f'{b}.attn.proj.weight': normal(D, D), f'{b}.attn.proj.bias': normal(D),
              f'{b}.norm2.weight': 1 + normal(D), f'{b}.norm2.bias': normal(D),
              f'{b}.mlp.fc1.weight': normal(MLP_DIM, D), f'{b}.mlp.fc1.bias': normal(MLP_DIM),
              f'{b}.mlp.fc2.weight': normal(D, MLP_DIM), f'{b}.mlp.fc2.bias': normal(D)})
  return w


def _big_vision_names(w: dict, *, prefix: str = '') -> dict:
  """The same numbers as timm ViT weights `w`, under big_vision's names and layouts."""
  hd = D // HEADS
  bv = {'embedding/kernel': w['patch_embed.proj.weight'].transpose(2, 3, 1, 0),
        'embedding/bias': w['patch_embed.proj.bias'], 'cls': w['cls_token'], 'pos_embedding': w['pos_embed'],
        'Transformer/encoder_norm/scale': w['norm.weight'], 'Transformer/encoder_norm/bias': w['norm.bias'],
        'head/kernel': w['head.weight'].T, 'head/bias': w['head.bias']}
  for i in range(LAYERS):
    b, e = f'blocks.{i}', f'Transformer/encoderblock_{i}'
    a = f'{e}/MultiHeadDotProductAttention_0'
    for j, part in enumerate(('query', 'key', 'value')):
      bv[f'{a}/{part}/kernel'] = np.split(w[f'{b}.attn.qkv.weight'], 3)[j].T.reshape(D, HEADS, hd)
      bv[f'{a}/{part}/bias'] = np.split(w[f'{b}.attn.qkv.bias'], 3)[j].reshape(HEADS, hd)
    bv[f'{a}/out/kernel'] = w[f'{b}.attn.proj.weight'].T.reshape(HEADS, hd, D)
    bv[f'{a}/out/bias'] = w[f'{b}.attn.proj.bias']
    for ours, theirs in (('LayerNorm_0', 'norm1'), ('LayerNorm_1', 'norm2')):
      bv[f'{e}/{ours}/scale'], bv[f'{e}/{ours}/bias'] = w[f'{b}.{theirs}.weight'], w[f'{b}.{theirs}.bias']
    for ours, theirs in (('MlpBlock_0/Dense_0', 'mlp.fc1'), ('MlpBlock_0/Dense_1', 'mlp.fc2')):
      bv[f'{e}/{ours}/kernel'], bv[f'{e}/{ours}/bias'] = w[f'{b}.{theirs}.weight'].T, w[f'{b}.{theirs}.bias']
  return {prefix + k: v for k, v in bv.items()}


_erf = np.vectorize(math.erf)


def _layer_norm(x, scale, bias, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def _reference_vit(w: dict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(class-token features, logits) of timm's ViT forward in float64 numpy, from timm-named weights."""
  w = {k: v.astype(np.float64) for k, v in w.items()}
  batch, h, wd, _ = images.shape
  patches = images.astype(np.float64).reshape(batch, h // P, P, wd // P, P, C).transpose(0, 1, 3, 5, 2, 4)
  x = patches.reshape(batch, -1, C * P * P) @ w['patch_embed.proj.weight'].reshape(D, -1).T + w['patch_embed.proj.bias']
  x = np.concatenate([np.broadcast_to(w['cls_token'], (batch, 1, D)), x], axis=1) + w['pos_embed']
  tokens, hd = x.shape[1], D // HEADS
  for i in range(LAYERS):
    b = f'blocks.{i}'
    y = _layer_norm(x, w[f'{b}.norm1.weight'], w[f'{b}.norm1.bias'])
    qkv = (y @ w[f'{b}.attn.qkv.weight'].T + w[f'{b}.attn.qkv.bias']).reshape(batch, tokens, 3, HEADS, hd)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)
    logits = q @ k.swapaxes(-1, -2) / math.sqrt(hd)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    y = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, D)
    x = x + y @ w[f'{b}.attn.proj.weight'].T + w[f'{b}.attn.proj.bias']
    y = _layer_norm(x, w[f'{b}.norm2.weight'], w[f'{b}.norm2.bias']) @ w[f'{b}.mlp.fc1.weight'].T
    y = y + w[f'{b}.mlp.fc1.bias']
    y = 0.5 * y * (1 + _erf(y / math.sqrt(2)))
    x = x + y @ w[f'{b}.mlp.fc2.weight'].T + w[f'{b}.mlp.fc2.bias']
  features = _layer_norm(x, w['norm.weight'], w['norm.bias'])[:, 0]
  return features, features @ w['head.weight'].T + w['head.bias']


def test_vit_from_timm_computes_timms_forward():
  from ftlab.models.heads import Classifier
  w = _timm_vit_weights()
  tree, unused = vision.vit_from_timm(w, num_heads=HEADS)
  assert unused == []
  model = Classifier(backbone=_tiny_vit(name='backbone'), num_classes=CLASSES)
  images = _images(1)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), images))['params']
  params, report = surgery.merge(fresh, tree)
  assert report['missing'] == [] and report['unexpected'] == []
  features, logits = _reference_vit(w, images)
  ours = _tiny_vit().apply({'params': params['backbone']}, images, train=False, **RATES)
  np.testing.assert_allclose(ours, features, atol=1e-5)
  np.testing.assert_allclose(model.apply({'params': params}, images), logits, atol=1e-5)
  assert np.abs(features).max() > 0.5  # not a degenerate comparison


def test_big_vision_names_give_the_same_params_as_timm_names():
  w = _timm_vit_weights()
  timm_tree, _ = vision.vit_from_timm(w, num_heads=HEADS)
  for prefix in ('', 'params/'):
    bv = _big_vision_names(w, prefix=prefix)
    assert vision.detect_format(bv) == 'big_vision_vit'
    bv_tree, unused = vision.vit_from_big_vision(bv, num_heads=HEADS)
    assert unused == []
    a, b = _flat(timm_tree), _flat(bv_tree)
    assert a.keys() == b.keys()
    for path in a:
      np.testing.assert_array_equal(a[path], b[path], err_msg=path)
  # big_vision adds its position embedding before prepending the class token: its rows are the patches' only
  bv = _big_vision_names(w)
  bv['pos_embedding'] = w['pos_embed'][:, 1:]
  pos = vision.vit_from_big_vision(bv, num_heads=HEADS)[0]['backbone']['pos_embedding']
  np.testing.assert_array_equal(pos, np.concatenate([np.zeros((1, 1, D), np.float32), w['pos_embed'][:, 1:]], 1))
  with pytest.raises(surgery.SurgeryError, match="has 2 heads, the model 4.*num_heads"):
    vision.vit_from_big_vision(_big_vision_names(w), num_heads=4)


def test_timm_vit_extras_are_reported_and_fc_norm_refused():
  w = _timm_vit_weights()
  w['reg_token'] = np.zeros((1, 4, D), np.float32)
  assert vision.vit_from_timm(w, num_heads=HEADS)[1] == ['reg_token']
  w['fc_norm.weight'] = np.ones(D, np.float32)
  with pytest.raises(surgery.SurgeryError, match='fc_norm'):
    vision.vit_from_timm(w, num_heads=HEADS)


def _timm_resnet_weights(stage_sizes, block: str, width: int, seed: int = 0) -> dict:
  """Random torchvision / timm ResNet weights (torch layouts) with non-trivial running statistics."""
  rng = np.random.default_rng(seed)

  def conv(out, inp, k):
    return (rng.normal(size=(out, inp, k, k)) * math.sqrt(2 / (inp * k * k))).astype(np.float32)

  def bn(name, n):
    return {f'{name}.weight': (1 + 0.2 * rng.normal(size=n)).astype(np.float32),
            f'{name}.bias': (0.2 * rng.normal(size=n)).astype(np.float32),
            f'{name}.running_mean': (0.2 * rng.normal(size=n)).astype(np.float32),
            f'{name}.running_var': rng.uniform(0.5, 1.5, size=n).astype(np.float32),
            f'{name}.num_batches_tracked': np.array(7, np.int64)}

  w = {'conv1.weight': conv(width, C, 7), **bn('bn1', width)}
  channels = width
  for s, n in enumerate(stage_sizes):
    planes = width * 2 ** s
    out = planes * (4 if block == 'bottleneck' else 1)
    for b in range(n):
      name = f'layer{s + 1}.{b}'
      if block == 'basic':
        w.update({f'{name}.conv1.weight': conv(planes, channels, 3), **bn(f'{name}.bn1', planes),
                  f'{name}.conv2.weight': conv(planes, planes, 3), **bn(f'{name}.bn2', planes)})
      else:
        w.update({f'{name}.conv1.weight': conv(planes, channels, 1), **bn(f'{name}.bn1', planes),
                  f'{name}.conv2.weight': conv(planes, planes, 3), **bn(f'{name}.bn2', planes),
                  f'{name}.conv3.weight': conv(out, planes, 1), **bn(f'{name}.bn3', out)})
      if (s > 0 and b == 0) or channels != out:
        w.update({f'{name}.downsample.0.weight': conv(out, channels, 1), **bn(f'{name}.downsample.1', out)})
      channels = out
  w['fc.weight'] = rng.normal(size=(CLASSES, channels)).astype(np.float32)
  w['fc.bias'] = rng.normal(size=CLASSES).astype(np.float32)
  return w


def _reference_resnet(w: dict, images: np.ndarray, stage_sizes, block: str) -> np.ndarray:
  """torchvision's eval-mode ResNet forward in NCHW / OIHW layouts with lax, from torch-named weights."""
  def conv(x, name, stride, pad):
    return jax.lax.conv_general_dilated(x, w[name], (stride, stride), [(pad, pad)] * 2,
                                        dimension_numbers=('NCHW', 'OIHW', 'NCHW'), precision='highest')

  def bn(x, name):
    shape = (1, -1, 1, 1)
    scale = w[f'{name}.weight'] / np.sqrt(w[f'{name}.running_var'] + 1e-5)
    return (x - w[f'{name}.running_mean'].reshape(shape)) * scale.reshape(shape) + w[f'{name}.bias'].reshape(shape)

  x = jax.nn.relu(bn(conv(jnp.asarray(images.transpose(0, 3, 1, 2)), 'conv1.weight', 2, 3), 'bn1'))
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2), [(0, 0), (0, 0), (1, 1), (1, 1)])
  for s, n in enumerate(stage_sizes):
    for b in range(n):
      name, stride = f'layer{s + 1}.{b}', 2 if s > 0 and b == 0 else 1
      if block == 'basic':
        y = jax.nn.relu(bn(conv(x, f'{name}.conv1.weight', stride, 1), f'{name}.bn1'))
        y = bn(conv(y, f'{name}.conv2.weight', 1, 1), f'{name}.bn2')
      else:
        y = jax.nn.relu(bn(conv(x, f'{name}.conv1.weight', 1, 0), f'{name}.bn1'))
        y = jax.nn.relu(bn(conv(y, f'{name}.conv2.weight', stride, 1), f'{name}.bn2'))
        y = bn(conv(y, f'{name}.conv3.weight', 1, 0), f'{name}.bn3')
      if f'{name}.downsample.0.weight' in w:
        x = bn(conv(x, f'{name}.downsample.0.weight', stride, 0), f'{name}.downsample.1')
      x = jax.nn.relu(y + x)
  return np.asarray(x.mean(axis=(2, 3)))


def _loaded_resnet(model: ResNet, w: dict, images) -> dict:
  """model's variables with timm weights `w` merged in, checking that every name matched both ways."""
  params, stats, unused = vision.resnet_from_timm(w)
  assert unused == []
  fresh = _shapes(model, images)
  variables = {}
  for collection, loaded in (('params', params), ('batch_stats', stats)):
    variables[collection], report = surgery.merge(fresh[collection], loaded['backbone'])
    assert report['missing'] == [] and report['unexpected'] == [], report
  assert set(params['head']) == {'kernel', 'bias'} and params['head']['kernel'].shape == (w['fc.weight'].shape[1],
                                                                                          CLASSES)
  return variables


@pytest.mark.parametrize('block', ['basic', 'bottleneck'])
def test_resnet_from_timm_computes_torchvisions_eval_forward(block):
  stage_sizes, width = (1, 1), 4
  w = _timm_resnet_weights(stage_sizes, block, width)
  assert vision.detect_format(w) == 'timm_resnet'
  model = ResNet(stage_sizes=stage_sizes, block=block, width=width)
  images = _images(2, size=17)  # odd: stride-2 padding must match torch's
  variables = _loaded_resnet(model, w, images)
  ours = _forward(model, variables, images, train=False, **RATES)
  reference = _reference_resnet(w, images, stage_sizes, block)
  assert ours.shape == (2, width * 2 * (4 if block == 'bottleneck' else 1))
  np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-4)
  assert np.abs(reference).max() > 0.1


@pytest.mark.parametrize('frozen', [True, False])
def test_frozen_batch_norm_never_updates_and_normalises_with_running_stats(frozen):
  w = _timm_resnet_weights((1, 1), 'basic', 4, seed=3)
  model = ResNet(stage_sizes=(1, 1), block='basic', width=4, bn_frozen=frozen)
  images = _images(4, size=16, batch=4)
  variables = _loaded_resnet(model, w, images)
  train_out, updates = model.apply(variables, images, train=True, mutable=['batch_stats'], **RATES)
  eval_out = model.apply(variables, images, train=False, **RATES)
  before, after = _flat(variables['batch_stats']), _flat(updates['batch_stats'])
  assert before.keys() == after.keys()
  if frozen:
    for path in before:
      np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    np.testing.assert_array_equal(train_out, eval_out)
  else:
    assert all(not np.array_equal(after[path], before[path]) for path in before)
    assert not np.allclose(train_out, eval_out, atol=1e-3)


def _paths(variables) -> list[str]:
  return ['backbone/' + p.split('/', 1)[1] for p in groups.param_paths(variables)]


@pytest.mark.parametrize('model,count,kind', [
    (_tiny_vit(pooling='cls'), LAYERS, 'layer'),
    (_tiny_vit(pooling='gap'), LAYERS, 'layer'),
    (ResNet(stage_sizes=(1, 2), block='basic', width=4), 3, 'block'),
    (ResNet(stage_sizes=(2, 1), block='bottleneck', width=4, stem='small'), 3, 'block'),
])
def test_the_layer_index_is_the_only_digits_in_a_path(model, count, kind):
  variables = _shapes(model, _images(0))
  seen = set()
  for path in _paths(variables):
    found = re.findall(r'_(\d+)/', path)
    assert len(found) <= 1, path
    if found:
      assert path.startswith(f'backbone/{kind}_{found[0]}/'), path
      seen.add(int(found[0]))
  assert seen == set(range(count))


def test_vit_parameter_names_and_shapes():
  model = _tiny_vit()
  params = _flat(model.init(jax.random.key(0), _images(0), train=False, **RATES)['params'])
  layer = {p.removeprefix('layer_0/'): v.shape for p, v in params.items() if p.startswith('layer_0/')}
  assert layer == {**{f'attention/{n}/kernel': (D, D) for n in ('query', 'key', 'value', 'out')},
                   **{f'attention/{n}/bias': (D,) for n in ('query', 'key', 'value', 'out')},
                   'attention_norm/scale': (D,), 'attention_norm/bias': (D,), 'mlp_norm/scale': (D,),
                   'mlp_norm/bias': (D,), 'mlp/fc1/kernel': (D, MLP_DIM), 'mlp/fc1/bias': (MLP_DIM,),
                   'mlp/fc2/kernel': (MLP_DIM, D), 'mlp/fc2/bias': (D,)}
  assert params['embedding/kernel'].shape == (P, P, C, D) and params['cls'].shape == (1, 1, D)
  assert params['pos_embedding'].shape == (1, (IMAGE // P) ** 2 + 1, D)
  assert 0.01 < params['pos_embedding'].std() < 0.04
  gap = _shapes(_tiny_vit(pooling='gap'), _images(0))['params']
  assert 'cls' not in gap and gap['pos_embedding'].shape == (1, (IMAGE // P) ** 2, D)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_the_patch_embedding_is_nn_convs_strided_convolution_with_its_parameters_and_a_fast_input_gradient(dtype):
  """The same initial parameters as the nn.Conv it replaces (same name, same key), the same outputs on images whose
  sides are no multiple of the patch (VALID drops the rest), and an input gradient equal to the convolution's."""
  x = jax.random.normal(jax.random.key(1), (2, 2 * P + 3, 3 * P + 1, C))
  conv = nn.Conv(D, (P, P), strides=(P, P), padding='VALID', dtype=dtype, param_dtype=jnp.float32)
  embedding = PatchEmbedding(P, D, dtype=dtype)
  variables = embedding.init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, variables, conv.init(jax.random.key(0), x))
  close = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
  out = embedding.apply(variables, x)
  assert out.shape == (2, 2, 3, D) and out.dtype == dtype
  np.testing.assert_allclose(np.float32(out), np.float32(conv.apply(variables, x)), **close)
  grads = [jax.grad(lambda x, m=m: jnp.sum(jnp.sin(m.apply(variables, x).astype(jnp.float32))))(x)
           for m in (embedding, conv)]
  np.testing.assert_allclose(*grads, **close)


def test_variants_parse_and_bad_names_say_what_is_valid():
  model = vit('s/4', pooling='gap')
  assert (model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim, model.patch_size) == (*VIT_SIZES['s'], 4)
  assert model.pooling == 'gap'
  for bad in ('xl/16', 's', 's/x', 'b/0'):
    with pytest.raises(ValueError, match='ti, s, b'):
      vit(bad)
  r = resnet(50, width=8)
  assert list(r.stage_sizes) == RESNET_DEPTHS[50][0] and r.block == 'bottleneck' and r.width == 8
  with pytest.raises(ValueError, match='18, 34, 50, 101'):
    resnet(19)


def test_dropout_rates_are_traced_and_zero_rates_are_the_identity():
  model = _tiny_vit()
  images = _images(5)
  variables = {'params': vision.vit_from_timm(_timm_vit_weights(), num_heads=HEADS)[0]['backbone']}

  @jax.jit
  def forward(rate, attention_rate):
    return model.apply(variables, images, dropout_rate=rate, attention_dropout_rate=attention_rate, train=True,
                       rngs={'dropout': jax.random.key(1)})

  eval_out = model.apply(variables, images, train=False, **RATES)
  np.testing.assert_allclose(forward(0.0, 0.0), eval_out, atol=1e-6)
  assert not np.allclose(forward(0.0, 0.5), eval_out, atol=1e-3)
  assert not np.allclose(forward(0.3, 0.0), eval_out, atol=1e-3)
  assert forward._cache_size() == 1


def test_resize_pos_embedding():
  rng = np.random.default_rng(0)
  pos = rng.normal(size=(1, 5, D)).astype(np.float32)
  np.testing.assert_array_equal(vision.resize_pos_embedding(pos, 2, has_cls=True), pos)
  constant = np.concatenate([pos[:, :1], np.full((1, 4, D), 0.7, np.float32)], axis=1)
  resized = vision.resize_pos_embedding(constant, 4, has_cls=True)
  assert resized.shape == (1, 17, D) and resized.dtype == np.float32
  np.testing.assert_array_equal(resized[:, 0], pos[:, 0])
  np.testing.assert_allclose(resized[:, 1:], 0.7, atol=1e-6)
  ramp = np.arange(4, dtype=np.float32).reshape(1, 4, 1)  # a 2x2 grid [[0, 1], [2, 3]]
  grown = vision.resize_pos_embedding(ramp, 4, has_cls=False).reshape(4, 4)
  assert grown[0, 0] == 0 and grown[-1, -1] == 3 and np.all(np.diff(grown, axis=1) >= 0)
  with pytest.raises(surgery.SurgeryError, match='not a square'):
    vision.resize_pos_embedding(pos[:, :4], 4, has_cls=True)


def test_a_model_for_larger_images_loads_weights_made_for_smaller_ones():
  tree, _ = vision.vit_from_timm(_timm_vit_weights(image=IMAGE), num_heads=HEADS)
  big = _images(6, size=2 * IMAGE)
  for pooling, extra in (('cls', ''), ('gap', ' (class-token row dropped)')):
    model = _tiny_vit(pooling=pooling)
    fresh = {'backbone': _shapes(model, big)['params']}
    fitted, note = vision.fit_pos_embedding(tree, fresh)
    assert note == 'backbone/pos_embedding resized from 2x2 to 4x4 patches' + extra
    assert tree['backbone']['pos_embedding'].shape == (1, 5, D)  # the input is left alone
    params, report = surgery.merge(fresh, fitted)
    assert report['missing'] == [] and set(report['unexpected']) <= {'head/kernel', 'head/bias', 'backbone/cls'}
    out = _forward(model, {'params': params['backbone']}, big, train=False, **RATES)
    assert out.shape == (2, D) and np.all(np.isfinite(out))
    if pooling == 'cls':
      np.testing.assert_array_equal(params['backbone']['pos_embedding'][0, 0], tree['backbone']['pos_embedding'][0, 0])
  same, note = vision.fit_pos_embedding(tree, {'backbone': {'pos_embedding': np.zeros((1, 5, D)), 'cls': 0}})
  assert note == '' and same['backbone']['pos_embedding'] is tree['backbone']['pos_embedding']


def test_bfloat16_vit_keeps_float32_params_and_close_outputs():
  tree, _ = vision.vit_from_timm(_timm_vit_weights(), num_heads=HEADS)
  images = _images(7)
  model16 = _tiny_vit(dtype=jnp.bfloat16)
  fresh = _shapes(model16, images)['params']
  assert {v.dtype for v in jax.tree.leaves(fresh)} == {jnp.dtype(jnp.float32)}
  params, _ = surgery.merge(fresh, tree['backbone'])
  out16 = _forward(model16, {'params': params}, images, train=False, **RATES)
  out32 = _forward(_tiny_vit(), {'params': params}, images, train=False, **RATES)
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=5e-2)
  assert not np.array_equal(np.asarray(out16, np.float32), out32)  # it did compute in bfloat16


def test_read_weights_formats_and_refusals(tmp_path):
  w = _timm_vit_weights()
  safetensors_numpy.save_file(w, str(tmp_path / 'vit.safetensors'))
  read = vision.read_weights(str(tmp_path / 'vit.safetensors'))
  assert read.keys() == w.keys() and all(np.array_equal(read[k], w[k]) for k in w)
  assert vision.detect_format(read) == 'timm_vit'
  bv = _big_vision_names(w, prefix='params/')
  np.savez(tmp_path / 'vit.npz', **bv)
  read = vision.read_weights(str(tmp_path / 'vit.npz'))
  assert read.keys() == bv.keys() and all(np.array_equal(read[k], bv[k]) for k in bv)
  assert vision.detect_format(read) == 'big_vision_vit'

  np.savez(tmp_path / 'pickled.npz', a=np.array([{'code': 'runs on load'}], dtype=object))
  with pytest.raises(surgery.SurgeryError, match='pickled.npz.*cannot read'):
    vision.read_weights(str(tmp_path / 'pickled.npz'))
  (tmp_path / 'model.bin').write_bytes(b'\0' * 8)
  with pytest.raises(surgery.SurgeryError, match=r'model\.bin.*\.safetensors.*\.npz'):
    vision.read_weights(str(tmp_path / 'model.bin'))
  (tmp_path / 'broken.safetensors').write_bytes(b'garbage')
  with pytest.raises(surgery.SurgeryError, match='broken.safetensors'):
    vision.read_weights(str(tmp_path / 'broken.safetensors'))
  with pytest.raises(surgery.SurgeryError, match='missing.npz'):
    vision.read_weights(str(tmp_path / 'missing.npz'))


def test_detect_format_names_some_keys_when_unknown():
  with pytest.raises(surgery.SurgeryError, match='encoder.layer.0.weight.*convert'):
    vision.detect_format({'encoder.layer.0.weight': np.zeros(1)})


@pytest.mark.parametrize('block, stage_sizes', [('basic', (2, 1)), ('bottleneck', (1, 2))])
def test_the_timm_export_is_the_exact_inverse_of_the_timm_import(block, stage_sizes):
  """vision_export writes back every name and array the timm import read (ViT's fused qkv, torch layouts, the
  batch-norm statistics), bit for bit; the counters ftlab does not keep come back as 0."""
  w = _timm_vit_weights()
  tree, unused = vision.vit_from_timm(w, num_heads=HEADS)
  assert unused == []
  back = vision_export.vit_to_timm(tree)
  assert sorted(back) == sorted(w)
  for name in w:
    np.testing.assert_array_equal(back[name], w[name], err_msg=name)
  r = _timm_resnet_weights(stage_sizes, block, width=8)
  params, stats, unused = vision.resnet_from_timm(r)
  assert unused == []
  back = vision_export.resnet_to_timm(params, stats, stage_sizes)
  assert sorted(back) == sorted(r)
  for name in r:
    expected = np.zeros((), np.int64) if name.endswith('num_batches_tracked') else r[name]
    np.testing.assert_array_equal(back[name], expected, err_msg=name)
