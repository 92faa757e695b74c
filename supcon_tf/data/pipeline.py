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

`train_dataset` and `eval_dataset` hand each kind of split to its reader:
images in memory here, image files to `folder`, TFRecord shards to
`records`, streams to `tfds_streams`; `chunks` makes every reader's chunks
into views, and `epochs` does the counting.
"""
import numpy as np
import tensorflow as tf

from supcon_tf.data import augment as augment_lib
from supcon_tf.data import (chunks, decoding, epochs, folder, records,
                            tfds_streams)
from supcon_tf.data.arrays import UNIT_MEAN_STD
from supcon_tf.data.splits import Split

AUTOTUNE = tf.data.AUTOTUNE


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
  or record that cannot be decoded raises decoding.CorruptDataError naming
  it, or with `skip_corrupt` is replaced by another image of its chunk and
  logged. `shard_per_host`: TFRecord shards split between input pipelines
  (`records.train_chunks`)."""
  if num_views < 1:
    raise ValueError(f'num_views must be >= 1; got {num_views}.')
  if classes_per_batch:
    epochs.check_balanced(split, classes_per_batch, global_batch_size)
    epoch_remainder = 'drop'
  steps = int(epochs.steps_per_epoch(len(split), global_batch_size,
                                     epoch_remainder))
  layout = epochs.layout(global_batch_size, input_context)
  _, per_replica, _, chunk_count = layout
  if split.stream is not None:
    start_epoch, start_in_epoch = divmod(start_step, steps)
    dataset = tfds_streams.stream_train(split, config, per_replica, mean_std,
                                        num_views, seed, start_epoch,
                                        input_context)
    return chunks.with_threads(dataset.skip(start_in_epoch * chunk_count),
                               input_threads)
  length = epochs.epoch_length(len(split), global_batch_size,
                               epoch_remainder)
  cropped = config.crop == 'random_resized'
  if split.records is not None:
    found = records.train_chunks(split, config, global_batch_size, length,
                                 num_views, seed, start_step, layout,
                                 input_context, shard_per_host, skip_corrupt)
  else:
    indices = chunks.index_chunks(split, global_batch_size, length, seed,
                                  start_step, layout, classes_per_batch)
    if split.images is not None:
      found, cropped = _memory_chunks(split, indices, config, seed,
                                      per_replica), False
    else:
      found = folder.file_chunks(split, indices, config, num_views, seed,
                                 global_batch_size, per_replica,
                                 skip_corrupt)
  return chunks.batched_views(found, config, num_views, mean_std, cropped,
                              global_batch_size, input_threads)


def _memory_chunks(split, indices, config, seed, per_replica):
  """The chunks of a split held in memory: whole images, gathered."""
  shape = split.images.shape[1:3]
  if config.crop != 'random_resized' and shape != (config.image_size,) * 2:
    raise ValueError(
        f'The training images are {shape[0]}x{shape[1]} but image_size is '
        f'{config.image_size}: set --image_size={shape[0]}, or '
        '--crop=random_resized to crop and resize them.')
  images, labels = tf.constant(split.images), tf.constant(split.labels)

  def load(epoch, step, chunk, indices):
    return (tf.gather(images, indices), tf.gather(labels, indices),
            chunks.batch_seed(seed, epoch, step), chunk * per_replica)
  return indices.map(load)


def _examples(split):
  """Every example of a split once, in order: (image or path, label)."""
  if split.stream is not None:
    return split.stream
  if split.records is not None:
    return records.record_examples(split.records)
  if split.images is not None:
    return tf.data.Dataset.from_tensor_slices((split.images, split.labels))
  return tf.data.Dataset.from_tensor_slices((split.files, split.labels))


