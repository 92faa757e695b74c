"""The geometric ops and the crop: the seed's (scipy's cubic-spline
affine_transform), PIL's (16.16 fixed-point nearest), TF-Models'
(nearest, reflect fill), and pad-crop-flip."""
import math

import keras
import numpy as np

from supcon_tf.data.device_views.common import (
    gather_pixels, on_floats, seed_generator)

ops = keras.ops


# The seed's geometric ops: scipy.ndimage.affine_transform, order 3.

def spline_prefilter(size):
  """[size, size] inverse of the cubic B-spline sampling matrix with mirror
  boundaries: the coefficients ndimage's spline_filter gives."""
  sampling = np.zeros((size, size))
  for k in range(size):
    for j, weight in ((k - 1, 1 / 6), (k, 4 / 6), (k + 1, 1 / 6)):
      j = -j if j < 0 else (2 * (size - 1) - j if j > size - 1 else j)
      sampling[k, j] += weight
  return np.linalg.inv(sampling)


def _cubic_bspline(t):
  t = ops.abs(t)
  return ops.where(t < 1., 2. / 3. - t * t + t * t * t / 2.,
                   ops.where(t < 2., (2. - t) ** 3 / 6., 0.))


def _mirror(index, size):
  """Mirror boundaries, then clamped: far taps fall outside the image, where
  the result is 0 anyway, and a gather must stay in range."""
  index = ops.abs(index)
  index = ops.where(index > size - 1, 2 * (size - 1) - index, index)
  return ops.clip(index, 0, size - 1)


def seed_matrix(name, magnitude, size):
  """The seed's op as ndimage takes it: input (row, col) = A (output - c) +
  c + t, c = size / 2 + 0.5. Returns (a00, a01, a10, a11, offset_row,
  offset_col), each [N]."""
  m = ops.cast(magnitude, 'float32')
  one, zero = ops.ones_like(m), ops.zeros_like(m)
  shift = (zero, zero)
  if name == 'ShearX':
    a = (one, m, zero, one)
  elif name == 'ShearY':
    a = (one, zero, m, one)
  elif name == 'Rotate':
    theta = m * (math.pi / 180.)
    a = (ops.cos(theta), -ops.sin(theta), ops.sin(theta), ops.cos(theta))
  else:
    a = (one, zero, zero, one)
    shift = (m * size, zero) if name == 'TranslateY' else (zero, m * size)
  centre = size / 2. + 0.5
  offset_row = centre + shift[0] - (a[0] + a[1]) * centre
  offset_col = centre + shift[1] - (a[2] + a[3]) * centre
  return a + (offset_row, offset_col)


@on_floats
def seed_affine(images, matrix):
  """ndimage.affine_transform(image, A, offset, order=3, mode='constant',
  cval=0) per channel: spline coefficients from the mirror-boundary
  prefilter, 4 x 4 cubic B-spline taps, 0 where the source point falls
  outside the image, rounded to whole levels. `matrix`: `seed_matrix`'s six
  [N] values."""
  height, width = images.shape[1], images.shape[2]
  coefficients = ops.einsum('hk,nkwc->nhwc', spline_prefilter(height).astype(
      'float32'), images)
  coefficients = ops.einsum('wk,nhkc->nhwc', spline_prefilter(width).astype(
      'float32'), coefficients)
  rows, cols = (ops.convert_to_tensor(grid) for grid in np.meshgrid(
      np.arange(height, dtype='float32'), np.arange(width, dtype='float32'),
      indexing='ij'))
  a00, a01, a10, a11, o0, o1 = (ops.reshape(v, (-1, 1, 1)) for v in matrix)
  r = a00 * rows + a01 * cols + o0  # [N, H, W]
  c = a10 * rows + a11 * cols + o1
  r0 = ops.cast(ops.floor(r), 'int32') - 1
  c0 = ops.cast(ops.floor(c), 'int32') - 1
  out = ops.zeros_like(images)
  for i in range(4):
    ri = r0 + i
    row_weight = _cubic_bspline(r - ops.cast(ri, 'float32'))
    for j in range(4):
      ci = c0 + j
      weight = row_weight * _cubic_bspline(c - ops.cast(ci, 'float32'))
      taps = gather_pixels(coefficients, _mirror(ri, height) * width +
                            _mirror(ci, width))
      out = out + weight[..., None] * taps
  inside = (r >= 0.) & (r <= height - 1.) & (c >= 0.) & (c <= width - 1.)
  out = ops.where(inside[..., None], out, 0.)
  return ops.clip(ops.floor(out + 0.5), 0., 255.)


