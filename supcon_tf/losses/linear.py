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

from supcon_tf.losses.masked import denominator_columns, tiled_masks
from supcon_tf.losses.modes import DenominatorMode


def _own_samples(batch, offset, global_batch):
  """Global index of each anchor sample (clipped past the batch)."""
  return tf.minimum(tf.range(batch) + offset, global_batch - 1)


def _denominator_mask(positive_samples, same_class, self_samples,
                      anchor_views, num_views, denominator_mode):
  """[Va, B, V, Bg]: the columns in each row's denominator."""
  in_denominator = denominator_columns(
      *tiled_masks(positive_samples, same_class, self_samples, anchor_views,
                   num_views), denominator_mode)
  batch, global_batch = tf.unstack(tf.shape(positive_samples))
  return tf.broadcast_to(in_denominator,
                         [anchor_views, batch, num_views, global_batch])


def _view_logits(anchors, contrast, offset, inv_temperature, view,
                 anchor_views, num_views, global_batch):
  """Logits [B, V, Bg] of the anchors' `view`, -inf in each one's own column."""
  dim = tf.shape(anchors)[-1]
  batch = tf.shape(anchors)[0] // anchor_views
  # Scaling the anchors, not the logits, saves a pass over the logits.
  logits = tf.linalg.matmul(
      tf.reshape(anchors, [anchor_views, batch, dim])[view] * inv_temperature,
      contrast, transpose_b=True)
  logits = tf.reshape(logits, [batch, num_views, global_batch])
  # The anchor's own column is never in the denominator: -inf there (in
  # place) before the max, so that the max is over the denominator's columns
  # for ALL and the denominator is at least 1 (no underflow to log 0).
  own = _own_samples(batch, offset, global_batch)
  return tf.tensor_scatter_nd_update(
      logits, tf.stack([tf.range(batch), tf.fill([batch], view), own], axis=1),
      tf.fill([batch], -np.inf))


def exponentials(anchors, contrast, positive_samples, same_class,
                 self_samples, offset, inv_temperature, anchor_views,
                 num_views, denominator_mode, row_max=None):
  """Per anchor view, the denominator's e^(l - m) [B, V, Bg]; the row maxima m
  [Va, B] (or `row_max`, to compute the same exponentials again) and the
  denominators [Va, B]."""
  in_denominator = _denominator_mask(positive_samples, same_class,
                                     self_samples, anchor_views, num_views,
                                     denominator_mode)
  global_batch = tf.shape(positive_samples)[1]
  exp_logits, maxima, denominator = [], [], []
  # One anchor view at a time: the logits of one view are the only temporary
  # of size [B, V * Bg] beside the kept exponentials.
  for view in range(anchor_views):
    logits = _view_logits(anchors, contrast, offset, inv_temperature, view,
                          anchor_views, num_views, global_batch)
    if row_max is not None:
      view_max = row_max[view]
    elif denominator_mode == DenominatorMode.ALL:
      view_max = tf.reduce_max(logits, axis=(1, 2))
    else:
      # The negatives' own maximum: a positive's may be so far above that the
      # negatives' sum underflows (log 0).
      view_max = tf.reduce_max(tf.where(in_denominator[view], logits, -np.inf),
                               axis=(1, 2))
      view_max = tf.where(tf.math.is_inf(view_max), 0., view_max)
    view_exp = tf.where(in_denominator[view],
                        tf.exp(logits - view_max[:, None, None]), 0.)
    exp_logits.append(view_exp)
    maxima.append(view_max)
    denominator.append(tf.reduce_sum(view_exp, axis=(1, 2)))
  return tuple(exp_logits), tf.stack(maxima), tf.stack(denominator)


