"""Datasets: where the images and labels come from.

`load_source(name, data_dir, ...)` returns a `Source` whose splits are `Split`s:
images held in memory (uint8 [N, H, W, 3]), encoded image files, or a TFDS
stream, or TFRecord shards, always with integer labels. Names:

- `cifar10`, `cifar100`: the original python archives in `data_dir`
  (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`, or their extracted
  folders), read directly; else TFDS (which downloads when online).
  CIFAR-100 has `label_type='fine'` (100 classes) or `'coarse'` (20).
- `folder`: `data_dir/<split>/<class>/*.{jpg,jpeg,png}` (any case), classes
  sorted by name; hidden files and folders (`.name`) and other files are
  skipped. Grayscale, palette, RGBA and 16-bit PNGs and CMYK JPEGs become
  RGB (alpha dropped, 16 bits to their high byte, as libpng strips them).
  Images of different sizes are read as files, each cropped and resized by
  its view, unless `require_same_image_size` refuses them.
- `digits`: scikit-learn's bundled 8x8 digits as 32x32 RGB, a fixed seeded
  train/test split; needs no download.
- `tfrecord`: ImageNet TFRecord shards in `data_dir` as tensorflow/models'
  `build_imagenet_data.py` and tensorflow/tpu's `imagenet_to_gcs.py` write
  them: `train-*-of-*` and `validation-*-of-*` (the test split), each record
  a tf.train.Example with `image/encoded` and `image/class/label` (1..1000;
  0 unused) that becomes 0..999. Start-up counts the records by walking
  their length headers and reads each shard's first record only.
- any other name (`imagenet2012`, ...): TFDS with `data_dir`.

`validation_fraction` carves a seeded validation split out of train, so model
selection never touches test.
"""
import concurrent.futures
import dataclasses
import glob
import os
import re
import struct
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf.data import arrays

from supcon_tf.data.arrays import (  # noqa: F401 (their old place)
    CIFAR10_MEAN_STD, KNOWN_MEAN_STD, MEAN_STD, OFFICIAL_NAMES, UNIT_MEAN_STD,
    mean_std_of as _mean_std_of)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
CIFAR_ARCHIVES = arrays.CIFAR_ARCHIVES
DataError = arrays.DataError


@dataclasses.dataclass
class Split:
  """One split: labels [N] int64 plus exactly one of `images` (uint8
  [N, H, W, 3] in memory), `files` (paths of encoded images), `stream` (a
  tf.data.Dataset of (image, label), for datasets too large for memory) or
  `records` (TFRecord shards, whose labels are read with the images)."""
  labels: Optional[np.ndarray]
  images: Optional[np.ndarray] = None
  files: Optional[np.ndarray] = None
  stream: Optional[tf.data.Dataset] = None
  size: int = 0
  records: Optional['Records'] = None

  def __post_init__(self):
    if self.labels is not None:
      self.labels = np.asarray(self.labels, np.int64)
      self.size = len(self.labels)
    if self.records is not None:
      self.size = len(self.records)

  def __len__(self):
    return self.size

  @property
  def image_shape(self):
    """[H, W, 3] when every image has it, else None."""
    return None if self.images is None else tuple(self.images.shape[1:])

  def subset(self, indices):
    """The examples at `indices` (sorted), as a new Split."""
    indices = np.sort(np.asarray(indices, np.int64))
    if self.records is not None:
      return Split(None, records=self.records.subset(indices))
    if self.stream is not None:
      keep = np.zeros(self.size, bool)
      keep[indices] = True
      keep = tf.constant(keep)
      stream = self.stream.enumerate().filter(
          lambda i, example: tf.gather(keep, i)).map(
              lambda i, example: example)
      return Split(None, stream=stream, size=len(indices))
    return Split(
        self.labels[indices],
        images=None if self.images is None else self.images[indices],
        files=None if self.files is None else self.files[indices])


