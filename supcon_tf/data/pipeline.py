"""tf.data pipelines: batches of V augmented views for training, plain batches
for evaluation, per replica.

Training batches are (views [B, V, S, S, 3] float32, labels [B] int64), the
views normalised with the dataset's mean and std. The data is read epoch by
epoch, each a permutation drawn from (seed, epoch), as one stream of
examples (a batch may span the end of an epoch, as official, or each epoch's
partial batch is dropped: `epoch_remainder`); a global batch is split
into one contiguous chunk per replica, so the same seed gives the same
examples in each global batch whatever the number of replicas, input
pipelines or workers. The augmentation draws of a view depend on (seed,
epoch, step, its place in the global batch) only (`augment.example_positions`),
so a layout gives the same views as any other. Images held in
memory are gathered and augmented a whole batch at a time; images read from
files, TFRecord shards or streams are decoded (and, for SimCLR crops,
cropped) one at a time.
Use the `*_distributed` functions with a `tf.distribute` strategy.
"""
import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import enums
from supcon_tf.data import arrays
from supcon_tf.data import augment as augment_lib
from supcon_tf.data import sources

AUTOTUNE = tf.data.AUTOTUNE
# Epochs in an "infinite" training dataset.
_ENDLESS = 2 ** 40


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


def steps_per_epoch(split, global_batch_size, epoch_remainder='drop'):
  """Global batches per pass over `split` (`arrays.steps_per_epoch`)."""
  return arrays.steps_per_epoch(len(split), global_batch_size,
                                epoch_remainder)


def epoch_of_step(step, split, global_batch_size, epoch_remainder='drop'):
  """The epoch (from 0) in which the examples of batch `step` start."""
  return arrays.epoch_of_step(step, len(split), global_batch_size,
                              epoch_remainder)


