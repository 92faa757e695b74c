"""The contrastive loss's argument checks, shared by every backend's path:
each bad argument gets a ValueError that names it. Shapes come as tuples
(None where unknown), so no backend is imported here."""
import numbers

import numpy as np

from supcon_tf.losses.modes import (ContrastMode, DenominatorMode,
                                    SummationLocation)

# 'fused': the hand-written TensorFlow kernels over the whole [Na, Nc]
# matrix; 'blockwise': the same formulas over blocks of anchors, memory
# O(N x block); 'auto': fused up to AUTO_BLOCKWISE_ENTRIES logits, blockwise
# above; 'reference': the official formula with tiled masks and autodiff.
# Under JAX and PyTorch every name runs the keras.ops formula (`keras_ops.py`).
IMPLEMENTATIONS = ('auto', 'fused', 'blockwise', 'reference')


def check_temperature(value, name='temperature'):
  """`value`: a Python or NumPy number, or None where only known when the
  step runs (then nothing is checked)."""
  if value is None:
    return
  value = np.asarray(value)
  if value.shape != ():
    raise ValueError(f'{name} must be a scalar, got shape {value.shape}.')
  if not np.isfinite(value) or value <= 0:
    raise ValueError(f'{name} must be a positive finite number, got {value}.')


def check_implementation(implementation):
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'implementation must be one of '
                     f'{", ".join(IMPLEMENTATIONS)}; got {implementation!r}.')


def parse_options(contrast_mode, summation_location, denominator_mode,
                  implementation, block_size):
  """The modes as enums, after checking the implementation and block."""
  check_implementation(implementation)
  if block_size is not None and (not isinstance(block_size, numbers.Integral)
                                 or block_size < 1):
    raise ValueError(
        f'block_size must be a positive integer or None, got {block_size!r}.')
  return (ContrastMode.parse(contrast_mode, 'contrast_mode'),
          SummationLocation.parse(summation_location, 'summation_location'),
          DenominatorMode.parse(denominator_mode, 'denominator_mode'))


def check_inputs(features_shape, labels_shape, labels_dtype, positives_cap):
  """Checks features [batch, views, ...] and labels ([batch] integer ids or
  [batch, num_labels]) by their shapes and the labels' dtype name; returns
  the number of views."""
  if features_shape is None or len(features_shape) < 3:
    raise ValueError(
        f'features must have rank >= 3 ([batch, views, ...features]), got '
        f'shape {features_shape}.')
  num_views = features_shape[1]
  if num_views is None:
    raise ValueError('features must have a static number of views (dimension '
                     f'1), got shape {features_shape}.')
  if not isinstance(positives_cap, numbers.Integral):
    raise ValueError(f'positives_cap must be an integer, got {positives_cap!r}.')
  if positives_cap > -1 and positives_cap % num_views != 0:
    raise ValueError(
        f'positives_cap (= {positives_cap}) must be a multiple of the number '
        f'of views (= {num_views}).')
  if labels_shape is None:
    return num_views
  if len(labels_shape) not in (1, 2):
    raise ValueError(
        'labels must be integer class ids [batch] or one-hot / multi-hot '
        f'[batch, num_labels], got shape {labels_shape}.')
  if (labels_shape[0] is not None and features_shape[0] is not None and
      labels_shape[0] != features_shape[0]):
    raise ValueError(
        f'labels batch ({labels_shape[0]}) differs from features batch '
        f'({features_shape[0]}): labels {labels_shape}, features '
        f'{features_shape}.')
  if len(labels_shape) == 1 and labels_dtype.startswith(
      ('float', 'bfloat', 'half', 'double', 'complex')):
    raise ValueError(
        f'labels of rank 1 must be integer class ids, got dtype '
        f'{labels_dtype}; pass one-hot labels as [batch, num_labels].')
  return num_views
