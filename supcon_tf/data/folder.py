"""Image folders: `data_dir/<split>/<class>/*.{jpg,jpeg,png}` (any case),
classes sorted by name; hidden files and folders (`.name`) and other files
skipped. Start-up reads each file's header only (`image_size`); images of
one size that fit in memory are decoded then, others are read as files in
each chunk (`file_chunks`)."""
import os
import struct

import numpy as np
import tensorflow as tf
from absl import logging

from supcon_tf import files as files_lib
from supcon_tf.data import chunks, decoding
from supcon_tf.data.arrays import UNIT_MEAN_STD, DataError, mean_std_of
from supcon_tf.data.splits import Split, Source


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


# Keep decoded folder images in memory up to this size when all share a shape.
IN_MEMORY_BYTES = 2 ** 30


def _visible(names):
  return sorted(n for n in names if not n.startswith('.'))


def read_source(data_dir, skip_corrupt, require_same_image_size):
  """`data_dir/<split>/<class>/*` as a Source: images in memory when they
  share a size and fit IN_MEMORY_BYTES, else their paths."""
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
  mean_std = (mean_std_of(train_images) if train_images is not None
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
      images, decoded = decoding.decode_all(np.asarray(files)[ok], height,
                                            width)
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


def image_sizes(paths, threads=16):
  """`image_size` of every file, read by `threads` threads (the time is the
  file system's: one open and a few small reads per file)."""
  return files_lib.in_threads(image_size, paths, threads, chunksize=256)


def file_chunks(split, index_chunks, config, num_views, seed,
                global_batch_size, per_replica, skip_corrupt):
  """The chunks (`chunks.index_chunks`) of a split of image files, each
  read and decoded (SimCLR crops: cropped) image by image."""
  paths_of = tf.constant(split.files)
  labels = tf.constant(split.labels)

  def load(epoch, step, chunk, indices):
    paths = tf.gather(paths_of, indices)
    return chunks.decoded_chunk(
        paths, paths, tf.gather(labels, indices), tf.io.read_file,
        lambda path: path.decode(), seed, epoch, step, chunk, config,
        num_views, global_batch_size, per_replica, skip_corrupt)
  # One element per chunk, in order, several chunks at a time.
  return index_chunks.interleave(load, cycle_length=2, block_length=1,
                                 num_parallel_calls=chunks.AUTOTUNE,
                                 deterministic=True)
