"""ImageNet TFRecord shards: the reader, its start-up count, and the order
in which training reads them.

The layout is that of tensorflow/models' `build_imagenet_data.py` and
tensorflow/tpu's `imagenet_to_gcs.py`: `train-*-of-*` and `validation-*-of-*`
(the test split), each record a tf.train.Example with `image/encoded` and
`image/class/label` (1..1000; 0 unused) that becomes 0..999. Start-up counts
the records by walking their length headers (a CRC-32C of each) and reads
each shard's first record only. Training reads shards in an order drawn
anew each epoch, interleaved and shuffled in blocks; `record_position` finds
where a resumed run starts without reading a record."""
import dataclasses
import glob
import os
import struct
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import files as files_lib
from supcon_tf.data import chunks, epochs
from supcon_tf.data.arrays import KNOWN_MEAN_STD, DataError
from supcon_tf.data.decoding import CorruptDataError
from supcon_tf.data.splits import Source, Split


# The features of the layout build_imagenet_data.py and imagenet_to_gcs.py
# write; labels there are 1..1000, 0 unused.
RECORD_IMAGE = 'image/encoded'


RECORD_LABEL = 'image/class/label'


RECORD_LABEL_OFFSET = 1


RECORD_CLASSES = 1000


# The shard file patterns of each split: ImageNet's validation is its test.
RECORD_SPLITS = {'train': 'train-*-of-*', 'test': 'validation-*-of-*'}


# A TFRecord: uint64 length, uint32 masked CRC of the length, the data,
# uint32 masked CRC of the data.
_RECORD_HEADER = 12


_RECORD_FOOTER = 4


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data):
  """The CRC TFRecords store: CRC-32C, rotated and offset."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass
class Records:
  """TFRecord shards of tf.train.Examples: `files` [S] and the records in
  each, `counts` [S]; `keep` (bool, one per record, shard after shard) marks
  the split's records, None all of them. A record's id is its place in
  that order."""
  files: np.ndarray
  counts: np.ndarray
  keep: Optional[np.ndarray] = None
  num_classes: int = RECORD_CLASSES

  def __len__(self):
    return int(self.counts.sum() if self.keep is None else self.keep.sum())

  @property
  def starts(self):
    """The id of each shard's first record."""
    return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

  def kept_counts(self):
    """The split's records in each shard."""
    if self.keep is None:
      return self.counts
    shard = np.repeat(np.arange(len(self.counts)), self.counts)
    return np.bincount(shard[self.keep], minlength=len(self.counts))

  def subset(self, indices):
    """The split's records at `indices` (of its records, in order)."""
    kept = (np.arange(int(self.counts.sum())) if self.keep is None else
            np.flatnonzero(self.keep))
    keep = np.zeros(int(self.counts.sum()), bool)
    keep[kept[indices]] = True
    return dataclasses.replace(self, keep=keep)

  def describe(self, record_id):
    """'<shard> record <k>' for a record id."""
    shard = int(np.searchsorted(self.starts, record_id, side='right')) - 1
    return f'{self.files[shard]} record {int(record_id - self.starts[shard])}'


def read_source(data_dir):
  """The TFRecord shards of `data_dir` as a Source (train, and test when
  validation shards are there)."""
  if not data_dir or not os.path.isdir(data_dir):
    where = (' (the shards are read from local or mounted file systems, '
             'not URLs)' if '://' in str(data_dir) else '')
    raise DataError(f'tfrecord source: data_dir {data_dir!r} is not a '
                    'directory holding train-*-of-* and validation-*-of-* '
                    f'shards{where}.')
  splits, missing = {}, {}
  for split, pattern in RECORD_SPLITS.items():
    files = sorted(glob.glob(os.path.join(data_dir, pattern)))
    if not files:
      message = f'tfrecord source: no {pattern} shards in {data_dir}.'
      if split == 'train':
        raise DataError(message)
      missing[split] = message
      continue
    started = time.perf_counter()
    counts = record_counts(files)
    splits[split] = Split(None, records=Records(np.asarray(files),
                                                np.asarray(counts, np.int64)))
    logging.info('tfrecord source: %d %s records in %d shards (counted in '
                 '%.1f s)', sum(counts), split, len(files),
                 time.perf_counter() - started)
  return Source('tfrecord', splits, RECORD_CLASSES, None,
                KNOWN_MEAN_STD['tfrecord'], missing=missing)


def record_counts(paths, threads=16):
  """The records in each TFRecord file, from their length headers (no data
  read but each file's first record, which must be an Example of the
  layout). A file that is not such a TFRecord file, or is cut short, is a
  DataError naming it."""
  return files_lib.in_threads(_count_records, paths, threads, chunksize=1)


