"""Encoded images to pixels, and what happens when they are not images.

`decode` is PIL's decode (libjpeg's accurate IDCT); `decode_jpeg_region`
decodes only the part of a JPEG a crop needs, with the same pixels. An
image that passed the start-up checks but fails when a batch needs it is a
`CorruptDataError` naming it, or with --skip_corrupt is replaced by another
image of its chunk (`replace_corrupt`) and logged once."""
import re

import numpy as np
import tensorflow as tf
from absl import logging


def decode(contents):
  """An encoded image -> uint8 [H, W, 3]. JPEGs with libjpeg's accurate
  integer IDCT, as PIL (and so torchvision) decodes them: TensorFlow's
  default, the fast IDCT, differs from it in about 64% of the values of
  CIFAR-10 JPEGs, by up to 5 levels."""
  return tf.cond(
      tf.io.is_jpeg(contents),
      lambda: tf.io.decode_jpeg(contents, channels=3,
                                dct_method='INTEGER_ACCURATE'),
      lambda: tf.io.decode_image(contents, channels=3,
                                 expand_animations=False))


# Fancy chroma upsampling reads one neighbour beyond a window's edge: a JPEG
# region decoded this many pixels wider on each side (where the image has
# them) holds exactly the pixels of the whole decode (checked on 1,500 random
# windows of real photographs; without a margin 130 of them differed, by up
# to 30 levels, at their edges).
REGION_MARGIN = 8


def decode_jpeg_region(contents, top_left, bottom_right, shape=None):
  """The pixels [top_left, bottom_right) (int32 [2] each, rows and columns)
  of a JPEG, and more around them, decoding only that part: (uint8 region,
  int32 [2] position of its (0, 0) in the image). The region's pixels are
  those of `decode`: the same IDCT, the same upsampling. `shape`: the
  image's (height, width) when the caller has read the header already."""
  if shape is None:
    shape = tf.io.extract_jpeg_shape(contents)[:2]
  start = tf.maximum(tf.cast(top_left, tf.int32) - REGION_MARGIN, 0)
  end = tf.minimum(tf.cast(bottom_right, tf.int32) + REGION_MARGIN, shape)
  region = tf.io.decode_and_crop_jpeg(
      contents, tf.concat([start, end - start], 0), channels=3,
      dct_method='INTEGER_ACCURATE')
  return region, start


def decode_all(files, height, width):
  """Decodes every file, whose headers say height x width: (uint8 [N, height,
  width, 3], which decoded to that size)."""
  paths = tf.data.Dataset.from_tensor_slices(files).enumerate()
  decoded = paths.map(
      lambda i, path: (i, decode(tf.io.read_file(path))),
      num_parallel_calls=tf.data.AUTOTUNE)
  # A file that fails to read or decode drops out; its index tells which.
  decoded = decoded.ignore_errors()
  ok = np.zeros(len(files), bool)
  images = np.zeros((len(files), height, width, 3), np.uint8)
  for i, image in decoded.as_numpy_iterator():
    if image.shape[:2] == (height, width):
      ok[i] = True
      images[i] = image
  return images, ok


class CorruptDataError(RuntimeError):
  """An image file, a record or a shard that passed the start-up checks but
  cannot be read when a batch needs it, or a record's label outside the
  classes; its message names it."""


def corrupt_data_message(error):
  """The one line of a CorruptDataError raised inside the input pipeline
  (TensorFlow wraps it in an OpError), else None."""
  found = re.search(rf'{CorruptDataError.__name__}: ([^\n]*)',
                    getattr(error, 'message', str(error)))
  return found.group(1) if found else None


def as_image(image):
  """A file path (string) or a decoded image -> uint8 [H, W, 3]."""
  if image.dtype == tf.string:
    image = decode(tf.io.read_file(image))
  return tf.ensure_shape(image, [None, None, 3])


SKIPPED_CORRUPT = []  # Images (files, records) skipped after start-up here.


def report_corrupt(items, good, skip, describe):
  """`replace_corrupt`'s NumPy side: raises naming the first of `items`
  missing from `good`, or logs each once; the number missing."""
  missing = sorted(set(range(len(items))) - set(good.tolist()))
  names = [describe(items[i]) for i in missing]
  if not skip or len(missing) == len(items):
    raise CorruptDataError(
        f'{names[0]} is not a readable image (found after start-up; '
        '--skip_corrupt skips such images).')
  for name in names:
    if name not in SKIPPED_CORRUPT:
      SKIPPED_CORRUPT.append(name)
      logging.warning('skipped a corrupt image file (%d so far): %s',
                      len(SKIPPED_CORRUPT), name)
  return np.int32(len(missing))


def replace_corrupt(good, images, items, labels, count, skip, describe):
  """A chunk's images where `good` (the positions that decoded) lacks some:
  an error naming the first missing one (`describe` of its item: path or
  record id), or (`skip`) the chunk filled up with its other images,
  cycling, so it keeps its size. Returns (images, labels)."""
  def fill():
    reported = tf.numpy_function(
        lambda i, g: report_corrupt(i, g, skip, describe), [items, good],
        tf.int32)
    with tf.control_dependencies([reported]):
      take = tf.range(count) % tf.shape(good)[0]
    return tf.gather(images, take), tf.gather(labels, tf.gather(good, take))
  return tf.cond(tf.shape(good)[0] < count, fill,
                 lambda: (images, tf.gather(labels, good)))
