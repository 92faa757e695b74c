"""The pixel ops: PIL's semantics (as `augment.pil_ops`) and TF-Models'
(as `augment.tf_models_ops`), on float32 images of whole grey levels."""
import math

import keras
import numpy as np

from supcon_tf.data.device_views.common import (
    column, on_floats, truncate)

ops = keras.ops


# The pixel ops with PIL's semantics (as `augment.pil_ops`), float32 levels.

def _pil_gray(images):
  """PIL's convert('L'): (R*19595 + G*38470 + B*7471 + 2^15) >> 16, exact in
  float32 (every partial sum is an integer below 2^24)."""
  weighted = (images[..., 0:1] * 19595. + images[..., 1:2] * 38470. +
              images[..., 2:3] * 7471. + 32768.)
  return ops.floor(weighted / 65536.)


def _blend(degenerate, images, factor):
  """Image.blend(degenerate, image, factor): float32, clipped, truncated."""
  return truncate(degenerate + column(factor) * (images - degenerate))


@on_floats
def invert(images, _=None):
  return 255. - images


@on_floats
def posterize(images, bits):
  """Keep the `bits` high bits of every channel."""
  step = ops.power(2., 8. - column(bits))
  return ops.floor(images / step) * step


@on_floats
def solarize(images, threshold):
  """Invert every value >= threshold."""
  return ops.where(images < column(threshold), images, 255. - images)


@on_floats
def autocontrast(images, _=None):
  """Stretch each channel's [min, max] to [0, 255]."""
  low = ops.min(images, axis=(1, 2), keepdims=True)
  high = ops.max(images, axis=(1, 2), keepdims=True)
  scale = 255. / ops.maximum(high - low, 1.)
  stretched = ops.clip(ops.floor(images * scale + (-low * scale)), 0., 255.)
  return ops.where(high > low, stretched, images)


@on_floats
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


@on_floats
def brightness(images, factor):
  return _blend(ops.zeros_like(images), images, factor)


@on_floats
def color(images, factor):
  return _blend(_pil_gray(images), images, factor)


@on_floats
def contrast(images, factor):
  """Blend with the rounded mean grey."""
  mean = ops.floor(ops.mean(_pil_gray(images), axis=(1, 2, 3),
                            keepdims=True) + 0.5)
  return _blend(mean, images, factor)


@on_floats
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


# TF-Models' ops (as `augment.tf_models_ops`, the official AutoAugment v0).

def _tf_gray(images):
  """tf.image.rgb_to_grayscale of uint8 images: the weighted sum of x / 255,
  back to uint8 as convert_image_dtype does (x 255.5, truncated)."""
  weighted = (images[..., 0:1] / 255. * 0.2989 + images[..., 1:2] / 255. *
              0.587 + images[..., 2:3] / 255. * 0.114)
  return ops.floor(weighted * 255.5)


@on_floats
def tf_posterize(images, bits):
  """TF's uint8 shift by 8 - bits, which it clamps to 7 (0 bits keeps 1)."""
  step = ops.power(2., ops.minimum(8. - column(bits), 7.))
  return ops.floor(images / step) * step


@on_floats
def tf_solarize(images, threshold):
  """The threshold as uint8: 256 wraps to 0 and inverts every pixel."""
  threshold = ops.mod(ops.cast(threshold, 'float32'), 256.)
  return ops.where(images < column(threshold), images, 255. - images)


@on_floats
def solarize_add(images, addition, threshold=128.):
  added = ops.clip(images + ops.floor(column(addition)), 0., 255.)
  return ops.where(images < threshold, added, images)


@on_floats
def tf_color(images, factor):
  return _blend(_tf_gray(images), images, factor)


@on_floats
def tf_contrast(images, factor):
  """TF-Models blends with its histogram's sum over 256: the pixel count."""
  degenerate = min(math.floor(images.shape[1] * images.shape[2] / 256.), 255)
  return _blend(ops.full_like(images, float(degenerate)), images, factor)


@on_floats
def tf_sharpness(images, factor):
  """Blend with the 3 x 3 SMOOTH kernel's VALID convolution, truncated (not
  rounded), the border left as it is."""
  height, width = images.shape[1], images.shape[2]
  total = 4. * images[:, 1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total = total + images[:, dy:dy + height - 2, dx:dx + width - 2]
  smooth = ops.pad(truncate(total / 13.), ((0, 0), (1, 1), (1, 1), (0, 0)))
  interior = np.zeros((1, height, width, 1), bool)
  interior[:, 1:-1, 1:-1] = True
  return _blend(ops.where(ops.convert_to_tensor(interior), smooth, images),
                images, factor)


@on_floats
def tf_autocontrast(images, _=None):
  """Its lookup table: level * scale + (-low * scale), truncated."""
  low = ops.min(images, axis=(1, 2), keepdims=True)
  high = ops.max(images, axis=(1, 2), keepdims=True)
  scale = 255. / ops.maximum(high - low, 1.)
  stretched = truncate(images * scale + (-low * scale))
  return ops.where(high > low, stretched, images)


TF_MODELS_PIXEL_OPS = dict(
    PIXEL_OPS, Posterize=tf_posterize, Solarize=tf_solarize,
    SolarizeAdd=solarize_add, Color=tf_color, Contrast=tf_contrast,
    Sharpness=tf_sharpness, AutoContrast=tf_autocontrast)
