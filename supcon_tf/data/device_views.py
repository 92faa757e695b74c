"""The training views on the device: the project's augmentation in `keras.ops`
(every Keras backend), applied in the training step to uint8 batches, so
the host only decodes (and crops and resizes) images.

    views = DeviceViews(crop='pad', policy='seed_cifar10', mean=..., std=...)
    model = SupConModel(encoder, num_classes=10, augmentation=views)

Each op computes what the tf.data op of the same name computes
(`supcon_tf.data.augment`, itself tested against PIL and TF-Models) on the
same images and draws, to within one grey level: some tf.data ops compute
in float64, these in float32, which JAX and accelerators prefer. Images
travel as float32 holding whole grey levels 0..255, so the uint8 semantics
(truncating casts, bit shifts) are exact arithmetic on floats.

Draws are explicit: `pad_crop_flip_draws` and `autoaugment_draws` make
them with `keras.random` (the layer's `SeedGenerator`), and
`pad_crop_flip` and `autoaugment` apply given draws, so tests can hand both
sides the same ones. Every op runs on the whole batch and each image keeps
the result of the op it drew (a select): static shapes, as XLA wants, at
the cost of computing every op of a step for every image; the geometric ops
of a step share one resampling.
"""
import functools
import math
import typing

import keras
import numpy as np

from supcon_tf.data import policy_tables
from supcon_tf.data.policy_tables import GEOMETRIC_OPS, SEED_RANGES

ops = keras.ops

def _on_floats(op):
  """op(images, ...) on float32 images given as any array (NumPy too)."""
  def on_floats(images, *args, **kwargs):
    return op(ops.cast(images, 'float32'), *args, **kwargs)
  on_floats.__name__, on_floats.__doc__ = op.__name__, op.__doc__
  return on_floats


def _column(value):
  """[N] -> [N, 1, 1, 1] float32, one value per image."""
  return ops.reshape(ops.cast(value, 'float32'), (-1, 1, 1, 1))


def _truncate(x):
  """The cast of a float image to uint8: clipped, then truncated."""
  return ops.clip(ops.floor(x), 0., 255.)


def _select(condition, x, y):
  """x where `condition` [N] (per image), else y."""
  return ops.where(ops.reshape(condition, (-1, 1, 1, 1)), x, y)


def _gather_pixels(images, index):
  """images [N, H, W, C], index int32 [N, h, w] into H * W -> [N, h, w, C]."""
  height, width, channels = images.shape[1:]
  rows, columns = index.shape[1], index.shape[2]
  flat = ops.reshape(images, (-1, height * width, channels))
  index = ops.reshape(index, (-1, rows * columns, 1))
  taps = ops.take_along_axis(flat, ops.broadcast_to(
      index, (ops.shape(index)[0], rows * columns, channels)), axis=1)
  return ops.reshape(taps, (-1, rows, columns, channels))


# The pixel ops with PIL's semantics (as `augment.pil_ops`), float32 levels.

def _pil_gray(images):
  """PIL's convert('L'): (R*19595 + G*38470 + B*7471 + 2^15) >> 16, exact in
  float32 (every partial sum is an integer below 2^24)."""
  weighted = (images[..., 0:1] * 19595. + images[..., 1:2] * 38470. +
              images[..., 2:3] * 7471. + 32768.)
  return ops.floor(weighted / 65536.)


def _blend(degenerate, images, factor):
  """Image.blend(degenerate, image, factor): float32, clipped, truncated."""
  return _truncate(degenerate + _column(factor) * (images - degenerate))


@_on_floats
def invert(images, _=None):
  return 255. - images


@_on_floats
def posterize(images, bits):
  """Keep the `bits` high bits of every channel."""
  step = ops.power(2., 8. - _column(bits))
  return ops.floor(images / step) * step


@_on_floats
def solarize(images, threshold):
  """Invert every value >= threshold."""
  return ops.where(images < _column(threshold), images, 255. - images)


