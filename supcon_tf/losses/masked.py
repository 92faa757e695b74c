"""The masked kernel: any option set. Keeps the shifted logits of every
[anchor view, sample, contrast view, contrast sample] entry and forms the
[Na, Nc] gradient once (the formulas in supcon_tf.losses)."""
import numpy as np
import tensorflow as tf

from supcon_tf.losses.modes import DenominatorMode, SummationLocation


def tiled_masks(positive_samples, same_class, self_samples, anchor_views,
                 num_views):
  """Broadcasts [B, Bg] sample masks to [Va, B, V, Bg] anchor/contrast masks.

  Nothing of size [Va*B, V*Bg] is materialised outside XLA fusions.
  """
  view_is_anchor_view = tf.cast(
      tf.eye(anchor_views, num_views), tf.bool)[:, None, :, None]
  is_self = tf.logical_and(view_is_anchor_view, self_samples[None, :, None, :])
  positives = tf.logical_and(positive_samples[None, :, None, :],
                             tf.logical_not(is_self))
  negatives = tf.logical_not(same_class)[None, :, None, :]
  return positives, negatives


def forward(anchors, contrast, positive_samples, same_class,
                      self_samples, inv_temperature, scale, anchor_views,
                      num_views, summation_location, denominator_mode):
  """Returns (row_loss [Na], num_positives [Na], residuals for the gradient)."""
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]
  logits = tf.linalg.matmul(anchors * inv_temperature, contrast,
                            transpose_b=True)
  logits = tf.reshape(logits, [anchor_views, batch, num_views, global_batch])
  positives, negatives = tiled_masks(positive_samples, same_class,
                                      self_samples, anchor_views, num_views)
  contrasted = tf.logical_or(positives, negatives)
  # The row maximum over the columns that take part: a row never depends on a
  # column outside P(i) u N(i), so a NaN there cannot leak into it.
  row_max = tf.reduce_max(
      tf.where(contrasted, logits, -np.inf), axis=(2, 3), keepdims=True)
  row_max = tf.where(tf.math.is_inf(row_max), tf.zeros_like(row_max), row_max)
  shifted = logits - row_max
  exp_logits = tf.exp(shifted)
  zeros = tf.zeros_like(shifted)
  sum_axes = (2, 3)
  num_positives = tf.reduce_sum(tf.cast(positives, tf.float32), axis=sum_axes)
  negative_sum = tf.reduce_sum(tf.where(negatives, exp_logits, zeros), sum_axes)
  positive_sum = tf.reduce_sum(tf.where(positives, exp_logits, zeros), sum_axes)
  extra = tf.zeros_like(negative_sum)  # Row sum that only ONE_POSITIVE needs.
  n = negative_sum[..., None, None]

  if denominator_mode == DenominatorMode.ONE_POSITIVE:
    if summation_location == SummationLocation.OUTSIDE:
      log_prob_sum = tf.reduce_sum(
          tf.where(positives, shifted - tf.math.log(exp_logits + n), zeros),
          sum_axes)
      row_loss = -tf.math.divide_no_nan(log_prob_sum, num_positives)
      # sum_p 1 / D_ip, for the gradient through the negatives.
      extra = tf.reduce_sum(
          tf.where(positives, 1. / (exp_logits + n), zeros), sum_axes)
    else:
      ratio = exp_logits / (exp_logits + n)
      ratio_sum = tf.reduce_sum(tf.where(positives, ratio, zeros), sum_axes)
      row_loss = -tf.math.log(tf.math.divide_no_nan(ratio_sum, num_positives))
      # sum_p t_ip / D_ip, for the gradient through the negatives.
      extra = tf.reduce_sum(
          tf.where(positives, ratio / (exp_logits + n), zeros), sum_axes)
      positive_sum = ratio_sum  # Q_i = sum_p t_ip takes S_i's place below.
  else:
    if denominator_mode == DenominatorMode.ALL:
      denominator = negative_sum + positive_sum
    else:
      denominator = negative_sum
    if summation_location == SummationLocation.OUTSIDE:
      positive_logit_sum = tf.reduce_sum(
          tf.where(positives, shifted, zeros), sum_axes)
      row_loss = -tf.math.divide_no_nan(
          positive_logit_sum - num_positives * tf.math.log(denominator),
          num_positives)
    else:
      row_loss = -tf.math.log(
          tf.math.divide_no_nan(positive_sum / denominator, num_positives))
  row_loss = tf.reshape(row_loss * scale, [-1])
  residuals = (shifted, negative_sum, positive_sum, extra, num_positives)
  return row_loss, tf.reshape(num_positives, [-1]), residuals


