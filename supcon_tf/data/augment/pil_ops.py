"""AutoAugment image ops in plain TensorFlow, with PIL's exact semantics.

Every op in `OPS` maps `fn(image, magnitude) -> image` on uint8 images
[H, W, 3] or batches [N, H, W, 3]; the magnitude is in the op's PIL units (bits,
threshold, enhancement factor) and is a scalar or, for a batch, one value per
image [N]. The reference is Pillow (`ImageOps`, `ImageEnhance`,
`Image.rotate` and `Image.transform` with nearest-neighbour sampling and a grey
(128, 128, 128) fill); the tests compare every op with it pixel for pixel.

`PIL` is the family of these ops with the original AutoAugment's level
convention (`level_to_magnitude`): the CIFAR-10 and ImageNet policies and
RandAugment as the papers' code has them.
"""
import math

import tensorflow as tf

from supcon_tf.data.augment.batching import (
    FILL_VALUE, batched, per_image, per_image_vector, project, select)
from supcon_tf.data.augment.engine import GEOMETRIC_OPS, IDENTITY, Family


def _blend(degenerate, images, factor):
  """PIL's Image.blend(degenerate, image, factor) on uint8 images.

  PIL computes in single precision, in1 + factor * (in2 - in1), clips to
  0..255 and truncates.
  """
  factor = per_image(factor, images, tf.float32)
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


@batched
def invert(images, _=None):
  """ImageOps.invert."""
  return 255 - images


@batched
def posterize(images, bits):
  """ImageOps.posterize(bits): keep the `bits` high bits of every channel."""
  shift = 8 - per_image(bits, images, tf.int32)
  pixels = tf.cast(images, tf.int32)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift),
                                       shift), tf.uint8)


@batched
def solarize(images, threshold):
  """ImageOps.solarize(threshold): invert every value >= threshold."""
  threshold = per_image(threshold, images, tf.int32)
  return select(tf.cast(images, tf.int32) < threshold, images, 255 - images)


@batched
def autocontrast(images, _=None):
  """ImageOps.autocontrast(): stretch each channel's [min, max] to [0, 255]."""
  pixels = tf.cast(images, tf.float64)  # PIL's lut is built in doubles.
  low = tf.reduce_min(pixels, axis=(1, 2), keepdims=True)
  high = tf.reduce_max(pixels, axis=(1, 2), keepdims=True)
  scale = 255. / tf.maximum(high - low, 1.)
  stretched = tf.clip_by_value(
      tf.math.floor(pixels * scale + (-low * scale)), 0., 255.)
  return tf.where(high > low, tf.cast(stretched, tf.uint8), images)


@batched
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


@batched
def brightness(images, factor):
  """ImageEnhance.Brightness(image).enhance(factor): blend with black."""
  return _blend(tf.zeros_like(images), images, factor)


@batched
def color(images, factor):
  """ImageEnhance.Color(image).enhance(factor): blend with the grayscale."""
  return _blend(tf.broadcast_to(_grayscale(images), tf.shape(images)), images,
                factor)


@batched
def contrast(images, factor):
  """ImageEnhance.Contrast(image).enhance(factor): blend with the mean grey."""
  luma = tf.cast(_grayscale(images), tf.float64)
  mean = tf.math.floor(tf.reduce_mean(luma, axis=(1, 2, 3), keepdims=True) +
                       0.5)
  return _blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


@batched
def sharpness(images, factor):
  """ImageEnhance.Sharpness(image).enhance(factor): blend with SMOOTH.

  ImageFilter.SMOOTH is the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13;
  PIL leaves the one-pixel border as it is.
  """
  pixels = tf.cast(images, tf.float32)
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.
  channels = tf.shape(images)[3]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  # SAME, then the border from the image: any size (below 3x3 all border).
  smooth = tf.nn.depthwise_conv2d(pixels, kernel, [1, 1, 1, 1], 'SAME')
  smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0., 255.), tf.uint8)
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  rows, columns = tf.range(height), tf.range(width)
  interior = (((rows > 0) & (rows < height - 1))[:, None] &
              ((columns > 0) & (columns < width - 1))[None, :])
  smooth = select(
      tf.broadcast_to(interior[None, :, :, None], tf.shape(images)), smooth,
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
  return project(images, transforms, 'NEAREST', 'CONSTANT', FILL_VALUE)


@batched
def rotate(images, degrees):
  """Image.rotate(degrees): counter-clockwise about the centre, same size."""
  # As PIL: angle = -radians(degrees % 360).
  angle = -((per_image_vector(degrees, images) % 360.) * (math.pi / 180.))
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
    m = per_image_vector(magnitude, images)
    identity = tf.constant([1., 0., 0., 0., 1., 0.], tf.float64)
    one_hot = tf.one_hot(position, 6, dtype=tf.float64)
    return _affine(images, identity * (1. - one_hot) + m[:, None] * one_hot)
  return op


shear_x = batched(_shear_or_translate(1))


shear_x.__doc__ = 'Image.transform(AFFINE, (1, m, 0, 0, 1, 0)).'


shear_y = batched(_shear_or_translate(3))


shear_y.__doc__ = 'Image.transform(AFFINE, (1, 0, 0, m, 1, 0)).'


translate_x = batched(_shear_or_translate(2))


translate_x.__doc__ = 'Image.transform(AFFINE, (1, 0, m, 0, 1, 0)): m pixels.'


translate_y = batched(_shear_or_translate(5))


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


def level_to_magnitude(name, level, _draw=None, posterize_bits_fix=False):
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


# The family: geometric ops take a random sign; RandAugment's ops are these
# without Invert, plus the identity (Cubuk et al. 2020).
PIL = Family(
    ops=OPS, level_to_arg=level_to_magnitude, signed=GEOMETRIC_OPS,
    randaugment_ops=(IDENTITY, 'AutoContrast', 'Equalize', 'Rotate',
                     'Solarize', 'Color', 'Posterize', 'Contrast',
                     'Brightness', 'Sharpness', 'ShearX', 'ShearY',
                     'TranslateX', 'TranslateY'),
    config_fields=('posterize_bits_fix',))
