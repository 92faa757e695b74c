"""The seed's AutoAugment ops (its data_augmentation/auto_augment.py), batch-wise,
and their family `SEED`.

The seed's ResNet-20 results were trained with this variant of the CIFAR-10
policy (`policies.POLICIES['seed_cifar10']`: the CIFAR-10 sub-policies on
these ops), not with the original one (`'cifar10'`): a level m picks
bin m of `np.linspace(low, high, 11)` per op and the magnitude is drawn
uniformly inside the bin, so signed ops get their sign from the level (Rotate
at level 2 turns by -18..-12 degrees, TranslateY at level 9 moves 11.6..14.5
pixels one way); Solarize thresholds run from 0 (level 0) to 256. The
geometric ops are scipy.ndimage.affine_transform in (row, column) coordinates
about the point (size / 2 + 0.5), cubic-spline interpolation (ndimage's
order 3) and a black fill, reproduced here with gathers; the pixel ops are
PIL's (`pil_ops.OPS`).
"""
import functools
import math

import tensorflow as tf

from supcon_tf.data.augment import batching, pil_ops
from supcon_tf.data.augment.engine import GEOMETRIC_OPS, Family
from supcon_tf.data.device_views.geometry import spline_prefilter
from supcon_tf.data.policy_tables import SEED_RANGES as RANGES


def level_to_magnitude(name, level, uniform):
  """Bin `level` of the op's linspace, at fraction `uniform` (0..1) inside it:
  the seed's random.uniform(magnitudes[level], magnitudes[level + 1])."""
  if name not in RANGES:
    return tf.zeros_like(tf.cast(level, tf.float64))
  low, high = RANGES[name]
  position = tf.cast(level, tf.float64) + tf.cast(uniform, tf.float64)
  return low + (high - low) * position / 10.


def ndimage_matrix(name, magnitude, size):
  """[N, 2, 2] matrices and [N, 2] offsets of the seed's op: input (row, col)
  = A (output - c) + c + t with c = size / 2 + 0.5, as its
  transform_matrix_offset_center passes them to ndimage.affine_transform."""
  m = tf.cast(magnitude, tf.float64)
  one, zero = tf.ones_like(m), tf.zeros_like(m)
  translation = tf.stack([zero, zero], axis=1)
  if name == 'ShearX':
    matrix = [[one, m], [zero, one]]
  elif name == 'ShearY':
    matrix = [[one, zero], [m, one]]
  elif name == 'Rotate':
    theta = m * (math.pi / 180.)
    matrix = [[tf.cos(theta), -tf.sin(theta)], [tf.sin(theta), tf.cos(theta)]]
  else:
    matrix = [[one, zero], [zero, one]]
    shift = m * size
    translation = tf.stack([shift, zero] if name == 'TranslateY'
                           else [zero, shift], axis=1)
  matrix = tf.stack([tf.stack(row, axis=1) for row in matrix], axis=1)
  centre = tf.fill([tf.shape(m)[0], 2], tf.cast(size, tf.float64) / 2. + 0.5)
  offset = centre + translation - tf.linalg.matvec(matrix, centre)
  return matrix, offset


def _cubic_bspline(t):
  t = tf.abs(t)
  return tf.where(t < 1., 2. / 3. - t * t + t * t * t / 2.,
                  tf.where(t < 2., (2. - t) ** 3 / 6., 0.))


def _mirror(index, size):
  index = tf.abs(index)
  return tf.where(index > size - 1, 2 * (size - 1) - index, index)


def affine(images, matrix, offset):
  """ndimage.affine_transform(image, matrix, offset, order=3, mode='constant',
  cval=0) per channel of a uint8 batch [N, H, W, C] (static H, W): spline
  coefficients from the mirror-boundary prefilter, 4 x 4 cubic B-spline taps,
  0 where the source point falls outside the image, rounded as ndimage
  rounds into uint8."""
  height, width = images.shape[1], images.shape[2]
  x = tf.cast(images, tf.float64)
  coefficients = tf.einsum('hk,nkwc->nhwc', spline_prefilter(height), x)
  coefficients = tf.einsum('wk,nhkc->nhwc', spline_prefilter(width),
                           coefficients)
  rows, cols = tf.meshgrid(tf.range(height, dtype=tf.float64),
                           tf.range(width, dtype=tf.float64), indexing='ij')
  m = tf.cast(matrix, tf.float64)[:, :, :, None, None]
  o = tf.cast(offset, tf.float64)[:, :, None, None]
  r = m[:, 0, 0] * rows + m[:, 0, 1] * cols + o[:, 0]  # [N, H, W]
  c = m[:, 1, 0] * rows + m[:, 1, 1] * cols + o[:, 1]
  r0 = tf.cast(tf.floor(r), tf.int32) - 1
  c0 = tf.cast(tf.floor(c), tf.int32) - 1
  batch = tf.broadcast_to(tf.range(tf.shape(x)[0])[:, None, None],
                          tf.shape(r0))
  out = tf.zeros_like(x)
  for a in range(4):
    ri = r0 + a
    wr = _cubic_bspline(r - tf.cast(ri, tf.float64))
    for b in range(4):
      ci = c0 + b
      weight = wr * _cubic_bspline(c - tf.cast(ci, tf.float64))
      taps = tf.gather_nd(coefficients, tf.stack(
          [batch, _mirror(ri, height), _mirror(ci, width)], axis=-1))
      out += weight[..., None] * taps
  inside = (r >= 0.) & (r <= height - 1.) & (c >= 0.) & (c <= width - 1.)
  out = tf.where(inside[..., None], out, 0.)
  return tf.cast(tf.clip_by_value(tf.floor(out + 0.5), 0., 255.), tf.uint8)


def apply_op(name, images, magnitude):
  """The seed's op `name` at per-image `magnitude` on a uint8 batch."""
  if name in GEOMETRIC_OPS:
    size = tf.cast(tf.shape(images)[1], tf.float64)
    return affine(images, *ndimage_matrix(name, magnitude, size))
  if name == 'Posterize':
    magnitude = tf.round(magnitude)
  if name == 'Solarize':
    # PIL inverts values i >= threshold; for a fractional threshold that is
    # i >= ceil(threshold).
    magnitude = tf.math.ceil(magnitude)
  return pil_ops.OPS[name](images, magnitude)


def bin_position(shape, seed):
  """The seed's per-op draw: where in its level's bin the magnitude falls."""
  return batching.uniform(shape, seed, dtype=tf.float64)


# The family: no random sign (the level's bin sets it).
SEED = Family(
    ops={name: functools.partial(apply_op, name) for name in pil_ops.OPS},
    level_to_arg=level_to_magnitude, draw=bin_position)
