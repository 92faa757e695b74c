"""Datasets that fit in memory as NumPy arrays, with no TensorFlow: the CIFAR
python archives, scikit-learn's digits and folders of same-size images; the
validation split's carving; the normalisation tables. What a Keras user on
any backend feeds to `fit`; `sources.py` builds the command line's sources
on them.
Images are uint8 [N, 32, 32, 3], labels int64 [N]."""
import os
import pickle
import tarfile
import zlib

import numpy as np


CIFAR_ARCHIVES = {
    'cifar10': ('cifar-10-python.tar.gz', 'cifar-10-batches-py'),
    'cifar100': ('cifar-100-python.tar.gz', 'cifar-100-python'),
}
DIGITS_TEST_SIZE = 360  # Of 1797 images, about a fifth.

# Mean and standard deviation per channel, in 0..255 units. CIFAR-10: the
# official whitening, which works on images scaled to [-1, 1]: mean
# (-0.0172, -0.0356, -0.107), std (0.4046, 0.3988, 0.402) there.
CIFAR10_MEAN_STD = (tuple(127.5 * (1 + m) for m in (-0.0172, -0.0356, -0.107)),
                    tuple(127.5 * s for s in (0.4046, 0.3988, 0.402)))
MEAN_STD = {
    'cifar10': CIFAR10_MEAN_STD,
    'cifar100': ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
    'imagenet2012': ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}
# No dataset statistics: scale to [-1, 1], as the official code does.
UNIT_MEAN_STD = ((127.5,) * 3, (127.5,) * 3)
# The datasets whose whitening statistics are known without reading them:
# the official code whitens CIFAR-10 and leaves ImageNet in [-1, 1]; CIFAR-100
# (not an official dataset) takes its own statistics.
KNOWN_MEAN_STD = {'cifar10': CIFAR10_MEAN_STD, 'cifar100': MEAN_STD['cifar100'],
                  'imagenet2012': UNIT_MEAN_STD, 'tfrecord': UNIT_MEAN_STD}
# The official input_fn names of datasets named otherwise here.
OFFICIAL_NAMES = {'imagenet': 'imagenet2012'}


def mean_std_of(images):
  """A dataset's own per-channel (mean, std) in 0..255 units (std >= 1)."""
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
  return (tuple(float(m) for m in pixels.mean(0)),
          tuple(float(s) for s in np.maximum(pixels.std(0), 1.)))


def normalization(config, data_mean_std=None):
  """Per-channel (mean, std) for the inputs: none but the scaling to
  [-1, 1] without `apply_whitening`, else the named dataset's statistics
  (`normalization`), else the data's own (`data_mean_std`; without it, the
  dataset's known ones)."""
  if not config.apply_whitening:
    return UNIT_MEAN_STD
  if config.normalization != 'dataset':
    return MEAN_STD[config.normalization]
  if data_mean_std is not None:
    return data_mean_std
  name = OFFICIAL_NAMES.get(config.input_fn, config.input_fn)
  if name not in KNOWN_MEAN_STD:
    raise ValueError(
        f'The whitening statistics of {config.input_fn!r} are known only from '
        f'its data: set --normalization to one of '
        f'{", ".join(MEAN_STD)}, or --apply_whitening=False.')
  return KNOWN_MEAN_STD[name]


class DataError(ValueError):
  """A dataset that cannot be read: its name and what is missing or wrong.
  The apps print it as one line (nothing of the run is written before the
  data is read)."""


def load_digits():
  """scikit-learn's 8 x 8 digits as 32 x 32 RGB (each pixel a 4 x 4 block,
  0..16 scaled to 0..255): {'train': (images, labels), 'test': (...)}, the
  test split 360 images drawn with a fixed seed."""
  from sklearn.datasets import load_digits as digits  # Only here needed.
  loaded = digits()
  images = np.round(loaded.images * (255. / 16.)).astype(np.uint8)
  images = np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)
  images = np.repeat(images[..., None], 3, axis=3)
  order = np.random.default_rng(0).permutation(len(images))
  test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
  labels = loaded.target.astype(np.int64)
  return {'train': (images[train], labels[train]),
          'test': (images[test], labels[test])}


def _cifar_paths(name, data_dir):
  """(the python archive, its unpacked folder) of `name` in `data_dir`."""
  data_dir = os.path.expanduser(data_dir or '')
  return tuple(os.path.join(data_dir, p) for p in CIFAR_ARCHIVES[name])


def cifar_present(name, data_dir=''):
  """Whether `data_dir` holds the CIFAR python archive or its folder."""
  archive, folder = _cifar_paths(name, data_dir)
  return os.path.isdir(folder) or os.path.isfile(archive)


