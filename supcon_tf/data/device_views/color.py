"""SimCLR's colour distortion (as `augment.color`): jitter, grey, blur and the
deferred blur, float images in [0, 1]."""
import keras

from supcon_tf.data.device_views.common import (
    column, on_floats, seed_generator, select)

ops = keras.ops


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
  f = column(factor)
  if index == 0:
    return images * f if pytorch else images + f
  if index == 1:
    mean = (ops.mean(_gray(images), axis=(1, 2, 3), keepdims=True) if pytorch
            else ops.mean(images, axis=(1, 2), keepdims=True))
    return f * images + (1. - f) * mean
  if index == 2 and pytorch:
    return f * images + (1. - f) * _gray(images)
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


@on_floats
def color_jitter(images, factors, order, pytorch=False):
  """SimCLR's jitter with given draws: the four ops at `factors` [N, 4]
  (brightness, contrast, saturation, hue), image i taking them in the
  order `order[i]` (a permutation of 0..3), clipped to [0, 1] after each."""
  for position in range(4):
    out = images
    for index in range(4):
      out = select(order[:, position] == index,
                    _jitter_op(index, images, factors[:, index], pytorch), out)
    images = ops.clip(out, 0., 1.)
  return images


@on_floats
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
  seed = seed_generator(seed)
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


@on_floats
def simclr_distort(images, jitter, factors, order, gray, blur, sigma,
                   pytorch=False):
  """SimCLR's distortion after the crop and flip (`augment.simclr_distort`)
  with given draws: the jitter where `jitter`, grayscale where `gray`, the
  blur (kernel a tenth of the side) where `blur`. 0..255 in and out."""
  images = images / 255.
  images = select(jitter, color_jitter(images, factors, order, pytorch),
                   images)
  images = select(gray, ops.repeat(_gray(images), 3, axis=-1), images)
  blurred = gaussian_blur(images, sigma, images.shape[1] // 10)
  return select(blur, blurred, images) * 255.


def deferred_blur_draws(batch, seed, blur_probability):
  """The official deferred blur's choices: one sigma for the whole call
  (uniform in [0.1, 2], as [N]) and `blur` [N] per image."""
  seed = seed_generator(seed)
  sigma = keras.random.uniform((), 0.1, 2.0, seed=seed)
  return {'deferred_sigma': ops.broadcast_to(sigma, (batch,)),
          'deferred_blur': keras.random.uniform((batch,), seed=seed) <
                           blur_probability}
