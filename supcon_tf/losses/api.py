r"""Contrastive losses over features from several views: SupCon and SimCLR.

Semantics are those of the official implementation (Khosla et al., 2020,
google-research `supcon/losses.py`); the computation is not. The official code
tiles [V*B, V*B] float masks and lets autodiff keep every intermediate. Here,
under any Keras backend, the masks are never tiled (a [B, B] class mask is broadcast against the logits viewed
as [anchor views, B, V, B]). Under JAX and PyTorch the formulas are `keras.ops`
and the backend differentiates them (`keras_ops.py`). Under TensorFlow
(`tf_loss.py`) the elementwise work is compiled with XLA and the gradient is
written out by hand (`tf.custom_gradient`):
- OUTSIDE with the ALL or ONLY_NEGATIVES denominator and no positives_cap (the
  official SupCon and SimCLR settings) takes a linear path: one pass of exp over
  the logits, one anchor view at a time, and a backward pass made of two matrix
  products with the kept exponentials (`linear.py`).
- Every other option set takes the masked path, which keeps the logits and
  forms the [Na, Nc] gradient once (`masked.py`), its sums in logs.
- Above a size (or with implementation='blockwise') the same formulas run over
  blocks of anchors, keeping a few numbers per row and computing each block's
  logits again in the backward pass: memory O(N x block) (`blockwise.py`).
`benchmarks/loss.py` measures them against a tiled implementation.

Notation. Features z [B, V, ...] are flattened per view and laid out view-major
(row = view * B + sample). Anchors i are all V*B rows (ALL_VIEWS) or the first
view's B rows (ONE_VIEW); the contrast set k is every row of the (global) batch.

    l_ik = z_i . z_k / tau - m_i

The shift m_i cancels in the loss and only keeps exponentials in range. The
official code takes the max over the whole row, the anchor's own column
included; here it is the max over the columns that take part in the row (all
but the anchor itself without a cap), so that the ALL denominator is >= 1 and a
large self-similarity cannot underflow it.

    P(i) = same-class rows k != i      (other views of the anchor's sample included)
    N(i) = rows of a different class

With positives_cap >= 0 (a multiple of V), only the first positives_cap // V
same-class other samples of each anchor (lowest index first) stay positives,
with all their views; dropped same-class samples are in neither P(i) nor N(i).

Denominator for anchor i and positive p:
    ALL:            D_ip = sum_{k in P(i) u N(i)} e^{l_ik}
    ONE_POSITIVE:   D_ip = e^{l_ip} + sum_{k in N(i)} e^{l_ik}
    ONLY_NEGATIVES: D_ip = sum_{k in N(i)} e^{l_ik}

Summation location (Eq. 2 and Eq. 3 of the paper), with s = tau when
scale_by_temperature (tau / base_temperature when base_temperature is given),
else 1:
    OUTSIDE: L_i = -s / |P(i)| * sum_{p in P(i)} (l_ip - log D_ip)
    INSIDE:  L_i = -s * log(1 / |P(i)| * sum_{p in P(i)} e^{l_ip} / D_ip)

1/|P(i)| is a divide-no-nan (zero when there is no positive, which only happens
with one view). The per-sample loss is the mean of L_i over the sample's anchor
views; with a single view it is additionally divided by |P(i)| (divide-no-nan),
as in the official code.

Under TensorFlow, inside a `tf.distribute` replica context with more than one
replica, features and labels are all-gathered (differentiably): the local samples are the anchors
and the global batch is the contrast set. Summing the per-replica losses gives
the single-device loss of the whole batch, and the same gradients.
"""
import numbers

import keras
import numpy as np

from supcon_tf.losses import checks, keras_ops
from supcon_tf.losses.modes import (ContrastMode, DenominatorMode,
                                    SummationLocation)

ops = keras.ops
_BACKEND = keras.backend.backend()
if _BACKEND == 'tensorflow':
  from supcon_tf.losses import tf_loss