def eval_dataset(split, global_batch_size, mean_std, image_size,
                 eval_crop_method='IDENTITY', crop_padding=32,
                 input_context=None, input_threads=None, training_view=None,
                 seed=0):
  """Every example once, in order: (images [b, S, S, 3] float32 normalised,
  labels [b]); the last batch may be smaller. Sharded by example across
  input pipelines. With `training_view` (a Preprocessing), views
  [b, 2, S, S, 3] instead: the eval view and a training view drawn with
  `seed`, the two views the official eval gives its contrastive loss."""
  _, per_replica, _, _ = epochs.layout(global_batch_size, input_context)
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  examples = _examples(split).shard(pipelines, pipeline_id)
  if split.records is not None:
    # Decoded once here, after the shard: records hold the encoded images.
    examples = examples.map(lambda image, label: (decoding.decode(image),
                                                  label),
                            num_parallel_calls=AUTOTUNE)
  # Images already at the size need no crop unless a method asks for one.
  same_size = (split.image_shape is not None and
               split.image_shape[:2] == (image_size, image_size) and
               eval_crop_method == 'IDENTITY')

  def eval_view(image):
    image = decoding.as_image(image)
    if same_size:
      return tf.cast(image, tf.float32)
    return tf.cast(augment_lib.eval_crop(image, image_size, eval_crop_method,
                                         crop_padding), tf.float32)

  if training_view is None:
    if not same_size:
      examples = examples.map(lambda image, label: (eval_view(image), label),
                              num_parallel_calls=AUTOTUNE)
    dataset = examples.batch(per_replica).map(
        lambda images, labels: (chunks.normalize(images, mean_std), labels))
  else:
    dataset = _eval_pairs(examples, split, eval_view, training_view,
                          per_replica, mean_std, image_size, seed, pipelines,
                          pipeline_id)
  return chunks.with_threads(dataset.prefetch(AUTOTUNE), input_threads)


def _eval_pairs(examples, split, eval_view, training_view, per_replica,
                mean_std, image_size, seed, pipelines, pipeline_id):
  """`eval_dataset`'s batches of the eval view and a training view."""
  cropped = training_view.crop == 'random_resized'
  # Draws by example (its index in the split), whatever the sharding; a
  # stream's length is not known, so its draws are by shard and batch.
  total = None if split.stream is not None else len(split)

  def pair(index, example):
    image, label = example
    index = index * pipelines + pipeline_id
    image_seed = chunks.batch_seed(seed, 0, index, purpose=1)
    return (eval_view(image), chunks.fixed_size(
        decoding.as_image(image), image_seed, training_view, 1), label,
            index)

  def views(step, batch):
    firsts, seconds, labels, indices = batch
    seconds = tf.reshape(seconds, [-1, image_size, image_size, 3])
    if total is None:
      seconds = augment_lib.augment(seconds, chunks.batch_seed(
          seed, 0, step, pipeline_id), training_view, cropped=cropped)
    else:
      with augment_lib.example_positions(indices, total):
        seconds = augment_lib.augment(seconds, chunks.batch_seed(seed, 0, 0),
                                      training_view, cropped=cropped)
    return (tf.stack([chunks.normalize(firsts, mean_std),
                      chunks.normalize(seconds, mean_std)], axis=1), labels)

  return examples.enumerate().map(pair, num_parallel_calls=AUTOTUNE).batch(
      per_replica).enumerate().map(views, num_parallel_calls=AUTOTUNE)


def training_views(images, labels, preprocessing, batch_size, num_views=2,
                   seed=0, mean_std=UNIT_MEAN_STD,
                   epoch_remainder='drop'):
  """The command line's training batches of images held in memory (uint8
  [N, H, W, 3] and labels [N], or a `sources.Split`), for Keras `fit`:
  (endless dataset of (views [B, V, S, S, 3] float32 normalised with
  `mean_std`, labels [B]), steps per epoch). `preprocessing`: a
  `supcon_tf.config.Preprocessing` (or Config) naming the views."""
  split = images if isinstance(images, Split) else Split(
      labels, images=np.asarray(images, np.uint8))
  dataset = train_dataset(split, preprocessing, batch_size, mean_std,
                          num_views=num_views, seed=seed,
                          epoch_remainder=epoch_remainder)
  return dataset, int(epochs.steps_per_epoch(len(split), batch_size,
                                             epoch_remainder))


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
