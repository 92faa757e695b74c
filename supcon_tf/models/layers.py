"""Building blocks shared by the encoders: convolution with PyTorch-style padding
and fused BatchNorm with the official momentum and epsilon."""
import contextlib
import threading

import keras
import tensorflow as tf


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
  """BatchNormalization on TensorFlow's fused kernel for NHWC feature maps.

  Keras 3 composes BatchNorm from moments and elementwise ops; the fused kernel
  does each pass in one op, which took ResNet-20's forward + backward from 1.17
  to 0.89 s per 256 images here (README). The moving variance is updated with
  the unbiased batch variance, as PyTorch and TensorFlow's fused kernel do,
  or, `unbiased_moving_variance=False`, with the biased one, as the official
  (non-fused, global) BatchNorm does.
  Same weights and config as the Keras layer; other input ranks or axes, and
  masks, fall back to it. A non-trainable layer runs in inference mode.
  `update_moving_statistics=False` (see `freeze_moving_statistics`) keeps
  batch statistics in training mode but leaves the moving averages alone.
  `synchronized` (Keras' attribute; see `synchronize_batch_norm`): in
  training mode under a strategy with several replicas, statistics of the
  global batch (sums all-reduced across replicas, the official TPU
  cross-replica BatchNorm), differentiably; the fused kernel where the batch
  is local.
  """
  update_moving_statistics = True

  def __init__(self, unbiased_moving_variance=True, **kwargs):
    super().__init__(**kwargs)
    self.unbiased_moving_variance = unbiased_moving_variance

  def call(self, inputs, training=None, mask=None):
    if len(inputs.shape) != 4 or self.axis not in (-1, 3) or mask is not None:
      if (training and self.trainable and mask is None and
          self.axis in (-1, len(inputs.shape) - 1) and (
              not self.update_moving_statistics or _sinks() or
              (not self.synchronized and _replicas() > 1))):
        return self._batch_statistics(inputs)
      return super().call(inputs, training=training, mask=mask)
    scale = self.gamma if self.scale else tf.ones_like(self.moving_mean)
    offset = self.beta if self.center else tf.zeros_like(self.moving_mean)
    training = bool(training) and self.trainable
    if training and self.synchronized and _replicas() > 1:
      return self._global_batch_norm(inputs, scale, offset)
    # In training mode the op returns the batch mean and the unbiased batch
    # variance.
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=scale, offset=offset, mean=self.moving_mean,
        variance=self.moving_variance, epsilon=self.epsilon,
        exponential_avg_factor=1., data_format='NHWC', is_training=training)
    if training and self.update_moving_statistics:
      if not self.unbiased_moving_variance:
        shape = tf.cast(tf.shape(inputs), tf.float32)
        count = shape[0] * shape[1] * shape[2]
        variance = variance * (count - 1.) / count
      self._move(mean, variance)
    return outputs

  def _move(self, mean, variance):
    """One moving-average step toward these batch statistics; within
    `collect_moving_statistics`, they are recorded instead (the caller
    moves once per step with their mean: `move_moving_statistics`). Per
    replica with several replicas, toward the replicas' mean (each replica
    moving toward its own would leave replica 0's)."""
    if _sinks():
      _sinks()[-1].setdefault(self, []).append((mean, variance))
      return
    if not self.synchronized and _replicas() > 1:
      mean, variance = tf.distribute.get_replica_context().all_reduce(
          'MEAN', [mean, variance])
    momentum = self.momentum
    self.moving_mean.assign(momentum * self.moving_mean +
                            (1. - momentum) * mean)
    self.moving_variance.assign(momentum * self.moving_variance +
                                (1. - momentum) * variance)

  def get_config(self):
    return {**super().get_config(),
            'unbiased_moving_variance': self.unbiased_moving_variance}

  def _global_batch_norm(self, inputs, scale, offset):
    x = tf.cast(inputs, tf.float32)
    mean, variance, count = global_moments(x, [0, 1, 2])
    outputs = tf.nn.batch_normalization(x, mean, variance, offset, scale,
                                        self.epsilon)
    if self.update_moving_statistics:
      if self.unbiased_moving_variance:
        variance = variance * count / tf.maximum(count - 1., 1.)
      self._move(mean, variance)
    return tf.cast(outputs, inputs.dtype)

  def _batch_statistics(self, inputs):
    """Training mode on other ranks where Keras' layer will not do: without
    the moving-average update (it always updates), or with it through
    `_move` (chunks, replicas). Normalised with the batch's mean and biased
    variance (over the global batch when synchronized), which the moving
    variance takes, as Keras'."""
    x = tf.cast(inputs, tf.float32)
    axes = [i for i in range(len(x.shape)) if i != len(x.shape) - 1]
    if self.synchronized:
      mean, variance, _ = global_moments(x, axes)
    else:
      mean, variance = tf.nn.moments(x, axes)
    outputs = tf.nn.batch_normalization(
        x, mean, variance, self.beta if self.center else None,
        self.gamma if self.scale else None, self.epsilon)
    if self.update_moving_statistics:
      self._move(mean, variance)
    return tf.cast(outputs, inputs.dtype)


def _replicas():
  context = tf.distribute.get_replica_context()
  return context.num_replicas_in_sync if context is not None else 1


def global_moments(x, axes):
  """(mean, biased variance, count) over `axes` of the global batch: sums,
  sums of squares and counts all-reduced across the replicas (the gradient
  of an all-reduce is one too), variance E[x^2] - E[x]^2 as the official
  cross-replica BatchNorm; this replica's alone outside a replica context.
  (Keras' ops.moments(synchronized=True) computes the same mean and
  variance but not the global count, which the unbiased moving variance
  needs.)"""
  count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
  sums = [tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), count]
  if _replicas() > 1:
    sums = tf.distribute.get_replica_context().all_reduce('SUM', sums)
  total, squares, count = sums
  mean = total / count
  return mean, tf.maximum(squares / count - tf.square(mean), 0.), count


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