@dataclasses.dataclass
class Source:
  """A dataset's splits and facts: `num_classes`, `class_names`,
  `mean_std` (per-channel, 0..255 units, for normalisation) and the files
  skipped as corrupt (`skipped`)."""
  name: str
  splits: dict
  num_classes: int
  class_names: Optional[list] = None
  mean_std: tuple = UNIT_MEAN_STD
  skipped: list = dataclasses.field(default_factory=list)
  missing: dict = dataclasses.field(default_factory=dict)

  def split(self, name):
    if name in self.splits:
      return self.splits[name]
    if name in self.missing:
      raise DataError(self.missing[name])
    raise DataError(f'{self.name} has no split {name!r}; it has '
                    f'{", ".join(sorted(self.splits))}.')


# The official input_fn names that are not the dataset's own.
def load_source(name, data_dir=None, validation_fraction=0., seed=0,
                label_type='fine', skip_corrupt=False, num_images=0,
                label_noise_prob=0., require_same_image_size=False):
  """The dataset `name` (an official input_fn name, or cifar100, folder,
  digits, a TFDS name) as a `Source` with splits train, test (the official
  eval split: CIFAR test, ImageNet validation) and (when
  `validation_fraction` > 0) validation carved from train with `seed`.
  As the official input_fn: `num_images` > 0 keeps the first so many training
  examples; `label_noise_prob` replaces that fraction of training labels with
  uniformly drawn ones, once per example (the validation split stays clean).
  """
  name = OFFICIAL_NAMES.get(name, name)
  if not 0 <= validation_fraction < 1:
    raise ValueError('validation_fraction must be in [0, 1); got '
                     f'{validation_fraction}.')
  if label_type not in ('fine', 'coarse'):
    raise ValueError(f"label_type must be 'fine' or 'coarse'; got "
                     f'{label_type!r}.')
  if label_type == 'coarse' and name != 'cifar100':
    raise ValueError(f"label_type='coarse' applies to cifar100, not {name}.")
  if name == 'digits':
    source = _digits()
  elif name == 'folder':
    source = _folder(data_dir, skip_corrupt, require_same_image_size)
  elif name == 'tfrecord':
    source = _tfrecord(data_dir)
  elif name in CIFAR_ARCHIVES:
    source = _cifar(name, data_dir, label_type)
  else:
    source = _tfds(name, data_dir)
  for split_name, split in source.splits.items():
    _check_labels(source, split_name, split)
  if num_images:
    train = source.split('train')
    source.splits['train'] = train.subset(np.arange(min(num_images,
                                                        len(train))))
  if validation_fraction > 0:
    train = source.split('train')
    validation, rest = arrays.validation_order(len(train),
                                               validation_fraction, seed)
    source.splits['validation'] = train.subset(validation)
    source.splits['train'] = train.subset(rest)
  if label_noise_prob > 0:
    source.splits['train'] = _noisy(source.split('train'), label_noise_prob,
                                    source.num_classes, seed)
  return source


def _check_labels(source, split_name, split):
  """Labels in memory must name a class: 0 <= label < num_classes."""
  if split.labels is None or not len(split.labels):
    return
  wrong = (split.labels < 0) | (split.labels >= source.num_classes)
  if wrong.any():
    first = int(np.flatnonzero(wrong)[0])
    raise DataError(
        f'{source.name} {split_name}: {int(wrong.sum())} label(s) outside '
        f'0..{source.num_classes - 1}, e.g. {int(split.labels[first])} at '
        f'example {first}.')


def _noisy(split, probability, num_classes, seed):
  if split.labels is None:
    raise DataError('label_noise_prob needs the labels in memory; '
                    f'{split.size} examples are streamed here.')
  rng = np.random.default_rng([seed, 1])
  replaced = rng.random(len(split)) < probability
  random = rng.integers(0, num_classes, len(split))
  return dataclasses.replace(split,
                             labels=np.where(replaced, random, split.labels))


# --- digits ---------------------------------------------------------------------


def _digits():
  splits = {name: Split(labels, images=images)
            for name, (images, labels) in arrays.load_digits().items()}
  return Source('digits', splits, 10, [str(d) for d in range(10)],
                _mean_std_of(splits['train'].images))