def contrastive_loss(features,
                     labels=None,
                     temperature=1.0,
                     contrast_mode=ContrastMode.ALL_VIEWS,
                     summation_location=SummationLocation.OUTSIDE,
                     denominator_mode=DenominatorMode.ALL,
                     positives_cap=-1,
                     scale_by_temperature=True,
                     base_temperature=None,
                     implementation='auto',
                     block_size=None,
                     memory=None,
                     memory_active=True):
  """Per-sample supervised contrastive (SupCon) or SimCLR loss.

  See the module docstring for the equations.

  Args:
    features: [batch, views, ...] features (any float dtype; computed in
      float32). Extra dimensions are flattened. The batch may be dynamic; the
      number of views must be static. Normalise them (L2) for a bounded loss.
    labels: None (SimCLR: only other views of a sample are positives), integer
      class ids [batch], or one-hot / multi-hot [batch, num_labels] (samples
      sharing any label are positives).
    temperature: tau > 0, a Python number or scalar tensor (not trained).
    contrast_mode: `ContrastMode` or its name: ALL_VIEWS or ONE_VIEW anchors.
    summation_location: `SummationLocation` or its name: OUTSIDE (Eq. 2) or
      INSIDE (Eq. 3) the log.
    denominator_mode: `DenominatorMode` or its name: ALL, ONE_POSITIVE or
      ONLY_NEGATIVES.
    positives_cap: keep at most this many positives other than the anchor's
      own views (a multiple of views; negative means no cap).
    scale_by_temperature: multiply the loss by tau (the official default),
      which undoes the 1/tau in the gradient.
    base_temperature: if given (with scale_by_temperature), scale by
      tau / base_temperature instead of tau: the PyTorch author's loss (0.07).
    implementation: under TensorFlow, 'auto' (the default: 'fused' up to
      AUTO_BLOCKWISE_ENTRIES logits, 'blockwise' above), 'fused' (the
      hand-written kernels over the whole [anchors, contrast] matrix),
      'blockwise' (the same formulas over blocks of anchors: memory
      O(N x block), no [N, N] matrix alive) or 'reference' (the official
      formula with autodiff, `reference.py`, for cross-checks). Under JAX
      and PyTorch every name runs the `keras.ops` formula (a `.keras` file
      from TensorFlow loads as it is).
    block_size: samples per anchor block for 'blockwise' (every anchor view
      of them at once); None takes BLOCK_ENTRIES logits per block.
    memory: None, or (features [M, views, ...], labels [M] or None) of
      samples that join the contrast set after the (gathered) batch but are
      never anchors and take no gradient: a cross-batch memory of earlier
      batches. Their labels (the batch's kind) make them positives or
      negatives; without batch labels (SimCLR) they are negatives.
    memory_active: whether the memory joins: True, or a boolean tensor
      (a memory not yet filled stays out; the loss is then computed both
      ways). TensorFlow only.

  Returns:
    float32 [batch]: each sample's loss, the mean over its anchor views.

  Raises:
    ValueError: naming the argument, for a features rank below 3 or unknown
      number of views, labels of the wrong rank or batch, an unknown mode name,
      a positives_cap that is not a multiple of the number of views, a
      non-positive temperature, an unknown implementation or a block_size
      below 1.
  """
  if _BACKEND == 'tensorflow':
    return tf_loss.contrastive_loss(
        features, labels, temperature, contrast_mode, summation_location,
        denominator_mode, positives_cap, scale_by_temperature,
        base_temperature, implementation, block_size, memory, memory_active)
  contrast_mode, summation_location, denominator_mode = checks.parse_options(
      contrast_mode, summation_location, denominator_mode, implementation,
      block_size)
  if memory is not None:
    raise ValueError('memory (a cross-batch memory) runs under the TensorFlow '
                     f'backend only; this is {_BACKEND}.')
  features = ops.convert_to_tensor(features)
  if labels is not None:
    labels = ops.convert_to_tensor(labels)
  checks.check_inputs(
      tuple(features.shape), None if labels is None else tuple(labels.shape),
      None if labels is None else keras.backend.standardize_dtype(
          labels.dtype), positives_cap)
  checks.check_temperature(_static(temperature))
  if base_temperature is not None:
    checks.check_temperature(_static(base_temperature), 'base_temperature')
  if not scale_by_temperature:
    scale = 1.
  elif base_temperature is None:
    scale = temperature
  else:
    scale = temperature / base_temperature
  return keras_ops.contrastive_loss(
      features, labels, temperature, contrast_mode, summation_location,
      denominator_mode, positives_cap, scale)


