"""Datasets: where the images and labels come from.

`load_source(name, data_dir, ...)` returns a `Source` whose splits are `Split`s:
images held in memory (uint8 [N, H, W, 3]), encoded image files, or a TFDS
stream, or TFRecord shards, always with integer labels. Names:

- `cifar10`, `cifar100`: the original python archives in `data_dir`
  (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`, or their extracted
  folders), read directly; else TFDS (which downloads when online).
  CIFAR-100 has `label_type='fine'` (100 classes) or `'coarse'` (20).
- `folder`: `data_dir/<split>/<class>/*.{jpg,jpeg,png}` (`folder.py`).
  Grayscale, palette, RGBA and 16-bit PNGs and CMYK JPEGs become
  RGB (alpha dropped, 16 bits to their high byte, as libpng strips them).
  Images of different sizes are read as files, each cropped and resized by
  its view, unless `require_same_image_size` refuses them.
- `digits`: scikit-learn's bundled 8x8 digits as 32x32 RGB, a fixed seeded
  train/test split; needs no download.
- `tfrecord`: ImageNet TFRecord shards in `data_dir` (`records.py`).
- any other name (`imagenet2012`, ...): TFDS with `data_dir`
  (`tfds_streams.py`).

`validation_fraction` carves a seeded validation split out of train, so model
selection never touches test.
"""
import dataclasses

import numpy as np
from absl import logging

from supcon_tf.data import arrays, folder, records, tfds_streams
# Split and Source are the types load_source returns: this is their public
# place as well as splits.py.
from supcon_tf.data.arrays import (  # noqa: F401 (also their place here)
    CIFAR10_MEAN_STD, CIFAR_ARCHIVES, KNOWN_MEAN_STD, MEAN_STD, OFFICIAL_NAMES,
    UNIT_MEAN_STD, DataError)
from supcon_tf.data.splits import Source, Split


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
    source = folder.read_source(data_dir, skip_corrupt,
                                require_same_image_size)
  elif name == 'tfrecord':
    source = records.read_source(data_dir)
  elif name in CIFAR_ARCHIVES:
    source = _cifar(name, data_dir, label_type)
  else:
    source = tfds_streams.read_source(name, data_dir)
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


def _digits():
  splits = {name: Split(labels, images=images)
            for name, (images, labels) in arrays.load_digits().items()}
  return Source('digits', splits, 10, [str(d) for d in range(10)],
                arrays.mean_std_of(splits['train'].images))


def _cifar(name, data_dir, label_type):
  if not arrays.cifar_present(name, data_dir):
    logging.info('%s: no %s or %s in %r; using TFDS.', name,
                 *CIFAR_ARCHIVES[name], data_dir)
    return tfds_streams.read_source(name, data_dir or None, label_type)
  splits, class_names = arrays.load_cifar(name, data_dir, label_type)
  splits = {split: Split(labels, images=images)
            for split, (images, labels) in splits.items()}
  return Source(name, splits, len(class_names), class_names,
                KNOWN_MEAN_STD[name])
