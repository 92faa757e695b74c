"""ResNet v1 encoders, ResNet-18..200, with the official SupCon options.

Widths int(64 * 2**i * resnet_width), strides 1/2/2/2 (the stride of a
bottleneck sits on its 3x3 convolution), a projection shortcut (1x1 conv and
BatchNorm) in the first block of every group (group 0 of ResNet-18/34 too),
BatchNorm momentum 0.9 and epsilon 1e-5 (its moving variance from the biased
batch variance), the last BatchNorm gamma of every
block zero-initialised (`zero_init_last_bn`), as the official blocks.py. The ImageNet
stem (7x7 stride 2 and a 3x3 stride-2 max-pool) is the default; `cifar_stem`
gives 3x3 stride 1 without max-pool, the official CIFAR settings.

`layout='torch'` is PyTorch's ResNet (torchvision's, and SupContrast's
networks/resnet_big.py): a projection shortcut only where a block changes
shape (none in the first block of ResNet-18/34), and the max-pool padded
by one on every side (TensorFlow's 'same' pads the bottom and right only).
"""
import keras

from supcon_tf.enums import RESNET_LAYOUTS
from supcon_tf.models.cifar_resnet import BasicBlock
from supcon_tf.models.layers import (ResidualBlock, batch_norm, conv2d,
                                     name_for_checkpoints, official_conv_init,
                                     projection_shortcut)

RESNET_STAGES = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet34': ('basic', (3, 4, 6, 3)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
    'resnet101': ('bottleneck', (3, 4, 23, 3)),
    'resnet152': ('bottleneck', (3, 8, 36, 3)),
    'resnet200': ('bottleneck', (3, 24, 36, 3)),
}


@keras.saving.register_keras_serializable(package='supcon_tf')
class BottleneckBlock(ResidualBlock):
  """1x1 -> 3x3 (strided) -> 1x1 (4x filters) with a projection shortcut
  where the shape changes (every group's first block, as official).

  `groups > 1` makes it the official ResNextBlock: 1x1 and 3x3 with 2x
  filters, the 3x3 grouped with TensorFlow's 'same' padding also when
  strided (the official GroupConv2D, not the fixed padding); the official
  ResNeXt leaves its last gamma at one (`zero_init_last_bn=False`).
  """

  def __init__(self, filters, strides=1, zero_init_last_bn=False, groups=1,
               unbiased_moving_variance=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.strides = strides
    self.zero_init_last_bn = zero_init_last_bn
    self.groups = groups
    self.unbiased_moving_variance = unbiased_moving_variance
    norm = lambda name, zero_gamma=False: batch_norm(
        zero_gamma, unbiased_moving_variance=unbiased_moving_variance,
        name=name)
    inner = filters if groups == 1 else 2 * filters
    self.conv1 = conv2d(inner, 1, name='conv1')
    self.bn1 = norm('bn1')
    if groups == 1:
      self.conv2 = conv2d(inner, 3, strides, name='conv2')
    else:
      self.conv2 = keras.layers.Conv2D(
          inner, 3, strides=strides, padding='same', groups=groups,
          use_bias=False, kernel_initializer=official_conv_init(),
          name='conv2')
    self.bn2 = norm('bn2')
    self.conv3 = conv2d(4 * filters, 1, name='conv3')
    self.bn3 = norm('bn3', zero_init_last_bn)

  def build(self, input_shape):
    if self.strides != 1 or input_shape[-1] != 4 * self.filters:
      self.projection = projection_shortcut(4 * self.filters, self.strides,
                                            self.unbiased_moving_variance)
    self.built = True

  def branch(self, x, training=None):
    y = keras.ops.relu(self.bn1(self.conv1(x), training=training))
    y = keras.ops.relu(self.bn2(self.conv2(y), training=training))
    return self.bn3(self.conv3(y), training=training)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'strides': self.strides,
            'zero_init_last_bn': self.zero_init_last_bn,
            'groups': self.groups,
            'unbiased_moving_variance': self.unbiased_moving_variance}