def first_step_of_epoch(epoch, split, global_batch_size,
                        epoch_remainder='drop'):
  """The first batch that starts in `epoch`: epoch ends fall on its step."""
  length = _epoch_length(split, global_batch_size, epoch_remainder)
  return -(-epoch * length // global_batch_size)


def _epoch_length(split, global_batch_size, epoch_remainder):
  """Examples read from each epoch's permutation."""
  return arrays.epoch_length(len(split), global_batch_size, epoch_remainder)


def _layout(global_batch_size, input_context):
  """(replicas, per-replica batch, first chunk of this pipeline, chunks)."""
  if input_context is None:
    return 1, global_batch_size, 0, 1
  replicas = input_context.num_replicas_in_sync
  pipelines = input_context.num_input_pipelines
  if global_batch_size % replicas:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by the {replicas} replicas.')
  if replicas % pipelines:
    raise ValueError(f'{replicas} replicas do not split evenly over '
                     f'{pipelines} input pipelines.')
  local = replicas // pipelines
  return (replicas, global_batch_size // replicas,
          input_context.input_pipeline_id * local, local)


def balanced_order(labels, classes_per_batch, batch_size, seed, epoch):
  """An epoch's indices in batches of `classes_per_batch` classes with
  batch_size / classes_per_batch examples each, every batch the same label
  configuration; classes and examples drawn with (seed, epoch)."""
  labels = np.asarray(labels)
  per_class = batch_size // classes_per_batch
  rng = np.random.default_rng([seed, epoch])
  classes = np.unique(labels)
  pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
  used = dict.fromkeys(classes, 0)
  steps = len(labels) // batch_size
  order = np.empty((steps, batch_size), np.int64)
  for step in range(steps):
    batch = []
    for c in rng.choice(classes, classes_per_batch, replace=False):
      pool = pools[c]
      # Cycle through a class; a class smaller than per_class repeats.
      take = np.arange(used[c], used[c] + per_class) % len(pool)
      batch.append(pool[take])
      used[c] += per_class
    order[step] = rng.permutation(np.concatenate(batch))
  return order.reshape(-1)


def sampler_classes(sampler, classes_per_batch, split):
  """The classes per batch of the class-balanced batches `sampler`
  (supcon_tf.enums.SAMPLERS) asks for: None (uniform), classes_per_batch,
  or every class of the split (fixed_configuration)."""
  if sampler not in enums.SAMPLERS:
    raise ValueError(f'sampler must be one of {", ".join(enums.SAMPLERS)}; '
                     f'got {sampler!r}.')
  if sampler == 'fixed_configuration':
    if split.labels is None:
      raise ValueError('--sampler=fixed_configuration needs the labels in '
                       'advance; this split is a stream.')
    return len(np.unique(split.labels))
  return classes_per_batch or None


def _check_balanced(split, classes_per_batch, global_batch_size):
  if split.labels is None:
    raise ValueError('classes_per_batch needs the labels in advance; this '
                     'split is a stream.')
  present = len(np.unique(split.labels))
  if not 0 < classes_per_batch <= present:
    raise ValueError(f'classes_per_batch must be in [1, {present}] (the '
                     f'classes present); got {classes_per_batch}.')
  if global_batch_size % classes_per_batch:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by classes_per_batch={classes_per_batch}.')


def _batch_seed(seed, epoch, step, chunk=0, purpose=0):
  """The stateless seed of one batch (purpose 0), its images' crops
  (purpose 1) or a block of TFRecord records (purpose 2); `chunk` only
  where draws cannot be global (streams, TFRecord readers)."""
  key = tf.constant([seed, purpose], tf.int64)
  for value in (epoch, step, chunk):
    key = tf.random.experimental.stateless_fold_in(key, value)
  return key


def _with_threads(dataset, threads):
  options = tf.data.Options()
  options.deterministic = True
  if threads:
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
  return dataset.with_options(options)


def _decode(image):
  """A file path (string) or a decoded image -> uint8 [H, W, 3]."""
  if image.dtype == tf.string:
    image = sources.decode(tf.io.read_file(image))
  return tf.ensure_shape(image, [None, None, 3])


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def _views(images, labels, seed, config, num_views, mean_std, cropped,
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


def train_dataset(split, config, global_batch_size, mean_std, num_views=2,
                  seed=0, start_step=0, classes_per_batch=None,
                  input_context=None, input_threads=None,
                  epoch_remainder='drop', skip_corrupt=False,
                  shard_per_host=True):
  """Endless training batches from global batch `start_step` on, for one
  input pipeline: (views [b, V, S, S, 3], labels [b]) with b the per-replica
  batch; with `mean_std` None, uint8 views that only the host's crop made,
  for `device_views` to finish on the device. `classes_per_batch` turns on
  the class-balanced sampler (whose epochs are whole batches, so its epochs
  never span).
  `epoch_remainder`: see supcon_tf.enums.EPOCH_REMAINDERS. An image file
  or record that cannot be decoded raises sources.CorruptDataError naming
  it, or with `skip_corrupt` is replaced by another image of its chunk and
  logged. `shard_per_host`: TFRecord shards split between input pipelines
  (`_record_train`)."""
  if num_views < 1:
    raise ValueError(f'num_views must be >= 1; got {num_views}.')
  if classes_per_batch:
    _check_balanced(split, classes_per_batch, global_batch_size)
    epoch_remainder = 'drop'
  steps = int(steps_per_epoch(split, global_batch_size, epoch_remainder))
  layout = _layout(global_batch_size, input_context)
  replicas, per_replica, first_chunk, chunks = layout
  if split.stream is not None:
    start_epoch, start_in_epoch = divmod(start_step, steps)
    dataset = _stream_train(split, config, per_replica, mean_std, num_views,
                            seed, start_epoch, input_context)
    return _with_threads(dataset.skip(start_in_epoch * chunks), input_threads)

  length = _epoch_length(split, global_batch_size, epoch_remainder)
  if split.records is not None:
    dataset = _record_train(split, config, global_batch_size, length,
                            num_views, seed, start_step, layout,
                            input_context, shard_per_host, skip_corrupt)
    return _batched_views(dataset, config, num_views, mean_std,
                          config.crop == 'random_resized', global_batch_size,
                          input_threads)
  size = len(split)
  labels = tf.constant(split.labels)
  start_epoch, offset = divmod(start_step * global_batch_size, length)

  def epoch_indices(epoch):
    if classes_per_batch:
      order = tf.numpy_function(
          lambda e: balanced_order(split.labels, classes_per_batch,
                                   global_batch_size, seed, int(e)),
          [epoch], tf.int64, stateful=False)
    else:
      order = tf.argsort(tf.random.stateless_uniform(
          [size], tf.stack([tf.constant(seed, tf.int64), epoch])))
      order = tf.cast(order, tf.int64)
    return tf.data.Dataset.from_tensor_slices(order[:length])

  def chunks_of(step, indices):
    # This pipeline's chunks of one global batch, with the batch's seed key:
    # (seed, epoch of its first example, its step within that epoch, chunk).
    epoch, in_epoch = _epoch_and_step(step, global_batch_size, length)
    mine = tf.reshape(indices, [replicas, per_replica])[
        first_chunk:first_chunk + chunks]
    return tf.data.Dataset.from_tensor_slices((
        tf.fill([chunks], epoch), tf.fill([chunks], in_epoch),
        tf.range(first_chunk, first_chunk + chunks, dtype=tf.int64), mine))

  # Index batches are cheap: no image is loaded before the skip is done.
  dataset = tf.data.Dataset.range(start_epoch, _ENDLESS).flat_map(
      epoch_indices).skip(offset).batch(
          global_batch_size, drop_remainder=True)
  dataset = tf.data.Dataset.zip(
      tf.data.Dataset.range(start_step, _ENDLESS), dataset).flat_map(
          chunks_of)
  if split.images is not None:
    shape = split.images.shape[1:3]
    if config.crop != 'random_resized' and shape != (config.image_size,) * 2:
      raise ValueError(
          f'The training images are {shape[0]}x{shape[1]} but image_size is '
          f'{config.image_size}: set --image_size={shape[0]}, or '
          '--crop=random_resized to crop and resize them.')
    images = tf.constant(split.images)
    cropped = False

    def load(epoch, step, chunk, indices):
      return (tf.gather(images, indices), tf.gather(labels, indices),
              _batch_seed(seed, epoch, step), chunk * per_replica)
    dataset = dataset.map(load)
  else:
    files = tf.constant(split.files)
    cropped = config.crop == 'random_resized'

    def load(epoch, step, chunk, indices):
      paths = tf.gather(files, indices)
      return _decoded_chunk(
          paths, paths, tf.gather(labels, indices), tf.io.read_file,
          lambda path: path.decode(), seed, epoch, step, chunk, config,
          num_views, global_batch_size, per_replica, skip_corrupt)
    # One element per chunk, in order, several chunks at a time.
    dataset = dataset.interleave(load, cycle_length=2, block_length=1,
                                 num_parallel_calls=AUTOTUNE,
                                 deterministic=True)
  return _batched_views(dataset, config, num_views, mean_std, cropped,
                        global_batch_size, input_threads)


def _epoch_and_step(step, global_batch_size, length):
  """The epoch in which global batch `step` starts, and its step in it,
  for epochs of `length` examples."""
  epoch = step * global_batch_size // length
  return epoch, step + (epoch * length) // -global_batch_size


def _batched_views(chunks, config, num_views, mean_std, cropped,
                   global_batch_size, input_threads):
  """Chunks (images or crops, labels, batch seed key, first place) ->
  (views, labels) batches, augmented a chunk at a time."""
  dataset = chunks.map(
      lambda images, labels, batch_seed, first: _views(
          images, labels, batch_seed, config, num_views, mean_std, cropped,
          first, global_batch_size),
      num_parallel_calls=AUTOTUNE)
  return _with_threads(dataset.prefetch(AUTOTUNE), input_threads)


def _decoded_chunk(items, keys, labels, read, describe, seed, epoch, step,
                   chunk, config, num_views, global_batch_size, per_replica,
                   skip_corrupt):
  """One chunk of image files or records (`items`, their `labels`): a
  dataset of one element, (what the batch step takes [b, ...], labels,
  the batch's seed key, the chunk's first place in the global batch).
  `read(item)` gives the encoded image; `describe(key)` names it."""
  first = chunk * per_replica
  # Each image's crop seed is that of its place in the global batch.
  seeds = tf.random.experimental.stateless_split(
      _batch_seed(seed, epoch, step, purpose=1), global_batch_size)[
          first:first + per_replica]
  # An image that cannot be read or decoded drops out here, and
  # `_replace_corrupt` names it.
  images = tf.data.Dataset.from_tensor_slices(
      (tf.range(per_replica), items, seeds)).map(
          lambda i, item, image_seed: (i, _file_views(
              read(item), image_seed, config, num_views)),
          num_parallel_calls=AUTOTUNE, deterministic=True)
  return images.ignore_errors().batch(per_replica).map(
      lambda good, images: (
          *_replace_corrupt(good, images, keys, labels, per_replica,
                            skip_corrupt, describe),
          _batch_seed(seed, epoch, step), first))


# TFRecord shards read at once, and the block of records shuffled after
# them. The shards' own order is drawn anew each epoch.
RECORD_CYCLE = 16
RECORD_SHUFFLE = 1024


def record_shard_order(num_shards, seed, epoch):
  """The order in which an epoch reads TFRecord shards."""
  return np.random.default_rng([seed, epoch]).permutation(num_shards)


def record_position(records, seed, readers, reader, skip):
  """(epoch, records into it) of the `skip`th record one of `readers`
  readers reads: reader r reads shards r, r + readers, ... of each epoch's
  shard order."""
  counts = records.kept_counts()
  epoch = 0
  while True:
    read = int(counts[record_shard_order(len(counts), seed, epoch)[
        reader::readers]].sum())
    if skip < read:
      return epoch, skip
    skip, epoch = skip - read, epoch + 1


def _record_epoch(records, seed, epoch, readers, reader, skip_corrupt):
  """One epoch of one reader's records: its shards interleaved, then
  shuffled in blocks of RECORD_SHUFFLE records, each block's order drawn
  statelessly from (seed, epoch, reader, block)."""
  num_shards = len(records.files)
  shards = tf.numpy_function(
      lambda e: record_shard_order(num_shards, seed, int(e))[
          reader::readers].astype(np.int64), [epoch], tf.int64, stateful=False)
  found = tf.data.Dataset.from_tensor_slices(tf.ensure_shape(
      shards, [len(range(reader, num_shards, readers))])).interleave(
          lambda shard: sources.shard_records(records, shard, skip_corrupt),
          cycle_length=min(RECORD_CYCLE, num_shards), block_length=1,
          num_parallel_calls=AUTOTUNE, deterministic=True)

  def shuffled(block, records_of_block):
    record_ids, serialized = records_of_block
    key = _batch_seed(seed, epoch, block, reader, purpose=2)
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(record_ids), key))
    return tf.data.Dataset.from_tensor_slices(
        (tf.gather(record_ids, order), tf.gather(serialized, order)))
  return found.batch(RECORD_SHUFFLE).enumerate().flat_map(shuffled)