def _count_records(path):
  try:
    size = os.path.getsize(path)
    with open(path, 'rb', buffering=0) as f:
      fd = f.fileno()
      header = os.pread(fd, _RECORD_HEADER, 0)
      if len(header) < _RECORD_HEADER or _masked_crc32c(
          header[:8]) != struct.unpack('<I', header[8:])[0]:
        raise DataError(f'tfrecord source: {path} is not a TFRecord file '
                        '(it is empty, or its first length header fails its '
                        'CRC check).')
      length, = struct.unpack('<Q', header[:8])
      _check_example(path, os.pread(fd, min(length, size), _RECORD_HEADER))
      count = position = 0
      while position < size:
        header = os.pread(fd, 8, position)
        end = position + _RECORD_HEADER + _RECORD_FOOTER + (
            struct.unpack('<Q', header)[0] if len(header) == 8 else size)
        if end > size:
          raise DataError(
              f'tfrecord source: {path} is cut short: record {count} ends at '
              f'byte {end}, past the end of the file ({size} bytes).')
        count, position = count + 1, end
      return count
  except OSError as error:
    raise DataError(f'tfrecord source: cannot read {path}: {error}.') from error


def _check_example(path, data):
  """The first record must be a tf.train.Example with the layout's image
  bytes and integer label."""
  try:
    features = tf.train.Example.FromString(data).features.feature
  except Exception as error:  # The protobuf decode error has no public type.
    raise DataError(f'tfrecord source: the first record of {path} is not a '
                    f'tf.train.Example ({error}).') from error
  for key, kind in ((RECORD_IMAGE, 'bytes_list'), (RECORD_LABEL, 'int64_list')):
    if key not in features or features[key].WhichOneof('kind') != kind:
      raise DataError(
          f'tfrecord source: the first record of {path} has no {key} '
          f'({kind}); it has {", ".join(sorted(features)) or "no features"}. '
          'The layout is that of build_imagenet_data.py / imagenet_to_gcs.py.')


def parse_records(serialized):
  """Serialized Examples [n] -> (encoded images [n], labels [n] from 0; a
  missing label becomes -1, a missing image '')."""
  parsed = tf.io.parse_example(serialized, {
      RECORD_IMAGE: tf.io.FixedLenFeature([], tf.string, default_value=''),
      RECORD_LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0)})
  return parsed[RECORD_IMAGE], parsed[RECORD_LABEL] - RECORD_LABEL_OFFSET


def shard_records(records, shard, skip_corrupt=False):
  """The records of shard `shard` (an int64 tensor) that the split keeps:
  (record id, serialized Example). A shard that gives fewer records than
  start-up counted (a failed CRC check, a file changed since) is a
  CorruptDataError naming it, or with `skip_corrupt` a warning."""
  files = tf.constant(records.files)
  starts = tf.constant(records.starts)
  expected = tf.gather(tf.constant(records.counts), shard)
  read = tf.data.TFRecordDataset(tf.gather(files, shard)).ignore_errors()
  # A last element, index -1, checks the count once the shard has ended.
  end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64),
                                      tf.constant('')))

  def check(last, record):
    index, data = record
    whole = tf.logical_or(index >= 0, last + 1 == expected)
    checked = tf.cond(whole, lambda: tf.constant(0, tf.int64),
                      lambda: tf.numpy_function(
                          lambda s, n: _short_shard(records, s, n,
                                                    skip_corrupt),
                          [shard, last + 1], tf.int64))
    with tf.control_dependencies([checked]):
      index = tf.identity(index)
    return tf.maximum(last, index), (index, data)

  found = read.enumerate().concatenate(end).scan(
      tf.constant(-1, tf.int64), check).filter(lambda index, _: index >= 0)
  found = found.map(lambda index, data: (tf.gather(starts, shard) + index,
                                         data))
  if records.keep is not None:
    keep = tf.constant(records.keep)
    found = found.filter(lambda record_id, _: tf.gather(keep, record_id))
  return found


def _short_shard(records, shard, read, skip):
  path, expected = records.files[shard], int(records.counts[shard])
  if not skip:
    raise CorruptDataError(
        f'{path} gave {read} of its {expected} records: record {read} is '
        'corrupt (its CRC check failed) or the file changed since start-up '
        '(--skip_corrupt skips the rest of such a shard).')
  logging.warning('skipped the last %d records of the corrupt shard %s',
                  expected - read, path)
  return np.int64(0)


def check_record_labels(labels, record_ids, records):
  """`labels`, or a CorruptDataError naming the first record whose label is
  not one of the classes."""
  def fail(labels, record_ids):
    wrong = np.flatnonzero((labels < 0) | (labels >= records.num_classes))[0]
    raise CorruptDataError(
        f'{records.describe(record_ids[wrong])}: label '
        f'{labels[wrong] + RECORD_LABEL_OFFSET} is not one of the '
        f'{RECORD_LABEL} values {RECORD_LABEL_OFFSET}..{records.num_classes}.')

  bad = tf.reduce_any((labels < 0) | (labels >= records.num_classes))
  return tf.cond(bad, lambda: tf.numpy_function(
      fail, [labels, record_ids], tf.int64, stateful=False), lambda: labels)


