"""The masked kernel: any option set. Works on the logits of every
[anchor view, sample, contrast view, contrast sample] entry: `statistics` turns
a block of rows into row losses and a few numbers per row, `logit_gradient`
turns the same rows back into their [rows, Nc] gradient (the formulas in
supcon_tf.losses). The fused path keeps the logits between the two; the
blockwise path (`blockwise.py`) keeps only the row numbers and computes each
block's logits again."""
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


def denominator_columns(positives, negatives, denominator_mode):
  """The columns of D: P u N for ALL, N otherwise (ONE_POSITIVE's D_ip adds
  the one positive itself)."""
  if denominator_mode == DenominatorMode.ALL:
    return tf.logical_or(positives, negatives)
  return negatives


_SUM_AXES = (2, 3)


def _masked_max(mask, values):
  """Row maximum of `values` over `mask`; 0 for a row with none (not -inf,
  so that subtracting it never makes a NaN)."""
  row_max = tf.reduce_max(tf.where(mask, values, -np.inf), _SUM_AXES,
                          keepdims=True)
  return tf.where(tf.math.is_inf(row_max), tf.zeros_like(row_max), row_max)


def _log_sum_exp(mask, values):
  """log sum over `mask` of exp(values), per row: -inf for an empty row. Its
  own maximum keeps the sum from underflowing where the row maximum of the
  logits sits in another column."""
  peak = _masked_max(mask, values)
  total = tf.reduce_sum(tf.where(mask, tf.exp(values - peak), 0.), _SUM_AXES,
                        keepdims=True)
  return peak + tf.math.log(total)


def _log_add_exp(a, b):
  """log(e^a + e^b), finite where one of them is -inf."""
  return tf.maximum(a, b) + tf.math.softplus(-tf.abs(a - b))


def statistics(logits, positive_samples, same_class, self_samples, scale,
               anchor_views, num_views, summation_location, denominator_mode):
  """Row losses [Va, b], positives per row [Va, b] and the row numbers the
  gradient needs, from the logits [Va, b, V, Bg] of a block of anchors."""
  positives, negatives = tiled_masks(positive_samples, same_class,
                                     self_samples, anchor_views, num_views)
  # The row maximum over the columns that take part: a row never depends on a
  # column outside P(i) u N(i), so a NaN there cannot leak into it.
  row_max = _masked_max(tf.logical_or(positives, negatives), logits)
  shifted = logits - row_max
  num_positives = tf.reduce_sum(tf.cast(positives, tf.float32), _SUM_AXES,
                                keepdims=True)
  outside = summation_location == SummationLocation.OUTSIDE

  if denominator_mode == DenominatorMode.ONE_POSITIVE:
    # In logs: where another positive holds the row maximum, a positive's
    # e^l and the whole negative sum can both underflow (0 / 0 as ratios).
    log_negatives = _log_sum_exp(negatives, shifted)
    log_d = _log_add_exp(shifted, log_negatives)
    if outside:
      log_prob_sum = tf.reduce_sum(
          tf.where(positives, shifted - log_d, 0.), _SUM_AXES, keepdims=True)
      row_loss = -tf.math.divide_no_nan(log_prob_sum, num_positives)
      # log sum_p 1 / D_ip, for the gradient through the negatives.
      log_extra = _log_sum_exp(positives, -log_d)
      log_ratio_sum = tf.zeros_like(row_max)
    else:
      # log Q_i, Q_i = sum_p t_ip with t_ip = e^l_ip / D_ip.
      log_ratio_sum = _log_sum_exp(positives, shifted - log_d)
      row_loss = tf.where(num_positives > 0,
                          tf.math.log(num_positives) - log_ratio_sum, np.inf)
      # log sum_p t_ip / D_ip, for the gradient through the negatives.
      log_extra = _log_sum_exp(positives, shifted - 2. * log_d)
    numbers = (row_max, log_negatives, log_extra, log_ratio_sum)
  else:
    # In logs too, each sum with its own maximum: with ONLY_NEGATIVES the
    # row maximum may be a positive's and the negatives' sum underflow, and
    # INSIDE the positives' sum may (the loss is then finite, not inf - inf).
    log_denominator = _log_sum_exp(
        denominator_columns(positives, negatives, denominator_mode), shifted)
    if outside:
      positive_logit_sum = tf.reduce_sum(tf.where(positives, shifted, 0.),
                                         _SUM_AXES, keepdims=True)
      row_loss = -tf.math.divide_no_nan(
          positive_logit_sum - num_positives * log_denominator, num_positives)
      # OUTSIDE's gradient weighs the positives evenly: no sum of theirs.
      log_positive_sum = tf.zeros_like(row_max)
    else:
      log_positive_sum = _log_sum_exp(positives, shifted)
      row_loss = tf.where(
          num_positives > 0,
          log_denominator + tf.math.log(num_positives) - log_positive_sum,
          np.inf)
    numbers = (row_max, log_denominator, log_positive_sum,
               tf.zeros_like(row_max))
  squeeze = lambda x: tf.reshape(x, tf.shape(x)[:2])
  return (squeeze(row_loss) * scale, squeeze(num_positives),
          tuple(squeeze(x) for x in numbers))