def _record_train(split, config, global_batch_size, length, num_views, seed,
                  start_step, layout, input_context, shard_per_host,
                  skip_corrupt):
  """The chunks of this input pipeline from TFRecord shards, as the file
  branch's: (images or crops, labels, batch seed key, first place). With
  `shard_per_host`, each input pipeline reads its own shards (so the
  batches depend on their number); else every pipeline reads them all and
  keeps its part of each global batch."""
  records = split.records
  _, per_replica, first_chunk, chunks = layout
  pipelines = input_context.num_input_pipelines if input_context else 1
  readers, reader = ((pipelines, input_context.input_pipeline_id)
                     if shard_per_host and pipelines > 1 else (1, 0))
  if len(records.files) < readers:
    raise sources.DataError(
        f'{len(records.files)} TFRecord shards cannot be split over '
        f'{readers} input pipelines (--shard_per_host): give at least one '
        'shard each, or --shard_per_host=false.')
  # Records a reader reads per global batch, and the part that is this
  # pipeline's.
  take = global_batch_size // readers
  mine = 0 if readers > 1 else first_chunk * per_replica
  start_epoch, offset = record_position(records, seed, readers, reader,
                                        start_step * take)
  found = tf.data.Dataset.range(start_epoch, _ENDLESS).flat_map(
      lambda epoch: _record_epoch(records, seed, epoch, readers, reader,
                                  skip_corrupt))
  # Records are skipped before they are parsed or decoded.
  found = found.skip(offset).batch(take, drop_remainder=True)

  def chunks_of(step, batch):
    record_ids, serialized = batch
    record_ids = record_ids[mine:mine + chunks * per_replica]
    images, labels = sources.parse_records(
        serialized[mine:mine + chunks * per_replica])
    labels = sources.check_record_labels(labels, record_ids, records)
    epoch, in_epoch = _epoch_and_step(step, global_batch_size, length)
    shape = [chunks, per_replica]
    return tf.data.Dataset.from_tensor_slices((
        tf.fill([chunks], epoch), tf.fill([chunks], in_epoch),
        tf.range(first_chunk, first_chunk + chunks, dtype=tf.int64),
        tf.reshape(record_ids, shape), tf.reshape(images, shape),
        tf.reshape(labels, shape)))

  def load(epoch, step, chunk, record_ids, images, labels):
    return _decoded_chunk(images, record_ids, labels, lambda image: image,
                          records.describe, seed, epoch, step, chunk, config,
                          num_views, global_batch_size, per_replica,
                          skip_corrupt)

  dataset = tf.data.Dataset.zip(
      tf.data.Dataset.range(start_step, _ENDLESS), found).flat_map(chunks_of)
  return dataset.interleave(load, cycle_length=2, block_length=1,
                            num_parallel_calls=AUTOTUNE, deterministic=True)


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def _fixed_size(image, seed, config, num_views):
  """One decoded image -> what the batch step takes: V random-resized crops
  [V, S, S, 3] for SimCLR crops, else the image at S x S (resized when it
  differs, as the eval IDENTITY crop)."""
  if config.crop == 'random_resized':
    return augment_lib.crop_views(image, seed, config, num_views)
  size = config.image_size
  return tf.cast(tf.round(augment_lib.eval_crop(image, size)), tf.uint8)


