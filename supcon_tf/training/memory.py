"""What the contrast set holds beyond the batch: the cross-batch memory of
recent projections and the momentum (key) encoder that embeds them."""
import types

import keras
import tensorflow as tf

from supcon_tf.models import layers
from supcon_tf.losses import tf_loss


class CrossBatchMemory(keras.layers.Layer):
  """A queue of the projections (every view) and class ids of the last
  `size` samples trained on, the global batch's on every replica. Once
  full and after `warmup` steps, its samples join each step's contrast set
  (never as anchors, no gradient): more positives and negatives than the
  batch holds, from earlier weights (Wang et al. 2020, "Cross-Batch
  Memory"; pytorch-metric-learning's `CrossBatchMemory`)."""

  def __init__(self, size, num_views, dim, warmup=0, **kwargs):
    super().__init__(trainable=False, **kwargs)
    if size < 1 or warmup < 0:
      raise ValueError(f'memory_size must be >= 1 and memory_warmup >= 0; '
                       f'got {size} and {warmup}.')
    self.size, self.num_views, self.warmup = size, num_views, warmup
    # Every replica pushes the same gathered batch: the first one's write is
    # every copy's.
    weight = dict(trainable=False, aggregation='only_first_replica')
    self.features = self.add_weight(shape=(size, num_views, dim),
                                    initializer='zeros', name='features',
                                    **weight)
    self.labels = self.add_weight(shape=(size,), dtype='int32',
                                  initializer='zeros', name='labels', **weight)
    self.written = self.add_weight(shape=(), dtype='int64',
                                   initializer='zeros', name='written',
                                   **weight)
    self.steps = self.add_weight(shape=(), dtype='int64', initializer='zeros',
                                 name='steps', **weight)

  def active(self):
    return tf.logical_and(self.written.value >= self.size,
                          self.steps.value >= self.warmup)

  def contents(self):
    """(projections [size, views, dim], class ids [size])."""
    return self.features.value, self.labels.value

  def push(self, projection, labels):
    """Writes the global batch over the oldest samples."""
    if labels.shape.rank != 1:
      raise ValueError('A cross-batch memory keeps class ids [batch]; got '
                       f'labels of shape {labels.shape}.')
    if projection.shape[1] != self.num_views:
      raise ValueError(
          f'The memory holds {self.num_views} views a sample (num_views); '
          f'the batch has {projection.shape[1]}.')
    projection = tf.stop_gradient(tf_loss.cross_replica_concat(
        tf.cast(projection, tf.float32)))[-self.size:]
    labels = tf_loss.cross_replica_concat(tf.cast(labels, tf.int32))[
        -self.size:]
    count = tf.shape(labels, out_type=tf.int64)[0]
    where = ((self.written.value + tf.range(count)) % self.size)[:, None]
    self.features.assign(tf.tensor_scatter_nd_update(
        self.features.value, where,
        tf.reshape(projection, [-1] + list(self.features.shape[1:]))))
    self.labels.assign(tf.tensor_scatter_nd_update(self.labels.value, where,
                                                   labels))
    self.written.assign_add(count)
    self.steps.assign_add(1)

  def get_config(self):
    config = super().get_config()
    config.update(size=self.size, num_views=self.num_views,
                  dim=int(self.features.shape[-1]), warmup=self.warmup)
    return config


class MomentumEncoder(keras.layers.Layer):
  """MoCo's key encoder (He et al. 2020) for a cross-batch memory: an
  exponential moving average of `model`'s weights (every trainable weight
  and BatchNorm statistic) that embeds each batch for the memory, without a
  gradient. `project(views, forward_options)` runs `model` on these weights
  (Keras' stateless call), BatchNorm on the batch's statistics as MoCo's key
  encoder, its moving averages left alone; `update()` after each step moves
  them toward the model's: key = momentum x key + (1 - momentum) x weight."""

  def __init__(self, model, momentum, **kwargs):
    super().__init__(trainable=False, **kwargs)
    if not 0 < momentum < 1:
      raise ValueError(f'momentum_encoder must be in (0, 1); got {momentum}.')
    # Held outside Keras' tracking: the model is not a part of this layer.
    self._of = types.SimpleNamespace(model=model)
    self.momentum = float(momentum)
    # Every replica computes the same average of mirrored weights.
    weight = dict(trainable=False, aggregation='only_first_replica')
    self.trained = [self.add_weight(shape=v.shape, dtype=v.dtype,
                                    initializer=_value_of(v), name=f'key_{i}',
                                    **weight)
                    for i, v in enumerate(model.trainable_variables)]
    self.kept = [self.add_weight(shape=v.shape, dtype=v.dtype,
                                 initializer=_value_of(v), name=f'keep_{i}',
                                 **weight)
                 for i, v in enumerate(model.non_trainable_variables)]

  @property
  def model(self):
    return self._of.model

  def checkpointed(self):
    """Its weights as a checkpoint dependency (Keras keeps its weight
    lists where a TensorFlow checkpoint does not look)."""
    return tf.train.Checkpoint(trained=list(self.trained),
                               kept=list(self.kept))

  def project(self, views, forward_options):
    """The key encoder's projections of `views` (no gradient)."""
    with layers.moving_statistics_frozen(self.model):
      outputs, _ = self.model.stateless_call(
          [v.value for v in self.trained], [v.value for v in self.kept],
          views, **forward_options)
    return tf.stop_gradient(outputs['projection'])

  def update(self):
    momentum = self.momentum
    for key, value in zip(self.trained + self.kept,
                          self.model.trainable_variables +
                          self.model.non_trainable_variables):
      if key.dtype != 'bool' and 'int' not in key.dtype:
        key.assign(momentum * key.value + (1. - momentum) *
                   tf.cast(value.value, key.dtype))


def _value_of(variable):
  """An initializer giving `variable`'s value now."""
  value = tf.identity(variable.value)
  return lambda shape, dtype=None: tf.cast(value, dtype or value.dtype)
