"""AutoAugment image ops in plain TensorFlow, with PIL's exact semantics.

Every op in `OPS` maps `fn(image, magnitude) -> image` on uint8 images
[H, W, 3] or batches [N, H, W, 3]; the magnitude is in the op's PIL units (bits,
threshold, enhancement factor) and is a scalar or, for a batch, one value per
image [N]. The reference is Pillow (`ImageOps`, `ImageEnhance`,
`Image.rotate` and `Image.transform` with nearest-neighbour sampling and a grey
(128, 128, 128) fill); the tests compare every op with it pixel for pixel.

Built on them: AutoAugment (CIFAR-10 and ImageNet policies), RandAugment, and
the batch-level crops, flips, SimCLR colour distortion and Cutout that make a
training view (`augment`, which takes a `supcon_tf.config.Preprocessing`
or a Config). Every random choice is stateless
and made per image, so one call transforms a whole batch and the same seed
gives the same views.
"""
import math

import numpy as np
import tensorflow as tf

from supcon_tf import enums

FILL_VALUE = 128  # Grey, close to the CIFAR mean (REFERENCE.md, section 6).


def _as_batch(image):
  """[H, W, C] or [N, H, W, C] uint8 -> ([N, H, W, C], whether to unbatch)."""
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8:
    raise ValueError(f'image must be uint8, got {image.dtype.name}.')
  if image.shape.rank == 3:
    return image[None], True
  if image.shape.rank == 4:
    return image, False
  raise ValueError('image must be [H, W, C] or [N, H, W, C], got shape '
                   f'{image.shape}.')


def _per_image_vector(magnitude, images, dtype=tf.float64):
  """A scalar or [N] magnitude as [N], one value per image."""
  return tf.broadcast_to(tf.cast(magnitude, dtype), tf.shape(images)[:1])


def _per_image(magnitude, images, dtype):
  """A scalar or [N] magnitude as [N, 1, 1, 1] for broadcasting."""
  return tf.reshape(_per_image_vector(magnitude, images, dtype), [-1, 1, 1, 1])


def _batched(fn):
  """Lets `fn(images [N, H, W, C], magnitude)` also take one image."""
  def op(image, magnitude=None):
    images, unbatch = _as_batch(image)
    out = fn(images, magnitude)
    return out[0] if unbatch else out
  op.__name__ = fn.__name__
  op.__doc__ = fn.__doc__
  return op


def _blend(degenerate, images, factor):
  """PIL's Image.blend(degenerate, image, factor) on uint8 images.

  PIL computes in single precision, in1 + factor * (in2 - in1), clips to
  0..255 and truncates.
  """
  factor = _per_image(factor, images, tf.float32)
  in1 = tf.cast(degenerate, tf.float32)
  blended = in1 + factor * (tf.cast(images, tf.float32) - in1)
  return tf.cast(tf.clip_by_value(blended, 0., 255.), tf.uint8)


def _grayscale(images):
  """PIL's convert('L'): (R*19595 + G*38470 + B*7471 + 2^15) >> 16."""
  rgb = tf.cast(images, tf.int32)
  luma = tf.bitwise.right_shift(
      rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000,
      16)
  return luma[..., None]


@_batched
def invert(images, _=None):
  """ImageOps.invert."""
  return 255 - images


@_batched
def posterize(images, bits):
  """ImageOps.posterize(bits): keep the `bits` high bits of every channel."""
  shift = 8 - _per_image(bits, images, tf.int32)
  pixels = tf.cast(images, tf.int32)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift),
                                       shift), tf.uint8)


@_batched
def solarize(images, threshold):
  """ImageOps.solarize(threshold): invert every value >= threshold."""
  threshold = _per_image(threshold, images, tf.int32)
  return tf.where(tf.cast(images, tf.int32) < threshold, images, 255 - images)


@_batched
def autocontrast(images, _=None):
  """ImageOps.autocontrast(): stretch each channel's [min, max] to [0, 255]."""
  pixels = tf.cast(images, tf.float64)  # PIL's lut is built in doubles.
  low = tf.reduce_min(pixels, axis=(1, 2), keepdims=True)
  high = tf.reduce_max(pixels, axis=(1, 2), keepdims=True)
  scale = 255. / tf.maximum(high - low, 1.)
  stretched = tf.clip_by_value(
      tf.math.floor(pixels * scale + (-low * scale)), 0., 255.)
  return tf.where(high > low, tf.cast(stretched, tf.uint8), images)


@_batched
def equalize(images, _=None):
  """ImageOps.equalize(): per-channel histogram equalisation, PIL's lut."""
  batch = tf.shape(images)[0]
  channels = tf.shape(images)[3]
  pixels = tf.reshape(tf.transpose(tf.cast(images, tf.int32), [0, 3, 1, 2]),
                      [batch * channels, -1])
  histogram = tf.math.bincount(pixels, minlength=256, maxlength=256, axis=-1)
  nonzero = histogram > 0
  # Count in the last non-empty bin.
  last_bin = 255 - tf.argmax(tf.reverse(tf.cast(nonzero, tf.int32), [1]),
                             axis=1, output_type=tf.int32)
  last_count = tf.gather(histogram, last_bin, batch_dims=1)
  step = (tf.reduce_sum(histogram, axis=1) - last_count) // 255
  safe_step = tf.maximum(step, 1)[:, None]
  lut = (safe_step // 2 + tf.cumsum(histogram, axis=1, exclusive=True)
        ) // safe_step
  lut = tf.where(step[:, None] > 0, tf.minimum(lut, 255), tf.range(256)[None])
  equalized = tf.gather(lut, pixels, batch_dims=1)
  equalized = tf.transpose(
      tf.reshape(equalized, [batch, channels, tf.shape(images)[1],
                             tf.shape(images)[2]]), [0, 2, 3, 1])
  return tf.cast(equalized, tf.uint8)


@_batched
def brightness(images, factor):
  """ImageEnhance.Brightness(image).enhance(factor): blend with black."""
  return _blend(tf.zeros_like(images), images, factor)


@_batched
def color(images, factor):
  """ImageEnhance.Color(image).enhance(factor): blend with the grayscale."""
  return _blend(tf.broadcast_to(_grayscale(images), tf.shape(images)), images,
                factor)