# --- CIFAR archives ---------------------------------------------------------------


def _cifar(name, data_dir, label_type):
  if not arrays.cifar_present(name, data_dir):
    logging.info('%s: no %s or %s in %r; using TFDS.', name,
                 *CIFAR_ARCHIVES[name], data_dir)
    return _tfds(name, data_dir or None, label_type)
  splits, class_names = arrays.load_cifar(name, data_dir, label_type)
  splits = {split: Split(labels, images=images)
            for split, (images, labels) in splits.items()}
  return Source(name, splits, len(class_names), class_names,
                KNOWN_MEAN_STD[name])


# --- ImageNet TFRecord shards -------------------------------------------------------

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


def _tfrecord(data_dir):
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


def record_counts(files, threads=16):
  """The records in each TFRecord file, from their length headers (no data
  read but each file's first record, which must be an Example of the
  layout). A file that is not such a TFRecord file, or is cut short, is a
  DataError naming it."""
  return _in_threads(_count_records, files, threads, chunksize=1)


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


# --- TFDS ----------------------------------------------------------------------


def _tfds(name, data_dir, label_type='fine'):
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


# --- Image folders ---------------------------------------------------------------

# Keep decoded folder images in memory up to this size when all share a shape.
IN_MEMORY_BYTES = 2 ** 30


def _visible(names):
  return sorted(n for n in names if not n.startswith('.'))


def _folder(data_dir, skip_corrupt, require_same_image_size):
  if not data_dir:
    raise DataError("The folder source needs data_dir "
                    "(data_dir/<split>/<class>/*.jpg).")
  if not os.path.isdir(data_dir):
    raise DataError(f'folder source: data_dir {data_dir} does not exist.')
  train_dir = os.path.join(data_dir, 'train')
  if not os.path.isdir(train_dir):
    raise DataError(f'folder source: no train split at {train_dir}.')
  class_names = [c for c in _visible(os.listdir(train_dir))
                 if os.path.isdir(os.path.join(train_dir, c))]
  if not class_names:
    raise DataError(f'folder source: {train_dir} has no class folders.')
  splits, missing, skipped = {}, {}, []
  for split in ('train', 'test'):
    split_dir = os.path.join(data_dir, split)
    if not os.path.isdir(split_dir):
      missing[split] = f'folder source: no {split} split at {split_dir}' + (
          ' (--validation_fraction carves one from train to evaluate on).'
          if split == 'test' else '.')
      continue
    splits[split], bad = _read_folder_split(
        split_dir, class_names, skip_corrupt, require_same_image_size)
    skipped.extend(bad)
  if skipped:
    logging.warning('folder source: skipped %d unreadable or corrupt files, '
                    'e.g. %s', len(skipped), skipped[0])
  train_images = splits['train'].images
  mean_std = (_mean_std_of(train_images) if train_images is not None
              else UNIT_MEAN_STD)
  return Source('folder', splits, len(class_names), class_names, mean_std,
                skipped, missing)


