"""Datasets the tests write themselves: CIFAR python archives, and a tiny
image folder of four separable classes."""
import io
import pickle
import tarfile

import numpy as np


def write_cifar_archive(path, folder, batches):
  """A .tar.gz of pickled members {name: dict} under `folder`, as the
  original CIFAR python archives."""
  with tarfile.open(path, 'w:gz') as tar:
    for member, content in batches.items():
      payload = pickle.dumps(content)
      info = tarfile.TarInfo(f'{folder}/{member}')
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))


def tiny_cifar10(directory, per_batch=8, test=20, seed=0):
  """cifar-10-python.tar.gz in `directory`: ten classes, five training
  batches of `per_batch` images and a test batch of `test`."""
  rng = np.random.default_rng(seed)
  batches = {'batches.meta': {b'label_names': [
      f'class{i}'.encode() for i in range(10)]}}
  for member, count in [(f'data_batch_{i}', per_batch) for i in range(1, 6)
                        ] + [('test_batch', test)]:
    batches[member] = {
        b'data': rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        b'labels': list(rng.integers(0, 10, size=count))}
  write_cifar_archive(directory / 'cifar-10-python.tar.gz',
                      'cifar-10-batches-py', batches)
  return directory


def tiny_cifar100(directory, train=40, test=20, seed=0):
  """cifar-100-python.tar.gz in `directory`: 100 fine and 20 coarse
  classes, `train` training images and `test` test images."""
  rng = np.random.default_rng(seed)
  batches = {'meta': {
      b'fine_label_names': [f'fine{i}'.encode() for i in range(100)],
      b'coarse_label_names': [f'coarse{i}'.encode() for i in range(20)]}}
  for member, count in (('train', train), ('test', test)):
    batches[member] = {
        b'data': rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        b'fine_labels': list(rng.integers(0, 100, size=count)),
        b'coarse_labels': list(rng.integers(0, 20, size=count))}
  write_cifar_archive(directory / 'cifar-100-python.tar.gz',
                      'cifar-100-python', batches)
  return directory


def quadrants(per_class, rng, size=8):
  """(uint8 image, label) of four classes, `per_class` each, class after
  class: which quadrant of a size x size image is bright (noisy)."""
  half = size // 2
  examples = []
  for c in range(4):
    for _ in range(per_class):
      image = rng.integers(0, 60, (size, size, 3))
      y, x = divmod(c, 2)
      image[y * half:(y + 1) * half, x * half:(x + 1) * half] += 150
      examples.append((image.astype(np.uint8), c))
  return examples


def write_quadrants(root, per_class=16, test_per_class=6, size=8):
  """An image folder (root/{train,test}/class<c>/<i>.png) of `quadrants`."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, count in (('train', per_class), ('test', test_per_class)):
    for i, (image, c) in enumerate(quadrants(count, rng, size)):
      folder = root / split / f'class{c}'
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(folder / f'{i % count}.png')
  return root


def write_records(root, split_shards, encode='png'):
  """ImageNet-layout TFRecord shards in `root`, as build_imagenet_data.py
  writes them: for each split name ('train', 'validation') a list of shards,
  each a list of (uint8 image or encoded bytes, label 0..) written as
  tf.train.Examples with `image/encoded` and `image/class/label` (label + 1,
  0 unused). Returns the shard paths by split."""
  import tensorflow as tf
  from PIL import Image
  root.mkdir(parents=True, exist_ok=True)
  paths = {}
  for split, shards in split_shards.items():
    paths[split] = []
    for s, examples in enumerate(shards):
      path = root / f'{split}-{s:05d}-of-{len(shards):05d}'
      with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in examples:
          if not isinstance(image, bytes):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, encode.upper())
            image = buffer.getvalue()
          writer.write(tf.train.Example(features=tf.train.Features(feature={
              'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
                  value=[image])),
              'image/class/label': tf.train.Feature(
                  int64_list=tf.train.Int64List(value=[int(label) + 1])),
          })).SerializeToString())
      paths[split].append(path)
  return paths
