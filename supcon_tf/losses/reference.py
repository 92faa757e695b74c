"""The official formula as google-research supcon/losses.py computes it, kept
for cross-checks (`contrastive_loss(..., implementation='reference')`):
[Va*B, V*Bg] float masks tiled from the sample masks, the logits shifted by
their row maximum (a stop-gradient, the anchor's own column included, as
official) and autodiff for the gradient. Memory grows with every
intermediate; where the row maximum is the anchor's own logit and tau is
small, its denominator underflows to log(0), which the fused kernels avoid."""
import tensorflow as tf

from supcon_tf.losses.modes import DenominatorMode, SummationLocation


def row_loss(anchors, contrast, positive_samples, same_class, self_samples,
             inv_temperature, scale, anchor_views, num_views,
             summation_location, denominator_mode):
  """(row loss [Na], positives per row [Na]) for anchors [Va*B, D] and the
  contrast set [V*Bg, D], both view-major, from the [B, Bg] sample masks."""
  batch = tf.shape(positive_samples)[0]
  global_batch = tf.shape(positive_samples)[1]

  def tiled(mask):
    return tf.tile(tf.cast(mask, tf.float32), [anchor_views, num_views])

  # Row a*B + i, column v*Bg + k is the anchor itself when v == a and k is i.
  same_view = tf.eye(anchor_views, num_views)[:, None, :, None]
  itself = tf.reshape(
      same_view * tf.cast(self_samples, tf.float32)[None, :, None, :],
      [anchor_views * batch, num_views * global_batch])
  positives = tiled(positive_samples) * (1. - itself)
  negatives = 1. - tiled(same_class)

  logits = tf.linalg.matmul(anchors, contrast, transpose_b=True)
  logits = logits * inv_temperature
  logits -= tf.stop_gradient(tf.reduce_max(logits, axis=1, keepdims=True))
  exp_logits = tf.exp(logits)
  num_positives = tf.reduce_sum(positives, axis=1)
  negative_sum = tf.reduce_sum(exp_logits * negatives, axis=1, keepdims=True)
  if denominator_mode == DenominatorMode.ALL:
    denominator = negative_sum + tf.reduce_sum(exp_logits * positives, axis=1,
                                               keepdims=True)
  elif denominator_mode == DenominatorMode.ONE_POSITIVE:
    denominator = exp_logits + negative_sum
  else:
    denominator = negative_sum
  if summation_location == SummationLocation.OUTSIDE:
    log_probs = (logits - tf.math.log(denominator)) * positives
    log_probs = tf.math.divide_no_nan(tf.reduce_sum(log_probs, axis=1),
                                      num_positives)
  else:
    probs = exp_logits / denominator * positives
    log_probs = tf.math.log(tf.math.divide_no_nan(
        tf.reduce_sum(probs, axis=1), num_positives))
  return -log_probs * scale, num_positives