def tf_models_transform(name, argument, height, width):
  """TF-Models' geometric op as a projective transform's eight [N] entries
  (output (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2))."""
  m = ops.cast(argument, 'float32')
  one, zero = ops.ones_like(m), ops.zeros_like(m)
  if name == 'Rotate':
    radians = m * (3.141592653589793 / 180.)
    cos, sin = ops.cos(radians), ops.sin(radians)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.
    return (cos, -sin, x_offset, sin, cos, y_offset, zero, zero)
  entries = {'ShearX': (one, m, zero, zero, one, zero),
             'ShearY': (one, zero, zero, m, one, zero),
             'TranslateX': (one, zero, m, zero, one, zero),
             'TranslateY': (one, zero, zero, zero, one, m)}[name]
  return entries + (zero, zero)


@on_floats
def tf_models_resample(images, transform):
  """Nearest sampling with the reflect fill (TF-Models' geometric ops)."""
  return ops.image.affine_transform(
      images, ops.stack(transform, axis=1), interpolation='nearest',
      fill_mode='reflect')


# PIL's geometric ops (as `augment.pil_ops`): nearest, grey fill.

FILL_VALUE = 128.  # PIL AutoAugment's grey (`augment.FILL_VALUE`).


def pil_matrix(name, magnitude, height, width):
  """PIL's (a, b, c, d, e, f), each [N]: output (x, y) reads input
  (a x + b y + c, d x + e y + f) at pixel centres."""
  m = ops.cast(magnitude, 'float32')
  one, zero = ops.ones_like(m), ops.zeros_like(m)
  if name == 'Rotate':
    # As PIL: angle = -radians(degrees % 360), the matrix rounded to 15
    # decimals (float32 here), about the centre.
    angle = -ops.mod(m, 360.) * (math.pi / 180.)
    cos, sin = ops.cos(angle), ops.sin(angle)
    cx, cy = width / 2., height / 2.
    return (cos, sin, cos * -cx + sin * -cy + cx,
            -sin, cos, -sin * -cx + cos * -cy + cy)
  return {'ShearX': (one, m, zero, zero, one, zero),
          'ShearY': (one, zero, zero, m, one, zero),
          'TranslateX': (one, zero, m, zero, one, zero),
          'TranslateY': (one, zero, zero, zero, one, m)}[name]


@on_floats
def pil_resample(images, matrix):
  """Image.transform(AFFINE, matrix, NEAREST, fillcolor=grey): PIL's 16.16
  fixed-point coefficients, the source pixel the floor of the centre's
  image, in int32 arithmetic (exact on every backend)."""
  height, width = images.shape[1], images.shape[2]
  fixed = lambda v: ops.cast(ops.round(v * 65536.), 'int32')
  a, b, c, d, e, f = matrix
  x = ops.arange(width, dtype='int32')[None, None, :]
  y = ops.arange(height, dtype='int32')[None, :, None]
  column = lambda v: ops.reshape(v, (-1, 1, 1))
  source_x = (column(fixed(a)) * x + column(fixed(b)) * y +
              column(fixed(c + 0.5 * a + 0.5 * b))) // 65536
  source_y = (column(fixed(d)) * x + column(fixed(e)) * y +
              column(fixed(f + 0.5 * d + 0.5 * e))) // 65536
  inside = ((source_x >= 0) & (source_x < width) & (source_y >= 0) &
            (source_y < height))
  index = (ops.clip(source_y, 0, height - 1) * width +
           ops.clip(source_x, 0, width - 1))
  return ops.where(inside[..., None], gather_pixels(images, index),
                   FILL_VALUE)


def pad_crop_flip_draws(batch, seed, padding=4, flip=True):
  """The random choices of `pad_crop_flip`: offsets [N, 2] (x, y), uniform
  integers in [-padding, padding], and mirror [N] (probability 1/2)."""
  seed = seed_generator(seed)
  offsets = keras.random.randint((batch, 2), -padding, padding + 1,
                                 seed=seed, dtype='int32')
  mirror = keras.random.uniform((batch,), seed=seed) < 0.5
  if not flip:
    mirror = ops.zeros_like(mirror)
  return {'offsets': offsets, 'mirror': mirror}


@on_floats
def pad_crop_flip(images, offsets, mirror, padding=4):
  """torchvision's RandomCrop(size, padding) then RandomHorizontalFlip
  (`augment.pad_crop_flip`): output pixel (y, x) is the zero-padded input's
  (y + dy, x' + dx), x' = W - 1 - x where `mirror`."""
  height, width = images.shape[1], images.shape[2]
  padded = ops.pad(images, ((0, 0), (padding, padding), (padding, padding),
                            (0, 0)))
  offsets = ops.cast(offsets, 'int32')
  columns = ops.arange(width, dtype='int32')[None]
  columns = ops.where(ops.reshape(mirror, (-1, 1)), width - 1 - columns,
                      columns) + offsets[:, 0:1] + padding
  rows = (ops.arange(height, dtype='int32')[None] + offsets[:, 1:2] +
          padding)
  index = rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]
  return gather_pixels(padded, index)