@_on_floats
def autocontrast(images, _=None):
  """Stretch each channel's [min, max] to [0, 255]."""
  low = ops.min(images, axis=(1, 2), keepdims=True)
  high = ops.max(images, axis=(1, 2), keepdims=True)
  scale = 255. / ops.maximum(high - low, 1.)
  stretched = ops.clip(ops.floor(images * scale + (-low * scale)), 0., 255.)
  return ops.where(high > low, stretched, images)


@_on_floats
def equalize(images, _=None):
  """PIL's per-channel histogram equalisation (its lookup table)."""
  n, height, width, channels = images.shape
  rows = ops.shape(images)[0] * channels
  values = ops.reshape(ops.transpose(ops.cast(images, 'int32'), (0, 3, 1, 2)),
                       (-1, height * width))
  offsets = ops.arange(rows, dtype='int32')[:, None] * 256
  histogram = ops.reshape(ops.segment_sum(
      ops.ones_like(ops.reshape(values, (-1,))),
      ops.reshape(values + offsets, (-1,)), num_segments=rows * 256),
      (-1, 256))
  levels = ops.arange(256, dtype='int32')[None]
  last = ops.max(ops.where(histogram > 0, levels, -1), axis=1, keepdims=True)
  step = (ops.sum(histogram, axis=1, keepdims=True) -
          ops.take_along_axis(histogram, last, axis=1)) // 255
  safe = ops.maximum(step, 1)
  lut = (safe // 2 + ops.cumsum(histogram, axis=1) - histogram) // safe
  lut = ops.where(step > 0, ops.minimum(lut, 255), levels)
  out = ops.take_along_axis(lut, values, axis=1)
  out = ops.transpose(ops.reshape(out, (-1, channels, height, width)),
                      (0, 2, 3, 1))
  return ops.cast(out, 'float32')


@_on_floats
def brightness(images, factor):
  return _blend(ops.zeros_like(images), images, factor)


@_on_floats
def color(images, factor):
  return _blend(_pil_gray(images), images, factor)


@_on_floats
def contrast(images, factor):
  """Blend with the rounded mean grey."""
  mean = ops.floor(ops.mean(_pil_gray(images), axis=(1, 2, 3),
                            keepdims=True) + 0.5)
  return _blend(mean, images, factor)


@_on_floats
def sharpness(images, factor):
  """Blend with SMOOTH ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded),
  the one-pixel border left as it is."""
  height, width = images.shape[1], images.shape[2]
  padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  total = 4. * images
  for dy in range(3):
    for dx in range(3):
      total = total + padded[:, dy:dy + height, dx:dx + width]
  smooth = ops.clip(ops.round(total / 13.), 0., 255.)
  interior = np.zeros((1, height, width, 1), bool)
  interior[:, 1:-1, 1:-1] = True
  return _blend(ops.where(ops.convert_to_tensor(interior), smooth, images),
                images, factor)


PIXEL_OPS = {
    'AutoContrast': autocontrast, 'Equalize': equalize, 'Invert': invert,
    'Posterize': posterize, 'Solarize': solarize, 'Color': color,
    'Contrast': contrast, 'Brightness': brightness, 'Sharpness': sharpness,
}


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


@_on_floats
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
      taps = _gather_pixels(coefficients, _mirror(ri, height) * width +
                            _mirror(ci, width))
      out = out + weight[..., None] * taps
  inside = (r >= 0.) & (r <= height - 1.) & (c >= 0.) & (c <= width - 1.)
  out = ops.where(inside[..., None], out, 0.)
  return ops.clip(ops.floor(out + 0.5), 0., 255.)


def seed_magnitude(name, level, position):
  """The seed's magnitude: bin `level` of the op's np.linspace(low, high,
  11), at `position` (0..1) inside it; 0 for the ops without one."""
  if name not in SEED_RANGES:
    return ops.zeros_like(ops.cast(level, 'float32'))
  low, high = SEED_RANGES[name]
  return low + (high - low) * (ops.cast(level, 'float32') +
                               ops.cast(position, 'float32')) / 10.


def _seed_pixel_op(name, images, magnitude):
  if name == 'Posterize':
    magnitude = ops.round(magnitude)
  if name == 'Solarize':
    # PIL inverts i >= threshold: for a fractional threshold, i >= ceil.
    magnitude = ops.ceil(magnitude)
  return PIXEL_OPS[name](images, magnitude)


# TF-Models' ops (as `augment.tf_models_ops`, the official AutoAugment v0).

def _tf_gray(images):
  """tf.image.rgb_to_grayscale of uint8 images: the weighted sum of x / 255,
  back to uint8 as convert_image_dtype does (x 255.5, truncated)."""
  weighted = (images[..., 0:1] / 255. * 0.2989 + images[..., 1:2] / 255. *
              0.587 + images[..., 2:3] / 255. * 0.114)
  return ops.floor(weighted * 255.5)


@_on_floats
def tf_posterize(images, bits):
  """TF's uint8 shift by 8 - bits, which it clamps to 7 (0 bits keeps 1)."""
  step = ops.power(2., ops.minimum(8. - _column(bits), 7.))
  return ops.floor(images / step) * step


@_on_floats
def tf_solarize(images, threshold):
  """The threshold as uint8: 256 wraps to 0 and inverts every pixel."""
  threshold = ops.mod(ops.cast(threshold, 'float32'), 256.)
  return ops.where(images < _column(threshold), images, 255. - images)


@_on_floats
def solarize_add(images, addition, threshold=128.):
  added = ops.clip(images + ops.floor(_column(addition)), 0., 255.)
  return ops.where(images < threshold, added, images)


@_on_floats
def tf_color(images, factor):
  return _blend(_tf_gray(images), images, factor)


@_on_floats
def tf_contrast(images, factor):
  """TF-Models blends with its histogram's sum over 256: the pixel count."""
  degenerate = min(math.floor(images.shape[1] * images.shape[2] / 256.), 255)
  return _blend(ops.full_like(images, float(degenerate)), images, factor)


@_on_floats
def tf_sharpness(images, factor):
  """Blend with the 3 x 3 SMOOTH kernel's VALID convolution, truncated (not
  rounded), the border left as it is."""
  height, width = images.shape[1], images.shape[2]
  total = 4. * images[:, 1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total = total + images[:, dy:dy + height - 2, dx:dx + width - 2]
  smooth = ops.pad(_truncate(total / 13.), ((0, 0), (1, 1), (1, 1), (0, 0)))
  interior = np.zeros((1, height, width, 1), bool)
  interior[:, 1:-1, 1:-1] = True
  return _blend(ops.where(ops.convert_to_tensor(interior), smooth, images),
                images, factor)


@_on_floats
def tf_autocontrast(images, _=None):
  """Its lookup table: level * scale + (-low * scale), truncated."""
  low = ops.min(images, axis=(1, 2), keepdims=True)
  high = ops.max(images, axis=(1, 2), keepdims=True)
  scale = 255. / ops.maximum(high - low, 1.)
  stretched = _truncate(images * scale + (-low * scale))
  return ops.where(high > low, stretched, images)


TF_MODELS_PIXEL_OPS = dict(
    PIXEL_OPS, Posterize=tf_posterize, Solarize=tf_solarize,
    SolarizeAdd=solarize_add, Color=tf_color, Contrast=tf_contrast,
    Sharpness=tf_sharpness, AutoContrast=tf_autocontrast)


def tf_models_argument(name, level, negate):
  """TF-Models' level (0..10) -> argument (AutoAugment: translate_const
  250), the geometric ones negated where `negate`."""
  level = ops.cast(level, 'float32')
  integer = lambda scale: ops.floor(level / 10. * scale)
  argument = {
      'Rotate': level / 10. * 30., 'ShearX': level / 10. * 0.3,
      'ShearY': level / 10. * 0.3, 'TranslateX': level / 10. * 250.,
      'TranslateY': level / 10. * 250., 'Posterize': integer(4.),
      'Solarize': integer(256.), 'SolarizeAdd': integer(110.)}.get(name)
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    argument = level / 10. * 1.8 + 0.1
  if argument is None:
    return ops.zeros_like(level)
  if name in GEOMETRIC_OPS:
    argument = ops.where(negate, -argument, argument)
  return argument


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


@_on_floats
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


@_on_floats
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
  return ops.where(inside[..., None], _gather_pixels(images, index),
                   FILL_VALUE)


def pil_argument(name, level, negate, posterize_bits_fix=False):
  """The original AutoAugment's level (0..10) in PIL units
  (`pil_ops.level_to_magnitude`), geometric ones negated where `negate`."""
  level = ops.cast(level, 'float32')
  if name == 'Rotate':
    argument = ops.floor(level * 30. / 10.)
  elif name in ('ShearX', 'ShearY'):
    argument = level * 0.3 / 10.
  elif name in ('TranslateX', 'TranslateY'):
    argument = ops.floor(level * 10. / 10.)
  elif name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 / 10. + 0.1
  elif name == 'Posterize':
    if posterize_bits_fix:
      return 8. - ops.round(level * 4. / 10.)
    return 4. - ops.floor(level * 4. / 10.)
  elif name == 'Solarize':
    return 256. - ops.floor(level * 256. / 10.)
  else:
    return ops.zeros_like(level)
  return ops.where(negate, -argument, argument)


# Draws and the views.

def _seed(seed):
  return seed if isinstance(seed, keras.random.SeedGenerator) else (
      keras.random.SeedGenerator(seed))


def pad_crop_flip_draws(batch, seed, padding=4, flip=True):
  """The random choices of `pad_crop_flip`: offsets [N, 2] (x, y), uniform
  integers in [-padding, padding], and mirror [N] (probability 1/2)."""
  seed = _seed(seed)
  offsets = keras.random.randint((batch, 2), -padding, padding + 1,
                                 seed=seed, dtype='int32')
  mirror = keras.random.uniform((batch,), seed=seed) < 0.5
  if not flip:
    mirror = ops.zeros_like(mirror)
  return {'offsets': offsets, 'mirror': mirror}


@_on_floats
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
  return _gather_pixels(padded, index)


class Family(typing.NamedTuple):
  """An op family on the device (as `augment.engine.Family`).

  pixel_ops: name -> op(images, argument [N]).
  argument: (name, level [N], draw [N]) -> the op's argument [N].
  transform: (name, argument, height, width) -> a geometric op's
    resampling parameters, a tuple of [N] (per-image: they are selected
    image by image, so one resampling serves every geometric op).
  resample: (images, parameters) -> images.
  draw: (shape, seed) -> the per-op draws.
  """
  pixel_ops: dict
  argument: typing.Callable
  transform: typing.Callable
  resample: typing.Callable
  draw: typing.Callable


SEED = Family(
    pixel_ops={name: functools.partial(_seed_pixel_op, name)
               for name in PIXEL_OPS},
    argument=seed_magnitude,
    transform=lambda name, argument, height, width: seed_matrix(
        name, argument, float(height)),
    resample=seed_affine,
    # Where in its level's bin the magnitude falls.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed))
PIL = Family(
    pixel_ops=PIXEL_OPS, argument=pil_argument, transform=pil_matrix,
    resample=pil_resample,
    # Whether a geometric op's argument is negated.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed) < 0.5)
TF_MODELS = Family(
    pixel_ops=TF_MODELS_PIXEL_OPS, argument=tf_models_argument,
    transform=tf_models_transform, resample=tf_models_resample,
    # Whether a geometric op's argument is negated.
    draw=lambda shape, seed: keras.random.uniform(shape, seed=seed) < 0.5)
# The policies the device views have, by their --autoaugment_policy names.
POLICIES = {'cifar10': (PIL, policy_tables.CIFAR10_POLICY),
            'seed_cifar10': (SEED, policy_tables.CIFAR10_POLICY),
            'v0': (TF_MODELS, policy_tables.V0_POLICY)}


def _policy_arrays(policy):
  names = sorted({op for sub in policy for op, _, _ in sub})
  op_ids = np.array([[names.index(op) for op, _, _ in sub] for sub in policy],
                    'int32')
  probabilities = np.array([[p for _, p, _ in sub] for sub in policy],
                           'float32')
  levels = np.array([[level for _, _, level in sub] for sub in policy],
                    'float32')
  return names, op_ids, probabilities, levels


def autoaugment_draws(batch, family, policy, seed):
  """AutoAugment's random choices: a sub-policy per image (uniform)
  `choice` [N], whether each of its two ops fires (with its probability)
  `fires` [N, 2], and the family's per-op draws `draw` [N, 2]."""
  seed = _seed(seed)
  _, _, probabilities, _ = _policy_arrays(policy)
  choice = keras.random.randint((batch,), 0, len(policy), seed=seed,
                                dtype='int32')
  fires = keras.random.uniform((batch, 2), seed=seed) < ops.take(
      probabilities, choice, axis=0)
  return {'choice': choice, 'fires': fires,
          'draw': family.draw((batch, 2), seed)}


@_on_floats
def autoaugment(images, family, policy, choice, fires, draw, **options):
  """AutoAugment (`augment.autoaugment`) of an op family with given draws:
  sub-policy `choice[i]` on image i, its op k where `fires[i, k]`, with the
  family's per-op draw `draw[i, k]`; `options` go to its `argument`."""
  names, op_ids, _, levels = _policy_arrays(policy)
  height, width = images.shape[1], images.shape[2]
  geometric = [name for name in names if name in GEOMETRIC_OPS]
  for step in range(2):
    op = ops.take(op_ids[:, step], choice, axis=0)
    level = ops.take(levels[:, step], choice, axis=0)
    fired = fires[:, step]
    argument = lambda name: family.argument(name, level, draw[:, step],
                                            **options)
    out = images
    if geometric:
      # One resampling for every geometric op, with each image's own
      # parameters (zeros where its op is another: that result is unused).
      parameters, is_geometric = None, ops.zeros_like(fired)
      for name in geometric:
        mine = op == names.index(name)
        is_geometric = is_geometric | mine
        own = family.transform(name, argument(name), height, width)
        parameters = [ops.where(mine, part, 0. if total is None else total)
                      for part, total in zip(own, parameters or
                                             [None] * len(own))]
      out = _select(is_geometric & fired,
                    family.resample(images, parameters), out)
    for index, name in enumerate(names):
      if name not in GEOMETRIC_OPS:
        out = _select((op == index) & fired,
                      family.pixel_ops[name](images, argument(name)), out)
    images = out
  return images


# SimCLR's colour distortion (as `augment.color`), float images in [0, 1].

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # tf.image.rgb_to_grayscale's


def _gray(images):
  return ops.sum(images * ops.convert_to_tensor(GRAY_WEIGHTS, 'float32'),
                 axis=-1, keepdims=True)


def _hsv_op(images, change):
  """`change`(hue, saturation, value) -> (h, s, v) on RGB images."""
  hue, saturation, value = ops.unstack(ops.image.rgb_to_hsv(images), axis=-1)
  return ops.image.hsv_to_rgb(ops.stack(change(hue, saturation, value),
                                        axis=-1))


def _jitter_op(index, images, factor, pytorch):
  """`color.JITTER_OPS[index]`: brightness, contrast, saturation, hue."""
  column = _column(factor)
  if index == 0:
    return images * column if pytorch else images + column
  if index == 1:
    mean = (ops.mean(_gray(images), axis=(1, 2, 3), keepdims=True) if pytorch
            else ops.mean(images, axis=(1, 2), keepdims=True))
    return column * images + (1. - column) * mean
  if index == 2 and pytorch:
    return column * images + (1. - column) * _gray(images)
  row = ops.reshape(ops.cast(factor, 'float32'), (-1, 1, 1))
  if index == 2:
    return _hsv_op(images, lambda h, s, v: (h, ops.clip(s * row, 0., 1.), v))
  return _hsv_op(images, lambda h, s, v: (ops.mod(h + row, 1.), s, v))


def jitter_ranges(strength, pytorch):
  """The (low, high) of each jitter factor: brightness, contrast,
  saturation, hue (`augment.color_jitter`)."""
  s, d = 0.8 * strength, 0.2 * strength
  if pytorch:
    low = max(0., 1. - s)
    return ((low, 1. + s), (low, 1. + s), (low, 1. + s), (-d, d))
  return ((-s, s), (1. - s, 1. + s), (1. - s, 1. + s), (-d, d))


@_on_floats
def color_jitter(images, factors, order, pytorch=False):
  """SimCLR's jitter with given draws: the four ops at `factors` [N, 4]
  (brightness, contrast, saturation, hue), image i taking them in the
  order `order[i]` (a permutation of 0..3), clipped to [0, 1] after each."""
  for position in range(4):
    out = images
    for index in range(4):
      out = _select(order[:, position] == index,
                    _jitter_op(index, images, factors[:, index], pytorch), out)
    images = ops.clip(out, 0., 1.)
  return images


@_on_floats
def gaussian_blur(images, sigma, kernel_size):
  """Separable Gaussian blur, one sigma per image [N], zero padding, as the
  official SimCLR code (`augment.gaussian_blur`)."""
  radius = kernel_size // 2
  if radius < 1:
    return images
  taps = ops.cast(ops.arange(-radius, radius + 1), 'float32')
  sigma = ops.reshape(ops.cast(sigma, 'float32'), (-1, 1))
  weights = ops.exp(-ops.square(taps)[None] / (2. * ops.square(sigma)))
  weights = weights / ops.sum(weights, axis=1, keepdims=True)  # [N, k]
  height, width = images.shape[1], images.shape[2]
  padded = ops.pad(images, ((0, 0), (0, 0), (radius, radius), (0, 0)))
  rows = sum(ops.reshape(weights[:, t], (-1, 1, 1, 1)) *
             padded[:, :, t:t + width] for t in range(2 * radius + 1))
  padded = ops.pad(rows, ((0, 0), (radius, radius), (0, 0), (0, 0)))
  return sum(ops.reshape(weights[:, t], (-1, 1, 1, 1)) *
             padded[:, t:t + height] for t in range(2 * radius + 1))


def simclr_draws(batch, seed, strength=0.5, pytorch=False,
                 blur_probability=0.5, jitter_probability=0.8,
                 grayscale_probability=0.2):
  """SimCLR's random choices per image: `jitter` [N] (with probability
  0.8), its `factors` [N, 4] (uniform in `jitter_ranges`) and `order` [N, 4]
  (a uniform permutation), `gray` [N] (0.2), `blur` [N]
  (`blur_probability`) and its `sigma` [N] (uniform in [0.1, 2])."""
  seed = _seed(seed)
  uniform = lambda shape, low=0., high=1.: keras.random.uniform(
      shape, low, high, seed=seed)
  return {
      'jitter': uniform((batch,)) < jitter_probability,
      'factors': ops.stack([uniform((batch,), low, high) for low, high in
                            jitter_ranges(strength, pytorch)], axis=1),
      'order': ops.cast(ops.argsort(uniform((batch, 4)), axis=1), 'int32'),
      'gray': uniform((batch,)) < grayscale_probability,
      'blur': uniform((batch,)) < blur_probability,
      'sigma': uniform((batch,), 0.1, 2.0)}


@_on_floats
def simclr_distort(images, jitter, factors, order, gray, blur, sigma,
                   pytorch=False):
  """SimCLR's distortion after the crop and flip (`augment.simclr_distort`)
  with given draws: the jitter where `jitter`, grayscale where `gray`, the
  blur (kernel a tenth of the side) where `blur`. 0..255 in and out."""
  images = images / 255.
  images = _select(jitter, color_jitter(images, factors, order, pytorch),
                   images)
  images = _select(gray, ops.repeat(_gray(images), 3, axis=-1), images)
  blurred = gaussian_blur(images, sigma, images.shape[1] // 10)
  return _select(blur, blurred, images) * 255.


def deferred_blur_draws(batch, seed, blur_probability):
  """The official deferred blur's choices: one sigma for the whole call
  (uniform in [0.1, 2], as [N]) and `blur` [N] per image."""
  seed = _seed(seed)
  sigma = keras.random.uniform((), 0.1, 2.0, seed=seed)
  return {'deferred_sigma': ops.broadcast_to(sigma, (batch,)),
          'deferred_blur': keras.random.uniform((batch,), seed=seed) <
                           blur_probability}


@keras.saving.register_keras_serializable(package='supcon_tf')
class DeviceViews(keras.layers.Layer):
  """One training view of every image of a batch, made on the device:
  uint8 (or whole-level float) [N, H, W, 3] -> float32 [N, H, W, 3], in the
  order of the tf.data view (`augment.augment`): crop and flip, AutoAugment,
  SimCLR's distortion, normalisation, the deferred blur.

  crop: 'pad' (`pad_crop_flip`, `padding` pixels) or None (the host
    cropped); flip: mirror half the images.
  policy: an AutoAugment policy of `POLICIES` ('cifar10', 'seed_cifar10',
    'v0') or None; `posterize_bits_fix` as the flag, for 'cifar10'.
  simclr_strength > 0: SimCLR's distortion at that strength (colour jitter
    torchvision's way with `pytorch_color_jitter`), its blur with
    `blur_probability`; `deferred_blur` blurs after the normalisation
    instead, one sigma per call, as the official --defer_blurring.
  mean, std: per-channel normalisation in 0..255 units (the input
    pipeline's `normalize`); None leaves 0..255.
  seed: the `SeedGenerator`'s seed; each call draws anew.

  `training=False` only normalises. `draws(batch)` and `views(images,
  draws)` split a call, for tests and for callers with their own draws;
  `from_preprocessing` reads a Config's augmentation flags.
  """

  def __init__(self, crop='pad', padding=4, flip=True, policy=None,
               posterize_bits_fix=False, simclr_strength=0., pytorch_color_jitter=False,
               blur_probability=0., deferred_blur=False, mean=None, std=None,
               seed=None, **kwargs):
    super().__init__(**kwargs)
    if crop not in ('pad', None):
      raise ValueError(f"crop must be 'pad' or None; got {crop!r}.")
    if policy is not None and policy not in POLICIES:
      raise ValueError(f'policy must be one of {", ".join(POLICIES)} or '
                       f'None; got {policy!r}.')
    if (mean is None) != (std is None):
      raise ValueError('mean and std go together: give both or neither.')
    if not 0. <= blur_probability <= 1. or simclr_strength < 0.:
      raise ValueError('blur_probability must be in [0, 1] and '
                       'simclr_strength >= 0; got '
                       f'{blur_probability}, {simclr_strength}.')
    self.crop, self.padding, self.flip = crop, int(padding), bool(flip)
    self.policy = policy
    self.posterize_bits_fix = bool(posterize_bits_fix)
    self.simclr_strength = float(simclr_strength)
    self.pytorch_color_jitter = bool(pytorch_color_jitter)
    self.blur_probability = float(blur_probability)
    self.deferred_blur = bool(deferred_blur)
    self.mean = None if mean is None else [float(v) for v in mean]
    self.std = None if std is None else [float(v) for v in std]
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  @classmethod
  def from_preprocessing(cls, config, mean_std=None, cropped=False,
                         seed=None):
    """The device views of a Config's (or Preprocessing's) training view;
    `cropped`: the host made the crop and flip (`augment.crop_views`).
    What the device views lack is a one-line ValueError."""
    kind, magnitude = config.augmentation_type, config.augmentation_magnitude
    if kind not in ('AUTOAUGMENT', 'SIMCLR', 'IDENTITY') and magnitude > 0:
      raise ValueError(f'augmentation_type={kind} has no device views; '
                       'AUTOAUGMENT, SIMCLR and IDENTITY have.')
    policy = None
    if kind == 'AUTOAUGMENT' and magnitude > 0:
      policy = config.autoaugment_policy
      if policy not in POLICIES:
        raise ValueError(f'autoaugment_policy={policy} has no device views; '
                         f'{", ".join(POLICIES)} have.')
    for name in ('cutout_size', 'warp_probability'):
      if getattr(config, name, 0):
        raise ValueError(f'{name} has no device views; set it to 0.')
    if config.crop == 'random_resized' and not cropped:
      raise ValueError("crop='random_resized' is the host's (it needs the "
                       'whole image): give the device cropped views.')
    simclr = kind == 'SIMCLR' and magnitude > 0
    deferred = bool(simclr and config.defer_blurring and
                    config.blur_probability > 0)
    mean, std = mean_std if mean_std is not None else (None, None)
    return cls(
        crop=None if cropped or config.crop != 'pad' else 'pad',
        padding=config.random_crop_padding,
        flip=bool(config.flip and not cropped), policy=policy,
        posterize_bits_fix=config.posterize_bits_fix,
        simclr_strength=magnitude if simclr else 0.,
        pytorch_color_jitter=config.use_pytorch_color_jitter,
        blur_probability=config.blur_probability if simclr else 0.,
        deferred_blur=deferred, mean=mean, std=std, seed=seed)

  def draws(self, batch):
    """Every random choice of one call for `batch` images."""
    seed, draws = self.seed_generator, {}
    if self.crop == 'pad' or self.flip:
      draws.update(pad_crop_flip_draws(batch, seed, self.padding, self.flip))
    if self.policy is not None:
      draws.update(autoaugment_draws(batch, *POLICIES[self.policy], seed))
    if self.simclr_strength > 0:
      draws.update(simclr_draws(
          batch, seed, self.simclr_strength, self.pytorch_color_jitter,
          0. if self.deferred_blur else self.blur_probability))
    if self.deferred_blur:
      draws.update(deferred_blur_draws(batch, seed, self.blur_probability))
    return draws

  def views(self, images, draws):
    """The views of `images` with the given `draws`, before normalising."""
    images = ops.cast(images, 'float32')
    if self.crop == 'pad':
      images = pad_crop_flip(images, draws['offsets'], draws['mirror'],
                             self.padding)
    elif self.flip:
      images = _select(draws['mirror'], ops.flip(images, axis=2), images)
    if self.policy is not None:
      family, policy = POLICIES[self.policy]
      options = ({'posterize_bits_fix': self.posterize_bits_fix}
                 if family is PIL else {})
      images = autoaugment(images, family, policy, draws['choice'],
                           draws['fires'], draws['draw'], **options)
    if self.simclr_strength > 0:
      images = simclr_distort(images, draws['jitter'], draws['factors'],
                              draws['order'], draws['gray'], draws['blur'],
                              draws['sigma'], self.pytorch_color_jitter)
    return images

  def normalize(self, images):
    images = ops.cast(images, 'float32')
    if self.mean is None:
      return images
    return ((images - ops.convert_to_tensor(self.mean, 'float32')) /
            ops.convert_to_tensor(self.std, 'float32'))

  def finish(self, views, draws):
    """Normalised views, then the deferred blur where there is one."""
    views = self.normalize(views)
    if self.deferred_blur:
      views = _select(draws['deferred_blur'], gaussian_blur(
          views, draws['deferred_sigma'], views.shape[1] // 10), views)
    return views

  def call(self, images, training=True):
    if not training:
      return self.normalize(images)
    draws = self.draws(ops.shape(images)[0])
    return self.finish(self.views(images, draws), draws)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(
        crop=self.crop, padding=self.padding, flip=self.flip,
        policy=self.policy, posterize_bits_fix=self.posterize_bits_fix,
        simclr_strength=self.simclr_strength,
        pytorch_color_jitter=self.pytorch_color_jitter,
        blur_probability=self.blur_probability,
        deferred_blur=self.deferred_blur, mean=self.mean, std=self.std,
        seed=self.seed)
    return config
