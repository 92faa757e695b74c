"""The ops of TF-Models' AutoAugment and RandAugment (official.legacy.
image_classification.augment, which the official preprocessing imports), on
batches: uint8 [N, H, W, 3], each argument a scalar or one value per image.

Their semantics, including their quirks: blends truncate to uint8; Contrast
blends with the pixel count over 256 (its histogram's sum, not the mean grey);
Solarize's threshold is taken as uint8 (256 wraps to 0, inverting everything);
the geometric ops use nearest sampling and Keras' default reflect fill, so
their grey `replace` never shows. Written for speed on CPU: per-channel
lookup tables, broadcasts over rows rather than a trailing axis of 3.
Tested against TF-Models' own ops (tests/fixtures/tf_models_ops.npz).

`TF_MODELS` is the family of these ops with TF-Models' level convention
(`level_to_arg`): AutoAugment with translate_const 250 and cutout_const 100,
RandAugment with its 16 ops plus the identity, translate_const 100 and
cutout_const 40; geometric ops negated with probability 1/2.
"""
import tensorflow as tf

from supcon_tf.data.augment import crops
from supcon_tf.data.augment.batching import per_image_vector, project, select
from supcon_tf.data.augment.engine import GEOMETRIC_OPS, IDENTITY, Family

REPLACE = 128


def _vector(value, images, dtype=tf.float32):
  return per_image_vector(value, images, dtype)


def blend(image1, image2, factor):
  """image1 + factor (image2 - image1), truncated to uint8. TF-Models returns
  image1 itself at factor 0 and image2 at 1: the formula gives exactly those
  on whole grey levels, so no case is needed."""
  factor = _vector(factor, image2)[:, None, None, None]
  first = tf.cast(image1, tf.float32)
  temp = first + factor * (tf.cast(image2, tf.float32) - first)
  return tf.cast(tf.clip_by_value(temp, 0., 255.), tf.uint8)


def _grayscale(images):
  """tf.image.rgb_to_grayscale of uint8 images, as uint8 [N, H, W, 1]."""
  return tf.image.rgb_to_grayscale(images)


def invert(images, _=None):
  return 255 - images


def posterize(images, bits):
  shift = tf.cast(8 - _vector(bits, images, tf.int32), tf.uint8)[
      :, None, None, None]
  return tf.bitwise.left_shift(tf.bitwise.right_shift(images, shift), shift)


def solarize(images, threshold):
  # TF-Models compares with the threshold as uint8: 256 (level 10) wraps to
  # 0 and inverts every pixel.
  threshold = tf.cast(_vector(threshold, images, tf.int32), tf.uint8)
  # [N, pixels] against [N, 1]: a faster broadcast than [N, 1, 1, 1].
  flat = tf.reshape(images, [tf.shape(images)[0], -1])
  return tf.reshape(select(flat < threshold[:, None], flat, 255 - flat),
                    tf.shape(images))


def solarize_add(images, addition, threshold=128):
  addition = _vector(addition, images, tf.int32)[:, None, None, None]
  added = tf.cast(tf.clip_by_value(tf.cast(images, tf.int32) + addition, 0,
                                   255), tf.uint8)
  return select(images < threshold, added, images)


def color(images, factor):
  # blend(grayscale_to_rgb(gray), images): the grey channel broadcasts.
  return blend(_grayscale(images), images, factor)


def contrast(images, factor):
  # TF-Models: sum(histogram) / 256, the pixel count over 256.
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  mean = tf.cast(height * width, tf.float32) / 256.
  degenerate = tf.cast(tf.clip_by_value(mean, 0., 255.), tf.uint8)
  degenerate = tf.fill(tf.shape(images), degenerate)
  return blend(degenerate, images, factor)


def brightness(images, factor):
  return blend(tf.zeros_like(images), images, factor)


def sharpness(images, factor):
  floats = tf.cast(images, tf.float32)
  kernel = tf.tile(tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]],
                               shape=[3, 3, 1, 1]) / 13., [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(floats, kernel, [1, 1, 1, 1], 'VALID')
  smooth = tf.cast(tf.clip_by_value(smooth, 0., 255.), tf.uint8)
  inside = tf.pad(tf.ones_like(smooth), [[0, 0], [1, 1], [1, 1], [0, 0]])
  smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
  return blend(select(inside == 1, smooth, images), images, factor)


def _channel_values(images):
  """[N, H, W, 3] uint8 -> int32 value + 256 (3 image + channel): indices
  into per-image, per-channel tables of 256 levels. (A row of W * 3 offsets
  broadcasts fast where a trailing 3 would not.)"""
  shape = tf.shape(images)
  rows = tf.reshape(tf.cast(images, tf.int32), [shape[0], -1, shape[2] * 3])
  channel = tf.tile(tf.range(3) * 256, [shape[2]])
  return rows + channel[None, None] + (tf.range(shape[0]) * 768)[:, None, None]


def _apply_tables(images, tables, values=None):
  """Each pixel through its image's and channel's table: tables [N, 3, 256]."""
  if values is None:
    values = _channel_values(images)
  flat = tf.reshape(tf.cast(tables, tf.uint8), [-1])
  return tf.reshape(tf.gather(flat, values), tf.shape(images))


def autocontrast(images, _=None):
  low = tf.cast(tf.reduce_min(images, axis=[1, 2]), tf.float32)
  high = tf.cast(tf.reduce_max(images, axis=[1, 2]), tf.float32)
  scale = 255. / (high - low)
  levels = tf.range(256, dtype=tf.float32)
  scaled = levels * scale[..., None] + (-low * scale)[..., None]
  scaled = tf.cast(tf.clip_by_value(scaled, 0., 255.), tf.uint8)
  return _apply_tables(images, tf.where((high > low)[..., None], scaled,
                                        tf.cast(levels, tf.uint8)))


def equalize(images, _=None):
  """Per image and channel: PIL's equalize as TF-Models computes it."""
  count = tf.shape(images)[0] * 3
  values = _channel_values(images)
  histograms = tf.reshape(tf.math.bincount(
      tf.reshape(values, [-1]), minlength=count * 256,
      maxlength=count * 256), [count, 256])
  last = tf.reduce_max(tf.where(histograms > 0, tf.range(256)[None], -1),
                       axis=1)
  step = (tf.reduce_sum(histograms, 1) -
          tf.gather(histograms, last, batch_dims=1)) // 255
  safe = tf.maximum(step, 1)[:, None]
  lut = (tf.cumsum(histograms, axis=1) + step[:, None] // 2) // safe
  lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]],
                                   1), 0, 255)
  lut = tf.where(step[:, None] == 0, tf.range(256)[None], lut)
  return _apply_tables(images, lut, values)


