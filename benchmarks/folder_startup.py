"""Folder source start-up: seconds and memory from `load_source('folder', DIR)`
to the first batch's data being known, per 100,000 files.

Without --data_dir, writes (once, under --work_dir) a synthetic folder of
--files small JPEGs in 100 classes, at two sizes (48 x 40 and 40 x 48), so the
folder is read as files, as a photograph folder is. With --data_dir, measures
that folder (e.g. the shared ImageNet photographs).

    .venv/bin/python benchmarks/folder_startup.py --files 100000
    .venv/bin/python benchmarks/folder_startup.py --data_dir DIR

Prints the seconds, the peak resident memory added, and last
`seconds per 100k files: S`.
"""
import os
import resource
import time

from absl import app, flags

flags.DEFINE_string('data_dir', None, 'A folder source root to measure.')
flags.DEFINE_string('work_dir', '/tmp/supcon_folder_startup',
                    'Where the synthetic folder is written (kept).')
flags.DEFINE_integer('files', 100000, 'Synthetic JPEG files.')
FLAGS = flags.FLAGS


def _write_synthetic(root, count):
  import numpy as np
  from PIL import Image
  done = os.path.join(root, f'.done-{count}')
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
  for n in range(count):
    folder = os.path.join(root, 'train', f'class{n % 100:03d}')
    if n < 100:
      os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{n:07d}.jpg'), 'wb') as f:
      f.write(encoded[keys[n % len(keys)]])
  open(done, 'w').close()


def main(_):
  root = FLAGS.data_dir
  if root is None:
    root = FLAGS.work_dir
    _write_synthetic(root, FLAGS.files)
  from supcon_tf.data import sources
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  start = time.perf_counter()
  source = sources.load_source('folder', root)
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
  train = source.split('train')
  count = len(train)
  kind = 'in memory' if train.images is not None else 'files'
  print(f'{count} files ({kind}) under {root}: {seconds:.2f} s, peak memory '
        f'+{peak / 1024:.0f} MiB')
  print(f'seconds per 100k files: {seconds * 100000 / count:.2f}')


if __name__ == '__main__':
  app.run(main)
