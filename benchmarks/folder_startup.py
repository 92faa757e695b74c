"""Start-up of the folder and TFRecord sources: seconds and memory from
`load_source(INPUT_FN, DIR)` to the first batch's data being known, per
100,000 files or records.

Without --data_dir, writes (once, under --work_dir) a synthetic dataset of
--files small JPEGs in 100 classes, at two sizes (48 x 40 and 40 x 48): a
folder, so that it is read as files, as a photograph folder is; or with
--input_fn=tfrecord, ImageNet-layout shards of 1,250 records each (as
ImageNet's 1,024 train shards hold). With --data_dir, measures that dataset
(e.g. the shared ImageNet photographs).

    .venv/bin/python benchmarks/folder_startup.py --files 100000
    .venv/bin/python benchmarks/folder_startup.py --input_fn=tfrecord
    .venv/bin/python benchmarks/folder_startup.py --data_dir DIR

Prints the seconds, the peak resident memory added, and last
`seconds per 100k files: S` (or records).
"""
import os
import resource
import time

from absl import app, flags

flags.DEFINE_string('data_dir', None, 'A folder source root to measure.')
flags.DEFINE_string('work_dir', '/tmp/supcon_folder_startup',
                    'Where the synthetic folder is written (kept).')
flags.DEFINE_integer('files', 100000, 'Synthetic JPEG files or records.')
flags.DEFINE_enum('input_fn', 'folder', ['folder', 'tfrecord'],
                  'The source to measure.')
RECORDS_PER_SHARD = 1250
FLAGS = flags.FLAGS


def _write_synthetic(root, count, input_fn):
  import numpy as np
  from PIL import Image
  done = os.path.join(root, f'.done-{input_fn}-{count}')
  if os.path.exists(done):
    return
  rng = np.random.default_rng(0)
  blocks = rng.integers(0, 256, size=(64, 6, 5, 3), dtype=np.uint8)
  encoded = {}
  for size in ((48, 40), (40, 48)):
    for i, block in enumerate(blocks):
      image = Image.fromarray(block).resize(size, Image.BILINEAR)
      path = os.path.join(root, 'tmp.jpg')
      os.makedirs(root, exist_ok=True)
      image.save(path, quality=90)
      with open(path, 'rb') as f:
        encoded[size, i] = f.read()
  keys = list(encoded)
  if input_fn == 'tfrecord':
    _write_records(root, count, [encoded[key] for key in keys])
    open(done, 'w').close()
    return
  for n in range(count):
    folder = os.path.join(root, 'train', f'class{n % 100:03d}')
    if n < 100:
      os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{n:07d}.jpg'), 'wb') as f:
      f.write(encoded[keys[n % len(keys)]])
  open(done, 'w').close()


def _write_records(root, count, images):
  import tensorflow as tf
  shards = -(-count // RECORDS_PER_SHARD)
  for s in range(shards):
    path = os.path.join(root, f'train-{s:05d}-of-{shards:05d}')
    with tf.io.TFRecordWriter(path) as writer:
      for n in range(s * RECORDS_PER_SHARD,
                     min(count, (s + 1) * RECORDS_PER_SHARD)):
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[images[n % len(images)]])),
            'image/class/label': tf.train.Feature(
                int64_list=tf.train.Int64List(value=[1 + n % 100])),
        })).SerializeToString())


def main(_):
  root = FLAGS.data_dir
  if root is None:
    root = os.path.join(FLAGS.work_dir, FLAGS.input_fn)
    _write_synthetic(root, FLAGS.files, FLAGS.input_fn)
  from supcon_tf.data import sources
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  start = time.perf_counter()
  source = sources.load_source(FLAGS.input_fn, root)
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
  train = source.split('train')
  count = len(train)
  kind = ('records' if train.records is not None else
          'files in memory' if train.images is not None else 'files')
  print(f'{count} {kind} under {root}: {seconds:.2f} s, peak memory '
        f'+{peak / 1024:.0f} MiB')
  unit = 'records' if train.records is not None else 'files'
  print(f'seconds per 100k {unit}: {seconds * 100000 / count:.2f}')


if __name__ == '__main__':
  app.run(main)