def load_cifar(name, data_dir='', label_type='fine'):
  """CIFAR-10 or CIFAR-100 ('fine' or 'coarse' labels) from the python
  archive (cifar-10-python.tar.gz) or its unpacked folder in `data_dir`:
  ({'train': (images, labels), 'test': (...)}, class names)."""
  if name not in CIFAR_ARCHIVES:
    raise DataError(f'Unknown CIFAR dataset {name!r}; known: '
                    f'{", ".join(CIFAR_ARCHIVES)}.')
  folder_name = CIFAR_ARCHIVES[name][1]
  archive, folder = _cifar_paths(name, data_dir)
  if os.path.isdir(folder):
    read = lambda member: _unpickle(os.path.join(folder, member), open)
  elif os.path.isfile(archive):
    try:
      tar = tarfile.open(archive, 'r:gz')
    except (tarfile.TarError, OSError, EOFError) as error:
      raise DataError(f'{archive} is not a readable .tar.gz archive: '
                      f'{error}.') from error
    read = lambda member: _unpickle(
        f'{folder_name}/{member}', lambda path, mode: tar.extractfile(path),
        archive)
  else:
    raise DataError(f'{name}: neither {archive} nor {folder} exists.')
  members, meta_member = _cifar_members(name)
  key = b'labels' if name == 'cifar10' else f'{label_type}_labels'.encode()
  splits = {}
  for split, files in members.items():
    batches = [read(member) for member in files]
    data = np.concatenate([b[b'data'] for b in batches])
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    splits[split] = (np.ascontiguousarray(images, np.uint8),
                     np.concatenate([b[key] for b in batches]).astype(
                         np.int64))
  meta = read(meta_member)
  names_key = (b'label_names' if name == 'cifar10' else
               f'{label_type}_label_names'.encode())
  return splits, [n.decode() for n in meta[names_key]]


def _cifar_members(name):
  """The pickled files of each split and the metadata file."""
  if name == 'cifar10':
    return ({'train': [f'data_batch_{i}' for i in range(1, 6)],
             'test': ['test_batch']}, 'batches.meta')
  return {'train': ['train'], 'test': ['test']}, 'meta'


def _unpickle(path, opener, archive=None):
  where = f' in {archive}' if archive else ''
  try:
    with opener(path, 'rb') as f:
      return pickle.load(f, encoding='bytes')
  except (FileNotFoundError, KeyError) as error:
    raise DataError(f'CIFAR file missing: {path}{where}; is it the original '
                    'CIFAR python layout?') from error
  except (pickle.UnpicklingError, EOFError, tarfile.TarError, OSError,
          zlib.error) as error:
    # A truncated archive ends the gzip stream early (EOFError, zlib.error).
    raise DataError(f'CIFAR file {path}{where} is not a readable CIFAR python '
                    f'batch: {error}.') from error


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def load_folder(data_dir):
  """A folder of same-size images, data_dir/<split>/<class>/<image> (splits
  train and, when present, test; the classes are train's sub-folders,
  sorted), decoded with PIL into memory: ({split: (images, labels)}, class
  names)."""
  from PIL import Image  # Only here needed.
  train_dir = os.path.join(os.path.expanduser(data_dir or ''), 'train')
  if not os.path.isdir(train_dir):
    raise DataError(f'folder source: no train split at {train_dir} '
                    '(data_dir/train/<class>/*.jpg).')
  names = sorted(c for c in os.listdir(train_dir) if not c.startswith('.')
                 and os.path.isdir(os.path.join(train_dir, c)))
  if not names:
    raise DataError(f'folder source: {train_dir} has no class folders.')
  splits = {}
  for split in ('train', 'test'):
    split_dir = os.path.join(os.path.dirname(train_dir), split)
    if not os.path.isdir(split_dir):
      continue
    images, labels = [], []
    for label, name in enumerate(names):
      class_dir = os.path.join(split_dir, name)
      for file_name in (sorted(os.listdir(class_dir))
                        if os.path.isdir(class_dir) else ()):
        if not file_name.lower().endswith(IMAGE_SUFFIXES):
          continue
        path = os.path.join(class_dir, file_name)
        try:
          with Image.open(path) as image:
            images.append(np.asarray(image.convert('RGB')))
        except OSError as error:
          raise DataError(f'folder source: cannot read {path} ({error}).'
                          ) from None
        if images[-1].shape != images[0].shape:
          raise DataError(
              f'folder source: {path} is {images[-1].shape[1]}x'
              f'{images[-1].shape[0]}, the first image '
              f'{images[0].shape[1]}x{images[0].shape[0]}: held in memory, '
              'the images must all be one size.')
        labels.append(label)
    if not images:
      raise DataError(f'folder source: no images under {split_dir}.')
    splits[split] = (np.stack(images), np.array(labels, np.int64))
  return splits, names


def validation_order(count, fraction, seed):
  """(validation indices, training indices), each sorted (the examples
  keep their order), of a split of `count` examples: a seeded `fraction`
  of them carved out (--validation_fraction)."""
  size = int(round(fraction * count))
  if size < 1 or size >= count:
    raise DataError(f'validation_fraction {fraction} of {count} training '
                    'examples leaves an empty split.')
  order = np.random.default_rng(seed).permutation(count)
  return np.sort(order[:size]), np.sort(order[size:])