def _static(value):
  """A Python or NumPy number as it is; None for a backend tensor (known
  only when the step runs)."""
  if isinstance(value, (numbers.Number, np.ndarray, np.generic)):
    return value
  return None


def class_ids(labels):
  """Integer class ids [batch] from ids [batch] or [batch, 1], which Keras
  often hands over cast to the loss dtype (float); one-hot or multi-hot
  labels [batch, classes] pass as they are."""
  labels = ops.convert_to_tensor(labels)
  if len(labels.shape) == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if len(labels.shape) == 1 and 'int' not in keras.backend.standardize_dtype(
      labels.dtype):
    labels = ops.cast(labels, 'int32')
  return labels


@keras.saving.register_keras_serializable(package='supcon_tf')
class ContrastiveLoss(keras.losses.Loss):
  """`contrastive_loss` as a serialisable Keras loss.

  y_true: labels as `contrastive_loss` takes them (integer ids [batch] or
  [batch, 1], one-hot [batch, num_labels]); y_pred: features [batch, views,
  ...], or [batch, features] as one view each (a metric-learning model's
  embeddings). Set `use_labels=False` for SimCLR (y_true is ignored).
  """

  def __init__(self,
               temperature=1.0,
               contrast_mode='all_views',
               summation_location='outside',
               denominator_mode='all',
               positives_cap=-1,
               scale_by_temperature=True,
               base_temperature=None,
               use_labels=True,
               implementation='auto',
               block_size=None,
               reduction='sum_over_batch_size',
               name='contrastive_loss',
               dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    # Parse now so that a wrong name fails at construction, not in fit().
    self.contrast_mode = ContrastMode.parse(contrast_mode, 'contrast_mode')
    self.summation_location = SummationLocation.parse(summation_location,
                                                      'summation_location')
    self.denominator_mode = DenominatorMode.parse(denominator_mode,
                                                  'denominator_mode')
    checks.check_temperature(temperature)
    self.temperature = float(temperature)
    self.positives_cap = int(positives_cap)
    self.scale_by_temperature = bool(scale_by_temperature)
    self.base_temperature = (None if base_temperature is None else
                             float(base_temperature))
    self.use_labels = bool(use_labels)
    checks.check_implementation(implementation)
    self.implementation = implementation
    self.block_size = None if block_size is None else int(block_size)

  def options(self):
    """The options this loss passes to `contrastive_loss` (modes by their
    values)."""
    return dict(temperature=self.temperature,
                contrast_mode=self.contrast_mode.value,
                summation_location=self.summation_location.value,
                denominator_mode=self.denominator_mode.value,
                positives_cap=self.positives_cap,
                scale_by_temperature=self.scale_by_temperature,
                base_temperature=self.base_temperature,
                implementation=self.implementation,
                block_size=self.block_size)

  def call(self, y_true, y_pred):
    labels = class_ids(y_true) if self.use_labels else None
    if len(y_pred.shape) == 2:
      y_pred = ops.expand_dims(y_pred, 1)
    return contrastive_loss(y_pred, labels=labels, **self.options())

  def get_config(self):
    config = super().get_config()
    config.update(use_labels=self.use_labels, **self.options())
    return config
