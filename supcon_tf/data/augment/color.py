"""SimCLR colour distortion (float images in [0, 1]): jitter, grayscale, the
Gaussian blur (in the view or deferred to the training step), the warp step.
"""
import tensorflow as tf

from supcon_tf.data.augment import batching
from supcon_tf.data.augment.batching import (
    apply_by_group, per_image, per_image_vector, random_apply, select)
from supcon_tf.data.augment.warp import random_warp


GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # tf.image.rgb_to_grayscale, torchvision


def _gray(images):
  return tf.reduce_sum(images * tf.constant(GRAY_WEIGHTS, images.dtype),
                       axis=-1, keepdims=True)


def adjust_brightness(images, factor, pytorch=False):
  """torchvision: image * factor; TensorFlow: image + delta (`factor`)."""
  images = tf.cast(images, tf.float32)
  factor = per_image(factor, images, images.dtype)
  return images * factor if pytorch else images + factor


def adjust_contrast(images, factor, pytorch=False):
  """Blend with the mean: torchvision's mean of the grayscale image,
  TensorFlow's per-channel mean."""
  images = tf.cast(images, tf.float32)
  factor = per_image(factor, images, images.dtype)
  if pytorch:
    mean = tf.reduce_mean(_gray(images), axis=(1, 2, 3), keepdims=True)
  else:
    mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
  return factor * images + (1. - factor) * mean


def adjust_saturation(images, factor, pytorch=False):
  """torchvision: blend with the grayscale; TensorFlow: scale HSV saturation."""
  images = tf.cast(images, tf.float32)
  factor = per_image(factor, images, images.dtype)
  if pytorch:
    return factor * images + (1. - factor) * _gray(images)
  hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
  saturation = tf.clip_by_value(saturation * factor[..., 0], 0., 1.)
  return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def adjust_hue(images, delta, pytorch=False):
  """Rotate the hue by `delta` turns (the same in both)."""
  images = tf.cast(images, tf.float32)
  del pytorch
  delta = per_image(delta, images, images.dtype)[..., 0]
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
  factors = [batching.uniform([batch], seeds[i], lo, hi)
             for i, (lo, hi) in enumerate(ranges)]
  order = tf.argsort(batching.uniform([batch, 4], seeds[4]),
                     axis=1)
  for position in range(4):
    images = tf.clip_by_value(apply_by_group(images, order[:, position], [
        lambda x, where, op=op, factor=factor: op(
            x, tf.gather(factor, where), pytorch)
        for op, factor in zip(JITTER_OPS, factors)]), 0., 1.)
  return images


def gaussian_blur(images, sigma, kernel_size):
  """Separable Gaussian blur of float images, one sigma per image, zero
  padding ('SAME'), as the official SimCLR code."""
  radius = kernel_size // 2
  if radius < 1:
    return images
  x = tf.range(-radius, radius + 1, dtype=images.dtype)
  sigma = tf.cast(per_image_vector(sigma, images, images.dtype), images.dtype)
  weights = tf.exp(-tf.square(x)[None] / (2. * tf.square(sigma)[:, None]))
  weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
  # Every image's channels side by side in one depthwise convolution (its
  # 'SAME' padding is zeros): 7x faster on one core than summing 2 x k
  # shifted copies, the same sums in another order.
  shape = tf.shape(images)

  def blur():
    channels = shape[0] * shape[3]
    stacked = tf.reshape(tf.transpose(images, [1, 2, 0, 3]),
                         [1, shape[1], shape[2], channels])
    taps = tf.repeat(tf.transpose(weights), shape[3], axis=1)  # [k, N * C]
    stacked = tf.nn.depthwise_conv2d(
        stacked, tf.reshape(taps, [1, -1, channels, 1]), [1, 1, 1, 1], 'SAME')
    stacked = tf.nn.depthwise_conv2d(
        stacked, tf.reshape(taps, [-1, 1, channels, 1]), [1, 1, 1, 1], 'SAME')
    return tf.transpose(tf.reshape(stacked, [shape[1], shape[2], shape[0],
                                             shape[3]]), [2, 0, 1, 3])
  # The kernel refuses zero channels: an empty batch (no image drew the blur).
  return tf.cond(shape[0] > 0, blur, lambda: images)


def batch_random_blur(images, seed, blur_probability):
  """The official deferred blur (its batch_random_blur, applied in the
  training step to the model's inputs): one sigma uniform in [0.1, 2] for
  the whole batch, the kernel a tenth of the side, zero padding, each image
  blurred with probability `blur_probability`. Float images [N, S, S, C] on
  any scale."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  sigma = tf.random.stateless_uniform([], seeds[0], 0.1, 2.0)  # per batch
  blurred = gaussian_blur(images, sigma, (images.shape[1] or 0) // 10)
  selected = batching.uniform([tf.shape(images)[0]],
                              seeds[1]) < blur_probability
  return select(selected[:, None, None, None], blurred, images)


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
    images = random_apply(
        lambda x: color_jitter(x, jitter_seed, strength, pytorch_color_jitter),
        images, tf.random.experimental.stateless_fold_in(jitter_seed, 1),
        jitter_probability)
  images = random_apply(lambda x: tf.tile(_gray(x), [1, 1, 1, 3]), images,
                         seeds[1], grayscale_probability)
  if warp_probability > 0:
    warp_seed = tf.random.experimental.stateless_fold_in(seeds[1], 1)
    images = random_apply(
        lambda x: random_warp(x, warp_seed), images,
        tf.random.experimental.stateless_fold_in(seeds[1], 2),
        warp_probability)
  if blur_probability > 0:
    side = images.shape[1] or 0
    blur_seed = seeds[2]
    images = random_apply(
        lambda x: gaussian_blur(
            x, batching.uniform([tf.shape(x)[0]], blur_seed, 0.1, 2.0),
            side // 10),
        images, seeds[3], blur_probability)
  return images * 255.