def _read_folder_split(split_dir, class_names, skip_corrupt,
                       require_same_image_size):
  """Finds, checks and (when small enough) decodes one split's images."""
  present = [c for c in _visible(os.listdir(split_dir))
             if os.path.isdir(os.path.join(split_dir, c))]
  unknown = sorted(set(present) - set(class_names))
  if unknown:
    raise DataError(f'folder source: {split_dir} has class folders not in '
                    f'train: {", ".join(unknown)}.')
  files, labels = [], []
  for label, class_name in enumerate(class_names):
    class_dir = os.path.join(split_dir, class_name)
    if not os.path.isdir(class_dir):
      continue
    names = [f for f in _visible(os.listdir(class_dir))
             if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not names:
      raise DataError(f'folder source: class folder {class_dir} has no '
                      f'images ({", ".join(IMAGE_EXTENSIONS)}).')
    files.extend(os.path.join(class_dir, f) for f in names)
    labels.extend([label] * len(names))
  if not files:
    raise DataError(f'folder source: {split_dir} has no class folders.')
  sizes = image_sizes(files)
  ok = np.array([size is not None for size in sizes], bool)
  shapes = {}
  for i, size in enumerate(sizes):
    if size is not None and size not in shapes.values():
      shapes[i] = size
  if require_same_image_size and len(shapes) > 1:
    (first, a), (second, b) = list(shapes.items())[:2]
    raise DataError(
        f'folder source: images of {len(shapes)} sizes under {split_dir} '
        f'(require_same_image_size), e.g. {a[0]}x{a[1]} {files[first]} and '
        f'{b[0]}x{b[1]} {files[second]}.')
  images = None
  if len(shapes) == 1:
    height, width = next(iter(shapes.values()))
    if ok.sum() * height * width * 3 <= IN_MEMORY_BYTES:
      # Small enough to hold decoded: decode now (finding every broken
      # file) and augment whole batches from memory.
      logging.info('folder source: decoding %d images under %s',
                   int(ok.sum()), split_dir)
      images, decoded = _decode_all(np.asarray(files)[ok], height, width)
      images = images[decoded]
      ok[np.flatnonzero(ok)[~decoded]] = False
  bad = [f for f, good in zip(files, ok) if not good]
  if bad and not skip_corrupt:
    raise DataError(
        f'folder source: {len(bad)} unreadable or corrupt image file(s): '
        f'{", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}. Remove them '
        'or pass skip_corrupt=True (--skip_corrupt) to skip them.')
  keep = np.flatnonzero(ok)
  labels = np.asarray(labels, np.int64)[keep]
  if images is not None:
    return Split(labels, images=images), bad
  return Split(labels, files=np.asarray(files)[keep]), bad


# --- Image headers: sizes without reading pixels ----------------------------------

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Start-of-frame markers (baseline, progressive, ...), not DHT / JPG / DAC.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM, RST0..7, SOI.
_JPEG_STANDALONE = frozenset([0x01, 0xD8] + list(range(0xD0, 0xD8)))


def image_size(path):
  """(height, width) from the header of a JPEG or PNG file, reading no pixel
  data; None when the file cannot be read or its header is not a valid
  image's."""
  try:
    with open(path, 'rb') as f:
      start = f.read(24)
      if start.startswith(_PNG_SIGNATURE):
        if len(start) < 24 or start[12:16] != b'IHDR':
          return None
        width, height = struct.unpack('>II', start[16:24])
        return (height, width) if height and width else None
      if not start.startswith(b'\xff\xd8'):
        return None
      f.seek(2)
      return _jpeg_frame_size(f)
  except (OSError, struct.error):
    return None


def _jpeg_frame_size(f):
  """The frame header's (height, width), walking the markers from SOI."""
  while True:
    byte = f.read(1)
    if byte != b'\xff':
      return None
    while byte == b'\xff':  # Fill bytes may pad a marker.
      byte = f.read(1)
    if not byte:
      return None
    marker = byte[0]
    if marker in _JPEG_STANDALONE:
      continue
    if marker in (0xD9, 0xDA):  # The image ended, or scans began, first.
      return None
    length, = struct.unpack('>H', f.read(2))
    if marker in _JPEG_FRAMES:
      _, height, width = struct.unpack('>BHH', f.read(5))
      return (height, width) if height and width else None
    if length < 2:
      return None
    f.seek(length - 2, 1)


def image_sizes(files, threads=16):
  """`image_size` of every file, read by `threads` threads (the time is the
  file system's: one open and a few small reads per file)."""
  return _in_threads(image_size, files, threads, chunksize=256)


def _in_threads(read, paths, threads, chunksize):
  """[read(path) for path in paths], by `threads` threads when there are
  many paths: file-system waits, which threads overlap."""
  if len(paths) < 64:
    return [read(path) for path in paths]
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    return list(pool.map(read, paths, chunksize=chunksize))


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


def _decode_all(files, height, width):
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
