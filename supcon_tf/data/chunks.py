"""A global batch's chunks: one per replica, each drawn, read and augmented
alike whatever reads it.

Every reader (`pipeline` for images in memory, `folder`, `records`,
`tfds_streams`) gives chunks of (images or crops, labels, the batch's seed
key, the chunk's first place in the global batch); `batched_views` turns
them into normalised views. A view's draws depend on (seed, epoch, step,
its place in the global batch) only, so any layout of replicas gives the
same views."""
import tensorflow as tf

from supcon_tf.data import augment as augment_lib
from supcon_tf.data import decoding, epochs

AUTOTUNE = tf.data.AUTOTUNE
# Epochs in an "infinite" training dataset.
ENDLESS = 2 ** 40


def normalize(images, mean_std):
  """(images - mean) / std per channel, images in 0..255 units -> float32."""
  mean, std = mean_std
  images = tf.cast(images, tf.float32)
  shape = tf.shape(images)
  # Rows of W * 3 values: a row-vector broadcast is several times faster in
  # TensorFlow's CPU kernels than one over a trailing axis of 3.
  width = shape[-2]
  rows = tf.reshape(images, [-1, width * 3])
  rows = ((rows - tf.tile(tf.constant(mean, tf.float32), [width])) /
          tf.tile(tf.constant(std, tf.float32), [width]))
  return tf.reshape(rows, shape)


def batch_seed(seed, epoch, step, chunk=0, purpose=0):
  """The stateless seed of one batch (purpose 0), its images' crops
  (purpose 1) or a block of TFRecord records (purpose 2); `chunk` only
  where draws cannot be global (streams, TFRecord readers)."""
  key = tf.constant([seed, purpose], tf.int64)
  for value in (epoch, step, chunk):
    key = tf.random.experimental.stateless_fold_in(key, value)
  return key


def with_threads(dataset, threads):
  options = tf.data.Options()
  options.deterministic = True
  if threads:
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
  return dataset.with_options(options)


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def chunk_views(images, labels, seed, config, num_views, mean_std, cropped,
                first=None, total=None):
  """[b, H, W, 3] uint8 (or [b, V, S, S, 3] already cropped) -> normalised
  views [b, V, S, S, 3]. With `first` and `total`, the images are examples
  first.. of a global batch of `total`, and draw as such. `mean_std` None:
  the views are the device's (`device_views`): uint8, as cropped or as
  they are."""
  size = config.image_size
  if cropped:
    flat = tf.reshape(images, [-1, size, size, 3])
  else:
    flat = tf.repeat(images, num_views, axis=0)
  if mean_std is None:
    return tf.reshape(flat, [-1, num_views] + flat.shape[1:].as_list()), labels
  if first is None:
    views = augment_lib.augment(flat, seed, config, cropped=cropped)
  else:
    # View v of example i is view (first + i) * V + v of the global batch.
    positions = tf.cast(first, tf.int32) * num_views + tf.range(
        tf.shape(flat)[0])
    with augment_lib.example_positions(positions, total * num_views):
      views = augment_lib.augment(flat, seed, config, cropped=cropped)
  views = normalize(views, mean_std)
  return tf.reshape(views, [-1, num_views, size, size, 3]), labels


def batched_views(chunks, config, num_views, mean_std, cropped,
                  global_batch_size, input_threads):
  """Chunks (images or crops, labels, batch seed key, first place) ->
  (views, labels) batches, augmented a chunk at a time."""
  dataset = chunks.map(
      lambda images, labels, batch_seed, first: chunk_views(
          images, labels, batch_seed, config, num_views, mean_std, cropped,
          first, global_batch_size),
      num_parallel_calls=AUTOTUNE)
  return with_threads(dataset.prefetch(AUTOTUNE), input_threads)


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def fixed_size(image, seed, config, num_views):
  """One decoded image -> what the batch step takes: V random-resized crops
  [V, S, S, 3] for SimCLR crops, else the image at S x S (resized when it
  differs, as the eval IDENTITY crop)."""
  if config.crop == 'random_resized':
    return augment_lib.crop_views(image, seed, config, num_views)
  size = config.image_size
  return tf.cast(tf.round(augment_lib.eval_crop(image, size)), tf.uint8)


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def file_views(contents, seed, config, num_views):
  """One encoded image -> what the batch step takes (`fixed_size`). The
  random-resized crops of a JPEG are drawn from its header and only the
  region their windows cover is decoded, once for all views: the same
  pixels as decoding the whole image and cropping it."""
  if config.crop != 'random_resized':
    return fixed_size(decoding.decode(contents), seed, config, num_views)

  def jpeg():
    shape = tf.io.extract_jpeg_shape(contents)
    windows, mirror = augment_lib.official_crop_draws(
        tf.concat([shape[:2], [3]], 0), seed, num_views,
        config.crop_area_range, config.flip)
    region, origin = decoding.decode_jpeg_region(
        contents, tf.reduce_min(windows[:, :2], 0),
        tf.reduce_max(windows[:, :2] + windows[:, 2:], 0), shape[:2])
    return augment_lib.window_views(region, windows, mirror,
                                    config.image_size, origin)

  return tf.cond(
      tf.io.is_jpeg(contents), jpeg,
      lambda: augment_lib.crop_views(decoding.decode(contents), seed,
                                     config, num_views))