@_batched
def contrast(images, factor):
  """ImageEnhance.Contrast(image).enhance(factor): blend with the mean grey."""
  luma = tf.cast(_grayscale(images), tf.float64)
  mean = tf.math.floor(tf.reduce_mean(luma, axis=(1, 2, 3), keepdims=True) +
                       0.5)
  return _blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


@_batched
def sharpness(images, factor):
  """ImageEnhance.Sharpness(image).enhance(factor): blend with SMOOTH.

  ImageFilter.SMOOTH is the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13;
  PIL leaves the one-pixel border as it is.
  """
  pixels = tf.cast(images, tf.float32)
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.
  channels = tf.shape(images)[3]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.nn.depthwise_conv2d(pixels, kernel, [1, 1, 1, 1], 'VALID')
  smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0., 255.), tf.uint8)
  interior = tf.pad(tf.ones_like(smooth[..., :1], tf.bool),
                    [[0, 0], [1, 1], [1, 1], [0, 0]])
  smooth = tf.where(interior, tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]]),
                    images)
  return _blend(smooth, images, factor)


def _affine(images, matrices):
  """PIL's Image.transform(size, AFFINE, matrix, NEAREST, fillcolor=grey).

  `matrices` [N, 6] holds PIL's (a, b, c, d, e, f): output pixel (x, y) reads
  input (a x + b y + c, d x + e y + f) at pixel centres. PIL samples with
  16.16 fixed-point coefficients, floor of the centre coordinate; rounding the
  coefficients the same way makes every coordinate exact in float32, and
  round(X - 1/2) in ImageProjectiveTransformV3 is then PIL's floor(X).
  """
  m = tf.cast(matrices, tf.float64)
  fixed = lambda v: tf.math.floor(v * 65536. + 0.5) / 65536.
  a, b, c, d, e, f = tf.unstack(m, axis=1)
  transforms = tf.stack([
      fixed(a), fixed(b), fixed(c + 0.5 * a + 0.5 * b) - 0.5,
      fixed(d), fixed(e), fixed(f + 0.5 * d + 0.5 * e) - 0.5,
      tf.zeros_like(a), tf.zeros_like(a)], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=tf.cast(transforms, tf.float32),
      output_shape=tf.shape(images)[1:3], fill_value=float(FILL_VALUE),
      interpolation='NEAREST', fill_mode='CONSTANT')


@_batched
def rotate(images, degrees):
  """Image.rotate(degrees): counter-clockwise about the centre, same size."""
  # As PIL: angle = -radians(degrees % 360).
  angle = -((_per_image_vector(degrees, images) % 360.) * (math.pi / 180.))
  # PIL rounds the rotation matrix to 15 decimals.
  cos = tf.round(tf.cos(angle) * 1e15) / 1e15
  sin = tf.round(tf.sin(angle) * 1e15) / 1e15
  cx = tf.cast(tf.shape(images)[2], tf.float64) / 2.
  cy = tf.cast(tf.shape(images)[1], tf.float64) / 2.
  return _affine(images, tf.stack([
      cos, sin, cos * -cx + sin * -cy + cx,
      -sin, cos, -sin * -cx + cos * -cy + cy], axis=1))


def _shear_or_translate(position):
  """An op setting one entry of the identity (a, b, c, d, e, f) to `m`."""
  def op(images, magnitude):
    m = _per_image_vector(magnitude, images)
    identity = tf.constant([1., 0., 0., 0., 1., 0.], tf.float64)
    one_hot = tf.one_hot(position, 6, dtype=tf.float64)
    return _affine(images, identity * (1. - one_hot) + m[:, None] * one_hot)
  return op


shear_x = _batched(_shear_or_translate(1))
shear_x.__doc__ = 'Image.transform(AFFINE, (1, m, 0, 0, 1, 0)).'
shear_y = _batched(_shear_or_translate(3))
shear_y.__doc__ = 'Image.transform(AFFINE, (1, 0, 0, m, 1, 0)).'
translate_x = _batched(_shear_or_translate(2))
translate_x.__doc__ = 'Image.transform(AFFINE, (1, 0, m, 0, 1, 0)): m pixels.'
translate_y = _batched(_shear_or_translate(5))
translate_y.__doc__ = 'Image.transform(AFFINE, (1, 0, 0, 0, 1, m)): m pixels.'


OPS = {
    'AutoContrast': autocontrast,
    'Equalize': equalize,
    'Invert': invert,
    'Posterize': posterize,
    'Solarize': solarize,
    'Color': color,
    'Contrast': contrast,
    'Brightness': brightness,
    'Sharpness': sharpness,
    'Rotate': rotate,
    'ShearX': shear_x,
    'ShearY': shear_y,
    'TranslateX': translate_x,
    'TranslateY': translate_y,
}


# --- AutoAugment ------------------------------------------------------------

# Cubuk et al. (2019), CIFAR-10 policy: 25 sub-policies of two
# (op, probability, level) each; levels are 0..10 (0 where the op takes none).
CIFAR10_POLICY = (
    (('Invert', 0.1, 0), ('Contrast', 0.2, 6)),
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.5, 0), ('Equalize', 0.9, 0)),
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),
    (('Equalize', 0.6, 0), ('Equalize', 0.5, 0)),
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),
    (('Equalize', 0.3, 0), ('AutoContrast', 0.4, 0)),
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),
    (('Solarize', 0.5, 2), ('Invert', 0.0, 0)),
    (('Equalize', 0.2, 0), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.2, 0), ('Equalize', 0.6, 0)),
    (('Color', 0.9, 9), ('Equalize', 0.6, 0)),
    (('AutoContrast', 0.8, 0), ('Solarize', 0.2, 8)),
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, 0)),
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.9, 0), ('Solarize', 0.8, 3)),
    (('Equalize', 0.8, 0), ('Invert', 0.1, 0)),
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, 0)),
)

# Ops whose magnitude takes a random sign.
SIGNED_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


def level_to_magnitude(name, level, posterize_bits_fix=False):
  """The original CIFAR AutoAugment level (0..10) -> magnitude in PIL units.

  `posterize_bits_fix` gives torchvision's 8 - round(level * 4 / 10) bits (8
  down to 4) in place of the original 4 - int(level * 4 / 10) (4 down to 0,
  where 0 bits turns the image black). Works on floats and tensors.
  """
  level = tf.cast(level, tf.float64)
  if name == 'Rotate':
    return tf.math.floor(level * 30. / 10.)
  if name in ('ShearX', 'ShearY'):
    return level * 0.3 / 10.
  if name in ('TranslateX', 'TranslateY'):
    return tf.math.floor(level * 10. / 10.)
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 / 10. + 0.1
  if name == 'Posterize':
    if posterize_bits_fix:
      return 8. - tf.round(level * 4. / 10.)
    return 4. - tf.math.floor(level * 4. / 10.)
  if name == 'Solarize':
    return 256. - tf.math.floor(level * 256. / 10.)
  return tf.zeros_like(level)  # AutoContrast, Equalize, Invert.


