"""He et al. (2016) CIFAR ResNets: ResNet-20/32/44/56/110 (6n + 2 layers).

3x3 conv with 16 filters, then three stages of n basic blocks with 16/32/64
filters and strides 1/2/2, global average pooling: a 64-d feature. Shortcuts
that change shape are option A (stride-2 subsampling and zero-padded channels,
parameter-free, as in the paper and the PyTorch reimplementation this project
reproduces) or option B (1x1 convolution and BatchNorm).
"""
import keras

from supcon_tf.models.layers import (ResidualBlock, batch_norm, conv2d,
                                     name_for_checkpoints,
                                     projection_shortcut)

CIFAR_DEPTHS = {'resnet20': 20, 'resnet32': 32, 'resnet44': 44,
                'resnet56': 56, 'resnet110': 110}


@keras.saving.register_keras_serializable(package='supcon_tf')
class PadShortcut(keras.layers.Layer):
  """Option A: subsample by `strides` and zero-pad channels to `filters`."""

  def __init__(self, filters, strides, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.strides = strides

  def call(self, x):
    x = x[:, ::self.strides, ::self.strides, :]
    missing = self.filters - x.shape[-1]
    return keras.ops.pad(
        x, [[0, 0], [0, 0], [0, 0], [missing // 2, missing - missing // 2]])

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'strides': self.strides}


@keras.saving.register_keras_serializable(package='supcon_tf')
class BasicBlock(ResidualBlock):
  """Two 3x3 convolutions with BatchNorm and a residual connection."""

  def __init__(self, filters, strides=1, shortcut='A', zero_init_last_bn=False,
               weight_init='official', always_project=False,
               unbiased_moving_variance=True, **kwargs):
    super().__init__(**kwargs)
    if shortcut not in ('A', 'B'):
      raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}.")
    self.filters = filters
    self.strides = strides
    self.shortcut = shortcut
    self.zero_init_last_bn = zero_init_last_bn
    self.weight_init = weight_init
    # The official ResNet v1 projects in the first block of every group,
    # whether or not the shape changes.
    self.always_project = always_project
    # PyTorch's and the fused kernel's estimate, or the official (biased).
    self.unbiased_moving_variance = unbiased_moving_variance
    self.conv1 = conv2d(filters, 3, strides, name='conv1',
                        weight_init=weight_init)
    self.bn1 = batch_norm(unbiased_moving_variance=unbiased_moving_variance,
                          name='bn1')
    self.conv2 = conv2d(filters, 3, name='conv2', weight_init=weight_init)
    self.bn2 = batch_norm(zero_gamma=zero_init_last_bn,
                          unbiased_moving_variance=unbiased_moving_variance,
                          name='bn2')

  def build(self, input_shape):
    if (self.always_project or self.strides != 1 or
        input_shape[-1] != self.filters):
      if self.shortcut == 'A':
        self.projection = PadShortcut(self.filters, self.strides,
                                      name='shortcut')
      else:
        self.projection = projection_shortcut(
            self.filters, self.strides, self.unbiased_moving_variance)
    self.built = True

  def branch(self, x, training=None):
    y = keras.ops.relu(self.bn1(self.conv1(x), training=training))
    return self.bn2(self.conv2(y), training=training)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'strides': self.strides, 'shortcut': self.shortcut,
            'zero_init_last_bn': self.zero_init_last_bn,
            'weight_init': self.weight_init,
            'always_project': self.always_project,
            'unbiased_moving_variance': self.unbiased_moving_variance}


@keras.saving.register_keras_serializable(package='supcon_tf')
class CifarResNet(keras.Model):
  """CIFAR ResNet-(6n+2) encoder; `call` returns the pooled [N, 64] feature.
  `weight_init='seed'`: convolutions start as the seed's kaiming_normal_."""

  def __init__(self, depth=20, shortcut='A', zero_init_last_bn=False,
               weight_init='official', **kwargs):
    super().__init__(**kwargs)
    if depth < 8 or (depth - 2) % 6:
      raise ValueError(f'depth must be 6n + 2 (20, 32, 44, 56, 110), got '
                       f'{depth}.')
    self.depth = depth
    self.shortcut = shortcut
    self.zero_init_last_bn = zero_init_last_bn
    self.weight_init = weight_init
    blocks_per_stage = (depth - 2) // 6
    self.stem = conv2d(16, 3, name='stem_conv', weight_init=weight_init)
    self.stem_bn = batch_norm(name='stem_bn')
    self.blocks = []
    for stage, (filters, strides) in enumerate([(16, 1), (32, 2), (64, 2)]):
      for index in range(blocks_per_stage):
        self.blocks.append(BasicBlock(
            filters, strides if index == 0 else 1, shortcut,
            zero_init_last_bn, weight_init,
            name=f'stage{stage + 1}_block{index + 1}'))
    name_for_checkpoints(self, 'block', self.blocks)
    self.pool = keras.layers.GlobalAveragePooling2D()
    self.output_dim = 64

  def call(self, images, training=None):
    x = keras.ops.relu(self.stem_bn(self.stem(images), training=training))
    for block in self.blocks:
      x = block(x, training=training)
    return self.pool(x)

  def get_config(self):
    return {'depth': self.depth, 'shortcut': self.shortcut,
            'zero_init_last_bn': self.zero_init_last_bn,
            'weight_init': self.weight_init, 'name': self.name}
