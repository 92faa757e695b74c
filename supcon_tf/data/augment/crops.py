"""Crop geometry: pad-and-crop, the official training crop window, torchvision's
RandomResizedCrop boxes, the batched crop-and-resize, flips, Cutout.
"""
import math

import tensorflow as tf

from supcon_tf.data.augment import batching
from supcon_tf.data.augment.batching import (
    FILL_VALUE, as_batch, per_image_vector, select)


def random_flips(seed, batch):
  return batching.uniform([batch], seed) < 0.5


def pad_crop_flip(images, seed, padding=4, flip=True, fill=0):
  """torchvision's RandomCrop(size, padding) then RandomHorizontalFlip, on a
  uint8 batch: a crop of the zero-padded image at a uniform offset, mirrored
  with probability 1/2 (when `flip`). Exact integer shifts."""
  images, unbatch = as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  offsets = batching.uniform([batch, 2], seeds[0], 0, 2 * padding + 1,
                             dtype=tf.int32)
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
  out = batching.project(images, transforms, 'NEAREST', 'CONSTANT', fill)
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
  area = height * width * batching.uniform(
      shape, seeds[0], area_range[0], area_range[1])
  log_ratio = batching.uniform(
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
  x0 = tf.floor(batching.uniform([batch], seeds[2]) *
                (width - w + 1.))
  y0 = tf.floor(batching.uniform([batch], seeds[3]) *
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


def official_crop(image, seed, size, area_range=(0.08, 1.0), mirror=False):
  """The official training crop of one uint8 image [H, W, 3]: its
  `distorted_crop_window`, tf.image.resize (bilinear) to size x size and the
  cast back to uint8 (truncation), as the official _crop_to_square; then
  mirrored where `mirror`."""
  window = distorted_crop_window(tf.shape(image), seed, area_range)
  return resize_window(image, window, size, mirror)


def resize_window(image, window, size, mirror=False, origin=(0, 0)):
  """The `window` (offset_height, offset_width, height, width) of `image`,
  whose pixel (0, 0) is pixel `origin` of the whole image, resized as
  `official_crop` resizes it; mirrored where `mirror`."""
  crop = tf.slice(image, [window[0] - origin[0], window[1] - origin[1], 0],
                  [window[2], window[3], -1])
  out = tf.cast(tf.image.resize(crop, [size, size]), tf.uint8)
  # A cond, not tf.where: a select broadcasting one boolean over the image
  # cost more than the resize.
  return tf.cond(tf.convert_to_tensor(mirror), lambda: tf.reverse(out, [1]),
                 lambda: out)


def official_crop_draws(image_shape, seed, views, area_range=(0.08, 1.0),
                        flip=True):
  """The windows (int32 [views, 4], `distorted_crop_window`'s) and mirrors
  ([views] bool) that `random_resized_crop` draws for `views` copies of one
  image of `image_shape`: known from the shape alone, so a JPEG's windows
  come from its header before any pixel is decoded."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  mirror = (random_flips(seeds[1], views) if flip
            else tf.zeros([views], tf.bool))
  windows = tf.stack([
      distorted_crop_window(image_shape, image_seed, area_range)
      for image_seed in tf.unstack(batching.image_seeds(seeds[0], views))])
  return windows, mirror


def random_resized_crop(images, seed, size, area_range=(0.08, 1.0), flip=True,
                        window='official'):
  """The training crop, resized to size x size, then a random horizontal
  flip, on a batch of same-size images; uint8 in, uint8 out. `window`:
  'official' (`official_crop` per image, one seed each) or 'torchvision'
  (RandomResizedCrop's boxes, `sample_crop_boxes`; rounded)."""
  images, unbatch = as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  mirror = (random_flips(seeds[1], batch) if flip
            else tf.zeros([batch], tf.bool))
  if window == 'official':
    out = tf.map_fn(
        lambda args: official_crop(args[0], args[1], size, area_range,
                                   args[2]),
        (images, batching.image_seeds(seeds[0], batch),
         mirror),
        fn_output_signature=tf.TensorSpec([size, size, images.shape[-1]],
                                          tf.uint8))
  else:
    boxes = sample_crop_boxes(seeds[0], batch, tf.shape(images)[1],
                              tf.shape(images)[2], area_range)
    out = tf.cast(tf.clip_by_value(tf.round(crop_and_resize(
        images, boxes, size, mirror)), 0., 255.), tf.uint8)
  return out[0] if unbatch else out


def cutout(images, seed, size=16, fill=FILL_VALUE):
  """Cutout (DeVries & Taylor 2017): a size x size square at a uniform centre,
  clipped at the borders, set to `fill`. `size` may be one per image."""
  images, unbatch = as_batch(images)
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  cy = batching.uniform([batch], seeds[0], 0, tf.shape(images)[1], tf.int32)
  cx = batching.uniform([batch], seeds[1], 0, tf.shape(images)[2], tf.int32)
  out = cutout_at(images, cy, cx, size, fill)
  return out[0] if unbatch else out


def cutout_at(images, centre_y, centre_x, size, fill=FILL_VALUE):
  """The square of side `size` whose rows (and columns) run from
  centre - size // 2, clipped at the borders, set to `fill` in a batch;
  centres and sizes scalars or one per image."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  cy = per_image_vector(centre_y, images, tf.int32)[:, None]
  cx = per_image_vector(centre_x, images, tf.int32)[:, None]
  size = per_image_vector(size, images, tf.int32)[:, None]
  top, left = cy - size // 2, cx - size // 2
  rows = tf.range(height)[None, :]
  cols = tf.range(width)[None, :]
  in_rows = (rows >= top) & (rows < top + size)
  in_cols = (cols >= left) & (cols < left + size)
  square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
  return select(tf.broadcast_to(square, tf.shape(images)),
                tf.fill(tf.shape(images), tf.cast(fill, images.dtype)), images)