def _apply_to_some(op, images, magnitude, fires, result):
  """`result` with `op` applied to the `images` where `fires` (only those)."""
  index = tf.where(fires)
  changed = op(tf.gather_nd(images, index), tf.gather_nd(magnitude, index))
  return tf.tensor_scatter_nd_update(result, index, changed)


def apply_each(images, names, op_index, fires, magnitude_of, op_of=None):
  """Image i gets op `names[op_index[i]]` where `fires[i]`, at the [N]
  magnitudes `magnitude_of(name)`; `op_of(name)` is the op (default `OPS`).

  Each op runs once, on the images that drew it (a gather, the op on that
  sub-batch, a scatter back), so the cost is one op per image whatever the
  number of ops.
  """
  op_of = op_of or OPS.__getitem__
  result = images
  for op_id, name in enumerate(names):
    selected = tf.logical_and(tf.equal(op_index, op_id), fires)
    magnitude = magnitude_of(name)
    result = tf.cond(
        tf.reduce_any(selected),
        lambda name=name, selected=selected, magnitude=magnitude,
        result=result: _apply_to_some(op_of(name), images, magnitude,
                                      selected, result),
        lambda result=result: result)
  return result


def apply_ops(images, names, op_index, level, fires, negate,
              posterize_bits_fix=False):
  """Image i gets op `names[op_index[i]]` at `level[i]` where `fires[i]`.

  Levels are on the 0..10 scale of `level_to_magnitude`; a signed op's
  magnitude is negated where `negate`. See `apply_each`.
  """
  level = tf.cast(level, tf.float64)

  def magnitude_of(name):
    magnitude = level_to_magnitude(name, level, posterize_bits_fix)
    if name in SIGNED_OPS:
      magnitude = tf.where(negate, -magnitude, magnitude)
    return magnitude

  return apply_each(images, names, op_index, fires, magnitude_of)


def apply_policy(images, policy, choice, apply, negate,
                 posterize_bits_fix=False):
  """Applies sub-policy `choice` [N] of `policy` to each image of a batch.

  `apply` [N, 2] and `negate` [N, 2] are booleans: whether each of the
  sub-policy's two ops fires, and whether a signed op's magnitude is negated.
  Deterministic given the draws (see `autoaugment`).
  """
  images, unbatch = _as_batch(images)
  names = sorted({op for sub_policy in policy for op, _, _ in sub_policy})
  for stage in range(2):
    op_ids = tf.constant([names.index(sub[stage][0]) for sub in policy])
    levels = tf.constant([sub[stage][2] for sub in policy], tf.float64)
    images = apply_ops(images, names, tf.gather(op_ids, choice),
                       tf.gather(levels, choice), apply[:, stage],
                       negate[:, stage], posterize_bits_fix)
  return images[0] if unbatch else images


def policy_draws(seed, batch, policy):
  """A sub-policy of `policy` per image (uniform) [N], whether each of its
  two ops fires (with the op's probability) [N, 2], and a seed left for the
  magnitudes' draws."""
  seeds = tf.random.experimental.stateless_split(seed, 3)
  choice = tf.random.stateless_uniform([batch], seeds[0], 0, len(policy),
                                       dtype=tf.int32)
  probabilities = tf.gather(
      tf.constant([[op[1] for op in sub] for sub in policy], tf.float32),
      choice)
  fires = tf.random.stateless_uniform([batch, 2], seeds[1]) < probabilities
  return choice, fires, seeds[2]


def autoaugment(images, seed, policy=CIFAR10_POLICY, posterize_bits_fix=False):
  """AutoAugment: one sub-policy drawn uniformly per image, each op fires with
  its probability, signed magnitudes get a random sign.

  `seed` is a stateless seed (shape [2] integers): the same seed gives the same
  images.
  """
  batch_images, unbatch = _as_batch(images)
  batch = tf.shape(batch_images)[0]
  choice, apply, sign_seed = policy_draws(seed, batch, policy)
  negate = tf.random.stateless_uniform([batch, 2], sign_seed) < 0.5
  out = apply_policy(batch_images, policy, choice, apply, negate,
                     posterize_bits_fix)
  return out[0] if unbatch else out


# Cubuk et al. (2019), ImageNet policy, levels on the same 0..10 scale.
IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 0)),
    (('Equalize', 0.8, 0), ('Equalize', 0.6, 0)),
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),
    (('Equalize', 0.4, 0), ('Solarize', 0.2, 4)),
    (('Equalize', 0.4, 0), ('Rotate', 0.8, 8)),
    (('Solarize', 0.6, 3), ('Equalize', 0.6, 0)),
    (('Posterize', 0.8, 5), ('Equalize', 1.0, 0)),
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
    (('Equalize', 0.6, 0), ('Posterize', 0.4, 6)),
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
    (('Rotate', 0.4, 9), ('Equalize', 0.6, 0)),
    (('Equalize', 0.0, 0), ('Equalize', 0.8, 0)),
    (('Invert', 0.6, 0), ('Equalize', 1.0, 0)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
    (('Sharpness', 0.4, 7), ('Invert', 0.6, 0)),
    (('ShearX', 0.6, 5), ('Equalize', 1.0, 0)),
    (('Color', 0.4, 0), ('Equalize', 0.6, 0)),
    (('Equalize', 0.4, 0), ('Solarize', 0.2, 4)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 0)),
    (('Invert', 0.6, 0), ('Equalize', 1.0, 0)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Equalize', 0.8, 0), ('Equalize', 0.6, 0)),
)
POLICIES = {'cifar10': CIFAR10_POLICY, 'imagenet': IMAGENET_POLICY}

# RandAugment (Cubuk et al. 2020): the AutoAugment ops without Invert, plus
# Identity (an op that leaves the image as it is).
RANDAUGMENT_OPS = ('Identity', 'AutoContrast', 'Equalize', 'Rotate',
                   'Solarize', 'Color', 'Posterize', 'Contrast', 'Brightness',
                   'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')


