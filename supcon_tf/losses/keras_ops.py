"""The contrastive loss in `keras.ops`: what JAX and PyTorch run.

The same formulas as the masked kernel (`masked.statistics`: the row maximum
over the columns that take part, every sum of exponentials in logs with its
own maximum), without a hand-written gradient: the backend differentiates
them. The [B, B] sample masks are broadcast against the logits viewed as
[anchor views, B, views, B], never tiled. Every mask enters through
`where` before an exponential or a log, so that a column outside a row gives
neither an inf forward nor a NaN backward.

Under `jax.jit` with `keras.distribution.DataParallel` the features are the
global batch, so the contrast set spans every device without a gather.
"""
import keras
import numpy as np

from supcon_tf.losses.modes import (ContrastMode, DenominatorMode,
                                    SummationLocation)

ops = keras.ops
_SUM_AXES = (2, 3)


def _masked_max(mask, values):
  """Row maximum of `values` over `mask`, 0 for an empty row; a constant for
  the gradient (the shift cancels)."""
  row_max = ops.max(ops.where(mask, values, -np.inf), axis=_SUM_AXES,
                    keepdims=True)
  return ops.stop_gradient(ops.where(ops.isinf(row_max), 0., row_max))


def _log_sum_exp(mask, values):
  """log sum over `mask` of exp(values) per row, -inf for an empty row (with
  a zero gradient there, not a NaN)."""
  peak = _masked_max(mask, values)
  total = ops.sum(ops.exp(ops.where(mask, values - peak, -np.inf)),
                  axis=_SUM_AXES, keepdims=True)
  safe = ops.where(total > 0., total, 1.)
  return ops.where(total > 0., peak + ops.log(safe), -np.inf)


def _log_add_exp(a, b):
  """log(e^a + e^b), finite where one of them is -inf."""
  return ops.maximum(a, b) + ops.softplus(-ops.abs(a - b))


def _divide_no_nan(x, y):
  return ops.where(y != 0., x / ops.where(y != 0., y, 1.), 0.)


def sample_masks(labels, batch_size, positives_cap, num_views):
  """[B, B] bool masks (positives, capped; same class; self)."""
  self_samples = ops.eye(batch_size, dtype='bool')
  if labels is None:
    same_class = self_samples
  elif len(labels.shape) == 1:
    same_class = ops.equal(labels[:, None], labels[None, :])
  else:
    # One-hot or multi-hot: any shared label makes a positive.
    labels = ops.cast(labels, 'float32')
    same_class = ops.matmul(labels, ops.transpose(labels)) > 0.
  positive_samples = same_class
  if positives_cap > -1:
    # The first positives_cap // V same-class other samples, lowest first.
    others = ops.logical_and(same_class, ops.logical_not(self_samples))
    rank = ops.cumsum(ops.cast(others, 'int32'), axis=1)
    kept = ops.logical_and(others, rank <= positives_cap // num_views)
    positive_samples = ops.logical_or(kept, self_samples)
  return positive_samples, same_class, self_samples


def row_losses(logits, positive_samples, same_class, self_samples, scale,
               summation_location, denominator_mode):
  """(row losses [Va, B], positives per row [Va, B]) from logits
  [Va, B, V, B] and the sample masks: `masked.statistics`' formulas."""
  anchor_views, num_views = logits.shape[0], logits.shape[2]
  view_is_anchor_view = ops.eye(anchor_views, num_views,
                                dtype='bool')[:, None, :, None]
  is_self = ops.logical_and(view_is_anchor_view,
                            self_samples[None, :, None, :])
  positives = ops.logical_and(positive_samples[None, :, None, :],
                              ops.logical_not(is_self))
  negatives = ops.logical_not(same_class)[None, :, None, :]
  row_max = _masked_max(ops.logical_or(positives, negatives), logits)
  shifted = logits - row_max
  num_positives = ops.sum(ops.cast(positives, 'float32'), axis=_SUM_AXES,
                          keepdims=True)
  outside = summation_location == SummationLocation.OUTSIDE
  if denominator_mode == DenominatorMode.ONE_POSITIVE:
    log_d = _log_add_exp(shifted, _log_sum_exp(negatives, shifted))
    if outside:
      log_prob_sum = ops.sum(ops.where(positives, shifted - log_d, 0.),
                             axis=_SUM_AXES, keepdims=True)
      row_loss = -_divide_no_nan(log_prob_sum, num_positives)
    else:
      log_ratio_sum = _log_sum_exp(positives, shifted - log_d)
      row_loss = _log_of_count_minus(num_positives, log_ratio_sum)
  else:
    columns = (ops.logical_or(positives, negatives)
               if denominator_mode == DenominatorMode.ALL else negatives)
    log_denominator = _log_sum_exp(columns, shifted)
    if outside:
      positive_logit_sum = ops.sum(ops.where(positives, shifted, 0.),
                                   axis=_SUM_AXES, keepdims=True)
      row_loss = -_divide_no_nan(
          positive_logit_sum - num_positives * log_denominator, num_positives)
    else:
      row_loss = _log_of_count_minus(
          num_positives, _log_sum_exp(positives, shifted), log_denominator)
  squeeze = lambda x: ops.reshape(x, (anchor_views, -1))
  return squeeze(row_loss) * scale, squeeze(num_positives)


def _log_of_count_minus(num_positives, log_sum, plus=0.):
  """plus + log |P(i)| - log_sum, +inf where P(i) is empty (INSIDE's
  log 0)."""
  has_positive = num_positives > 0.
  kept = lambda x: ops.where(has_positive, x, 0.)
  return ops.where(
      has_positive,
      kept(plus) + ops.log(ops.where(has_positive, num_positives, 1.)) -
      kept(log_sum), np.inf)


def contrastive_loss(features, labels, temperature, contrast_mode,
                     summation_location, denominator_mode, positives_cap,
                     scale):
  """Per-sample loss [batch] of checked arguments (modes parsed, features
  [batch, views, ...], labels None, [batch] or [batch, num_labels])."""
  features = ops.cast(features, 'float32')
  batch_size, num_views = features.shape[0], features.shape[1]
  if batch_size is None:
    batch_size = ops.shape(features)[0]
  features = ops.reshape(features, (batch_size, num_views, -1))
  # View-major rows: row = view * batch + sample.
  contrast = ops.reshape(ops.transpose(features, (1, 0, 2)),
                         (num_views * batch_size, -1))
  if contrast_mode == ContrastMode.ONE_VIEW:
    anchor_views, anchors = 1, features[:, 0]
  else:
    anchor_views, anchors = num_views, contrast
  logits = ops.matmul(anchors / temperature, ops.transpose(contrast))
  logits = ops.reshape(logits, (anchor_views, batch_size, num_views,
                                batch_size))
  positive_samples, same_class, self_samples = sample_masks(
      labels, batch_size, positives_cap, num_views)
  row_loss, num_positives = row_losses(
      logits, positive_samples, same_class, self_samples, scale,
      summation_location, denominator_mode)
  if num_views != 1:
    return ops.mean(row_loss, axis=0)
  # One view: the official code divides the (already positive-averaged)
  # loss once more by the number of positives.
  return _divide_no_nan(row_loss[0], num_positives[0])