def symmetric_weights(anchors, contrast, positive_samples, same_class,
                      self_samples, offset, inv_temperature, row_max,
                      row_weight, column_max, column_weight, anchor_views,
                      num_views, denominator_mode):
  """For anchors that are the contrast set itself (one device, every view an
  anchor view): M [Va * B, V * Bg] with, over the denominator's columns,
    M_rk = b_r e^(l_rk - m_r) + b_k e^(l_rk - m_k),  b = w / D,
  so that the exponentials' part of the features' whole gradient (through
  anchors and contrast both) is -M @ features / tau: one matrix product, as
  l is symmetric. `column_max` and `column_weight` are m and b of every row,
  [V, Bg]; e^(l_rk - m_k) <= 1 as l_rk is in row k's denominator too."""
  in_denominator = _denominator_mask(positive_samples, same_class,
                                     self_samples, anchor_views, num_views,
                                     denominator_mode)
  global_batch = tf.shape(positive_samples)[1]
  weights = []
  for view in range(anchor_views):
    logits = _view_logits(anchors, contrast, offset, inv_temperature, view,
                          anchor_views, num_views, global_batch)
    rows = (row_weight[view][:, None, None] *
            tf.exp(logits - row_max[view][:, None, None]))
    columns = column_weight[None] * tf.exp(logits - column_max[None])
    weights.append(tf.where(in_denominator[view], rows + columns, 0.))
  return tf.reshape(tf.stack(weights), [-1, num_views * global_batch])


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


def gradient_weights(upstream, num_positives, denominator, scale):
  """(w / |P|, w / D) [Va, B], w = -s * upstream (zero without positives)."""
  weight = tf.reshape(upstream, tf.shape(num_positives)) * -scale
  return (tf.math.divide_no_nan(weight, num_positives),
          tf.where(num_positives > 0, weight / denominator, 0.))


def positive_part(positive_weight, anchors, positive_samples, offset,
                  positive_features, self_positive, num_views,
                  self_supervised):
  """The positives' part of (d anchors [Va, B, D], d contrast [V, Bg, D]),
  without the 1 / tau."""
  anchor_views, batch = positive_weight.shape[0], tf.shape(positive_weight)[1]
  global_batch = tf.shape(positive_samples)[1]
  dim = tf.shape(anchors)[-1]
  anchors_by_view = tf.reshape(anchors, [anchor_views, batch, dim])
  d_anchors = positive_weight[..., None] * positive_features
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
  views = tf.broadcast_to(tf.range(anchor_views)[:, None],
                          [anchor_views, batch])
  own_column = tf.scatter_nd(
      tf.stack([views, tf.broadcast_to(own[None], [anchor_views, batch])], -1),
      own_column, [num_views, global_batch, dim])
  return d_anchors, to_positives[None] - own_column


# E @ C as XLA compiles it: as fast as oneDNN's with AVX-512 and faster than
# oneDNN's AVX2 code. The transposed product below is the other way round.
compiled_matmul = tf.function(tf.linalg.matmul, jit_compile=True,
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
  positive_weight, denominator_weight = gradient_weights(
      upstream, num_positives, denominator, scale)
  d_anchors, d_contrast = positive_part(
      positive_weight, anchors, positive_samples, offset, positive_features,
      self_positive, num_views, self_supervised)
  denominator_anchors = denominator_weight[..., None] * tf.reshape(
      anchors, [anchor_views, batch, dim])
  from_denominator = 0.
  to_anchors = []
  for view, view_exp in enumerate(exp_logits):
    view_exp = tf.reshape(view_exp, [batch, num_views * global_batch])
    to_anchors.append(compiled_matmul(view_exp, contrast))
    # (A^T E)^T by TensorFlow's kernel (oneDNN): twice as fast as XLA's E^T A
    # with AVX-512, as fast with AVX2.
    from_denominator += tf.transpose(tf.linalg.matmul(
        denominator_anchors[view], view_exp, transpose_a=True))
  d_anchors -= denominator_weight[..., None] * tf.stack(to_anchors)
  d_contrast -= tf.reshape(from_denominator, [num_views, global_batch, dim])
  return (tf.reshape(d_anchors, [-1, dim]) * inv_temperature,
          tf.reshape(d_contrast, [-1, dim]) * inv_temperature)
