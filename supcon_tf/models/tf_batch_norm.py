"""`FusedBatchNormalization` under the TensorFlow backend: TensorFlow's fused
kernel for NHWC feature maps, and the global batch's statistics across
`tf.distribute` replicas (the official cross-replica BatchNorm).

Keras 3 composes BatchNorm from moments and elementwise ops; the fused kernel
does each pass in one op. Other input ranks or axes, and masks, fall back to
Keras' layer, or to `_batch_statistics` where that would not do."""
import keras
import tensorflow as tf


def call(layer, inputs, training, mask, collecting):
  """The layer's output; `collecting`: inside `collect_moving_statistics`."""
  if len(inputs.shape) != 4 or layer.axis not in (-1, 3) or mask is not None:
    if (training and layer.trainable and mask is None and
        layer.axis in (-1, len(inputs.shape) - 1) and (
            not layer.update_moving_statistics or collecting or
            (not layer.synchronized and replicas() > 1))):
      return _batch_statistics(layer, inputs)
    return keras.layers.BatchNormalization.call(layer, inputs,
                                                training=training, mask=mask)
  scale = layer.gamma if layer.scale else tf.ones_like(layer.moving_mean)
  offset = layer.beta if layer.center else tf.zeros_like(layer.moving_mean)
  training = bool(training) and layer.trainable
  if training and layer.synchronized and replicas() > 1:
    return _global_batch_norm(layer, inputs, scale, offset)
  # In training mode the op returns the batch mean and the unbiased batch
  # variance.
  outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
      x=inputs, scale=scale, offset=offset, mean=layer.moving_mean,
      variance=layer.moving_variance, epsilon=layer.epsilon,
      exponential_avg_factor=1., data_format='NHWC', is_training=training)
  if training and layer.update_moving_statistics:
    if not layer.unbiased_moving_variance:
      shape = tf.cast(tf.shape(inputs), tf.float32)
      count = shape[0] * shape[1] * shape[2]
      variance = variance * (count - 1.) / count
    layer._move(mean, variance)
  return outputs


def replicas_mean(mean, variance):
  """The replicas' mean of per-replica statistics (themselves with one)."""
  if replicas() > 1:
    return tf.distribute.get_replica_context().all_reduce(
        'MEAN', [mean, variance])
  return mean, variance


def _global_batch_norm(layer, inputs, scale, offset):
  x = tf.cast(inputs, tf.float32)
  mean, variance, count = global_moments(x, [0, 1, 2])
  outputs = tf.nn.batch_normalization(x, mean, variance, offset, scale,
                                      layer.epsilon)
  if layer.update_moving_statistics:
    if layer.unbiased_moving_variance:
      variance = variance * count / tf.maximum(count - 1., 1.)
    layer._move(mean, variance)
  return tf.cast(outputs, inputs.dtype)


def _batch_statistics(layer, inputs):
  """Training mode on other ranks where Keras' layer will not do: without
  the moving-average update (it always updates), or with it through
  `_move` (chunks, replicas). Normalised with the batch's mean and biased
  variance (over the global batch when synchronized), which the moving
  variance takes, as Keras'."""
  x = tf.cast(inputs, tf.float32)
  axes = [i for i in range(len(x.shape)) if i != len(x.shape) - 1]
  if layer.synchronized:
    mean, variance, _ = global_moments(x, axes)
  else:
    mean, variance = tf.nn.moments(x, axes)
  outputs = tf.nn.batch_normalization(
      x, mean, variance, layer.beta if layer.center else None,
      layer.gamma if layer.scale else None, layer.epsilon)
  if layer.update_moving_statistics:
    layer._move(mean, variance)
  return tf.cast(outputs, inputs.dtype)


def replicas():
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
  if replicas() > 1:
    sums = tf.distribute.get_replica_context().all_reduce('SUM', sums)
  total, squares, count = sums
  mean = total / count
  return mean, tf.maximum(squares / count - tf.square(mean), 0.), count