def backward(upstream, anchors, contrast, positive_samples,
                       same_class, self_samples, residuals, inv_temperature,
                       scale, anchor_views, num_views, summation_location,
                       denominator_mode):
  """Gradients of sum_i upstream_i * row_loss_i w.r.t. anchors and contrast.

  With w_i = -s * upstream_i (zero where P(i) is empty), n_i = sum_N e^l,
  S_i = sum_P e^l, [k in D] for the denominator's columns, t_ip = e^l_ip / D_ip
  and Q_i = sum_p t_ip, the derivative of row i's loss by l_ik is:
    OUTSIDE, ALL / ONLY_NEGATIVES: w_i (P_ik / |P(i)| - [k in D] e^l_ik / D_i)
    INSIDE,  ALL / ONLY_NEGATIVES: w_i (P_ik e^l_ik / S_i - [k in D] e^l_ik / D_i)
    OUTSIDE, ONE_POSITIVE: w_i / |P(i)| (P_ik (1 - t_ik) - N_ik e^l_ik sum_p 1 / D_ip)
    INSIDE,  ONE_POSITIVE: w_i / Q_i (P_ik t_ik (1 - t_ik) - N_ik e^l_ik sum_p t_ip / D_ip)
  and l_ik = anchor_i . contrast_k / tau gives the two matrix products.
  """
  shifted, negative_sum, positive_sum, extra, num_positives = residuals
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]
  positives, negatives = tiled_masks(positive_samples, same_class,
                                      self_samples, anchor_views, num_views)
  exp_logits = tf.exp(shifted)
  zeros = tf.zeros_like(shifted)
  has_positive = num_positives > 0
  weight = tf.reshape(upstream, [anchor_views, batch]) * -scale
  weight = tf.where(has_positive, weight, tf.zeros_like(weight))
  n = negative_sum[..., None, None]
  outside = summation_location == SummationLocation.OUTSIDE

  # Each branch is one line of the table in the docstring.
  if denominator_mode == DenominatorMode.ONE_POSITIVE:
    d = exp_logits + n
    if outside:
      coeff = tf.math.divide_no_nan(weight, num_positives)[..., None, None]
      pos_term = 1. - exp_logits / d
      neg_term = exp_logits * extra[..., None, None]
    else:
      coeff = tf.math.divide_no_nan(weight, positive_sum)[..., None, None]
      t = exp_logits / d
      pos_term = t * (1. - t)
      neg_term = exp_logits * extra[..., None, None]
    grad = coeff * (tf.where(positives, pos_term, zeros) -
                    tf.where(negatives, neg_term, zeros))
  else:
    if denominator_mode == DenominatorMode.ALL:
      denominator = (negative_sum + positive_sum)[..., None, None]
      in_denominator = tf.logical_or(positives, negatives)
    else:
      denominator = n
      in_denominator = negatives
    if outside:
      pos_term = tf.math.divide_no_nan(
          tf.ones_like(num_positives), num_positives)[..., None, None]
    else:
      pos_term = exp_logits / positive_sum[..., None, None]
    grad = weight[..., None, None] * (
        tf.where(positives, pos_term, zeros) -
        tf.where(in_denominator, exp_logits / denominator, zeros))

  grad = tf.reshape(grad, [anchor_views * batch, num_views * global_batch])
  grad = grad * inv_temperature
  d_anchors = tf.linalg.matmul(grad, contrast)
  d_contrast = tf.linalg.matmul(grad, anchors, transpose_a=True)
  return d_anchors, d_contrast