def randaugment_draws(seed, batch, num_layers):
  """RandAugment's random choices: op index [N, L] into `RANDAUGMENT_OPS`
  (uniform) and sign flips [N, L]."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  op_index = tf.random.stateless_uniform(
      [batch, num_layers], seeds[0], 0, len(RANDAUGMENT_OPS), dtype=tf.int32)
  negate = tf.random.stateless_uniform([batch, num_layers], seeds[1]) < 0.5
  return op_index, negate


def randaugment(images, seed, num_layers=2, magnitude=10.,
                posterize_bits_fix=False):
  """RandAugment(N=num_layers, M=magnitude): each image gets `num_layers` ops
  drawn uniformly, all at level `magnitude` (0..10 scale, fractions allowed),
  signed ops with a random sign. Stateless: the same seed, the same images.
  """
  batch_images, unbatch = _as_batch(images)
  batch = tf.shape(batch_images)[0]
  op_index, negate = randaugment_draws(seed, batch, num_layers)
  level = tf.fill([batch], tf.cast(magnitude, tf.float64))
  fires = tf.ones([batch], tf.bool)
  # Identity is op 0; `apply_ops` only visits the named ops after it.
  names = RANDAUGMENT_OPS[1:]
  for layer in range(num_layers):
    batch_images = apply_ops(batch_images, names, op_index[:, layer] - 1,
                             level, fires, negate[:, layer],
                             posterize_bits_fix)
  return batch_images[0] if unbatch else batch_images


# --- Crops and flips -----------------------------------------------------------


def _project(images, transforms, output_size, interpolation, fill_mode,
             fill_value=0.):
  """ImageProjectiveTransformV3: output pixel (x, y) reads input
  (a0 x + a1 y + a2, b0 x + b1 y + b2), pixel indices, transforms [N, 8]."""
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=tf.cast(transforms, tf.float32),
      output_shape=tf.convert_to_tensor(output_size, tf.int32),
      fill_value=float(fill_value), interpolation=interpolation,
      fill_mode=fill_mode)


def random_flips(seed, batch):
  return tf.random.stateless_uniform([batch], seed) < 0.5


def pad_crop_flip(images, seed, padding=4, flip=True, fill=0):
  """torchvision's RandomCrop(size, padding) then RandomHorizontalFlip, on a
  uint8 batch: a crop of the zero-padded image at a uniform offset, mirrored
  with probability 1/2 (when `flip`). Exact integer shifts."""
  images, unbatch = _as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  offsets = tf.random.stateless_uniform([batch, 2], seeds[0], 0,
                                        2 * padding + 1, dtype=tf.int32)
  offsets = tf.cast(offsets - padding, tf.float32)
  mirror = (random_flips(seeds[1], batch) if flip
            else tf.zeros([batch], tf.bool))
  # Output (x, y) reads input (x + dx, y + dy); mirrored, x -> width - 1 - x.
  width = tf.cast(tf.shape(images)[2], tf.float32)
  sign = 1. - 2. * tf.cast(mirror, tf.float32)
  shift_x = offsets[:, 0] + tf.where(mirror, width - 1., 0.)
  zeros = tf.zeros([batch], tf.float32)
  transforms = tf.stack([sign, zeros, shift_x, zeros, zeros + 1.,
                         offsets[:, 1], zeros, zeros], axis=1)
  out = _project(images, transforms, tf.shape(images)[1:3], 'NEAREST',
                 'CONSTANT', fill)
  return out[0] if unbatch else out


def sample_crop_boxes(seed, batch, height, width, area_range=(0.08, 1.0),
                      aspect_ratio_range=(3. / 4., 4. / 3.), attempts=10):
  """torchvision's RandomResizedCrop box: area a uniform fraction of the
  image, log-uniform aspect ratio, the first of `attempts` draws that fits,
  else the central crop with the ratio clamped. Returns float32 [N, 4] boxes
  (x0, y0, w, h) in pixels."""
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  seeds = tf.random.experimental.stateless_split(seed, 4)
  shape = [batch, attempts]
  area = height * width * tf.random.stateless_uniform(
      shape, seeds[0], area_range[0], area_range[1])
  log_ratio = tf.random.stateless_uniform(
      shape, seeds[1], math.log(aspect_ratio_range[0]),
      math.log(aspect_ratio_range[1]))
  ratio = tf.exp(log_ratio)
  w = tf.round(tf.sqrt(area * ratio))
  h = tf.round(tf.sqrt(area / ratio))
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  found = tf.reduce_any(fits, axis=1)
  w = tf.gather(w, first, batch_dims=1)
  h = tf.gather(h, first, batch_dims=1)
  x0 = tf.floor(tf.random.stateless_uniform([batch], seeds[2]) *
                (width - w + 1.))
  y0 = tf.floor(tf.random.stateless_uniform([batch], seeds[3]) *
                (height - h + 1.))
  # Fallback: torchvision's central crop with the aspect ratio clamped.
  in_ratio = width / height
  fw = tf.where(in_ratio < aspect_ratio_range[0], width,
                tf.where(in_ratio > aspect_ratio_range[1],
                         tf.round(height * aspect_ratio_range[1]), width))
  fh = tf.where(in_ratio < aspect_ratio_range[0],
                tf.round(width / aspect_ratio_range[0]),
                height)
  fx = tf.floor((width - fw) / 2.)
  fy = tf.floor((height - fh) / 2.)
  boxes = tf.stack([x0, y0, w, h], axis=1)
  fallback = tf.broadcast_to(tf.stack([fx, fy, fw, fh]), tf.shape(boxes))
  return tf.where(found[:, None], boxes, fallback)


def _resize_taps(start, length, size):
  """tf.image.resize's BILINEAR taps (half-pixel centres, clamped to the box)
  along one axis: lower and upper indices [N, size] and the weight of upper."""
  length = length[:, None]
  source = (tf.range(size, dtype=tf.float32)[None] + 0.5) * (
      length / size) - 0.5
  floor = tf.floor(source)
  lower = tf.maximum(floor, 0.)
  upper = tf.minimum(tf.math.ceil(source), length - 1.)
  start = start[:, None]
  return (tf.cast(start + lower, tf.int32), tf.cast(start + upper, tf.int32),
          source - floor)


def crop_and_resize(images, boxes, size, flip=None):
  """Boxes (x0, y0, w, h) [N, 4] of a batch resized to size x size as
  tf.image.resize(crop, BILINEAR) does (half-pixel centres, edges clamped to
  the box, no antialiasing), mirrored where `flip` [N]. Returns float32."""
  images = tf.cast(images, tf.float32)
  boxes = tf.cast(boxes, tf.float32)
  top, bottom, row_weight = _resize_taps(boxes[:, 1], boxes[:, 3], size)
  left, right, col_weight = _resize_taps(boxes[:, 0], boxes[:, 2], size)
  if flip is not None:
    flip = tf.convert_to_tensor(flip)[:, None]
    left, right, col_weight = (
        tf.where(flip, tf.reverse(t, [1]), t)
        for t in (left, right, col_weight))
  rows = (tf.gather(images, top, axis=1, batch_dims=1) *
          (1. - row_weight)[:, :, None, None] +
          tf.gather(images, bottom, axis=1, batch_dims=1) *
          row_weight[:, :, None, None])
  return (tf.gather(rows, left, axis=2, batch_dims=1) *
          (1. - col_weight)[:, None, :, None] +
          tf.gather(rows, right, axis=2, batch_dims=1) *
          col_weight[:, None, :, None])


def distorted_crop_window(image_shape, seed, area_range=(0.08, 1.0)):
  """The official training crop window of an image of `image_shape`
  ([height, width, channels]): tf.image's sample_distorted_bounding_box over
  the whole image (min_object_covered 0.1, aspect ratio 0.75..1.33,
  `area_range`, 100 attempts), stateless with `seed`; when it finds no box
  (it then returns the whole image), the central square of the shorter side,
  as official. Returns int32 [offset_height, offset_width, crop_height,
  crop_width]."""
  image_shape = tf.cast(image_shape, tf.int32)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(0.75, 1.33),
      area_range=area_range, max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  height, width = image_shape[0], image_shape[1]
  found = tf.logical_or(size[0] != height, size[1] != width)
  side = tf.minimum(height, width)
  centre = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side,
                     side])
  return tf.where(found, tf.stack([begin[0], begin[1], size[0], size[1]]),
                  centre)


def official_crop_boxes(seed, batch, height, width, area_range=(0.08, 1.0)):
  """`distorted_crop_window` for each image of a batch, one seed each, as
  float32 [N, 4] boxes (x0, y0, w, h) in pixels."""
  seeds = tf.random.experimental.stateless_split(seed, batch)
  shape = tf.stack([height, width, 3])
  windows = tf.map_fn(
      lambda s: distorted_crop_window(shape, s, area_range), seeds,
      fn_output_signature=tf.int32)
  return tf.cast(tf.gather(windows, [1, 0, 3, 2], axis=1), tf.float32)


def random_resized_crop(images, seed, size, area_range=(0.08, 1.0), flip=True,
                        window='official'):
  """The training crop, resized to size x size, then a random horizontal
  flip, on a batch of same-size images; uint8 in, uint8 out. `window`:
  'official' (`distorted_crop_window`; the bilinear resize cast back to
  uint8 by truncation, as the official _resize_image) or 'torchvision'
  (RandomResizedCrop's boxes, `sample_crop_boxes`; rounded)."""
  images, unbatch = _as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  if window == 'official':
    boxes = official_crop_boxes(seeds[0], batch, height, width, area_range)
  else:
    boxes = sample_crop_boxes(seeds[0], batch, height, width, area_range)
  mirror = random_flips(seeds[1], batch) if flip else None
  out = crop_and_resize(images, boxes, size, mirror)
  if window != 'official':
    out = tf.round(out)
  out = tf.cast(tf.clip_by_value(out, 0., 255.), tf.uint8)
  return out[0] if unbatch else out


def cutout(images, seed, size=16, fill=FILL_VALUE):
  """Cutout (DeVries & Taylor 2017): a size x size square at a uniform centre,
  clipped at the borders, set to `fill`."""
  images, unbatch = _as_batch(images)
  batch = tf.shape(images)[0]
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  cy = tf.random.stateless_uniform([batch], seeds[0], 0, height, tf.int32)
  cx = tf.random.stateless_uniform([batch], seeds[1], 0, width, tf.int32)
  rows = tf.range(height)[None, :]
  cols = tf.range(width)[None, :]
  in_rows = (rows >= (cy - size // 2)[:, None]) & (
      rows < (cy - size // 2 + size)[:, None])
  in_cols = (cols >= (cx - size // 2)[:, None]) & (
      cols < (cx - size // 2 + size)[:, None])
  square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
  out = tf.where(square, tf.cast(fill, images.dtype), images)
  return out[0] if unbatch else out


# --- SimCLR colour distortion (float images in [0, 1]) -------------------------

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # tf.image.rgb_to_grayscale, torchvision


def _gray(images):
  return tf.reduce_sum(images * tf.constant(GRAY_WEIGHTS, images.dtype),
                       axis=-1, keepdims=True)


def adjust_brightness(images, factor, pytorch=False):
  """torchvision: image * factor; TensorFlow: image + delta (`factor`)."""
  images = tf.cast(images, tf.float32)
  factor = _per_image(factor, images, images.dtype)
  return images * factor if pytorch else images + factor


def adjust_contrast(images, factor, pytorch=False):
  """Blend with the mean: torchvision's mean of the grayscale image,
  TensorFlow's per-channel mean."""
  images = tf.cast(images, tf.float32)
  factor = _per_image(factor, images, images.dtype)
  if pytorch:
    mean = tf.reduce_mean(_gray(images), axis=(1, 2, 3), keepdims=True)
  else:
    mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
  return factor * images + (1. - factor) * mean


def adjust_saturation(images, factor, pytorch=False):
  """torchvision: blend with the grayscale; TensorFlow: scale HSV saturation."""
  images = tf.cast(images, tf.float32)
  factor = _per_image(factor, images, images.dtype)
  if pytorch:
    return factor * images + (1. - factor) * _gray(images)
  hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
  saturation = tf.clip_by_value(saturation * factor[..., 0], 0., 1.)
  return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def adjust_hue(images, delta, pytorch=False):
  """Rotate the hue by `delta` turns (the same in both)."""
  images = tf.cast(images, tf.float32)
  del pytorch
  delta = _per_image(delta, images, images.dtype)[..., 0]
  hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
  return tf.image.hsv_to_rgb(
      tf.stack([tf.math.floormod(hue + delta, 1.), saturation, value],
               axis=-1))


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation,
              adjust_hue)


def color_jitter(images, seed, strength=0.5, pytorch=False):
  """SimCLR's colour jitter: brightness, contrast, saturation (0.8 strength)
  and hue (0.2 strength) in a random order per image, clipped to [0, 1]
  after each. `pytorch` samples and applies them as
  torchvision.transforms.ColorJitter does (the official
  `use_pytorch_color_jitter`)."""
  if strength < 0:
    raise ValueError(f'strength must be >= 0, got {strength}.')
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 5)
  s, d = 0.8 * strength, 0.2 * strength
  if pytorch:
    low = max(0., 1. - s)
    ranges = ((low, 1. + s), (low, 1. + s), (low, 1. + s), (-d, d))
  else:
    ranges = ((-s, s), (1. - s, 1. + s), (1. - s, 1. + s), (-d, d))
  factors = [tf.random.stateless_uniform([batch], seeds[i], lo, hi)
             for i, (lo, hi) in enumerate(ranges)]
  order = tf.argsort(tf.random.stateless_uniform([batch, 4], seeds[4]),
                     axis=1)
  for position in range(4):
    result = images
    for op_id, op in enumerate(JITTER_OPS):
      fires = tf.equal(order[:, position], op_id)
      result = _apply_to_some(
          lambda x, f, op=op: op(x, f, pytorch), images, factors[op_id],
          fires, result)
    images = tf.clip_by_value(result, 0., 1.)
  return images


def gaussian_blur(images, sigma, kernel_size):
  """Separable Gaussian blur of float images, one sigma per image, zero
  padding ('SAME'), as the official SimCLR code."""
  radius = kernel_size // 2
  if radius < 1:
    return images
  x = tf.range(-radius, radius + 1, dtype=images.dtype)
  sigma = tf.cast(_per_image_vector(sigma, images, images.dtype), images.dtype)
  weights = tf.exp(-tf.square(x)[None] / (2. * tf.square(sigma)[:, None]))
  weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
  width = tf.shape(images)[2]
  height = tf.shape(images)[1]
  padded = tf.pad(images, [[0, 0], [0, 0], [radius, radius], [0, 0]])
  images = tf.add_n([weights[:, k, None, None, None] *
                     padded[:, :, k:k + width] for k in range(2 * radius + 1)])
  padded = tf.pad(images, [[0, 0], [radius, radius], [0, 0], [0, 0]])
  return tf.add_n([weights[:, k, None, None, None] *
                   padded[:, k:k + height] for k in range(2 * radius + 1)])


# --- Warp (the official SimCLR warp; tensorflow-addons' sparse_image_warp) -----


def _polyharmonic(squared_distance, order):
  """phi(r) of the polyharmonic spline of `order`, on r^2 (clamped above 0
  where a log or root needs it)."""
  r2 = tf.maximum(squared_distance, 1e-10)
  if order % 2 == 0:
    return 0.5 * tf.pow(r2, 0.5 * order) * tf.math.log(r2)
  return tf.pow(r2, 0.5 * order)


def _squared_distances(x, y):
  """||x_i - y_j||^2 for [b, n, d] and [b, m, d] -> [b, n, m]."""
  return (tf.reduce_sum(tf.square(x), 2)[:, :, None] -
          2. * tf.matmul(x, y, transpose_b=True) +
          tf.reduce_sum(tf.square(y), 2)[:, None, :])


def interpolate_spline(train_points, train_values, query_points, order,
                       regularization_weight=0.):
  """Polyharmonic spline interpolation (tensorflow-addons'
  interpolate_spline): f(x) = sum_i w_i phi(|x - c_i|) + v.[x, 1], with w
  and v solving the interpolation conditions at the `train_points` c_i
  [b, n, d] (values [b, n, k]), w orthogonal to the linear part; a
  `regularization_weight` on the diagonal trades fit for smoothness.
  Evaluated at `query_points` [b, m, d] -> [b, m, k]."""
  c = tf.convert_to_tensor(train_points)
  f = tf.convert_to_tensor(train_values, c.dtype)
  n, d, k = tf.shape(c)[1], c.shape[-1], f.shape[-1]
  # Among the centres, from one Gram matrix (the reference's rounding).
  gram = tf.matmul(c, c, transpose_b=True)
  norms = tf.linalg.diag_part(gram)[:, :, None]
  a = _polyharmonic(norms - 2. * gram + tf.transpose(norms, [0, 2, 1]), order)
  if regularization_weight > 0:
    a += regularization_weight * tf.eye(n, dtype=c.dtype)[None]
  b = tf.concat([c, tf.ones_like(c[..., :1])], 2)
  lhs = tf.concat([
      tf.concat([a, tf.transpose(b, [0, 2, 1])], 1),
      tf.concat([b, tf.zeros([tf.shape(c)[0], d + 1, d + 1], c.dtype)], 1)],
                  2)
  rhs = tf.concat([f, tf.zeros([tf.shape(c)[0], d + 1, k], c.dtype)], 1)
  solution = tf.linalg.solve(lhs, rhs)
  w, v = solution[:, :n], solution[:, n:]
  q = tf.convert_to_tensor(query_points, c.dtype)
  return (tf.matmul(_polyharmonic(_squared_distances(q, c), order), w) +
          tf.matmul(tf.concat([q, tf.ones_like(q[..., :1])], 2), v))


def dense_image_warp(image, flow):
  """output[b, y, x] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1]],
  bilinear, the coordinates clamped to the image (tensorflow-addons'
  dense_image_warp). Float [b, h, w, c] -> float."""
  image = tf.convert_to_tensor(image)
  shape = tf.shape(image)
  height, width = shape[1], shape[2]
  grid = tf.stack(tf.meshgrid(tf.range(height), tf.range(width),
                              indexing='ij'), -1)
  query = tf.cast(grid, flow.dtype)[None] - flow
  coords, weights = [], []
  for axis, size in ((0, height), (1, width)):
    q = query[..., axis]
    low = tf.clip_by_value(tf.floor(q), 0.,
                           tf.cast(tf.maximum(size - 2, 0), q.dtype))
    coords.append(tf.cast(low, tf.int32))
    weights.append(tf.clip_by_value(q - low, 0., 1.)[..., None])
  (y0, x0), (wy, wx) = coords, weights
  batch = tf.broadcast_to(tf.range(shape[0])[:, None, None], tf.shape(y0))
  gather = lambda y, x: tf.gather_nd(image, tf.stack([batch, y, x], -1))
  y1 = tf.minimum(y0 + 1, height - 1)
  x1 = tf.minimum(x0 + 1, width - 1)
  top = gather(y0, x0) + wx * (gather(y0, x1) - gather(y0, x0))
  bottom = gather(y1, x0) + wx * (gather(y1, x1) - gather(y1, x0))
  return top + wy * (bottom - top)


def _boundary_points(height, width, per_edge):
  """Evenly spaced points on the image's edges (corners included)."""
  ys, xs = np.meshgrid(np.linspace(0, height - 1, per_edge + 2),
                       np.linspace(0, width - 1, per_edge + 2), indexing='ij')
  edge = (xs == 0) | (xs == width - 1) | (ys == 0) | (ys == height - 1)
  return np.stack([ys[edge], xs[edge]], -1)


def sparse_image_warp(image, source_control_point_locations,
                      dest_control_point_locations, interpolation_order=2,
                      regularization_weight=0., num_boundary_points=0):
  """Warps `image` [b, h, w, c] so that the pixel at each source control
  point [b, n, 2] (y, x) moves to its destination: the control-point flows
  interpolated to every pixel with a polyharmonic spline of
  `interpolation_order`, then `dense_image_warp`; `num_boundary_points` > 0
  pins that many points per edge (corners included) to zero flow. As
  tensorflow-addons' sparse_image_warp; returns (warped image, dense flows
  [b, h, w, 2])."""
  image = tf.convert_to_tensor(image)
  height, width = image.shape[1], image.shape[2]
  source = tf.cast(source_control_point_locations, image.dtype)
  dest = tf.cast(dest_control_point_locations, image.dtype)
  flows = dest - source
  if num_boundary_points > 0:
    edge = tf.constant(_boundary_points(height, width,
                                        num_boundary_points - 1), image.dtype)
    edge = tf.tile(edge[None], [tf.shape(dest)[0], 1, 1])
    dest = tf.concat([dest, edge], 1)
    flows = tf.concat([flows, tf.zeros_like(edge)], 1)
  grid = np.stack(np.meshgrid(np.arange(height), np.arange(width),
                              indexing='ij'), -1).reshape(-1, 2)
  grid = tf.tile(tf.constant(grid, image.dtype)[None],
                 [tf.shape(dest)[0], 1, 1])
  dense = tf.reshape(interpolate_spline(dest, flows, grid, interpolation_order,
                                        regularization_weight),
                     [-1, height, width, 2])
  return dense_image_warp(image, dense), dense


def random_warp(images, seed, max_control_length=23.,
                control_points_per_axis=2):
  """The official SimCLR warp of each image of a float batch [N, S, S, C]:
  a grid of control points at (i + 1) S / (points + 1), each moved by
  N(0, 1) times one length uniform in [0, max_control_length) per image."""
  side = images.shape[1]
  step = side / (control_points_per_axis + 1)
  points = np.array([[(i + 1) * step, (j + 1) * step]
                     for i in range(control_points_per_axis)
                     for j in range(control_points_per_axis)], np.float32)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  length = tf.random.stateless_uniform([batch, 1, 1], seeds[0], 0.,
                                       max_control_length)
  source = tf.tile(tf.constant(points)[None], [batch, 1, 1])
  flows = tf.random.stateless_normal(tf.shape(source), seeds[1]) * length
  warped, _ = sparse_image_warp(tf.cast(images, tf.float32), source,
                                source + flows)
  return tf.cast(warped, images.dtype)


def batch_random_blur(images, seed, blur_probability):
  """The official deferred blur (its batch_random_blur, applied in the
  training step to the model's inputs): one sigma uniform in [0.1, 2] for
  the whole batch, the kernel a tenth of the side, zero padding, each image
  blurred with probability `blur_probability`. Float images [N, S, S, C] on
  any scale."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  sigma = tf.random.stateless_uniform([], seeds[0], 0.1, 2.0)
  blurred = gaussian_blur(images, sigma, (images.shape[1] or 0) // 10)
  selected = tf.random.stateless_uniform(tf.shape(images)[:1],
                                         seeds[1]) < blur_probability
  return tf.where(selected[:, None, None, None], blurred, images)


def deferred_blur(config):
  """Whether the blur of `config`'s augmentation runs on the batch in the
  training step (--defer_blurring) rather than in the input pipeline."""
  return (config.defer_blurring and config.blur_probability > 0 and
          config.augmentation_type in ('SIMCLR', 'STACKED_RANDAUGMENT'))


def _random_apply(op, images, seed, probability):
  """`op` on the images that draw < probability, the rest untouched."""
  fires = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < probability
  index = tf.where(fires)
  return tf.tensor_scatter_nd_update(
      images, index, op(tf.gather_nd(images, index)))


def simclr_distort(images, seed, strength=0.5, blur_probability=0.5,
                   pytorch_color_jitter=False, jitter_probability=0.8,
                   grayscale_probability=0.2, warp_probability=0.):
  """SimCLR's distortion after the crop and flip, as the official code: colour
  jitter (p=0.8), grayscale (p=0.2), the warp (p=warp_probability,
  `random_warp`), Gaussian blur (p=blur_probability, kernel a tenth of the
  side, sigma uniform in [0.1, 2]). uint8 in, float32 0..255 out."""
  images = tf.cast(images, tf.float32) / 255.
  seeds = tf.random.experimental.stateless_split(seed, 4)
  if strength > 0:
    jitter_seed = seeds[0]
    images = _random_apply(
        lambda x: color_jitter(x, jitter_seed, strength, pytorch_color_jitter),
        images, tf.random.experimental.stateless_fold_in(jitter_seed, 1),
        jitter_probability)
  images = _random_apply(lambda x: tf.tile(_gray(x), [1, 1, 1, 3]), images,
                         seeds[1], grayscale_probability)
  if warp_probability > 0:
    warp_seed = tf.random.experimental.stateless_fold_in(seeds[1], 1)
    images = _random_apply(
        lambda x: random_warp(x, warp_seed), images,
        tf.random.experimental.stateless_fold_in(seeds[1], 2),
        warp_probability)
  if blur_probability > 0:
    side = images.shape[1] or 0
    blur_seed = seeds[2]
    images = _random_apply(
        lambda x: gaussian_blur(
            x, tf.random.stateless_uniform(tf.shape(x)[:1], blur_seed, 0.1,
                                           2.0), side // 10),
        images, seeds[3], blur_probability)
  return images * 255.


# --- The training augmentation, by the official names ----------------------------

def unimplemented(config):
  """A message naming the official setting in `config` (a Preprocessing or
  Config) whose behaviour is not built yet, or None."""
  kind = config.augmentation_type
  if config.augmentation_magnitude <= 0:  # The augmentation is skipped.
    return None
  if kind == 'AUTOAUGMENT' and config.autoaugment_policy == 'v0':
    return ('--augmentation_type=AUTOAUGMENT with --autoaugment_policy=v0 '
            "(the official: TF-Models' AutoAugment policy v0) is not "
            'implemented yet; --autoaugment_policy=imagenet or cifar10 selects '
            'the PIL-exact policies of Cubuk et al. (2019).')
  if (kind in ('RANDAUGMENT', 'STACKED_RANDAUGMENT') and
      config.randaugment_ops == 'tf_models'):
    return (f'--augmentation_type={kind} with --randaugment_ops=tf_models '
            "(the official: TF-Models' op set) is not implemented yet; "
            '--randaugment_ops=pil selects the PIL-exact RandAugment ops.')
  return None


def crop_views(image, seed, config, views):
  """`views` random-resized crops (with their flips) of one image of any size:
  [views, S, S, 3] uint8. The per-image step for sources whose images differ
  in size; `augment` then skips the crop and flip."""
  return random_resized_crop(
      tf.repeat(image[None], views, axis=0), seed, config.image_size,
      config.crop_area_range, flip=config.flip)


def augment(images, seed, config, cropped=False):
  """One augmented view of every image of a uint8 batch [N, H, W, 3] ->
  float32 [N, S, S, 3] in 0..255 units. `cropped` says the crop and flip were
  done already (`crop_views`). Stateless: the same seed, the same views."""
  message = unimplemented(config)
  if message:
    raise ValueError(message)
  images, _ = _as_batch(images)
  seeds = tf.random.experimental.stateless_split(seed, 4)
  if not cropped:
    if config.crop == 'pad':
      images = pad_crop_flip(images, seeds[0], config.random_crop_padding,
                             config.flip)
    elif config.crop == 'random_resized':
      images = random_resized_crop(images, seeds[0], config.image_size,
                                   config.crop_area_range, flip=config.flip)
    elif config.flip:
      mirror = random_flips(seeds[0], tf.shape(images)[0])
      images = tf.where(mirror[:, None, None, None],
                        tf.reverse(images, [2]), images)
  kind = config.augmentation_type
  magnitude = config.augmentation_magnitude
  if (kind == 'AUTOAUGMENT' and magnitude > 0 and
      config.autoaugment_policy == 'seed_cifar10'):
    from supcon_tf.data.seed_autoaugment import seed_autoaugment
    images = seed_autoaugment(images, seeds[1])
  elif kind == 'AUTOAUGMENT' and magnitude > 0:
    images = autoaugment(images, seeds[1],
                         POLICIES[config.autoaugment_policy],
                         config.posterize_bits_fix)
  elif kind == 'RANDAUGMENT' and magnitude > 0:
    images = randaugment(images, seeds[1], config.randaugment_layers,
                         magnitude, config.posterize_bits_fix)
  if config.cutout_size:
    images = cutout(images, seeds[2], config.cutout_size)
  # A deferred blur is the training step's (`batch_random_blur`).
  blur = 0. if deferred_blur(config) else config.blur_probability
  if kind == 'SIMCLR' and magnitude > 0:
    return simclr_distort(images, seeds[3], magnitude, blur,
                          config.use_pytorch_color_jitter,
                          warp_probability=config.warp_probability)
  if kind == 'STACKED_RANDAUGMENT' and magnitude > 0:
    # Official order: jitter, RandAugment (its defaults: 2 ops at level 10),
    # grayscale, blur.
    jittered = _random_apply(
        lambda x: color_jitter(x, seeds[1], magnitude,
                               config.use_pytorch_color_jitter),
        tf.cast(images, tf.float32) / 255., seeds[2], 0.8)
    images = tf.cast(tf.round(jittered * 255.), tf.uint8)
    images = randaugment(images, seeds[3], config.randaugment_layers, 10.,
                         config.posterize_bits_fix)
    return simclr_distort(images, tf.random.experimental.stateless_fold_in(
        seeds[3], 1), 0., blur, warp_probability=config.warp_probability)
  return tf.cast(images, tf.float32)


# --- Evaluation -----------------------------------------------------------------


def eval_crop(image, size, method='IDENTITY', crop_padding=32):
  """The official eval crops of one image [H, W, 3] to size x size:
  RESIZE_THEN_CROP (shorter side to size + crop_padding, central crop),
  CROP_THEN_RESIZE (central square of size / (size + crop_padding) of the
  shorter side, resized), CROP_THEN_DISTORT (tf.image.central_crop of that
  fraction, resized), IDENTITY (the image; resized if it is not size x size).
  Returns float32 0..255."""
  method = str(method).upper().rsplit('.', 1)[-1]
  if method not in enums.EVAL_CROP_METHODS:
    raise ValueError(f'eval_crop_method must be one of '
                     f'{", ".join(enums.EVAL_CROP_METHODS)}; got {method!r}.')
  image = tf.cast(image, tf.float32)
  shape = tf.shape(image)
  fraction = size / (size + crop_padding)
  if method == 'RESIZE_THEN_CROP':
    short = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    scale = (size + crop_padding) / short
    resized = tf.image.resize(
        image, tf.cast(scale * tf.cast(shape[:2], tf.float32), tf.int32))
    return tf.image.resize_with_crop_or_pad(resized, size, size)
  if method == 'CROP_THEN_RESIZE':
    side = tf.cast(fraction * tf.cast(tf.minimum(shape[0], shape[1]),
                                      tf.float32), tf.int32)
    top = (shape[0] - side + 1) // 2
    left = (shape[1] - side + 1) // 2
    return tf.image.resize(image[top:top + side, left:left + side],
                           [size, size])
  if method == 'CROP_THEN_DISTORT':
    return tf.image.resize(tf.image.central_crop(image, fraction),
                           [size, size])
  return tf.cond(
      tf.reduce_all(tf.equal(shape[:2], [size, size])),
      lambda: tf.reshape(image, [size, size, 3]),
      lambda: tf.image.resize(image, [size, size]))
