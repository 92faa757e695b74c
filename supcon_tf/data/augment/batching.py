"""Batches and per-image values: what every augmentation op shares."""
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


def apply_to_some(op, images, magnitude, fires, result):
  """`result` with `op` applied to the `images` where `fires` (only those)."""
  index = tf.where(fires)
  changed = op(tf.gather_nd(images, index), tf.gather_nd(magnitude, index))
  return tf.tensor_scatter_nd_update(result, index, changed)


def random_apply(op, images, seed, probability):
  """`op` on the images that draw < probability, the rest untouched."""
  fires = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < probability
  index = tf.where(fires)
  return tf.tensor_scatter_nd_update(
      images, index, op(tf.gather_nd(images, index)))
