"""TFDS datasets: the reader (which downloads when online), and training
batches from a stream, for datasets too large for memory."""
import numpy as np

from supcon_tf.data import chunks, decoding
from supcon_tf.data.arrays import (CIFAR_ARCHIVES, KNOWN_MEAN_STD,
                                   UNIT_MEAN_STD, DataError)
from supcon_tf.data.splits import Source, Split


def read_source(name, data_dir, label_type='fine'):
  """The TFDS dataset `name`: train and its eval split (ImageNet's
  validation, else test); fixed-size images in memory, others a stream."""
  import tensorflow_datasets as tfds  # Slow to import; only this needs it.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
  except Exception as error:  # TFDS raises many kinds; name the dataset.
    hint = ''
    if name in CIFAR_ARCHIVES:
      hint = (f' Or put {CIFAR_ARCHIVES[name][0]} (the original python '
              'archive) in --data_dir.')
    raise DataError(
        f'Dataset {name!r} is not in data_dir={data_dir!r} and TFDS could '
        f'not prepare it ({type(error).__name__}: {error}).{hint}') from error
  info = builder.info
  label_key = 'coarse_label' if label_type == 'coarse' else 'label'
  num_classes = info.features[label_key].num_classes
  class_names = list(info.features[label_key].names)
  # Split facts are absent only when TFDS is mocked (in tests).
  known = dict(info.splits) or {'train': None, 'test': None}
  splits = {}
  # The official eval split: ImageNet's validation, else test.
  evaluation = (('validation', 'test') if name.startswith('imagenet') else
                ('test', 'validation'))
  for split, candidates in (('train', ('train',)), ('test', evaluation)):
    tfds_split = next((c for c in candidates if c in known), None)
    if tfds_split is None:
      continue
    image_shape = info.features['image'].shape
    if None not in image_shape:
      # Fixed-size images (CIFAR): held in memory for random access.
      batches = list(builder.as_dataset(split=tfds_split).batch(
          10000).as_numpy_iterator())
      splits[split] = Split(
          np.concatenate([b[label_key] for b in batches]),
          images=np.concatenate([b['image'] for b in batches]))
    else:
      stream = builder.as_dataset(split=tfds_split, shuffle_files=False)
      stream = stream.map(lambda x: (x['image'], x[label_key]))
      size = (known[tfds_split].num_examples if known[tfds_split]
              else int(stream.reduce(0, lambda n, _: n + 1)))
      splits[split] = Split(None, stream=stream, size=size)
  return Source(name, splits, num_classes, class_names,
                KNOWN_MEAN_STD.get(name, UNIT_MEAN_STD))


def stream_train(split, config, per_replica, mean_std, num_views, seed,
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
    image_seed = chunks.batch_seed(seed, start_epoch, index, pipeline_id,
                                   purpose=1)
    return chunks.fixed_size(decoding.as_image(image), image_seed, config,
                             num_views), label

  def views(step, batch):
    return chunks.chunk_views(
        batch[0], batch[1],
        chunks.batch_seed(seed, start_epoch, step, pipeline_id), config,
        num_views, mean_std, cropped)
  batches = examples.map(decode, num_parallel_calls=chunks.AUTOTUNE).batch(
      per_replica, drop_remainder=True).enumerate()
  return batches.map(views, num_parallel_calls=chunks.AUTOTUNE).prefetch(
      chunks.AUTOTUNE)