def logit_gradient(upstream, logits, positive_samples, same_class,
                   self_samples, num_positives, numbers, scale, anchor_views,
                   num_views, summation_location, denominator_mode):
  """d(sum_i upstream_i * row_loss_i) / d logits, [Va, b, V, Bg].

  With w_i = -s * upstream_i (zero where P(i) is empty), S_i = sum_P e^l,
  D_i the denominator and [k in D] its columns, t_ip = e^l_ip / D_ip
  and Q_i = sum_p t_ip, the derivative of row i's loss by l_ik is:
    OUTSIDE, ALL / ONLY_NEGATIVES: w_i (P_ik / |P(i)| - [k in D] e^l_ik / D_i)
    INSIDE,  ALL / ONLY_NEGATIVES: w_i (P_ik e^l_ik / S_i - [k in D] e^l_ik / D_i)
    OUTSIDE, ONE_POSITIVE: w_i / |P(i)| (P_ik (1 - t_ik) - N_ik e^l_ik sum_p 1 / D_ip)
    INSIDE,  ONE_POSITIVE: w_i / Q_i (P_ik t_ik (1 - t_ik) - N_ik e^l_ik sum_p t_ip / D_ip)
  (the sums in logs); l_ik = anchor_i . contrast_k / tau gives the two
  matrix products of the features' gradient.
  """
  positives, negatives = tiled_masks(positive_samples, same_class,
                                     self_samples, anchor_views, num_views)
  expand = lambda x: x[..., None, None]
  row_max, first, second, third = (expand(x) for x in numbers)
  num_positives = expand(num_positives)
  has_positive = num_positives > 0
  weight = tf.reshape(upstream, tf.shape(num_positives)) * -scale
  weight = tf.where(has_positive, weight, 0.)
  shifted = logits - row_max
  outside = summation_location == SummationLocation.OUTSIDE

  # Each branch is one line of the table in the docstring.
  if denominator_mode == DenominatorMode.ONE_POSITIVE:
    log_negatives, log_extra, log_ratio_sum = first, second, third
    log_d = _log_add_exp(shifted, log_negatives)
    t = tf.exp(shifted - log_d)
    if outside:
      coeff = tf.math.divide_no_nan(weight, num_positives)
      pos_term = coeff * (1. - t)
      neg_term = coeff * tf.exp(shifted + log_extra)
    else:
      # w / Q in logs: Q can underflow where every t_ip is tiny.
      log_q = tf.where(has_positive, log_ratio_sum, 0.)
      pos_term = weight * tf.exp(shifted - log_d - log_q) * (1. - t)
      neg_term = weight * tf.exp(shifted + log_extra - log_q)
    return (tf.where(positives, pos_term, 0.) -
            tf.where(negatives, neg_term, 0.))
  log_denominator, log_positive_sum = first, second
  in_denominator = denominator_columns(positives, negatives, denominator_mode)
  if outside:
    pos_term = tf.math.divide_no_nan(tf.ones_like(num_positives),
                                     num_positives)
  else:
    pos_term = tf.exp(shifted - tf.where(has_positive, log_positive_sum, 0.))
  return weight * (tf.where(positives, pos_term, 0.) - tf.where(
      in_denominator, tf.exp(shifted - log_denominator), 0.))


def block_logits(anchors, contrast, inv_temperature, anchor_views, num_views):
  """Logits [Va, b, V, Bg] of anchors [Va*b, D] against contrast [V*Bg, D]."""
  logits = tf.linalg.matmul(anchors * inv_temperature, contrast,
                            transpose_b=True)
  return tf.reshape(logits, [anchor_views, -1, num_views,
                             tf.shape(contrast)[0] // num_views])


def feature_gradients(grad, anchors, contrast, inv_temperature):
  """(d anchors, d contrast) from d logits [Va, b, V, Bg]."""
  grad = tf.reshape(grad, [tf.shape(anchors)[0], tf.shape(contrast)[0]])
  grad = grad * inv_temperature
  return (tf.linalg.matmul(grad, contrast),
          tf.linalg.matmul(grad, anchors, transpose_a=True))


def forward(anchors, contrast, positive_samples, same_class, self_samples,
            inv_temperature, scale, anchor_views, num_views,
            summation_location, denominator_mode):
  """Returns (row_loss [Na], num_positives [Na], residuals for the gradient)."""
  logits = block_logits(anchors, contrast, inv_temperature, anchor_views,
                        num_views)
  row_loss, num_positives, numbers = statistics(
      logits, positive_samples, same_class, self_samples, scale,
      anchor_views, num_views, summation_location, denominator_mode)
  return (tf.reshape(row_loss, [-1]), tf.reshape(num_positives, [-1]),
          (logits, num_positives, numbers))


def backward(upstream, anchors, contrast, positive_samples, same_class,
             self_samples, residuals, inv_temperature, scale, anchor_views,
             num_views, summation_location, denominator_mode):
  """Gradients of sum_i upstream_i * row_loss_i w.r.t. anchors and contrast."""
  logits, num_positives, numbers = residuals
  grad = logit_gradient(upstream, logits, positive_samples, same_class,
                        self_samples, num_positives, numbers, scale,
                        anchor_views, num_views, summation_location,
                        denominator_mode)
  return feature_gradients(grad, anchors, contrast, inv_temperature)
