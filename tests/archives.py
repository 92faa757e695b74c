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


def write_quadrants(root, per_class=16, test_per_class=6, size=8):
  """An image folder (root/{train,test}/class<c>/<i>.png) of four classes:
  which quadrant of a size x size image is bright (noisy)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  half = size // 2
  for split, count in (('train', per_class), ('test', test_per_class)):
    for c in range(4):
      folder = root / split / f'class{c}'
      folder.mkdir(parents=True)
      for i in range(count):
        image = rng.integers(0, 60, (size, size, 3))
        y, x = divmod(c, 2)
        image[y * half:(y + 1) * half, x * half:(x + 1) * half] += 150
        Image.fromarray(image.astype(np.uint8)).save(folder / f'{i}.png')
  return root