def decoded_chunk(items, keys, labels, read, describe, seed, epoch, step,
                  chunk, config, num_views, global_batch_size, per_replica,
                  skip_corrupt):
  """One chunk of image files or records (`items`, their `labels`): a
  dataset of one element, (what the batch step takes [b, ...], labels,
  the batch's seed key, the chunk's first place in the global batch).
  `read(item)` gives the encoded image; `describe(key)` names it."""
  first = chunk * per_replica
  # Each image's crop seed is that of its place in the global batch.
  seeds = tf.random.experimental.stateless_split(
      batch_seed(seed, epoch, step, purpose=1), global_batch_size)[
          first:first + per_replica]
  # An image that cannot be read or decoded drops out here, and
  # `decoding.replace_corrupt` names it.
  images = tf.data.Dataset.from_tensor_slices(
      (tf.range(per_replica), items, seeds)).map(
          lambda i, item, image_seed: (i, file_views(
              read(item), image_seed, config, num_views)),
          num_parallel_calls=AUTOTUNE, deterministic=True)
  return images.ignore_errors().batch(per_replica).map(
      lambda good, images: (
          *decoding.replace_corrupt(good, images, keys, labels,
                                    per_replica, skip_corrupt, describe),
          batch_seed(seed, epoch, step), first))


def index_chunks(split, global_batch_size, length, seed, start_step, layout,
                 classes_per_batch=None):
  """This pipeline's chunks of each global batch of a split with labels in
  memory, from `start_step` on: (epoch, step in it, chunk, example indices
  [per-replica batch]). Each epoch is a permutation drawn from (seed, epoch)
  (or the class-balanced sampler's batches), of which `length` examples are
  read. Index batches are cheap: no image is read before the skip is done."""
  replicas, per_replica, first_chunk, chunks = layout
  size = len(split)
  start_epoch, offset = divmod(start_step * global_batch_size, length)

  def epoch_indices(epoch):
    if classes_per_batch:
      order = tf.numpy_function(
          lambda e: epochs.balanced_order(split.labels, classes_per_batch,
                                          global_batch_size, seed, int(e)),
          [epoch], tf.int64, stateful=False)
    else:
      order = tf.argsort(tf.random.stateless_uniform(
          [size], tf.stack([tf.constant(seed, tf.int64), epoch])))
      order = tf.cast(order, tf.int64)
    return tf.data.Dataset.from_tensor_slices(order[:length])

  def chunks_of(step, indices):
    # The batch's seed key: (seed, epoch of its first example, its step
    # within that epoch, chunk).
    epoch, in_epoch = epochs.epoch_and_step(step, global_batch_size, length)
    mine = tf.reshape(indices, [replicas, per_replica])[
        first_chunk:first_chunk + chunks]
    return tf.data.Dataset.from_tensor_slices((
        tf.fill([chunks], epoch), tf.fill([chunks], in_epoch),
        tf.range(first_chunk, first_chunk + chunks, dtype=tf.int64), mine))

  dataset = tf.data.Dataset.range(start_epoch, ENDLESS).flat_map(
      epoch_indices).skip(offset).batch(
          global_batch_size, drop_remainder=True)
  return tf.data.Dataset.zip(
      tf.data.Dataset.range(start_step, ENDLESS), dataset).flat_map(
          chunks_of)