def _transform(images, transforms):
  """TF-Models' wrap + transform + unwrap: it adds a channel of ones,
  projects with nearest sampling and Keras' default reflect fill, and puts
  its grey `replace` where that channel became 0. A reflect fill maps every
  output pixel inside the image, so the channel never becomes 0 and the grey
  never shows: the transform of the image alone is the same, at 3/4 of the
  work (and the geometric ops need no `replace`)."""
  return project(images, transforms, 'NEAREST', 'REFLECT')


def rotate(images, degrees):
  radians = _vector(degrees, images) * (3.141592653589793 / 180.)
  height = tf.cast(tf.shape(images)[1], tf.float32)
  width = tf.cast(tf.shape(images)[2], tf.float32)
  cos, sin = tf.cos(radians), tf.sin(radians)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.
  zeros = tf.zeros_like(cos)
  return _transform(images, tf.stack(
      [cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], 1))


def _affine(images, a, b, c, d, e, f):
  n = tf.shape(images)[0]
  entries = [_vector(v, images) if not isinstance(v, (int, float)) else
             tf.fill([n], float(v)) for v in (a, b, c, d, e, f)]
  zeros = tf.zeros([n])
  return _transform(images, tf.stack(entries + [zeros, zeros], 1))


def shear_x(images, level):
  return _affine(images, 1., level, 0., 0., 1., 0.)


def shear_y(images, level):
  return _affine(images, 1., 0., 0., level, 1., 0.)


def translate_x(images, pixels):
  return _affine(images, 1., 0., _vector(pixels, images), 0., 1., 0.)


def translate_y(images, pixels):
  return _affine(images, 1., 0., 0., 0., 1., _vector(pixels, images))


def cutout(images, seed, pad_size, replace=REPLACE):
  """TF-Models' cutout: the 2 pad_size square around a uniform centre
  (rows from max(0, cy - pad) to cy + pad), set to `replace`."""
  return crops.cutout(images, seed, 2 * _vector(pad_size, images, tf.int32),
                      replace)


OPS = {
    'AutoContrast': autocontrast, 'Equalize': equalize, 'Invert': invert,
    'Rotate': rotate, 'Posterize': posterize, 'Solarize': solarize,
    'SolarizeAdd': solarize_add, 'Color': color, 'Contrast': contrast,
    'Brightness': brightness, 'Sharpness': sharpness, 'ShearX': shear_x,
    'ShearY': shear_y, 'TranslateX': translate_x, 'TranslateY': translate_y,
}


def level_to_arg(name, level, _draw=None, cutout_const=100.,
                 translate_const=250.):
  """TF-Models' level (0..10) -> the op's argument, before the sign."""
  level = tf.cast(level, tf.float32)
  integer = lambda scale: tf.math.floor(level / 10. * scale)
  if name == 'Rotate':
    return level / 10. * 30.
  if name in ('ShearX', 'ShearY'):
    return level / 10. * 0.3
  if name in ('TranslateX', 'TranslateY'):
    return level / 10. * translate_const
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level / 10. * 1.8 + 0.1
  if name == 'Posterize':
    return integer(4.)
  if name == 'Solarize':
    return integer(256.)
  if name == 'SolarizeAdd':
    return integer(110.)
  if name == 'Cutout':
    return integer(cutout_const)
  return tf.zeros_like(level)  # AutoContrast, Equalize, Invert.


TF_MODELS = Family(
    ops=OPS, level_to_arg=level_to_arg, signed=GEOMETRIC_OPS,
    randaugment_ops=('AutoContrast', 'Equalize', 'Invert', 'Rotate',
                     'Posterize', 'Solarize', 'Color', 'Contrast',
                     'Brightness', 'Sharpness', 'ShearX', 'ShearY',
                     'TranslateX', 'TranslateY', 'Cutout', 'SolarizeAdd',
                     IDENTITY),
    randaugment_options=dict(cutout_const=40., translate_const=100.),
    seeded_ops={'Cutout': cutout})
