"""Vision Transformer backbone: patches -> pre-LN transformer encoder -> layer norm -> class token or mean.

The computation is timm's / big_vision's ViT (x + attn(ln1(x)), then x + mlp(ln2(x)), exact GELU), so their
pretrained weights load through ftlab.pretrained.vision with no numerical change. Parameter paths read
'embedding/kernel', 'layer_3/attention/query/kernel', 'layer_3/mlp/fc1/kernel', 'final_norm/scale': the layer index is
the only '_<digits>/' in a path, so the default layer regex r'_(\\d+)/' finds it, and query/key/value/out are plain
2-D [D, D] dense kernels that LoRA can target. Dropout rates may be traced values (see layers.dropout).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models.layers import dropout

# (hidden size, layers, heads, MLP size) of the standard sizes, as in the ViT / DeiT papers.
# (hidden, layers, heads, mlp_dim). 'pico' and 'nano' are not published sizes: a ViT small enough to train on a CPU
# in minutes, and a two-layer one for smoke runs and tests (it compiles in a few seconds).
VIT_SIZES = {'nano': (64, 2, 2, 128), 'pico': (96, 6, 3, 384), 'ti': (192, 12, 3, 768), 's': (384, 12, 6, 1536), 'b': (768, 12, 12, 3072)}
POOLINGS = ('cls', 'gap')


def _layer_norm(name: str, eps: float) -> nn.LayerNorm:
  """A layer norm computing in float32 whatever the model's compute dtype."""
  return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, name=name)


class Attention(nn.Module):
  """Multi-head self-attention with separate query/key/value/out dense layers and traced attention dropout."""
  hidden_size: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, attention_dropout_rate, train: bool):
    batch, tokens, _ = x.shape
    head_dim = self.hidden_size // self.num_heads

    def dense(name):
      return nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=jnp.float32, name=name)

    def heads(y):
      return y.reshape(batch, tokens, self.num_heads, head_dim)

    q, k, v = (heads(dense(name)(x)) for name in ('query', 'key', 'value'))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) * head_dim ** -0.5
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    probs = dropout(self, probs, attention_dropout_rate, train=train)
    y = jnp.einsum('bhqk,bkhd->bqhd', probs, v).reshape(batch, tokens, self.hidden_size)
    return dense('out')(y)


class MLP(nn.Module):
  """fc1 -> exact GELU -> fc2 (timm's nn.GELU)."""
  hidden_size: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32, name='fc1')(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=jnp.float32, name='fc2')(x)


class EncoderLayer(nn.Module):
  """x + dropout(attention(norm(x))), then x + dropout(mlp(norm(x)))."""
  hidden_size: int
  num_heads: int
  mlp_dim: int
  layer_norm_eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, dropout_rate, attention_dropout_rate, train: bool):
    y = _layer_norm('attention_norm', self.layer_norm_eps)(x).astype(self.dtype)
    y = Attention(self.hidden_size, self.num_heads, dtype=self.dtype, name='attention')(
        y, attention_dropout_rate=attention_dropout_rate, train=train)
    x = x + dropout(self, y, dropout_rate, train=train)
    y = _layer_norm('mlp_norm', self.layer_norm_eps)(x).astype(self.dtype)
    y = MLP(self.hidden_size, self.mlp_dim, dtype=self.dtype, name='mlp')(y)
    return x + dropout(self, y, dropout_rate, train=train)


class PatchEmbedding(nn.Module):
  """Images [B, H, W, C] -> one feature vector per p x p patch [B, H // p, W // p, features]: timm's patch_embed.proj,
  a p x p convolution at stride p ('VALID': rows and columns past the last whole patch are dropped), with nn.Conv's
  parameters (kernel [p, p, C, features], lecun-normal, and a zero bias) but computed as one matmul over each patch's
  pixels. Why not nn.Conv: XLA's CPU backend computes a stride-p convolution's input gradient (which integrated
  gradients' attributions need) slowly, and at some image shapes by a naive loop: a pico/16 ViT's input gradient at
  224 px took ~1.8x as long through nn.Conv, and a nano/8's on 48x64 images 8.6 s against 67 ms at -O0."""
  patch_size: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    p = self.patch_size
    batch, height, width, channels = x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (p, p, channels, self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    h, w = height // p, width // p
    patches = jnp.asarray(x, self.dtype)[:, :h * p, :w * p].reshape(batch, h, p, w, p, channels)
    return jnp.einsum('bhpwqc,pqcd->bhwd', patches, kernel.astype(self.dtype)) + bias.astype(self.dtype)


class ViT(nn.Module):
  """Images [B, H, W, C] -> features [B, hidden_size]: the class token ('cls') or the token mean ('gap').

  With `pyramid` it returns instead a tuple of one map, float32 [B, H/p, W/p, hidden_size]: the patch tokens after
  the final norm (the class token dropped) on their grid; the parameters are the same in both modes.

  Parameters are float32; `dtype` is the compute dtype (layer norms and the softmax compute in float32). The
  position embedding holds one row per patch (plus one for the class token first), so the image size is fixed at
  init; ftlab.pretrained.vision.fit_pos_embedding resizes a checkpoint's to another image size.
  """
  patch_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  pooling: str = 'cls'
  layer_norm_eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, dropout_rate, attention_dropout_rate, train: bool, pyramid: bool = False):
    if self.pooling not in POOLINGS:
      raise ValueError(f'ViT pooling {self.pooling!r} is not one of {", ".join(POOLINGS)}')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'ViT hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; '
                       'change one of them')
    x = PatchEmbedding(self.patch_size, self.hidden_size, dtype=self.dtype, name='embedding')(x)
    batch, h, w, d = x.shape
    x = x.reshape(batch, h * w, d)
    if self.pooling == 'cls':
      cls = self.param('cls', nn.initializers.zeros, (1, 1, d), jnp.float32)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, d)), x], axis=1)
    pos = self.param('pos_embedding', nn.initializers.normal(stddev=0.02), (1, x.shape[1], d), jnp.float32)
    x = dropout(self, x + pos.astype(self.dtype), dropout_rate, train=train)
    for i in range(self.num_layers):
      x = EncoderLayer(self.hidden_size, self.num_heads, self.mlp_dim, self.layer_norm_eps, dtype=self.dtype,
                       name=f'layer_{i}')(x, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                                          train=train)
    x = _layer_norm('final_norm', self.layer_norm_eps)(x)
    if pyramid:
      patches = x[:, 1:] if self.pooling == 'cls' else x
      return (patches.astype(jnp.float32).reshape(batch, h, w, d),)
    return x[:, 0] if self.pooling == 'cls' else jnp.mean(x, axis=1)


def vit(variant: str, **kwargs) -> ViT:
  """The ViT named 'size/patch' ('ti/16', 's/16', 'b/16', 's/4'); kwargs set the other fields (pooling, dtype...)."""
  size, _, patch = variant.partition('/')
  if size not in VIT_SIZES or not patch.isdigit() or int(patch) < 1:
    raise ValueError(f'ViT variant {variant!r} is not size/patch with size one of {", ".join(VIT_SIZES)} and a '
                     "positive patch size, e.g. 's/16'")
  hidden, layers, heads, mlp_dim = VIT_SIZES[size]
  return ViT(patch_size=int(patch), hidden_size=hidden, num_layers=layers, num_heads=heads, mlp_dim=mlp_dim, **kwargs)
