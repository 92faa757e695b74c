"""Projection and classification heads, as in the official SupCon model."""
import keras

from supcon_tf.models.layers import name_for_checkpoints


KERNEL_INITS = {
    'official': lambda: keras.initializers.RandomNormal(stddev=0.01),
    # PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)).
    'torch': lambda: keras.initializers.VarianceScaling(
        1. / 3., 'fan_in', 'uniform'),
}


@keras.saving.register_keras_serializable(package='supcon_tf')
class ProjectionHead(keras.layers.Layer):
  """Dense layers with ReLU between, the last without bias, L2-normalised out.

  `dims` lists the output size of each dense layer (the official
  `projection_head_layers`); kernels start from N(0, 0.01) as in the official
  code (`kernel_init='official'`) or as PyTorch's nn.Linear does,
  U(+-1/sqrt(fan_in)) (`'torch'`, the ResNet-20 reimplementation's). With
  `use_batch_norm`, BatchNorm follows every dense layer (with a beta only when
  `use_batch_norm_beta`), as the official `use_projection_batch_norm`.
  """

  def __init__(self, dims=(128,), use_batch_norm=False,
               use_batch_norm_beta=False, normalize_output=True,
               kernel_init='official', **kwargs):
    super().__init__(**kwargs)
    if kernel_init not in KERNEL_INITS:
      raise ValueError(f'kernel_init must be one of {", ".join(KERNEL_INITS)}'
                       f'; got {kernel_init!r}.')
    self.kernel_init = kernel_init
    if not dims:
      raise ValueError('dims must list at least one layer size.')
    self.dims = tuple(int(d) for d in dims)
    self.use_batch_norm = use_batch_norm
    self.use_batch_norm_beta = use_batch_norm_beta
    self.normalize_output = normalize_output
    last = len(self.dims) - 1
    self.dense = [
        keras.layers.Dense(
            d, use_bias=i < last,
            kernel_initializer=KERNEL_INITS[kernel_init](),
            name=f'dense{i}') for i, d in enumerate(self.dims)
    ]
    self.norms = [
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                        center=use_batch_norm_beta,
                                        name=f'bn{i}')
        for i in range(len(self.dims))
    ] if use_batch_norm else []
    name_for_checkpoints(self, 'dense_layer', self.dense)
    name_for_checkpoints(self, 'norm_layer', self.norms)

  def call(self, x, training=None):
    for i, dense in enumerate(self.dense):
      x = dense(x)
      if self.norms:
        x = self.norms[i](x, training=training)
      if i < len(self.dense) - 1:
        x = keras.ops.relu(x)
    if self.normalize_output:
      x = keras.ops.normalize(x, axis=-1, order=2)
    return x

  def get_config(self):
    return {**super().get_config(), 'dims': list(self.dims),
            'use_batch_norm': self.use_batch_norm,
            'use_batch_norm_beta': self.use_batch_norm_beta,
            'normalize_output': self.normalize_output,
            'kernel_init': self.kernel_init}


@keras.saving.register_keras_serializable(package='supcon_tf')
class ClassificationHead(keras.layers.Layer):
  """One dense layer to class logits, optionally zero-initialised."""

  def __init__(self, num_classes, zero_init=False, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = int(num_classes)
    self.zero_init = zero_init
    self.dense = keras.layers.Dense(
        self.num_classes,
        kernel_initializer='zeros' if zero_init else 'glorot_uniform',
        name='logits')

  def call(self, x):
    return self.dense(x)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'zero_init': self.zero_init}