SKIPPED_CORRUPT = []  # Images (files, records) skipped after start-up here.


def _report_corrupt(items, good, skip, describe):
  missing = sorted(set(range(len(items))) - set(good.tolist()))
  names = [describe(items[i]) for i in missing]
  if not skip or len(missing) == len(items):
    raise sources.CorruptDataError(
        f'{names[0]} is not a readable image (found after start-up; '
        '--skip_corrupt skips such images).')
  for name in names:
    if name not in SKIPPED_CORRUPT:
      SKIPPED_CORRUPT.append(name)
      logging.warning('skipped a corrupt image file (%d so far): %s',
                      len(SKIPPED_CORRUPT), name)
  return np.int32(len(missing))


def _replace_corrupt(good, images, items, labels, count, skip, describe):
  """A chunk's images where `good` (the positions that decoded) lacks some:
  an error naming the first missing one (`describe` of its item: path or
  record id), or (`skip`) the chunk filled up with its other images,
  cycling, so it keeps its size. Returns (images, labels)."""
  def fill():
    reported = tf.numpy_function(
        lambda i, g: _report_corrupt(i, g, skip, describe), [items, good],
        tf.int32)
    with tf.control_dependencies([reported]):
      take = tf.range(count) % tf.shape(good)[0]
    return tf.gather(images, take), tf.gather(labels, tf.gather(good, take))
  return tf.cond(tf.shape(good)[0] < count, fill,
                 lambda: (images, tf.gather(labels, good)))


