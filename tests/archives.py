"""CIFAR python archives the tests write themselves."""
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
