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
import math

import keras
import numpy as np

from supcon_tf.data import policy_tables
from supcon_tf.data.policy_tables import GEOMETRIC_OPS, SEED_RANGES

ops = keras.ops

# The policies the device views have: the seed's CIFAR-10 AutoAugment.
POLICIES = {'seed_cifar10': policy_tables.CIFAR10_POLICY}


def _on_floats(op):
  """op(images, ...) on float32 images given as any array (NumPy too)."""
  def on_floats(images, *args):
    return op(ops.cast(images, 'float32'), *args)
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


def _policy_arrays(policy):
  names = sorted({op for sub in policy for op, _, _ in sub})
  op_ids = np.array([[names.index(op) for op, _, _ in sub] for sub in policy],
                    'int32')
  probabilities = np.array([[p for _, p, _ in sub] for sub in policy],
                           'float32')
  levels = np.array([[level for _, _, level in sub] for sub in policy],
                    'float32')
  return names, op_ids, probabilities, levels


def autoaugment_draws(batch, policy, seed):
  """AutoAugment's random choices: a sub-policy per image (uniform)
  `choice` [N], whether each of its two ops fires (with its probability)
  `fires` [N, 2], and where in its level's bin each magnitude falls
  `position` [N, 2] (the seed's per-op draw)."""
  seed = _seed(seed)
  _, _, probabilities, _ = _policy_arrays(policy)
  choice = keras.random.randint((batch,), 0, len(policy), seed=seed,
                                dtype='int32')
  fires = keras.random.uniform((batch, 2), seed=seed) < ops.take(
      probabilities, choice, axis=0)
  position = keras.random.uniform((batch, 2), seed=seed)
  return {'choice': choice, 'fires': fires, 'position': position}


@_on_floats
def autoaugment(images, policy, choice, fires, position):
  """The seed's AutoAugment (`augment.autoaugment` on the `SEED` family)
  with given draws: sub-policy `choice[i]` on image i, its op k where
  `fires[i, k]`, at the magnitude `position[i, k]` into its level's bin."""
  names, op_ids, _, levels = _policy_arrays(policy)
  size = float(images.shape[1])
  geometric = [name for name in names if name in GEOMETRIC_OPS]
  for step in range(2):
    op = ops.take(op_ids[:, step], choice, axis=0)
    level = ops.take(levels[:, step], choice, axis=0)
    fired = fires[:, step]
    out = images
    if geometric:
      # One resampling for every geometric op: each image's own matrix
      # (the identity where its op is another).
      matrix = [ops.zeros_like(level)] * 6
      is_geometric = ops.zeros_like(fired)
      for name in geometric:
        mine = op == names.index(name)
        is_geometric = is_geometric | mine
        matrix = [ops.where(mine, part, total) for part, total in zip(
            seed_matrix(name, seed_magnitude(name, level,
                                             position[:, step]), size),
            matrix)]
      out = _select(is_geometric & fired, seed_affine(images, matrix), out)
    for index, name in enumerate(names):
      if name in GEOMETRIC_OPS:
        continue
      changed = _seed_pixel_op(name, images, seed_magnitude(
          name, level, position[:, step]))
      out = _select((op == index) & fired, changed, out)
    images = out
  return images


@keras.saving.register_keras_serializable(package='supcon_tf')
class DeviceViews(keras.layers.Layer):
  """One training view of every image of a batch, made on the device:
  uint8 (or whole-level float) [N, H, W, 3] -> float32 [N, H, W, 3].

  crop: 'pad' (`pad_crop_flip`, `padding` pixels) or None (the host
    cropped); flip: mirror half the images (with the crop).
  policy: AutoAugment policy of `POLICIES` ('seed_cifar10') or None.
  mean, std: per-channel normalisation in 0..255 units, as the input
    pipeline's `normalize`; None leaves 0..255.
  seed: the `SeedGenerator`'s seed; each call draws anew.

  `training=False` only normalises. `draws(batch)` and `views(images,
  draws)` split a call, for tests and for callers with their own draws.
  """

  def __init__(self, crop='pad', padding=4, flip=True, policy='seed_cifar10',
               mean=None, std=None, seed=None, **kwargs):
    super().__init__(**kwargs)
    if crop not in ('pad', None):
      raise ValueError(f"crop must be 'pad' or None; got {crop!r}.")
    if policy is not None and policy not in POLICIES:
      raise ValueError(f'policy must be one of {", ".join(POLICIES)} or '
                       f'None; got {policy!r}.')
    if (mean is None) != (std is None):
      raise ValueError('mean and std go together: give both or neither.')
    self.crop, self.padding, self.flip = crop, int(padding), bool(flip)
    self.policy = policy
    self.mean = None if mean is None else [float(v) for v in mean]
    self.std = None if std is None else [float(v) for v in std]
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def draws(self, batch):
    """Every random choice of one call for `batch` images."""
    draws = {}
    if self.crop == 'pad':
      draws.update(pad_crop_flip_draws(batch, self.seed_generator,
                                       self.padding, self.flip))
    if self.policy is not None:
      draws.update(autoaugment_draws(batch, POLICIES[self.policy],
                                     self.seed_generator))
    return draws

  def views(self, images, draws):
    """The views of `images` with the given `draws`, before normalising."""
    images = ops.cast(images, 'float32')
    if self.crop == 'pad':
      images = pad_crop_flip(images, draws['offsets'], draws['mirror'],
                             self.padding)
    if self.policy is not None:
      images = autoaugment(images, POLICIES[self.policy], draws['choice'],
                           draws['fires'], draws['position'])
    return images

  def normalize(self, images):
    images = ops.cast(images, 'float32')
    if self.mean is None:
      return images
    return ((images - ops.convert_to_tensor(self.mean, 'float32')) /
            ops.convert_to_tensor(self.std, 'float32'))

  def call(self, images, training=True):
    if not training:
      return self.normalize(images)
    return self.normalize(self.views(images, self.draws(
        ops.shape(images)[0])))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(crop=self.crop, padding=self.padding, flip=self.flip,
                  policy=self.policy, mean=self.mean, std=self.std,
                  seed=self.seed)
    return config
