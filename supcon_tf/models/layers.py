"""Building blocks shared by the encoders: convolution with PyTorch-style padding
and BatchNorm with the official momentum, epsilon and moving variance, on
every Keras backend."""
import contextlib
import math
import threading

import keras

# The one dispatch of the models: TensorFlow's fused and cross-replica
# BatchNorm where TensorFlow is the backend (and only there imported).
_TENSORFLOW = keras.backend.backend() == 'tensorflow'
if _TENSORFLOW:
  from supcon_tf.models import tf_batch_norm


def kaiming_normal():
  """torch.nn.init.kaiming_normal_ defaults: N(0, 2 / fan_in), untruncated."""
  return keras.initializers.VarianceScaling(2.0, mode='fan_in',
                                            distribution='untruncated_normal')


def official_conv_init():
  """The official code's tf.variance_scaling_initializer(): scale 1, fan_in,
  truncated normal."""
  return keras.initializers.VarianceScaling(1.0, mode='fan_in',
                                            distribution='truncated_normal')


def conv2d(filters, kernel_size, strides=1, name=None, weight_init='official'):
  """Bias-free convolution, 'same' at stride 1, the official fixed padding
  when strided (TensorFlow's 'same' would pad bottom/right only).

  Kernels start as the official code's (variance scaling 1, fan_in,
  truncated normal) or, with `weight_init='seed'`, as the seed's
  kaiming_normal_ (gain sqrt 2, fan_in, untruncated).
  """
  initializer = (kaiming_normal() if weight_init == 'seed' else
                 official_conv_init())
  conv = keras.layers.Conv2D(
      filters, kernel_size, strides=strides,
      padding='same' if strides == 1 else 'valid', use_bias=False,
      kernel_initializer=initializer, name=name)
  if strides == 1:
    return conv
  return keras.Sequential(
      [keras.layers.ZeroPadding2D((kernel_size - 1) // 2), conv], name=name)


def conv_kernel(conv):
  """The kernel of `conv2d`'s result (a Conv2D, or a Sequential of padding
  and Conv2D when strided)."""
  if hasattr(conv, 'layers'):
    conv = [layer for layer in conv.layers if hasattr(layer, 'kernel')][0]
  return conv.kernel


def projection_shortcut(filters, strides, unbiased_moving_variance=True):
  """1x1 convolution and BatchNorm: the shortcut where a block changes shape."""
  return keras.Sequential(
      [conv2d(filters, 1, strides),
       batch_norm(unbiased_moving_variance=unbiased_moving_variance)],
      name='shortcut')


class ResidualBlock(keras.layers.Layer):
  """relu(branch(x) + shortcut(x)): subclasses define `branch` and may set
  `projection` (in `build`) where the shortcut must change the shape."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.projection = None

  def branch(self, x, training=None):
    raise NotImplementedError

  def call(self, x, training=None):
    shortcut = x
    if self.projection is not None:
      shortcut = self.projection(x, training=training)
    return keras.ops.relu(self.branch(x, training=training) + shortcut)


def batch_norm(zero_gamma=False, center=True, unbiased_moving_variance=True,
               name=None):
  """BatchNorm with the official momentum 0.9 and epsilon 1e-5; a beta only
  when `center`; see FusedBatchNormalization for the moving variance."""
  return FusedBatchNormalization(
      momentum=0.9, epsilon=1e-5, center=center,
      gamma_initializer='zeros' if zero_gamma else 'ones',
      unbiased_moving_variance=unbiased_moving_variance, name=name)


@keras.saving.register_keras_serializable(package='supcon_tf')
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """BatchNormalization with the official semantics on every backend.

  The moving variance is updated with the unbiased batch variance, as
  PyTorch and TensorFlow's fused kernel do, or, with
  `unbiased_moving_variance=False`, with the biased one, as the official
  (non-fused, global) BatchNorm does; features are normalised with the
  biased one either way. A non-trainable layer runs in inference mode.
  `update_moving_statistics=False` (see `freeze_moving_statistics`) keeps
  batch statistics in training mode but leaves the moving averages alone.
  Same weights and config as the Keras layer.

  Under TensorFlow (`tf_batch_norm.py`): TensorFlow's fused kernel for NHWC
  feature maps (ResNet-20's forward + backward from 1.17 to 0.89 s per 256
  images here, README) and, with `synchronized` (Keras' attribute; see
  `synchronize_batch_norm`) under a strategy with several replicas,
  statistics of the global batch, as the official TPU cross-replica
  BatchNorm. Under JAX and PyTorch: `keras.ops` over every axis but the
  last; a jitted step over a global batch sharded by `keras.distribution`
  takes the global batch's statistics.
  """
  update_moving_statistics = True

  def __init__(self, unbiased_moving_variance=True, **kwargs):
    super().__init__(**kwargs)
    self.unbiased_moving_variance = unbiased_moving_variance

  def call(self, inputs, training=None, mask=None):
    if _TENSORFLOW:
      return tf_batch_norm.call(self, inputs, training, mask, bool(_sinks()))
    training = bool(training) and self.trainable
    if not training or mask is not None or self.axis not in (
        -1, len(inputs.shape) - 1):
      return super().call(inputs, training=training, mask=mask)
    x = keras.ops.cast(inputs, 'float32')
    axes = tuple(range(len(x.shape) - 1))
    mean, variance = keras.ops.moments(x, axes)
    outputs = (x - mean) * keras.ops.rsqrt(variance + self.epsilon)
    if self.scale:
      outputs = outputs * self.gamma
    if self.center:
      outputs = outputs + self.beta
    if self.update_moving_statistics:
      if self.unbiased_moving_variance:
        count = math.prod(keras.ops.shape(x)[:-1])
        variance = variance * count / max(count - 1, 1)
      self._move(mean, variance)
    return keras.ops.cast(outputs, inputs.dtype)

  def _move(self, mean, variance):
    """One moving-average step toward these batch statistics; within
    `collect_moving_statistics`, they are recorded instead (the caller
    moves once per step with their mean: `move_moving_statistics`). Under a
    strategy with several replicas, toward the replicas' mean (each replica
    moving toward its own would leave replica 0's)."""
    if _sinks():
      _sinks()[-1].setdefault(self, []).append((mean, variance))
      return
    if _TENSORFLOW and not self.synchronized:
      mean, variance = tf_batch_norm.replicas_mean(mean, variance)
    momentum = self.momentum
    self.moving_mean.assign(momentum * self.moving_mean +
                            (1. - momentum) * mean)
    self.moving_variance.assign(momentum * self.moving_variance +
                                (1. - momentum) * variance)

  def get_config(self):
    return {**super().get_config(),
            'unbiased_moving_variance': self.unbiased_moving_variance}


# Open `collect_moving_statistics` records (innermost last), per thread:
# MirroredStrategy traces each replica's step in a thread of its own.
_OPEN = threading.local()


def _sinks():
  if not hasattr(_OPEN, 'sinks'):
    _OPEN.sinks = []
  return _OPEN.sinks


@contextlib.contextmanager
def collect_moving_statistics():
  """Within (at trace time), fused BatchNorm layers record the batch
  statistics they would move their averages toward instead of moving:
  yields {layer: [(mean, variance), ...]}, one pair per call."""
  sink = {}
  _sinks().append(sink)
  try:
    yield sink
  finally:
    _sinks().pop()


def move_moving_statistics(statistics):
  """One moving-average step per layer of {layer: (mean, variance)}, as the
  layer's own update (across replicas included)."""
  for layer, (mean, variance) in statistics.items():
    layer._move(mean, variance)


@contextlib.contextmanager
def moving_statistics_frozen(layer):
  """`freeze_moving_statistics` within, each layer's own setting after."""
  batch_norms = fused_batch_norms(layer)
  saved = [l.update_moving_statistics for l in batch_norms]
  try:
    for l in batch_norms:
      l.update_moving_statistics = False
    yield
  finally:
    for l, update in zip(batch_norms, saved):
      l.update_moving_statistics = update


def fused_batch_norms(layer):
  """The FusedBatchNormalization layers in `layer`, in a fixed order."""
  return [l for l in layer._flatten_layers(include_self=True, recursive=True)
          if isinstance(l, FusedBatchNormalization)]


def synchronize_batch_norm(layer, synchronized=True):
  """BatchNorm layers in `layer` use global-batch statistics in training
  mode (the official `use_global_batch_norm`), or per-replica ones. Read
  when a step is traced."""
  for sublayer in layer._flatten_layers(include_self=True, recursive=True):
    if isinstance(sublayer, keras.layers.BatchNormalization):
      sublayer.synchronized = synchronized


def freeze_moving_statistics(layer, frozen=True):
  """The fused BatchNorm layers in `layer` keep normalising with batch
  statistics in training mode but stop (or, `frozen=False`, resume)
  updating their moving averages: the official
  `update_encoder_batch_norm=False`. Read when a step is traced."""
  for batch_norm in fused_batch_norms(layer):
    batch_norm.update_moving_statistics = not frozen


def name_for_checkpoints(layer, prefix, items):
  """Makes layers held in a list visible to tf.train.Checkpoint.

  Keras 3 tracks list items for `weights`, but TensorFlow's object graph
  does not see them, so a `tf.train.Checkpoint(model=...)` would miss their
  variables (BatchNorm statistics included). Attributes it sees.
  """
  for index, item in enumerate(items):
    setattr(layer, f'{prefix}{index}', item)