def record_examples(records):
  """Every record of the split, in order: (encoded image, label)."""
  def parse(record_ids, serialized):
    images, labels = parse_records(serialized)
    return images, check_record_labels(labels, record_ids, records)
  examples = tf.data.Dataset.range(len(records.files)).flat_map(
      lambda shard: shard_records(records, shard))
  return examples.batch(256).map(parse).unbatch()


# --- Training order ---------------------------------------------------------

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


def record_epoch(records, seed, epoch, readers, reader, skip_corrupt):
  """One epoch of one reader's records: its shards interleaved, then
  shuffled in blocks of RECORD_SHUFFLE records, each block's order drawn
  statelessly from (seed, epoch, reader, block)."""
  num_shards = len(records.files)
  shards = tf.numpy_function(
      lambda e: record_shard_order(num_shards, seed, int(e))[
          reader::readers].astype(np.int64), [epoch], tf.int64, stateful=False)
  found = tf.data.Dataset.from_tensor_slices(tf.ensure_shape(
      shards, [len(range(reader, num_shards, readers))])).interleave(
          lambda shard: shard_records(records, shard, skip_corrupt),
          cycle_length=min(RECORD_CYCLE, num_shards), block_length=1,
          num_parallel_calls=chunks.AUTOTUNE, deterministic=True)

  def shuffled(block, records_of_block):
    record_ids, serialized = records_of_block
    key = chunks.batch_seed(seed, epoch, block, reader, purpose=2)
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(record_ids), key))
    return tf.data.Dataset.from_tensor_slices(
        (tf.gather(record_ids, order), tf.gather(serialized, order)))
  return found.batch(RECORD_SHUFFLE).enumerate().flat_map(shuffled)


def train_chunks(split, config, global_batch_size, length, num_views, seed,
                 start_step, layout, input_context, shard_per_host,
                 skip_corrupt):
  """The chunks of this input pipeline from TFRecord shards, as the file
  branch's: (images or crops, labels, batch seed key, first place). With
  `shard_per_host`, each input pipeline reads its own shards (so the
  batches depend on their number); else every pipeline reads them all and
  keeps its part of each global batch."""
  records = split.records
  _, per_replica, first_chunk, chunk_count = layout
  pipelines = input_context.num_input_pipelines if input_context else 1
  readers, reader = ((pipelines, input_context.input_pipeline_id)
                     if shard_per_host and pipelines > 1 else (1, 0))
  if len(records.files) < readers:
    raise DataError(
        f'{len(records.files)} TFRecord shards cannot be split over '
        f'{readers} input pipelines (--shard_per_host): give at least one '
        'shard each, or --shard_per_host=false.')
  # Records a reader reads per global batch, and the part that is this
  # pipeline's.
  take = global_batch_size // readers
  mine = 0 if readers > 1 else first_chunk * per_replica
  start_epoch, offset = record_position(records, seed, readers, reader,
                                        start_step * take)
  found = tf.data.Dataset.range(start_epoch, chunks.ENDLESS).flat_map(
      lambda epoch: record_epoch(records, seed, epoch, readers, reader,
                                  skip_corrupt))
  # Records are skipped before they are parsed or decoded.
  found = found.skip(offset).batch(take, drop_remainder=True)

  def chunks_of(step, batch):
    record_ids, serialized = batch
    record_ids = record_ids[mine:mine + chunk_count * per_replica]
    images, labels = parse_records(
        serialized[mine:mine + chunk_count * per_replica])
    labels = check_record_labels(labels, record_ids, records)
    epoch, in_epoch = epochs.epoch_and_step(step, global_batch_size, length)
    shape = [chunk_count, per_replica]
    return tf.data.Dataset.from_tensor_slices((
        tf.fill([chunk_count], epoch), tf.fill([chunk_count], in_epoch),
        tf.range(first_chunk, first_chunk + chunk_count, dtype=tf.int64),
        tf.reshape(record_ids, shape), tf.reshape(images, shape),
        tf.reshape(labels, shape)))

  def load(epoch, step, chunk, record_ids, images, labels):
    return chunks.decoded_chunk(
        images, record_ids, labels, lambda image: image, records.describe,
        seed, epoch, step, chunk, config, num_views, global_batch_size,
        per_replica, skip_corrupt)

  dataset = tf.data.Dataset.zip(
      tf.data.Dataset.range(start_step, chunks.ENDLESS), found).flat_map(
          chunks_of)
  return dataset.interleave(load, cycle_length=2, block_length=1,
                            num_parallel_calls=chunks.AUTOTUNE,
                            deterministic=True)
