"""The linear kernel: OUTSIDE with the ALL or ONLY_NEGATIVES denominator and
no positives_cap (the official SupCon and SimCLR settings). One pass of exp
over the logits, one anchor view at a time; the backward pass is two matrix
products with the exponentials.

The anchors may be any block of local samples: `offset` is the global index of
the block's first sample, and rows past the end of the batch (a blockwise
kernel's padding) must have empty masks; their own column is clipped to a real
one, and their loss and gradient are zero."""
import numpy as np
import tensorflow as tf

from supcon_tf.losses.masked import tiled_masks
from supcon_tf.losses.modes import DenominatorMode


def _own_samples(batch, offset, global_batch):
  """Global index of each anchor sample (clipped past the batch)."""
  return tf.minimum(tf.range(batch) + offset, global_batch - 1)


def exponentials(anchors, contrast, positive_samples, same_class,
                 self_samples, offset, inv_temperature, anchor_views,
                 num_views, denominator_mode, row_max=None):
  """Per anchor view, the denominator's e^(l - m) [B, V, Bg]; the row maxima m
  [Va, B] (or `row_max`, to compute the same exponentials again) and the
  denominators [Va, B]."""
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]
  positives, negatives = tiled_masks(positive_samples, same_class,
                                     self_samples, anchor_views, num_views)
  in_denominator = negatives
  if denominator_mode == DenominatorMode.ALL:
    in_denominator = tf.logical_or(positives, negatives)
  in_denominator = tf.broadcast_to(
      in_denominator, [anchor_views, batch, num_views, global_batch])
  dim = tf.shape(anchors)[-1]
  anchors_by_view = tf.reshape(anchors, [anchor_views, batch, dim])
  samples = tf.range(batch)
  own = _own_samples(batch, offset, global_batch)
  exp_logits, maxima, denominator = [], [], []
  # One anchor view at a time: the logits of one view are the only temporary
  # of size [B, V * Bg] beside the kept exponentials.
  for view in range(anchor_views):
    # Scaling the anchors, not the logits, saves a pass over the logits.
    logits = tf.linalg.matmul(anchors_by_view[view] * inv_temperature,
                              contrast, transpose_b=True)
    logits = tf.reshape(logits, [batch, num_views, global_batch])
    # The anchor's own column is never in the denominator: -inf there before
    # the max (in place), so that the max is over the denominator's columns
    # for ALL and the denominator is at least 1 (no underflow to log 0).
    logits = tf.tensor_scatter_nd_update(
        logits, tf.stack([samples, tf.fill([batch], view), own], axis=1),
        tf.fill([batch], -np.inf))
    if row_max is None:
      view_max = tf.reduce_max(logits, axis=(1, 2))
    else:
      view_max = row_max[view]
    view_exp = tf.where(in_denominator[view],
                        tf.exp(logits - view_max[:, None, None]), 0.)
    exp_logits.append(view_exp)
    maxima.append(view_max)
    denominator.append(tf.reduce_sum(view_exp, axis=(1, 2)))
  return tuple(exp_logits), tf.stack(maxima), tf.stack(denominator)


def forward(anchors, contrast, positive_samples, same_class, self_samples,
            offset, inv_temperature, scale, anchor_views, num_views,
            denominator_mode, self_supervised):
  """Row losses for OUTSIDE with ALL or ONLY_NEGATIVES denominators.

  Here the positive term is uniform over P(i), so sum_p l_ip is a dot product of
  the anchor with the sum of its positives' features, and the gradient is two
  matrix products with the masked exponentials: no [Na, Nc] pass beyond the
  logits, one exp and one sum, and only the exponentials are kept.
  """
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]
  exp_logits, row_max, denominator = exponentials(
      anchors, contrast, positive_samples, same_class, self_samples, offset,
      inv_temperature, anchor_views, num_views, denominator_mode)
  dim = tf.shape(anchors)[-1]
  anchors_by_view = tf.reshape(anchors, [anchor_views, batch, dim])

  self_positive = tf.reduce_any(
      tf.logical_and(positive_samples, self_samples), axis=1)
  self_positive = tf.cast(self_positive, tf.float32)
  num_positives = (num_views * tf.reduce_sum(
      tf.cast(positive_samples, tf.float32), axis=1) - self_positive)
  num_positives = tf.broadcast_to(num_positives, [anchor_views, batch])
  # Sum of the positives' features for every anchor: [Va, B, D].
  sample_features = tf.reduce_sum(
      tf.reshape(contrast, [num_views, global_batch, dim]), axis=0)
  if self_supervised:
    positive_features = tf.gather(
        sample_features, _own_samples(batch, offset, global_batch))
  else:
    positive_features = tf.linalg.matmul(
        tf.cast(positive_samples, tf.float32), sample_features)
  positive_features = (positive_features[None] -
                       self_positive[None, :, None] * anchors_by_view)
  positive_logit_sum = tf.reduce_sum(
      anchors_by_view * positive_features, axis=-1) * inv_temperature
  row_loss = -scale * tf.math.divide_no_nan(
      positive_logit_sum - num_positives * (row_max + tf.math.log(denominator)),
      num_positives)
  residuals = (exp_logits, denominator, num_positives, positive_features,
               self_positive)
  return (tf.reshape(row_loss, [-1]), tf.reshape(num_positives, [-1]),
          residuals, row_max)


