"""Batches, per-image values and per-image random draws: what every
augmentation op shares.

Per-image draws (`uniform`, `normal`, `image_seeds`) are those of the image's
position in its global batch when the pipeline says where the images sit
(`example_positions`): then the same seed gives each example the same views
whether the global batch is augmented whole or in replica chunks on several
workers. Ops applied to some of the images (`apply_by_group`, `random_apply`)
pass the positions of those on.

How: `_POSITIONS` is a stack of (positions, batch size), per Python process,
read while a function is traced, never while it runs. Who pushes it:
`example_positions`, entered by data/pipeline.py around the augmentation of
each chunk of a global batch (its examples' places in that batch) and by
training/step.py around the deferred blur (each replica's share of the
global batch); `_subset` pushes the positions of a subset inside it. What
reads it: `_per_image`, so every draw (`uniform`, `normal`, `image_seeds`)
draws for the whole batch and keeps the rows of the images at hand. With the
stack empty, draws are for the images given, in their order.
"""
import contextlib

import tensorflow as tf


FILL_VALUE = 128  # PIL AutoAugment's grey fill, close to the CIFAR mean.


def as_batch(image):
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


def per_image_vector(magnitude, images, dtype=tf.float64):
  """A scalar or [N] magnitude as [N], one value per image."""
  return tf.broadcast_to(tf.cast(magnitude, dtype), tf.shape(images)[:1])


def per_image(magnitude, images, dtype):
  """A scalar or [N] magnitude as [N, 1, 1, 1] for broadcasting."""
  return tf.reshape(per_image_vector(magnitude, images, dtype), [-1, 1, 1, 1])


def batched(fn):
  """Lets `fn(images [N, H, W, C], magnitude)` also take one image."""
  def op(image, magnitude=None):
    images, unbatch = as_batch(image)
    out = fn(images, magnitude)
    return out[0] if unbatch else out
  op.__name__ = fn.__name__
  op.__doc__ = fn.__doc__
  return op


def project(images, transforms, interpolation, fill_mode, fill_value=0.):
  """ImageProjectiveTransformV3 to the images' own size: output pixel (x, y)
  reads input (a0 x + a1 y + a2, b0 x + b1 y + b2) (pixel indices; transforms
  [N, 8]). Keeps the static shape, which the op loses when the batch size is
  unknown (the ops after it may need the image size)."""
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=tf.cast(transforms, tf.float32),
      output_shape=tf.shape(images)[1:3], fill_value=float(fill_value),
      interpolation=interpolation, fill_mode=fill_mode)
  out.set_shape(images.shape)
  return out


def select(condition, x, y):
  """tf.where(condition, x, y) for uint8 or float images, exactly, as
  arithmetic: TensorFlow's select kernel took 0.6-1 ms per 224 x 224 image
  on one core, several times what these ops take together. uint8 wraps
  modulo 256, so y + 1 * (x - y) is x; floats multiply by 1 and 0 exactly."""
  mask = tf.cast(condition, x.dtype)
  if x.dtype == tf.uint8:
    return y + mask * (x - y)
  return x * mask + y * (1 - mask)


def apply_by_group(images, group, ops):
  """Image i becomes `ops[group[i]](its images, their indices)` (indices
  into `images`, for per-image arguments); a group whose op is None, or
  group == len(ops), leaves its images as they are. One partition and one
  stitch whatever the number of ops: a gather and a scatter of the whole
  batch per op cost more than the ops (0.44 ms of AutoAugment's 1.5 ms per
  224 x 224 image on one core)."""
  count = len(ops)
  index = tf.dynamic_partition(tf.range(tf.shape(images)[0]), group,
                               count + 1)
  parts = tf.dynamic_partition(images, group, count + 1)
  changed = []
  for op, part, where in zip(ops, parts, index):
    if op is None:
      changed.append(part)
      continue
    with _subset(where[:, None]):
      # An op need not take an empty batch.
      changed.append(tf.cond(
          tf.size(where) > 0, lambda op=op, part=part, where=where: op(
              part, where), lambda part=part: part))
  out = tf.dynamic_stitch(index, changed + [parts[count]])
  out.set_shape(images.shape)
  return out


def random_apply(op, images, seed, probability):
  """`op` on the images that draw < probability, the rest untouched."""
  fires = uniform([tf.shape(images)[0]], seed) < probability
  return apply_by_group(images, tf.where(fires, 0, 1),
                        [lambda part, _: op(part)])


# (positions [n] int32, total): where the images being augmented sit in the
# batch whose draws they share; pushed by `example_positions` (the module's
# docstring says who enters it), read while a function is traced.
_POSITIONS = []


@contextlib.contextmanager
def example_positions(positions, total):
  """Within: per-image draws for images at `positions` of a batch of `total`
  images (`total` a Python int or a scalar tensor)."""
  _POSITIONS.append((tf.cast(positions, tf.int32), total))
  try:
    yield
  finally:
    _POSITIONS.pop()


@contextlib.contextmanager
def _subset(index):
  """Within: the draws of the images at `index` [k, 1] of the current ones."""
  if not _POSITIONS:
    yield
    return
  positions, total = _POSITIONS[-1]
  with example_positions(tf.gather_nd(positions, index), total):
    yield


def _per_image(draw, shape):
  """draw(shape) with shape [n, ...]; under `example_positions`, rows of a
  draw for the whole batch at the images' positions."""
  if not _POSITIONS:
    return draw(shape)
  positions, total = _POSITIONS[-1]
  return tf.gather(draw([total] + list(shape)[1:]), positions)


def uniform(shape, seed, minval=0, maxval=None, dtype=tf.float32):
  """tf.random.stateless_uniform of per-image values, shape [n, ...]."""
  return _per_image(lambda s: tf.random.stateless_uniform(
      s, seed, minval, maxval, dtype), shape)


def normal(shape, seed):
  """tf.random.stateless_normal of per-image values, shape [n, ...]."""
  return _per_image(lambda s: tf.random.stateless_normal(s, seed), shape)


def image_seeds(seed, n):
  """A stateless seed per image, [n, 2]."""
  return _per_image(
      lambda s: tf.random.experimental.stateless_split(seed, s[0]), [n])