@tf.autograph.experimental.do_not_convert  # As augment_lib.augment.
def _file_views(contents, seed, config, num_views):
  """One encoded image -> what the batch step takes (`_fixed_size`). The
  random-resized crops of a JPEG are drawn from its header and only the
  region their windows cover is decoded, once for all views: the same
  pixels as decoding the whole image and cropping it."""
  if config.crop != 'random_resized':
    return _fixed_size(sources.decode(contents), seed, config, num_views)

  def jpeg():
    shape = tf.io.extract_jpeg_shape(contents)
    windows, mirror = augment_lib.official_crop_draws(
        tf.concat([shape[:2], [3]], 0), seed, num_views,
        config.crop_area_range, config.flip)
    region, origin = sources.decode_jpeg_region(
        contents, tf.reduce_min(windows[:, :2], 0),
        tf.reduce_max(windows[:, :2] + windows[:, 2:], 0), shape[:2])
    return augment_lib.window_views(region, windows, mirror,
                                    config.image_size, origin)

  return tf.cond(
      tf.io.is_jpeg(contents), jpeg,
      lambda: augment_lib.crop_views(sources.decode(contents), seed, config,
                                     num_views))


def _stream_train(split, config, per_replica, mean_std, num_views, seed,
                  start_epoch, input_context):
  """Training batches from a stream (large TFDS datasets): sharded by example
  across input pipelines and shuffled through a buffer. Deterministic for a
  given (seed, start_epoch), but a resumed run sees a new order rather than
  the rest of the interrupted epoch."""
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  cropped = config.crop == 'random_resized'
  examples = split.stream.shard(pipelines, pipeline_id).shuffle(
      10000, seed=seed * 1000003 + start_epoch,
      reshuffle_each_iteration=True).repeat().enumerate()

  def decode(index, example):
    image, label = example
    image_seed = _batch_seed(seed, start_epoch, index, pipeline_id, purpose=1)
    return _fixed_size(_decode(image), image_seed, config, num_views), label
  batches = examples.map(decode, num_parallel_calls=AUTOTUNE).batch(
      per_replica, drop_remainder=True).enumerate()
  return batches.map(lambda step, batch: _views(
      batch[0], batch[1], _batch_seed(seed, start_epoch, step, pipeline_id),
      config, num_views, mean_std, cropped),
                     num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def eval_dataset(split, global_batch_size, mean_std, image_size,
                 eval_crop_method='IDENTITY', crop_padding=32,
                 input_context=None, input_threads=None, training_view=None,
                 seed=0):
  """Every example once, in order: (images [b, S, S, 3] float32 normalised,
  labels [b]); the last batch may be smaller. Sharded by example across
  input pipelines. With `training_view` (a Preprocessing), views
  [b, 2, S, S, 3] instead: the eval view and a training view drawn with
  `seed`, the two views the official eval gives its contrastive loss."""
  _, per_replica, _, _ = _layout(global_batch_size, input_context)
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  if split.stream is not None:
    examples = split.stream
  elif split.records is not None:
    examples = sources.record_examples(split.records)
  elif split.images is not None:
    examples = tf.data.Dataset.from_tensor_slices(
        (split.images, split.labels))
  else:
    examples = tf.data.Dataset.from_tensor_slices((split.files, split.labels))
  examples = examples.shard(pipelines, pipeline_id)
  if split.records is not None:
    # Decoded once here, after the shard: records hold the encoded images.
    examples = examples.map(lambda image, label: (sources.decode(image),
                                                  label),
                            num_parallel_calls=AUTOTUNE)
  # Images already at the size need no crop unless a method asks for one.
  same_size = (split.image_shape is not None and
               split.image_shape[:2] == (image_size, image_size) and
               eval_crop_method == 'IDENTITY')

  def eval_view(image):
    image = _decode(image)
    if same_size:
      return tf.cast(image, tf.float32)
    return tf.cast(augment_lib.eval_crop(image, image_size, eval_crop_method,
                                         crop_padding), tf.float32)

  if training_view is None:
    if not same_size:
      examples = examples.map(lambda image, label: (eval_view(image), label),
                              num_parallel_calls=AUTOTUNE)
    dataset = examples.batch(per_replica).map(
        lambda images, labels: (normalize(images, mean_std), labels))
    return _with_threads(dataset.prefetch(AUTOTUNE), input_threads)

  cropped = training_view.crop == 'random_resized'
  # Draws by example (its index in the split), whatever the sharding; a
  # stream's length is not known, so its draws are by shard and batch.
  total = None if split.stream is not None else len(split)

  def pair(index, example):
    image, label = example
    index = index * pipelines + pipeline_id
    image_seed = _batch_seed(seed, 0, index, purpose=1)
    return (eval_view(image), _fixed_size(_decode(image), image_seed,
                                          training_view, 1), label, index)

  def views(step, batch):
    firsts, seconds, labels, indices = batch
    seconds = tf.reshape(seconds, [-1, image_size, image_size, 3])
    if total is None:
      seconds = augment_lib.augment(seconds, _batch_seed(
          seed, 0, step, pipeline_id), training_view, cropped=cropped)
    else:
      with augment_lib.example_positions(indices, total):
        seconds = augment_lib.augment(seconds, _batch_seed(seed, 0, 0),
                                      training_view, cropped=cropped)
    return (tf.stack([normalize(firsts, mean_std),
                      normalize(seconds, mean_std)], axis=1), labels)

  dataset = examples.enumerate().map(pair, num_parallel_calls=AUTOTUNE).batch(
      per_replica).enumerate().map(views, num_parallel_calls=AUTOTUNE)
  return _with_threads(dataset.prefetch(AUTOTUNE), input_threads)


def training_views(images, labels, preprocessing, batch_size, num_views=2,
                   seed=0, mean_std=sources.UNIT_MEAN_STD,
                   epoch_remainder='drop'):
  """The command line's training batches of images held in memory (uint8
  [N, H, W, 3] and labels [N], or a `sources.Split`), for Keras `fit`:
  (endless dataset of (views [B, V, S, S, 3] float32 normalised with
  `mean_std`, labels [B]), steps per epoch). `preprocessing`: a
  `supcon_tf.config.Preprocessing` (or Config) naming the views."""
  split = images if isinstance(images, sources.Split) else sources.Split(
      labels, images=np.asarray(images, np.uint8))
  dataset = train_dataset(split, preprocessing, batch_size, mean_std,
                          num_views=num_views, seed=seed,
                          epoch_remainder=epoch_remainder)
  return dataset, int(steps_per_epoch(split, batch_size, epoch_remainder))


def train_dataset_distributed(strategy, split, config, global_batch_size,
                              mean_std, **options):
  """`train_dataset` per input pipeline, distributed over `strategy`'s
  replicas; each replica gets its chunk of every global batch."""
  return strategy.distribute_datasets_from_function(
      lambda context: train_dataset(split, config, global_batch_size,
                                    mean_std, input_context=context,
                                    **options))


def eval_dataset_distributed(strategy, split, global_batch_size, mean_std,
                             image_size, **options):
  """`eval_dataset` per input pipeline, distributed over `strategy`."""
  return strategy.distribute_datasets_from_function(
      lambda context: eval_dataset(split, global_batch_size, mean_std,
                                   image_size, input_context=context,
                                   **options))