# E @ C as XLA compiles it: as fast as oneDNN's with AVX-512 and faster than
# oneDNN's AVX2 code. The transposed product below is the other way round.
_compiled_matmul = tf.function(tf.linalg.matmul, jit_compile=True,
                               autograph=False, reduce_retracing=True)


def backward(upstream, anchors, contrast, positive_samples, offset,
             residuals, inv_temperature, scale, anchor_views, num_views,
             self_supervised):
  """d/d features of sum_i upstream_i * row_loss_i for `forward`.

  With G_ik = w_i (P_ik / |P(i)| - e^{l_ik} / D_i) and w_i = -s * upstream_i:
  d anchors = G @ contrast / tau and d contrast = G^T @ anchors / tau, where the
  P_ik part is a sum over positive samples and the rest is a product with the
  kept exponentials.
  """
  exp_logits, denominator, num_positives, positive_features, self_positive = (
      residuals)
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]
  dim = tf.shape(anchors)[-1]
  weight = tf.reshape(upstream, [anchor_views, batch]) * -scale
  positive_weight = tf.math.divide_no_nan(weight, num_positives)
  denominator_weight = tf.where(num_positives > 0, weight / denominator, 0.)
  anchors_by_view = tf.reshape(anchors, [anchor_views, batch, dim])
  denominator_anchors = denominator_weight[..., None] * anchors_by_view
  from_denominator = 0.
  to_anchors = []
  for view, view_exp in enumerate(exp_logits):
    view_exp = tf.reshape(view_exp, [batch, num_views * global_batch])
    to_anchors.append(_compiled_matmul(view_exp, contrast))
    # (A^T E)^T by TensorFlow's kernel (oneDNN): twice as fast as XLA's E^T A
    # with AVX-512, as fast with AVX2.
    from_denominator += tf.transpose(tf.linalg.matmul(
        denominator_anchors[view], view_exp, transpose_a=True))

  d_anchors = (positive_weight[..., None] * positive_features -
               denominator_weight[..., None] * tf.stack(to_anchors))
  d_anchors = tf.reshape(d_anchors, [-1, dim]) * inv_temperature

  weighted_anchors = positive_weight[..., None] * anchors_by_view
  per_sample = tf.reduce_sum(weighted_anchors, axis=0)
  own = _own_samples(batch, offset, global_batch)
  if self_supervised:
    to_positives = tf.scatter_nd(own[:, None], per_sample, [global_batch, dim])
  else:
    to_positives = tf.linalg.matmul(
        tf.cast(positive_samples, tf.float32), per_sample, transpose_a=True)
  # An anchor is not its own positive: take its own column back out.
  own_column = self_positive[None, :, None] * weighted_anchors
  views = tf.broadcast_to(tf.range(anchor_views)[:, None], [anchor_views, batch])
  own_column = tf.scatter_nd(
      tf.stack([views, tf.broadcast_to(own[None], [anchor_views, batch])], -1),
      own_column, [num_views, global_batch, dim])
  d_contrast = (to_positives[None] - own_column -
                tf.reshape(from_denominator, [num_views, global_batch, dim]))
  d_contrast = tf.reshape(d_contrast, [-1, dim]) * inv_temperature
  return d_anchors, d_contrast
