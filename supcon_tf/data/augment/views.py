"""The training view by the official names, and the eval view."""
import tensorflow as tf

from supcon_tf import enums
from supcon_tf.data.augment.batching import as_batch, random_apply, select
from supcon_tf.data.augment.engine import autoaugment, randaugment
from supcon_tf.data.augment.policies import POLICIES, RANDAUGMENT_FAMILIES
from supcon_tf.data.augment.crops import (
    cutout, official_crop_draws, pad_crop_flip, random_flips,
    random_resized_crop, resize_window)
from supcon_tf.data.augment.color import color_jitter, simclr_distort


def deferred_blur(config):
  """Whether the blur of `config`'s augmentation runs on the batch in the
  training step (--defer_blurring) rather than in the input pipeline."""
  return (config.defer_blurring and config.blur_probability > 0 and
          config.augmentation_type in ('SIMCLR', 'STACKED_RANDAUGMENT'))


def crop_views(image, seed, config, views):
  """`views` random-resized crops (with their flips) of one image of any size:
  [views, S, S, 3] uint8, the draws `augment` makes for the image repeated
  `views` times. The per-image step for sources whose images differ in size;
  `augment` then skips the crop and flip."""
  windows, mirror = official_crop_draws(
      tf.shape(image), seed, views, config.crop_area_range, config.flip)
  return window_views(image, windows, mirror, config.image_size)


def window_views(image, windows, mirror, size, origin=(0, 0)):
  """The `windows` [V, 4] of `image` resized to size x size and mirrored
  where `mirror` [V] (`official_crop_draws`): [V, S, S, 3] uint8. `image`
  may be a region of a larger image, with that image's pixel `origin` at its
  (0, 0); the windows are in the larger image's pixels."""
  return tf.stack([resize_window(image, windows[v], size, mirror[v], origin)
                   for v in range(windows.shape[0])])


# Graph code without Python control flow on tensors: AutoGraph need not
# convert it (converting this package's functions took 10 s and more of every
# run's start on a 2-core CPU).
@tf.autograph.experimental.do_not_convert
def augment(images, seed, config, cropped=False):
  """One augmented view of every image of a uint8 batch [N, H, W, 3] ->
  float32 [N, S, S, 3] in 0..255 units. `cropped` says the crop and flip were
  done already (`crop_views`). Stateless: the same seed, the same views."""
  images, _ = as_batch(images)
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
      images = select(tf.broadcast_to(mirror[:, None, None, None],
                                      tf.shape(images)),
                      tf.reverse(images, [2]), images)
  kind = config.augmentation_type
  magnitude = config.augmentation_magnitude
  if kind == 'AUTOAUGMENT' and magnitude > 0:
    family, policy = POLICIES[config.autoaugment_policy]
    images = autoaugment(images, seeds[1], policy, family,
                         **family.options(config))
  elif kind == 'RANDAUGMENT' and magnitude > 0:
    images = _randaugment(images, seeds[1], config, magnitude)
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
    jittered = random_apply(
        lambda x: color_jitter(x, seeds[1], magnitude,
                               config.use_pytorch_color_jitter),
        tf.cast(images, tf.float32) / 255., seeds[2], 0.8)
    images = tf.cast(tf.round(jittered * 255.), tf.uint8)
    images = _randaugment(images, seeds[3], config, 10.)
    return simclr_distort(images, tf.random.experimental.stateless_fold_in(
        seeds[3], 1), 0., blur, warp_probability=config.warp_probability)
  return tf.cast(images, tf.float32)


def _randaugment(images, seed, config, magnitude):
  """RandAugment on the op set `config.randaugment_ops` names."""
  family = RANDAUGMENT_FAMILIES[config.randaugment_ops]
  return randaugment(images, seed, family, config.randaugment_layers,
                     magnitude, **family.options(config))


def _central_window(height, width, side):
  """The official _center_crop_window: offsets (size - side + 1) // 2."""
  return (height - side + 1) // 2, (width - side + 1) // 2


def _resized(image, shape):
  """The official _resize_image of a uint8 image: bilinear, cast back to
  uint8 (truncation); as float32."""
  return tf.floor(tf.image.resize(image, shape))


def eval_crop(image, size, method='IDENTITY', crop_padding=32):
  """The official eval crops of one image [H, W, 3] to size x size (its
  _crop_to_square with is_training False): RESIZE_THEN_CROP (shorter side to
  size + crop_padding, the central size x size), CROP_THEN_RESIZE (the central
  square of size / (size + crop_padding) of the shorter side, resized),
  CROP_THEN_DISTORT (tf.image.central_crop of that fraction, resized),
  IDENTITY (the image; resized if it is not size x size). Resizes are
  bilinear and truncated to whole levels, as the official uint8 casts.
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
    resized = _resized(image, tf.cast(scale * tf.cast(shape[:2], tf.float32),
                                      tf.int32))
    top, left = _central_window(tf.shape(resized)[0], tf.shape(resized)[1],
                                size)
    return resized[top:top + size, left:left + size]
  if method == 'CROP_THEN_RESIZE':
    side = tf.cast(fraction * tf.cast(tf.minimum(shape[0], shape[1]),
                                      tf.float32), tf.int32)
    top, left = _central_window(shape[0], shape[1], side)
    return _resized(image[top:top + side, left:left + side], [size, size])
  if method == 'CROP_THEN_DISTORT':
    return _resized(tf.image.central_crop(image, fraction), [size, size])
  return tf.cond(
      tf.reduce_all(tf.equal(shape[:2], [size, size])),
      lambda: tf.reshape(image, [size, size, 3]),
      lambda: _resized(image, [size, size]))
