"""Projection and classification heads, as in the official SupCon model or as
in the seed's ResNet-20 (`weight_init='seed'`)."""
import math

import keras

from supcon_tf.enums import WEIGHT_INITS
from supcon_tf.models.layers import (batch_norm, kaiming_normal,
                                     name_for_checkpoints)


@keras.saving.register_keras_serializable(package='supcon_tf')
class Linear(keras.layers.Dense):
  """Dense whose bias starts as PyTorch's nn.Linear bias does when
  `torch_bias`: U(+-1/sqrt(fan_in)), fan_in known only at build."""

  def __init__(self, units, torch_bias=False, **kwargs):
    super().__init__(units, **kwargs)
    self.torch_bias = torch_bias

  def build(self, input_shape):
    if self.torch_bias:
      bound = 1. / math.sqrt(input_shape[-1])
      self.bias_initializer = keras.initializers.RandomUniform(-bound, bound)
    super().build(input_shape)

  def get_config(self):
    return {**super().get_config(), 'torch_bias': self.torch_bias}


def linear(units, weight_init, use_bias=True, name=None):
  """A dense layer initialised the official way (N(0, 0.01) kernel, zero
  bias) or the seed's (kaiming_normal_ kernel, PyTorch's default bias)."""
  seed = weight_init == 'seed'
  kernel = (kaiming_normal() if seed else
            keras.initializers.RandomNormal(stddev=0.01))
  return Linear(units, torch_bias=seed and use_bias, use_bias=use_bias,
                kernel_initializer=kernel, name=name)


@keras.saving.register_keras_serializable(package='supcon_tf')
class ProjectionHead(keras.layers.Layer):
  """Dense layers with ReLU between, L2-normalised out.

  `dims` lists the output size of each dense layer (the official
  `projection_head_layers`). `weight_init='official'`: kernels from
  N(0, 0.01), the last layer without bias, as in the official code. `'seed'`:
  the seed's ResNet-20 head, nn.Linear layers that all have a bias, kernels
  from kaiming_normal_ (fan_in, gain sqrt 2), PyTorch's default biases. With
  `use_batch_norm` (the official `use_projection_batch_norm`), BatchNorm
  follows every hidden dense layer, before its ReLU, in place of its bias
  (a beta only when `use_batch_norm_beta`); the last layer has neither, as
  in the official head.
  """

  def __init__(self, dims=(128,), use_batch_norm=False,
               use_batch_norm_beta=False, normalize_output=True,
               weight_init='official', **kwargs):
    super().__init__(**kwargs)
    if weight_init not in WEIGHT_INITS:
      raise ValueError(f'weight_init must be one of {", ".join(WEIGHT_INITS)}'
                       f'; got {weight_init!r}.')
    self.weight_init = weight_init
    if not dims:
      raise ValueError('dims must list at least one layer size.')
    self.dims = tuple(int(d) for d in dims)
    self.use_batch_norm = use_batch_norm
    self.use_batch_norm_beta = use_batch_norm_beta
    self.normalize_output = normalize_output
    last = len(self.dims) - 1
    self.dense = [
        linear(d, weight_init, name=f'dense{i}',
               use_bias=(weight_init == 'seed' or
                         (i < last and not use_batch_norm)))
        for i, d in enumerate(self.dims)
    ]
    self.norms = [batch_norm(center=use_batch_norm_beta, name=f'bn{i}')
                  for i in range(last)] if use_batch_norm else []
    name_for_checkpoints(self, 'dense_layer', self.dense)
    name_for_checkpoints(self, 'norm_layer', self.norms)

  def call(self, x, training=None):
    for i, dense in enumerate(self.dense):
      x = dense(x)
      if i < len(self.dense) - 1:
        if self.norms:
          x = self.norms[i](x, training=training)
        x = keras.ops.relu(x)
    if self.normalize_output:
      x = keras.ops.normalize(x, axis=-1, order=2)
    return x

  def get_config(self):
    return {**super().get_config(), 'dims': list(self.dims),
            'use_batch_norm': self.use_batch_norm,
            'use_batch_norm_beta': self.use_batch_norm_beta,
            'normalize_output': self.normalize_output,
            'weight_init': self.weight_init}


@keras.saving.register_keras_serializable(package='supcon_tf')
class ClassificationHead(keras.layers.Layer):
  """One dense layer to class logits, optionally zero-initialised; with
  `weight_init='seed'` initialised as the seed's nn.Linear classifier."""

  def __init__(self, num_classes, zero_init=False, weight_init='official',
               **kwargs):
    super().__init__(**kwargs)
    self.num_classes = int(num_classes)
    self.zero_init = zero_init
    self.weight_init = weight_init
    if weight_init == 'seed' and not zero_init:
      self.dense = linear(self.num_classes, 'seed', name='logits')
    else:
      self.dense = keras.layers.Dense(
          self.num_classes,
          kernel_initializer='zeros' if zero_init else 'glorot_uniform',
          name='logits')

  def call(self, x):
    return self.dense(x)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'zero_init': self.zero_init, 'weight_init': self.weight_init}