# ResNeXt (the official `--resnet_architecture=RESNEXT`): the bottleneck
# depths, each block a 64-group bottleneck.
RESNEXT_STAGES = {f'resnext{d}': ('resnext', RESNET_STAGES[f'resnet{d}'][1])
                  for d in (50, 101, 152, 200)}


@keras.saving.register_keras_serializable(package='supcon_tf')
class ResNet(keras.Model):
  """ResNet v1 (or, `architecture='RESNEXT'`, ResNeXt) encoder; `call`
  returns the globally pooled feature."""

  def __init__(self, depth=50, resnet_width=1, first_conv_kernel_size=7,
               first_conv_stride=2, use_initial_max_pool=True,
               zero_init_last_bn=True, architecture='RESNET_V1',
               layout='official', **kwargs):
    super().__init__(**kwargs)
    if layout not in RESNET_LAYOUTS:
      raise ValueError(f'layout must be one of {", ".join(RESNET_LAYOUTS)}, '
                       f'got {layout!r}.')
    self.layout = layout
    prefix, table = (('resnext', RESNEXT_STAGES) if architecture == 'RESNEXT'
                     else ('resnet', RESNET_STAGES))
    if f'{prefix}{depth}' not in table:
      valid = ', '.join(k[len(prefix):] for k in table)
      raise ValueError(f'depth must be one of {valid}, got {depth}.')
    self.architecture = architecture
    self.depth = depth
    self.resnet_width = resnet_width
    self.first_conv_kernel_size = first_conv_kernel_size
    self.first_conv_stride = first_conv_stride
    self.use_initial_max_pool = use_initial_max_pool
    self.zero_init_last_bn = zero_init_last_bn
    kind, stages = table[f'{prefix}{depth}']
    # int(), as the official code: the multiplier may be a float (1.0, 1.5).
    self.stem = conv2d(int(64 * resnet_width), first_conv_kernel_size,
                       first_conv_stride, name='stem_conv')
    # The official BatchNorm (non-fused, global) moves its moving variance
    # with the biased batch variance.
    self.stem_bn = batch_norm(unbiased_moving_variance=False, name='stem_bn')
    self.max_pool = None
    if use_initial_max_pool and layout == 'torch':
      # Zeros pad as -inf would: the pool reads ReLU outputs.
      self.max_pool = keras.Sequential(
          [keras.layers.ZeroPadding2D(1), keras.layers.MaxPooling2D(3, 2)],
          name='max_pool')
    elif use_initial_max_pool:
      self.max_pool = keras.layers.MaxPooling2D(3, 2, padding='same')
    self.blocks = []
    for stage, blocks in enumerate(stages):
      filters = int(64 * 2**stage * resnet_width)
      for index in range(blocks):
        strides = 2 if index == 0 and stage > 0 else 1
        block_name = f'stage{stage + 1}_block{index + 1}'
        if kind == 'basic':
          block = BasicBlock(filters, strides, 'B', zero_init_last_bn,
                             always_project=(index == 0 and
                                             layout == 'official'),
                             unbiased_moving_variance=False, name=block_name)
        elif kind == 'resnext':
          block = BottleneckBlock(filters, strides, False, groups=64,
                                  name=block_name)
        else:
          block = BottleneckBlock(filters, strides, zero_init_last_bn,
                                  name=block_name)
        self.blocks.append(block)
    name_for_checkpoints(self, 'block', self.blocks)
    self.pool = keras.layers.GlobalAveragePooling2D()
    self.output_dim = filters * (1 if kind == 'basic' else 4)

  def call(self, images, training=None):
    x = keras.ops.relu(self.stem_bn(self.stem(images), training=training))
    if self.max_pool is not None:
      x = self.max_pool(x)
    for block in self.blocks:
      x = block(x, training=training)
    return self.pool(x)

  def get_config(self):
    return {'depth': self.depth, 'resnet_width': self.resnet_width,
            'first_conv_kernel_size': self.first_conv_kernel_size,
            'first_conv_stride': self.first_conv_stride,
            'use_initial_max_pool': self.use_initial_max_pool,
            'zero_init_last_bn': self.zero_init_last_bn,
            'architecture': self.architecture, 'layout': self.layout,
            'name': self.name}
